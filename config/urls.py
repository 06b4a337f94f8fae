"""Top-level URLs: the admin, the ESPs' tracking webhooks (Anymail) and the webmail."""
from django.contrib import admin
from django.urls import include, path

from config.health import healthz
from config.observability import metrics_view
from mailcore.admin import dashboard_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/dashboard/", admin.site.admin_view(dashboard_view), name="mail_dashboard"),
    path("admin/", admin.site.urls),
    # POSTs from an ESP about mail it accepted (mailcore/delivery/esp_events.py); protected by ANYMAIL's WEBHOOK_SECRET.
    path("anymail/", include("anymail.urls")),
    path("", include("webmail.urls")),
]
