from typing import Any

from django.core.management.base import BaseCommand

from mailcore.delivery import claims
from mailcore.models import OutboundRecipient


class Command(BaseCommand):
    help = "Retry all deferred outbound mail now (wakes a worker for each message)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = claims.retry_now()
        message_ids = claims.due_message_ids()
        from mailcore.delivery.wake import wake

        for message_id in message_ids:
            wake(message_id)
        queued = OutboundRecipient.objects.filter(state__in=(OutboundRecipient.QUEUED, OutboundRecipient.DEFERRED))
        self.stdout.write(f"{count} deferred recipient(s) due now; {queued.count()} waiting in total")
