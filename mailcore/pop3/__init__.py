"""The POP3 server (RFC 1939 with CAPA, STLS and SASL): hands out each account's INBOX through mailcore.store."""
from mailcore.pop3.server import serve

__all__ = ["serve"]
