"""Django system checks (`manage.py check`, and before `runmail` and `runserver` start): settings a value of
which would only fail later, at the first delivery, are refused at start-up with what to give instead."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from mailcore.conf import conf

# One address of each IP version, to check the source address setting for that version.
_ONE_OF_EACH_VERSION = ("192.0.2.1", "2001:db8::1")  # RFC 5737, RFC 3849 documentation addresses


@checks.register()
def outbound_addresses(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """MAIL_OUTBOUND_IP_VERSIONS and MAIL_OUTBOUND_SOURCE_IPV4 / _IPV6 can be used."""
    problems = _problem_reading(lambda: conf.outbound_address_types)
    for address in _ONE_OF_EACH_VERSION:
        problems += _problem_reading(functools.partial(conf.outbound_source, address))
    return problems


@checks.register()
def relay_tls(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """MAIL_RELAY_TLS and MAIL_RELAY_TLS_VERIFY are among the values they take."""
    return _problem_reading(lambda: conf.relay_implicit_tls) + _problem_reading(lambda: conf.relay_tls_verify)


def _problem_reading(read: Callable[[], object]) -> list[checks.CheckMessage]:
    try:
        read()
    except ImproperlyConfigured as err:
        return [checks.Error(str(err), id="mailcore.E001")]
    return []
