"""The DNS set-up page: the records to publish, and "check now" against a real DNS server on loopback."""
from __future__ import annotations

import re

import pytest

from mailcore import dnssetup
from mailcore.delivery import dkim
from mailcore.directory import create_domain
from mailcore.models import Domain
from tests.support.dnsserver import DNSServer


@pytest.fixture
def dkim_key(domain):
    return dkim.create_key("example.test", "mail20260101")


def published_zone(records: list[dnssetup.Record]) -> dict:
    """A DNSServer zone publishing exactly `records` (SRV/MX/CNAME without change, TXT unquoted)."""
    zone: dict = {}
    for record in records:
        zone.setdefault(record.name, {}).setdefault(record.rtype, []).append(record.value)
    return zone


def by_name(results: list[dnssetup.CheckResult]) -> dict[tuple[str, str], dnssetup.CheckResult]:
    return {(r.record.name, r.record.rtype): r for r in results}


def test_expected_records_cover_mail_routing_policy_and_client_discovery(dkim_key, production_names):
    records = {(r.name, r.rtype): r.value for r in dnssetup.expected_records("example.test")}
    public_key = dkim.public_key_b64(dkim_key)
    assert records[("example.test", "MX")] == "10 mail.example.test."
    assert records[("example.test", "TXT")] == "v=spf1 mx -all"
    assert records[("mail.example.test", "TXT")] == "v=spf1 a -all"  # the HELO name of our bounces
    assert records[("mail20260101._domainkey.example.test", "TXT")] == f"v=DKIM1; k=rsa; p={public_key}"
    assert records[("_dmarc.example.test", "TXT")] == "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"
    assert re.fullmatch(r"v=STSv1; id=[0-9a-f]{20}", records[("_mta-sts.example.test", "TXT")])
    assert records[("_smtp._tls.example.test", "TXT")] == "v=TLSRPTv1; rua=mailto:postmaster@example.test"
    assert records[("_imaps._tcp.example.test", "SRV")] == "0 1 993 mail.example.test."
    assert records[("_imap._tcp.example.test", "SRV")] == "10 1 143 mail.example.test."
    assert records[("_pop3s._tcp.example.test", "SRV")] == "0 1 995 mail.example.test."
    assert records[("_submissions._tcp.example.test", "SRV")] == "0 1 465 mail.example.test."
    assert records[("_submission._tcp.example.test", "SRV")] == "10 1 587 mail.example.test."
    for label in ("autoconfig", "autodiscover", "mta-sts"):
        assert records[(f"{label}.example.test", "CNAME")] == "mail.example.test."


def test_a_listener_turned_off_is_published_as_not_offered(domain, production_names):
    production_names.MAIL_POP3_PORT = 0
    records = {(r.name, r.rtype): r.value for r in dnssetup.expected_records("example.test")}
    assert records[("_pop3._tcp.example.test", "SRV")] == "0 0 0 ."  # RFC 6186 §3.4


def test_the_servers_own_spf_record_is_shown_for_the_domain_its_name_is_in(domain, production_names):
    create_domain("other.test")
    assert ("mail.example.test", "TXT") in {(r.name, r.rtype) for r in dnssetup.expected_records("example.test")}
    assert "mail.example.test" not in {r.name for r in dnssetup.expected_records("other.test")}


def test_newest_dkim_key_is_the_one_to_publish(dkim_key, production_names):
    newer = dkim.create_key("example.test", "mail20270101")
    names = [r.name for r in dnssetup.expected_records("example.test") if "_domainkey" in r.name]
    assert names == [f"{newer.selector}._domainkey.example.test"]


def test_check_passes_every_record_when_all_are_published(dkim_key, production_names, dns_server: DNSServer):
    records = dnssetup.expected_records("example.test")
    dns_server.records = published_zone(records)
    results = dnssetup.check_records("example.test")
    assert [(r.record.name, r.status) for r in results] == [(r.name, "pass") for r in records]
    assert ("_imaps._tcp.example.test", "SRV") in dns_server.queries


def test_check_reports_missing_wrong_and_error_with_the_difference(dkim_key, production_names, dns_server):
    zone = published_zone(dnssetup.expected_records("example.test"))
    zone["example.test"] = {"MX": ["10 mx.elsewhere.test."], "TXT": ["v=spf1 a mx ~all", "google-site=x"]}
    del zone["_dmarc.example.test"]
    zone["_smtp._tls.example.test"] = DNSServer.SERVFAIL
    zone["_imaps._tcp.example.test"] = {"SRV": ["0 1 1993 mail.example.test."]}
    zone["autoconfig.example.test"] = {"CNAME": ["elsewhere.test."]}
    zone["autodiscover.example.test"] = {"A": ["192.0.2.7"]}
    zone["mail.example.test"] = {"A": ["192.0.2.7"]}
    dns_server.records = zone
    results = by_name(dnssetup.check_records("example.test"))
    mx = results[("example.test", "MX")]
    assert (mx.status, mx.found, mx.difference) == ("wrong", ["10 mx.elsewhere.test."], "no MX points at mail.example.test")
    spf = results[("example.test", "TXT")]
    assert (spf.status, spf.found, spf.difference) == ("wrong", ["v=spf1 a mx ~all"], "missing -all; unexpected a, ~all")
    dmarc = results[("_dmarc.example.test", "TXT")]
    assert (dmarc.status, dmarc.difference) == ("missing", "not published; expected " + dmarc.record.value)
    assert results[("_smtp._tls.example.test", "TXT")].status == "error"
    srv = results[("_imaps._tcp.example.test", "SRV")]
    assert (srv.status, srv.difference) == ("wrong", "expected port and target 993 mail.example.test.")
    assert results[("autoconfig.example.test", "CNAME")].status == "wrong"
    assert results[("autodiscover.example.test", "CNAME")].status == "pass"  # same address as the server
    assert results[("mail20260101._domainkey.example.test", "TXT")].status == "pass"


def test_dkim_record_with_another_key_shows_which_tag_differs(dkim_key, production_names, dns_server):
    zone = published_zone(dnssetup.expected_records("example.test"))
    zone["mail20260101._domainkey.example.test"] = {"TXT": ["v=DKIM1; k=rsa; p=MIIBIjANold"]}
    dns_server.records = zone
    result = by_name(dnssetup.check_records("example.test"))[("mail20260101._domainkey.example.test", "TXT")]
    assert result.status == "wrong" and result.difference.startswith("missing p=")
    assert result.difference.endswith("; unexpected p=miibijanold")


def test_admin_dns_page_lists_records_and_check_now_shows_status(admin_client, dkim_key, production_names, dns_server):
    domain = Domain.objects.get(name=dkim_key.domain)
    dns_server.records = {"example.test": {"MX": ["10 mail.example.test."]}}
    url = f"/admin/mailcore/domain/{domain.pk}/dns/"
    assert f'href="{url}"'.encode() in admin_client.get("/admin/mailcore/domain/").content
    page = admin_client.get(url)
    assert page.status_code == 200
    content = page.content.decode()
    assert "_submissions._tcp.example.test" in content and "Check now" in content
    assert "example.test. 3600 IN MX 10 mail.example.test." in content
    assert dns_server.queries == []  # nothing is looked up until "check now"
    checked = admin_client.post(url).content.decode()
    assert re.search(r'<tr class="dns-pass">\s*<td><code>example.test</code></td><td>MX</td>', checked)
    assert re.search(r'<tr class="dns-missing">\s*<td><code>_dmarc.example.test</code></td>', checked)


def test_dns_page_is_for_staff_only(client, domain):
    response = client.get(f"/admin/mailcore/domain/{domain.pk}/dns/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_mta_sts_policy_is_served_on_the_mta_sts_host_of_a_hosted_domain(client, domain, production_names):
    response = client.get("/.well-known/mta-sts.txt", HTTP_HOST="mta-sts.example.test")
    assert response.status_code == 200 and response["Content-Type"] == "text/plain"
    assert response.content == b"version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"
    assert client.get("/.well-known/mta-sts.txt", HTTP_HOST="mta-sts.other.test").status_code == 404
    assert client.get("/.well-known/mta-sts.txt", HTTP_HOST="example.test").status_code == 404


def test_mta_sts_id_changes_with_the_policy(domain, production_names):
    before = dnssetup.mta_sts_id("example.test")
    production_names.MAIL_MTA_STS_MODE = "enforce"
    assert dnssetup.mta_sts_id("example.test") != before
    assert "mode: enforce\r\n" in dnssetup.mta_sts_policy("example.test")
