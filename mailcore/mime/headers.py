"""Header blocks: split, unfold, look up, and decode for people (RFC 5322 §2.2, RFC 2047)."""
from __future__ import annotations

import re
import string
from email.header import decode_header, make_header
from email.policy import default as default_policy

from mailcore.address import ASCII_ATEXT, ASCII_DOT_ATOM

CRLF = b"\r\n"
_FIELD_NAME = re.compile(rb"^[\x21-\x39\x3b-\x7e]+$")  # RFC 5322 §3.6.8 ftext

# The common shapes of an address list, read without the stdlib's full parser: `local@domain`,
# `<local@domain>`, `Some Name <local@domain>` and `"Some, Name" <local@domain>`, comma-separated,
# all ASCII dot-atoms (RFC 5322 §3.2.3, §3.4). Anything else (comments, groups, encoded words, quoted local parts,
# obsolete syntax, UTF-8) goes to the full parser; tests check both give the same result.
_SIMPLE_MAILBOX = re.compile(
    rf"[ \t]*(?:({ASCII_DOT_ATOM})@({ASCII_DOT_ATOM})"
    rf'|(?:({ASCII_ATEXT}+(?: {ASCII_ATEXT}+)*)|"([ !#-\[\]-~]*)")?'  # display name: atoms or quoted
    rf"[ \t]*<({ASCII_DOT_ATOM})@({ASCII_DOT_ATOM})>)[ \t]*(,|\Z)"
)
# What may follow an "@" as a domain, up to the next delimiter of an address list (RFC 5322 §3.2.3 specials).
_DOMAIN_TEXT = re.compile(r'[^\s<>,;:()"\\\[\]@]*')


def bytes_to_text(value: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532) when valid, else Latin-1 so no byte is lost."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def split_header(entity: bytes, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Return (end of header block, start of body) for the entity `entity[start:end]`.

    RFC 5322 §2.1: the header ends at the first empty line. A header with no
    empty line after it has an empty body. Offsets are into `entity`, which is
    searched in place (a part of a large message is not copied to find its header).
    """
    end = len(entity) if end is None else end
    if entity.startswith(CRLF, start, end):
        return start, start + 2
    blank = entity.find(b"\r\n\r\n", start, end)
    if blank < 0:
        return end, end
    return blank + 2, blank + 4


def parse_fields(block: bytes) -> list[tuple[str, str]]:
    """Unfold a header block into (lowercased name, raw value) pairs, in order.

    Lines that are not fields (no colon, bad name) are skipped, as RFC 5322 §3.6
    leaves them undefined and readers commonly do. A field's lines are joined once
    (a field folded over 40,000 lines cost seconds when each line was added to a copy).
    """
    unfolded: list[tuple[str, list[str]]] = []
    for line in block.split(CRLF):
        if line[:1] in (b" ", b"\t") and unfolded:
            unfolded[-1][1].append(bytes_to_text(line.strip()))
            continue
        raw_name, colon, raw_value = line.partition(b":")
        raw_name = raw_name.rstrip()
        if colon and _FIELD_NAME.match(raw_name):
            unfolded.append((raw_name.decode("ascii").lower(), [bytes_to_text(raw_value.strip())]))
    return [(name, " ".join(pieces)) for name, pieces in unfolded]


def first(fields: list[tuple[str, str]], name: str) -> str | None:
    """The value of the first field called `name` (lowercase), or None."""
    for field_name, value in fields:
        if field_name == name:
            return value
    return None


# Characters of a header value decoded for display: the stdlib joins encoded words in a time that grows
# faster than their number (a 1 MB Subject of 40,000 words took seconds); no one reads past this.
MAX_DECODED_CHARS = 64 * 1024


def decode_words(value: str) -> str:
    """Decode RFC 2047 encoded-words for display (the first MAX_DECODED_CHARS characters of `value`);
    malformed words stay as written."""
    value = value[:MAX_DECODED_CHARS]
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


def address_groups(value: str | None) -> list[tuple[str | None, list[tuple[str, str, str]]]]:
    """Parse an address-list header (RFC 5322 §3.4) into groups of (name, local, domain).

    A plain address becomes a group whose name is None. Defective input yields
    what could be read, never an exception.
    """
    if not value:
        return []
    simple = _simple_address_list(value)
    if simple is not None:
        return [(None, [member]) for member in simple]
    if len(value) <= BATCHED_FROM:
        return _parsed_address_list(value)
    elements = _top_level_elements(value)
    batches = [",".join(elements[i : i + ADDRESS_BATCH]) for i in range(0, len(elements), ADDRESS_BATCH)]
    return [group for batch in batches for group in _parsed_address_list(batch)]


# The stdlib's parser copies the rest of the header for each token it reads: a list of 8,000 addresses
# with comments took 18 s. A list longer than BATCHED_FROM characters is given to it ADDRESS_BATCH
# elements at a time. Well-formed elements read the same either way; a malformed one may read otherwise
# than in the whole list (the stdlib's recovery looks at what follows), and a batch the stdlib gives up
# on loses only its own elements.
BATCHED_FROM = 4096
ADDRESS_BATCH = 50


def _parsed_address_list(value: str) -> list[tuple[str | None, list[tuple[str, str, str]]]]:
    try:
        header = default_policy.header_factory("to", value)
        groups = header.groups
    except Exception:  # noqa: BLE001 - the stdlib parser raises many types on hostile input
        return []
    result: list[tuple[str | None, list[tuple[str, str, str]]]] = []
    for group in groups:
        members = [(a.display_name or "", a.username or "", a.domain or "") for a in group.addresses]
        result.append((group.display_name, members))
    return result


def _top_level_elements(value: str) -> list[str]:
    """`value` cut at the commas that separate the elements of an address list (RFC 5322 §3.4): those
    outside quoted strings, comments, angle brackets, domain literals, groups and encoded words. Where
    the text is unbalanced (a quote or bracket never closed) no comma after it separates: the rest stays
    one element. Tests check that well-formed elements read as the whole list does."""
    elements, start = [], 0
    depth, quoted, escaped, closing = 0, False, False, ""  # closing: the ">", "]" or ";" awaited
    position, end = 0, len(value)
    while position < end:
        char = value[position]
        if escaped:
            escaped = False
        elif char == "=" and not depth and closing != "]" and value.startswith("=?", position):
            position = _encoded_word_end(value, position)  # the stdlib reads one as a word, commas and all
            continue
        elif char == "\\" and (quoted or depth or closing == "]"):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif depth:
            depth -= char == ")"
        elif char == '"':
            quoted = True
        elif closing:
            closing = "" if char == closing else closing
        elif char in "<[:":
            closing = {"<": ">", "[": "]", ":": ";"}[char]
        elif char == ",":
            elements.append(value[start:position])
            start = position + 1
        position += 1
    elements.append(value[start:])
    return elements


def _encoded_word_end(value: str, start: int) -> int:
    """Where what the stdlib's parser reads as an RFC 2047 encoded word at `start` ("=?" ...) ends: after
    the first "?=", or the next one when the first was an "=XX" escape of the Q encoding; after "=?"
    alone when there is none."""
    close = value.find("?=", start + 2)
    if close < 0:
        return start + 2
    after = close + 2
    escape = value[after : after + 2]
    if len(escape) == 2 and all(c in string.hexdigits for c in escape) and value.count("?", start + 2, close) < 2:
        further = value.find("?=", after)
        return len(value) if further < 0 else further + 2
    return after


def unreadable_address_list(value: str) -> bool:
    """Whether an address-list header holds an "@" outside its quoted strings and comments that is not part of
    an address read from it (RFC 5322 §3.4): `Alice <a@x> <b@y>` reads as a@x here and may read as b@y in a
    mail program. Obsolete but unambiguous syntax (an empty element, a trailing comma, §4.4) is readable."""
    if _simple_address_list(value) is not None:
        return False
    read = sum(len(group) for _name, group in address_groups(value))
    return len(at_sign_domains(value)) != read


def at_sign_domains(value: str) -> list[str]:
    """The text after each "@" outside quoted strings and (nested) comments (RFC 5322 §3.2.2, §3.2.4), up to
    the next delimiter: what any reader of the header could take for the domain of an address ("" for a
    domain literal or nothing)."""
    domains, depth, quoted, escaped = [], 0, False, False
    for position, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
        elif char == "@":
            domains.append(_DOMAIN_TEXT.match(value, position + 1)[0])  # type: ignore[index]  # always matches
    return domains


def _simple_address_list(value: str) -> list[tuple[str, str, str]] | None:
    """(name, local, domain) of each address when the list has only the common shapes, else None."""
    if "=?" in value:  # encoded words (RFC 2047) need the full parser
        return None
    members: list[tuple[str, str, str]] = []
    position, end = 0, len(value)
    while position < end:
        match = _SIMPLE_MAILBOX.match(value, position)
        if match is None:
            return None
        bare_local, bare_domain, atoms, quoted, local, domain, comma = match.groups()
        if bare_local is not None:
            members.append(("", bare_local, bare_domain))
        else:
            members.append((atoms or quoted or "", local, domain))
        position = match.end()
        if comma and position >= end:
            return None  # a trailing comma: let the full parser decide
    return members or None


def raw_fields(block: bytes) -> list[tuple[str, bytes]]:
    """A header block as (lowercased name, raw bytes of the field with its folded lines and CRLFs).

    For IMAP BODY[HEADER.FIELDS (...)] (RFC 9051 §6.4.5), which returns fields exactly as stored, and
    for the SMTP servers' removals. Lines that are not fields come as fields named "". Each field's
    lines are joined once.
    """
    fields: list[tuple[str, list[bytes]]] = []
    for line in block.split(CRLF)[:-1] if block.endswith(CRLF) else block.split(CRLF):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
            continue
        raw_name, colon, _ = line.partition(b":")
        if colon and _FIELD_NAME.match(raw_name.rstrip()):
            fields.append((raw_name.rstrip().decode("ascii").lower(), [line]))
        elif line:
            fields.append(("", [line]))
    return [(name, CRLF.join(lines) + CRLF) for name, lines in fields]
