"""No code, test or script may empty a whole Redis database.

Tests, benchmarks and the chaos runner share Redis databases with each other and with
whatever else runs on the machine; each deletes only the keys under its own prefix (and its
own queue). Emptying a database would break those others mid-run, so the commands that do it
may not appear anywhere in the code.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEARCHED = ("api", "worker", "tests", "ops")
SUFFIXES = {".py", ".sh", ".rb", ".lua", ".yml", ".yaml", ".toml", ".cfg", ".conf"}
# redis-py's methods, the raw commands and redis-cli's spelling of both, in any case
WHOLE_DB = re.compile(r"flush_?(db|all)", re.IGNORECASE)


def test_nothing_empties_a_whole_redis_database():
    offenders = []
    for top in SEARCHED:
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file():
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if WHOLE_DB.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")

    assert offenders == [], (
        "these lines empty a whole Redis database, which other processes share; delete only "
        "your own prefix instead (scan_iter(match=f'{prefix}:*') then unlink):\n"
        + "\n".join(offenders))
