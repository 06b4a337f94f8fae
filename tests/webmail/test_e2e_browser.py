"""End to end in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a live server.

Mail arrives over a real SMTP connection to the MX listener on 127.0.0.1; the
browser signs in, reads it with images blocked, sends to a local user, replies,
searches, moves and undoes, in English and in Vietnamese. Screenshots of the
main screens go to artifacts/screenshots/ (kept by CI for inspection).
"""
from __future__ import annotations

import shutil
import smtplib
from pathlib import Path

import pytest
from django.db import connections

from mailcore import mime, store
from tests.smtp.conftest import servers, smtp_settings, tls_files  # noqa: F401 - fixtures
from tests.support.dnsserver import dns_server  # noqa: F401 - a fixture smtp_settings uses
from tests.webmail.conftest import ALICE_PW, BOB_PW

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (make deps-debian)"),
]

HTML_MAIL = (
    "From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: Newsletter with pictures\r\n"
    "Message-ID: <news-1@remote.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<h1>Spring news</h1><p>Look at this:</p><img src=\"https://tracker.test/pixel.gif\" alt=\"pixel\">\r\n"
)


@pytest.fixture
def browser(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still plain sync.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        # The test's ORM calls ran in Playwright's greenlet, whose context has database connections of its
        # own: closed here, or one stayed open to the end and PostgreSQL refused to drop the test database.
        connections.close_all()


def open_page(browser, base: str, locale: str = "en-US", width: int = 1280):
    context = browser.new_context(locale=locale, viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    # Nothing may leave loopback: any other request is aborted (and counted).
    blocked: list[str] = []

    def guard(route):
        url = route.request.url
        if url.startswith(base):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.blocked = blocked
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "CSP" in m.text else None)
    page.csp_errors = errors
    return page


def sign_in(page, base: str, address: str, password: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#address", address)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("table.messages")


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_read_send_reply_search_move_undo_in_chromium(alice, bob, live_server, servers, browser):  # noqa: F811
    mx_port = servers.start("mx")
    with smtplib.SMTP("127.0.0.1", mx_port, timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], HTML_MAIL.encode())
    base = live_server.url
    page = open_page(browser, base)
    sign_in(page, base, "alice@example.test", ALICE_PW)
    assert page.title() == "(1) INBOX"
    shot(page, "01-inbox")

    page.click("text=Newsletter with pictures")
    page.wait_for_selector("iframe.body-frame")
    frame = page.frame_locator("iframe.body-frame")
    assert frame.locator("h1").inner_text() == "Spring news"
    assert frame.locator("img[src]").count() == 0  # the remote image lost its source
    assert page.locator("text=Remote images are blocked").is_visible()
    shot(page, "02-message-images-blocked")
    page.click("#show-images")
    page.wait_for_selector("iframe.body-frame")
    assert page.frame_locator("iframe.body-frame").locator("img[src^='https://tracker.test']").count() == 1
    assert any("tracker.test" in url for url in page.blocked)  # the browser tried; our route guard stopped it

    page.click("#compose-link")
    page.fill("#to", "bob@example.test")
    page.fill("#subject", "Lunch on Friday")
    page.fill("#text", "Pizza at noon?")
    page.set_input_files("#attachments", files=[{"name": "menu.txt", "mimeType": "text/plain",
                                                 "buffer": b"margherita"}])
    shot(page, "03-compose")
    page.click("#send")
    page.wait_for_selector("text=Message sent.")
    sent = store.fetch(store.folder_by_special_use(alice.pk, "\\Sent"))
    assert [m.subject for m in sent] == ["Lunch on Friday"]

    bob_page = open_page(browser, base)
    sign_in(bob_page, base, "bob@example.test", BOB_PW)
    bob_page.click("text=Lunch on Friday")
    assert bob_page.locator("text=menu.txt").is_visible()
    bob_page.click("#reply")
    assert bob_page.input_value("#subject") == "Re: Lunch on Friday"
    assert "> Pizza at noon?" in bob_page.input_value("#text")
    bob_page.click("#send")
    bob_page.wait_for_selector("text=Message sent.")

    page.goto(f"{base}/")
    page.fill("#q", "from:bob pizza")
    page.press("#q", "Enter")
    page.wait_for_selector("text=Re: Lunch on Friday")
    shot(page, "04-search")

    page.goto(f"{base}/")
    row = page.locator("tr", has_text="Newsletter with pictures")
    row.locator("input[type=checkbox]").check()
    page.click("#actions button[value=delete]")
    page.wait_for_selector("#undo")
    assert page.locator("tr", has_text="Newsletter with pictures").count() == 0
    page.click("#undo")
    page.wait_for_selector("text=Newsletter with pictures")
    assert page.csp_errors == []


def test_vietnamese_interface_and_phone_layout(alice, live_server, browser):
    base = live_server.url
    page = open_page(browser, base, locale="vi-VN", width=360)
    page.set_extra_http_headers({"Accept-Language": "vi"})
    page.goto(f"{base}/login/")
    assert page.locator("h1").inner_text() == "Đăng nhập hộp thư"
    sign_in(page, base, "alice@example.test", ALICE_PW)
    assert page.locator("a#compose-link").inner_text() == "Soạn thư"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360  # nothing sticks out sideways on a 360 px phone
    shot(page, "05-inbox-vi-phone")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    shot(page, "06-shortcuts-help-vi")


@pytest.fixture
def outbox_job():
    """What runmail's outbox job does (webmail.outbox.release_due), in a thread for the live server's run."""
    import threading

    from django.db import connections

    from webmail import outbox

    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.wait(0.2):
                outbox.release_due()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def test_new_mail_undo_send_autosave_and_drop_in_chromium(alice, bob, live_server, browser, settings, outbox_job):
    settings.MAIL_WEBMAIL_UNDO_SEND_SECONDS = 2
    settings.MAIL_WEBMAIL_POLL_SECONDS = 1
    base = live_server.url
    page = open_page(browser, base)
    sign_in(page, base, "alice@example.test", ALICE_PW)
    bob_inbox = store.get_folder(bob.pk, store.INBOX)

    # New mail shows up in the open list without a reload.
    page.evaluate("window.notReloaded = true")
    store.deliver(HTML_MAIL.replace("Newsletter with pictures", "Arrived while open").encode(), ["alice@example.test"])
    page.wait_for_selector("table.messages >> text=Arrived while open")
    assert page.evaluate("window.notReloaded === true") and page.title() == "(1) INBOX"

    page.click("#compose-link")
    page.fill("#to", "bob@example.test")
    page.fill("#subject", "Second thoughts")
    page.fill("#text", "Maybe not.")
    page.wait_for_selector("#autosave-status:has-text('Draft saved.')")  # autosave, every 5 s while changed
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    assert [m.subject for m in store.fetch(drafts)] == ["Second thoughts"]
    dropped = page.evaluate_handle(
        "() => { const d = new DataTransfer();"
        " d.items.add(new File(['dropped bytes'], 'dropped.txt', {type: 'text/plain'})); return d; }")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert page.locator("#attachment-list", has_text="dropped.txt").is_visible()
    page.click("#send")  # with a file: sent by XHR with the progress bar
    page.wait_for_selector("#undo-send-button")
    assert page.evaluate("document.getElementById('upload-progress') === null")
    shot(page, "05-undo-send")
    page.click("#undo-send-button")
    page.wait_for_selector("#compose-form")
    assert page.input_value("#to") == "bob@example.test" and page.input_value("#subject") == "Second thoughts"
    assert store.uids(bob_inbox) == []

    page.fill("#text", "Yes, after all.")
    page.check("#rich-toggle")  # the vendored rich-text editor, HTML sanitised on the server
    page.click("#rich-editor")
    page.keyboard.press("Control+End")
    page.click("#rich-toolbar button[data-command=bold]")
    page.keyboard.type(" Really.")
    shot(page, "06-rich-text")
    page.click("#send")
    page.wait_for_selector("#undo-send-button")
    page.wait_for_selector("#sent-done", timeout=TIMEOUT_MS)  # the page checks back when the window has passed
    got = store.fetch(bob_inbox)
    assert [m.subject for m in got] == ["Second thoughts"]
    assert [a.filename for a in mime.attachments(got[0].bodystructure)] == ["dropped.txt"]
    raw = store.read_message(bob_inbox, got[0].uid)
    html_path, _text = mime.display_parts(got[0].bodystructure)
    html = mime.part_text(raw, mime.part_at(got[0].bodystructure, html_path))
    assert "Yes, after all." in html and ("<b>" in html or "<strong>" in html) and "Really." in html
    assert "Really." in mime.extract_text(raw, got[0].bodystructure)
    assert store.uids(drafts) == []  # the reopened draft went with the message
    assert page.csp_errors == []


def test_address_autocomplete_per_address_and_rich_draft_reopened_in_chromium(alice, bob, live_server, browser):
    for name, address in (("Carol", "carol@remote.test"), ("Erin", "erin@remote.test")):
        store.deliver(HTML_MAIL.replace("Carol <carol@remote.test>", f"{name} <{address}>")
                      .replace("news-1", f"news-{name}").encode(), ["alice@example.test"])
    base = live_server.url
    page = open_page(browser, base)
    sign_in(page, base, "alice@example.test", ALICE_PW)
    page.click("#compose-link")
    page.wait_for_selector("#to[role=combobox]")  # compose.js has set the fields up (it runs after parsing)

    # To: the suggestion completes the address after the last comma and keeps the one before it.
    page.locator("#to").press_sequentially("bob@example.test, car")
    page.wait_for_selector("#to-suggestions [role=option]")
    assert page.locator("#to-suggestions [role=option]").all_inner_texts() == ["Carol <carol@remote.test>"]
    assert page.get_attribute("#to", "aria-expanded") == "true"
    shot(page, "07-address-suggestions")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")  # chooses the suggestion; does not send
    assert page.input_value("#to") == "bob@example.test, Carol <carol@remote.test>, "
    assert page.locator("#to-suggestions").is_hidden()
    # Cc: a click on a suggestion, the same way.
    page.locator("#cc").press_sequentially("ERIN")
    page.click("#cc-suggestions >> text=Erin <erin@remote.test>")
    assert page.input_value("#cc") == "Erin <erin@remote.test>, "

    # A rich-text draft reopens in the editor with its formatting, and is sent as text plus HTML.
    page.fill("#subject", "Formatted plans")
    assert page.locator("#rich-toolbar").is_hidden()  # plain text until rich text is chosen
    page.check("#rich-toggle")
    page.click("#rich-editor")
    page.click("#rich-toolbar button[data-command=bold]")
    page.keyboard.type("Bold plans")
    page.click("#save-draft")
    page.wait_for_selector("text=Draft saved.")
    drafts = store.folder_by_special_use(alice.pk, "\\Drafts")
    [draft] = store.fetch(drafts)
    page.goto(f"{base}/compose/?draft={draft.uid}")
    page.wait_for_selector("#rich-editor:not([hidden]) b")
    assert page.is_checked("#rich-toggle") and page.locator("#text").is_hidden()
    assert page.locator("#rich-editor b").inner_text() == "Bold plans"
    # Drafts keep the addresses and the display names (the suggestion put in "Carol <carol@...>").
    assert page.input_value("#to") == "bob@example.test, Carol <carol@remote.test>"
    shot(page, "08-rich-draft-reopened")
    page.click("#send")
    page.wait_for_selector("text=Message sent.")
    bob_inbox = store.get_folder(bob.pk, store.INBOX)
    [got] = store.fetch(bob_inbox)
    raw = store.read_message(bob_inbox, got.uid)
    assert b"multipart/alternative" in raw and b"carol@remote.test" in raw and b"erin@remote.test" in raw
    html_path, _text = mime.display_parts(got.bodystructure)
    html = mime.part_text(raw, mime.part_at(got.bodystructure, html_path))
    assert "<b>Bold plans</b>" in html or "<strong>Bold plans</strong>" in html
    assert "Bold plans" in mime.extract_text(raw, got.bodystructure)
    assert store.uids(drafts) == [] and page.csp_errors == []
