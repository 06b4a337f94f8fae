from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from mailcore.delivery.claims import FINAL_STATES
from mailcore.models import OutboundMessage, OutboundRecipient


class Command(BaseCommand):
    help = "List the outbound queue like Postfix's mailq: id, size, age, sender, each recipient's state and reply."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="also list delivered, bounced and expired recipients")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = OutboundRecipient.objects.select_related("message").order_by("message_id", "id")
        if not options["all"]:
            rows = rows.exclude(state__in=FINAL_STATES)
        by_message: dict[int, list[OutboundRecipient]] = {}
        for row in rows:
            by_message.setdefault(row.message_id, []).append(row)
        if not by_message:
            self.stdout.write("Mail queue is empty")
            return
        now = timezone.now()
        for recipients in by_message.values():
            self._write_message(recipients[0].message, recipients, now)
        self.stdout.write(f"-- {len(by_message)} message(s), {sum(len(r) for r in by_message.values())} recipient(s)")

    def _write_message(self, message: OutboundMessage, recipients: list[OutboundRecipient], now: Any) -> None:
        age = int((now - message.created_at).total_seconds())
        self.stdout.write(f"{message.pk:<10} {message.size:>9} {_age(age):>7}  <{message.sender}>")
        for row in recipients:
            due = "" if row.state in FINAL_STATES else f" next {row.next_attempt_at:%Y-%m-%d %H:%M:%S}"
            self.stdout.write(f"    {row.address}  [{row.state}, {row.attempts} attempt(s){due}]")
            if row.last_reply:
                self.stdout.write(f"        ({row.last_reply})")


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
