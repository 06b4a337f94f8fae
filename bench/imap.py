"""IMAP benchmark: our server against Debian's Dovecot on the same 10,000-message folder, in one run.

Both servers run on loopback ports chosen here, with throwaway data and
configuration under one temporary directory (Dovecot: Maildir, plain-text
passwd-file, `dovecot -F -c` as a child process). N concurrent imaplib
clients run each operation kind: SELECT, UID FETCH 1:* (UID FLAGS ENVELOPE),
UID FETCH BODY.PEEK[] of random messages, UID STORE, UID SEARCH, APPEND. Then
1,000 connections sit in IDLE and the server's RSS is read from /proc.
Prints one JSON document; ratios are ours / Dovecot (ops per second: higher is better).

The folder is filled in bulk (one blob per distinct message, rows inserted in
batches) because 10,000 fsynced APPENDs would benchmark the disk; APPEND is
measured separately. Usage: python bench/imap.py [--messages N] [--clients N] [--idle N]
"""
from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import processes  # noqa: E402
from tests.support.dovecot import Dovecot, DovecotError  # noqa: E402 - after the path is set
from tests.support.net import free_port, wait_listening  # noqa: E402

USER, PASSWORD = "user@bench.test", "bench-password-1"
TEMPLATES = 100  # distinct messages; message n is template n % TEMPLATES
OTHER_PORTS = ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAPS", "POP3", "POP3S")
# Operations per client for each kind (kept small: the whole run stays well under a minute).
COUNTS = {"select": 40, "fetch_all": 2, "fetch_body": 100, "store": 100, "search": 10, "append": 20}


def message(n: int) -> bytes:
    t = n % TEMPLATES
    head = (
        f"From: Sender {t} <sender{t}@elsewhere.test>\r\nTo: {USER}\r\nSubject: bench {t} report\r\n"
        f"Date: Mon, 1 Jan 2024 10:{t % 60:02d}:00 +0000\r\nMessage-ID: <{t}@bench.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    return head.encode() + (f"line {t} of the benchmark body\r\n" * (20 + t)).encode()


def memory_kib(pids: list[int], field: str) -> int:
    """Sum of `field` (Rss, or Pss: shared pages divided among their processes) over processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
    return total


def process_tree(pid: int) -> list[int]:
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


# Our server ------------------------------------------------------------------------


def our_env(directory: Path, port: int) -> dict[str, str]:
    env = {**os.environ, "MAIL_VAR_DIR": str(directory), "DJANGO_SETTINGS_MODULE": "imap_bench_settings",
           "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}", "MAIL_IMAP_PORT": str(port), "LOG_LEVEL": "WARNING"}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MAIL_BLOB_DIR"):
        env.pop(name, None)
    env.update({f"MAIL_{name}_PORT": "0" for name in OTHER_PORTS})
    return env


def fill_ours(total: int) -> None:
    """(Child process) migrate a scratch database and put `total` messages in the bench user's INBOX."""
    import django

    django.setup()
    import datetime as dt

    from django.core.management import call_command

    from mailcore import store
    from mailcore.directory import create_account, create_domain
    from mailcore.mime import parse_message
    from mailcore.models import Account, Mailbox, Message
    from mailcore.store.messages import store_blob

    call_command("migrate", verbosity=0)
    create_domain("bench.test")
    account = create_account(USER, PASSWORD)
    ref = store.get_folder(account.pk, "INBOX")
    stored = []
    for t in range(TEMPLATES):
        data, digest = store_blob(message(t))
        stored.append((data, digest, parse_message(data)))
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = []
    for n in range(total):
        data, digest, parsed = stored[n % TEMPLATES]
        rows.append(Message(
            mailbox_id=ref.mailbox_id, uid=n + 1, modseq=1, internal_date=when, size=len(data), blob=digest,
            envelope=parsed.envelope, bodystructure=parsed.bodystructure, subject=parsed.subject,
            sender=parsed.sender, sent_date=parsed.sent_date, message_id=parsed.message_id,
        ))
    Message.objects.bulk_create(rows, batch_size=1000)
    size = sum(r.size for r in rows)
    # The counters the store keeps (STATUS, and the sessions' "did anything come or go" check).
    Mailbox.objects.filter(pk=ref.mailbox_id).update(
        uidnext=total + 1, highestmodseq=1, message_count=total, unseen_count=total, total_size=size
    )
    Account.objects.filter(pk=account.pk).update(used_bytes=size)


def start_ours(directory: Path, total: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = our_env(directory, port)
    subprocess.run([sys.executable, __file__, "--fill", str(total)], env=env, check=True)
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runmail"], env=env)
    wait_listening(port, process, timeout=60)
    return process, port


# Dovecot ----------------------------------------------------------------------------

_dovecots: list[Dovecot] = []  # stopped (and their directories removed) when the run ends


def fill_dovecot(maildir: Path, total: int) -> None:
    templates = [message(t) for t in range(TEMPLATES)]
    for n in range(total):
        data = templates[n % TEMPLATES]
        (maildir / "cur" / f"{1700000000 + n}.M{n}P1.bench,S={len(data)}:2,").write_bytes(data)


def start_dovecot(directory: Path, total: int) -> tuple[subprocess.Popen[bytes], int]:
    try:
        server = Dovecot("imap", {USER: PASSWORD})
    except DovecotError as err:
        raise SystemExit(str(err)) from err
    _dovecots.append(server)
    fill_dovecot(server.maildir(USER), total)
    server.start()
    assert server.process is not None
    return server.process, server.port


# Workload ----------------------------------------------------------------------------


def connect(port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", port)
    client.login(USER, PASSWORD)
    return client


def run_kind(port: int, clients: int, count: int, operation: Callable[[imaplib.IMAP4, random.Random], None]) -> float:
    """Operations per second of `clients` connections each doing `count` operations at once."""
    connections = [connect(port) for _ in range(clients)]
    for c in connections:
        c.select("INBOX")
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(client: imaplib.IMAP4, seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        try:
            for _ in range(count):
                operation(client, rng)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(c, i)) for i, c in enumerate(connections)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in connections:
        c.logout()
    if errors:
        raise errors[0]
    return clients * count / elapsed


def operations(total: int) -> dict[str, Callable[[imaplib.IMAP4, random.Random], None]]:
    def check(reply: tuple[str, list]) -> None:
        if reply[0] != "OK":
            raise RuntimeError(f"command failed: {reply}")

    def uid(rng: random.Random) -> str:
        return str(rng.randint(1, total))

    return {
        "select": lambda c, rng: check(c.select("INBOX")),
        "fetch_all": lambda c, rng: check(c.uid("FETCH", "1:*", "(UID FLAGS ENVELOPE)")),
        "fetch_body": lambda c, rng: check(c.uid("FETCH", uid(rng), "(BODY.PEEK[])")),
        "store": lambda c, rng: check(c.uid("STORE", uid(rng), rng.choice(["+FLAGS", "-FLAGS"]), "(\\Flagged)")),
        "search": lambda c, rng: check(c.uid("SEARCH", "SUBJECT", f'"bench {rng.randrange(TEMPLATES)} "')),
        "append": lambda c, rng: check(c.append("INBOX", None, None, message(rng.randrange(TEMPLATES)))),
    }


def fetch_all_seconds(port: int) -> float:
    """One client, UID FETCH 1:* (UID FLAGS ENVELOPE): the best of three (issue goal: under 0.5 s)."""
    client = connect(port)
    client.select("INBOX")
    times = []
    for _ in range(3):
        start = time.perf_counter()
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS ENVELOPE)")
        times.append(time.perf_counter() - start)
        assert typ == "OK" and len(data) >= 1
    client.logout()
    return min(times)


def idle_rss(port: int, server_pid: int, count: int) -> dict[str, float]:
    """RSS and PSS of the server's processes with `count` connections in IDLE on an empty folder.

    Dovecot runs one process per connection: their RSS sum counts shared pages many times,
    so PSS (shared pages split among processes) is the fair comparison.
    """
    before = memory_kib(process_tree(server_pid), "Rss")
    sockets = []
    for _ in range(count):
        client = connect(port)
        client.select("Drafts" if client.list('""', "Drafts")[1][0] else "INBOX")
        client.send(b"i IDLE\r\n")
        client.readline()
        sockets.append(client)
    time.sleep(1)
    pids = process_tree(server_pid)
    rss, pss = memory_kib(pids, "Rss"), memory_kib(pids, "Pss")
    for client in sockets:
        with contextlib.suppress(OSError):
            client.shutdown()
    return {"connections": count, "rss_mb": round(rss / 1024, 1), "pss_mb": round(pss / 1024, 1),
            "rss_before_idle_mb": round(before / 1024, 1)}


def measure(port: int, pid: int, total: int, clients: int, idle: int) -> dict[str, object]:
    ops = operations(total)
    warm = connect(port)
    warm.select("INBOX")
    warm.uid("FETCH", "1:*", "(UID FLAGS)")  # build Dovecot's index (and warm our caches) before timing
    warm.logout()
    result: dict[str, object] = {"fetch_all_seconds_one_client": round(fetch_all_seconds(port), 3)}
    per_second = {kind: round(run_kind(port, clients, COUNTS[kind], ops[kind]), 1) for kind in COUNTS}
    result["ops_per_second"] = per_second
    result["idle"] = idle_rss(port, pid, idle)
    return result


stop = processes.stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill is not None:
        fill_ours(args.fill)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.idle + 256)), hard))
    directory = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    directory.chmod(0o755)
    results: dict[str, object] = {"messages": args.messages, "clients": args.clients}
    try:
        for name, start in (("ours", start_ours), ("dovecot", start_dovecot)):
            (directory / name).mkdir()
            (directory / name).chmod(0o755)
            process, port = start(directory / name, args.messages)
            try:
                results[name] = measure(port, process.pid, args.messages, args.clients, args.idle)
            finally:
                stop(process)
        ours, theirs = results["ours"], results["dovecot"]
        assert isinstance(ours, dict) and isinstance(theirs, dict)
        results["ratio_ours_to_dovecot"] = {
            kind: round(ours["ops_per_second"][kind] / theirs["ops_per_second"][kind], 2) for kind in COUNTS
        }
        results["ratio_idle_pss"] = round(ours["idle"]["pss_mb"] / max(theirs["idle"]["pss_mb"], 0.1), 2)
    finally:
        for server in _dovecots:
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
