"""Settings, all from the environment (12-factor), with defaults that work on a laptop.

Every variable is listed in README.md and .env.example. mailcore reads its own
settings through mailcore.conf only.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env") if (BASE_DIR / ".env").exists() else None

VAR_DIR = Path(env("MAIL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once into var/."""
    if env("SECRET_KEY", default=""):
        return env("SECRET_KEY")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Behind an HTTPS-terminating proxy in production: HTTPS=1 turns on secure cookies, the
# redirect to https, HSTS, and trusts the proxy's X-Forwarded-Proto header.
HTTPS = env.bool("HTTPS", default=False)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django_htmx",
    "django.contrib.staticfiles",
    "mailcore",
    "webmail",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webmail.security.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

# Database: SQLite under var/ by default, in WAL mode with a busy timeout and
# IMMEDIATE transactions so that concurrent writers queue instead of failing.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000;",
        }
    )
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]

# Raw messages live in their own storage (content-addressed); a filesystem under
# var/blobs by default. Any Django storage backend can replace it (S3 through
# django-storages) with MAIL_BLOB_STORAGE set to its dotted class path.
MAIL_BLOB_DIR = Path(env("MAIL_BLOB_DIR", default=str(VAR_DIR / "blobs")))
# Directories under which an admin's "Import mail…" may read mbox files and Maildirs (comma-separated).
# The import runs with the mail server's rights, so a staff user must not name any file on the host.
MAIL_IMPORT_DIRS = [Path(p) for p in env.list("MAIL_IMPORT_DIRS", default=[str(VAR_DIR / "import")])]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
    "mailblobs": (
        {"BACKEND": env("MAIL_BLOB_STORAGE"), "OPTIONS": env.json("MAIL_BLOB_STORAGE_OPTIONS", default={})}
        if env("MAIL_BLOB_STORAGE", default="")
        else {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(MAIL_BLOB_DIR)}}
    ),
}

LOGIN_URL = "/login/"

# Redis and Celery. Unset means: in-process change events and in-process delivery.
REDIS_URL = env("REDIS_URL", default="")
MAIL_EVENTS_CHANNEL = env("MAIL_EVENTS_CHANNEL", default="mailcore")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": MAIL_EVENTS_CHANNEL,
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# The mail system's own settings; mailcore.conf is the only reader.
MAIL_HOSTNAME = env("MAIL_HOSTNAME", default="localhost")
MAIL_BIND = env("MAIL_BIND", default="127.0.0.1")
MAIL_SMTP_PORT = env.int("MAIL_SMTP_PORT", default=2525)
MAIL_SUBMISSION_PORT = env.int("MAIL_SUBMISSION_PORT", default=2587)
MAIL_SUBMISSIONS_PORT = env.int("MAIL_SUBMISSIONS_PORT", default=2465)
MAIL_IMAP_PORT = env.int("MAIL_IMAP_PORT", default=1143)
MAIL_IMAPS_PORT = env.int("MAIL_IMAPS_PORT", default=1993)
MAIL_POP3_PORT = env.int("MAIL_POP3_PORT", default=1110)
MAIL_POP3S_PORT = env.int("MAIL_POP3S_PORT", default=1995)
MAIL_TLS_CERT = env("MAIL_TLS_CERT", default="")
MAIL_TLS_KEY = env("MAIL_TLS_KEY", default="")
MAIL_TLS_RELOAD_SECONDS = env.float("MAIL_TLS_RELOAD_SECONDS", default=60.0)  # a renewed certificate is served then
MAIL_MAX_MESSAGE_SIZE = env.int("MAIL_MAX_MESSAGE_SIZE", default=52_428_800)
MAIL_DEFAULT_QUOTA = env.int("MAIL_DEFAULT_QUOTA", default=0)
MAIL_STORE_THREADS = env.int("MAIL_STORE_THREADS", default=8)
MAIL_SUBMISSION_RECIPIENTS_PER_HOUR = env.int("MAIL_SUBMISSION_RECIPIENTS_PER_HOUR", default=1000)  # remote; 0: none
MAIL_SMTP_MAX_CONNECTIONS = env.int("MAIL_SMTP_MAX_CONNECTIONS", default=1000)  # per process, MX and submission each
MAIL_SMTP_MAX_CONNECTIONS_PER_IP = env.int("MAIL_SMTP_MAX_CONNECTIONS_PER_IP", default=50)  # IPv6: per /64
MAIL_SMTP_PROCESSES = env.int("MAIL_SMTP_PROCESSES", default=1)  # above 1: SMTP in that many worker processes
MAIL_DNS_NAMESERVERS = env.list("MAIL_DNS_NAMESERVERS", default=[])
MAIL_OUTBOUND_PORT = env.int("MAIL_OUTBOUND_PORT", default=25)
MAIL_ALLOW_PRIVATE_MX = env.bool("MAIL_ALLOW_PRIVATE_MX", default=False)
MAIL_OUTBOUND_IP_VERSIONS = env.list("MAIL_OUTBOUND_IP_VERSIONS", default=["6", "4"])  # the order tried; "4": no IPv6
MAIL_OUTBOUND_SOURCE_IPV4 = env("MAIL_OUTBOUND_SOURCE_IPV4", default="")  # send from this address ("": the system's)
MAIL_OUTBOUND_SOURCE_IPV6 = env("MAIL_OUTBOUND_SOURCE_IPV6", default="")
MAIL_OUTBOUND_TLS = env("MAIL_OUTBOUND_TLS", default="opportunistic")
MAIL_OUTBOUND_MTA_STS = env.bool("MAIL_OUTBOUND_MTA_STS", default=True)  # honour receiving domains' MTA-STS policies
MAIL_OUTBOUND_CA_FILE = env("MAIL_OUTBOUND_CA_FILE", default="")  # CAs for verified TLS (MTA-STS); "": the system's
MAIL_OUTBOUND_HTTPS_PORT = env.int("MAIL_OUTBOUND_HTTPS_PORT", default=443)  # where MTA-STS policies are fetched

# One log format for every process (web, runmail, Celery): plain lines, or LOG_FORMAT=json for JSON lines.
LOG_FORMAT = env("LOG_FORMAT", default="plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "mailcore.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # aiosmtpd's own "mail.log" repeats per command what mailcore.smtp logs once per transaction.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "mail.log": {"level": "WARNING"}},
}

# --- Outbound delivery (issue 4): DNS, queue, retries, bounces, DKIM ---
MAIL_DNS_TIMEOUT = env.float("MAIL_DNS_TIMEOUT", default=3.0)
MAIL_QUEUE_LIFETIME = env.int("MAIL_QUEUE_LIFETIME", default=5 * 24 * 3600)  # seconds; then expire and bounce
MAIL_DELAY_WARNING = env.int("MAIL_DELAY_WARNING", default=4 * 3600)  # seconds; then one "delayed" DSN
MAIL_RETRY_SCHEDULE = env.list("MAIL_RETRY_SCHEDULE", cast=int, default=[60, 300, 900, 1800, 3600, 7200])
MAIL_DELIVERY_WORKERS = env.int("MAIL_DELIVERY_WORKERS", default=4)  # in-process runner's parallel deliveries
# RFC 5321 §4.5.3.2: 5 minutes for a reply (the final dot's: twice that); the connection itself: Postfix's 30 s
MAIL_SMTP_CLIENT_TIMEOUT = env.float("MAIL_SMTP_CLIENT_TIMEOUT", default=300.0)  # seconds per SMTP reply
MAIL_SMTP_CONNECT_TIMEOUT = env.float("MAIL_SMTP_CONNECT_TIMEOUT", default=30.0)  # seconds to open a TCP connection
MAIL_RELAY = env("MAIL_RELAY", default="")  # "" direct to MX, "smarthost", or "anymail"
MAIL_RELAY_HOST = env("MAIL_RELAY_HOST", default="")
MAIL_RELAY_PORT = env.int("MAIL_RELAY_PORT", default=587)
MAIL_RELAY_TLS = env("MAIL_RELAY_TLS", default="")  # "implicit", "starttls", or "": implicit on port 465
MAIL_RELAY_TLS_VERIFY = env("MAIL_RELAY_TLS_VERIFY", default="")  # 1, 0, or "": 1 when MAIL_RELAY_USER is set
MAIL_RELAY_USER = env("MAIL_RELAY_USER", default="")
MAIL_RELAY_PASSWORD = env("MAIL_RELAY_PASSWORD", default="")
MAIL_DKIM_SELECTOR = env("MAIL_DKIM_SELECTOR", default="mail")
# MAIL_RELAY=anymail (or a domain's transport "anymail"): the Anymail backend and its settings (JSON), e.g.
# MAIL_ANYMAIL_BACKEND=anymail.backends.postmark.EmailBackend ANYMAIL={"POSTMARK_SERVER_TOKEN": "..."}
MAIL_ANYMAIL_BACKEND = env("MAIL_ANYMAIL_BACKEND", default="")
ANYMAIL = env.json("ANYMAIL", default={})
MAIL_QUEUE_RETENTION = env.int("MAIL_QUEUE_RETENTION", default=7 * 24 * 3600)  # seconds finished rows stay; 0 keeps
CELERY_BEAT_SCHEDULE = {
    "outbound-sweep": {"task": "mailcore.tasks.sweep_queue", "schedule": 60.0},
    "outbound-purge": {"task": "mailcore.tasks.purge_queue", "schedule": 3600.0},
    "import-sweep": {"task": "mailcore.tasks.sweep_imports", "schedule": 60.0},
    # Undo send: held webmail messages whose release task was lost (webmail/tasks.py).
    "webmail-outbox-sweep": {"task": "webmail.tasks.release_held_mail", "schedule": 10.0},
}
# A separate queue name lets installations (or test runs) share one Redis broker.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Celery's Django fixup closes the database connection around every task unless this is set; a new
# PostgreSQL session per message was the Celery mode's largest cost. mailcore.tasks checks the kept
# connection (CONN_MAX_AGE, CONN_HEALTH_CHECKS) at the start of each task instead.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)


# --- SMTP (issue 3): MX and submission policy ---
MAIL_POSTMASTER = env("MAIL_POSTMASTER", default="")
MAIL_DMARC_REJECT = env.bool("MAIL_DMARC_REJECT", default=True)
# Rewrite the sender of mail aliases forward outside our domains (SRS, mailcore/srs.py).
MAIL_SRS = env.bool("MAIL_SRS", default=True)

# --- Webmail (issue 7): languages, limits (cookie and frame settings are with HTTPS above) ---
LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]
LOCALE_PATHS = [BASE_DIR / "locale"]
MAIL_WEBMAIL_MAX_ATTACHMENT_SIZE = env.int("MAIL_WEBMAIL_MAX_ATTACHMENT_SIZE", default=25 * 1024 * 1024)

# IMAP (mailcore/imap): limits of the IMAP server, read through mailcore.conf.
MAIL_IMAP_MAX_LINE = env.int("MAIL_IMAP_MAX_LINE", default=65_536)  # bytes of one command line
MAIL_IMAP_MAX_LITERAL = env.int("MAIL_IMAP_MAX_LITERAL", default=65_536)  # non-APPEND literals
MAIL_IMAP_IDLE_TIMEOUT = env.int("MAIL_IMAP_IDLE_TIMEOUT", default=1800)  # RFC 9051 §5.4: at least 30 minutes
# Seconds an IMAP or POP3 client may take to read what the server sent before it is disconnected
# (a client that stops reading a large FETCH or RETR otherwise holds the message in memory for ever).
MAIL_SEND_TIMEOUT = env.int("MAIL_SEND_TIMEOUT", default=300)
MAIL_IMAP_COMMANDS_PER_SECOND = env.int("MAIL_IMAP_COMMANDS_PER_SECOND", default=500)
MAIL_IMAP_POLL_SECONDS = env.float("MAIL_IMAP_POLL_SECONDS", default=1.0)  # IDLE re-reads folder state this often

# --- Operations (issue 8): MTA-STS policy, metrics, log format ---
MAIL_MTA_STS_MODE = env("MAIL_MTA_STS_MODE", default="testing")  # RFC 8461 §5: testing, enforce or none
MAIL_MTA_STS_MAX_AGE = env.int("MAIL_MTA_STS_MAX_AGE", default=604_800)  # seconds senders may cache the policy
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # Celery workers log through LOGGING too, in the same format
# Prometheus: every process (web, runmail, Celery workers) writes its counters into files in this
# directory and /metrics sums them (prometheus_client multiprocess mode). Processes that should be
# counted together must share it; settings exports it so prometheus_client sees it before it loads.
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
MAIL_METRICS_TOKEN = env("MAIL_METRICS_TOKEN", default="")  # /metrics with "Authorization: Bearer TOKEN"
MAIL_METRICS_ALLOW = env.list("MAIL_METRICS_ALLOW", default=[])  # client IPs/CIDRs let in without the token
SECURE_REDIRECT_EXEMPT += [r"^metrics$"]  # scraped over the internal network by Prometheus

# --- Performance (perf): answer cache of the MX's SPF, DKIM and DMARC lookups; verified logins ---
# Entries kept, each no longer than its TTL; 0 turns the cache off (the tests do, as they change records).
MAIL_DNS_CACHE_SIZE = env.int("MAIL_DNS_CACHE_SIZE", default=10_000)
# Seconds a verified login is remembered (an HMAC of the password, per process), so that a mail client logging
# in again is not made to wait for another PBKDF2 run; 0: every login hashes the password (mailcore/auth/passwords.py).
MAIL_AUTH_CACHE_SECONDS = env.float("MAIL_AUTH_CACHE_SECONDS", default=3600)

# --- Webmail 2 (issue 7): undo send ---
MAIL_WEBMAIL_UNDO_SEND_SECONDS = env.int("MAIL_WEBMAIL_UNDO_SEND_SECONDS", default=5)  # 0: send at once
MAIL_WEBMAIL_POLL_SECONDS = env.float("MAIL_WEBMAIL_POLL_SECONDS", default=15.0)  # new-mail check in the browser
