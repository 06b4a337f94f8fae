import pytest

from mailcore.address import AddressError, display_domain, normalize_domain, parse_address


@pytest.mark.parametrize(
    "text, local, domain",
    [
        ("alice@example.test", "alice", "example.test"),
        ("Alice@EXAMPLE.Test", "Alice", "example.test"),
        ("<bob+news@example.test>", "bob+news", "example.test"),
        ('"john doe"@example.test', '"john doe"', "example.test"),
        ("josé@bücher.example", "josé", "xn--bcher-kva.example"),
        ("a.b-c_d@sub.example.test.", "a.b-c_d", "sub.example.test"),
    ],
)
def test_parse_address_keeps_local_case_and_normalises_domain(text, local, domain):
    address = parse_address(text)
    assert (address.local, address.domain) == (local, domain)


def test_address_key_is_case_folded():
    assert parse_address("Alice@Example.TEST").key == "alice@example.test"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "not of the form"),
        ("alice", "not of the form"),
        ("@example.test", "source routes"),
        ("@a,@b:alice@example.test", "source routes"),
        ("alice@", "empty domain"),
        ("alice@localhost", "invalid domain"),
        ("al..ice@example.test", "invalid local part"),
        (".alice@example.test", "invalid local part"),
        ("alice@exa_mple.test", "invalid domain"),
        ("alice@[127.0.0.1]", "address literal"),
        ("a" * 65 + "@example.test", "longer than 64"),
        ("alice@" + ("a" * 60 + ".") * 5 + "test", "longer than 255"),
        ("ali ce@example.test", "invalid local part"),
        ("alice@-example.test", "invalid domain"),
    ],
)
def test_malformed_addresses_are_clear_errors(text, reason):
    with pytest.raises(AddressError, match=reason):
        parse_address(text)


def test_idna_round_trip():
    assert normalize_domain("BÜCHER.example") == "xn--bcher-kva.example"
    assert display_domain("xn--bcher-kva.example") == "bücher.example"
