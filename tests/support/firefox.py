"""Headless Firefox ESR driven over WebDriver BiDi, for the webmail's Firefox test.

Playwright cannot drive stock Firefox and geckodriver is not packaged, but Firefox
speaks WebDriver BiDi itself (https://w3c.github.io/webdriver-bidi/) on
`--remote-debugging-port`. This module starts Debian's `firefox-esr` with a throwaway
profile whose prefs turn off updates, telemetry and network services and send every
non-loopback request to a dead proxy on 127.0.0.1 (so nothing leaves loopback), and
talks BiDi over a WebSocket (RFC 6455) with a small client of its own: commands,
their replies and the events between them, one at a time.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support import processes
from tests.support.net import free_port, wait_listening

FIREFOX = shutil.which("firefox-esr") or ""
DEAD_PROXY_PORT = 9  # discard: nothing listens there, so a remote request fails at once on loopback
TIMEOUT = 30.0
ARROW_DOWN, ENTER = "\ue015", "\ue007"  # WebDriver key codes (WebDriver §17.4.2, "keyboard actions")

# user.js of the throwaway profile: no updates, telemetry, Safe Browsing, captive-portal or
# connectivity checks, remote settings, prefetching or DNS over HTTPS; every http(s) request not for
# localhost or 127.0.0.1 goes to a proxy port on loopback where nothing listens.
PREFS: dict[str, bool | int | str] = {
    "app.update.auto": False, "app.update.enabled": False, "app.update.checkInstallTime": False,
    "browser.shell.checkDefaultBrowser": False, "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank", "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False, "browser.search.update": False,
    "browser.region.update.enabled": False, "browser.region.network.url": "",
    "browser.safebrowsing.malware.enabled": False, "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False, "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False, "browser.safebrowsing.update.enabled": False,
    "browser.ping-centre.telemetry": False, "browser.discovery.enabled": False,
    "datareporting.healthreport.uploadEnabled": False, "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False, "toolkit.telemetry.unified": False, "toolkit.telemetry.server": "",
    "toolkit.telemetry.archive.enabled": False, "app.normandy.enabled": False, "app.shield.optoutstudies.enabled": False,
    "network.captive-portal-service.enabled": False, "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True, "network.prefetch-next": False, "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0, "network.trr.mode": 5,
    "extensions.update.enabled": False, "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False, "services.settings.server": f"http://127.0.0.1:{DEAD_PROXY_PORT}/",
    "media.gmp-manager.updateEnabled": False, "geo.enabled": False, "identity.fxaccounts.enabled": False,
    "network.proxy.type": 1, "network.proxy.http": "127.0.0.1", "network.proxy.http_port": DEAD_PROXY_PORT,
    "network.proxy.ssl": "127.0.0.1", "network.proxy.ssl_port": DEAD_PROXY_PORT,
    "network.proxy.share_proxy_settings": False, "network.proxy.no_proxies_on": "localhost, 127.0.0.1",
    "network.proxy.allow_hijacking_localhost": False,
}


class BiDiError(RuntimeError):
    """An error reply to a BiDi command, or a script that threw."""


class WebSocket:
    """The client side of RFC 6455, text frames only: enough for one BiDi session."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        # RFC 6455 §4.1: the opening handshake; no Origin header (Firefox refuses foreign origins).
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BiDiError("the WebSocket handshake was cut off")
            head += chunk
        status, _sep, self.buffer = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise BiDiError(f"WebSocket handshake refused: {status.splitlines()[0]!r}")

    def send(self, text: str) -> None:
        """RFC 6455 §5.2: a FIN text frame (opcode 1), masked as every client frame must be (§5.3)."""
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BiDiError("Firefox closed the WebSocket")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self) -> str:
        """The next text message, joining fragments (§5.4) and answering pings (§5.5.2)."""
        parts: list[bytes] = []
        while True:
            first, second = self._read(2)
            opcode, size = first & 0x0F, second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(size)  # server frames are not masked (§5.1)
            if opcode == 0x8:
                raise BiDiError("Firefox closed the WebSocket")
            if opcode == 0x9:
                self._pong(payload)
                continue
            if opcode in (0x1, 0x0, 0x2):
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts).decode()

    def _pong(self, payload: bytes) -> None:
        mask = os.urandom(4)
        self.sock.sendall(struct.pack("!BB", 0x8A, 0x80 | len(payload)) + mask
                          + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self) -> None:
        self.sock.close()


def _value(remote: dict[str, Any]) -> Any:
    """A BiDi RemoteValue (script.evaluate's result) as a Python value: primitives, arrays, plain objects."""
    kind = remote.get("type")
    if kind in ("undefined", "null"):
        return None
    if kind == "array":
        return [_value(v) for v in remote.get("value", [])]
    if kind == "object":
        return {k if isinstance(k, str) else _value(k): _value(v) for k, v in remote.get("value", [])}
    return remote.get("value")


class Firefox:
    """One BiDi session with one tab; `events` keeps every event received (network.beforeRequestSent)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.context = ""

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.receive())
            if reply.get("type") == "event":
                self.events.append(reply)
            elif reply.get("id") == self.next_id:
                if reply.get("type") == "error":
                    raise BiDiError(f"{method}: {reply.get('error')}: {reply.get('message')}")
                return dict(reply["result"])

    def start_session(self) -> None:
        self.command("session.new", capabilities={})
        self.command("session.subscribe", events=["network.beforeRequestSent"])
        self.context = self.command("browsingContext.getTree")["contexts"][0]["context"]

    def navigate(self, url: str) -> None:
        self.command("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def evaluate(self, expression: str, context: str = "") -> Any:
        result = self.command("script.evaluate", expression=expression, awaitPromise=True,
                              target={"context": context or self.context})
        if result.get("type") == "exception":
            raise BiDiError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return _value(result["result"])

    def wait_for(self, expression: str, timeout: float = TIMEOUT, context: str = "") -> Any:
        """Evaluate until the value is truthy (a page loading after a click throws meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression, context)
                if value:
                    return value
            except BiDiError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise BiDiError(f"still false after {timeout:.0f} s: {expression}")
            time.sleep(0.1)

    def fill(self, selector: str, text: str) -> None:
        """Set a field's value and fire `input`, as typing would."""
        self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.value = {json.dumps(text)};"
                      " e.dispatchEvent(new Event('input', {bubbles: true})); return true; })()")

    def type_keys(self, selector: str, keys: str) -> None:
        """Focus a field and press each key for real (input.performActions): `keys` may hold WebDriver
        key codes such as ARROW_DOWN and ENTER."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        presses = [{"type": kind, "value": key} for key in keys for kind in ("keyDown", "keyUp")]
        self.command("input.performActions", context=self.context,
                     actions=[{"type": "key", "id": "keyboard", "actions": presses}])

    def click(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def frames(self) -> list[str]:
        """Browsing contexts of the iframes in the tab (BiDi sees into sandboxed frames)."""
        tree = self.command("browsingContext.getTree", root=self.context)["contexts"][0]
        return [child["context"] for child in tree.get("children") or []]

    def requested_urls(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "network.beforeRequestSent"]

    def screenshot(self, path: Path) -> None:
        data = self.command("browsingContext.captureScreenshot", context=self.context, origin="document")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


def write_profile(directory: Path) -> None:
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(value)});" for name, value in PREFS.items()]
    (directory / "user.js").write_text("\n".join(lines) + "\n")


@contextmanager
def firefox() -> Iterator[Firefox]:
    """Headless Firefox ESR with a fresh profile and a BiDi session; quits and removes the profile after."""
    with tempfile.TemporaryDirectory(prefix="firefox-profile-") as profile:
        write_profile(Path(profile))
        port = free_port()
        command = [FIREFOX, "--headless", "--no-remote", "--remote-debugging-port", str(port),
                   "--profile", profile, "about:blank"]
        env = {**os.environ, "HOME": profile, "MOZ_CRASHREPORTER_DISABLE": "1"}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_listening(port, process, timeout=60)
            browser = Firefox(WebSocket("127.0.0.1", port, "/session"))
            try:
                browser.start_session()
                yield browser
            finally:
                _end(browser)
        finally:
            processes.stop(process)


def _end(browser: Firefox) -> None:
    with suppress(BiDiError, OSError):  # Firefox is stopped next anyway
        browser.command("session.end")
    browser.ws.close()
