import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from mailcore.conf import conf
from mailcore.directory import create_account, create_domain
from mailcore.models import Domain

DEMO_DOMAIN = "example.test"
DEMO_USERS = ("alice", "bob")
DEMO_ADMIN = "admin"


class Command(BaseCommand):
    help = (
        "On first run, create the demo domain example.test with two mailboxes and an admin login "
        "for /admin/; print the logins (kept in var/demo-logins.txt)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        logins = conf.var_dir / "demo-logins.txt"
        if not Domain.objects.filter(name=DEMO_DOMAIN).exists():
            create_domain(DEMO_DOMAIN)
            admin_password = secrets.token_urlsafe(12)
            get_user_model().objects.create_superuser(DEMO_ADMIN, "", admin_password)
            lines = [f"{DEMO_ADMIN} (for /admin/)  password: {admin_password}"]
            for user in DEMO_USERS:
                password = secrets.token_urlsafe(12)
                create_account(f"{user}@{DEMO_DOMAIN}", password)
                lines.append(f"{user}@{DEMO_DOMAIN}  password: {password}")
            logins.write_text("\n".join(lines) + "\n")
            logins.chmod(0o600)
        if logins.exists():
            self.stdout.write("Demo logins (also in var/demo-logins.txt):")
            self.stdout.write(logins.read_text().rstrip())
