import pytest

from mailcore import directory
from mailcore.address import AddressError
from mailcore.directory import DirectoryError, create_account, create_alias, create_domain, resolve


def test_account_resolves_case_insensitively(alice):
    assert resolve("ALICE@Example.Test").accounts == [alice.pk]
    assert alice.local_part == "Alice" and alice.address == "alice@example.test"


def test_plus_addressing_reaches_the_base_account(alice):
    assert resolve("alice+lists@example.test").accounts == [alice.pk]


def test_alias_expands_to_local_and_remote_targets(alice, bob):
    create_alias("team@example.test", ["alice@example.test", "bob@example.test", "carol@elsewhere.test"])
    route = resolve("team@example.test")
    assert route.accounts == [alice.pk, bob.pk]
    assert route.remote == ["carol@elsewhere.test"]


def test_catch_all_takes_unknown_users_only(alice, bob):
    create_alias("@example.test", ["bob@example.test"])
    assert resolve("nobody@example.test").accounts == [bob.pk]
    assert resolve("alice@example.test").accounts == [alice.pk]


def test_alias_loops_end(alice):
    create_alias("a@example.test", ["b@example.test"])
    create_alias("b@example.test", ["a@example.test", "alice@example.test"])
    assert resolve("a@example.test").accounts == [alice.pk]


def test_unknown_user_in_hosted_domain_is_unknown(domain):
    assert resolve("nobody@example.test").unknown


def test_foreign_domain_routes_remote(domain):
    route = resolve("someone@elsewhere.test")
    assert route.accounts == [] and route.remote == ["someone@elsewhere.test"]


def test_malformed_address_is_an_error(domain):
    with pytest.raises(AddressError):
        resolve("not an address")


def test_idna_domain_is_hosted_under_both_spellings(db):
    create_domain("bücher.example")
    account = create_account("josé@BÜCHER.example", "pw-123456789")
    assert directory.is_hosted("xn--bcher-kva.example")
    assert resolve("JOSÉ@bücher.example").accounts == [account.pk]


@pytest.mark.parametrize(
    "action, message",
    [
        (lambda: create_domain("example.test"), "already exists"),
        (lambda: create_domain("not a domain"), "invalid domain"),
        (lambda: create_account("alice@example.test", "pw-123456789"), "already exists"),
        (lambda: create_account("x@unhosted.test", "pw-123456789"), "not hosted"),
        (lambda: create_account("bad address", "pw-123456789"), "not of the form"),
        (lambda: create_alias("alice@example.test", ["bob@example.test"]), "already exists"),
        (lambda: create_alias("x@example.test", []), "at least one target"),
        (lambda: create_alias("x@example.test", ["nope"]), "not of the form"),
    ],
)
def test_provisioning_errors_are_clear_and_leave_nothing(alice, action, message):
    from mailcore.models import Account, Alias, Domain

    before = (Domain.objects.count(), Account.objects.count(), Alias.objects.count())
    with pytest.raises(DirectoryError, match=message):
        action()
    assert (Domain.objects.count(), Account.objects.count(), Alias.objects.count()) == before


def test_new_account_has_the_special_folders(alice):
    from mailcore import store

    folders = {(f.name, f.special_use) for f in store.list_folders(alice.pk)}
    assert folders == {
        ("INBOX", ""), ("Drafts", "\\Drafts"), ("Sent", "\\Sent"),
        ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive"),
    }


def test_addresses_of_includes_aliases(alice):
    create_alias("info@example.test", ["Alice@example.test"])
    assert directory.addresses_of(alice.pk) == {"alice@example.test", "info@example.test", "postmaster@example.test"}


def test_may_send_as_agrees_with_addresses_of(alice, bob):
    """The keyed lookups submission uses give the answer of its definition: the address, or it without its
    +tag, among `addresses_of` (which reads every alias)."""
    from mailcore.address import parse_address
    from mailcore.models import Alias

    create_alias("info@example.test", ["Alice@example.test"])
    create_alias("team@example.test", ["bob@example.test", "alice@example.test", "carol@elsewhere.test"])
    create_alias("bobs@example.test", ["bob@example.test"])
    create_alias("chain@example.test", ["info@example.test"])  # reaches Alice only through another alias
    create_alias("@example.test", ["alice@example.test"])  # the catch-all is no sender address
    create_alias("alice+x@example.test", ["bob@example.test"])
    create_alias("old@example.test", ["alice@example.test"])
    Alias.objects.filter(source="old@example.test").update(active=False)
    addresses = [f"{local}@{domain}" for local in (
        "alice", "ALICE", "alice+tag", "alice+x", "info", "Info+x", "team", "bobs", "chain", "old", "nobody",
        "+tag", "bob", "bob+y", "postmaster", "carol",
    ) for domain in ("example.test", "EXAMPLE.test", "elsewhere.test")]
    assert directory.addresses_of(alice.pk) == {
        "alice@example.test", "info@example.test", "team@example.test", "postmaster@example.test"}
    assert directory.addresses_of(bob.pk) == {
        "bob@example.test", "team@example.test", "bobs@example.test", "alice+x@example.test"}
    for account in (alice, bob):
        owned = directory.addresses_of(account.pk)
        for text in addresses:
            address = parse_address(text)
            base, plus, _tag = address.local.partition("+")
            expected = address.key in owned or bool(plus and f"{base.lower()}@{address.domain}" in owned)
            assert directory.may_send_as(account.pk, address) is expected, (account.address, text)
    assert directory.may_send_as(alice.pk, parse_address("team@example.test"))
    assert directory.may_send_as(bob.pk, parse_address("alice+x@example.test"))  # an alias to Bob, not Alice's
    assert not directory.may_send_as(alice.pk + bob.pk + 100, parse_address("alice@example.test"))  # no such account


def test_first_account_of_a_domain_becomes_its_postmaster(alice, bob):
    assert resolve("Postmaster@example.test").accounts == [alice.pk]
    from mailcore.models import Alias

    assert Alias.objects.filter(source="postmaster@example.test").count() == 1
