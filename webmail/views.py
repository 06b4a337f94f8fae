"""Webmail views. Until the webmail lands, the front page tells a user where to point a mail client."""
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from mailcore.conf import conf

PORTS = (
    ("SMTP (MX)", "SMTP"),
    ("Submission (STARTTLS)", "SUBMISSION"),
    ("Submission (TLS)", "SUBMISSIONS"),
    ("IMAP (STARTTLS)", "IMAP"),
    ("IMAP (TLS)", "IMAPS"),
    ("POP3 (STARTTLS)", "POP3"),
    ("POP3 (TLS)", "POP3S"),
)


def home(request: HttpRequest) -> HttpResponse:
    services = [(label, conf.port(name)) for label, name in PORTS if conf.port(name)]
    return render(request, "home.html", {"hostname": conf.hostname, "services": services})
