"""Outbound delivery: the queue (the database is its truth), MX lookup, SMTP client, retries, bounces."""
