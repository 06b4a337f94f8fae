"""One log format for every process (web, runmail, Celery): plain lines, or JSON lines with LOG_FORMAT=json.

`event(logger, name, **fields)` writes one line for one thing that happened (an
SMTP transaction, a delivery attempt): `name key=value ...` in plain text, and the
same fields as JSON keys with LOG_FORMAT=json. Field values are client or peer
text: control characters are replaced so one event stays one line.
"""
from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

MAX_FIELD_CHARS = 1000
# Attributes every LogRecord has; anything else on a record came from `extra=` and goes into the JSON.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if value.isprintable():  # the usual case, checked in C
            return value[:MAX_FIELD_CHARS]
        return "".join(c if c.isprintable() else "?" for c in value)[:MAX_FIELD_CHARS]
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _plain_value(value: Any) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' "=')) else text


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `name k=v k=v` (values quoted when they hold spaces); JSON gets the fields as keys."""
    cleaned = {key: _clean(value) for key, value in fields.items()}
    text = " ".join([name, *(f"{key}={_plain_value(value)}" for key, value in cleaned.items())])
    logger.log(level, "%s", text, extra={"event": name, **cleaned})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, process, message, event fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in document:
                document[key] = value
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)
