"""Search across folders (or one) through the store's full-text index."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mailcore import store
from webmail.searchquery import parse_search
from webmail.views.common import mail_login_required, mail_user, sidebar
from webmail.views.mailbox import _int_or_none


@require_GET
@mail_login_required
def search_view(request: HttpRequest) -> HttpResponse:
    user = mail_user(request)
    text = request.GET.get("q", "")
    parsed = parse_search(text)
    entries: list[store.ListEntry] = []
    folder_missing = False
    folder = None
    if parsed.folder:
        try:
            folder = store.get_folder(user.account_id, parsed.folder)
        except store.StoreError:
            folder_missing = True
    if not parsed.is_empty and not folder_missing:
        size = user.prefs.page_size
        entries = store.search_messages(user.account_id, parsed.query, folder,
                                        before_key=_int_or_none(request.GET.get("before")), limit=size + 1)
    more = len(entries) > user.prefs.page_size
    entries = entries[: user.prefs.page_size]
    context = {
        "q": text, "entries": entries, "errors": parsed.errors, "folder_missing": folder_missing,
        "next_before": entries[-1].key if more and entries else None, "searching": not parsed.is_empty,
        **sidebar(user.account_id),
    }
    return render(request, "webmail/search.html", context)
