"""One log format for every process; LOG_FORMAT=json gives one JSON object a line with the event's fields."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from mailcore import logs

ROOT = Path(__file__).resolve().parents[2]


def test_event_is_one_plain_line_with_quoted_values_and_no_control_characters(caplog):
    logger = logging.getLogger("tests.ops.logs")
    with caplog.at_level(logging.INFO, logger="tests.ops.logs"):
        logs.event(logger, "delivery.attempt", queue=7, sender="", recipient="bob@remote.test",
                   reply="550 5.1.1 no\r\nsuch user", recipients=["a@x.test", "b@x.test"])
    [record] = caplog.records
    assert record.getMessage() == (
        'delivery.attempt queue=7 sender="" recipient=bob@remote.test reply="550 5.1.1 no??such user" '
        "recipients=a@x.test,b@x.test"
    )


def test_json_formatter_puts_event_fields_into_the_object():
    record = logging.LogRecord("mailcore.delivery.worker", logging.INFO, __file__, 1, "%s", ("text",), None)
    record.event, record.queue, record.recipient = "delivery.attempt", 7, "bob@remote.test"
    document = json.loads(logs.JsonFormatter().format(record))
    assert {k: document[k] for k in ("level", "logger", "message", "event", "queue", "recipient")} == {
        "level": "INFO", "logger": "mailcore.delivery.worker", "message": "text",
        "event": "delivery.attempt", "queue": 7, "recipient": "bob@remote.test",
    }


def test_log_format_json_makes_every_line_of_a_management_command_json(tmp_path):
    env = {**os.environ, "LOG_FORMAT": "json", "MAIL_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    code = "import logging; logging.getLogger('mailcore.test').warning('hello %s', 'world')"
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
                            env=env, capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(d["level"], d["logger"], d["message"]) for d in lines] == [("WARNING", "mailcore.test", "hello world")]
