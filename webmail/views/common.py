"""What every mail view needs: the signed-in account, its folders, and a folder from a URL id."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import logout
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import translation

from mailcore import store
from mailcore.conf import conf
from mailcore.store import FolderInfo, FolderRef
from webmail.models import Preferences

SESSION_ACCOUNT = "webmail_account_id"
SESSION_ADDRESS = "webmail_address"
# RFC 6154 §2 special uses, in the order and with the icons the folder list shows.
SPECIAL_ORDER = ("", "\\Drafts", "\\Sent", "\\Archive", "\\Junk", "\\Trash")
ICONS = {"": "📥", "\\Drafts": "📝", "\\Sent": "📤", "\\Archive": "🗄", "\\Junk": "🚫", "\\Trash": "🗑"}
FOLDER_ICON = "📁"


@dataclass(frozen=True)
class MailUser:
    account_id: int
    address: str
    prefs: Preferences


def mail_login_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Only for a signed-in mail user; sets `request.mail` (a MailUser)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        account_id = request.session.get(SESSION_ACCOUNT)
        if not request.user.is_authenticated or not account_id:
            if request.user.is_authenticated:
                logout(request)
            return redirect(f"/login/?next={request.path}")
        prefs = Preferences.of(request.user)
        if prefs.language:  # the user's choice beats the browser's Accept-Language
            translation.activate(prefs.language)
            request.LANGUAGE_CODE = prefs.language
        request.mail = MailUser(account_id, request.session.get(SESSION_ADDRESS, ""), prefs)  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def mail_user(request: HttpRequest) -> MailUser:
    return request.mail  # type: ignore[attr-defined,no-any-return]


def sorted_folders(account_id: int) -> list[FolderInfo]:
    """Folders with counts: INBOX, the special folders in their order, then the rest by name."""

    def order(folder: FolderInfo) -> tuple[int, str]:
        if folder.name == store.INBOX:
            return 0, ""
        if folder.special_use in SPECIAL_ORDER:
            return 1 + SPECIAL_ORDER.index(folder.special_use), folder.name
        return len(SPECIAL_ORDER) + 1, folder.name.lower()

    return sorted(store.list_folders(account_id), key=order)


def icon_of(folder: FolderInfo) -> str:
    return ICONS.get(folder.special_use, FOLDER_ICON) if folder.name == store.INBOX or folder.special_use \
        else FOLDER_ICON


def folder_by_id(account_id: int, folder_id: int) -> FolderRef:
    """The account's folder with this id; 404 for a folder of anyone else (or none)."""
    for folder in store.list_folders(account_id):
        if folder.id == folder_id:
            return store.get_folder(account_id, folder.name)
    raise Http404("no such folder")


def special_folder(account_id: int, special_use: str) -> FolderRef | None:
    try:
        return store.folder_by_special_use(account_id, special_use)
    except store.NoSuchFolder:
        return None


def message_or_404(ref: FolderRef, uid: int) -> store.MessageInfo:
    found = store.fetch(ref, [uid])
    if not found:
        raise Http404("no such message")
    return found[0]


def sidebar(account_id: int) -> dict[str, Any]:
    folders = sorted_folders(account_id)
    inbox = next((f for f in folders if f.name == store.INBOX), None)
    return {
        "folders": [(f, icon_of(f)) for f in folders],
        "inbox_unread": inbox.unseen if inbox else 0,
        "mail_state": mail_state(folders),
        "poll_ms": int(conf.webmail_poll_seconds * 1000),
    }


def mail_state(folders: list[FolderInfo]) -> str:
    """Changes when any folder gets, loses or changes a message (UIDNEXT and HIGHESTMODSEQ, RFC 7162 §3.1.2)."""
    return ".".join(f"{f.id}:{f.uidnext}:{f.highestmodseq}" for f in sorted(folders, key=lambda f: f.id))
