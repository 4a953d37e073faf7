"""Django reads liteshift's file as it reads its own (issue 23's real-client tier).

A small Django project (django_app/) builds its schema in the source through `migrate` and
fills every common field type with edge values; liteshift copies it with `--profile django`;
then the same project, pointed at the file, reads every row and runs its usual queries and
writes (django_app/scenario.py). Each result is compared with the source's, and a difference
counts as inherent only when Django's own SQLite file (the project migrated and filled on a
fresh SQLite file) shows it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import compare

SCENARIO = Path(__file__).with_name("django_app") / "scenario.py"


def django(url: str, command: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(SCENARIO), url, command], capture_output=True,
                          text=True, timeout=120, cwd=SCENARIO.parent)
    assert done.returncode == 0, f"django {command} on {url}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout) if command == "observe" else {}


@pytest.mark.parametrize("source", ["postgres", "mariadb"])
def test_django_reads_the_file_as_its_own(source: str, request: pytest.FixtureRequest,
                                          copy_with_profile: Any, tmp_path: Path) -> None:
    # Given the project migrated and filled on the source, and on a fresh SQLite file
    url = (request.getfixturevalue("pg_db").url if source == "postgres"
           else request.getfixturevalue("my_database"))
    django(url, "setup")
    own = f"sqlite:///{tmp_path / 'own.db'}"
    django(own, "setup")

    # When liteshift copies the source with the django profile
    copied, report = copy_with_profile(url, "django")

    # Then Django reads from the file what it reads from the source, except where it reads
    # the same from its own file
    values, inherent, ours = compare(django(url, "observe"),
                                     django(f"sqlite:///{copied}", "observe"),
                                     django(own, "observe"))
    print(f"\ndjango from {source}: {values} values compared, {len(inherent)} inherent "
          "differences:\n  " + "\n  ".join(inherent))
    assert ours == [], "\n".join(ours)
    assert values > 300
    # and the report counts as lossy exactly the decimals Django reads back different
    table = next(t for t in report["tables"] if t["name"] == "shop_item")
    lossy = {c["name"]: c["lossy_values"] for c in table["columns"] if c["lossy_values"]}
    rounded = [d for d in inherent if d.startswith("rows/shop.Item/") and "/precise:" in d]
    assert lossy == {"precise": len(rounded)} and rounded
