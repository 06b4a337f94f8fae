"""Webmail views, one module per screen; every one reads and changes mail through mailcore.store."""
