"""Building the messages the webmail sends and saves (Python's email package does the encoding).

Header fields come from form input, so CR and LF are refused in every one of
them (RFC 5322 §2.2: a field body may not contain a bare CR or LF); addresses go
through mailcore.address.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses, make_msgid

from django.utils import timezone

from mailcore.address import AddressError, parse_address
from mailcore.conf import conf

MAX_RECIPIENTS = 100  # per message from the webmail
MAX_SUBJECT_CHARS = 998  # RFC 5322 §2.1.1 line limit
_LINE_BREAK = re.compile(r"[\r\n]")
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|fwd?|tr)\s*:\s*", re.IGNORECASE)


class ComposeError(ValueError):
    """Form input that cannot become a message; the text is shown to the user."""


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Draft:
    """What the compose form holds."""

    sender: str
    display_name: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Upload] = field(default_factory=list)


def refuse_line_breaks(**fields: str) -> None:
    for name, value in fields.items():
        if _LINE_BREAK.search(value or ""):
            raise ComposeError(f"{name}: line breaks are not allowed in header fields")


def parse_recipients(text: str) -> list[str]:
    """The addresses of a To/Cc/Bcc field, each checked by mailcore.address."""
    return [address for _name, address in named_recipients(text)]


def named_recipients(text: str) -> list[tuple[str, str]]:
    """(display name, checked address) of each entry of a To/Cc/Bcc field, names kept as typed."""
    found = []
    for name, address in getaddresses([text]):
        if not address.strip():
            continue
        try:
            found.append((name.strip(), str(parse_address(address.strip()))))
        except AddressError as err:
            raise ComposeError(f"{address}: {err}") from err
    return found


def address_list(entries: list[tuple[str, str]]) -> str:
    """An RFC 5322 §3.4 address-list for a header, display names kept (encoded words when not ASCII)."""
    return ", ".join(formataddr(entry) for entry in entries)


def build(draft: Draft, include_bcc: bool = False) -> tuple[bytes, list[str]]:
    """The RFC 5322 message (bytes) and its envelope recipients (To, Cc and Bcc)."""
    refuse_line_breaks(to=draft.to, cc=draft.cc, bcc=draft.bcc, subject=draft.subject, sender=draft.sender,
                       display_name=draft.display_name, in_reply_to=draft.in_reply_to, references=draft.references)
    to, cc, bcc = named_recipients(draft.to), named_recipients(draft.cc), named_recipients(draft.bcc)
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        raise ComposeError(f"at most {MAX_RECIPIENTS} recipients")
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((draft.display_name, draft.sender))
    if to:
        message["To"] = address_list(to)
    if cc:
        message["Cc"] = address_list(cc)
    if bcc and include_bcc:  # kept in drafts only, never sent (RFC 5322 §3.6.3)
        message["Bcc"] = address_list(bcc)
    message["Subject"] = draft.subject[:MAX_SUBJECT_CHARS]
    message["Date"] = format_datetime(timezone.now())
    message["Message-ID"] = make_msgid(domain=draft.sender.rpartition("@")[2] or conf.hostname)
    if draft.in_reply_to:
        message["In-Reply-To"] = draft.in_reply_to
    if draft.references:
        message["References"] = draft.references
    message["MIME-Version"] = "1.0"
    message.set_content(draft.text or "")
    if draft.html:
        message.add_alternative(draft.html, subtype="html")
    for upload in draft.attachments:
        maintype, _, subtype = (upload.content_type or "application/octet-stream").partition("/")
        message.add_attachment(upload.data, maintype=maintype or "application",
                               subtype=subtype or "octet-stream", filename=upload.filename)
    return message.as_bytes(), [address for _name, address in to + cc + bcc]


def reply_subject(subject: str, prefix: str) -> str:
    """`Re: subject` without piling up prefixes."""
    base = subject
    while _REPLY_PREFIX.match(base):
        base = _REPLY_PREFIX.sub("", base, count=1)
    return f"{prefix} {base}".strip()


def quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def references_for(parent_references: str, parent_message_id: str) -> str:
    """RFC 5322 §3.6.4: the parent's References (or In-Reply-To) followed by the parent's Message-ID."""
    ids = re.findall(r"<[^<>\s]+>", parent_references or "")
    if parent_message_id and parent_message_id not in ids:
        ids.append(parent_message_id)
    return " ".join(ids)
