"""The search box's language: free words and operators, as Gmail users know them.

`from:`, `to:`, `subject:` (words in that field), `has:attachment`, `is:unread`,
`is:flagged`, `before:`/`after:` (YYYY-MM-DD or YYYY/MM/DD), `in:folder`;
"quoted words" stay together; anything else is searched in every field.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from mailcore.store import SearchQuery

MAX_QUERY_CHARS = 500
_TOKEN = re.compile(r'(\w+):("[^"]*"|\S+)|"([^"]*)"|(\S+)', re.UNICODE)
_FIELDS = {"from": "sender", "to": "recipients", "subject": "subject", "body": "body"}


@dataclass
class ParsedSearch:
    query: SearchQuery
    folder: str | None = None  # in:NAME
    errors: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        q = self.query
        return not (q.terms or q.has_attachment or q.unread or q.flagged or q.before or q.after or self.folder)


def parse_search(text: str) -> ParsedSearch:
    result = ParsedSearch(SearchQuery())
    errors: list[str] = []
    for match in _TOKEN.finditer(text[:MAX_QUERY_CHARS]):
        operator, value, quoted, word = match.groups()
        if operator is None:
            result.query.terms.append(("", quoted if quoted is not None else word))
            continue
        if not _apply_operator(result, operator.lower(), value.strip('"')):
            errors.append(match.group(0))
    result.errors = tuple(errors)
    return result


def _apply_operator(result: ParsedSearch, operator: str, value: str) -> bool:
    query = result.query
    if operator in _FIELDS:
        query.terms.append((_FIELDS[operator], value))
    elif operator == "has" and value.lower() in ("attachment", "attachments"):
        query.has_attachment = True
    elif operator == "is" and value.lower() in ("unread", "flagged", "starred"):
        query.unread = query.unread or value.lower() == "unread"
        query.flagged = query.flagged or value.lower() != "unread"
    elif operator in ("before", "after"):
        day = _date(value)
        if day is None:
            return False
        setattr(query, operator, day)
    elif operator == "in":
        result.folder = value
    else:
        query.terms.append(("", f"{operator} {value}"))
    return True


def _date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value.replace("/", "-"))
    except ValueError:
        return None
