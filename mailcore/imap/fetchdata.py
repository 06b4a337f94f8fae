"""FETCH data items as bytes: ENVELOPE, BODY/BODYSTRUCTURE, BODY[section], BINARY[section] (RFC 9051 §7.5.2).

Everything comes from the structure the MIME parser cached at store time
(mailcore.mime.parse): sections are slices of the stored blob by byte offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailcore.imap import wire
from mailcore.imap.errors import No
from mailcore.mime import decode_transfer_encoding
from mailcore.mime.headers import raw_fields

Part = dict[str, Any]
KNOWN_ENCODINGS = {"7BIT", "8BIT", "BINARY", "BASE64", "QUOTED-PRINTABLE"}


@dataclass
class Section:
    """RFC 9051 §6.4.5 section-spec: a part path and an optional text specifier."""

    path: tuple[int, ...] = ()
    text: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: list[str] = field(default_factory=list)

    def label(self) -> str:
        parts = [".".join(str(n) for n in self.path)] if self.path else []
        if self.text:
            parts.append(self.text)
        text = ".".join(parts)
        if self.fields:
            text += " (" + " ".join(self.fields) + ")"
        return text


def envelope(env: dict[str, Any], utf8: bool) -> bytes:
    """RFC 9051 §7.5.2 ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id."""
    items = [wire.string(env.get("date"), utf8), wire.string(env.get("subject"), utf8)]
    for key in ("from", "sender", "reply_to", "to", "cc", "bcc"):
        items.append(_addresses(env.get(key) or [], utf8))
    items.append(wire.string(env.get("in_reply_to"), utf8))
    items.append(wire.string(env.get("message_id"), utf8))
    return wire.plist(items)


def _addresses(addresses: list[list[str | None]], utf8: bool) -> bytes:
    if not addresses:
        return b"NIL"
    return b"(" + b"".join(wire.plist([wire.string(v, utf8) for v in a]) for a in addresses) + b")"


def body_structure(part: Part, extended: bool, utf8: bool) -> bytes:
    """RFC 9051 §7.5.2 BODY (extended=False) and BODYSTRUCTURE (extended=True, with extension data)."""
    if "parts" in part:
        return _multipart(part, extended, utf8)
    items = [
        wire.string(part["type"].upper()),
        wire.string(part["subtype"].upper()),
        _params(part["params"], utf8),
        wire.string(part.get("id"), utf8),
        wire.string(part.get("description"), utf8),
        wire.string(part["encoding"]),
        str(part["size"]).encode(),
    ]
    if "message" in part:  # RFC 9051 §7.5.2 body-type-msg
        inner = part["message"]
        items += [envelope(inner["envelope"], utf8), body_structure(inner["body"], extended, utf8)]
        items.append(str(part["lines"]).encode())
    elif part["type"] == "text":
        items.append(str(part["lines"]).encode())
    if extended:
        items += [wire.string(part.get("md5"), utf8), *_extension(part, utf8)]
    return wire.plist(items)


def _multipart(part: Part, extended: bool, utf8: bool) -> bytes:
    children = b"".join(body_structure(child, extended, utf8) for child in part["parts"])
    out = b"(" + children + b" " + wire.string(part["subtype"].upper())
    if extended:
        out += b" " + b" ".join([_params(part["params"], utf8), *_extension(part, utf8)])
    return out + b")"


def _extension(part: Part, utf8: bool) -> list[bytes]:
    """body-fld-dsp, body-fld-lang, body-fld-loc (RFC 9051 §9)."""
    disposition = part.get("disposition")
    dsp = b"NIL"
    if disposition:
        dsp = wire.plist([wire.string(disposition[0].upper()), _params(disposition[1], utf8)])
    language = part.get("language")
    lang = wire.plist([wire.string(tag, utf8) for tag in language]) if language else b"NIL"
    return [dsp, lang, wire.string(part.get("location"), utf8)]


def _params(params: list[list[str]], utf8: bool) -> bytes:
    if not params:
        return b"NIL"
    return wire.plist([wire.string(name.upper()) + b" " + wire.string(value, utf8) for name, value in params])


def locate(structure: Part, path: tuple[int, ...]) -> Part | None:
    """The part a section path names (RFC 9051 §6.4.5): a non-multipart message has only part 1."""
    part = structure
    for depth, number in enumerate(path):
        if depth > 0 and "message" in part:
            part = part["message"]["body"]
        if "parts" in part:
            if number > len(part["parts"]):
                return None
            part = part["parts"][number - 1]
        elif number != 1:
            return None
    return part


def section_bytes(raw: bytes, structure: Part, section: Section) -> bytes | None:
    """The bytes of a section, or None when the message has no such part."""
    part = locate(structure, section.path)
    if part is None:
        return None
    if section.text == "MIME":
        return raw[part["header_start"] : part["body_start"]]
    if not section.text:
        if not section.path:
            return raw
        return raw[part["body_start"] : part["end"]]
    message = part if not section.path else part.get("message", {}).get("body")
    if message is None:
        return b""
    header = raw[message["header_start"] : message["body_start"]]
    if section.text == "TEXT":
        return raw[message["body_start"] : message["end"]]
    if section.text == "HEADER":
        return header
    wanted = {name.lower() for name in section.fields}
    keep = section.text == "HEADER.FIELDS"
    chosen = [data for name, data in raw_fields(header) if name and (name in wanted) == keep]
    return b"".join(chosen) + b"\r\n"


def binary_bytes(raw: bytes, structure: Part, path: tuple[int, ...]) -> bytes | None:
    """RFC 3516 §4.2 BINARY[section]: the part's body with its transfer encoding undone."""
    if not path:
        return raw
    part = locate(structure, path)
    if part is None:
        return None
    body = raw[part["body_start"] : part["end"]]
    if "parts" in part or "message" in part:
        return body
    if part["encoding"] not in KNOWN_ENCODINGS:
        raise No(f"unknown Content-Transfer-Encoding {part['encoding']}", "UNKNOWN-CTE")  # RFC 3516 §4.3
    return decode_transfer_encoding(body, part["encoding"])
