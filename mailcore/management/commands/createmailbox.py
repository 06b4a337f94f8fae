import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mailcore.directory import DirectoryError, create_account


class Command(BaseCommand):
    help = (
        "Add a mailbox (a mail account with its folders). The password comes from --password, "
        "else a prompt, else standard input when it is not a terminal."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="e.g. alice@example.test (its domain must exist)")
        parser.add_argument("--password", help="the account password (avoid on shared machines)")
        parser.add_argument("--quota", type=int, default=0, help="quota in bytes; 0 means no limit")

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or self._read_password()
        try:
            account = create_account(str(options["address"]), password, quota_bytes=int(str(options["quota"])))
        except DirectoryError as err:
            raise CommandError(str(err)) from err
        self.stdout.write(f"created mailbox {account.email}")

    def _read_password(self) -> str:
        if sys.stdin.isatty():
            first = getpass.getpass("Password: ")
            if first != getpass.getpass("Password (again): "):
                raise CommandError("the two passwords differ")
            password = first
        else:
            password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("an empty password is not allowed")
        return password
