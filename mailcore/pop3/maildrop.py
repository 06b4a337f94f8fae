"""The maildrop as one session sees it: a fixed list of messages, numbered from 1, and deletion marks.

RFC 1939 §5: message numbers stay fixed for the session; mail that arrives
meanwhile appears in the next session. Pure data, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mailcore.pop3.errors import Pop3Error
from mailcore.pop3.parser import message_number
from mailcore.store import FolderRef, MessageInfo


@dataclass(frozen=True)
class Entry:
    number: int
    uid: int
    size: int
    blob: str
    seen: bool


def unique_id(uidvalidity: int, uid: int) -> str:
    """RFC 1939 §7 UIDL: stable forever, 1-70 characters 0x21-0x7E; UIDVALIDITY and UID never repeat together."""
    return f"{uidvalidity}.{uid}"


@dataclass
class Maildrop:
    ref: FolderRef
    entries: list[Entry]
    deleted: set[int] = field(default_factory=set)

    @classmethod
    def from_messages(cls, ref: FolderRef, messages: list[MessageInfo]) -> Maildrop:
        entries = [
            Entry(number, info.uid, info.size, info.blob, "\\Seen" in info.flags)
            for number, info in enumerate(messages, start=1)
        ]
        return cls(ref, entries)

    def get(self, arg: str) -> Entry:
        """The message `arg` names; -ERR when it is out of range or marked deleted (RFC 1939 §5)."""
        number = message_number(arg)
        if number > len(self.entries):
            raise Pop3Error(f"no such message, only {len(self.entries)} in maildrop")
        if number in self.deleted:
            raise Pop3Error(f"message {number} already deleted")
        return self.entries[number - 1]

    def live(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.number not in self.deleted]

    def stat(self) -> tuple[int, int]:
        """RFC 1939 §5 STAT: count and octets of the messages not marked deleted."""
        live = self.live()
        return len(live), sum(entry.size for entry in live)

    def delete(self, entry: Entry) -> None:
        self.deleted.add(entry.number)

    def reset(self) -> None:
        self.deleted.clear()

    def deleted_uids(self) -> list[int]:
        return sorted(self.entries[number - 1].uid for number in self.deleted)

    def unique_id(self, entry: Entry) -> str:
        return unique_id(self.ref.uidvalidity, entry.uid)
