"""RFC 5256 §4 THREAD=REFERENCES: threads from References/In-Reply-To, then merged by base subject.

The steps are numbered as in the RFC. Tree walks are iterative: a reply chain
can be as long as the folder.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mailcore.imap.search import Candidate
from mailcore.mime.headers import decode_words

_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# RFC 5256 §2.1 subj-refwd ("re", "fw", "fwd", optionally with a [blob]) and subj-blob, before a colon.
_LEADER = re.compile(r"^(?:\s*\[[^\[\]]*\])*\s*(?:re|fwd?)\s*(?:\[[^\[\]]*\])?\s*:", re.IGNORECASE)
_BLOB = re.compile(r"^\s*\[[^\[\]]*\]\s*")
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)
_FWD_WRAPPER = re.compile(r"^\[fwd:\s*(.*)\]$", re.IGNORECASE)


@dataclass(frozen=True)
class ThreadHeaders:
    message_id: str | None
    references: list[str]  # References, or else the first In-Reply-To ID (step 1.A)


def thread_headers(fields: list[tuple[str, str]]) -> ThreadHeaders:
    def ids(name: str) -> list[str]:
        return [i for n, v in fields if n == name for i in _MESSAGE_ID.findall(v)]

    own = ids("message-id")
    references = ids("references") or ids("in-reply-to")[:1]
    return ThreadHeaders(own[0] if own else None, references)


@dataclass(eq=False)
class Container:
    message: Candidate | None = None
    parent: Container | None = None
    children: list[Container] = field(default_factory=list)

    def adopt(self, child: Container) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = self
        self.children.append(child)

    def has_ancestor(self, other: Container) -> bool:
        node: Container | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 base subject (case-folded) and whether the subject marked a reply or forward."""
    text = " ".join(decode_words(subject).split())
    is_reply = False
    while True:
        previous = text
        stripped = _TRAILER.sub("", text)  # (2) trailers
        is_reply = is_reply or stripped != text
        text = stripped
        while True:  # (3)-(5) leaders and blobs
            before = text
            leader = _LEADER.match(text)
            if leader:
                text, is_reply = text[leader.end():].lstrip(), True
            blob = _BLOB.match(text)
            if blob and text[blob.end():]:
                text = text[blob.end():]
            if text == before:
                break
        wrapped = _FWD_WRAPPER.match(text)  # (6) [fwd: ...]
        if wrapped:
            text, is_reply = wrapped.group(1).strip(), True
        if text == previous:
            return text.casefold(), is_reply


def build(found: list[Candidate], headers: dict[int, ThreadHeaders]) -> list[Container]:
    """The threads of `found` (in sequence order), roots and siblings sorted by sent date."""
    roots = _link(found, headers)  # steps 1-3
    roots = _prune(roots)  # step 4
    _sort(roots)  # step 5
    roots = _merge_subjects(roots)  # step 6
    _sort(roots)  # step 7
    return roots


def _link(found: list[Candidate], headers: dict[int, ThreadHeaders]) -> list[Container]:
    table: dict[str, Container] = {}
    for candidate in found:
        info = headers[candidate.info.uid]
        previous: Container | None = None
        for message_id in info.references:  # 1.A: link the references in order, never making a loop
            container = table.setdefault(message_id, Container())
            if previous is not None and container.parent is None and not previous.has_ancestor(container):
                previous.adopt(container)
            previous = container
        key = info.message_id
        if key is None or (key in table and table[key].message is not None):
            key = f"\x00{candidate.info.uid}"  # 1.B: no or duplicate Message-ID: a unique one
        own = table.setdefault(key, Container())
        own.message = candidate
        if own.parent is not None:  # 1.C: the last reference is the parent
            own.parent.children.remove(own)
            own.parent = None
        if previous is not None and not previous.has_ancestor(own):
            previous.adopt(own)
    return [container for container in table.values() if container.parent is None]  # step 2


def _preorder(roots: list[Container]) -> Iterator[Container]:
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _prune(roots: list[Container]) -> list[Container]:
    """4.A: empty dummies go; 4.B: a dummy's children take its place (at the root only if it has one)."""
    for node in reversed(list(_preorder(roots))):  # children before parents
        kept: list[Container] = []
        for child in node.children:
            if child.message is None:
                for grandchild in child.children:
                    grandchild.parent = node
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
    result: list[Container] = []
    for root in roots:
        if root.message is None and len(root.children) <= 1:
            for child in root.children:
                child.parent = None
            result.extend(root.children)
        else:
            result.append(root)
    return result


def _date(candidate: Candidate) -> tuple[dt.datetime, int]:
    """RFC 5256 §2.2 sent date (the Date header, else the internal date); ties by sequence number."""
    return (candidate.info.sent_date or candidate.info.internal_date, candidate.seq)


def _sort(roots: list[Container]) -> None:
    keys: dict[int, tuple[dt.datetime, int]] = {}
    for node in reversed(list(_preorder(roots))):
        node.children.sort(key=lambda c: keys[id(c)])
        first = node.message or (node.children[0].message if node.children else None)
        keys[id(node)] = _date(first) if first else (dt.datetime.max.replace(tzinfo=dt.UTC), 0)
        if node.message is None and node.children:
            keys[id(node)] = keys[id(node.children[0])]
    roots.sort(key=lambda c: keys[id(c)])


def _subject_of(root: Container) -> tuple[str, bool]:
    message = root.message or root.children[0].message
    assert message is not None
    return base_subject(message.info.envelope.get("subject") or "")


def _merge_subjects(roots: list[Container]) -> list[Container]:
    """Step 6: threads whose first messages share a base subject become one."""
    table: dict[str, Container] = {}
    for root in roots:  # 6.A
        subject, is_reply = _subject_of(root)
        if not subject:
            continue
        old = table.get(subject)
        if old is None or (root.message is None and old.message is not None) or (
            old.message is not None and root.message is not None and _subject_of(old)[1] and not is_reply
        ):
            table[subject] = root
    result = list(roots)
    for root in roots:  # 6.B
        subject, is_reply = _subject_of(root)
        old = table.get(subject) if subject else None
        if old is None or old is root:
            continue
        if old.message is None and root.message is None:
            for child in list(root.children):
                old.adopt(child)
        elif old.message is None or (not _subject_of(old)[1] and is_reply):
            old.adopt(root)
        else:
            dummy = Container()
            result[result.index(old)] = dummy
            table[subject] = dummy
            dummy.adopt(old)
            dummy.adopt(root)
            old.parent = dummy
        result.remove(root)
    for root in result:
        root.parent = None
    return result


def render(roots: list[Container], uid_mode: bool) -> str:
    """RFC 5256 §4: `(a b c)` is a chain, `(a (b)(c))` a message with two replies, `((a)(b))` a dummy's."""
    return "".join(_render(root, uid_mode) for root in roots)


def _render(node: Container, uid_mode: bool) -> str:
    numbers: list[str] = []
    while True:
        if node.message is not None:
            numbers.append(str(node.message.info.uid if uid_mode else node.message.seq))
        if len(node.children) != 1:
            break
        node = node.children[0]
    inner = " ".join(numbers)
    if node.children:
        inner += (" " if inner else "") + "".join(_render(child, uid_mode) for child in node.children)
    return f"({inner})"
