from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from mailcore import store


class Command(BaseCommand):
    help = "Delete stored message blobs that no message refers to (left by failed writes or expunges)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace", type=float, default=3600, help="keep blobs younger than this (seconds)")

    def handle(self, *args: Any, **options: Any) -> None:
        removed = store.collect_orphan_blobs(grace=float(str(options["grace"])))
        self.stdout.write(f"removed {len(removed)} orphan blob(s)")
