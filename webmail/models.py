"""Webmail preferences per user (mail itself lives in mailcore.store)."""
from __future__ import annotations

from django.conf import settings
from django.db import models

PAGE_SIZES = (25, 50, 100)


class Preferences(models.Model):
    """What a user chose in Settings."""

    REMOTE_ASK, REMOTE_ALWAYS = "ask", "always"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webmail_prefs")
    display_name = models.CharField(max_length=200, blank=True)
    signature = models.TextField(blank=True)  # of the sign-in address
    alias_signatures = models.JSONField(default=dict, blank=True, help_text="Signature per alias (From choice).")
    page_size = models.PositiveSmallIntegerField(default=50)
    conversations = models.BooleanField(default=False)
    remote_images = models.CharField(
        max_length=8, default=REMOTE_ASK, choices=[(REMOTE_ASK, "ask"), (REMOTE_ALWAYS, "always")]
    )
    trusted_senders = models.JSONField(default=list, blank=True, help_text="Senders whose images always load.")
    language = models.CharField(max_length=8, blank=True, help_text="Empty: the browser's language.")

    def __str__(self) -> str:
        return f"preferences of {self.user}"

    def signature_for(self, address: str, login: str) -> str:
        """The signature of one identity: the sign-in address has `signature`, each alias its own."""
        if address.lower() == login.lower():
            return self.signature
        return str(self.alias_signatures.get(address.lower(), ""))

    @classmethod
    def of(cls, user: object) -> Preferences:
        prefs, _ = cls.objects.get_or_create(user=user)
        return prefs


class PendingSend(models.Model):
    """A message the user sent from the webmail, held until `due_at` so that "undo send" can stop it.

    The row is the durable truth (committed before the user sees "sending"): a crash
    during the window loses nothing, the outbox job submits it when it comes back.
    Nothing is delivered, locally or remotely, and nothing is queued until release.
    """

    account_id = models.BigIntegerField(db_index=True)
    sender = models.CharField(max_length=320)
    recipients = models.JSONField(default=list)
    message = models.BinaryField()  # what is submitted (no Bcc header)
    draft = models.BinaryField()  # what goes back to Drafts on undo (Bcc kept)
    summary = models.CharField(max_length=300, blank=True)  # "To: ..." line shown while held
    due_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pending send {self.pk} of account {self.account_id} due {self.due_at:%H:%M:%S}"
