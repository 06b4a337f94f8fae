"""Store benchmark: deliveries per second into one folder (4 KB messages, 1 and 8 writers).

Runs on SQLite (a scratch var/) and, when reachable, on PostgreSQL (a scratch
database on 127.0.0.1:5432). The baseline in the same run is the floor of any
durable delivery: writing and fsyncing one 4 KB file per message, same writer
counts. Prints one JSON document. Usage: python bench/store.py [--messages N]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_SIZE = 4096
WRITERS = (1, 8)
PG_URL = "postgres://postgres@127.0.0.1:5432/{name}"


def message(n: int) -> bytes:
    head = f"From: bench@elsewhere.test\r\nTo: alice@example.test\r\nSubject: bench {n}\r\nMessage-ID: <{n}@b>\r\n\r\n"
    body = (f"line {n} " * 1000).encode()
    return head.encode() + body[: MESSAGE_SIZE - len(head)]


def run_threads(writers: int, total: int, work) -> float:
    """Run `work(n)` for n in range(total) spread over `writers` threads; return operations per second."""
    counter = iter(range(total))
    lock = threading.Lock()

    def loop() -> None:
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            work(n)

    threads = [threading.Thread(target=loop) for _ in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - start)


def baseline(total: int) -> dict[str, float]:
    """Write + fsync one file per message: the cost of durability alone."""
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for writers in WRITERS:
            def work(n: int, w: int = writers) -> None:
                path = Path(directory) / f"{w}-{n}"
                with open(path, "wb") as handle:
                    handle.write(message(n))
                    handle.flush()
                    os.fsync(handle.fileno())

            results[f"writers_{writers}"] = round(run_threads(writers, total, work), 1)
    return results


def measure_in_child(total: int) -> dict[str, float]:
    """(In a child process with its own settings) deliver `total` messages per writer count."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from mailcore import store
    from mailcore.directory import create_account, create_domain

    call_command("migrate", verbosity=0)
    create_domain("example.test")
    results = {}
    for writers in WRITERS:
        address = f"w{writers}@example.test"
        create_account(address, "bench-password-1")

        def work(n: int, rcpt: str = address) -> None:
            store.deliver(message(n), [rcpt])

        results[f"writers_{writers}"] = round(run_threads(writers, total, work), 1)
        connection.close()
    return results


def run_backend(database_url: str | None, total: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as var:
        env = {**os.environ, "MAIL_VAR_DIR": var, "PYTHONPATH": str(ROOT)}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        output = subprocess.run(
            [sys.executable, __file__, "--child", "--messages", str(total)],
            env=env, capture_output=True, text=True, check=True, cwd=ROOT,
        ).stdout
    return json.loads(output)


def postgres_database() -> str | None:
    name = f"mail_bench_{os.getpid()}"
    created = subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", f"CREATE DATABASE {name}"],
        capture_output=True,
    )
    return name if created.returncode == 0 else None


def drop_database(name: str) -> None:
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", f"DROP DATABASE {name}"],
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500, help="deliveries per writer count")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_in_child(args.messages)))
        return
    report: dict[str, object] = {
        "benchmark": "store.deliver into one folder",
        "message_bytes": MESSAGE_SIZE,
        "messages": args.messages,
        "unit": "deliveries per second",
        "baseline_fsync_file": baseline(args.messages),
        "sqlite": run_backend(None, args.messages),
    }
    pg_name = postgres_database()
    if pg_name:
        try:
            report["postgresql"] = run_backend(PG_URL.format(name=pg_name), args.messages)
        finally:
            drop_database(pg_name)
    for backend in ("sqlite", "postgresql"):
        if backend in report:
            figures = report[backend]
            assert isinstance(figures, dict)
            report[f"{backend}_vs_baseline"] = {
                k: round(v / report["baseline_fsync_file"][k], 3) for k, v in figures.items()  # type: ignore[index]
            }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
