"""ActiveRecord reads liteshift's file as it reads its own (issue 23's real-client tier).

A small ActiveRecord app (rails_app/scenario.rb, Debian's ruby-activerecord) builds its
schema in the source with ActiveRecord::Schema and fills every common column type with edge
values; liteshift copies it with `--profile rails`; then the same app, pointed at the file,
reads every row and runs its usual queries and writes. Each result is compared with the
source's, and a difference counts as inherent only when ActiveRecord's own SQLite file (the
app's schema and rows written on a fresh SQLite file) shows it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .conftest import Source, client, reads_as_its_own

SCENARIO = Path(__file__).with_name("rails_app") / "scenario.rb"


def test_activerecord_reads_the_file_as_its_own(source: Source, copy_with_profile: Any,
                                                tmp_path: Path) -> None:
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby is missing: ops/test.sh installs it with ruby-activerecord, or run "
                    "apt-get install ruby-activerecord ruby-sqlite3 ruby-pg ruby-mysql2",
                    pytrace=False)
    rails = client("rails", [ruby, str(SCENARIO)], SCENARIO.parent)

    values, _, _ = reads_as_its_own(
        rails, name="rails", profile="rails", source=source,
        own=f"sqlite://{tmp_path / 'own.db'}", file_url=lambda path: f"sqlite://{path}",
        copy_with_profile=copy_with_profile)

    assert values > 150
