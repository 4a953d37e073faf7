"""Django reads liteshift's file as it reads its own (issue 23's real-client tier).

A small Django project (django_app/) builds its schema in the source through `migrate` and
fills every common field type with edge values; liteshift copies it with `--profile django`;
then the same project, pointed at the file, reads every row and runs its usual queries and
writes (django_app/scenario.py). Each result is compared with the source's, and a difference
counts as inherent only when Django's own SQLite file (the project migrated and filled on a
fresh SQLite file) shows it too.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .conftest import Source, client, reads_as_its_own

SCENARIO = Path(__file__).with_name("django_app") / "scenario.py"


def test_django_reads_the_file_as_its_own(source: Source, copy_with_profile: Any,
                                          tmp_path: Path) -> None:
    django = client("django", [sys.executable, str(SCENARIO)], SCENARIO.parent)

    values, inherent, report = reads_as_its_own(
        django, name="django", profile="django", source=source,
        own=f"sqlite:///{tmp_path / 'own.db'}", file_url=lambda path: f"sqlite:///{path}",
        copy_with_profile=copy_with_profile)

    assert values > 300
    # and the report counts as lossy exactly the decimals Django reads back different
    table = next(t for t in report["tables"] if t["name"] == "shop_item")
    lossy = {c["name"]: c["lossy_values"] for c in table["columns"] if c["lossy_values"]}
    rounded = [d for d in inherent if d.startswith("rows/shop.Item/") and "/precise:" in d]
    assert lossy == {"precise": len(rounded)} and rounded
