"""`python -m worker.sources.probe`: check a source for the API, which imports no database
driver.

Reads {"source": url, "schema": name} as JSON on stdin (never argv: argv shows in `ps`), and
prints {"ok": true, "tables": [...]} or {"ok": false, "error": ..., "kind": ...}. It imports
only what connecting takes (not what planning needs), and does so before it reads
the request: the API keeps one probe started ahead (api/source_check.py), so a submission waits only
for the connection.
"""

from __future__ import annotations

import json
import os
import sys

from worker.core.errors import LiteshiftError, SourceRejected
from worker.core.logs import configure_logging
from worker.core.redact import redact
from worker.sources.ambient import drop_driver_env
from worker.sources.hosts import ANY_HOST, HostAllow
from worker.sources.url import SourceURL, parse_source_url


def probe(url: str, schema: str, *, timeout_s: int = 10,
          allow: HostAllow = ANY_HOST) -> list[str]:
    """Connect and list the schema's tables: the check the API runs before queueing a job."""
    from worker import sources

    source = parse_source_url(url, allow=allow)
    reader = sources.for_kind(source.kind)
    with reader.connect(source, timeout_s=timeout_s) as conn:
        if not reader.schema_exists(conn, schema):
            raise SourceRejected(no_schema(schema, source))
        return reader.list_tables(conn, schema)


def no_schema(schema: str, source: SourceURL) -> str:
    if source.kind == "mysql":
        return (f"schema {schema!r}: a MySQL database has no schemas; leave the schema out "
                f"(the URL's database {source.database!r} is copied)")
    return f"schema {schema!r} does not exist in {source.database!r}"


def main() -> int:
    from worker.sources import import_readers
    from worker.sources.url import remember_url_password

    drop_driver_env()  # started without them; this keeps it so if run by hand
    configure_logging("json")  # to stderr, which the API logs: stdout carries the answer
    import_readers()  # before the request: a probe kept ready has them when it comes
    text = sys.stdin.read()
    if not text:
        return 0  # a probe kept ready whose API stopped without using it
    try:
        request = json.loads(text)

        remember_url_password(request["source"])
        tables = probe(request["source"], request.get("schema") or "public",
                       timeout_s=int(request.get("timeout_s") or 10),
                       allow=HostAllow.parse(request.get("allow")))
        answer: dict = {"ok": True, "tables": tables}
    except LiteshiftError as exc:
        answer = {"ok": False, "error": redact(str(exc)), "kind": type(exc).__name__}
    except Exception as exc:  # never a traceback with a URL in it
        answer = {"ok": False, "error": redact(f"probe failed: {exc}"), "kind": "ProbeError"}
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    # The API waits for this process to end (communicate), and tearing down an interpreter
    # with the drivers loaded would add to every submission: the answer is out, so end.
    sys.stderr.flush()
    os._exit(code)
