"""MTA-STS (RFC 8461) for outbound delivery: a receiving domain's policy that its MX hosts take mail only over
verified TLS.

Before connecting to a domain's MX hosts, `policy_for` asks DNS for the
`_mta-sts` TXT record (§3.1) through the configured resolver. When it names a
policy id we do not hold, the policy is fetched over HTTPS from
`https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3: certificate valid for
that name, HTTP 200, no redirects, text/plain, 64 KB at most), the host's
address also found through the configured resolver, and kept in the database
(`MtaStsPolicy`) until its max_age runs out, for every worker. A failed lookup or
fetch falls back to the policy held, or to none (§3.3, §5.1): MTA-STS protects
against a downgrade, it never stops mail because its own discovery failed.

In `enforce` mode only MX hosts the policy names are used (§4.1), and each must
offer STARTTLS with a certificate valid for its name (§4.2, checked against the
system's CAs or MAIL_OUTBOUND_CA_FILE); when none does, the mail waits (§5.1:
temporarily undeliverable, `4.7.5`). In `testing` mode delivery goes on as without a
policy and a host the policy does not name is logged. `none` withdraws a policy.
A message with "TLS-Required: No" (RFC 8689 §4) is sent as if there were no policy.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import ssl
import threading
from dataclasses import dataclass

from django.utils import timezone

from mailcore import dns as maildns
from mailcore.conf import conf
from mailcore.delivery.client import MTA_STS_STATUS
from mailcore.delivery.mx import is_forbidden_address
from mailcore.delivery.outcome import temporary
from mailcore.mime.headers import first
from mailcore.models import MtaStsPolicy
from mailcore.smtp.headers import header_values

log = logging.getLogger(__name__)

ENFORCE, TESTING, NONE = "enforce", "testing", "none"
MODES = (ENFORCE, TESTING, NONE)
MAX_AGE_LIMIT = 31_557_600  # §3.2: max_age at most a year
MAX_POLICY_BYTES = 64 * 1024  # §3.3: senders may refuse larger bodies
FETCH_TIMEOUT = 30.0  # §3.3 suggests at most a minute; for the whole fetch from one address
MAX_POLICY_ADDRESSES = 3  # addresses of the policy host tried, each within FETCH_TIMEOUT
POLICY_PATH = "/.well-known/mta-sts.txt"
_RECORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")  # §3.1: sts-id = 1*32( ALPHA / DIGIT )
_FIELD = re.compile(r"([A-Za-z0-9_]+)[ \t]*:[ \t]*(.*?)[ \t]*")  # §3.2: key ":" *WSP value *WSP


class PolicyError(Exception):
    """No usable policy could be fetched or parsed (the reason is the text)."""


@dataclass(frozen=True)
class Policy:
    """A parsed policy file (§3.2)."""

    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_record(records: list[str]) -> str | None:
    """The policy id of the one `v=STSv1` TXT record among `records`, or None (§3.1: none, several, or invalid)."""
    candidates = [r for r in records if r.startswith("v=STSv1;") or r == "v=STSv1"]
    if len(candidates) != 1:
        return None
    fields = dict(_pair(part) for part in candidates[0].split(";")[1:] if part.strip())
    policy_id = fields.get("id", "")
    return policy_id if _RECORD_ID.fullmatch(policy_id) else None


def _pair(part: str) -> tuple[str, str]:
    key, _, value = part.strip().partition("=")
    return key, value


def parse_policy(text: str) -> Policy:
    """The policy in `text`; PolicyError when it is not a valid STSv1 policy (§3.2)."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        match = _FIELD.fullmatch(line)
        if not match:
            continue
        key, value = match[1], match[2]
        if key == "mx":
            mx.append(value.lower().rstrip("."))
        else:
            fields.setdefault(key, value)  # the first occurrence counts
    if fields.get("version") != "STSv1":
        raise PolicyError(f"version is {fields.get('version')!r}, not STSv1")
    mode = fields.get("mode", "")
    if mode not in MODES:
        raise PolicyError(f"mode {mode!r} is not enforce, testing or none")
    max_age = fields.get("max_age", "")
    if not (max_age.isdigit() and len(max_age) <= 10 and int(max_age) <= MAX_AGE_LIMIT):
        raise PolicyError(f"max_age {max_age!r} is not 0-{MAX_AGE_LIMIT}")
    if not mx and mode != NONE:
        raise PolicyError("no mx pattern")
    return Policy(mode, tuple(mx), int(max_age))


def matches(host: str, patterns: tuple[str, ...]) -> bool:
    """§4.1: `host` is a pattern, or a pattern `*.rest` matches `label.rest` (exactly one leftmost label)."""
    host = host.lower().rstrip(".")
    _, dot, parent = host.partition(".")
    return any(host == p or (p.startswith("*.") and dot and parent == p[2:]) for p in patterns)


def policy_for(domain: str) -> Policy | None:
    """The policy to apply when sending to `domain` (mode enforce or testing), or None."""
    if not conf.outbound_mta_sts:
        return None
    held = MtaStsPolicy.objects.filter(domain=domain).first()
    valid = held if held is not None and held.valid_until > timezone.now() else None
    try:
        policy_id = parse_record(maildns.txt(f"_mta-sts.{domain}"))
    except maildns.DNSError as err:
        if err.temporary:
            log.info("MTA-STS record of %s not found (%s); policy held: %s", domain, err.reason, bool(valid))
        policy_id = None
    if policy_id is None or (valid is not None and valid.policy_id == policy_id):
        return _in_force(valid)
    try:
        policy = fetch(domain)
    except PolicyError as err:
        log.warning("MTA-STS policy of %s (id %s) could not be fetched: %s", domain, policy_id, err)
        return _in_force(valid)
    held, _ = MtaStsPolicy.objects.update_or_create(domain=domain, defaults={
        "policy_id": policy_id, "mode": policy.mode, "mx": "\n".join(policy.mx), "max_age": policy.max_age,
        "fetched_at": timezone.now(),
    })
    log.info("MTA-STS policy of %s: id %s, mode %s, mx %s", domain, policy_id, policy.mode, " ".join(policy.mx))
    return _in_force(held)


def _in_force(held: MtaStsPolicy | None) -> Policy | None:
    if held is None or held.mode == NONE:
        return None
    return Policy(held.mode, tuple(held.mx.split()), held.max_age)


def fetch(domain: str) -> Policy:
    """GET and parse the policy of `domain` (§3.3); PolicyError for any failure."""
    host = f"mta-sts.{domain}"
    try:
        found = maildns.addresses(host, conf.outbound_address_types)
    except maildns.DNSError as err:
        raise PolicyError(f"{host}: {err.reason}") from err
    addresses = [a for a in found if conf.allow_private_mx or not is_forbidden_address(a)]
    if not addresses:
        raise PolicyError(f"{host} has no usable address")
    failures = []
    for address in addresses[:MAX_POLICY_ADDRESSES]:
        try:
            return parse_policy(_get(host, address))
        except (OSError, http.client.HTTPException, UnicodeDecodeError) as err:
            failures.append(f"[{address}]: {err}")
    raise PolicyError(f"{host} " + "; ".join(failures))


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `host` at an address resolved by our resolver (never the system's), certificate checked for `host`."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=FETCH_TIMEOUT, context=context)
        self.address, self.tls = address, context

    tls_socket: ssl.SSLSocket | None = None  # kept for `_cut`: http.client lets go of `sock` once it has the reply

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout, conf.outbound_source(self.address))
        self.sock = self.tls_socket = self.tls.wrap_socket(raw, server_hostname=self.host,
                                                           do_handshake_on_connect=False)
        self.tls_socket.do_handshake()  # after the socket is kept, so that `_cut` can end a handshake that drags on


def _cut(connection: _PinnedHTTPSConnection, late: threading.Event) -> None:
    """The fetch has taken FETCH_TIMEOUT in all: end it, whatever it waits for (a read returns at once)."""
    late.set()
    if connection.tls_socket is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            connection.tls_socket.shutdown(socket.SHUT_RDWR)


def _get(host: str, address: str) -> str:
    """The policy text from one address, within FETCH_TIMEOUT in all. The socket's own timeout bounds each
    read only: a server sending a byte now and then held the delivery thread for as long as it went on."""
    connection = _PinnedHTTPSConnection(host, address, conf.outbound_https_port, verified_tls_context())
    late = threading.Event()
    deadline = threading.Timer(FETCH_TIMEOUT, _cut, (connection, late))
    deadline.start()
    try:
        text = _read_policy(connection)
    except Exception:
        if late.is_set():  # whatever the cut made of the reply: it is cut
            raise TimeoutError(f"no whole policy within {FETCH_TIMEOUT:g} s") from None
        raise
    finally:
        deadline.cancel()
        connection.close()
    if late.is_set():  # a body cut short reads as a shorter one
        raise TimeoutError(f"no whole policy within {FETCH_TIMEOUT:g} s")
    return text


def _read_policy(connection: _PinnedHTTPSConnection) -> str:
    """GET the policy (§3.3) over `connection`; PolicyError for what is not one."""
    connection.request("GET", POLICY_PATH, headers={"Accept": "text/plain"})
    response = connection.getresponse()
    if response.status != 200:  # §3.3: a redirect is not followed
        raise PolicyError(f"HTTP {response.status} {response.reason}")
    media_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        raise PolicyError(f"Content-Type {media_type!r}, not text/plain")
    body = response.read(MAX_POLICY_BYTES + 1)
    if len(body) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy larger than {MAX_POLICY_BYTES} bytes")
    return body.decode("utf-8")


def policy_waived(data: bytes) -> bool:
    """RFC 8689 §4: the header field "TLS-Required: No" asks that TLS policies (MTA-STS) be ignored for this
    message, as for a report about a broken TLS set-up; STARTTLS is still used when offered (§4.2.2)."""
    return (first(header_values(data), "tls-required") or "").strip().lower() == "no"


def verified_tls_context() -> ssl.SSLContext:
    """PKIX validation with the host name (RFC 8461 §4.2): the system's CAs, or MAIL_OUTBOUND_CA_FILE."""
    return ssl.create_default_context(cafile=conf.outbound_ca_file or None)


def hosts_under(policy: Policy | None, domain: str, hosts: list[str]) -> list[str]:
    """The MX hosts (names) `policy` lets us use (§4.1, §5.1); in enforce mode a temporary failure when there
    are none."""
    if policy is None:
        return hosts
    named = [h for h in hosts if matches(h, policy.mx)]
    if policy.mode == TESTING:
        for host in hosts:
            if host not in named:
                log.warning("MTA-STS (testing) of %s: MX %s is not in its policy %s", domain, host, policy.mx)
        return hosts
    if not named:
        raise temporary(MTA_STS_STATUS, f"no MX host of {domain} matches its MTA-STS policy ({' '.join(policy.mx)})")
    return named
