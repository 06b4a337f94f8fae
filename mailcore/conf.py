"""The one place where mailcore reads its settings (which config/settings.py reads from the environment)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings


class MailConf:
    """Typed, read-through view of the MAIL_* settings (so test overrides apply at once)."""

    @property
    def hostname(self) -> str:
        return str(settings.MAIL_HOSTNAME)

    @property
    def bind(self) -> str:
        return str(settings.MAIL_BIND)

    @property
    def var_dir(self) -> Path:
        return Path(settings.VAR_DIR)

    @property
    def tls_cert(self) -> str:
        return str(settings.MAIL_TLS_CERT)

    @property
    def tls_key(self) -> str:
        return str(settings.MAIL_TLS_KEY)

    @property
    def max_message_size(self) -> int:
        return int(settings.MAIL_MAX_MESSAGE_SIZE)

    @property
    def default_quota(self) -> int:
        return int(settings.MAIL_DEFAULT_QUOTA)

    @property
    def store_threads(self) -> int:
        return int(settings.MAIL_STORE_THREADS)

    @property
    def redis_url(self) -> str:
        return str(settings.REDIS_URL)

    @property
    def events_channel(self) -> str:
        """Redis pub/sub channel prefix; separate installations sharing one Redis use different ones."""
        return str(settings.MAIL_EVENTS_CHANNEL)

    @property
    def celery_broker_url(self) -> str:
        return str(settings.CELERY_BROKER_URL)

    @property
    def dns_nameservers(self) -> list[str]:
        return list(settings.MAIL_DNS_NAMESERVERS)

    def port(self, name: str) -> int:
        """The port of listener `name` (e.g. "SMTP" reads MAIL_SMTP_PORT); 0 means off."""
        return int(getattr(settings, f"MAIL_{name.upper()}_PORT"))

    # --- outbound delivery (issue 4) ---

    @property
    def dns_timeout(self) -> float:
        """Seconds to wait for one DNS server's answer (MAIL_DNS_TIMEOUT)."""
        return float(settings.MAIL_DNS_TIMEOUT)

    # --- SMTP (issue 3) ---

    @property
    def postmaster(self) -> str:
        """Where postmaster@ of a hosted domain goes when it has no alias or account (RFC 5321 §4.5.1)."""
        return str(settings.MAIL_POSTMASTER)

    @property
    def dmarc_reject(self) -> bool:
        """Refuse (550 5.7.1) mail failing DMARC when the domain's policy is p=reject (RFC 7489 §6.3)."""
        return bool(settings.MAIL_DMARC_REJECT)


conf = MailConf()
