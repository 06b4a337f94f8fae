"""The one place where mailcore reads its settings (which config/settings.py reads from the environment)."""
from __future__ import annotations

import ipaddress
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# MAIL_OUTBOUND_IP_VERSIONS: which IP versions outbound connections use, and the DNS type of their addresses.
_ADDRESS_TYPES = {"6": "AAAA", "4": "A"}
# Read strictly (MAIL_RELAY_TLS_VERIFY): environ's env.bool takes any unknown word for "off", and a typo must
# not turn a certificate check off unnoticed.
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


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
    def import_dirs(self) -> list[Path]:
        """MAIL_IMPORT_DIRS: where admin-started imports may read, resolved (symlinks followed)."""
        return [Path(p).resolve() for p in settings.MAIL_IMPORT_DIRS]

    @property
    def tls_reload_seconds(self) -> float:
        """MAIL_TLS_RELOAD_SECONDS: how often the listeners look for a renewed certificate on disk."""
        return float(settings.MAIL_TLS_RELOAD_SECONDS)

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
    def submission_recipients_per_hour(self) -> int:
        """MAIL_SUBMISSION_RECIPIENTS_PER_HOUR: recipients outside our domains one account may send to in an
        hour (0: no limit), so that a stolen password cannot spend the server's reputation."""
        return int(settings.MAIL_SUBMISSION_RECIPIENTS_PER_HOUR)

    @property
    def smtp_max_connections(self) -> int:
        """MAIL_SMTP_MAX_CONNECTIONS: open connections one SMTP process takes on the MX, and on submission."""
        return int(settings.MAIL_SMTP_MAX_CONNECTIONS)

    @property
    def smtp_max_connections_per_ip(self) -> int:
        """MAIL_SMTP_MAX_CONNECTIONS_PER_IP: of those, from one client address (IPv6: one /64)."""
        return int(settings.MAIL_SMTP_MAX_CONNECTIONS_PER_IP)

    @property
    def smtp_processes(self) -> int:
        """MAIL_SMTP_PROCESSES: processes serving SMTP; above 1, worker processes runmail starts and watches."""
        return max(1, int(settings.MAIL_SMTP_PROCESSES))

    @property
    def project_dir(self) -> Path:
        """Where manage.py is (the worker processes runmail starts run it)."""
        return Path(settings.BASE_DIR)

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

    @property
    def outbound_port(self) -> int:
        """The port used to connect to MX hosts (MAIL_OUTBOUND_PORT)."""
        return int(settings.MAIL_OUTBOUND_PORT)

    @property
    def outbound_address_types(self) -> tuple[str, ...]:
        """DNS types of the addresses outbound connections go to, in the order tried: AAAA, A by default
        (MAIL_OUTBOUND_IP_VERSIONS "6,4"; "4" never uses IPv6, "4,6" prefers IPv4)."""
        versions = [str(v).strip() for v in settings.MAIL_OUTBOUND_IP_VERSIONS]
        if not versions or len(set(versions)) < len(versions) or not set(versions) <= set(_ADDRESS_TYPES):
            raise ImproperlyConfigured(
                f"MAIL_OUTBOUND_IP_VERSIONS is {','.join(versions)!r}: give 6,4 or 4,6 (the order tried), 4 or 6")
        return tuple(_ADDRESS_TYPES[v] for v in versions)

    def outbound_source(self, address: str) -> tuple[str, int] | None:
        """The local address outbound connections to `address` come from (MAIL_OUTBOUND_SOURCE_IPV4 or
        MAIL_OUTBOUND_SOURCE_IPV6, by its version), or None: the system's choice."""
        version = ipaddress.ip_address(address).version
        name = f"MAIL_OUTBOUND_SOURCE_IPV{version}"
        source = str(getattr(settings, name))
        if not source:
            return None
        try:
            valid = ipaddress.ip_address(source).version == version
        except ValueError:
            valid = False
        if not valid:
            raise ImproperlyConfigured(f"{name} is {source!r}: give an IPv{version} address of this host, or nothing")
        return source, 0

    @property
    def allow_private_mx(self) -> bool:
        """Connect to loopback/private addresses found in DNS (MAIL_ALLOW_PRIVATE_MX; tests only)."""
        return bool(settings.MAIL_ALLOW_PRIVATE_MX)

    @property
    def outbound_tls_required(self) -> bool:
        """MAIL_OUTBOUND_TLS=require: never send in clear."""
        return str(settings.MAIL_OUTBOUND_TLS).lower() == "require"

    @property
    def outbound_mta_sts(self) -> bool:
        """Honour the MTA-STS policies of the domains we send to (MAIL_OUTBOUND_MTA_STS, RFC 8461)."""
        return bool(settings.MAIL_OUTBOUND_MTA_STS)

    @property
    def outbound_ca_file(self) -> str:
        """CA certificates (PEM) trusted where a certificate is checked (MAIL_OUTBOUND_CA_FILE; "": the system's)."""
        return str(settings.MAIL_OUTBOUND_CA_FILE)

    @property
    def outbound_https_port(self) -> int:
        """The port MTA-STS policies are fetched from (MAIL_OUTBOUND_HTTPS_PORT: 443; tests change it)."""
        return int(settings.MAIL_OUTBOUND_HTTPS_PORT)

    @property
    def queue_lifetime(self) -> float:
        """Seconds a message may stay queued before it expires and bounces (MAIL_QUEUE_LIFETIME)."""
        return float(settings.MAIL_QUEUE_LIFETIME)

    @property
    def delay_warning(self) -> float:
        """Seconds after which one "delayed" DSN goes to the sender (MAIL_DELAY_WARNING)."""
        return float(settings.MAIL_DELAY_WARNING)

    @property
    def retry_schedule(self) -> list[int]:
        """Seconds before each retry; the last repeats (MAIL_RETRY_SCHEDULE)."""
        return [int(s) for s in settings.MAIL_RETRY_SCHEDULE] or [60]

    @property
    def delivery_workers(self) -> int:
        return max(1, int(settings.MAIL_DELIVERY_WORKERS))

    @property
    def smtp_client_timeout(self) -> float:
        return float(settings.MAIL_SMTP_CLIENT_TIMEOUT)

    @property
    def smtp_connect_timeout(self) -> float:
        return float(settings.MAIL_SMTP_CONNECT_TIMEOUT)

    @property
    def relay(self) -> str:
        """"" (direct to MX), "smarthost" or "anymail" (MAIL_RELAY); a MAIL_RELAY_HOST alone means smarthost."""
        value = str(settings.MAIL_RELAY).lower()
        return "smarthost" if not value and settings.MAIL_RELAY_HOST else value

    @property
    def relay_host(self) -> str:
        return str(settings.MAIL_RELAY_HOST)

    @property
    def relay_port(self) -> int:
        return int(settings.MAIL_RELAY_PORT)

    @property
    def relay_implicit_tls(self) -> bool:
        """The smarthost speaks TLS from the first byte (RFC 8314 §3.3), not STARTTLS (MAIL_RELAY_TLS: "implicit",
        "starttls", or unset: implicit on port 465, the port RFC 8314 §7.3 gives it)."""
        mode = str(settings.MAIL_RELAY_TLS).lower()
        if mode not in ("", "implicit", "starttls"):
            raise ImproperlyConfigured(
                f"MAIL_RELAY_TLS is {mode!r}: give implicit, starttls, or nothing (implicit on port 465)")
        return mode == "implicit" or (not mode and self.relay_port == 465)

    @property
    def relay_tls_verify(self) -> bool:
        """The smarthost's certificate must be valid for MAIL_RELAY_HOST, and TLS is required (MAIL_RELAY_TLS_VERIFY;
        unset: when a password is sent to it)."""
        value = str(settings.MAIL_RELAY_TLS_VERIFY).strip().lower()
        if not value:
            return self.relay_credentials is not None
        if value not in _BOOLEANS:
            raise ImproperlyConfigured(
                f"MAIL_RELAY_TLS_VERIFY is {value!r}: give 1 or 0, or nothing (1 with a password)")
        return _BOOLEANS[value]

    @property
    def relay_credentials(self) -> tuple[str, str] | None:
        user = str(settings.MAIL_RELAY_USER)
        return (user, str(settings.MAIL_RELAY_PASSWORD)) if user else None

    @property
    def dkim_selector(self) -> str:
        return str(settings.MAIL_DKIM_SELECTOR)

    @property
    def anymail_backend(self) -> str:
        """The dotted path of the Anymail backend the "anymail" transport uses (MAIL_ANYMAIL_BACKEND)."""
        return str(settings.MAIL_ANYMAIL_BACKEND)

    # --- SMTP (issue 3) ---

    @property
    def postmaster(self) -> str:
        """Where postmaster@ of a hosted domain goes when it has no alias or account (RFC 5321 §4.5.1)."""
        return str(settings.MAIL_POSTMASTER)

    @property
    def dmarc_reject(self) -> bool:
        """Refuse (550 5.7.1) mail failing DMARC when the domain's policy is p=reject (RFC 7489 §6.3)."""
        return bool(settings.MAIL_DMARC_REJECT)

    @property
    def srs(self) -> bool:
        """Rewrite the sender of mail aliases forward to other domains (mailcore/srs.py, RFC 7208 §10.1.3)."""
        return bool(settings.MAIL_SRS)

    # IMAP (mailcore/imap) ------------------------------------------------------------

    @property
    def imap_max_line(self) -> int:
        return int(settings.MAIL_IMAP_MAX_LINE)

    @property
    def imap_max_literal(self) -> int:
        return int(settings.MAIL_IMAP_MAX_LITERAL)

    @property
    def imap_idle_timeout(self) -> float:
        return float(settings.MAIL_IMAP_IDLE_TIMEOUT)

    @property
    def send_timeout(self) -> float:
        """MAIL_SEND_TIMEOUT: how long a client may leave our replies unread (IMAP, POP3)."""
        return float(settings.MAIL_SEND_TIMEOUT)

    @property
    def imap_commands_per_second(self) -> int:
        return int(settings.MAIL_IMAP_COMMANDS_PER_SECOND)

    @property
    def imap_poll_seconds(self) -> float:
        return float(settings.MAIL_IMAP_POLL_SECONDS)

    # --- operations (issue 8) ---

    @property
    def mta_sts_mode(self) -> str:
        """RFC 8461 §5 policy mode published at mta-sts.DOMAIN: testing, enforce or none."""
        mode = str(settings.MAIL_MTA_STS_MODE).lower()
        return mode if mode in ("testing", "enforce", "none") else "testing"

    @property
    def mta_sts_max_age(self) -> int:
        """Seconds a sender may cache the MTA-STS policy (RFC 8461 §3.2 max_age)."""
        return int(settings.MAIL_MTA_STS_MAX_AGE)

    @property
    def metrics_token(self) -> str:
        """The bearer token /metrics accepts (MAIL_METRICS_TOKEN); empty: none."""
        return str(settings.MAIL_METRICS_TOKEN)

    @property
    def metrics_allow(self) -> list[str]:
        """Client addresses or networks (CIDR) /metrics answers without the token (MAIL_METRICS_ALLOW)."""
        return [str(entry).strip() for entry in settings.MAIL_METRICS_ALLOW if str(entry).strip()]

    # --- outbound delivery (issue 4), added later ---

    @property
    def queue_retention(self) -> float:
        """Seconds finished queue rows (delivered, bounced, expired) are kept before the purge (0: forever)."""
        return float(settings.MAIL_QUEUE_RETENTION)

    @property
    def auth_cache_seconds(self) -> float:
        """How long a verified login is remembered, so the same password is not hashed again (0: never)."""
        return max(0.0, float(settings.MAIL_AUTH_CACHE_SECONDS))

    @property
    def dns_cache_size(self) -> int:
        """Answers the MX's SPF/DKIM/DMARC lookups keep, each for its TTL (MAIL_DNS_CACHE_SIZE); 0: off."""
        return max(0, int(settings.MAIL_DNS_CACHE_SIZE))

    # --- webmail (issue 7) ---

    @property
    def webmail_undo_send_seconds(self) -> int:
        """Seconds a message sent from the webmail is held for "undo send" (0: submitted at once)."""
        return max(0, int(settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS))

    @property
    def webmail_poll_seconds(self) -> float:
        """How often an open webmail page asks whether mail changed (MAIL_WEBMAIL_POLL_SECONDS, at least 1)."""
        return max(1.0, float(settings.MAIL_WEBMAIL_POLL_SECONDS))


conf = MailConf()
