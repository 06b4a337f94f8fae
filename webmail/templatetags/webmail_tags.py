"""Small template helpers of the webmail."""
from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def thread_size(counts: dict[int, int] | None, thread_id: int | None) -> int:
    """Messages in the thread (1 when conversations are off or the message has no thread)."""
    if not counts or thread_id is None:
        return 1
    return counts.get(thread_id, 1)
