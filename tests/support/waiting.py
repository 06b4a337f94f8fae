"""Polling until something is true, with a deadline (tests never wait without one)."""
from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], seconds: float = 60.0, interval: float = 0.05) -> bool:
    """True as soon as `predicate()` is; False if it still is not after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
