"""Shared test helpers: real peers on loopback (a DNS server, an SMTP receiver) for tests of any area."""
