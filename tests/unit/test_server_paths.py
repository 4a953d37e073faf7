"""hide_paths: the net under messages that may quote a server path (worker/core/serverpaths.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.core import serverpaths
from worker.core.serverpaths import hide_paths, on_volume


@pytest.fixture(autouse=True)
def volume() -> Iterator[Path]:
    serverpaths.configure(Path("/srv/liteshift/data"))
    yield Path("/srv/liteshift/data")
    serverpaths._volume = serverpaths._volume_re = None


@pytest.mark.parametrize(("text", "shown"), [
    ("[Errno 28] No space left on device: '/srv/liteshift/data/.liteshift/jobs/j/tables/a.db'",
     "[Errno 28] No space left on device: '.liteshift/jobs/j/tables/a.db'"),
    ("not enough space on /srv/liteshift/data: free some", "not enough space on the data "
     "volume: free some"),
    ('File "/root/.venv/lib/python3.11/site-packages/psycopg/cursor.py", line 9',
     'File ".../cursor.py", line 9'),
    ("unable to open /home/ops/other/x.db", "unable to open .../x.db"),
    ("/srv/liteshift/data2/x.db is not ours", ".../x.db is not ours"),
])
def test_server_paths_are_hidden(text: str, shown: str) -> None:
    assert hide_paths(text) == shown


@pytest.mark.parametrize("text", [
    "postgresql://app@db.internal:5432/shop?sslmode=require",
    "cannot reach the API at http://127.0.0.1:8000/jobs/abc",
    "table 'a/b' in tables/a.db; 2/3 done; it becomes <data dir>/<target>.db",
])
def test_urls_and_relative_names_are_kept(text: str) -> None:
    assert hide_paths(text) == text


def test_a_file_on_the_volume_is_named_relative_to_it(volume: Path) -> None:
    manifest = ".liteshift/jobs/j/manifest.json"
    assert on_volume(volume / manifest) == manifest
    assert on_volume(Path("/etc/elsewhere/x.json")) == "x.json"
