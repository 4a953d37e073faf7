"""ActiveRecord reads liteshift's file as it reads its own (issue 23's real-client tier).

A small ActiveRecord app (rails_app/scenario.rb, Debian's ruby-activerecord) builds its
schema in the source with ActiveRecord::Schema and fills every common column type with edge
values; liteshift copies it with `--profile rails`; then the same app, pointed at the file,
reads every row and runs its usual queries and writes. Each result is compared with the
source's, and a difference counts as inherent only when ActiveRecord's own SQLite file (the
app's schema and rows written on a fresh SQLite file) shows it too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import compare

SCENARIO = Path(__file__).with_name("rails_app") / "scenario.rb"


def rails(url: str, command: str) -> dict[str, Any]:
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby is missing: ops/test.sh installs it with ruby-activerecord, or run "
                    "apt-get install ruby-activerecord ruby-sqlite3 ruby-pg ruby-mysql2",
                    pytrace=False)
    done = subprocess.run([ruby, str(SCENARIO), url, command], capture_output=True,
                          text=True, timeout=120, cwd=SCENARIO.parent)
    assert done.returncode == 0, f"rails {command} on {url}:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout) if command == "observe" else {}


@pytest.mark.parametrize("source", ["postgres", "mariadb"])
def test_activerecord_reads_the_file_as_its_own(source: str, request: pytest.FixtureRequest,
                                                copy_with_profile: Any, tmp_path: Path) -> None:
    # Given the app's schema and rows in the source, and in a fresh SQLite file
    url = (request.getfixturevalue("pg_db").url if source == "postgres"
           else request.getfixturevalue("my_database"))
    rails(url, "setup")
    own = f"sqlite://{tmp_path / 'own.db'}"
    rails(own, "setup")

    # When liteshift copies the source with the rails profile
    copied, report = copy_with_profile(url, "rails")

    # Then ActiveRecord reads from the file what it reads from the source, except where it
    # reads the same from its own file
    values, inherent, ours = compare(rails(url, "observe"),
                                     rails(f"sqlite://{copied}", "observe"),
                                     rails(own, "observe"))
    print(f"\nrails from {source}: {values} values compared, {len(inherent)} inherent "
          "differences:\n  " + "\n  ".join(inherent))
    assert ours == [], "\n".join(ours)
    assert values > 150
