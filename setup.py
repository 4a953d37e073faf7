"""The compiled parts: worker/native/_fastsqlite.c and worker/native/_pgcopy.c (see their
headers). Everything else is in pyproject.toml.

Both are optional: without a compiler or SQLite's headers the install still works (the worker
warns at start, /healthz and `liteshift doctor` say so) and worker/native/fastsqlite.py and
worker/native/pgcopy.py use plain Python (slower, same results). _fastsqlite.c is built only
on the CPython versions whose connection object it was written for."""

import ast
import sys
from pathlib import Path

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Werror=implicit-function-declaration"]
DEPENDS = ["worker/native/marshal2.h", "worker/native/xxh3.h"]


def fastsqlite_pythons() -> tuple[tuple[int, int], tuple[int, int]]:
    """FASTSQLITE_PYTHONS from worker/native/__init__.py, read without importing the package
    (the build may run where its dependencies are not installed yet)."""
    source = (Path(__file__).parent / "worker" / "native" / "__init__.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, "id", None) == "FASTSQLITE_PYTHONS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("worker/native/__init__.py defines no FASTSQLITE_PYTHONS")


def hex_version(major: int, minor: int) -> str:
    return f"0x{major:02X}{minor:02X}0000"


first, last = fastsqlite_pythons()
extensions = [Extension("worker.native._pgcopy", sources=["worker/native/_pgcopy.c"],
                        depends=DEPENDS, optional=True, extra_compile_args=FLAGS)]
if first <= sys.version_info[:2] <= last:
    extensions.append(Extension(
        "worker.native._fastsqlite", sources=["worker/native/_fastsqlite.c"],
        libraries=["sqlite3"], depends=DEPENDS, optional=True, extra_compile_args=FLAGS,
        define_macros=[("LITESHIFT_PY_MIN", hex_version(*first)),
                       ("LITESHIFT_PY_END", hex_version(last[0], last[1] + 1))]))
else:
    print(f"warning: not building worker/native/_fastsqlite.c: it was written for CPython "
          f"{first[0]}.{first[1]} to {last[0]}.{last[1]}, this is {sys.version.split()[0]}; "
          "the worker uses its plain Python twin (slower, same results)", file=sys.stderr)

setup(ext_modules=extensions)
