from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from mailcore import directory, mailboxio, store


class Command(BaseCommand):
    help = (
        "Import an mbox file, a directory of NAME.mbox files, or a Maildir tree into ADDRESS's folders "
        "(flags kept; messages already there are skipped)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="the local account, e.g. alice@example.test")
        parser.add_argument("path", help="an mbox file, a directory of .mbox files, or a Maildir")
        parser.add_argument("--folder", default=store.INBOX, help="folder for a single mbox file (default INBOX)")

    def handle(self, *args: Any, **options: Any) -> None:
        account = directory.account_for_login(options["address"])
        if account is None:
            raise CommandError(f"no mailbox {options['address']}")
        path = Path(options["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            with tqdm(unit="msg", desc="importing", disable=None) as bar:
                source = mailboxio.read_source(path, options["folder"])
                summary = mailboxio.import_messages(account.pk, source, bar.update)
        except (mailboxio.TransferError, store.StoreError) as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"imported {summary.imported} message(s), skipped {summary.skipped} already present, "
            f"into {len(summary.folders)} folder(s): {', '.join(summary.folders)}"
        )
