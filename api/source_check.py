"""Check a source's credentials, database and schema in a child process.

The API process loads no database driver, so `python -m worker.sources.probe` does the
connecting.
The URL goes to the child's stdin, never argv (argv is visible to anyone running `ps`); the
child (which connects with `timeout_s`, LITESHIFT_CONNECT_TIMEOUT_S) answers with one JSON
object on stdout:

    {"ok": true, "tables": ["a", "b"]}
    {"ok": false, "error": "message", "kind": "SourceRejected"}
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from worker.core import errors
from worker.core.config import Settings
from worker.core.errors import LiteshiftError, SourceError, SourceUnavailable
from worker.core.logs import get_logger
from worker.core.redact import redact
from worker.sources.ambient import without_driver_env
from worker.sources.standby import Standby, stop
from worker.sources.url import url_passwords

Probe = Callable[[Settings, str, str], Awaitable[list[str]]]

DEFAULT_COMMAND = (sys.executable, "-m", "worker.sources.probe")
MAX_LOGGED_LINES = 20  # of a probe's stderr, into the API's log
log = get_logger(component="source_probe")


_standby = Standby(lambda: _spawn(DEFAULT_COMMAND))
atexit.register(lambda: _standby.stop())


def keep_one_ready() -> None:
    """Start the default probe ahead of need (worker/sources/standby.py): it imports the drivers
    while it waits (most of a probe's time), and the next submission waits only for the
    connection."""
    _standby.keep()


def _spawn(command: Sequence[str]) -> subprocess.Popen[bytes]:
    # Without the drivers' variables (PGPASSWORD, PGSERVICEFILE, MYSQL_PWD, ...): the
    # service's own credentials are not for the servers submitters name.
    return subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=without_driver_env(os.environ))


async def run_probe(settings: Settings, url: str, schema: str,
                    command: Sequence[str] | None = None) -> list[str]:
    """Return the tables of `schema` in the source, or raise the LiteshiftError it hit."""
    if command is None:
        proc = _standby.take() or _spawn(DEFAULT_COMMAND)
        keep_one_ready()  # for the next submission
    else:
        proc = _spawn(command)
    request = json.dumps({"source": url, "schema": schema, "allow": settings.source_allow,
                          "timeout_s": settings.connect_timeout_s}).encode()
    try:
        stdout, stderr = await asyncio.to_thread(proc.communicate, request,
                                                 settings.probe_timeout_s)
    except subprocess.TimeoutExpired:
        await asyncio.to_thread(stop, proc)
        raise SourceUnavailable(
            f"source did not answer within {settings.probe_timeout_s:g} s: is the database "
            "overloaded, or is a firewall dropping packets?") from None
    _log_details(stderr, url)
    answer = _parse_answer(stdout)
    if answer is None:
        raise SourceError(scrub(_crash_message(proc.returncode, stderr), url))
    if not answer.get("ok"):
        raise _error_class(answer.get("kind"))(scrub(str(answer.get("error")), url))
    return [str(name) for name in answer.get("tables") or []]


def _parse_answer(stdout: bytes) -> dict[str, Any] | None:
    # The child should print exactly one object, but a stray line from a library must not
    # hide it: take the last line that parses as a JSON object.
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "ok" in value:
            return value
    return None


def _log_details(stderr: bytes, url: str) -> None:
    """The probe's own log lines (why a connection failed, in the driver's words) go to the
    API's log, not to the caller: they can tell which files exist or what a port answered."""
    for line in stderr.decode(errors="replace").splitlines()[-MAX_LOGGED_LINES:]:
        if line.strip():
            log.info("source_probe_log", line=scrub(line, url))


def _crash_message(returncode: int | None, stderr: bytes) -> str:
    lines = stderr.decode(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    return f"the source probe failed (exit code {returncode}): {last}"


def _error_class(kind: Any) -> type[LiteshiftError]:
    cls = getattr(errors, str(kind), None)
    if isinstance(cls, type) and issubclass(cls, LiteshiftError):
        return cls
    return SourceError


def scrub(message: str, url: str) -> str:
    """Redact URL passwords, and this URL's password wherever it appears in the text.

    Per call rather than through worker.redact.remember, so a long-running API does not
    collect every password it was ever sent. Like `remember`, very short passwords are left
    alone: replacing every "a" would make the message unreadable."""
    text = redact(message)
    for secret in sorted(url_passwords(url), key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text
