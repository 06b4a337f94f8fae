"""TLS for every listener: the configured certificate, or a self-signed one made on first run."""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
import weakref
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailcore.conf import conf

log = logging.getLogger(__name__)

SELF_SIGNED_DAYS = 825


def certificate_paths() -> tuple[Path, Path]:
    """(certificate, key): MAIL_TLS_CERT/MAIL_TLS_KEY, or a self-signed pair under var/tls/."""
    if conf.tls_cert and conf.tls_key:
        return Path(conf.tls_cert), Path(conf.tls_key)
    directory = conf.var_dir / "tls"
    cert, key = directory / "selfsigned.crt", directory / "selfsigned.key"
    if not (cert.exists() and key.exists()):
        _make_self_signed(cert, key, conf.hostname)
    return cert, key


def _make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed TLS certificate for %s at %s", hostname, cert_path)


def server_context() -> ssl.SSLContext:
    """The TLS context every listener uses (TLS 1.2 or newer); `watch_certificates` keeps its certificate current."""
    cert, key = certificate_paths()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    _LOADED.append(_Loaded(weakref.ref(context), cert, key, _stamp(cert, key)))
    return context


@dataclass
class _Loaded:
    """A listening context and the files its certificate came from, as they were when loaded."""

    context: weakref.ref[ssl.SSLContext]  # gone with its listeners
    cert: Path
    key: Path
    stamp: tuple[int, int]


_LOADED: list[_Loaded] = []  # the contexts this process made


def _stamp(cert: Path, key: Path) -> tuple[int, int]:
    return cert.stat().st_mtime_ns, key.stat().st_mtime_ns


def reload_changed_certificates() -> int:
    """Load the certificate and key again into each context whose files changed (a renewal, say by certbot);
    how many were. Handshakes from then on present the new one; sessions already open keep theirs. A pair
    that does not load (the key written, not yet the certificate) is tried again at the next look."""
    reloaded = 0
    _LOADED[:] = [loaded for loaded in _LOADED if loaded.context() is not None]
    for loaded in _LOADED:
        context = loaded.context()
        try:
            stamp = _stamp(loaded.cert, loaded.key)
            if context is None or stamp == loaded.stamp:
                continue
            context.load_cert_chain(loaded.cert, loaded.key)
        except (OSError, ssl.SSLError) as err:
            log.warning("TLS certificate %s not reloaded: %s", loaded.cert, err)
            continue
        loaded.stamp = stamp
        reloaded += 1
        log.info("TLS certificate %s reloaded: new connections get it", loaded.cert)
    return reloaded


async def watch_certificates() -> None:
    """Background job of runmail and of each SMTP worker process: look for a renewed certificate every
    MAIL_TLS_RELOAD_SECONDS (60), so one renewed on disk is served without a restart, until cancelled."""
    while True:
        await asyncio.sleep(conf.tls_reload_seconds)
        reload_changed_certificates()
