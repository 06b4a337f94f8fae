"""A real Celery worker process for tests that need one (skipped by callers without CELERY_BROKER_URL).

The worker uses this test run's database (the test database, committed rows only: use
`django_db(transaction=True)`), blob directory and queue name, so concurrent runs sharing one
Redis broker do not take each other's tasks.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# Unless the caller gives its DNS server: a resolver on loopback where nothing answers, so a task for
# remote mail (left in the queue by another test) fails on loopback instead of asking real DNS.
NO_REMOTE_DNS = {"MAIL_DNS_NAMESERVERS": "127.0.0.1:9", "MAIL_DNS_TIMEOUT": "0.5"}


def database_url() -> str:
    """DATABASE_URL of the test database this process uses."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def worker_environment(blob_dir: Path, queue_name: str, **env: str) -> dict[str, str]:
    """The environment of a worker (or runmail) process sharing this test's database, blobs and queue."""
    return {**os.environ, "DATABASE_URL": database_url(), "MAIL_BLOB_DIR": str(blob_dir),
            "CELERY_TASK_DEFAULT_QUEUE": queue_name, **NO_REMOTE_DNS, **env}


def worker_command(queue_name: str, *options: str) -> list[str]:
    """A solo-pool `celery worker` command line consuming only `queue_name`."""
    return [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1",
            "--without-gossip", "--without-mingle", *options, "--loglevel=WARNING", "-Q", queue_name]


@contextmanager
def celery_worker(blob_dir: Path, **env: str) -> Iterator[subprocess.Popen]:
    """A solo-pool worker on this run's default queue, stopped (SIGTERM) when the block ends."""
    from config.celery import app

    queue_name = app.conf.task_default_queue
    process = subprocess.Popen(worker_command(queue_name), cwd=ROOT, env=worker_environment(blob_dir, queue_name, **env))
    try:
        yield process
    finally:
        process.terminate()
        process.wait(20)
