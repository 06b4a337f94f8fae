"""One message: headers, body (text, or sanitised HTML in a sandboxed frame), attachments."""
from __future__ import annotations

import re
import unicodedata
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from mailcore import mime, store
from mailcore.store import FolderRef, MessageInfo
from webmail.sanitize import sanitize
from webmail.security import body_csp
from webmail.views.common import folder_by_id, mail_login_required, mail_user, message_or_404, sidebar

INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
MAX_FILENAME_CHARS = 150
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')
_DOTS = re.compile(r"\.{2,}")
SESSION_SHOW_IMAGES = "webmail_show_images"  # message keys whose remote images the user allowed once


def _address_text(addresses: list[list[str | None]]) -> list[str]:
    shown = []
    for name, _adl, local, host in addresses:
        if local is None and host is None:
            continue  # group start/end markers (RFC 9051 §7.5.2)
        address = f"{local}@{host}" if host else (local or "")
        shown.append(f"{name} <{address}>" if name else address)
    return shown


def sender_address(info: MessageInfo) -> str:
    for _name, _adl, local, host in info.envelope.get("from") or []:
        if local and host:
            return f"{local}@{host}".lower()
    return ""


@require_GET
@mail_login_required
def message_view(request: HttpRequest, folder_id: int, uid: int) -> HttpResponse:
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    info = message_or_404(ref, uid)
    if "\\Seen" not in info.flags:
        store.store_flags(ref, [uid], ["\\Seen"], store.FLAG_ADD)
    raw = store.read_message(ref, uid)
    html_path, text_paths = mime.display_parts(info.bodystructure)
    texts = [mime.part_text(raw, part) for path in text_paths if (part := mime.part_at(info.bodystructure, path))]
    context: dict[str, Any] = {
        "folder": ref,
        "info": info,
        "from": _address_text(info.envelope.get("from") or []),
        "to": _address_text(info.envelope.get("to") or []),
        "cc": _address_text(info.envelope.get("cc") or []),
        "texts": [] if html_path else texts,
        "html_url": reverse("webmail:body", args=[ref.mailbox_id, uid]) if html_path else None,
        "remote_blocked": bool(html_path) and _has_blocked_remote(request, ref, info, raw, html_path),
        "attachments": [a for a in mime.attachments(info.bodystructure) if not a.inline or not html_path],
        "flagged": "\\Flagged" in info.flags,
        "conversation": _conversation(user.account_id, user.prefs.conversations, info),
        **sidebar(user.account_id),
    }
    return render(request, "webmail/message.html", context)


def _conversation(account_id: int, enabled: bool, info: MessageInfo) -> list[store.ListEntry]:
    """The other messages of this message's thread, in every folder (Sent included), oldest first."""
    if not enabled or info.thread_id is None:
        return []
    entries = store.thread(account_id, info.thread_id)
    return entries if len(entries) > 1 else []


def _allow_remote(request: HttpRequest, ref: FolderRef, info: MessageInfo) -> bool:
    prefs = mail_user(request).prefs
    if prefs.remote_images == prefs.REMOTE_ALWAYS or sender_address(info) in prefs.trusted_senders:
        return True
    return f"{ref.mailbox_id}:{info.uid}" in request.session.get(SESSION_SHOW_IMAGES, [])


def _sanitized(request: HttpRequest, ref: FolderRef, info: MessageInfo, raw: bytes, html_path: str) -> Any:
    part = mime.part_at(info.bodystructure, html_path)
    if part is None:
        raise Http404("no such part")
    inline = {a.content_id: a.path for a in mime.attachments(info.bodystructure) if a.content_id}

    def inline_url(content_id: str) -> str | None:
        path = inline.get(content_id)
        return reverse("webmail:inline", args=[ref.mailbox_id, info.uid, path]) if path else None

    return sanitize(mime.part_text(raw, part), _allow_remote(request, ref, info), inline_url)


def _has_blocked_remote(request: HttpRequest, ref: FolderRef, info: MessageInfo, raw: bytes, path: str) -> bool:
    return bool(_sanitized(request, ref, info, raw, path).remote_blocked)


@require_GET
@mail_login_required
@xframe_options_sameorigin
def body_frame(request: HttpRequest, folder_id: int, uid: int) -> HttpResponse:
    """The sanitised HTML body, for the sandboxed iframe of the message page only."""
    ref = folder_by_id(mail_user(request).account_id, folder_id)
    info = message_or_404(ref, uid)
    html_path, _texts = mime.display_parts(info.bodystructure)
    if not html_path:
        raise Http404("no HTML body")
    clean = _sanitized(request, ref, info, store.read_message(ref, uid), html_path)
    response = render(request, "webmail/body_frame.html", {"body": clean.html})
    response["Content-Security-Policy"] = body_csp(_allow_remote(request, ref, info))
    response["Cache-Control"] = "private, no-store"
    return response


@require_POST
@mail_login_required
def show_images(request: HttpRequest, folder_id: int, uid: int) -> HttpResponse:
    """Load remote images of this message, or always for its sender (`always=1`)."""
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    info = message_or_404(ref, uid)
    if request.POST.get("always") and sender_address(info):
        trusted = set(user.prefs.trusted_senders) | {sender_address(info)}
        user.prefs.trusted_senders = sorted(trusted)
        user.prefs.save(update_fields=["trusted_senders"])
    else:
        allowed = request.session.get(SESSION_SHOW_IMAGES, [])
        request.session[SESSION_SHOW_IMAGES] = [*allowed[-99:], f"{ref.mailbox_id}:{uid}"]
    return redirect("webmail:message", folder_id=ref.mailbox_id, uid=uid)


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """A file name that cannot name a path, hide an extension or carry control characters."""
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cf", "Cc"))
    name = _DOTS.sub(".", _UNSAFE_FILENAME.sub("_", name)).strip(" .")
    return name[-MAX_FILENAME_CHARS:] or fallback


def _part_bytes(request: HttpRequest, folder_id: int, uid: int, path: str) -> tuple[mime.Attachment, bytes]:
    ref = folder_by_id(mail_user(request).account_id, folder_id)
    info = message_or_404(ref, uid)
    wanted = next((a for a in mime.attachments(info.bodystructure) if a.path == path), None)
    part = mime.part_at(info.bodystructure, path)
    if wanted is None or part is None:
        raise Http404("no such attachment")
    return wanted, mime.decoded_body(store.read_message(ref, uid), part)


@require_GET
@mail_login_required
def attachment(request: HttpRequest, folder_id: int, uid: int, path: str) -> HttpResponse:
    """Always a download: attachment disposition, a sanitised name, an opaque type, nosniff."""
    found, data = _part_bytes(request, folder_id, uid, path)
    response = HttpResponse(data, content_type="application/octet-stream")
    response["Content-Disposition"] = content_disposition_header(True, safe_filename(found.filename))
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_GET
@mail_login_required
def inline_part(request: HttpRequest, folder_id: int, uid: int, path: str) -> HttpResponse:
    """An inline image (cid:) for the body frame; only raster image types are served inline."""
    found, data = _part_bytes(request, folder_id, uid, path)
    if found.content_type not in INLINE_IMAGE_TYPES:
        raise Http404("not an inline image")
    response = HttpResponse(data, content_type=found.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
