"""Modified UTF-7 folder names (RFC 3501 §5.1.3), used unless the client enabled UTF-8 (RFC 9051 §5.1)."""
from __future__ import annotations

import base64

from mailcore.imap.errors import Bad


def encode(name: str) -> str:
    """Unicode to modified UTF-7: printable ASCII stays, `&` becomes `&-`, the rest `&base64-`."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """Modified UTF-7 to Unicode; a malformed shift sequence is a BAD (RFC 3501 §5.1.3)."""
    out: list[str] = []
    position = 0
    while position < len(name):
        amp = name.find("&", position)
        if amp < 0:
            out.append(name[position:])
            break
        out.append(name[position:amp])
        dash = name.find("-", amp)
        if dash < 0:
            raise Bad("invalid modified UTF-7 in mailbox name")
        chunk = name[amp + 1 : dash]
        out.append("&" if not chunk else _decode_chunk(chunk))
        position = dash + 1
    return "".join(out)


def _decode_chunk(chunk: str) -> str:
    data = chunk.replace(",", "/")
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")
    except (ValueError, UnicodeDecodeError) as err:
        raise Bad("invalid modified UTF-7 in mailbox name") from err
