"""Configuration documents over HTTP: Thunderbird autoconfig, Outlook autodiscover, the Apple profile, MTA-STS.

The documents come from mailcore.clientconfig; these views only find the
address or domain in the request, check that the domain is hosted here, and
answer. Unknown domains get 404 so the server does not configure clients for
mail it does not hold.
"""
from __future__ import annotations

from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.http.request import split_domain_port
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from mailcore import clientconfig, directory, dnssetup
from mailcore.address import AddressError, normalize_domain, parse_address
from webmail.views.common import mail_login_required, mail_user

XML_TYPE = "application/xml; charset=utf-8"
PROFILE_TYPE = "application/x-apple-aspen-config"
MAX_AUTODISCOVER_BODY = 64 * 1024  # a request is a few hundred bytes; refuse anything larger
AUTOCONFIG_HOST_PREFIX = "autoconfig."
AUTODISCOVER_HOST_PREFIX = "autodiscover."


def _hosted_domain_of(address: str) -> str | None:
    try:
        domain = parse_address(address).domain
    except AddressError:
        return None
    return domain if directory.is_hosted(domain) else None


def _domain_from_host(request: HttpRequest) -> str | None:
    """`autoconfig.example.org` or `example.org` in the Host header -> `example.org`, when hosted."""
    host, _port = split_domain_port(request.get_host())
    for prefix in (AUTOCONFIG_HOST_PREFIX, AUTODISCOVER_HOST_PREFIX):
        if host.startswith(prefix) and directory.is_hosted(host[len(prefix):]):
            return normalize_domain(host[len(prefix):])
    return normalize_domain(host) if host and directory.is_hosted(host) else None


@require_GET
def thunderbird(request: HttpRequest) -> HttpResponse:
    """config-v1.1.xml; the domain comes from ?emailaddress= or else from the Host header."""
    address = request.GET.get("emailaddress", "")
    domain = _hosted_domain_of(address) if address else _domain_from_host(request)
    if domain is None:
        return HttpResponseNotFound("no such hosted domain\n", content_type="text/plain")
    return HttpResponse(clientconfig.thunderbird_config(domain), content_type=XML_TYPE)


def _requested_address(body: bytes) -> str | None:
    """The <EMailAddress> of an autodiscover request, whatever namespace it uses; None if unreadable."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "EMailAddress" and element.text:
            return element.text.strip()
    return None


@csrf_exempt  # a client-to-server API with no cookies or session; nothing here acts for a signed-in user
@require_POST
def outlook(request: HttpRequest) -> HttpResponse:
    """POX autodiscover: POST <Autodiscover><Request><EMailAddress>, answer with the settings."""
    if int(request.headers.get("Content-Length") or 0) > MAX_AUTODISCOVER_BODY:
        return HttpResponse(clientconfig.outlook_error("600", "Invalid Request"), status=413, content_type=XML_TYPE)
    address = _requested_address(request.body)
    if address is None:
        return HttpResponse(clientconfig.outlook_error("600", "Invalid Request"), status=400, content_type=XML_TYPE)
    if _hosted_domain_of(address) is None:
        return HttpResponse(clientconfig.outlook_error("500", "Unknown e-mail address"), status=404,
                            content_type=XML_TYPE)
    return HttpResponse(clientconfig.outlook_autodiscover(address), content_type=XML_TYPE)


@require_GET
@mail_login_required
def apple_profile(request: HttpRequest) -> HttpResponse:
    """The signed-in user's .mobileconfig (unsigned: iOS shows it as "Unverified")."""
    user = mail_user(request)
    document = clientconfig.apple_profile(user.address, user.prefs.display_name)
    if document is None:
        return HttpResponseNotFound("no incoming or outgoing listener is enabled\n", content_type="text/plain")
    response = HttpResponse(document, content_type=PROFILE_TYPE)
    filename = user.address.replace("@", "-at-").replace('"', "")
    response["Content-Disposition"] = f'attachment; filename="{filename}.mobileconfig"'
    return response


@require_GET
def mta_sts_policy(request: HttpRequest) -> HttpResponse:
    """RFC 8461 §3.2: the policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, for hosted domains only."""
    host, _port = split_domain_port(request.get_host())
    prefix = dnssetup.MTA_STS_POLICY_HOST + "."
    if not host.startswith(prefix) or not directory.is_hosted(host[len(prefix):]):
        return HttpResponseNotFound("no MTA-STS policy for this host\n", content_type="text/plain")
    return HttpResponse(dnssetup.mta_sts_policy(normalize_domain(host[len(prefix):])), content_type="text/plain")


urlpatterns = [
    path(".well-known/mta-sts.txt", mta_sts_policy, name="mta_sts_policy"),
    path(".well-known/autoconfig/mail/config-v1.1.xml", thunderbird, name="autoconfig_wellknown"),
    path("mail/config-v1.1.xml", thunderbird, name="autoconfig"),
    path("autodiscover/autodiscover.xml", outlook, name="autodiscover"),
    path("Autodiscover/Autodiscover.xml", outlook, name="autodiscover_capitalised"),
    path("settings/apple.mobileconfig", apple_profile, name="apple_profile"),
]
