"""The one POP3 error: it carries the reply; the session loop turns it into bytes."""
from __future__ import annotations

# RFC 2449 §8 / RFC 3206 §4: extended response codes we send in brackets after -ERR.
IN_USE = "IN-USE"  # RFC 2449 §8.1.1: the maildrop is locked by another session
LOGIN_DELAY = "LOGIN-DELAY"  # RFC 2449 §8.1.2
SYS_TEMP = "SYS/TEMP"  # RFC 3206 §4: a temporary system problem; try again later
SYS_PERM = "SYS/PERM"  # RFC 3206 §4: a permanent system problem
AUTH = "AUTH"  # RFC 3206 §5: the credentials were wrong (not a system problem)


class Pop3Error(Exception):
    """A `-ERR` reply: `text` says why, `code` is an RFC 2449 response code, `close` ends the session."""

    def __init__(self, text: str, code: str = "", close: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.close = close

    def reply(self) -> bytes:
        code = f"[{self.code}] " if self.code else ""
        return f"-ERR {code}{self.text}\r\n".encode("ascii", "replace")
