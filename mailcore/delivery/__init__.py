"""Outbound delivery: the queue (the database is its truth), MX lookup, SMTP client, retries, bounces."""
from mailcore.delivery.queue import on_enqueue
from mailcore.delivery.wake import wake

on_enqueue(wake)
