import getpass
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from mailcore import directory, imapimport, store


class Command(BaseCommand):
    help = (
        "Copy every folder of an account on another IMAP server into ADDRESS's folders (same names, "
        "flags and internal dates kept). Resumable: running it again fetches only what is new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="the local account, e.g. alice@example.test")
        parser.add_argument("--host", required=True, help="the source IMAP server")
        parser.add_argument("--user", required=True, help="the login name on the source server")
        parser.add_argument("--port", type=int, help="default 993 with --ssl, else 143")
        security = parser.add_mutually_exclusive_group()
        security.add_argument("--ssl", action="store_true", help="implicit TLS (RFC 8314)")
        security.add_argument("--starttls", action="store_true", help="STARTTLS (RFC 3501 §6.2.1)")
        parser.add_argument("--password-file", help="read the password from the first line of this file "
                            "(default: ask for it)")
        parser.add_argument("--ca-file", help="trust this CA certificate file for the source's TLS certificate")

    def handle(self, *args: Any, **options: Any) -> None:
        account = directory.account_for_login(options["address"])
        if account is None:
            raise CommandError(f"no mailbox {options['address']}")
        security = imapimport.PLAIN
        if options["ssl"] or options["starttls"]:
            security = imapimport.SSL if options["ssl"] else imapimport.STARTTLS
        source = imapimport.Source(
            host=options["host"], port=options["port"] or imapimport.DEFAULT_PORTS[security], username=options["user"],
            password=self._password(options["password_file"]), security=security, ca_file=options["ca_file"],
        )
        try:
            with tqdm(total=0, unit="msg", desc="importing", disable=None) as bar:
                progress = imapimport.Progress(found=lambda n: _grow(bar, n), handled=bar.update)
                summary = imapimport.import_account(account.pk, source, progress)
        except (imapimport.ImportFailed, store.StoreError) as err:
            raise CommandError(str(err)) from err
        self.stdout.write(
            f"imported {summary.imported} message(s), skipped {summary.skipped} already present, "
            f"from {len(summary.folders)} folder(s) of {source.username} at {source.host}"
        )

    def _password(self, path: str | None) -> str:
        if path is None:
            return getpass.getpass("password on the source server: ")
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as err:
            raise CommandError(f"cannot read {path}: {err.strerror}") from err
        return lines[0] if lines else ""


def _grow(bar: tqdm, count: int) -> None:
    bar.total = (bar.total or 0) + count
    bar.refresh()
