"""Logging set up once, for every line a process writes: liteshift's events and the lines of
Celery, kombu, uvicorn and warnings alike.

structlog's stdlib integration: liteshift's events and foreign `logging` records both end in
one handler on the root logger whose ProcessorFormatter renders them the same way, so with
LITESHIFT_LOG_FORMAT=json every line is one JSON object a log shipper can parse, and on a
terminal every line is aligned and coloured. Secrets are scrubbed from both.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.core.redact import redact_value

_configured = False


def _scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if not key.startswith("_"):  # _record, _from_structlog: the formatter's own
            event[key] = redact_value(value)
    return event


def json_lines(log_format: str) -> bool:
    """Whether `log_format` (LITESHIFT_LOG_FORMAT) means JSON lines here."""
    return log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())


def configure_logging(log_format: str = "auto", level: int = logging.INFO) -> None:
    """Route structlog and the standard library's logging into one handler on stderr."""
    global _configured
    if _configured:
        return
    _configured = True
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json_lines(log_format)
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer])
    # StreamHandler writes a line and its newline in one call, under a lock: lines from
    # Celery's threads never land inside another line.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu"):
        logging.getLogger(name).handlers.clear()  # theirs would print a second, plain line
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)  # warnings.warn(...) is a log line too, not a bare print
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def get_logger(**context: Any) -> Any:
    return structlog.get_logger("liteshift").bind(**context)
