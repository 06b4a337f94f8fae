"""Settings: display name, signature, page size, conversation view, remote images, language, password."""
from __future__ import annotations

from django.contrib import messages as notices
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.password_validation import ValidationError, validate_password
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from mailcore.auth import check_login
from webmail.models import PAGE_SIZES, Preferences
from webmail.views.common import mail_login_required, mail_user, sidebar
from webmail.views.compose import identities

MAX_SIGNATURE_CHARS = 2000
MAX_NAME_CHARS = 200


@require_http_methods(["GET", "POST"])
@mail_login_required
def settings_view(request: HttpRequest) -> HttpResponse:
    user = mail_user(request)
    if request.method == "POST":
        if request.POST.get("form") == "password":
            _change_password(request)
        else:
            _save_preferences(request, user.prefs)
        return redirect("webmail:settings")
    aliases = [(a, user.prefs.signature_for(a, user.address)) for a in identities(user.account_id, user.address)[1:]]
    context = {"prefs": user.prefs, "page_sizes": PAGE_SIZES, "login": user.address, "aliases": aliases,
               **sidebar(user.account_id)}
    return render(request, "webmail/settings.html", context)


def _save_preferences(request: HttpRequest, prefs: Preferences) -> None:
    name = request.POST.get("display_name", "").replace("\r", "").replace("\n", "")[:MAX_NAME_CHARS]
    prefs.display_name = name
    prefs.signature = request.POST.get("signature", "")[:MAX_SIGNATURE_CHARS]
    user = mail_user(request)
    prefs.alias_signatures = {
        alias.lower(): request.POST.get(f"signature:{alias}", "")[:MAX_SIGNATURE_CHARS]
        for alias in identities(user.account_id, user.address)[1:]
        if request.POST.get(f"signature:{alias}", "").strip()
    }
    size = request.POST.get("page_size", "")
    prefs.page_size = int(size) if size.isdigit() and int(size) in PAGE_SIZES else prefs.page_size
    prefs.conversations = bool(request.POST.get("conversations"))
    remote = request.POST.get("remote_images")
    if remote in (Preferences.REMOTE_ASK, Preferences.REMOTE_ALWAYS):
        prefs.remote_images = remote
    language = request.POST.get("language", "")
    prefs.language = language if language in ("", "en", "vi") else prefs.language
    prefs.save()
    notices.info(request, _("Settings saved."))


def _change_password(request: HttpRequest) -> None:
    user = mail_user(request)
    current, new = request.POST.get("current", ""), request.POST.get("new", "")
    if check_login(user.address, current) is None:
        notices.error(request, _("The current password is wrong."))
        return
    try:
        validate_password(new, request.user)
    except ValidationError as err:
        notices.error(request, " ".join(err.messages))
        return
    request.user.set_password(new)
    request.user.save(update_fields=["password"])
    update_session_auth_hash(request, request.user)
    notices.info(request, _("Password changed."))
