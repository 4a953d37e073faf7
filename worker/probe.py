"""`python -m worker.probe`: check a source for the API, which imports no database driver.

Reads {"source": url, "schema": name} as JSON on stdin (never argv: argv shows in `ps`), and
prints {"ok": true, "tables": [...]} or {"ok": false, "error": ..., "kind": ...}.
"""

from __future__ import annotations

import json
import sys

from worker.errors import LiteshiftError
from worker.redact import redact


def main() -> int:
    try:
        request = json.loads(sys.stdin.read())
        from worker.plan import probe
        from worker.sealing import remember_url_password

        remember_url_password(request["source"])
        tables = probe(request["source"], request.get("schema") or "public",
                       timeout_s=int(request.get("timeout_s") or 10))
        answer: dict = {"ok": True, "tables": tables}
    except LiteshiftError as exc:
        answer = {"ok": False, "error": redact(str(exc)), "kind": type(exc).__name__}
    except Exception as exc:  # never a traceback with a URL in it
        answer = {"ok": False, "error": redact(f"probe failed: {exc}"), "kind": "ProbeError"}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
