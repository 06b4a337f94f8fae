"""RFC 3461 parameters: xtext both ways, NOTIFY's meaning, and what is passed on to a DSN-capable server."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.dsnparams import (
    ParameterError,
    RecipientRequest,
    Request,
    mail_parameters,
    rcpt_parameters,
    recipient_request,
    take,
    xtext_decode,
    xtext_encode,
)

PRINTABLE_ASCII = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@given(PRINTABLE_ASCII)
def test_xtext_decodes_what_it_encodes(text):
    encoded = xtext_encode(text)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == text


def test_xtext_examples_from_the_rfc_alphabet():
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode("Bob+40Example.test") == "Bob@Example.test"
    with pytest.raises(ParameterError):
        xtext_decode("a+2b")  # hex digits must be upper case (RFC 3461 §4)


def test_notify_decides_which_reports_go_out():
    default, never, success = RecipientRequest(), RecipientRequest("NEVER"), RecipientRequest("SUCCESS")
    assert [default.wants(e) for e in ("SUCCESS", "FAILURE", "DELAY")] == [False, True, True]
    assert [never.wants(e) for e in ("SUCCESS", "FAILURE", "DELAY")] == [False, False, False]
    assert [success.wants(e) for e in ("SUCCESS", "FAILURE", "DELAY")] == [True, False, False]
    assert recipient_request({"NOTIFY": "delay,Success"}).notify == "SUCCESS,DELAY"  # one spelling, one order


def test_take_keeps_other_parameters_and_the_case_of_values():
    assert take("SIZE=10 ENVID=AbC+2Bd BODY=8BITMIME ret=hdrs", ("RET", "ENVID")) == (
        "SIZE=10 BODY=8BITMIME", {"ENVID": "AbC+2Bd", "RET": "hdrs"})


def test_what_is_passed_on_is_xtext_again_and_leaves_out_what_is_not_ascii():
    request = Request("HDRS", "id 1", {"b@x.test": RecipientRequest("FAILURE", "rfc822;B@X.test")})
    assert mail_parameters(request) == ["RET=HDRS", "ENVID=id+201"]
    assert rcpt_parameters(request.of("b@x.test")) == ["NOTIFY=FAILURE", "ORCPT=rfc822;B@X.test"]
    assert rcpt_parameters(RecipientRequest("", "utf-8;bö@x.test")) == []
    assert rcpt_parameters(request.of("other@x.test")) == []
