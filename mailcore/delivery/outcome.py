"""What one delivery attempt to one recipient came to: delivered, temporary failure, or permanent failure."""
from __future__ import annotations

from dataclasses import dataclass

DELIVERED, TEMPORARY, PERMANENT = "delivered", "temporary", "permanent"


@dataclass(frozen=True)
class Outcome:
    """A recipient's result: kind, the SMTP reply (or our own equivalent), and the host that gave it."""

    kind: str
    code: int
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.10"
    text: str
    host: str = ""
    esp_id: str = ""  # the id an ESP gave the message (Anymail), to match its later tracking events

    @property
    def reply(self) -> str:
        return f"{self.code} {self.status} {self.text}".strip()

    @classmethod
    def from_reply(cls, code: int, text: str, host: str = "") -> Outcome:
        """Classify an SMTP reply (RFC 5321 §4.2.1: 2yz done, 4yz try later, 5yz never)."""
        kind = DELIVERED if 200 <= code < 300 else TEMPORARY if 400 <= code < 500 else PERMANENT
        status, _, rest = text.partition(" ")
        if not _is_enhanced_status(status):
            status, rest = f"{str(code)[0]}.0.0", text
        return cls(kind, code, status, rest.strip(), host)


def _is_enhanced_status(token: str) -> bool:
    # RFC 3463 §2: class "." subject "." detail
    parts = token.split(".")
    return len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts[1:])


class DeliveryError(Exception):
    """A failure that applies to every recipient of a transaction (DNS, connection, TLS, SIZE...)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reply)
        self.outcome = outcome


def temporary(status: str, text: str, host: str = "", code: int = 451) -> DeliveryError:
    return DeliveryError(Outcome(TEMPORARY, code, status, text, host))


def permanent(status: str, text: str, host: str = "", code: int = 550) -> DeliveryError:
    return DeliveryError(Outcome(PERMANENT, code, status, text, host))
