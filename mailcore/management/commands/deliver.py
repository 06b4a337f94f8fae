import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailcore import store


class Command(BaseCommand):
    help = "Deliver the message on standard input to local ADDRESSES through the store (like an MDA)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addresses", nargs="+", help="local recipients (aliases and +tags resolve)")

    def handle(self, *args: Any, **options: Any) -> None:
        recipients = [str(a) for a in options["addresses"]]
        raw = sys.stdin.buffer.read()
        if not raw:
            raise CommandError("no message on standard input")
        try:
            report = store.deliver(raw, recipients)
        except store.StoreError as err:
            raise CommandError(f"delivery failed: {err}") from err
        problems = [f"{r}: unknown recipient" for r in report.unknown]
        problems += [f"{r}: over quota" for r in report.over_quota]
        problems += [f"{r}: not a local address (not delivered)" for r in report.remote]
        for rcpt, places in report.delivered.items():
            self.stdout.write(f"delivered to {rcpt} (uid {', '.join(str(uid) for _, uid in places)})")
        if problems:
            raise CommandError("; ".join(problems))
