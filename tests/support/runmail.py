"""`manage.py runmail` as a real process for tests: started, waited for until ready, stopped with SIGTERM."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import stop

ROOT = Path(__file__).resolve().parents[2]
LISTENERS = ("SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "POP3", "POP3S")


@dataclass
class Runmail:
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)  # its stderr, line by line, as it comes


@contextmanager
def runmail(env: dict[str, str], timeout: float = 60,
            preexec_fn: Callable[[], None] | None = None) -> Iterator[Runmail]:
    """Run runmail with `env` (listeners whose MAIL_<NAME>_PORT is unset are turned off) until the block ends;
    `preexec_fn` runs in the child before it starts (to set its limits, say)."""
    env = {**env, **{f"MAIL_{name}_PORT": "0" for name in LISTENERS if f"MAIL_{name}_PORT" not in env}}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runmail"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=preexec_fn,
    )
    running = Runmail(process)
    try:
        _wait_ready(running, timeout)
        yield running
    finally:
        stop(process)


def _wait_ready(running: Runmail, timeout: float) -> None:
    assert running.process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = running.process.stderr.readline()
        if not line:
            raise AssertionError(f"runmail exited before it was ready: {''.join(running.log)}")
        running.log.append(line)
        if "runmail ready" in line:
            threading.Thread(target=_keep_reading, args=(running,), daemon=True).start()
            return
    raise AssertionError(f"runmail was not ready in {timeout} s: {''.join(running.log)}")


def _keep_reading(running: Runmail) -> None:
    assert running.process.stderr is not None
    for line in running.process.stderr:
        running.log.append(line)
