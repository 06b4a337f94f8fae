"""A throwaway Dovecot for interop tests and benchmark baselines.

Its own directory, config and loopback port; no system service is touched. It
is started as root (as tests and benchmarks run here) and serves mail as nobody.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support import processes
from tests.support.net import NotListening, free_port, wait_listening

NOBODY = 65534  # Dovecot will not serve mail as root
START_SECONDS = 30
CONFIG = """
protocols = {protocol}
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{d}/mail/%u
first_valid_uid = {uid}
default_process_limit = 1200
default_client_limit = 2400
default_vsz_limit = 512M
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={d}/mail/%u
}}
service {protocol}-login {{
  inet_listener {protocol} {{
    port = {port}
  }}
  inet_listener {protocol}s {{
    port = 0
  }}
}}
service {protocol} {{
  process_limit = 1200
}}
service anvil {{
  chroot =
  client_limit = 2500
}}
protocol {protocol} {{
  mail_max_userip_connections = 2000
}}
"""


class DovecotError(RuntimeError):
    """Dovecot is missing, cannot run here, or did not start (the message has its log's tail)."""


def binary() -> str:
    return shutil.which("dovecot") or "/usr/sbin/dovecot"


def missing(protocol: str) -> str | None:
    """Why a Dovecot for `protocol` cannot run here, or None when it can."""
    if not Path(binary()).exists() or not Path(f"/usr/lib/dovecot/{protocol}").exists():
        return f"dovecot-{protocol}d is not installed (make deps-debian installs it; debian-packages.txt)"
    if os.geteuid() != 0:
        return "Dovecot is started as root (it then serves mail as nobody)"
    return None


class Dovecot:
    """`protocol` is imap or pop3; `users` maps login to password. Fill `maildir(user)`, then `start()`."""

    def __init__(self, protocol: str, users: dict[str, str]) -> None:
        reason = missing(protocol)
        if reason:
            raise DovecotError(reason)
        self.protocol = protocol
        self.directory = Path(tempfile.mkdtemp(prefix=f"dovecot-{protocol}-"))
        self.directory.chmod(0o755)  # nobody must reach the mail directory
        for sub in ("run", "state", "mail"):
            (self.directory / sub).mkdir()
        (self.directory / "passwd").write_text("".join(f"{user}:{password}\n" for user, password in users.items()))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def maildir(self, user: str) -> Path:
        """The user's Maildir (cur/, new/, tmp/ made) for filling before `start()`."""
        path = self.directory / "mail" / user
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        return path

    def start(self) -> Dovecot:
        for path in [self.directory / "mail", *(self.directory / "mail").rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        config = self.directory / "dovecot.conf"
        config.write_text(CONFIG.format(d=self.directory, uid=NOBODY, port=self.port, protocol=self.protocol))
        self.process = subprocess.Popen([binary(), "-F", "-c", str(config)], stderr=subprocess.DEVNULL)
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        try:
            wait_listening(self.port, self.process, START_SECONDS)
        except NotListening as err:
            tail = self.log_tail()
            self.stop()
            raise DovecotError(f"dovecot: {err}: {tail}") from err

    def log_tail(self) -> str:
        log = self.directory / "dovecot.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        if self.process is not None:
            processes.stop(self.process, timeout=10)
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
