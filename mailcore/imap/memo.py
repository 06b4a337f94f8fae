"""Process-wide memos of facts that never change once true, bounded by forgetting everything when full.

A (folder id, UID) pair never names another message (RFC 9051 §2.3.1.1: a UID
is never reused within a UIDVALIDITY, and a re-created folder gets a new id), so
what a message's immutable columns render to can be kept for as long as memory
allows. Clearing when full is crude but costs nothing per hit, and a miss only
means one more read from the store.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> V:
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = value
        return value

    def split(self, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """The values known for `keys`, and the keys still to be read (in the order given)."""
        found: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            value = self._entries.get(key)
            if value is None:
                missing.append(key)
            else:
                found[key] = value
        return found, missing

    def __len__(self) -> int:
        return len(self._entries)
