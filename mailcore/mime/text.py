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
# Octets of a part's encoded body read for that much text: enough for any charset and transfer
# encoding (quoted-printable 4-octet UTF-8 is about 12.5 octets a character), so a 40 MB text
# part is not decoded whole to index its beginning.
INDEX_OCTETS_PER_CHAR = 16
# Characters of an HTML body read for its text: Python's HTMLParser takes about half a second a
# megabyte, and a message is indexed when it is delivered.
MAX_HTML_SCAN_CHARS = 1_000_000
HTML_FEED_CHARS = 64 * 1024
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


def _decoded_beginning(raw: bytes, part: Part, max_octets: int) -> bytes:
    start, end = part["body_start"], part["end"]
    if end - start > max_octets:
        line_end = raw.find(b"\r\n", start + max_octets, end)
        end = end if line_end < 0 else line_end
    return decode_transfer_encoding(raw[start:end], part.get("encoding") or "7BIT")


def charset_of(part: Part) -> str:
    value = dict(part.get("params") or []).get("charset", "us-ascii").strip().lower() or "us-ascii"
    value = _CHARSET_ALIASES.get(value, value)
    try:
        return codecs.lookup(value).name
    except LookupError:
        return "utf-8"


def part_text(raw: bytes, part: Part, max_octets: int | None = None) -> str:
    """A text part decoded to str; undecodable bytes become U+FFFD, never an exception.

    With `max_octets`, only the beginning of the encoded body is read: at least that many octets,
    up to the end of a line (a base64 quantum is not cut).
    """
    data = decoded_body(raw, part) if max_octets is None else _decoded_beginning(raw, part, max_octets)
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
        self.length = 0
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIP:
            self.skipping += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self._keep("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self.skipping:
            self.skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self._keep(data)

    def _keep(self, text: str) -> None:
        self.chunks.append(text)
        self.length += len(text)


def html_to_text(html: str, limit: int | None = None) -> str:
    """The visible text of `html`; with `limit`, at least that many characters when the document has
    them, read from at most MAX_HTML_SCAN_CHARS of it (the rest is not parsed)."""
    collector = _TextCollector()
    if limit is not None:
        html = html[:MAX_HTML_SCAN_CHARS]
    try:
        for start in range(0, len(html), HTML_FEED_CHARS):
            collector.feed(html[start : start + HTML_FEED_CHARS])
            if limit is not None and collector.length >= limit:
                break
        collector.close()
    except (AssertionError, ValueError):  # HTMLParser on hostile markup
        pass
    return "".join(collector.chunks)


def extract_text(raw: bytes, structure: Part, limit: int = MAX_INDEX_TEXT_CHARS) -> str:
    """The body text of a message for search and snippets: its plain parts, else its HTML as text.

    At most `limit` characters, and only as much of the message is decoded as they need: a message
    of many parts or a very large one costs no more than its first `limit` characters of text.
    """
    html, texts = display_parts(structure)
    leaves = dict(walk(structure))
    max_octets = limit * INDEX_OCTETS_PER_CHAR
    chunks: list[str] = []
    joined = -1  # the length of "\n".join(chunks)
    for path in texts:
        if joined >= limit:
            break
        chunks.append(part_text(raw, leaves[path], max_octets))
        joined += 1 + len(chunks[-1])
    if not chunks and html:
        html_octets = MAX_HTML_SCAN_CHARS * INDEX_OCTETS_PER_CHAR  # markup is most of an HTML body
        chunks.append(html_to_text(part_text(raw, leaves[html], html_octets), limit))
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
