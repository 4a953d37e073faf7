"""Which compiled parts this process can use: worker/native/_fastsqlite.c and
worker/native/_pgcopy.c.

Both are optional (setup.py builds them when it can) and both have plain Python twins with
the same results. LITESHIFT_NATIVE=0 switches them off, to compare or to rule them out.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
from functools import cache
from types import ModuleType

NAMES = ("_fastsqlite", "_pgcopy")

# The CPython versions, first and last, whose sqlite3 connection object _fastsqlite.c reads
# (its ConnectionHead copies the head of pysqlite_Connection). On any other version it is
# neither built nor imported: a struct laid out otherwise would be read as a bad pointer.
# setup.py reads this line without importing the package: keep it a literal.
FASTSQLITE_PYTHONS = ((3, 11), (3, 13))


@cache
def extension(name: str) -> ModuleType | None:
    if name not in NAMES:
        raise ValueError(f"unknown extension {name!r}")
    if os.environ.get("LITESHIFT_NATIVE", "1") == "0":
        return None
    if name == "_fastsqlite" and not fastsqlite_written_for_this_python():
        from worker.core.logs import get_logger

        get_logger().warning("native_part_declined", part=name,
                             reason=_other_python(), fallback="plain Python")
        return None
    try:
        module = importlib.import_module(f"worker.native.{name}")
    except ImportError:
        return None
    if name == "_fastsqlite" and not _same_sqlite(module):
        return None
    return module


def fastsqlite_written_for_this_python() -> bool:
    first, last = FASTSQLITE_PYTHONS
    return first <= sys.version_info[:2] <= last


def _other_python() -> str:
    (major, minor), (last_major, last_minor) = FASTSQLITE_PYTHONS
    return (f"written for CPython {major}.{minor} to {last_major}.{last_minor}, and this is "
            f"{sys.version.split()[0]}")


def _same_sqlite(module: ModuleType) -> bool:
    """_fastsqlite works on the handles of Python's sqlite3 module, so it must call the very
    SQLite library that module uses: a second copy in one process breaks SQLite's locking."""
    import _sqlite3

    try:
        theirs = ctypes.CDLL(_sqlite3.__file__, mode=os.RTLD_NOLOAD).sqlite3_libversion
    except (OSError, AttributeError):
        return False
    return bool(module.libversion_address() == ctypes.cast(theirs, ctypes.c_void_p).value)


def status() -> dict[str, bool]:
    """Which compiled parts are in use (the Dockerfile's build check)."""
    return {name: extension(name) is not None for name in NAMES}


def problems() -> dict[str, str]:
    """Why each compiled part that is not in use is not, and what to do: what the worker
    logs at start and what /healthz and `liteshift doctor` show. Empty when all are in use."""
    found = {}
    for name in NAMES:
        if extension(name) is not None:
            continue
        if os.environ.get("LITESHIFT_NATIVE", "1") == "0":
            found[name] = "switched off by LITESHIFT_NATIVE=0 (2-3x slower copies): unset it"
        elif name == "_fastsqlite" and not fastsqlite_written_for_this_python():
            found[name] = (f"{_other_python()}, so it is not used (slower copies): run "
                           "liteshift on one of those versions, or accept the plain Python "
                           "path")
        elif name == "_fastsqlite" and importlib.util.find_spec(f"worker.native.{name}"):
            found[name] = ("built against another SQLite library than Python's sqlite3 module "
                           "uses, so it is not used (2-3x slower copies): reinstall liteshift "
                           "with the headers of the SQLite Python uses (libsqlite3-dev)")
        else:
            found[name] = ("not built (2-3x slower copies): install gcc, the Python headers "
                           "(python3-dev) and libsqlite3-dev, then reinstall liteshift "
                           "(pip install --force-reinstall --no-deps .)")
    return found
