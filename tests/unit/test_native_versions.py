"""_fastsqlite.c reads CPython's sqlite3 connection object by its layout: on a Python it was
not written for it is declined before it is imported, and the worker says why."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker import native

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_native():
    native.extension.cache_clear()
    yield
    native.extension.cache_clear()


def test_on_a_python_it_was_not_written_for_fastsqlite_is_declined(fresh_native, monkeypatch):
    # Given bounds that exclude the running interpreter
    monkeypatch.setattr(native, "FASTSQLITE_PYTHONS", ((2, 6), (2, 7)))
    imported: list[str] = []
    monkeypatch.setattr(native.importlib, "import_module", imported.append)

    # Then the C module is not even imported, the worker logs that it falls back, and
    # problems() (the worker's start, /healthz, doctor) says why and what to do
    with capture_logs() as logs:
        assert native.extension("_fastsqlite") is None
    assert [(e["event"], e["part"], e["fallback"]) for e in logs] == \
        [("native_part_declined", "_fastsqlite", "plain Python")]
    assert "worker.native._fastsqlite" not in imported
    reason = native.problems()["_fastsqlite"]
    assert "written for CPython 2.6 to 2.7" in reason
    assert sys.version.split()[0] in reason


def test_the_running_python_is_one_it_was_written_for():
    # The bounds this repository's CI runs under; widen them only after checking the
    # layout of pysqlite_Connection in the new version's Modules/_sqlite/connection.h.
    assert native.fastsqlite_written_for_this_python()


def test_setup_py_reads_the_same_bounds():
    source = (REPO / "setup.py").read_text()
    namespace: dict = {"__file__": str(REPO / "setup.py")}
    exec(source.split("\nfirst, last =")[0], namespace)  # the helpers, not the setup() call

    assert namespace["fastsqlite_pythons"]() == native.FASTSQLITE_PYTHONS
    assert namespace["hex_version"](3, 14) == "0x030E0000"
