"""Response headers every webmail page carries: a strict CSP (no inline script) and nosniff."""
from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# Pages of the app: scripts and styles only from our own static files, frames only
# our own message bodies, nothing may frame us (X-Frame-Options DENY says the same).
APP_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
# A message body shown in a sandboxed iframe: no script, no forms, styles inline only,
# images from our inline-part URLs only, or from anywhere once the user allowed remote images.
BODY_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'{remote}; font-src 'none'; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'; sandbox allow-popups "
    "allow-popups-to-escape-sandbox"
)
REMOTE_IMAGE_SOURCES = " https: http: data:"


def body_csp(allow_remote: bool) -> str:
    return BODY_CSP.format(remote=REMOTE_IMAGE_SOURCES if allow_remote else "")


class SecurityHeadersMiddleware:
    """Adds the app CSP unless a view set its own, plus nosniff and a same-origin referrer policy."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = APP_CSP
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("Referrer-Policy", "same-origin")  # no-referrer would make Origin "null" on POSTs
        return response
