import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from mailcore import runner


class Command(BaseCommand):
    help = (
        "Run the mail listeners (SMTP, submission, IMAP, POP3; ports from MAIL_*_PORT, 0 turns one off) "
        "and, without a Celery broker, the in-process delivery runner. Stops on SIGTERM or Ctrl-C."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(runner.run_forever())
