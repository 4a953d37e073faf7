"""Finalize's steps as they happen (merging table k of n, building index i of m, checks),
told to whoever listens: finalize records them in the job's Redis state.

The build code calls `step()` where it starts a piece of work; `reporting()` sets the
listener for the calls made inside it. A context variable rather than a parameter passed
down every build function: the build stays free of Redis and of any notion of a job, and a
build run alone (tests, benchmarks) reports to nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: (step, done, total, item): `done` of `total` finished, `item` the one under way
Listener = Callable[[str, int, int, "str | None"], None]

_listener: ContextVar[Listener | None] = ContextVar("liteshift_step_listener", default=None)


@contextmanager
def reporting(listener: Listener) -> Iterator[None]:
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def step(name: str, done: int = 0, total: int = 0, item: str | None = None) -> None:
    """Say that `done` of `total` pieces of step `name` are finished and `item` is next."""
    listener = _listener.get()
    if listener is not None:
        listener(name, done, total, item)
