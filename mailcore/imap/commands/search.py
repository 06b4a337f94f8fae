"""SEARCH, SORT and THREAD and their UID forms (RFC 9051 §6.4.4, RFC 4731 ESEARCH, RFC 5256 SORT/THREAD)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailcore import store
from mailcore.imap import search, threads, wire
from mailcore.imap.errors import Bad, No
from mailcore.imap.memo import Memo
from mailcore.imap.parser import Parser, SequenceSet
from mailcore.imap.search import Candidate, Key
from mailcore.mime.headers import decode_words
from mailcore.store import aio, rows

if TYPE_CHECKING:
    from mailcore.imap.selected import MailboxView
    from mailcore.imap.session import Session

CHARSETS = {"UTF-8", "US-ASCII"}  # RFC 9051 §6.4.4: UTF-8 is required; others get BADCHARSET
RETURN_OPTIONS = {"MIN", "MAX", "COUNT", "ALL", "SAVE"}  # RFC 4731 §3.1, RFC 5182 §2.1
SORT_KEYS = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
THREAD_FIELDS = ("message-id", "references", "in-reply-to")
SUBJECT_LISTS_CACHED = 16  # folders whose casefolded Subjects this process keeps for SEARCH SUBJECT
_FOLDER_SUBJECTS: Memo[tuple[int, int, int, int], list[tuple[int, str, bool]]] = Memo(SUBJECT_LISTS_CACHED)


async def cmd_SEARCH(s: Session, p: Parser) -> str:
    await _search(s, p, uid_mode=False)
    return "SEARCH completed"


async def cmd_UID_SEARCH(s: Session, p: Parser) -> str:
    await _search(s, p, uid_mode=True)
    return "UID SEARCH completed"


async def _search(s: Session, p: Parser, uid_mode: bool) -> None:
    p.sp()
    options: set[str] | None = None
    if p.peek_upper("RETURN "):
        p.keyword()
        p.sp()
        options = {o.upper() for o in p.parenthesised(p.atom)}
        if options - RETURN_OPTIONS:
            raise Bad("unknown SEARCH RETURN option")
        if "SAVE" in options and s.selected is not None:
            s.selected.saved = []  # RFC 5182 §2.1: a SEARCH ... SAVE that fails leaves `$` empty
        p.sp()
    _charset(p)
    keys = search.parse_program(p)
    p.end()
    if s.rev2 and options is None:
        options = {"ALL"}  # RFC 9051 §6.4.4: IMAP4rev2 answers with ESEARCH
    view = s.selected
    assert view is not None
    quick = await _column_search(s, keys)
    found = await run_search(s, keys) if quick is None else []
    pairs = quick if quick is not None else [(c.seq, c.info.uid) for c in found]
    numbers = [uid if uid_mode else seq for seq, uid in pairs]
    if options is not None:
        if "SAVE" in options:
            view.saved = _saved(pairs, options)
            options = options - {"SAVE"}
            if not options:
                return  # RFC 5182 §2.1: SAVE alone returns no ESEARCH response
        s.untagged(_esearch(s.tag, numbers, options or {"ALL"}, uid_mode))
        return
    line = "SEARCH" + "".join(f" {n}" for n in numbers)
    if found and any(k.name == "MODSEQ" for k in search.walk(keys)):
        line += f" (MODSEQ {max(c.info.modseq for c in found)})"  # RFC 7162 §3.1.5
    s.untagged(line)


def _saved(pairs: list[tuple[int, int]], options: set[str]) -> list[int]:
    """RFC 5182 §2.1: with MIN and/or MAX (and not ALL or COUNT) only those messages are saved."""
    uids = sorted(uid for _seq, uid in pairs)
    if not uids or options & {"ALL", "COUNT"} or not options & {"MIN", "MAX"}:
        return uids
    return sorted({*([uids[0]] if "MIN" in options else []), *([uids[-1]] if "MAX" in options else [])})


def _charset(p: Parser) -> None:
    if p.peek_upper("CHARSET "):
        p.keyword()
        p.sp()
        charset = p.astring().decode("ascii", "replace").upper()
        if charset not in CHARSETS:
            raise No("unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")  # RFC 9051 §7.1
        p.sp()


def _esearch(tag: str, numbers: list[int], options: set[str], uid_mode: bool) -> bytes:
    """RFC 4731 §3.1 ESEARCH response."""
    parts = [b"ESEARCH (TAG " + wire.string(tag) + b")"]
    if uid_mode:
        parts.append(b"UID")
    if numbers and "MIN" in options:
        parts.append(b"MIN %d" % min(numbers))
    if numbers and "MAX" in options:
        parts.append(b"MAX %d" % max(numbers))
    if "COUNT" in options:
        parts.append(b"COUNT %d" % len(numbers))
    if numbers and "ALL" in options:
        parts.append(b"ALL " + wire.sequence_set(sorted(numbers)).encode())
    return b" ".join(parts)


async def _column_search(s: Session, keys: list[Key]) -> list[tuple[int, int]] | None:
    """(sequence number, UID) of matches, when the keys map to columns (`search.column_plan`); else None.

    The database filters flags, sizes and dates; Subject is matched here on the cached
    decoded column (the same text `_text_match` decodes from the envelope), unless cut short.
    """
    view = s.selected
    assert view is not None
    plan = search.column_plan(keys)
    if plan is None:
        return None
    where, rest = plan
    needles = [key.args[0] for key in rest if key.name == "SUBJECT"]
    if needles:
        subjects = await _folder_subjects(view)
        if any(cut for _uid, _folded, cut in subjects):
            return None
        uids = [uid for uid, folded, _cut in subjects if all(n in folded for n in needles)]
        if not where.is_empty():
            uids = sorted(set(uids).intersection(await aio.run(rows.matching_uids, view.ref, where)))
    else:
        uids = await aio.run(rows.matching_uids, view.ref, where)
    resolve = _resolver(view)
    found = []
    for uid in uids:
        seq = view.seq_of(uid)
        if seq is not None and all(search.number_match(key, seq, uid, resolve, view.recent) for key in rest):
            found.append((seq, uid))
    return found


async def _folder_subjects(view: MailboxView) -> list[tuple[int, str, bool]]:
    """(UID, casefolded cached Subject, whether the column cut it short) of every message now in the folder.

    Kept per folder state: (UIDVALIDITY, UIDNEXT, count) fixes which messages are in
    it (a new one raises UIDNEXT, an expunge lowers the count), and a message's
    Subject never changes. So a SEARCH finds what is in the folder now, also when
    another session expunged a message this one still numbers.
    """
    info = await aio.run(store.folder_info, view.ref)
    key = (view.ref.mailbox_id, info.uidvalidity, info.uidnext, info.messages)
    cached = _FOLDER_SUBJECTS.get(key)
    if cached is not None:
        return cached
    subjects = [(uid, subject.casefold(), cut) for uid, subject, cut in await aio.run(rows.subjects, view.ref)]
    if len(subjects) == info.messages and (not subjects or subjects[-1][0] < info.uidnext):
        _FOLDER_SUBJECTS.put(key, subjects)  # only a list that agrees with the counters read before it
    return subjects


def _resolver(view: MailboxView) -> search.Resolver:
    """Sequence sets of SEARCH keys as sets of UIDs or sequence numbers, each worked out once."""
    cache: dict[tuple[bool, str], set[int]] = {}

    def resolve(ranges: SequenceSet, uid_mode: bool) -> set[int]:
        key = (uid_mode, repr(ranges))
        if key not in cache:
            chosen = set(view.resolve_lenient(ranges, uid_mode))
            cache[key] = chosen if uid_mode else {view.seq_of(u) or 0 for u in chosen}
        return cache[key]

    return resolve


async def run_search(s: Session, keys: list[Key]) -> list[Candidate]:
    """Every message of the selected mailbox that matches, in sequence order."""
    view = s.selected
    assert view is not None
    with_text = search.needs_text(keys)
    messages = await aio.run(store.fetch, view.ref, None, None, with_text)
    resolve = _resolver(view)
    found = []
    for info in messages:
        seq = view.seq_of(info.uid)
        if seq is None:
            continue
        candidate = Candidate(seq, info, recent=info.uid in view.recent)
        if with_text:
            candidate.raw = await aio.run(store.read_blob, info.blob)
        if search.matches(keys, candidate, resolve):
            found.append(candidate)
    return found


async def cmd_SORT(s: Session, p: Parser) -> str:
    """RFC 5256 §3 SORT."""
    await _sort(s, p, uid_mode=False)
    return "SORT completed"


async def cmd_UID_SORT(s: Session, p: Parser) -> str:
    await _sort(s, p, uid_mode=True)
    return "UID SORT completed"


async def _sort(s: Session, p: Parser, uid_mode: bool) -> None:
    p.sp()
    criteria = [c.upper() for c in p.parenthesised(p.atom, allow_empty=False)]
    found = await run_search(s, _charset_and_keys(p))
    for criterion in reversed(_sort_plan(criteria)):
        name, reverse = criterion
        found.sort(key=lambda c, n=name: _sort_value(n, c), reverse=reverse)  # type: ignore[misc]
    s.untagged("SORT" + "".join(f" {c.info.uid if uid_mode else c.seq}" for c in found))


def _charset_and_keys(p: Parser) -> list[search.Key]:
    """` charset SP search-key...` after SORT criteria or the THREAD algorithm (RFC 5256 §3, §4)."""
    p.sp()
    charset = p.astring().decode("ascii", "replace").upper()
    if charset not in CHARSETS:
        raise No("unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
    p.sp()
    keys = search.parse_program(p)
    p.end()
    return keys


def _sort_plan(criteria: list[str]) -> list[tuple[str, bool]]:
    plan: list[tuple[str, bool]] = []
    reverse = False
    for criterion in criteria:
        if criterion == "REVERSE":
            reverse = True
            continue
        if criterion not in SORT_KEYS:
            raise Bad(f"unknown sort criterion {criterion}")
        plan.append((criterion, reverse))
        reverse = False
    if reverse or not plan:
        raise Bad("REVERSE must precede a sort criterion")
    return plan


def _sort_value(name: str, c: Candidate) -> tuple[object, int]:
    """RFC 5256 §3: each criterion's value; ties keep sequence order (the final key)."""
    info, env = c.info, c.info.envelope
    value: object
    if name == "ARRIVAL":
        value = info.internal_date
    elif name == "DATE":
        value = info.sent_date or info.internal_date
    elif name == "SIZE":
        value = info.size
    elif name == "SUBJECT":
        value = threads.base_subject(env.get("subject") or "")[0]
    else:
        field_name = {"DISPLAYFROM": "from", "DISPLAYTO": "to"}.get(name, name.lower())
        first = (env.get(field_name) or [[None, None, "", None]])[0]
        display = decode_words(first[0] or "") if name.startswith("DISPLAY") else ""
        value = (display or first[2] or "").casefold()
    return value, c.seq


async def cmd_THREAD(s: Session, p: Parser) -> str:
    """RFC 5256 §4 THREAD=REFERENCES (`mailcore/imap/threads.py`)."""
    await _thread(s, p, uid_mode=False)
    return "THREAD completed"


async def cmd_UID_THREAD(s: Session, p: Parser) -> str:
    await _thread(s, p, uid_mode=True)
    return "UID THREAD completed"


async def _thread(s: Session, p: Parser, uid_mode: bool) -> None:
    p.sp()
    algorithm = p.atom().upper()
    if algorithm != "REFERENCES":
        raise Bad("only THREAD=REFERENCES is supported")
    found = await run_search(s, _charset_and_keys(p))
    view = s.selected
    assert view is not None
    fields = await aio.run(rows.header_fields, view.ref, [c.info.uid for c in found], THREAD_FIELDS)
    headers = {uid: threads.thread_headers(values) for uid, values in fields.items()}
    roots = threads.build([c for c in found if c.info.uid in headers], headers)
    s.untagged("THREAD " + threads.render(roots, uid_mode) if roots else "THREAD")
