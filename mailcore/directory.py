"""The address directory: which domains we host, who receives an address, and provisioning.

Resolution order for an address in a hosted domain (like Postfix's virtual
alias maps): an alias of that exact address, then an account, then the same
two with a `+tag` removed (plus-addressing), then the domain's catch-all.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from mailcore import srs
from mailcore.address import Address, AddressError, normalize_domain, parse_address, split_catch_all
from mailcore.models import Account, Alias, AliasTarget, Domain

# Alias chains deeper than this are a loop or a mistake (Postfix uses 1000 for
# recursion; 20 is ample for people and bounds the work per recipient).
MAX_ALIAS_DEPTH = 20
PLUS_SEPARATOR = "+"
POSTMASTER = "postmaster"
T = TypeVar("T")


class DirectoryError(ValueError):
    """A provisioning request that cannot be done (unknown domain, duplicate, malformed)."""


@dataclass
class Route:
    """Where mail for one address goes: local accounts and remote addresses (both may be empty)."""

    accounts: list[int] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        return not self.accounts and not self.remote


_batch = threading.local()  # .lookups: this thread's remembered lookups inside `remembering_lookups()`


@contextmanager
def remembering_lookups() -> Iterator[None]:
    """Within this block, this thread answers a repeated lookup (domain, alias, account) from memory.

    Group commit wraps each batch (one transaction) in it: the recipients of
    many messages share domains and often addresses, and within one
    transaction a lookup made a few milliseconds earlier is as good as a new one.
    """
    outer = getattr(_batch, "lookups", None)
    if outer is None:
        _batch.lookups = {}
    try:
        yield
    finally:
        if outer is None:
            _batch.lookups = None


def _remembered(kind: str, key: str, lookup: Callable[[str], T]) -> T:
    lookups: dict[tuple[str, str], Any] | None = getattr(_batch, "lookups", None)
    if lookups is None:
        return lookup(key)
    if (kind, key) not in lookups:
        lookups[(kind, key)] = lookup(key)
    result: T = lookups[(kind, key)]
    return result


def is_hosted(domain: str) -> bool:
    try:
        name = normalize_domain(domain)
    except AddressError:
        return False
    return _remembered("domain", name, _domain_is_active)


def first_hosted_domain() -> str | None:
    """The name of the active domain added first, or None when there is none."""
    return Domain.objects.filter(active=True).order_by("id").values_list("name", flat=True).first()


def _domain_is_active(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {_table(Domain)} WHERE name = %s AND active LIMIT 1", [name])
        return cursor.fetchone() is not None


def _table(model: type[Any]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def resolve(address: str | Address) -> Route:
    """Route mail for `address`. Raises AddressError when it is malformed.

    A non-hosted address routes to itself as remote; an unknown user in a
    hosted domain gives an empty route.
    """
    parsed = parse_address(address) if isinstance(address, str) else address
    route = Route()
    _expand(parsed, route, depth=0, seen=set())
    return route


def _expand(address: Address, route: Route, depth: int, seen: set[str]) -> None:
    if address.key in seen or depth > MAX_ALIAS_DEPTH:
        return
    seen.add(address.key)
    if not is_hosted(address.domain):
        if address.key not in {r.lower() for r in route.remote}:
            route.remote.append(str(address))
        return
    for candidate in _candidates(address):
        targets = _alias_targets(candidate)
        if targets is not None:
            for target in targets:
                _expand_target(target, route, depth, seen)
            return
        account_id = _account_id(candidate)
        if account_id is not None:
            if account_id not in route.accounts:
                route.accounts.append(account_id)
            return
    if srs.is_srs(address):  # a bounce to a sender our forwarding rewrote; a forged one is unknown
        original = srs.reverse(address)
        if original is not None:
            _expand_target(original, route, depth, seen)
        return
    catch_all = _alias_targets(f"@{address.domain}")
    for target in catch_all or []:
        _expand_target(target, route, depth, seen)


def _expand_target(target: str, route: Route, depth: int, seen: set[str]) -> None:
    try:
        _expand(parse_address(target), route, depth + 1, seen)
    except AddressError:
        return  # a stored target that no longer parses delivers nowhere, like a missing user


def _candidates(address: Address) -> list[str]:
    """The lookup keys for an address: itself, then without its +tag."""
    keys = [address.key]
    base, plus, _tag = address.local.partition(PLUS_SEPARATOR)
    if plus and base:
        keys.append(f"{base.lower()}@{address.domain}")
    return keys


def _alias_targets(source_key: str) -> list[str] | None:
    """The targets of the active alias `source_key` (in target id order), None when there is no such alias."""
    targets = _remembered("alias", source_key, _load_alias_targets)
    return None if targets is None else list(targets)


def _load_alias_targets(source_key: str) -> tuple[str, ...] | None:
    # One round trip: the alias and its targets (a LEFT JOIN keeps an alias without targets).
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT t.address FROM {_table(Alias)} a LEFT JOIN {_table(AliasTarget)} t ON t.alias_id = a.id "
            "WHERE a.source = %s AND a.active ORDER BY t.id",
            [source_key],
        )
        rows = cursor.fetchall()
    if not rows:
        return None
    return tuple(address for (address,) in rows if address is not None)


def _account_id(key: str) -> int | None:
    return _remembered("account", key, _load_account_id)


def _load_account_id(key: str) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_table(Account)} WHERE address = %s AND active LIMIT 1", [key])
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def account_for_login(login: str) -> Account | None:
    """The active account a login name (its address) belongs to, or None."""
    try:
        key = parse_address(login).key
    except AddressError:
        return None
    return Account.objects.select_related("user").filter(address=key, active=True).first()


def addresses_of(account_id: int) -> set[str]:
    """Every address (lookup key) that delivers to this account: its own and those of the active aliases
    (not catch-alls) with it among their targets. Reads every alias target (as plain values: 5,000
    aliases take about 30 ms); `may_send_as` answers for one address by keyed lookups."""
    own: str = Account.objects.values_list("address", flat=True).get(pk=account_id)
    targets = (AliasTarget.objects.filter(alias__active=True).exclude(alias__local_part="")
               .values_list("alias__source", "address"))
    return {own} | {source for source, target in targets if _key_or_none(target) == own}


def may_send_as(account_id: int, address: Address) -> bool:
    """Whether `address`, or it without its +tag, delivers to the account as `addresses_of` counts: the
    account's own address, or an active alias (not a catch-all) with the account's address among its
    targets. A few keyed lookups, however many aliases there are (`addresses_of` reads them all)."""
    own = _remembered("account address", str(account_id), _load_account_address)
    if own is None:
        return False
    for key in _candidates(address):
        if key == own or any(_key_or_none(target) == own for target in _alias_targets(key) or ()):
            return True
    return False


def _load_account_address(account_id: str) -> str | None:
    address: str | None = Account.objects.filter(pk=int(account_id)).values_list("address", flat=True).first()
    return address


def _key_or_none(text: str) -> str | None:
    try:
        return parse_address(text).key
    except AddressError:
        return None


# Provisioning: used by the operator commands, the admin and the tests.


def create_domain(name: str) -> Domain:
    try:
        normalized = normalize_domain(name)
    except AddressError as err:
        raise DirectoryError(str(err)) from err
    try:
        with transaction.atomic():
            return Domain.objects.create(name=normalized)
    except IntegrityError as err:
        raise DirectoryError(f"domain {normalized} already exists") from err


def _hosted_domain(name: str) -> Domain:
    domain = Domain.objects.filter(name=name).first()
    if domain is None:
        raise DirectoryError(f"domain {name} is not hosted here (create it first)")
    return domain


def create_account(address: str, password: str, quota_bytes: int = 0) -> Account:
    """Create an account, its Django user and its default folders, atomically."""
    from mailcore.store import folders

    try:
        parsed = parse_address(address)
    except AddressError as err:
        raise DirectoryError(str(err)) from err
    if quota_bytes < 0:
        raise DirectoryError("quota must be 0 (no limit) or a positive number of bytes")
    domain = _hosted_domain(parsed.domain)
    if Account.objects.filter(address=parsed.key).exists() or Alias.objects.filter(source=parsed.key).exists():
        raise DirectoryError(f"{parsed} already exists")
    try:
        with transaction.atomic():
            user = get_user_model().objects.create_user(username=parsed.key, email=str(parsed), password=password)
            account = Account.objects.create(
                domain=domain, local_part=parsed.local, address=parsed.key, user=user, quota_bytes=quota_bytes
            )
            folders.create_default_folders(account)
            _ensure_postmaster(domain, account)
    except IntegrityError as err:
        raise DirectoryError(f"{parsed} already exists") from err
    return account


def _ensure_postmaster(domain: Domain, account: Account) -> None:
    """Give the domain a postmaster (RFC 5321 §4.5.1: it MUST be accepted): its first account.

    An existing postmaster account or alias is left alone; the operator can re-point the alias.
    """
    key = f"{POSTMASTER}@{domain.name}"
    if Account.objects.filter(address=key).exists() or Alias.objects.filter(source=key).exists():
        return
    alias = Alias.objects.create(domain=domain, local_part=POSTMASTER, source=key)
    AliasTarget.objects.create(alias=alias, address=account.address)


def create_alias(source: str, targets: list[str]) -> Alias:
    """Create `source` (an address, or `@domain` for the catch-all) delivering to `targets`."""
    if not targets:
        raise DirectoryError("an alias needs at least one target")
    try:
        domain_name, local_part, source_key = alias_source(source)
        target_addresses = [str(parse_address(t)) for t in targets]
    except AddressError as err:
        raise DirectoryError(str(err)) from err
    domain = _hosted_domain(domain_name)
    if Alias.objects.filter(source=source_key).exists() or Account.objects.filter(address=source_key).exists():
        raise DirectoryError(f"{source_key} already exists")
    with transaction.atomic():
        alias = Alias.objects.create(domain=domain, local_part=local_part, source=source_key)
        unique_targets = dict.fromkeys(target_addresses)
        AliasTarget.objects.bulk_create([AliasTarget(alias=alias, address=t) for t in unique_targets])
    return alias


def alias_source(source: str) -> tuple[str, str, str]:
    """(domain, local part, lookup key) of an alias source; the catch-all has no local part."""
    catch_all_domain = split_catch_all(source)
    if catch_all_domain:
        return catch_all_domain, "", f"@{catch_all_domain}"
    parsed = parse_address(source)
    return parsed.domain, parsed.local, parsed.key
