"""The post office's tables: hosted domains, accounts, aliases, folders, messages.

Only mailcore.store, mailcore.directory and the admin touch these models; every
protocol and the webmail go through mailcore.store.
"""
from __future__ import annotations

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from mailcore.address import AddressError, display_domain, normalize_domain

# RFC 6154 §2: the special-use attributes a new account's folders carry, in display order.
DEFAULT_FOLDERS: tuple[tuple[str, str], ...] = (
    ("INBOX", ""),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
SPECIAL_USES = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
# RFC 9051 §2.3.2 / RFC 3501 §2.3.2: the system flags a message row stores as columns.
SYSTEM_FLAG_FIELDS = {
    "\\Seen": "seen",
    "\\Answered": "answered",
    "\\Flagged": "flagged",
    "\\Deleted": "deleted",
    "\\Draft": "draft",
}


class Domain(models.Model):
    """A domain this server receives mail for. Stored as a lowercase IDNA A-label."""

    # How outbound mail whose envelope sender is in this domain leaves (mailcore/delivery/transport.py).
    TRANSPORT_DEFAULT, TRANSPORT_MX, TRANSPORT_SMARTHOST, TRANSPORT_ANYMAIL = "", "mx", "smarthost", "anymail"
    TRANSPORTS = [
        (TRANSPORT_DEFAULT, "default (MAIL_RELAY)"),
        (TRANSPORT_MX, "direct to MX"),
        (TRANSPORT_SMARTHOST, "smarthost (MAIL_RELAY_HOST)"),
        (TRANSPORT_ANYMAIL, "anymail (MAIL_ANYMAIL_BACKEND)"),
    ]

    name = models.CharField(max_length=255, unique=True)
    active = models.BooleanField(default=True)
    transport = models.CharField(
        max_length=10, choices=TRANSPORTS, default=TRANSPORT_DEFAULT, blank=True,
        help_text="How mail sent from this domain leaves the server.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return display_domain(self.name)

    def clean(self) -> None:
        try:
            self.name = normalize_domain(self.name)
        except AddressError as err:
            raise ValidationError({"name": str(err)}) from err


class Account(models.Model):
    """A mail user: one address, one Django user holding the password, a quota."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="accounts")
    local_part = models.CharField(max_length=64, help_text="As the user writes it (case kept).")
    address = models.CharField(max_length=320, unique=True, editable=False, help_text="Lookup key.")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mail_account")
    quota_bytes = models.BigIntegerField(default=0, help_text="0 means no limit.")
    recipients_per_hour = models.PositiveIntegerField(
        null=True, blank=True, verbose_name="recipients outside our domains per hour",
        help_text="How many this account may send to in an hour; empty: MAIL_SUBMISSION_RECIPIENTS_PER_HOUR; "
                  "0: no limit.")
    used_bytes = models.BigIntegerField(default=0, editable=False)
    # The last UIDVALIDITY handed to a folder of this account; new folders get a
    # larger one, so a name deleted and created again never reuses UIDs.
    last_uidvalidity = models.PositiveBigIntegerField(default=0, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return f"{self.local_part}@{display_domain(self.domain.name)}"

    @property
    def email(self) -> str:
        """The address as the user writes it."""
        return f"{self.local_part}@{self.domain.name}"


class Alias(models.Model):
    """An address (or `@domain`, the catch-all) that delivers to one or more targets."""

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="aliases")
    local_part = models.CharField(max_length=64, blank=True, help_text="Empty for the catch-all @domain.")
    source = models.CharField(max_length=320, unique=True, editable=False, help_text="Lookup key.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source"]
        verbose_name_plural = "aliases"

    def __str__(self) -> str:
        return self.source

    @property
    def is_catch_all(self) -> bool:
        return not self.local_part


class AliasTarget(models.Model):
    """One destination of an alias: a local or a remote address."""

    alias = models.ForeignKey(Alias, on_delete=models.CASCADE, related_name="targets")
    address = models.CharField(max_length=320)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alias", "address"], name="alias_target_unique")]

    def __str__(self) -> str:
        return self.address


class Mailbox(models.Model):
    """A folder of one account. `/` is the hierarchy delimiter (RFC 9051 §5.1)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="mailboxes")
    name = models.CharField(max_length=512)
    # RFC 9051 §2.3.1.1: UIDVALIDITY changes only when UIDs of this name are reused.
    uidvalidity = models.PositiveBigIntegerField()
    uidnext = models.PositiveBigIntegerField(default=1)
    # RFC 7162 §3.1.1: the highest MODSEQ of any change in this folder.
    highestmodseq = models.PositiveBigIntegerField(default=1)
    special_use = models.CharField(max_length=16, blank=True)
    subscribed = models.BooleanField(default=True)
    # Kept by the store in the same UPDATE that allocates UIDs/MODSEQ, so STATUS and the
    # webmail's unread counts never scan the folder.
    message_count = models.PositiveBigIntegerField(default=0, editable=False)
    unseen_count = models.PositiveBigIntegerField(default=0, editable=False)
    total_size = models.PositiveBigIntegerField(default=0, editable=False)
    # RFC 3501 §2.3.2: messages with a UID above this are \Recent: no IMAP session was told of them yet.
    recent_uid = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "name"]
        verbose_name = "folder"
        constraints = [models.UniqueConstraint(fields=["account", "name"], name="mailbox_name_unique")]

    def __str__(self) -> str:
        return f"{self.account.address}:{self.name}"


class Message(models.Model):
    """One message in one folder: UID, flags, MODSEQ, and cached parse results.

    The raw bytes live once in blob storage under `blob` (the SHA-256 of the
    bytes); copies in other folders point to the same blob.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="messages")
    uid = models.PositiveBigIntegerField()
    modseq = models.PositiveBigIntegerField()
    seen = models.BooleanField(default=False)
    answered = models.BooleanField(default=False)
    flagged = models.BooleanField(default=False)
    deleted = models.BooleanField(default=False)
    draft = models.BooleanField(default=False)
    keywords = models.JSONField(default=list, blank=True)
    internal_date = models.DateTimeField()
    size = models.PositiveBigIntegerField()
    blob = models.CharField(max_length=64, db_index=True)
    envelope = models.JSONField(default=dict)
    bodystructure = models.JSONField(default=dict)
    subject = models.TextField(blank=True)
    sender = models.CharField(max_length=998, blank=True)
    sent_date = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=998, blank=True, db_index=True)
    thread_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    has_attachments = models.BooleanField(default=False)

    class Meta:
        ordering = ["mailbox", "uid"]
        constraints = [models.UniqueConstraint(fields=["mailbox", "uid"], name="message_uid_unique")]
        indexes = [models.Index(fields=["mailbox", "modseq"], name="message_modseq_idx")]

    def __str__(self) -> str:
        return f"{self.mailbox} uid={self.uid}"

    @property
    def flags(self) -> list[str]:
        """System flags then keywords, as IMAP names them."""
        system = [name for name, field in SYSTEM_FLAG_FIELDS.items() if getattr(self, field)]
        return system + list(self.keywords)


class Expunged(models.Model):
    """A tombstone for an expunged UID, kept with its MODSEQ for QRESYNC (RFC 7162 §3.2.5)."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="expunged")
    uid = models.PositiveBigIntegerField()
    modseq = models.PositiveBigIntegerField()

    class Meta:
        verbose_name_plural = "expunged"
        indexes = [models.Index(fields=["mailbox", "modseq"], name="expunged_modseq_idx")]


class OutboundMessage(models.Model):
    """A message waiting for remote delivery: one stored blob, one envelope sender."""

    blob = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField()
    sender = models.CharField(max_length=320, blank=True, help_text="Envelope sender; empty for bounces.")
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    smtputf8 = models.BooleanField(default=False, help_text="The envelope or headers need SMTPUTF8.")
    # RFC 3461 §4.3, §4.4: what the sender asked of delivery reports for the whole message.
    ret = models.CharField(max_length=4, blank=True, help_text="RET: FULL or HDRS; empty if not given.")
    envid = models.CharField(max_length=100, blank=True, help_text="ENVID, decoded: the sender's own id.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # An account's recent mail, counted against its sending limit at each submission.
        indexes = [models.Index(fields=["account", "created_at"], name="outbound_account_time_idx")]

    def __str__(self) -> str:
        return f"outbound #{self.pk} from <{self.sender}>"


class OutboundRecipient(models.Model):
    """One recipient of an outbound message: the queue's unit of work and its state machine."""

    QUEUED, SENDING, DEFERRED, DELIVERED, BOUNCED, EXPIRED = (
        "queued", "sending", "deferred", "delivered", "bounced", "expired"
    )
    STATES = [(s, s) for s in (QUEUED, SENDING, DEFERRED, DELIVERED, BOUNCED, EXPIRED)]

    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="recipients")
    address = models.CharField(max_length=320)
    domain = models.CharField(max_length=255, help_text="A-label; recipients of one domain go together.")
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    mx_host = models.CharField(max_length=255, blank=True)
    last_reply = models.TextField(blank=True)
    delay_notified = models.BooleanField(default=False)
    # RFC 3461 §4.1, §4.2: which reports the sender wants about this recipient, and as whom it was first addressed.
    notify = models.CharField(max_length=32, blank=True, help_text="NOTIFY: NEVER, or SUCCESS,FAILURE,DELAY; empty if "
                              "not given (failures and delays are reported).")
    orcpt = models.CharField(max_length=500, blank=True, help_text="ORCPT, decoded: addr-type;address.")
    esp_message_id = models.CharField(max_length=255, blank=True, help_text="The id the ESP gave the message "
                                      "(transport anymail): its tracking webhooks name the message by it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="outbound_due_idx"),
            models.Index(fields=["esp_message_id"], name="outbound_esp_id_idx", condition=~models.Q(esp_message_id="")),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.state})"


class MtaStsPolicy(models.Model):
    """A receiving domain's MTA-STS policy (RFC 8461 §3.2) as last fetched, kept until its max_age runs out (§5.1)."""

    domain = models.CharField(max_length=255, unique=True, help_text="A-label.")
    policy_id = models.CharField(max_length=32, help_text="The id of the _mta-sts TXT record it was fetched for.")
    mode = models.CharField(max_length=10, help_text="enforce, testing or none.")
    mx = models.TextField(blank=True, help_text="The mx patterns, one per line.")
    max_age = models.PositiveIntegerField(help_text="Seconds the policy stays valid after it was fetched.")
    fetched_at = models.DateTimeField()

    class Meta:
        verbose_name = "MTA-STS policy"
        verbose_name_plural = "MTA-STS policies"

    def __str__(self) -> str:
        return f"{self.domain}: {self.mode}"

    @property
    def valid_until(self) -> datetime.datetime:
        return self.fetched_at + datetime.timedelta(seconds=self.max_age)


class DeliveryAttempt(models.Model):
    """One delivery attempt for one recipient: when, where, what the remote side answered, what it came to.

    Written in the same transaction as the recipient row's result (mailcore/delivery/claims.py).
    """

    recipient = models.ForeignKey(OutboundRecipient, on_delete=models.CASCADE, related_name="attempt_history")
    # Denormalised so the queue page lists a message's attempts without a join through recipients.
    message = models.ForeignKey(OutboundMessage, on_delete=models.CASCADE, related_name="attempts")
    address = models.CharField(max_length=320)
    attempted_at = models.DateTimeField()
    transport = models.CharField(max_length=10, blank=True, help_text="mx, smarthost or anymail.")
    mx_host = models.CharField(max_length=255, blank=True)
    reply = models.TextField(blank=True)
    outcome = models.CharField(max_length=10, choices=OutboundRecipient.STATES)

    class Meta:
        ordering = ["attempted_at", "id"]

    def __str__(self) -> str:
        return f"{self.address} at {self.attempted_at:%Y-%m-%d %H:%M:%S}: {self.outcome}"


class MailboxLock(models.Model):
    """An exclusive hold on one folder, with an expiry (POP3's maildrop lock, RFC 1939 §4).

    A row, not a process-local lock, so that every runmail process sharing the
    database sees it; the expiry frees the folder when its holder crashed.
    """

    mailbox = models.OneToOneField(Mailbox, on_delete=models.CASCADE, related_name="lock")
    owner = models.CharField(max_length=100, help_text="Which session holds it (host, process, session).")
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.mailbox} held by {self.owner} until {self.expires_at:%H:%M:%S}"


class DkimKey(models.Model):
    """A DKIM signing key for one domain (RFC 6376); the newest active key of a domain seen published signs its
    mail (a key made to replace another starts signing once its record is in DNS: `dkim.signing_keys`)."""

    domain = models.CharField(max_length=255, help_text="A-label of the signing domain (d=).")
    selector = models.CharField(max_length=63, help_text="s=; the key is published at SELECTOR._domainkey.DOMAIN.")
    private_key = models.TextField(help_text="PEM (PKCS#8) RSA private key.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When delivery first found its public key in DNS.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["domain", "selector"], name="dkim_domain_selector_unique")]
        verbose_name = "DKIM key"

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


class ImapImport(models.Model):
    """How far `importimap` got in one folder of a remote IMAP account (to resume after a stop).

    RFC 3501 §2.3.1.1: a source UID means the same message only while the folder's
    UIDVALIDITY is unchanged; when it changes the folder is read again from the start.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="imap_imports")
    host = models.CharField(max_length=255)
    username = models.CharField(max_length=320)
    folder = models.CharField(max_length=1000, help_text="The folder's name on the source server.")
    uidvalidity = models.PositiveBigIntegerField()
    last_uid = models.PositiveBigIntegerField(default=0, help_text="The highest source UID imported.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "host", "username", "folder"], name="imap_import_unique")
        ]
        verbose_name = "IMAP import"

    def __str__(self) -> str:
        return f"{self.username}@{self.host} {self.folder} -> {self.account}"


class ImportJob(models.Model):
    """One import of mail into an account, started from the admin (issue 8) and run in the background.

    The row is the job's truth, as a queue row is a delivery's: the admin commits it
    queued, a worker claims it (queued -> running), writes its progress into it and
    ends it done or failed. The IMAP password is kept only until then.
    """

    MBOX, MAILDIR, IMAP = "mbox", "maildir", "imap"
    KINDS = [(MBOX, "mbox file or directory of .mbox files"), (MAILDIR, "Maildir"), (IMAP, "IMAP server")]
    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    STATES = [(s, s) for s in (QUEUED, RUNNING, DONE, FAILED)]
    SECURITY = [("ssl", "implicit TLS (RFC 8314)"), ("starttls", "STARTTLS"), ("plain", "none (plain text)")]

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="import_jobs")
    kind = models.CharField(max_length=10, choices=KINDS)
    path = models.CharField(max_length=4096, blank=True, help_text="mbox or Maildir: a path on the server.")
    imap_host = models.CharField(max_length=255, blank=True)
    imap_port = models.PositiveIntegerField(null=True, blank=True)
    imap_security = models.CharField(max_length=10, choices=SECURITY, blank=True)
    imap_user = models.CharField(max_length=320, blank=True)
    imap_password = models.CharField(max_length=1024, blank=True, editable=False,
                                     help_text="Kept only until the job ends (done or failed).")
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0, help_text="Messages found so far in the source.")
    done_count = models.PositiveIntegerField(default=0, help_text="Messages handled (imported or skipped).")
    imported = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Already in the folder (Message-ID and digest).")
    failed = models.PositiveIntegerField(default=0, help_text="Found but not imported: the job stopped on an error.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True, help_text="When the worker last wrote progress.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "import job"

    def __str__(self) -> str:
        return f"import #{self.pk} into {self.account} from {self.source}"

    @property
    def source(self) -> str:
        if self.kind == self.IMAP:
            return f"{self.imap_user} at {self.imap_host}:{self.imap_port}"
        return self.path
