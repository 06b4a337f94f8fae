"""Webmail benchmark: server time of the main screens with 100,000 messages in one folder.

Loads the folder through the store's bulk_append (a scratch database: SQLite under
a temporary var/, or PostgreSQL when DATABASE_URL is set), then times requests
through Django's test client (the whole view, templates and queries, no network):
the folder page 1, a deep page, opening a message, a full-text search with hits
and one with none. The baseline in the same run is the sign-in page (no queries),
so each figure is also given as a ratio to it. Prints one JSON document.
Usage: python bench/webmail.py [--messages N] [--runs N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["budget", "report", "meeting", "lunch", "invoice", "travel", "project", "release", "holiday", "contract",
         "draft", "review", "schedule", "pizza", "garden", "river", "mountain", "orange", "purple", "quantum"]


def setup_django(scratch: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["MAIL_VAR_DIR"] = scratch
    os.environ["ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def messages(count: int, distinct: int = 2000) -> list[bytes]:
    """`count` messages made from `distinct` different bodies (blobs are stored once per body)."""
    bodies = []
    for n in range(distinct):
        words = " ".join(WORDS[(n * 7 + k) % len(WORDS)] for k in range(60))
        bodies.append((f"From: Sender {n} <s{n}@remote.test>\r\nTo: alice@example.test\r\nSubject: message {n} "
                       f"{WORDS[n % len(WORDS)]}\r\nMessage-ID: <{n}@bench>\r\n\r\n{words} unique{n}\r\n").encode())
    return [bodies[n % distinct] for n in range(count)]


def timed(client, url: str, runs: int) -> dict[str, float]:
    client.get(url)  # one warm-up request per screen (template loading, the page's rows in the cache)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2),
            "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        setup_django(scratch)
        from django.db import connection
        from django.test import Client

        from mailcore import store
        from mailcore.directory import create_account, create_domain
        from mailcore.store.bulk import bulk_append

        create_domain("example.test")
        account = create_account("alice@example.test", "bench-password-1")
        inbox = store.get_folder(account.pk, store.INBOX)
        start = time.perf_counter()
        uids = bulk_append(inbox, messages(args.messages))
        load_seconds = time.perf_counter() - start
        if connection.vendor == "postgresql":
            # What autovacuum does within a minute of a bulk load: without statistics the planner
            # guesses every table holds a few hundred rows (and search words are rare).
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        client = Client()
        client.post("/login/", {"address": "alice@example.test", "password": "bench-password-1"})
        folder = f"/mail/{inbox.mailbox_id}/"
        screens = {
            "baseline_login_page": "/login/",
            "folder_page_1": folder,
            "folder_deep_page": f"{folder}?before={uids[len(uids) // 50]}",
            "open_message": f"{folder}{uids[len(uids) // 2]}/",
            "search_hits": "/search/?q=budget+report",
            "search_no_hits": "/search/?q=zzzznothing",
            "search_operator": "/search/?q=from:s77+unique77",
            "unread_counts": "/counts/",
        }
        client.get(folder)  # warm caches and connections
        screens["compose_page"] = "/compose/"  # with autocomplete from Sent and INBOX
        results = {name: timed(client, url, args.runs) for name, url in screens.items()}
        from webmail.models import Preferences

        Preferences.objects.filter(user__isnull=False).update(conversations=True)
        conversation_screens = {"folder_page_1_conversations": folder,
                                "open_message_conversations": screens["open_message"]}
        results.update({name: timed(client, url, args.runs) for name, url in conversation_screens.items()})
        base = results["baseline_login_page"]["p50_ms"] or 1
        for figures in results.values():
            figures["ratio_to_baseline_p50"] = round(figures["p50_ms"] / base, 1)
        print(json.dumps({"benchmark": "webmail", "database": connection.vendor, "messages": args.messages,
                          "load_seconds": round(load_seconds, 1), "runs": args.runs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
