"""End to end in headless Firefox ESR (Debian's firefox-esr), driven over WebDriver BiDi, against a live server.

The issue asks for a webmail that works in current Chromium and Firefox: this is the
Firefox half of tests/webmail/test_e2e_browser.py's main scenario. Mail arrives over
SMTP; Firefox signs in, opens it (sandboxed frame, remote image blocked), sends to a
local user (the address completed from a suggestion with real key presses), who sees it arrive. Screenshots go to artifacts/screenshots/firefox/.
Firefox's profile sends every non-loopback request to a dead proxy on 127.0.0.1
(tests/support/firefox.py), and every request the page made is checked.
"""
from __future__ import annotations

import json
import smtplib
from urllib.parse import urlsplit

import pytest

from mailcore import store
from tests.smtp.conftest import servers, smtp_settings, tls_files  # noqa: F401 - fixtures
from tests.support.dnsserver import dns_server  # noqa: F401 - a fixture smtp_settings uses
from tests.support.firefox import ARROW_DOWN, ENTER, FIREFOX, firefox
from tests.webmail.conftest import ALICE_PW, BOB_PW
from tests.webmail.test_e2e_browser import HTML_MAIL, SCREENSHOTS

FIREFOX_SHOTS = SCREENSHOTS / "firefox"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not FIREFOX, reason="Debian's firefox-esr is not installed (make deps-debian)"),
]


def sign_in(ff, base: str, address: str, password: str) -> None:
    ff.navigate(f"{base}/login/")
    ff.fill("#address", address)
    ff.fill("#password", password)
    ff.click("button[type=submit]")
    ff.wait_for("document.querySelector('table.messages') !== null")


def click_link(ff, text: str) -> None:
    ff.evaluate(f"[...document.querySelectorAll('a')].find(a => a.textContent.includes({json.dumps(text)})).click()")


def page_text(ff) -> str:
    return str(ff.evaluate("document.body.innerText"))


def body_frame(ff) -> str:
    """The browsing context of the message's body frame, once its document has loaded."""
    def loaded() -> str:
        for context in ff.frames():
            if ff.evaluate("document.readyState === 'complete' && location.pathname.endsWith('/body/')", context):
                return context
        return ""

    ff.wait_for("document.querySelector('iframe.body-frame') !== null")
    for _ in range(300):
        found = loaded()
        if found:
            return found
        ff.evaluate("new Promise(r => setTimeout(r, 100))")
    raise AssertionError("the body frame never loaded")


def test_read_and_send_in_firefox(alice, bob, live_server, servers):  # noqa: F811
    mx_port = servers.start("mx")
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], HTML_MAIL.encode())
    base = live_server.url
    with firefox() as ff:
        sign_in(ff, base, "alice@example.test", ALICE_PW)
        assert ff.evaluate("document.title") == "(1) INBOX"
        ff.screenshot(FIREFOX_SHOTS / "01-inbox.png")

        click_link(ff, "Newsletter with pictures")
        frame = body_frame(ff)
        # sandbox without allow-scripts and allow-same-origin: the frame's origin is opaque ("null").
        sandbox = ff.evaluate("document.querySelector('iframe.body-frame').getAttribute('sandbox')")
        assert sandbox == "allow-popups allow-popups-to-escape-sandbox"
        assert ff.evaluate("self.origin", frame) == "null"
        assert ff.evaluate("document.querySelector('h1').textContent", frame) == "Spring news"
        assert ff.evaluate("document.querySelectorAll('img[src]').length", frame) == 0  # the remote source is gone
        assert "Remote images are blocked" in page_text(ff)
        ff.screenshot(FIREFOX_SHOTS / "02-message-images-blocked.png")
        assert not any("tracker.test" in url for url in ff.requested_urls())

        ff.click("#show-images")
        ff.wait_for("!document.querySelector('#show-images')")
        frame = body_frame(ff)
        assert ff.evaluate("document.querySelectorAll(\"img[src^='https://tracker.test']\").length", frame) == 1

        ff.navigate(f"{base}/compose/")
        # Address suggestions with real key presses: the one being typed is completed, bob is kept.
        ff.type_keys("#to", "bob@example.test, car")
        ff.wait_for("document.querySelector('#to-suggestions [role=option]') !== null")
        assert ff.evaluate("[...document.querySelectorAll('#to-suggestions [role=option]')].map(o => o.textContent)") \
            == ["Carol <carol@remote.test>"]
        ff.screenshot(FIREFOX_SHOTS / "03-address-suggestions.png")
        ff.type_keys("#to", ARROW_DOWN + ENTER)
        assert ff.evaluate("document.querySelector('#to').value") == "bob@example.test, Carol <carol@remote.test>, "
        assert ff.evaluate("location.pathname") == "/compose/"  # Enter chose the address, it did not send
        ff.fill("#subject", "Hello from Firefox")
        ff.fill("#text", "Sent by Firefox ESR.")
        ff.screenshot(FIREFOX_SHOTS / "04-compose.png")
        ff.click("#send")
        ff.wait_for("document.body.innerText.includes('Message sent.')")
        bob_inbox = store.get_folder(bob.pk, store.INBOX)
        assert [m.subject for m in store.fetch(bob_inbox)] == ["Hello from Firefox"]

        ff.click("form[action='/logout/'] button")
        ff.wait_for("location.pathname.startsWith('/login/')")
        sign_in(ff, base, "bob@example.test", BOB_PW)
        click_link(ff, "Hello from Firefox")
        ff.wait_for("document.readyState === 'complete' && document.querySelector('pre.body-text') !== null")
        assert ff.evaluate("document.querySelector('pre.body-text').textContent").strip() == "Sent by Firefox ESR."
        ff.screenshot(FIREFOX_SHOTS / "05-arrived.png")

        # Every request stayed on the live server, but the remote image the user allowed (which the
        # profile's dead loopback proxy refused).
        hosts = {urlsplit(url).netloc for url in ff.requested_urls() if not url.startswith(base)}
        assert hosts <= {"tracker.test"}, hosts
