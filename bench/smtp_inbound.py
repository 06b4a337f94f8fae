"""Inbound SMTP benchmark: 10 sessions send 4 KB messages over the MX listener to local mailboxes.

With `--listener submission` the sessions log in (AUTH PLAIN) on the submission listener instead,
each as one of the mailboxes, and send to the next mailbox: what the users' own mail costs.

The server is `manage.py runmail` (scratch var/, SQLite, only the MX listener),
measured with SMTP in runmail itself (MAIL_SMTP_PROCESSES=1) and in worker
processes (2, one per core here); SPF/DKIM/DMARC lookups are real, answered by
a DNS server on loopback in this process. The clients are threads here, each
reusing one connection. Baseline in the same run, same load: a minimal
aiosmtpd server (one process) whose handler only writes and fsyncs each message
to a file (the Python ceiling). Each server's CPU time per message (from /proc,
all its threads and processes) is printed too: on shared cores it moves less
than the rates do. Prints one JSON document.
Usage: python bench/smtp_inbound.py [--messages N] [--sessions N] [--processes N ...] [--listener mx|submission]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procstat import process_tree_cpu  # noqa: E402
from tests.support.dnsserver import DNSServer  # noqa: E402
from tests.support.net import free_port  # noqa: E402

MESSAGE_SIZE = 4096
TAIL = 250  # "messages per second until the last 250": the rate measured over all but the last 250


PASSWORD = "bench-password-1"
MX, SUBMISSION = "mx", "submission"


def message(n: int, rcpt: str, sender: str) -> bytes:
    head = f"From: {sender}\r\nTo: {rcpt}\r\nSubject: bench {n}\r\nMessage-ID: <{n}@bench.test>\r\n\r\n"
    line = f"line {n} of the benchmark message body, padded to a realistic length.\r\n"
    body = (line * (MESSAGE_SIZE // len(line) + 1))[: MESSAGE_SIZE - len(head)]
    return (head + body).encode()


# Servers (child process) ----------------------------------------------------------------


def prepare_ours(sessions: int) -> None:
    """Migrate the scratch var/ and make the mailboxes the sessions send to."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.core.management import call_command

    from mailcore.directory import create_account, create_domain

    call_command("migrate", verbosity=0)
    create_domain("example.test")
    for n in range(sessions):
        create_account(f"user{n}@example.test", PASSWORD)


def start_ours(
    env: dict[str, str], sessions: int, processes: int, listener: str
) -> tuple[subprocess.Popen[bytes], int]:
    """runmail itself, one SMTP listener only (MX or submission), on a scratch var/, logging as it does by
    default (INFO: a line per transaction) to a file there; returns once it says it is ready."""
    subprocess.run([sys.executable, __file__, "--prepare-ours", str(sessions)], env=env, cwd=ROOT, check=True)
    port = free_port()
    env = {**env, "MAIL_SMTP_PROCESSES": str(processes)}
    env.pop("LOG_LEVEL")
    for name in ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S"):
        env[f"MAIL_{name}_PORT"] = "0"
    env["MAIL_SMTP_PORT" if listener == MX else "MAIL_SUBMISSION_PORT"] = str(port)
    log = Path(env["MAIL_VAR_DIR"]) / "runmail.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "manage.py", "runmail"], env=env, cwd=ROOT, stderr=output)
    deadline = time.monotonic() + 120
    while "runmail ready" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"runmail did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process, port


def serve_baseline(directory: str) -> None:
    from aiosmtpd.smtp import SMTP

    class FsyncHandler:
        def __init__(self) -> None:
            self.count = 0

        async def handle_DATA(self, server, session, envelope) -> str:
            self.count += 1
            await asyncio.to_thread(self.write, self.count, envelope.original_content)
            return "250 OK"

        @staticmethod
        def write(n: int, data: bytes) -> None:
            with open(Path(directory) / str(n), "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())

    async def main() -> None:
        handler = FsyncHandler()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(handler, loop=loop), "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# Load (this process) ----------------------------------------------------------------------


def load(port: int, total: int, sessions: int, login: bool = False,
         on_start: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Send `total` messages over `sessions` connections; rate and DATA-to-250 latency.

    With `login` each session logs in as its mailbox and sends to the next one (submission). The clock
    starts, and `on_start` is called, once every session has connected (and logged in): a login costs
    about half a second of CPU (PBKDF2), which would otherwise count as mail."""
    finished: list[float] = []
    connected = threading.Barrier(sessions + 1)
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def session(index: int) -> None:
        sender, rcpt = "bench@elsewhere.test", f"user{index}@example.test"
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.ehlo("bench.elsewhere.test")
            if login:  # plain-text AUTH is allowed from loopback, as from a webmail on the same host
                sender, rcpt = rcpt, f"user{(index + 1) % sessions}@example.test"
                client.login(sender, PASSWORD)
            connected.wait()
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                client.mail(sender)
                client.rcpt(rcpt)
                sent = time.perf_counter()
                code, reply = client.data(message(n, rcpt, sender))
                done = time.perf_counter()
                if code != 250:
                    raise RuntimeError(f"DATA answered {code} {reply!r}")
                with lock:
                    finished.append(done)
                    latencies.append(done - sent)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    connected.wait()
    start = time.perf_counter()
    on_start()
    for t in threads:
        t.join()
    finished.sort()
    cutoff = max(1, len(finished) - TAIL)
    latencies.sort()
    return {
        "messages": len(finished),
        "messages_per_second": round(cutoff / (finished[cutoff - 1] - start), 1),
        "p50_data_to_250_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_data_to_250_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def run_baseline(directory: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-baseline", directory], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def measure(kind: str, total: int, sessions: int, processes: int = 1, listener: str = MX) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as var, DNSServer() as dns_server:
        # SPF and DMARC lookups are real, answered on loopback (NXDOMAIN) by a server in this process,
        # as a caching resolver beside the MX would; runmail keeps the answers for their TTL.
        env = {**os.environ, "MAIL_VAR_DIR": var, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING",
               "MAIL_DNS_NAMESERVERS": dns_server.nameserver}
        for name in ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL"):
            env.pop(name, None)
        ours = kind == "ours"
        process, port = start_ours(env, sessions, processes, listener) if ours else run_baseline(var, env)
        try:
            cpu_before: list[float] = []  # with runmail's SMTP worker processes, if any

            def count_cpu_from_now() -> None:
                cpu_before.append(process_tree_cpu(process.pid))

            figures = load(port, total, sessions, ours and listener == SUBMISSION, count_cpu_from_now)
            cpu = process_tree_cpu(process.pid) - cpu_before[0]
            figures["server_cpu_ms_per_message"] = round(cpu * 1000 / total, 2)
            return figures
        finally:
            process.terminate()
            process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000, help="the issue asks 5000 (~2.5 min here)")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--processes", type=int, default=[1, 2], nargs="+",
                        help="MAIL_SMTP_PROCESSES values to measure ours with (default: 1 and 2)")
    parser.add_argument("--listener", choices=[MX, SUBMISSION], default=MX,
                        help="mx (the issue's benchmark) or submission (sessions log in, send to local mailboxes)")
    parser.add_argument("--prepare-ours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-baseline", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_ours:
        prepare_ours(args.prepare_ours)
        return
    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    baseline = measure("baseline", args.messages, args.sessions)
    report: dict[str, object] = {
        "benchmark": f"inbound SMTP over the {args.listener} listener into local mailboxes (SQLite)",
        "message_bytes": MESSAGE_SIZE,
        "sessions": args.sessions,
        "baseline_aiosmtpd_fsync_file": baseline,
    }
    for processes in args.processes:
        ours = measure("ours", args.messages, args.sessions, processes, args.listener)
        report[f"mailcore_{args.listener}_smtp_processes_{processes}"] = ours
        report[f"ratio_vs_baseline_smtp_processes_{processes}"] = round(
            ours["messages_per_second"] / baseline["messages_per_second"], 3
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
