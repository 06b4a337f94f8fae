from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from mailcore import directory, mailboxio, store


class Command(BaseCommand):
    help = "Export every folder of ADDRESS to PATH as a Maildir tree or as NAME.mbox files (mboxrd)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="the local account, e.g. alice@example.test")
        parser.add_argument("path", help="the directory to write (created if missing)")
        parser.add_argument("--format", choices=["maildir", "mbox"], default="maildir")

    def handle(self, *args: Any, **options: Any) -> None:
        account = directory.account_for_login(options["address"])
        if account is None:
            raise CommandError(f"no mailbox {options['address']}")
        try:
            with tqdm(unit="msg", desc="exporting", disable=None) as bar:
                summary = mailboxio.export_account(account.pk, Path(options["path"]), options["format"], bar.update)
        except (OSError, store.StoreError) as err:
            raise CommandError(f"export failed: {err}") from err
        self.stdout.write(
            f"exported {summary.imported} message(s) from {len(summary.folders)} folder(s) to {options['path']}"
        )
