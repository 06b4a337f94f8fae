"""SMTP replies: the error that carries one, and the enhanced status codes added to bare replies.

Policy code anywhere raises `SMTPError("550 5.1.1 ...")`; the session loop in
`server.py` is the one place that turns it (or any reply) into bytes.
"""
from __future__ import annotations

import re

# RFC 2034 §3 and RFC 3463: once ENHANCEDSTATUSCODES is advertised, replies carry a status code.
# aiosmtpd's own replies lack them; this table supplies the class-appropriate default.
DEFAULT_ENHANCED = {
    "211": "2.0.0",
    "214": "2.0.0",
    "220": "2.0.0",
    "221": "2.0.0",
    "235": "2.7.0",
    "250": "2.0.0",
    "252": "2.0.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.0.0",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.0.0",
    "555": "5.5.4",
}
# Replies that never carry an enhanced code: continuation prompts (RFC 4954 §4, RFC 5321 §4.2.2).
NO_ENHANCED = {"334", "354"}
_REPLY = re.compile(r"^(\d{3})([ -])(.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")


class SMTPError(Exception):
    """A reply to send instead of going on; `close` ends the session after sending it."""

    def __init__(self, reply: str, close: bool = False) -> None:
        super().__init__(reply)
        self.reply = reply
        self.close = close

    @property
    def code(self) -> int:
        return int(self.reply[:3])


def with_enhanced_code(reply: str) -> str:
    """`reply` with the default enhanced status code of its reply code when it has none."""
    match = _REPLY.match(reply)
    if not match:
        return reply
    code, separator, text = match.groups()
    if code in NO_ENHANCED or _ENHANCED.match(text) or code not in DEFAULT_ENHANCED:
        return reply
    return f"{code}{separator}{DEFAULT_ENHANCED[code]} {text}"


def is_bad_command(code: int) -> bool:
    """Replies that count towards MAX_BAD_COMMANDS: syntax errors, unknown and out-of-sequence commands."""
    return 500 <= code <= 504
