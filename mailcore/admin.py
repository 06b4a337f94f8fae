"""The Django admin for operators: domains, accounts, aliases, folders, (read-only) messages, import jobs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from mailcore import dashboard, directory, dnssetup, imapimport, importjobs
from mailcore.delivery import dkim
from mailcore.delivery import operator as delivery_operator
from mailcore.models import (
    Account,
    Alias,
    AliasTarget,
    DeliveryAttempt,
    Domain,
    ImportJob,
    Mailbox,
    Message,
    MtaStsPolicy,
    OutboundMessage,
    OutboundRecipient,
)


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "transport", "account_count", "created_at", "dns_link")
    search_fields = ("name",)
    list_filter = ("active", "transport")
    change_form_template = "admin/mailcore/domain/change_form.html"
    actions = ["create_dkim_key", "delete_selected"]

    @admin.action(description="Create DKIM key (RSA-2048; shows the TXT record to publish)", permissions=["change"])
    def create_dkim_key(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        """What `manage.py createdkimkey DOMAIN` does, for each selected domain (RFC 6376 §3.6.1 record)."""
        for domain in queryset:
            try:
                key = dkim.create_key(domain.name)
            except IntegrityError:
                self.message_user(request, f"DKIM key {dkim.default_selector()} for {domain} exists already (one a "
                                  "day); the newest active key signs.", messages.WARNING)
                continue
            self.message_user(request, f"DKIM key {key.selector} for {domain} created; it signs from now on. "
                              f"Publish this TXT record: {dkim.txt_record(key)}", messages.SUCCESS)

    @admin.display(description="accounts")
    def account_count(self, obj: Domain) -> int:
        return obj.accounts.count()

    @admin.display(description="DNS")
    def dns_link(self, obj: Domain) -> str:
        return format_html('<a href="{}">DNS set-up</a>', reverse("admin:mailcore_domain_dns", args=[obj.pk]))

    def get_urls(self) -> list[URLPattern]:
        dns_page = path("<int:object_id>/dns/", self.admin_site.admin_view(self.dns_view), name="mailcore_domain_dns")
        return [dns_page, *super().get_urls()]

    def dns_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The records to publish; POST ("check now") resolves each live and compares."""
        domain = get_object_or_404(Domain, pk=object_id)
        if not self.has_view_permission(request, domain):
            return HttpResponse(status=403)
        records = dnssetup.expected_records(domain.name)
        checked = request.method == "POST"
        results = dnssetup.check_records(domain.name) if checked else [dnssetup.CheckResult(r, "") for r in records]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": domain,
            "title": f"DNS set-up for {domain}",
            "results": results,
            "checked": checked,
            "zone": dnssetup.zone_text(records),
            "has_dkim": any(r.rtype == "TXT" and "._domainkey." in r.name for r in records),
            "policy": dnssetup.mta_sts_policy(domain.name),
        }
        return TemplateResponse(request, "admin/mailcore/domain/dns.html", context)


class AccountAddForm(forms.ModelForm):
    """Adding an account: its address and password; the domain must be hosted."""

    email = forms.CharField(label="Address", help_text="e.g. alice@example.test")
    password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = Account
        fields = ("quota_bytes",)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            self.instance = directory.create_account(
                data["email"], data["password"], quota_bytes=data.get("quota_bytes") or 0
            )
        except directory.DirectoryError as err:
            raise forms.ValidationError(str(err)) from err
        return data


class AccountChangeForm(forms.ModelForm):
    """Changing an account; a new password may be set here."""

    new_password = forms.CharField(
        widget=forms.PasswordInput, required=False, strip=False, help_text="Leave empty to keep the password."
    )

    class Meta:
        model = Account
        fields = ("quota_bytes", "recipients_per_hour", "active")

    def save(self, commit: bool = True) -> Account:
        account = super().save(commit)
        if self.cleaned_data.get("new_password"):
            account.user.set_password(self.cleaned_data["new_password"])
            account.user.save(update_fields=["password"])
        return account


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("address", "domain", "quota_bytes", "used_bytes", "active")
    list_filter = ("active", "domain")
    search_fields = ("address",)
    readonly_fields = ("address", "used_bytes", "created_at")
    actions = ["import_mail"]

    @admin.action(description="Import mail…", permissions=["change"])
    def import_mail(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse | None:
        return import_mail_for(self, request, queryset)  # the import jobs block at the end of this file

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = AccountChangeForm if obj else AccountAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj else ()

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
        # On add, AccountAddForm.clean already created the account through the directory.


class AliasTargetInline(admin.TabularInline):
    model = AliasTarget
    extra = 1


class AliasForm(forms.ModelForm):
    source_text = forms.CharField(label="Address", help_text="e.g. postmaster@example.test, or @example.test")

    class Meta:
        model = Alias
        fields = ("active",)

    def clean_source_text(self) -> str:
        try:
            domain_name, local_part, key = directory.alias_source(self.cleaned_data["source_text"])
        except ValueError as err:
            raise forms.ValidationError(str(err)) from err
        domain = Domain.objects.filter(name=domain_name).first()
        if domain is None:
            raise forms.ValidationError(f"domain {domain_name} is not hosted here")
        if Alias.objects.filter(source=key).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"{key} already exists")
        self.instance.domain, self.instance.local_part, self.instance.source = domain, local_part, key
        return key


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    form = AliasForm
    inlines = [AliasTargetInline]
    list_display = ("source", "targets_text", "active")
    search_fields = ("source", "targets__address")

    @admin.display(description="targets")
    def targets_text(self, obj: Alias) -> str:
        return ", ".join(obj.targets.values_list("address", flat=True))

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if obj is not None:
            form.base_fields["source_text"].initial = obj.source
        return form


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "special_use", "uidvalidity", "uidnext", "highestmodseq", "subscribed")
    list_filter = ("special_use", "subscribed")
    search_fields = ("name", "account__address")
    readonly_fields = ("account", "uidvalidity", "uidnext", "highestmodseq")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # folders are made by the account's clients, or with the account


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Read-only: messages change only through the store (IMAP, POP3, webmail)."""

    list_display = ("subject", "sender", "mailbox", "uid", "size", "internal_date", "seen")
    list_filter = ("seen", "flagged", "has_attachments", "mailbox__special_use")
    search_fields = ("subject", "sender", "message_id", "mailbox__account__address")
    date_hierarchy = "internal_date"
    list_select_related = ("mailbox", "mailbox__account")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).defer("envelope", "bodystructure")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """Mail in and out per hour and the outbound queue over the last day (charts drawn by static JS)."""
    figures = dashboard.traffic()
    context = {
        **admin.site.each_context(request),
        "title": "Mail dashboard",
        "chart_data": {"labels": figures.labels, "received": figures.received, "sent": figures.sent,
                       "queue": figures.queue},
        "totals": {"received": sum(figures.received), "sent": sum(figures.sent), "queue": figures.queue[-1]},
    }
    return TemplateResponse(request, "admin/mailcore/dashboard.html", context)


# --- Outbound queue (issue 4): the queue page, with retry, bounce and delete ---


class OutboundRecipientInline(admin.TabularInline):
    """Each recipient's state: attempts, the last remote reply and host, the next try."""

    model = OutboundRecipient
    extra = 0
    can_delete = False
    fields = ("address", "state", "attempts", "next_attempt_at", "mx_host", "last_reply", "lease_owner",
              "notify", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryAttemptInline(admin.TabularInline):
    """Every attempt for every recipient, oldest first: time, transport, host, the remote reply, the outcome."""

    model = DeliveryAttempt
    extra = 0
    can_delete = False
    verbose_name_plural = "attempt history"
    fields = ("attempted_at", "address", "transport", "mx_host", "reply", "outcome")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):
    """The outbound queue, like `manage.py mailq`; rows change only through the delivery code's actions."""

    list_display = ("id", "sender_text", "size", "created_at", "recipient_states", "last_reply")
    list_filter = ("recipients__state",)
    search_fields = ("sender", "recipients__address")
    date_hierarchy = "created_at"
    inlines = [OutboundRecipientInline, DeliveryAttemptInline]
    readonly_fields = ("sender", "size", "blob", "account", "smtputf8", "ret", "envid", "created_at")
    actions = ["retry_now", "bounce_now", "delete_selected"]

    @admin.display(description="sender")
    def sender_text(self, obj: OutboundMessage) -> str:
        return obj.sender or "<> (bounce)"

    @admin.display(description="recipients")
    def recipient_states(self, obj: OutboundMessage) -> str:
        return ", ".join(f"{r.address} ({r.state}, {r.attempts})" for r in obj.recipients.all())

    @admin.display(description="last reply")
    def last_reply(self, obj: OutboundMessage) -> str:
        replies = [r.last_reply for r in obj.recipients.all() if r.last_reply]
        return replies[-1] if replies else "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundMessage]:
        return super().get_queryset(request).prefetch_related("recipients").distinct()

    @admin.action(description="Retry the selected messages now", permissions=["change"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        count = delivery_operator.retry(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} waiting recipient(s) due now; a worker was woken.")

    @admin.action(description="Bounce the selected messages (DSN to the sender)", permissions=["change"])
    def bounce_now(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        count = delivery_operator.bounce(queryset.values_list("pk", flat=True))
        self.message_user(request, f"{count} recipient(s) bounced; the senders were notified.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # mail enters the queue through submission and webmail only


# --- Import jobs (issue 8): "Import mail…" on accounts, the job list, a progress page ---


class ImportJobForm(forms.Form):
    """Where to import from: a path on this server (mbox or Maildir), or another IMAP server."""

    kind = forms.ChoiceField(choices=ImportJob.KINDS, widget=forms.RadioSelect, initial=ImportJob.MBOX)
    path = forms.CharField(
        required=False, max_length=4096, label="Path on the server", widget=forms.TextInput({"class": "vTextField"}),
        help_text="mbox or Maildir: an absolute path on the mail server, inside one of the directories of "
        "MAIL_IMPORT_DIRS (default var/import). It must exist and be readable by the process that runs "
        "imports (runmail, or the Celery workers).",
    )
    imap_host = forms.CharField(required=False, max_length=255, label="IMAP server")
    imap_security = forms.ChoiceField(choices=ImportJob.SECURITY, initial="ssl", label="TLS")
    imap_port = forms.IntegerField(required=False, min_value=1, max_value=65535, label="Port",
                                   help_text="Empty: 993 with implicit TLS, else 143.")
    imap_user = forms.CharField(required=False, max_length=320, label="Login name")
    imap_password = forms.CharField(
        required=False, strip=False, widget=forms.PasswordInput, label="Password",
        help_text="Kept in the job only until it ends, then cleared.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == ImportJob.IMAP:
            for name in ("imap_host", "imap_user", "imap_password"):
                if not data.get(name):
                    self.add_error(name, "Required for an IMAP import.")
        elif data.get("kind"):
            problem = _path_problem(data.get("path", ""), data["kind"])
            if problem:
                self.add_error("path", problem)
        return data

    def job(self, account: Account) -> ImportJob:
        data = self.cleaned_data
        if data["kind"] != ImportJob.IMAP:
            return ImportJob(account=account, kind=data["kind"], path=data["path"])
        return ImportJob(
            account=account, kind=ImportJob.IMAP, imap_host=data["imap_host"], imap_security=data["imap_security"],
            imap_port=data["imap_port"] or imapimport.DEFAULT_PORTS[data["imap_security"]],
            imap_user=data["imap_user"], imap_password=data["imap_password"],
        )


def _path_problem(text: str, kind: str) -> str:
    """Why `text` cannot be imported as `kind` by this server, or ""."""
    path = Path(text)
    if not text or not path.is_absolute():
        return "Give an absolute path on the server."
    if not path.exists():
        return f"{path} does not exist on the server."
    if not importjobs.inside_import_dirs(path):
        return f"{path} is outside the directories imports may read (MAIL_IMPORT_DIRS)."
    is_maildir = (path / "cur").is_dir() or (path / "new").is_dir()
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        return f"{path} is not readable by the server."
    if kind == ImportJob.MAILDIR and not is_maildir:
        return f"{path} is not a Maildir (it has no cur/ or new/ directory)."
    if kind == ImportJob.MBOX and is_maildir:
        return f"{path} is a Maildir: choose Maildir."
    return ""


def import_mail_for(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Account]
) -> HttpResponse | None:
    """The account action: on to the import form for the one selected account."""
    accounts = list(queryset[:2])
    if len(accounts) != 1:
        model_admin.message_user(request, "Choose exactly one account to import mail into.", messages.WARNING)
        return None
    return HttpResponseRedirect(reverse("admin:mailcore_importjob_start", args=[accounts[0].pk]))


@admin.register(MtaStsPolicy)
class MtaStsPolicyAdmin(admin.ModelAdmin):
    """Receiving domains' MTA-STS policies as delivery holds them (RFC 8461); deleting one makes it fetched again."""

    list_display = ("domain", "mode", "mx", "policy_id", "fetched_at", "valid_until")
    search_fields = ("domain",)
    fields = readonly_fields = ("domain", "mode", "mx", "max_age", "policy_id", "fetched_at", "valid_until")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # delivery fetches them


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Import jobs: made by the account action "Import mail…", changed only by the job's worker and Retry."""

    list_display = ("id", "account", "kind", "source", "state", "progress_text", "imported", "skipped", "failed",
                    "created_at", "progress_link")
    list_filter = ("state", "kind")
    search_fields = ("account__address", "path", "imap_host", "imap_user")
    list_select_related = ("account", "account__domain")
    fields = readonly_fields = (
        "account", "kind", "path", "imap_host", "imap_port", "imap_security", "imap_user", "state", "total",
        "done_count", "imported", "skipped", "failed", "error", "created_at", "started_at", "progress_at",
        "finished_at",
    )
    actions = ["retry"]

    @admin.display(description="progress")
    def progress_text(self, obj: ImportJob) -> str:
        return f"{obj.done_count} / {obj.total}"

    @admin.display(description="")
    def progress_link(self, obj: ImportJob) -> str:
        url = reverse("admin:mailcore_importjob_progress", args=[obj.pk])
        return format_html('<a href="{}">progress page</a>', url)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are started from an account ("Import mail…"), through start_view

    @admin.action(description="Retry (queue the selected failed or stalled jobs again)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
        queued, refusals = importjobs.retry(queryset)
        if queued:
            self.message_user(request, f"{len(queued)} import job(s) queued again.", messages.SUCCESS)
        for refusal in refusals:
            self.message_user(request, f"Not retried: {refusal}.", messages.WARNING)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("start/<int:account_id>/", view(self.start_view), name="mailcore_importjob_start"),
            path("<int:object_id>/progress/", view(self.progress_view), name="mailcore_importjob_progress"),
            path("<int:object_id>/progress.json", view(self.progress_json), name="mailcore_importjob_progress_json"),
            *super().get_urls(),
        ]

    def start_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        """The form behind "Import mail…": a valid POST queues the job and shows its progress page."""
        account = get_object_or_404(Account, pk=account_id)
        if not request.user.has_perm("mailcore.add_importjob"):
            raise PermissionDenied
        form = ImportJobForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            job = form.job(account)
            importjobs.queue_job(job)
            progress = reverse("admin:mailcore_importjob_progress", args=[job.pk])
            self.message_user(request, format_html(
                'Import #{} into {} queued: <a href="{}">follow its progress</a>.', job.pk, account, progress))
            return HttpResponseRedirect(progress)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Import mail into {account}",
            "account": account, "form": form,
        }
        return TemplateResponse(request, "admin/mailcore/importjob/start.html", context)

    def progress_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        job = self._viewable(request, object_id)
        context = {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": f"Import #{job.pk}",
            "job": job, "progress": importjobs.progress_of(job),
        }
        return TemplateResponse(request, "admin/mailcore/importjob/progress.html", context)

    def progress_json(self, request: HttpRequest, object_id: int) -> JsonResponse:
        """What the progress page's script (static/admin/import-progress.js) polls."""
        return JsonResponse(importjobs.progress_of(self._viewable(request, object_id)))

    def _viewable(self, request: HttpRequest, object_id: int) -> ImportJob:
        job = get_object_or_404(ImportJob.objects.select_related("account", "account__domain"), pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return job
