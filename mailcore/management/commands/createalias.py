from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailcore.directory import DirectoryError, create_alias


class Command(BaseCommand):
    help = "Add an alias: ADDRESS (or @domain for a catch-all) delivers to each TARGET (local or remote)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="e.g. postmaster@example.test, or @example.test")
        parser.add_argument("targets", nargs="+", help="one or more destination addresses")

    def handle(self, *args: Any, **options: Any) -> None:
        targets = [str(t) for t in options["targets"]]
        try:
            alias = create_alias(str(options["address"]), targets)
        except DirectoryError as err:
            raise CommandError(str(err)) from err
        self.stdout.write(f"created alias {alias.source} -> {', '.join(targets)}")
