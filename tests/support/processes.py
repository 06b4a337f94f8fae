"""Stopping child processes that tests and benchmarks start (servers, workers, browsers)."""
from __future__ import annotations

import subprocess


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
