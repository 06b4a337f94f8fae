from django.apps import AppConfig


class MailcoreConfig(AppConfig):
    name = "mailcore"
    verbose_name = "Mail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from anymail.signals import tracking

        from mailcore import checks  # noqa: F401  (registers the settings checks)
        from mailcore.delivery import esp_events

        # An ESP's late bounces (its tracking webhook, /anymail/<esp>/tracking/) reach the queue and the sender.
        tracking.connect(esp_events.on_tracking, dispatch_uid="mailcore.esp_events")
