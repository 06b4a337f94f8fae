"""The browser client: reads and changes mail only through mailcore.store."""
