"""Top-level URLs: the admin, the ESPs' tracking webhooks (Anymail) and the webmail."""
from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from config.observability import metrics_view
from mailcore.admin import dashboard_view
from mailcore.delivery.esp_events import webhook_urls

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="mail_dashboard"),
    path("admin/", admin.site.urls),
    # ESPs report on mail they accepted (mailcore/delivery/esp_events.py): believed with WEBHOOK_SECRET or a signature;
    # an event that comes before its send's result is written is answered 503, for the ESP to send again.
    path("anymail/", include(webhook_urls())),
    path("", include("webmail.urls")),
]
