"""`.env.example` and README's configuration table list every variable config/settings.py reads."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# env("NAME", ...), env.int("NAME", ...), env.list(...), env.db(...): the ways settings.py reads a variable.
ENV_READ = re.compile(r"""\benv(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def settings_variables() -> set[str]:
    return set(ENV_READ.findall((ROOT / "config" / "settings.py").read_text()))


def example_lines() -> dict[str, str]:
    """NAME -> the line that sets or shows it (`NAME=value` or `#NAME=default`)."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.match(r"#?([A-Z][A-Z0-9_]*)=", line)
        if match:
            found[match.group(1)] = line
    return found


def readme_configuration_table() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Configuration")
    return readme[start : readme.index("\n## ", start + 1)]


def test_settings_reads_a_known_number_of_variables():
    # Guards the regular expression itself: if it stopped matching, the tests below would pass vacuously.
    names = settings_variables()
    assert {"DATABASE_URL", "MAIL_HOSTNAME", "MAIL_DNS_NAMESERVERS", "SECRET_KEY"} <= names
    assert len(names) >= 50


def test_every_setting_is_in_env_example_with_a_comment_above_it():
    lines = (ROOT / ".env.example").read_text().splitlines()
    shown = example_lines()
    missing = sorted(settings_variables() - set(shown))
    assert missing == []
    for name, line in shown.items():
        above = lines[lines.index(line) - 1]
        assert above.startswith("# ") and not re.match(r"#?[A-Z_]+=", above[2:]), name


def test_every_setting_is_in_the_readme_configuration_table():
    table = readme_configuration_table()
    missing = sorted(name for name in settings_variables() if f"`{name}`" not in table)
    assert missing == []


def test_env_example_as_it_stands_passes_check_deploy(tmp_path):
    """Its active lines are valid values; with a real SECRET_KEY it is a clean production configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAIL_", "DATABASE_URL", "REDIS_URL"))}
    for line in example_lines().values():
        if not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update(MAIL_VAR_DIR=str(tmp_path), SECRET_KEY="k" * 10 + "a-real-secret-from-the-operator-0123456789abcdef")
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check", "--deploy", "--fail-level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
