import argparse
import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailcore import runner


class Command(BaseCommand):
    help = (
        "Run the mail listeners (SMTP, submission, IMAP, POP3; ports from MAIL_*_PORT, 0 turns one off) "
        "and, without a Celery broker, the in-process delivery runner. Stops on SIGTERM or Ctrl-C."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # A worker process runmail starts itself (MAIL_SMTP_PROCESSES > 1): the socket to the main
        # process, and each listening socket as role:implicit_tls:fd.
        parser.add_argument("--smtp-worker", type=int, help=argparse.SUPPRESS)
        parser.add_argument("--listen", action="append", default=[], help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["smtp_worker"] is not None:
            from mailcore.smtp.workers import parse_listen, run_worker

            asyncio.run(run_worker(options["smtp_worker"], [parse_listen(v) for v in options["listen"]]))
            return
        asyncio.run(runner.run_forever())
