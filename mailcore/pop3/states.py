"""The session states (RFC 1939 §3) and the table of which commands each allows."""
from __future__ import annotations

import enum


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"  # RFC 1939 §4
    TRANSACTION = "TRANSACTION"  # RFC 1939 §5
    UPDATE = "UPDATE"  # RFC 1939 §6: entered by QUIT from TRANSACTION; no commands are read


ALLOWED: dict[State, frozenset[str]] = {
    # RFC 1939 §4, §7 (USER, PASS); RFC 2449 §5 (CAPA, any state); RFC 2595 §4 (STLS); RFC 5034 §4 (AUTH)
    State.AUTHORIZATION: frozenset({"USER", "PASS", "AUTH", "STLS", "CAPA", "QUIT"}),
    # RFC 1939 §5, §7 (TOP, UIDL); RFC 2449 §5 (CAPA)
    State.TRANSACTION: frozenset(
        {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT", "TOP", "UIDL", "CAPA"}
    ),
    State.UPDATE: frozenset(),
}
KNOWN_COMMANDS: frozenset[str] = frozenset().union(*ALLOWED.values())
