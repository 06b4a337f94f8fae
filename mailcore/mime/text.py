"""Reading parts of a parsed message: numbering, decoded bytes, text for display and search.

Works on the cached body structure (`parse_message(...).bodystructure`) and the
stored raw bytes; nothing here re-parses MIME. Part paths are IMAP section
numbers ("1", "1.2"), RFC 9051 §6.4.5 (BODY[section]).
"""
from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from mailcore.mime.parse import Part, decode_transfer_encoding, part_filename

# The text kept for the search index per message (bodies beyond this are rarely searched).
MAX_INDEX_TEXT_CHARS = 200_000
SNIPPET_CHARS = 160
_SPACES = re.compile(r"\s+")
# Charsets mail writes that Python knows by another name.
_CHARSET_ALIASES = {"ks_c_5601-1987": "cp949", "x-sjis": "shift_jis", "unicode-1-1-utf-7": "utf-7"}


@dataclass(frozen=True)
class Attachment:
    """A part a person would download: its section path, name, type, size and Content-ID."""

    path: str
    filename: str
    content_type: str
    size: int
    content_id: str
    inline: bool


def walk(structure: Part, path: str = "") -> Iterator[tuple[str, Part]]:
    """Every leaf part with its IMAP section path; a top-level single part is "1" (RFC 9051 §6.4.5)."""
    if "parts" in structure:
        for index, child in enumerate(structure["parts"], start=1):
            yield from walk(child, f"{path}.{index}" if path else str(index))
        return
    yield (path or "1"), structure


def part_at(structure: Part, path: str) -> Part | None:
    """The leaf part at section `path`, or None."""
    for candidate, part in walk(structure):
        if candidate == path:
            return part
    return None


def decoded_body(raw: bytes, part: Part) -> bytes:
    """The part's body with its Content-Transfer-Encoding undone (RFC 2045 §6)."""
    return decode_transfer_encoding(raw[part["body_start"] : part["end"]], part.get("encoding") or "7BIT")


def charset_of(part: Part) -> str:
    value = dict(part.get("params") or []).get("charset", "us-ascii").strip().lower() or "us-ascii"
    value = _CHARSET_ALIASES.get(value, value)
    try:
        return codecs.lookup(value).name
    except LookupError:
        return "utf-8"


def part_text(raw: bytes, part: Part) -> str:
    """A text part decoded to str; undecodable bytes become U+FFFD, never an exception."""
    data = decoded_body(raw, part)
    charset = charset_of(part)
    if charset == "ascii":  # us-ascii mail often carries 8-bit UTF-8 anyway
        charset = "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", errors="replace")


def is_attachment(part: Part) -> bool:
    disposition = part.get("disposition")
    if disposition and disposition[0] == "attachment":
        return True
    return not (part["type"] == "text" and part["subtype"] in ("plain", "html"))


def attachments(structure: Part) -> list[Attachment]:
    """Parts that are not the displayed body text: files, images, forwarded messages."""
    found = []
    for path, part in walk(structure):
        if not is_attachment(part):
            continue
        content_id = (part.get("id") or "").strip().strip("<>")
        disposition = part.get("disposition")
        found.append(
            Attachment(
                path=path,
                filename=part_filename(part) or "",
                content_type=f"{part['type']}/{part['subtype']}",
                size=part.get("size", 0),
                content_id=content_id,
                inline=bool(content_id) and not (disposition and disposition[0] == "attachment"),
            )
        )
    return found


def display_parts(structure: Part) -> tuple[str | None, list[str]]:
    """(path of the HTML body or None, paths of the plain-text bodies) to show for this message.

    RFC 2046 §5.1.4: in multipart/alternative the last part the reader
    understands is the best; we prefer text/html there and fall back to text/plain.
    """
    html, texts = _choose(structure, "")
    return html, texts


def _choose(part: Part, path: str) -> tuple[str | None, list[str]]:
    if "parts" not in part:
        return _choose_leaf(part, path or "1")
    children = [(f"{path}.{i}" if path else str(i), child) for i, child in enumerate(part["parts"], start=1)]
    if part["subtype"] == "alternative":
        for child_path, child in reversed(children):
            html, texts = _choose(child, child_path)
            if html or texts:
                return html, texts
        return None, []
    found_html: str | None = None
    found_texts: list[str] = []
    for child_path, child in children:
        child_html, child_texts = _choose(child, child_path)
        found_html = found_html or child_html
        found_texts.extend(child_texts)
    return found_html, found_texts


def _choose_leaf(part: Part, path: str) -> tuple[str | None, list[str]]:
    if is_attachment(part):
        return None, []
    return (path, []) if part["subtype"] == "html" else (None, [path])


class _TextCollector(HTMLParser):
    """Visible text of an HTML document (script and style contents dropped)."""

    _SKIP = {"script", "style", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except (AssertionError, ValueError):  # HTMLParser on hostile markup
        pass
    return "".join(collector.chunks)


def extract_text(raw: bytes, structure: Part, limit: int = MAX_INDEX_TEXT_CHARS) -> str:
    """The body text of a message for search and snippets: its plain parts, else its HTML as text."""
    html, texts = display_parts(structure)
    chunks = []
    for path in texts:
        part = part_at(structure, path)
        if part is not None:
            chunks.append(part_text(raw, part))
    if not chunks and html:
        part = part_at(structure, html)
        if part is not None:
            chunks.append(html_to_text(part_text(raw, part)))
    return "\n".join(chunks)[:limit]


def snippet(text: str, length: int = SNIPPET_CHARS) -> str:
    """The first words of a body, on one line, without quoted lines.

    Reads only as much of `text` as it needs: a window of whole lines, widened
    until it gives `length` characters or holds the whole text.
    """
    window = 4 * length
    while True:
        lines = text[:window].splitlines()
        if window < len(text):
            lines = lines[:-1]  # the window may have cut the last line short
        found = _SPACES.sub(" ", " ".join(line for line in lines if not line.lstrip().startswith(">"))).strip()
        if len(found) >= length or window >= len(text):
            return found[:length]
        window *= 4
