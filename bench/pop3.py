"""POP3 benchmark: RETR of 1,000 messages of 4 KB, in one session and over 20 parallel sessions.

Our server runs as `manage.py runmail` (SQLite in a scratch var/); the baseline in
the same run is Debian's Dovecot POP3 (dovecot-pop3d) started here in the
foreground with a throwaway configuration on a loopback port (no system
service), serving the same messages from Maildirs. The same raw-socket client
drives both. Both servers run side by side and are measured in rounds, ours then
Dovecot's right after, each round on mailboxes never read before (so every timed
RETR is a first retrieval, \\Seen marking included, on both): the machine's
background load changes less within a round than across a run. Prints one JSON
document with every round's messages per second, and the medians of the rounds'
figures and of their ratios.
Usage: python bench/pop3.py [--messages N] [--sessions N] [--rounds N]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support import processes  # noqa: E402
from tests.support.dovecot import Dovecot, DovecotError  # noqa: E402 - after the path is set
from tests.support.net import free_port, wait_listening  # noqa: E402

MESSAGE_SIZE = 4096
PASSWORD = "bench-password-1"
OTHER_PORTS = ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3S")


def message(n: int) -> bytes:
    head = f"From: bench@elsewhere.test\r\nTo: user@bench.test\r\nSubject: bench {n}\r\nMessage-ID: <{n}@b>\r\n\r\n"
    body = b"".join(f"line {n}.{i} of the benchmark message body\r\n".encode() for i in range(200))
    return head.encode() + body[: MESSAGE_SIZE - len(head) - 2] + b"\r\n"


# The client ------------------------------------------------------------------------------------------


class Client:
    """A minimal POP3 client: one command at a time, reads each response to its end."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""
        self.line()

    def _fill(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        if not line.startswith(b"+OK"):
            raise RuntimeError(line.decode())
        return line

    def command(self, text: str) -> bytes:
        self.sock.sendall(text.encode() + b"\r\n")
        return self.line()

    def multiline(self, text: str) -> int:
        self.command(text)
        while not (self.buffer.endswith(b"\r\n.\r\n") or self.buffer == b".\r\n"):
            self._fill()
        size, self.buffer = len(self.buffer), b""
        return size

    def login(self, user: str) -> int:
        self.command(f"USER {user}")
        reply = self.command(f"PASS {PASSWORD}")
        return int(reply.split()[3]) if reply.startswith(b"+OK maildrop") else self.stat()

    def stat(self) -> int:
        return int(self.command("STAT").split()[1])


def timed(port: int, users: list[str]) -> tuple[float, float]:
    """Messages per second of RETR for all `users` in parallel sessions (timed after every login), and the
    milliseconds a QUIT took afterwards (where both servers store the \\Seen flags; not in the rate)."""
    clients = []
    for user in users:
        client = Client(port)
        client.login(user)
        clients.append(client)
    counts = [client.stat() for client in clients]
    errors: list[BaseException] = []
    start_line = threading.Barrier(len(clients) + 1)

    def run(client: Client, count: int) -> None:
        start_line.wait()
        try:
            for number in range(1, count + 1):
                client.multiline(f"RETR {number}")
        except (OSError, EOFError, RuntimeError) as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(clients, counts, strict=True)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    quit_start = time.perf_counter()
    for client in clients:
        client.command("QUIT")
        client.sock.close()
    quit_ms = (time.perf_counter() - quit_start) * 1000 / len(clients)
    if errors:
        raise errors[0]
    return round(sum(counts) / elapsed, 1), round(quit_ms, 1)


def warm_up(port: int, users: list[str]) -> None:
    for user in users:
        client = Client(port)
        client.login(user)
        client.multiline("LIST")
        client.command("QUIT")


# Our server ---------------------------------------------------------------------------------------------


def our_server(var: Path, plan: dict[str, int]) -> subprocess.Popen[bytes]:
    port = free_port()
    env = {**os.environ, "MAIL_VAR_DIR": str(var), "PYTHONPATH": str(ROOT), "MAIL_POP3_PORT": str(port),
           "LOG_LEVEL": "WARNING"}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    env.update({f"MAIL_{name}_PORT": "0" for name in OTHER_PORTS})
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True)
    setup = (
        "import django, json, sys; django.setup()\n"
        "from mailcore import store; from mailcore.directory import create_domain, create_account\n"
        "from mailcore.store import blobs; from mailcore.store.bulk import bulk_append\n"
        "sys.path.insert(0, sys.argv[2]); from pop3 import message\n"
        "create_domain('bench.test')\n"
        "for user, count in json.loads(sys.argv[1]).items():\n"
        f"    account = create_account(user + '@bench.test', {PASSWORD!r})\n"
        "    with blobs.deferred_sync():\n"
        "        bulk_append(store.get_folder(account.pk, store.INBOX), [message(n) for n in range(count)])\n"
        "        blobs.sync_deferred()\n"
    )
    subprocess.run([sys.executable, "-c", setup, json.dumps(plan), str(ROOT / "bench")],
                   env={**env, "DJANGO_SETTINGS_MODULE": "config.settings"}, check=True, cwd=ROOT)
    process = subprocess.Popen([*manage, "runmail"], env=env, stderr=subprocess.DEVNULL)
    process.port = port  # type: ignore[attr-defined]  # the benchmark's own bookkeeping
    wait_listening(port)
    return process


# Dovecot ------------------------------------------------------------------------------------------------

def dovecot(plan: dict[str, int]) -> Dovecot:
    """Dovecot's POP3 with the same mailboxes (Maildir, one file per message), not yet started."""
    try:
        server = Dovecot("pop3", dict.fromkeys(plan, PASSWORD))
    except DovecotError as err:
        raise SystemExit(str(err)) from err
    for user, count in plan.items():
        new = server.maildir(user) / "new"
        for n in range(count):
            (new / f"{1_700_000_000 + n}.M{n}P1.bench").write_bytes(message(n).replace(b"\r\n", b"\n"))
    return server  # `with` starts it


stop = processes.stop


def round_users(round_number: int, sessions: int) -> tuple[str, list[str]]:
    return f"single{round_number}", [f"r{round_number}p{i}" for i in range(sessions)]


def measure(port: int, single: str, parallel: list[str]) -> tuple[dict[str, float], float]:
    """RETR rates of one session and of the parallel sessions, and the one session's QUIT in milliseconds."""
    warm_up(port, [single, *parallel])
    one, one_quit = timed(port, [single])
    many, _ = timed(port, parallel)
    return {"one_session": one, "parallel_sessions": many}, one_quit


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in rounds), 2) for key in rounds[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    per_session = max(1, args.messages // args.sessions)
    plan: dict[str, int] = {}
    for number in range(args.rounds):
        single, parallel = round_users(number, args.sessions)
        plan.update({single: args.messages, **dict.fromkeys(parallel, per_session)})
    ours_rounds: list[dict[str, float]] = []
    dove_rounds: list[dict[str, float]] = []
    quits: dict[str, list[float]] = {"mailcore": [], "dovecot": []}
    with tempfile.TemporaryDirectory(prefix="pop3-bench-") as scratch:
        base = Path(scratch)
        base.chmod(0o755)
        (base / "ours").mkdir()
        ours_process = our_server(base / "ours", plan)
        try:
            with dovecot(plan) as server:
                for number in range(args.rounds):
                    single, parallel = round_users(number, args.sessions)
                    addresses = [f"{user}@bench.test" for user in parallel]
                    ours_port = ours_process.port  # type: ignore[attr-defined]
                    ours, ours_quit = measure(ours_port, f"{single}@bench.test", addresses)
                    dove, dove_quit = measure(server.port, single, parallel)  # right after ours
                    ours_rounds.append(ours)
                    dove_rounds.append(dove)
                    quits["mailcore"].append(ours_quit)
                    quits["dovecot"].append(dove_quit)
        finally:
            stop(ours_process)
    ratios = [{key: round(o[key] / d[key], 2) for key in o} for o, d in zip(ours_rounds, dove_rounds, strict=True)]
    result = {
        "benchmark": "pop3 RETR",
        "message_size": MESSAGE_SIZE,
        "messages_one_session": args.messages,
        "parallel_sessions": args.sessions,
        "messages_per_parallel_session": per_session,
        "rounds": args.rounds,
        "mailcore_msgs_per_s": median_of(ours_rounds),
        "dovecot_msgs_per_s": median_of(dove_rounds),
        "ratio_vs_dovecot": median_of(ratios),  # the median of the rounds' ratios
        "ratio_per_round": ratios,
        "mailcore_per_round": ours_rounds,
        "dovecot_per_round": dove_rounds,
        "one_session_quit_ms": {name: statistics.median(values) for name, values in quits.items()},
        "goal": 0.5,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
