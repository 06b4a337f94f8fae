from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailcore.address import display_domain
from mailcore.directory import DirectoryError, create_domain


class Command(BaseCommand):
    help = "Add a domain this server receives mail for (IDNA names are accepted)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain", help="e.g. example.test or bücher.example")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            domain = create_domain(options["domain"])
        except DirectoryError as err:
            raise CommandError(str(err)) from err
        self.stdout.write(f"created domain {domain.name} ({display_domain(domain.name)})")
