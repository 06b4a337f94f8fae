from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from mailcore.address import AddressError
from mailcore.delivery import dkim


class Command(BaseCommand):
    help = "Make an RSA-2048 DKIM key for DOMAIN and print the DNS TXT record to publish."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("domain", help="the signing domain, e.g. example.test")
        parser.add_argument("--selector", default="", help="the selector (default: MAIL_DKIM_SELECTOR plus a date)")

    def handle(self, *args: Any, **options: Any) -> None:
        selector = options["selector"] or dkim.default_selector()
        try:
            key = dkim.create_key(options["domain"], selector)
        except AddressError as err:
            raise CommandError(f"invalid domain: {err}") from err
        except IntegrityError as err:
            raise CommandError(f"a key with selector {selector} exists for {options['domain']}") from err
        self.stdout.write(dkim.txt_record(key))

