"""Accessibility of the webmail's screens, checked by axe-core (vendored, MPL-2.0) in headless Chromium.

The issue asks for labels, ARIA roles and visible focus so that a screen
reader can use the webmail. axe-core is the engine browsers' own audit tools
use; it runs inside each page (light and dark colour schemes, desktop and phone
widths) against WCAG 2.1 A and AA rules, and any violation fails the test with
the rule, the elements and axe's help text.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailcore import store
from tests.webmail.conftest import ALICE_PW, deliver, message
from tests.webmail.test_e2e_browser import CHROMIUM, browser, open_page, shot, sign_in  # noqa: F401 - a fixture

AXE = Path(__file__).resolve().parents[1] / "support" / "vendor" / "axe-core-4.14.1.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (make deps-debian)"),
]


def violations(page) -> list[str]:
    """axe-core's WCAG A/AA violations on the page as it is now, one readable line per rule."""
    page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP (no inline script) stays on
    found = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}})).violations"
        ".map(v => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map(n => n.target.join(' ')).join(', ')}`)",
        WCAG_TAGS,
    )
    return list(found)


def screens(base: str, folder_id: int, uid: int) -> dict[str, str]:
    return {
        "inbox": f"{base}/",
        "message": f"{base}/mail/{folder_id}/{uid}/",
        "compose": f"{base}/compose/",
        "search": f"{base}/search/?q=invoice",
        "folders": f"{base}/folders/",
        "settings": f"{base}/settings/",
    }


@pytest.mark.parametrize("scheme, width", [("light", 1280), ("dark", 1280), ("light", 360)])
def test_every_screen_passes_axe_wcag_aa(alice, live_server, browser, scheme, width):  # noqa: F811
    inbox = store.get_folder(alice.pk, store.INBOX)
    uid = deliver(message(subject="Invoice March", body="Please find the invoice attached."))
    deliver(message(subject="Team lunch", body="Friday?"))
    base = live_server.url
    page = open_page(browser, base, width=width)
    page.emulate_media(color_scheme=scheme)
    page.goto(f"{base}/login/")
    report = {"login": violations(page)}
    sign_in(page, base, "alice@example.test", ALICE_PW)
    for name, url in screens(base, inbox.mailbox_id, uid).items():
        page.goto(url)
        page.wait_for_load_state("networkidle")
        report[name] = violations(page)
        if report[name]:
            shot(page, f"axe-{name}-{scheme}-{width}")
    assert {name: found for name, found in report.items() if found} == {}
    # The check can fail: an image without a text alternative on the last screen is reported.
    page.evaluate("document.body.append(Object.assign(document.createElement('img'), {src: '/static/x.png'}))")
    assert [line.split(" ")[0] for line in violations(page)] == ["image-alt"]
