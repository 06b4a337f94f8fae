"""Outbound delivery benchmark: messages per second from enqueue to the receiver's 250.

4 KB messages to 20 domains whose MX (found through a DNS server on loopback)
is one aiosmtpd receiver on loopback. Modes: the embedded in-process runner
(SQLite, MAIL_DELIVERY_WORKERS=4) and, when CELERY_BROKER_URL is set and
PostgreSQL is reachable, 4 Celery worker processes. The baseline in the same
run is the receiver's own ceiling: 4 smtplib clients, one connection each,
sending straight to it, measured first and last (the ratios use the mean).
Each mode is measured twice: the pipeline (4 submitters enqueue through the
store's group commit as runmail's submission sessions do, each message durable
before the next; delivery runs meanwhile; to the last 250) and the backlog (as
many messages again queued with no wake-up, then one sweep: delivery alone).
Each figure comes with the CPU ms per message of the bench's own processes.
Prints one JSON document.
Usage: python bench/outbound.py [--messages N]   (the issue's full run: --messages 2000)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.procstat import process_tree_cpu  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

MESSAGE_SIZE = 4096
DOMAINS = 20
WORKERS = 4
PG_URL = "postgres://postgres@127.0.0.1:5432/{name}"
TIME_LIMIT = 120.0  # seconds per mode
ENQUEUE_WAY = "BENCH_ENQUEUE"  # group (the default) or direct, for the child
WORKER_PID = "BENCH_WORKER_PID"  # the Celery worker's main process, for the child's CPU accounting


def cpu_now() -> float:
    """CPU seconds of this process (every thread) and of the Celery worker processes, when there are some."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    worker = int(os.environ.get(WORKER_PID) or 0)
    return usage.ru_utime + usage.ru_stime + (process_tree_cpu(worker) if worker else 0.0)


def message(n: int) -> bytes:
    head = f"From: alice@example.test\r\nTo: {recipient(n)}\r\nSubject: bench {n}\r\nMessage-ID: <{n}@b>\r\n\r\n"
    body = "".join(f"line {i} of bench message {n}, padded to a usual width of text.\r\n" for i in range(80)).encode()
    return head.encode() + body[: MESSAGE_SIZE - len(head)]


def recipient(n: int) -> str:
    return f"u{n}@d{n % DOMAINS}.test"


def ceiling(port: int, total: int) -> tuple[float, float]:
    """The receiver alone: WORKERS clients, one connection each, back to back; rate and CPU ms per message."""
    def client(start: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            for n in range(start, total, WORKERS):
                smtp.sendmail("alice@example.test", [recipient(n)], message(n))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(WORKERS)]
    started, cpu_started = time.perf_counter(), cpu_now()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return total / (time.perf_counter() - started), (cpu_now() - cpu_started) * 1000 / total


def child(total: int, mode: str) -> dict[str, float]:
    """In a child with its own settings: enqueue `total` messages, wait until all are delivered."""
    import asyncio

    import django

    django.setup()
    from django.core.management import call_command

    from mailcore.delivery import queue
    from mailcore.models import OutboundRecipient
    from mailcore.store import aio

    call_command("migrate", verbosity=0)

    async def submit_all(offset: int = 0) -> None:
        """WORKERS submitters at once, as the ceiling has WORKERS clients; each waits until its message is durable.

        They enqueue as runmail's SMTP submission sessions do: through the store's
        group commit (`aio.run_durable`), so concurrent enqueues share one fsync and COMMIT.
        """
        grouped = os.environ.get(ENQUEUE_WAY, "group") == "group"

        async def submitter(start: int) -> None:
            for n in range(offset + start, offset + total, WORKERS):
                args = (message(n), "alice@example.test", [recipient(n)])
                if grouped:
                    await aio.run_durable(queue.enqueue, *args)
                else:  # --enqueue direct: each submitter its own transaction and fsync, in a thread of its own
                    await asyncio.to_thread(queue.enqueue, *args)

        await asyncio.gather(*(submitter(i) for i in range(WORKERS)))

    def enqueue_all(offset: int = 0) -> None:
        asyncio.run(submit_all(offset))

    timing: dict[str, float] = {}

    def delivered() -> int:
        return OutboundRecipient.objects.filter(state="delivered").count()

    async def enqueue_timed() -> None:
        await submit_all()
        timing["enqueue_seconds"] = round(time.perf_counter() - started, 2)

    started = time.perf_counter()
    timing["cpu_started"] = cpu_now()
    if mode == "embedded":
        elapsed = asyncio.run(with_runner(total, delivered, started, first=enqueue_timed))
    else:
        asyncio.run(enqueue_timed())
        elapsed = wait_for(total, delivered, started)
    cpu = cpu_now() - timing.pop("cpu_started")
    done = delivered()
    result = {"messages_per_second": round(done / elapsed, 1), "delivered": done, "seconds": round(elapsed, 2),
              **timing, "cpu_ms_per_message": round(cpu * 1000 / max(done, 1), 2)}
    rate, cpu = backlog(total, mode, enqueue_all, delivered)
    result.update(backlog_messages_per_second=rate, backlog_cpu_ms_per_message=cpu)
    return result


async def with_runner(goal: int, delivered, started: float, first=None) -> float:  # type: ignore[no-untyped-def]
    """The in-process runner on, `first()` awaited, until `goal` messages are delivered; seconds since `started`."""
    import asyncio

    from mailcore.delivery import runner

    job = asyncio.create_task(runner.delivery_runner())
    try:
        if first is not None:
            await first()
        while await asyncio.to_thread(delivered) < goal and time.perf_counter() - started < TIME_LIMIT:
            await asyncio.sleep(0.05)
        return time.perf_counter() - started
    finally:
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)


def wait_for(goal: int, delivered, started: float) -> float:  # type: ignore[no-untyped-def]
    """Poll until `goal` messages are delivered (or TIME_LIMIT); seconds since `started`."""
    while delivered() < goal and time.perf_counter() - started < TIME_LIMIT:
        time.sleep(0.05)
    return time.perf_counter() - started


def backlog(total: int, mode: str, enqueue_all, delivered) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Delivery alone: `total` more messages queued with no wake-up, then one sweep; rate to the last 250.

    Returns the rate and the CPU milliseconds per message spent meanwhile.
    """
    import asyncio

    from mailcore.delivery import queue
    from mailcore.tasks import sweep_queue

    hooks, queue._wake_hooks[:] = list(queue._wake_hooks), []
    try:
        enqueue_all(offset=total)
    finally:
        queue._wake_hooks[:] = hooks
    goal = 2 * total
    cpu_started = cpu_now()

    started = time.perf_counter()
    if mode == "embedded":
        elapsed = asyncio.run(with_runner(goal, delivered, started))
    else:
        sweep_queue()
        elapsed = wait_for(goal, delivered, started)
    done = delivered() - total
    return round(done / elapsed, 1), round((cpu_now() - cpu_started) * 1000 / max(done, 1), 2)


def run_mode(mode: str, total: int, env: dict[str, str]) -> dict[str, float]:
    workers = []
    if mode == "celery":
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", f"--concurrency={WORKERS}",
                   "--without-gossip", "--without-mingle", "--loglevel=WARNING", "-Q", env["CELERY_TASK_DEFAULT_QUEUE"]]
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], env=env, cwd=ROOT, check=True)
        workers.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL))
        env = {**env, WORKER_PID: str(workers[-1].pid)}
        time.sleep(3)  # let the pool start
    try:
        output = subprocess.run([sys.executable, __file__, "--child", mode, "--messages", str(total)],
                                env=env, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    finally:
        if mode == "celery":  # first, so the workers stop idle: the sweep's no-op tasks are still queued
            delete_queue(env["CELERY_BROKER_URL"], env["CELERY_TASK_DEFAULT_QUEUE"])
        for process in workers:
            stop_worker(process)
        if mode == "celery":  # and again: a stopping worker puts back the tasks it had reserved
            delete_queue(env["CELERY_BROKER_URL"], env["CELERY_TASK_DEFAULT_QUEUE"])
    return json.loads(output.strip().splitlines()[-1])


def stop_worker(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown; if it hangs (billiard's pool children can wait 30 s for the parent to read their
    last results), SIGKILL the pool children and the worker, all of them processes this bench started."""
    process.terminate()
    try:
        process.wait(45)
    except subprocess.TimeoutExpired:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        process.kill()
        process.wait(10)


def delete_queue(broker: str, name: str) -> None:
    """Leave nothing of this run in a broker shared with others: its queue (with any messages) and bindings.

    Exact key names only (kombu's Redis layout), never a pattern or a flush.
    """
    import redis

    client = redis.Redis.from_url(broker)
    try:
        client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")
    finally:
        client.close()


def psql(sql: str) -> bool:
    return subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql],
                          capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--only", choices=["embedded", "celery"], help="run one mode only (profiling)")
    parser.add_argument("--enqueue", choices=["group", "direct"], default="group",
                        help="group: through the store's group commit, as SMTP submission (default); "
                             "direct: one transaction per message, for comparison")
    parser.add_argument("--child", choices=["embedded", "celery"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.messages, args.child)))
        return
    from tests.support.dnsserver import DNSServer
    from tests.support.smtpreceiver import SMTPReceiver

    zone: dict[str, object] = {f"d{i}.test": {"MX": ["10 mx.bench.test."]} for i in range(DOMAINS)}
    zone["mx.bench.test"] = {"A": ["127.0.0.1"]}
    broker = os.environ.get("CELERY_BROKER_URL", "")
    with DNSServer(zone) as dns_server:
        receiver = SMTPReceiver(starttls=False).start()
        try:
            report: dict[str, object] = {
                "benchmark": "outbound delivery, enqueue to the receiver's 250",
                "message_bytes": MESSAGE_SIZE, "messages": args.messages, "enqueue": args.enqueue,
                "domains": DOMAINS, "workers": WORKERS,
                "unit": "messages per second",
            }
            first_rate, cpu = ceiling(receiver.port, args.messages)
            # The receiver and its 4 clients, all in this process.
            report.update(baseline_cpu_ms_per_message=round(cpu, 2))
            base_env = {
                **os.environ, "PYTHONPATH": str(ROOT), "MAIL_DNS_NAMESERVERS": dns_server.nameserver,
                "MAIL_OUTBOUND_PORT": str(receiver.port), "MAIL_ALLOW_PRIVATE_MX": "1",
                "MAIL_DELIVERY_WORKERS": str(WORKERS), "LOG_LEVEL": "WARNING", ENQUEUE_WAY: args.enqueue,
            }
            base_env.pop("REDIS_URL", None)
            with tempfile.TemporaryDirectory() as var:
                env = {**base_env, "MAIL_VAR_DIR": var, "CELERY_BROKER_URL": ""}
                env.pop("DATABASE_URL", None)
                if args.only in (None, "embedded"):
                    report["embedded_sqlite"] = run_mode("embedded", args.messages, env)
            name = f"mail_bench_outbound_{os.getpid()}"
            if broker and args.only in (None, "celery") and psql(f"CREATE DATABASE {name}"):
                try:
                    with tempfile.TemporaryDirectory() as var:
                        env = {**base_env, "MAIL_VAR_DIR": var, "CELERY_BROKER_URL": broker,
                               "DATABASE_URL": PG_URL.format(name=name), "CELERY_TASK_DEFAULT_QUEUE": name}
                        report["celery_postgresql"] = run_mode("celery", args.messages, env)
                finally:
                    psql(f"DROP DATABASE {name}")
            # Measured again at the end, as the other load on a shared machine moves it; the ratios use the mean.
            last_rate, _ = ceiling(receiver.port, args.messages)
            report.update(baseline_receiver_ceiling=round((first_rate + last_rate) / 2, 1),
                          baseline_receiver_ceiling_first_last=[round(first_rate, 1), round(last_rate, 1)])
        finally:
            receiver.stop()
    ceiling_rate = float(report["baseline_receiver_ceiling"])  # type: ignore[arg-type]
    for mode in ("embedded_sqlite", "celery_postgresql"):
        if mode in report:
            figures = report[mode]
            report[f"{mode}_vs_ceiling"] = round(figures["messages_per_second"] / ceiling_rate, 3)  # type: ignore[index]
            report[f"{mode}_backlog_vs_ceiling"] = round(  # delivery alone, enqueue excluded
                figures["backlog_messages_per_second"] / ceiling_rate, 3)  # type: ignore[index]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
