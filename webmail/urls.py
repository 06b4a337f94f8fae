from django.urls import path

from webmail import views

urlpatterns = [
    path("", views.home, name="home"),
]
