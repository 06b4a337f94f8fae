"""Delivery status notification requests (RFC 3461): the MAIL and RCPT parameters and what they ask.

MAIL FROM takes RET (FULL or HDRS: what a failure report returns of the
message, §4.3) and ENVID (the sender's own id for the transaction, §4.4); RCPT
TO takes NOTIFY (NEVER, or any of SUCCESS, FAILURE and DELAY: which reports the
sender wants about that recipient, §4.1) and ORCPT (the recipient as the sender
first gave it, §4.2). ENVID and ORCPT arrive xtext-encoded (§4); they are kept
decoded, as the reports show them (RFC 3464 §2.2.1, §2.3.1), and encoded again
when passed on to a server that offers DSN.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SUCCESS, FAILURE, DELAY, NEVER = "SUCCESS", "FAILURE", "DELAY", "NEVER"
_EVENTS = (SUCCESS, FAILURE, DELAY)
FULL, HEADERS = "FULL", "HDRS"
MAIL_PARAMETERS = ("RET", "ENVID")
RCPT_PARAMETERS = ("NOTIFY", "ORCPT")
ENVID_MAX = 100  # §4.4
ORCPT_MAX = 500  # §4.2: the whole parameter value
_ADDRESS_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+")  # an atom (RFC 5321 §4.1.2)
_HEXCHAR = re.compile(r"\+([0-9A-F]{2})")


class ParameterError(ValueError):
    """A DSN parameter is malformed; the text is the reason for the 501 reply."""


@dataclass(frozen=True)
class RecipientRequest:
    notify: str = ""  # "" (not given), "NEVER", or SUCCESS, FAILURE, DELAY (in that order) joined by commas
    orcpt: str = ""  # "addr-type;address", decoded; "" when not given

    def wants(self, event: str) -> bool:
        """Whether the sender wants a report of `event` (SUCCESS, FAILURE or DELAY) for this recipient.

        §4.1: without NOTIFY, a failure is reported and a delay may be (we do); success is not.
        """
        if not self.notify:
            return event != SUCCESS
        return event in self.notify.split(",")


NO_REQUEST = RecipientRequest()


@dataclass(frozen=True)
class Request:
    """What the sender of one transaction asked: RET and ENVID, and NOTIFY and ORCPT per recipient."""

    ret: str = ""  # "", FULL or HDRS
    envid: str = ""
    recipients: Mapping[str, RecipientRequest] = field(default_factory=dict)

    def of(self, address: str) -> RecipientRequest:
        return self.recipients.get(address, NO_REQUEST)


NOTHING_ASKED = Request()


def take(params: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Split the parameters called `names` off an ESMTP parameter string; the rest, and their values by name.

    Names are matched without regard to case and values are kept as given (an
    ENVID is case-sensitive). A name given twice is refused (RFC 5321 §4.1.2 allows each once).
    """
    rest, values = [], {}
    for param in params.split():
        name, eq, value = param.partition("=")
        key = name.upper()
        if key not in names:
            rest.append(param)
            continue
        if key in values:
            raise ParameterError(f"{key} given twice")
        if not eq or not value:
            raise ParameterError(f"{key} needs a value")
        values[key] = value
    return " ".join(rest), values


def mail_request(values: Mapping[str, str]) -> Request:
    """RET and ENVID of MAIL FROM (§4.3, §4.4)."""
    ret = values.get("RET", "").upper()
    if ret not in ("", FULL, HEADERS):
        raise ParameterError("RET must be FULL or HDRS")
    if len(values.get("ENVID", "")) > ENVID_MAX:
        raise ParameterError(f"ENVID longer than {ENVID_MAX} characters")
    return Request(ret=ret, envid=xtext_decode(values["ENVID"]) if "ENVID" in values else "")


def recipient_request(values: Mapping[str, str], utf8: bool = False) -> RecipientRequest:
    """NOTIFY and ORCPT of RCPT TO (§4.1, §4.2); `utf8`: the transaction said SMTPUTF8 (RFC 6533 §3)."""
    return RecipientRequest(notify=_notify(values.get("NOTIFY", "")), orcpt=_orcpt(values.get("ORCPT", ""), utf8))


def _notify(value: str) -> str:
    words = value.upper().split(",") if value else []
    if words == [NEVER]:
        return NEVER
    if any(word not in _EVENTS for word in words) or len(set(words)) != len(words):
        raise ParameterError("NOTIFY must be NEVER, or SUCCESS, FAILURE and DELAY separated by commas")
    return ",".join(event for event in _EVENTS if event in words)


def _orcpt(value: str, utf8: bool) -> str:
    if not value:
        return ""
    if len(value) > ORCPT_MAX:
        raise ParameterError(f"ORCPT longer than {ORCPT_MAX} characters")
    address_type, semicolon, address = value.partition(";")
    if not semicolon or not _ADDRESS_TYPE.fullmatch(address_type) or not address:
        raise ParameterError("ORCPT must be addr-type;address")
    return f"{address_type};{xtext_decode(address, utf8)}"


def xtext_decode(text: str, utf8: bool = False) -> str:
    """§4: "+" and two upper-case hex digits stand for one octet; the rest is itself.

    The result must be printable (it goes into report header fields as it is):
    escapes stand for printable ASCII only; with `utf8`, other printable
    characters may appear as themselves.
    """
    if "=" in text or any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise ParameterError("malformed xtext")
    if not text.isascii() and not utf8:
        raise ParameterError("non-ASCII parameter value without SMTPUTF8")
    if "+" in _HEXCHAR.sub("", text):
        raise ParameterError("malformed xtext: + must be followed by two upper-case hex digits")
    if any(not 32 <= int(octet, 16) <= 126 for octet in _HEXCHAR.findall(text)):
        raise ParameterError("parameter value decodes to a character that is not printable ASCII")
    decoded = _HEXCHAR.sub(lambda match: chr(int(match.group(1), 16)), text)
    if not decoded.isprintable():
        raise ParameterError("parameter value is not printable")
    return decoded


def xtext_encode(text: str) -> str:
    """§4: every character outside "!" to "~", and "+" and "=", as "+" and two hex digits (ASCII text only)."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}" for c in text)


def mail_parameters(request: Request) -> list[str]:
    """RET and ENVID for MAIL FROM when passing a request on to a server that offers DSN."""
    params = [f"RET={request.ret}"] if request.ret else []
    if request.envid and request.envid.isascii():
        params.append(f"ENVID={xtext_encode(request.envid)}")
    return params


def rcpt_parameters(recipient: RecipientRequest) -> list[str]:
    """NOTIFY and ORCPT for RCPT TO when passing a request on (an ORCPT that is not ASCII is left out)."""
    params = [f"NOTIFY={recipient.notify}"] if recipient.notify else []
    address_type, _, address = recipient.orcpt.partition(";")
    if address and recipient.orcpt.isascii():
        params.append(f"ORCPT={address_type};{xtext_encode(address)}")
    return params
