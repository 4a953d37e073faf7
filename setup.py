"""The compiled parts: worker/_fastsqlite.c and worker/_pgcopy.c (see their headers).
Everything else is in pyproject.toml. Both are optional: without a compiler or SQLite's and
xxhash's headers (xxhash is inlined: header only) the install still works and
worker/fastsqlite.py and worker/pgcopy.py use plain Python (slower, same results)."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Werror=implicit-function-declaration"]

setup(ext_modules=[
    Extension("worker._fastsqlite", sources=["worker/_fastsqlite.c"], libraries=["sqlite3"],
              depends=["worker/marshal2.h"], optional=True, extra_compile_args=FLAGS),
    Extension("worker._pgcopy", sources=["worker/_pgcopy.c"], depends=["worker/marshal2.h"],
              optional=True, extra_compile_args=FLAGS),
])
