"""Login throttling shared by SMTP AUTH, IMAP, POP3 and the webmail.

Failures are counted per client IP in Django's cache (in-process by default,
Redis when REDIS_URL is set, so every process sees the same counts). Each
failure slows the next reply; MAX_FAILURES within WINDOW_SECONDS blocks the IP
until the window passes.
"""
from __future__ import annotations

from django.core.cache import cache

WINDOW_SECONDS = 600  # failures are remembered this long (10 minutes)
MAX_FAILURES = 10  # this many failures in the window block the IP
DELAY_PER_FAILURE = 0.5  # seconds added to the next reply per recent failure
MAX_DELAY = 5.0
_KEY = "mailcore:authfail:{ip}"


def failures(ip: str) -> int:
    return int(cache.get(_KEY.format(ip=ip), 0))


def record_failure(ip: str) -> int:
    """Count one failed login from `ip`; return the count in the current window."""
    key = _KEY.format(ip=ip)
    if cache.add(key, 1, timeout=WINDOW_SECONDS):
        return 1
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=WINDOW_SECONDS)
        return 1


def is_blocked(ip: str) -> bool:
    """Whether `ip` has failed too often: SMTP `421 4.7.0`, IMAP `NO [UNAVAILABLE]`, POP3 `-ERR [AUTH]`."""
    return failures(ip) >= MAX_FAILURES


def delay_for(ip: str) -> float:
    """Seconds to wait before answering the next login attempt from `ip`."""
    return min(MAX_DELAY, DELAY_PER_FAILURE * failures(ip))


def reset(ip: str) -> None:
    cache.delete(_KEY.format(ip=ip))
