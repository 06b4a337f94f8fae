"""Create, rename and delete folders (special folders and INBOX stay)."""
from __future__ import annotations

from django.contrib import messages as notices
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from mailcore import store
from webmail.views.common import folder_by_id, mail_login_required, mail_user, sidebar

MAX_FOLDER_INPUT = 200


@require_GET
@mail_login_required
def folders_view(request: HttpRequest) -> HttpResponse:
    return render(request, "webmail/folders.html", sidebar(mail_user(request).account_id))


def _name(request: HttpRequest) -> str:
    return request.POST.get("name", "").strip()[:MAX_FOLDER_INPUT]


def _report(request: HttpRequest, err: store.StoreError) -> None:
    messages_by_error = {
        store.FolderExists: _("A folder with that name exists already."),
        store.InvalidFolderName: _("That folder name is not allowed."),
        store.FolderNotAllowed: _("That folder cannot be changed."),
        store.NoSuchFolder: _("That folder does not exist."),
    }
    notices.error(request, messages_by_error.get(type(err), _("That did not work.")))


@require_POST
@mail_login_required
def folder_create(request: HttpRequest) -> HttpResponse:
    try:
        store.create_folder(mail_user(request).account_id, _name(request))
        notices.info(request, _("Folder created."))
    except store.StoreError as err:
        _report(request, err)
    return redirect("webmail:folders")


@require_POST
@mail_login_required
def folder_rename(request: HttpRequest, folder_id: int) -> HttpResponse:
    account_id = mail_user(request).account_id
    ref = folder_by_id(account_id, folder_id)
    try:
        _refuse_special(account_id, ref)
        store.rename_folder(account_id, ref.name, _name(request))
        notices.info(request, _("Folder renamed."))
    except store.StoreError as err:
        _report(request, err)
    return redirect("webmail:folders")


@require_POST
@mail_login_required
def folder_delete(request: HttpRequest, folder_id: int) -> HttpResponse:
    account_id = mail_user(request).account_id
    ref = folder_by_id(account_id, folder_id)
    try:
        _refuse_special(account_id, ref)
        store.delete_folder(account_id, ref.name)
        notices.info(request, _("Folder deleted."))
    except store.StoreError as err:
        _report(request, err)
    return redirect("webmail:folders")


def _refuse_special(account_id: int, ref: store.FolderRef) -> None:
    """INBOX and the special-use folders (RFC 6154) keep their names: clients rely on them."""
    if ref.name == store.INBOX:
        raise store.FolderNotAllowed("INBOX")
    for info in store.list_folders(account_id):
        if info.id == ref.mailbox_id and info.special_use:
            raise store.FolderNotAllowed(info.special_use)
