"""Shared fixtures: an isolated blob directory per test, accounts, and the mail corpus."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# A copy of ../shared/testdata/mail-corpus (MIT licensed, see its LICENSE), so a clean clone has it.
LOOPBACK_CLIENTS = ("127.0.0.1", "::1")
CORPUS_DIR = Path(__file__).resolve().parent / "data" / "mail-corpus"


# Rows that `migrate` and its post_migrate signal put in place, the same in every test: kept between tests.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})
_tables_to_empty: dict[tuple[str, str], list[str]] = {}


def _empty_the_tables(test_case) -> None:
    """TransactionTestCase's teardown (`transaction=True` tests), without Django's `flush`.

    `flush` TRUNCATEs every table, then makes the content types and permissions again through the
    post_migrate signal: 0.3 s a test on PostgreSQL (TRUNCATE gives every table and index new files),
    and a third of the suite's time there. A DELETE of each table but those two leaves the same empty
    database at a few milliseconds. Django's foreign keys are DEFERRABLE INITIALLY DEFERRED on both
    databases, so the order does not matter within the one transaction.
    """
    from django.db import connections, transaction

    for alias in test_case._databases_names(include_mirrors=False):
        connection = connections[alias]
        key = (alias, str(connection.settings_dict["NAME"]))
        if key not in _tables_to_empty:
            names = connection.introspection.django_table_names(only_existing=True, include_views=False)
            _tables_to_empty[key] = [connection.ops.quote_name(t) for t in sorted(names) if t not in KEPT_TABLES]
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            for table in _tables_to_empty[key]:
                cursor.execute(f"DELETE FROM {table}")


def pytest_configure(config) -> None:
    from django.test import TransactionTestCase

    TransactionTestCase._fixture_teardown = _empty_the_tables


def corpus_files() -> list[Path]:
    """The 104 corpus messages (every file but README.md and LICENSE)."""
    return sorted(p for p in CORPUS_DIR.rglob("*") if p.is_file() and p.name not in ("README.md", "LICENSE"))


@pytest.fixture(autouse=True)
def blob_dir(settings, tmp_path: Path) -> Iterator[Path]:
    """Each test stores message blobs in its own directory (and hashes passwords quickly)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    path = tmp_path / "blobs"
    settings.STORAGES = {
        **settings.STORAGES,
        "mailblobs": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(path)},
        },
    }
    yield path


@pytest.fixture(autouse=True)
def no_dns_answer_cache(settings) -> None:
    """Tests change DNS records between lookups; only tests/perf/test_dns_cache.py turns the cache on."""
    settings.MAIL_DNS_CACHE_SIZE = 0


@pytest.fixture(autouse=True)
def fresh_login_throttle() -> Iterator[None]:
    """Every test starts with no failed logins counted for loopback clients.

    Only these keys are reset: `cache.clear()` would FLUSHDB a Redis shared with other runs.
    """
    from mailcore.auth import throttle

    for ip in LOOPBACK_CLIENTS:
        throttle.reset(ip)
    yield
    for ip in LOOPBACK_CLIENTS:
        throttle.reset(ip)


@pytest.fixture
def domain(db):
    from mailcore.directory import create_domain

    return create_domain("example.test")


@pytest.fixture
def alice(domain):
    from mailcore.directory import create_account

    return create_account("Alice@example.test", "alice-secret-pw")


@pytest.fixture
def bob(domain):
    from mailcore.directory import create_account

    return create_account("bob@example.test", "bob-secret-pw")
