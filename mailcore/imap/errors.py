"""Protocol errors: raised anywhere inside a command, turned into reply bytes by the session loop only."""
from __future__ import annotations


class ProtocolError(Exception):
    """A tagged (or, for BYE, untagged) reply: `status` is NO, BAD or BYE; `code` a response code."""

    status = "NO"

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code

    def reply_text(self) -> str:
        return f"{self.status} [{self.code}] {self.text}" if self.code else f"{self.status} {self.text}"


class No(ProtocolError):
    """RFC 9051 §7.1.2: the command failed for a reason that is not the client's syntax."""

    status = "NO"


class Bad(ProtocolError):
    """RFC 9051 §7.1.3: the client sent a command we cannot parse or that is not allowed now."""

    status = "BAD"


class Bye(ProtocolError):
    """RFC 9051 §7.1.5: the server closes the connection after this reply."""

    status = "BYE"
