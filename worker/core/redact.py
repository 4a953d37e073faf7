"""Keep passwords out of everything we print or store."""

from __future__ import annotations

import re
import threading
from typing import Any

# user:password@ in any URL-like text
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<pw>[^@\s/]*)@")
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
    text = _KEYWORD_PASSWORD.sub(r"\1***", text)
    for secret in tuple(_known):
        if secret in text:
            text = text.replace(secret, "***")
    return text


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
