from django.apps import AppConfig


class WebmailConfig(AppConfig):
    name = "webmail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from mailcore import runner
        from webmail.outbox import outbox_runner

        runner.register_job(outbox_runner)  # undo send: held messages are submitted by runmail
