"""The message list of a folder (keyset pages, newest first) and actions on selected messages."""
from __future__ import annotations

from typing import Any

from django.contrib import messages as notices
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from mailcore import store
from mailcore.store import FolderRef
from webmail.views.common import (
    folder_by_id,
    mail_login_required,
    mail_state,
    mail_user,
    sidebar,
    special_folder,
)

SESSION_UNDO = "webmail_undo"
MAX_SELECTED = 1000  # one action touches at most this many messages
ACTIONS = ("read", "unread", "flag", "unflag", "move", "archive", "delete", "junk")


@require_GET
@mail_login_required
def inbox(request: HttpRequest) -> HttpResponse:
    ref = store.get_folder(mail_user(request).account_id, store.INBOX)
    return redirect("webmail:folder", folder_id=ref.mailbox_id)


@require_GET
@mail_login_required
def folder_view(request: HttpRequest, folder_id: int) -> HttpResponse:
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    before = _int_or_none(request.GET.get("before"))
    entries = store.page(ref, before_uid=before, limit=user.prefs.page_size + 1)
    context = _list_context(request, ref, entries, user.prefs.page_size)
    context["before"] = before
    template = "webmail/_message_list.html" if request.htmx and not request.htmx.boosted else "webmail/folder.html"
    return render(request, template, context)


def _list_context(request: HttpRequest, ref: FolderRef, entries: list[store.ListEntry], size: int) -> dict[str, Any]:
    more = len(entries) > size
    entries = entries[:size]
    user = mail_user(request)
    account_id = user.account_id
    next_before = entries[-1].key if more and entries else None
    thread_counts: dict[int, int] = {}
    if user.prefs.conversations:
        entries, thread_counts = conversations(ref, account_id, entries)
    return {
        "folder": ref,
        "entries": entries,
        "thread_counts": thread_counts,
        "conversations": user.prefs.conversations,
        "next_before": next_before,
        "is_trash": _is_special(account_id, ref, "\\Trash"),
        **sidebar(account_id),
    }


def conversations(ref: FolderRef, account_id: int, entries: list[store.ListEntry]
                  ) -> tuple[list[store.ListEntry], dict[int, int]]:
    """Each thread once, at its newest message in this folder, with its size over all folders (Sent too)."""
    thread_ids = sorted({e.info.thread_id for e in entries if e.info.thread_id is not None})
    newest = store.newest_of_threads(ref, thread_ids)
    shown = [e for e in entries if e.info.thread_id is None or newest.get(e.info.thread_id) == e.info.uid]
    return shown, store.thread_sizes(account_id, thread_ids)


def _is_special(account_id: int, ref: FolderRef, special_use: str) -> bool:
    special = special_folder(account_id, special_use)
    return special is not None and special.mailbox_id == ref.mailbox_id


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@require_GET
@mail_login_required
def unread_counts(request: HttpRequest) -> JsonResponse:
    """Polled by the page for new mail: unread per folder and the highest MODSEQ seen."""
    folders = store.list_folders(mail_user(request).account_id)
    return JsonResponse({
        "folders": {str(f.id): {"unseen": f.unseen, "messages": f.messages} for f in folders},
        "state": mail_state(folders),
        "inbox_unread": next((f.unseen for f in folders if f.name == store.INBOX), 0),
    })


@require_POST
@mail_login_required
def act(request: HttpRequest, folder_id: int) -> HttpResponse:
    """Apply one action to the selected UIDs of this folder; remember moves so they can be undone."""
    user = mail_user(request)
    ref = folder_by_id(user.account_id, folder_id)
    action = request.POST.get("action", "")
    uids = _selected_uids(request)
    if action not in ACTIONS:
        raise Http404("unknown action")
    if uids:
        text = _apply(request, ref, action, uids)
        notices.info(request, text)
    return redirect(request.POST.get("back") if _is_local(request.POST.get("back")) else
                    reverse("webmail:folder", args=[ref.mailbox_id]))


def _is_local(url: str | None) -> bool:
    return bool(url) and url.startswith("/") and not url.startswith("//") and "\\" not in url  # type: ignore[union-attr]


def _selected_uids(request: HttpRequest) -> list[int]:
    uids = []
    for value in request.POST.getlist("uid")[:MAX_SELECTED]:
        if value.isdigit():
            uids.append(int(value))
    return uids


def _apply(request: HttpRequest, ref: FolderRef, action: str, uids: list[int]) -> str:
    flag_changes = {
        "read": ("\\Seen", store.FLAG_ADD), "unread": ("\\Seen", store.FLAG_REMOVE),
        "flag": ("\\Flagged", store.FLAG_ADD), "unflag": ("\\Flagged", store.FLAG_REMOVE),
    }
    if action in flag_changes:
        flag, mode = flag_changes[action]
        result = store.store_flags(ref, uids, [flag], mode)
        return ngettext("%(n)d message changed.", "%(n)d messages changed.", len(result.changed)) % {
            "n": len(result.changed)}
    account_id = mail_user(request).account_id
    if action == "delete" and _is_special(account_id, ref, "\\Trash"):
        store.store_flags(ref, uids, ["\\Deleted"], store.FLAG_ADD)
        gone = store.expunge(ref, uids)
        return ngettext("%(n)d message deleted for good.", "%(n)d messages deleted for good.", len(gone)) % {
            "n": len(gone)}
    target = _target_of(request, account_id, action)
    if target is None or target.mailbox_id == ref.mailbox_id:
        return _("Nothing to do.")
    pairs = store.move(ref, uids, target)
    request.session[SESSION_UNDO] = {"source": ref.mailbox_id, "target": target.mailbox_id,
                                     "uids": [new for _old, new in pairs]}
    return ngettext("%(n)d message moved to %(folder)s.", "%(n)d messages moved to %(folder)s.", len(pairs)) % {
        "n": len(pairs), "folder": target.name}


def _target_of(request: HttpRequest, account_id: int, action: str) -> FolderRef | None:
    special = {"delete": "\\Trash", "archive": "\\Archive", "junk": "\\Junk"}
    if action in special:
        return special_folder(account_id, special[action])
    target_id = _int_or_none(request.POST.get("target"))
    return folder_by_id(account_id, target_id) if target_id is not None else None


@require_POST
@mail_login_required
def undo(request: HttpRequest) -> HttpResponse:
    """Move the messages of the last move or delete back where they were."""
    account_id = mail_user(request).account_id
    last = request.session.pop(SESSION_UNDO, None)
    if not last:
        notices.info(request, _("Nothing to undo."))
        return redirect("webmail:inbox")
    source = folder_by_id(account_id, last["source"])
    target = folder_by_id(account_id, last["target"])
    pairs = store.move(target, last["uids"], source)
    notices.info(request, ngettext("%(n)d message moved back.", "%(n)d messages moved back.", len(pairs)) % {
        "n": len(pairs)})
    return redirect("webmail:folder", folder_id=source.mailbox_id)
