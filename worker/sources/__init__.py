"""Source kinds → the `Source` that reads them: `sources.for_kind(kind).connect(...)`.

The interface is worker/sources/base.py; each kind has a folder (postgres/, mysql/) whose
source.py talks to its database and is that kind's Source, and whose translate.py turns its
reflected schema into the plan. Callers (plan, copying, verify, probe) go through here and
never name a driver module, so a new kind is one entry in MODULES. This is the one place
that imports a kind's module, and with it its driver, on first use: the API imports url.py
but never a driver.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from worker.sources.base import Source

MODULES = {"postgres": "worker.sources.postgres.source", "mysql": "worker.sources.mysql.source"}
KINDS = tuple(MODULES)

if TYPE_CHECKING:  # mypy holds each module to the Protocol
    import psycopg

    from worker.sources.mysql import source as _mysql
    from worker.sources.mysql.catalog import MySchema
    from worker.sources.postgres import source as _postgres
    from worker.sources.postgres.source import PgSchema

    _checked: tuple[Source[psycopg.Connection, PgSchema],
                    Source[_mysql.Connection, MySchema]] = (_postgres, _mysql)


def for_kind(kind: str) -> Source[Any, Any]:
    """The source for `kind`, its module and driver imported now (ImportError when the
    driver is missing)."""
    if kind not in MODULES:
        raise ValueError(f"unknown source kind {kind!r}; known: {', '.join(KINDS)}")
    source: Source[Any, Any] = importlib.import_module(MODULES[kind])  # type: ignore[assignment]
    return source


def import_readers() -> None:
    """Import every kind's reading module and driver now (reader and probe processes kept
    started ahead, worker/sources/standby.py). A missing driver is left to be told with the
    request that needs it."""
    for kind in KINDS:
        with contextlib.suppress(ImportError):
            for_kind(kind)
