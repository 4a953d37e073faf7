"""The compiled parts: worker/native/_fastsqlite.c and worker/native/_pgcopy.c (see their
headers).
Everything else is in pyproject.toml. Both are optional: without a compiler or SQLite's
headers the install still works (the worker warns at start, /healthz and `liteshift doctor`
say so) and
worker/native/fastsqlite.py and worker/native/pgcopy.py use plain Python (slower, same results)."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-Wall", "-Werror=implicit-function-declaration"]

setup(ext_modules=[
    Extension("worker.native._fastsqlite", sources=["worker/native/_fastsqlite.c"],
              libraries=["sqlite3"], depends=["worker/native/marshal2.h", "worker/native/xxh3.h"], optional=True,
              extra_compile_args=FLAGS),
    Extension("worker.native._pgcopy", sources=["worker/native/_pgcopy.c"],
              depends=["worker/native/marshal2.h", "worker/native/xxh3.h"], optional=True, extra_compile_args=FLAGS),
])
