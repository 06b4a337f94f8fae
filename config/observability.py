"""/metrics for Prometheus: every process's counters and the queue, for a bearer token or an allowed address."""
from __future__ import annotations

import hmac
import ipaddress
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from mailcore import metrics
from mailcore.conf import conf

log = logging.getLogger(__name__)

BEARER = "Bearer "


def _token_ok(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    token = conf.metrics_token
    return bool(token) and header.startswith(BEARER) and hmac.compare_digest(header[len(BEARER):].strip(), token)


def _address_allowed(request: HttpRequest) -> bool:
    """REMOTE_ADDR inside one of MAIL_METRICS_ALLOW's addresses or networks (a proxy's address counts as its own)."""
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for entry in conf.metrics_allow:
        try:
            if client in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            log.warning("MAIL_METRICS_ALLOW entry %r is not an address or network; ignored", entry)
    return False


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not (_token_ok(request) or _address_allowed(request)):
        response = HttpResponse("metrics need a bearer token or an allowed address\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
