"""Command handlers, one module per family, and the table of which commands each state allows (RFC 9051 §3)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING

from mailcore.imap.commands import any_state, auth, fetch, idle, listing, mailboxes, messages, quota, search
from mailcore.imap.parser import Parser
from mailcore.imap.session import AUTHENTICATED, NOT_AUTHENTICATED, SELECTED

if TYPE_CHECKING:
    from mailcore.imap.session import Session

Handler = Callable[["Session", Parser], Awaitable[str | None]]

ANY = (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)
NOT_AUTH = (NOT_AUTHENTICATED,)
AUTH = (AUTHENTICATED, SELECTED)  # RFC 9051 §6.3: authenticated-state commands are valid when selected too
SEL = (SELECTED,)

# RFC 9051 §6.1-§6.4 (and the extensions' sections): command -> states that allow it.
STATES: dict[str, tuple[str, ...]] = {
    "CAPABILITY": ANY, "NOOP": ANY, "LOGOUT": ANY, "ID": ANY,
    "STARTTLS": NOT_AUTH, "LOGIN": NOT_AUTH, "AUTHENTICATE": NOT_AUTH,
    "ENABLE": AUTH, "SELECT": AUTH, "EXAMINE": AUTH, "CREATE": AUTH, "DELETE": AUTH, "RENAME": AUTH,
    "SUBSCRIBE": AUTH, "UNSUBSCRIBE": AUTH, "LIST": AUTH, "LSUB": AUTH, "NAMESPACE": AUTH,
    "STATUS": AUTH, "APPEND": AUTH, "IDLE": AUTH,
    "GETQUOTA": AUTH, "GETQUOTAROOT": AUTH, "SETQUOTA": AUTH,
    "CHECK": SEL, "CLOSE": SEL, "UNSELECT": SEL, "EXPUNGE": SEL, "UID EXPUNGE": SEL,
    "FETCH": SEL, "UID FETCH": SEL, "STORE": SEL, "UID STORE": SEL,
    "COPY": SEL, "UID COPY": SEL, "MOVE": SEL, "UID MOVE": SEL,
    "SEARCH": SEL, "UID SEARCH": SEL, "SORT": SEL, "UID SORT": SEL, "THREAD": SEL, "UID THREAD": SEL,
}
FAMILIES: tuple[ModuleType, ...] = (any_state, auth, mailboxes, listing, messages, fetch, search, idle, quota)


def _build() -> dict[str, tuple[Handler, tuple[str, ...]]]:
    table: dict[str, tuple[Handler, tuple[str, ...]]] = {}
    for name, states in STATES.items():
        attribute = "cmd_" + name.replace(" ", "_")
        handlers = [getattr(module, attribute) for module in FAMILIES if hasattr(module, attribute)]
        if len(handlers) != 1:
            raise RuntimeError(f"{attribute} must be defined exactly once, found {len(handlers)}")
        table[name] = (handlers[0], states)
    return table


COMMANDS = _build()
