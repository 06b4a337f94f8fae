"""LIST and LSUB (RFC 9051 §6.3.9; RFC 5258 LIST-EXTENDED, RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap.errors import Bad
from mailcore.imap.parser import Parser
from mailcore.store import aio

if TYPE_CHECKING:
    from mailcore.imap.session import Session

SELECTION_OPTIONS = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}  # RFC 5258 §3.1, RFC 6154 §3


@dataclass
class ListRequest:
    selection: set[str] = field(default_factory=set)
    returns: set[str] = field(default_factory=set)
    status_items: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)


async def cmd_LIST(s: Session, p: Parser) -> str:
    """RFC 9051 §6.3.9: `LIST [(selection)] reference pattern(s) [RETURN (options)]`."""
    request = _parse_list(s, p)
    folders = await aio.run(store.list_folders, s.account_id)
    if request.patterns == [""]:
        s.untagged(f'LIST (\\Noselect) "{store.DELIMITER}" ""')  # RFC 9051 §6.3.9: the delimiter query
        return "LIST completed"
    await _send_list(s, request, folders, "LIST")
    return "LIST completed"


async def cmd_LSUB(s: Session, p: Parser) -> str:
    """RFC 3501 §6.3.9 LSUB (deprecated by RFC 9051 but kept for IMAP4rev1 clients)."""
    p.sp()
    reference = p.list_mailbox()
    p.sp()
    pattern = p.list_mailbox()
    p.end()
    if not s.utf8:
        from mailcore.imap import mutf7

        reference, pattern = mutf7.decode(reference), mutf7.decode(pattern)
    request = ListRequest(selection={"SUBSCRIBED"}, patterns=[reference + pattern])
    folders = await aio.run(store.list_folders, s.account_id)
    await _send_list(s, request, folders, "LSUB")
    return "LSUB completed"


def _parse_list(s: Session, p: Parser) -> ListRequest:
    request = ListRequest()
    p.sp()
    if p.peek(b"("):
        request.selection = {o.upper() for o in p.parenthesised(p.atom)}
        if request.selection - SELECTION_OPTIONS:
            raise Bad("unknown LIST selection option")
        p.sp()
    reference = p.list_mailbox()
    p.sp()
    patterns = p.parenthesised(p.list_mailbox, allow_empty=False) if p.peek(b"(") else [p.list_mailbox()]
    if p.take(b" "):
        if p.keyword() != "RETURN":
            raise Bad("expected RETURN")
        p.sp()
        p.parenthesised(lambda: _return_option(p, request))
    p.end()
    if not s.utf8:
        from mailcore.imap import mutf7

        reference, patterns = mutf7.decode(reference), [mutf7.decode(x) for x in patterns]
    request.patterns = [pattern if not pattern or not reference else reference + pattern for pattern in patterns]
    if "RECURSIVEMATCH" in request.selection and request.selection == {"RECURSIVEMATCH"}:
        raise Bad("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
    return request


def _return_option(p: Parser, request: ListRequest) -> None:
    option = p.atom().upper()
    if option == "STATUS":  # RFC 5819 §2
        p.sp()
        request.status_items = [i.upper() for i in p.parenthesised(p.atom, allow_empty=False)]
    elif option in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
        request.returns.add(option)
    else:
        raise Bad(f"unknown LIST return option {option}")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: `*` matches anything, `%` anything but the delimiter; INBOX is case-insensitive."""
    head, sep, rest = pattern.partition(store.DELIMITER)
    if head.upper() == store.INBOX:
        pattern = store.INBOX + sep + rest
    out = []
    for char in pattern:
        out.append(".*" if char == "*" else f"[^{re.escape(store.DELIMITER)}]*" if char == "%" else re.escape(char))
    return re.compile("".join(out) + r"\Z", re.DOTALL)


async def _send_list(s: Session, request: ListRequest, folders: list[store.FolderInfo], verb: str) -> None:
    from mailcore.imap.commands.mailboxes import check_status_items, status_counts, status_line

    check_status_items(request.status_items)
    regexes = [pattern_regex(pattern) for pattern in request.patterns]
    names = {f.name for f in folders}
    for folder in folders:
        if not any(r.match(folder.name) for r in regexes):
            continue
        if "SUBSCRIBED" in request.selection and not folder.subscribed:
            continue
        if "SPECIAL-USE" in request.selection and not folder.special_use:
            continue
        attributes = _attributes(folder, names, request, verb)
        s.untagged(f"{verb} ({' '.join(attributes)}) \"{store.DELIMITER}\" ".encode() + s.mailbox_out(folder.name))
        if request.status_items:
            ref = store.FolderRef(s.account_id, folder.id, folder.name, folder.uidvalidity)
            counts = await status_counts(ref, request.status_items)
            s.untagged(status_line(s, folder, request.status_items, counts))


def _attributes(folder: store.FolderInfo, names: set[str], request: ListRequest, verb: str) -> list[str]:
    """RFC 3348 / RFC 5258 §4 child info, RFC 5258 \\Subscribed, RFC 6154 §2 special use."""
    prefix = folder.name + store.DELIMITER
    has_children = any(name.startswith(prefix) for name in names)
    attributes = ["\\HasChildren" if has_children else "\\HasNoChildren"]
    if verb == "LIST" and ("SUBSCRIBED" in request.returns or "SUBSCRIBED" in request.selection) and folder.subscribed:
        attributes.append("\\Subscribed")
    if folder.special_use and verb == "LIST":
        attributes.append(folder.special_use)
    return attributes
