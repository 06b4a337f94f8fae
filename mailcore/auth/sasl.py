"""SASL mechanisms shared by the protocols: PLAIN (RFC 4616) decoding of a base64 client response."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


class SaslError(Exception):
    """The client's SASL response is malformed; the message says how (safe to send back)."""


@dataclass(frozen=True)
class PlainCredentials:
    authzid: str
    authcid: str
    password: str


def decode_base64_response(text: str) -> bytes:
    """RFC 4954 §4 / RFC 5034 §4 / RFC 9051 §6.2.2: a client response is base64; "=" is an empty one."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as err:
        raise SaslError("invalid base64 in SASL response") from err


def decode_plain(response: bytes) -> PlainCredentials:
    """RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd."""
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise SaslError("PLAIN response must be authzid NUL authcid NUL password")
    try:
        authzid, authcid, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError as err:
        raise SaslError("PLAIN response is not UTF-8") from err
    if not authcid or not password:
        raise SaslError("PLAIN response lacks a login or password")
    return PlainCredentials(authzid, authcid, password)
