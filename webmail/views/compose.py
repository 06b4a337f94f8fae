"""Compose, reply, forward; save drafts to Drafts; send through the submission function."""
from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages as notices
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mailcore import directory, mime, store
from mailcore.conf import conf
from mailcore.mime.headers import first, parse_fields, split_header
from mailcore.smtp.recipients import check_recipient
from mailcore.smtp.replies import SMTPError
from mailcore.smtp.submission import (
    SubmissionError,
    check_from_header,
    check_sender,
    check_sending_limit,
    submit,
)
from webmail import compose, outbox
from webmail.sanitize import sanitize_outgoing
from webmail.views.common import (
    folder_by_id,
    mail_login_required,
    mail_user,
    message_or_404,
    sidebar,
    special_folder,
)
from webmail.views.message import _address_text

log = logging.getLogger(__name__)
MAX_ATTACHMENTS = 20
UPLOAD_HEADER = "X-Webmail-Upload"
CORRESPONDENT_SCAN = 200  # newest messages of Sent and of INBOX read for autocomplete
MAX_CORRESPONDENTS = 300
FORM_FIELDS = ("to", "cc", "bcc", "subject", "text", "html", "in_reply_to", "references")


def identities(account_id: int, login: str) -> list[str]:
    """From choices: the signed-in address first, then the account's aliases (not catch-alls)."""
    others = sorted(a for a in directory.addresses_of(account_id) if not a.startswith("@"))
    return [login, *[a for a in others if a.lower() != login.lower()]]


def signature_block(signature: str) -> str:
    """The signature under its separator line "-- " (RFC 3676 §4.3), after an empty body."""
    return f"\n\n-- \n{signature}" if signature else ""


def correspondents(account_id: int) -> list[str]:
    """Addresses for autocomplete: whom I wrote to (Sent) and who wrote to me (INBOX), recent first."""
    seen: dict[str, str] = {}
    sources = [(special_folder(account_id, "\\Sent"), ("to", "cc", "bcc")), (store.get_folder(account_id, store.INBOX),
                                                                           ("from", "reply_to"))]
    for ref, roles in sources:
        if ref is None:
            continue
        for entry in store.page(ref, limit=CORRESPONDENT_SCAN):
            for role in roles:
                for shown in _address_text(entry.info.envelope.get(role) or []):
                    key = shown.rpartition("<")[2].strip(">").lower()
                    seen.setdefault(key, shown)
    return list(seen.values())[:MAX_CORRESPONDENTS]


def _form_context(request: HttpRequest, initial: dict[str, Any], error: str = "") -> dict[str, Any]:
    user = mail_user(request)
    from django.conf import settings

    return {
        "form": initial, "error": error,
        "identities": [(a, user.prefs.signature_for(a, user.address))
                       for a in identities(user.account_id, user.address)],
        "correspondents": correspondents(user.account_id),
        "max_attachment_size": settings.MAIL_WEBMAIL_MAX_ATTACHMENT_SIZE, **sidebar(user.account_id),
    }


@require_http_methods(["GET", "POST"])
@mail_login_required
def compose_view(request: HttpRequest) -> HttpResponse:
    user = mail_user(request)
    if request.method == "GET":
        draft_uid = request.GET.get("draft", "")
        if draft_uid.isdigit():
            return render(request, "webmail/compose.html", _form_context(request, _draft_form(request, int(draft_uid))))
        sender = request.GET.get("from", user.address)
        if sender not in identities(user.account_id, user.address):
            sender = user.address
        form = {"sender": sender, "text": signature_block(user.prefs.signature_for(sender, user.address))}
        return render(request, "webmail/compose.html", _form_context(request, form))
    form = {name: request.POST.get(name, "") for name in FORM_FIELDS}
    form["sender"] = request.POST.get("sender", user.address)
    form["draft_uid"] = request.POST.get("draft_uid", "")
    form["forward"] = request.POST.get("forward", "")
    try:
        draft = _draft_from(request, form)
        if request.POST.get("action") == "draft":
            return _for_upload(request, _save_draft(request, draft, form))
        return _for_upload(request, _send(request, draft, form))
    except (compose.ComposeError, SubmissionError) as err:
        text = err.reply if isinstance(err, SubmissionError) else str(err)
        return render(request, "webmail/compose.html", _form_context(request, form, str(text)), status=400)


def _for_upload(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """compose.js uploads by XMLHttpRequest (for its progress bar): it gets the redirect as JSON and
    follows it itself, so the notice waiting in the session shows on the page it opens."""
    if request.headers.get(UPLOAD_HEADER) and response.status_code == 302:
        return JsonResponse({"location": response["Location"]})
    return response


def _draft_form(request: HttpRequest, uid: int) -> dict[str, Any]:
    """The compose form of a message in Drafts (its attachments are carried like a forward's)."""
    user = mail_user(request)
    drafts = special_folder(user.account_id, "\\Drafts")
    if drafts is None:
        raise Http404("no Drafts folder")
    info = message_or_404(drafts, uid)
    raw = store.read_message(drafts, uid)
    fields = _parent_headers(raw)
    sender = next(iter(_plain_addresses(info.envelope.get("from") or [])), user.address)
    return {
        "sender": sender, "subject": info.subject, "draft_uid": str(uid),
        "to": ", ".join(_address_text(info.envelope.get("to") or [])),
        "cc": ", ".join(_address_text(info.envelope.get("cc") or [])),
        "bcc": ", ".join(_address_text(info.envelope.get("bcc") or [])),
        "in_reply_to": first(fields, "in-reply-to") or "", "references": first(fields, "references") or "",
        "text": mime.extract_text(raw, info.bodystructure), "draft_html": _draft_html(raw, info),
        "forward": f"{drafts.mailbox_id}:{uid}",
        "forwarded": [a.filename or "attachment" for a in mime.attachments(info.bodystructure)],
    }


def _draft_html(raw: bytes, info: store.MessageInfo) -> str:
    """The HTML part of a draft saved from the rich-text editor, sanitised again; "" for a plain draft.

    The editor (static/webmail/editor.js) reopens it; without JavaScript the textarea's text is sent.
    """
    html_path, _text_paths = mime.display_parts(info.bodystructure)
    part = mime.part_at(info.bodystructure, html_path) if html_path else None
    return sanitize_outgoing(mime.part_text(raw, part)) if part is not None else ""


def _plain_addresses(addresses: list[list[str | None]]) -> list[str]:
    return [f"{local}@{host}" for _name, _adl, local, host in addresses if local and host]


def _draft_from(request: HttpRequest, form: dict[str, str]) -> compose.Draft:
    user = mail_user(request)
    if form["sender"] not in identities(user.account_id, user.address):
        raise compose.ComposeError(_("You cannot send from that address."))
    uploads = [compose.Upload(f.name, f.content_type or "application/octet-stream", f.read())
               for f in request.FILES.getlist("attachments")[:MAX_ATTACHMENTS]]
    uploads += _forwarded_parts(request)
    return compose.Draft(sender=form["sender"], display_name=user.prefs.display_name, to=form["to"],
                         cc=form["cc"], bcc=form["bcc"], subject=form["subject"], text=form["text"],
                         html=sanitize_outgoing(form["html"]) if form["html"].strip() else "",
                         in_reply_to=form["in_reply_to"], references=form["references"], attachments=uploads)


def _forwarded_parts(request: HttpRequest) -> list[compose.Upload]:
    """The attachments of the message being forwarded (`forward=FOLDER:UID`), from the store."""
    folder_id, _sep, uid = request.POST.get("forward", "").partition(":")
    if not (folder_id.isdigit() and uid.isdigit()):
        return []
    ref = folder_by_id(mail_user(request).account_id, int(folder_id))
    info = message_or_404(ref, int(uid))
    raw = store.read_message(ref, info.uid)
    uploads = []
    for found in mime.attachments(info.bodystructure):
        part = mime.part_at(info.bodystructure, found.path)
        if part is not None:
            uploads.append(compose.Upload(found.filename or "attachment", found.content_type,
                                          mime.decoded_body(raw, part)))
    return uploads


def _save_draft(request: HttpRequest, draft: compose.Draft, form: dict[str, str]) -> HttpResponse:
    account_id = mail_user(request).account_id
    drafts = special_folder(account_id, "\\Drafts")
    if drafts is None:
        raise compose.ComposeError(_("There is no Drafts folder."))
    raw, _rcpts = compose.build(draft, include_bcc=True)
    saved = store.append(drafts, raw, flags=["\\Draft", "\\Seen"])
    _drop_old_draft(account_id, form)
    if request.POST.get("autosave"):
        return JsonResponse({"draft_uid": saved.uid, "forward": _forward_after_resave(drafts, form, saved.uid)})
    if request.htmx:
        return HttpResponse(str(saved.uid), content_type="text/plain")
    notices.info(request, _("Draft saved."))
    return redirect("webmail:folder", folder_id=drafts.mailbox_id)


def _forward_after_resave(drafts: store.FolderRef, form: dict[str, str], new_uid: int) -> str:
    """A reopened draft carries its attachments from itself; after a re-save they are in the new copy."""
    forward = form.get("forward", "")
    if forward and forward == f"{drafts.mailbox_id}:{form.get('draft_uid', '')}":
        return f"{drafts.mailbox_id}:{new_uid}"
    return forward


def _drop_old_draft(account_id: int, form: dict[str, str]) -> None:
    drafts = special_folder(account_id, "\\Drafts")
    if drafts is None or not form.get("draft_uid", "").isdigit():
        return
    uid = int(form["draft_uid"])
    store.store_flags(drafts, [uid], ["\\Deleted"], store.FLAG_ADD)
    store.expunge(drafts, [uid])


def _send(request: HttpRequest, draft: compose.Draft, form: dict[str, str]) -> HttpResponse:
    user = mail_user(request)
    raw, recipients = compose.build(draft)
    if not recipients:
        raise compose.ComposeError(_("Add at least one recipient."))
    if conf.webmail_undo_send_seconds:
        _check_submission(user.account_id, draft.sender, recipients, raw)
        draft_raw, _rcpts = compose.build(draft, include_bcc=True)
        held = outbox.hold(user.account_id, draft.sender, recipients, raw, draft_raw)
        _drop_old_draft(user.account_id, form)
        return redirect("webmail:outbox", pending_id=held.pk)
    result = submit(user.account_id, draft.sender, recipients, raw, save_to_sent=True)
    _drop_old_draft(user.account_id, form)
    log.info("webmail sent %s account=%s", result.message_id, user.account_id)
    notices.info(request, _("Message sent."))
    return redirect("webmail:inbox")


def _check_submission(account_id: int, sender: str, recipients: list[str], raw: bytes) -> None:
    """Refuse now what submission would refuse at release (sender, From, unknown or full local mailbox,
    the sending limit), while the user still sees the form."""
    check_sender(account_id, sender)
    check_from_header(account_id, raw)
    remote = 0
    for address in recipients:
        try:
            remote += not check_recipient(address, relay_allowed=True).local
        except SMTPError as err:
            raise SubmissionError(err.reply) from err
    if remote:
        check_sending_limit(account_id, remote)


@require_GET
@mail_login_required
def outbox_view(request: HttpRequest, pending_id: int) -> HttpResponse:
    """"Sending in N seconds" with the Undo button; "sent" once the window has passed."""
    user = mail_user(request)
    held = outbox.pending(user.account_id, pending_id)
    remaining = max(0.0, (held.due_at - timezone.now()).total_seconds()) if held else 0.0
    context = {"held": held, "pending_id": pending_id, "remaining_ms": int(remaining * 1000),
               "remaining": int(remaining + 0.999), **sidebar(user.account_id)}
    return render(request, "webmail/outbox.html", context)


@require_POST
@mail_login_required
def undo_send(request: HttpRequest, pending_id: int) -> HttpResponse:
    """Stop a held message within its window; it goes back to Drafts and opens in the editor."""
    user = mail_user(request)
    draft_uid = outbox.undo(user.account_id, pending_id)
    if draft_uid is None:
        notices.error(request, _("Too late to undo: the message has been sent."))
        return redirect("webmail:inbox")
    notices.info(request, _("Sending undone. The message is back in Drafts."))
    return redirect(f"{reverse('webmail:compose')}?draft={draft_uid}")


def _parent_headers(raw: bytes) -> list[tuple[str, str]]:
    header_end, _body = split_header(raw)
    return parse_fields(raw[:header_end])


@require_GET
@mail_login_required
def reply_view(request: HttpRequest, folder_id: int, uid: int) -> HttpResponse:
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    info = message_or_404(ref, uid)
    raw = store.read_message(ref, uid)
    fields = _parent_headers(raw)
    to = _address_text(info.envelope.get("reply_to") or info.envelope.get("from") or [])
    cc: list[str] = []
    if request.GET.get("all"):
        mine = {a.lower() for a in identities(user.account_id, user.address)}
        others = _address_text((info.envelope.get("to") or []) + (info.envelope.get("cc") or []))
        cc = [a for a in others if a.rpartition("<")[2].strip(">").lower() not in mine]
    parent_refs = first(fields, "references") or first(fields, "in-reply-to") or ""
    form = {
        "to": ", ".join(to), "cc": ", ".join(cc), "subject": compose.reply_subject(info.subject, "Re:"),
        "in_reply_to": info.message_id, "references": compose.references_for(parent_refs, info.message_id),
        "text": _quoted_body(raw, info),
    }
    return render(request, "webmail/compose.html", _form_context(request, form))


def _quoted_body(raw: bytes, info: store.MessageInfo) -> str:
    when = (info.sent_date or info.internal_date).strftime("%Y-%m-%d %H:%M")
    intro = _("On %(date)s, %(sender)s wrote:") % {"date": when, "sender": info.sender}
    return f"\n\n{intro}\n{compose.quote(mime.extract_text(raw, info.bodystructure))}"


@require_GET
@mail_login_required
def forward_view(request: HttpRequest, folder_id: int, uid: int) -> HttpResponse:
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    info = message_or_404(ref, uid)
    raw = store.read_message(ref, uid)
    header = _("---------- Forwarded message ----------")
    lines = [header, f"From: {info.sender}", f"Subject: {info.subject}",
             f"Date: {(info.sent_date or info.internal_date):%Y-%m-%d %H:%M}", ""]
    form = {
        "subject": compose.reply_subject(info.subject, "Fwd:"),
        "text": "\n\n" + "\n".join(lines) + mime.extract_text(raw, info.bodystructure),
        "forward": f"{ref.mailbox_id}:{uid}",
        "forwarded": [a.filename or "attachment" for a in mime.attachments(info.bodystructure)],
    }
    return render(request, "webmail/compose.html", _form_context(request, form))
