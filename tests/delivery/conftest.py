"""Fixtures for delivery tests: the loopback DNS server (shared helper) and the SMTP receiver."""
from tests.support.dnsserver import dns_server  # noqa: F401  (a fixture, used by name)
