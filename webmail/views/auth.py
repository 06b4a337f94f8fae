"""Sign in with the mail address and password (mailcore.auth.check_login), sign out."""
from __future__ import annotations

import logging
import time

from django.contrib.auth import get_user_model, login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from mailcore.auth import check_login, throttle
from webmail.views.common import SESSION_ACCOUNT, SESSION_ADDRESS

log = logging.getLogger(__name__)
# Longer addresses or passwords are refused before any check (RFC 5321 §4.5.3.1.3 path limit).
MAX_LOGIN_CHARS = 320
MAX_PASSWORD_CHARS = 1024
# A web worker should not sleep long; the throttle blocks the IP after MAX_FAILURES anyway.
MAX_WEB_DELAY = 2.0


def client_ip(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if request.method == "GET":
        return render(request, "webmail/login.html", {"next": next_url})
    ip = client_ip(request)
    if throttle.is_blocked(ip):
        log.warning("webmail login refused, too many failures peer=%s", ip)
        error = _("Too many failed sign-ins. Try again in a few minutes.")
        return render(request, "webmail/login.html", {"error": error, "next": next_url}, status=429)
    time.sleep(min(MAX_WEB_DELAY, throttle.delay_for(ip)))
    address = request.POST.get("address", "").strip()[:MAX_LOGIN_CHARS]
    password = request.POST.get("password", "")[:MAX_PASSWORD_CHARS]
    user = check_login(address, password) if address and password else None
    if user is None:
        throttle.record_failure(ip)
        log.info("webmail login failed peer=%s", ip)
        error = _("Wrong address or password.")
        return render(request, "webmail/login.html", {"error": error, "next": next_url, "address": address},
                      status=401)
    django_user = get_user_model().objects.get(username=user.address.lower())
    login(request, django_user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SESSION_ACCOUNT] = user.account_id
    request.session[SESSION_ADDRESS] = address
    log.info("webmail login account=%s peer=%s", user.account_id, ip)
    return redirect(_safe_next(request, next_url))


def _safe_next(request: HttpRequest, next_url: str) -> str:
    """Only our own paths: never an open redirect after sign-in."""
    if next_url and url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        return next_url
    return reverse("webmail:inbox")


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect(reverse("webmail:login"))
