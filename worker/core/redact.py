"""Keep passwords out of everything we print or store.

What liteshift itself shows of a source URL is rebuilt from its parsed parts without the
password (worker/sources/url.py: SourceURL.redacted). `redact` is the net under that, for
text that may quote a URL some other way (a driver's message, a log line): it errs towards
hiding too much, since a password can hold any character a driver accepts.
"""

from __future__ import annotations

import re
import threading
from typing import Any
from urllib.parse import unquote

# user:password@ in any URL-like text. The password runs to the last @ before the path or
# the end of the line: a raw @, :, ?, # or tab in it is taken as the drivers take it.
_URL_PASSWORD = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:]*):(?P<pw>[^/\r\n]*)@")
# ?password=… or &pass%77ord=… (libpq decodes a parameter's name), to the next & or line end
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&#\s]+)=(?P<value>[^&\r\n]*)")
_SECRET_NAMES = frozenset({"password", "passwd", "pwd", "pass"})
_KEYWORD_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")

_known: set[str] = set()
_lock = threading.Lock()


def remember(secret: str | None) -> None:
    """Register a secret this process has seen, so it is scrubbed wherever it appears."""
    if secret and len(secret) >= 3:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", text)
    text = _QUERY_PARAM.sub(_query_param, text)
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    for secret in tuple(_known):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _query_param(match: re.Match[str]) -> str:
    if unquote(match.group("key")).strip().lower() in _SECRET_NAMES:
        return f"{match.group('lead')}{match.group('key')}=***"
    return match.group(0)


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(str(value))
    return value
