"""One child process started ahead of need, handed to the next request.

Reader processes (worker/sources/reader_process.py) and source probes (api/source_check.py)
spend most of their start-up importing drivers, psycopg most of all. Started ahead, they do
that while nothing waits for them. Such a child imports first, then reads its request from stdin; a
child whose owner goes away reads an empty request and exits quietly.

A kept child is handed out only in the process that started it (a fork's copy of this object
is not the owner's) and only while the environment is the one it started with (settings come
from it); otherwise it is stopped and the caller starts a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

Child = subprocess.Popen[bytes]


@dataclass
class Kept:
    proc: Child
    env: dict[str, str]  # the environment it started with: a request must find the same
    owner: int  # the pid of the process that started it


class Standby:
    def __init__(self, spawn: Callable[[], Child]):
        self._spawn = spawn
        self.kept: Kept | None = None

    def keep(self) -> None:
        """Have one child started, unless this process already has a live one."""
        kept = self.kept
        if kept is None or kept.owner != os.getpid() or kept.proc.poll() is not None:
            self.kept = Kept(self._spawn(), dict(os.environ), os.getpid())

    def take(self) -> Child | None:
        """The kept child for this request, or None: start one yourself."""
        kept, self.kept = self.kept, None
        if kept is None or kept.owner != os.getpid():
            return None
        if kept.proc.poll() is None and kept.env == dict(os.environ):
            return kept.proc
        stop(kept.proc)
        return None

    def stop(self) -> None:
        kept, self.kept = self.kept, None
        if kept is not None and kept.owner == os.getpid():
            stop(kept.proc)


def stop(proc: Child) -> None:
    """Kill, reap (no zombie) and close the pipes of a child."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def python_main(module: str) -> list[str]:
    """The command of a child that imports `module` and exits with its main()'s status, as
    `python -m module` would, with Python's cyclic GC off from the first import. A child's
    imports (the drivers, structlog) leave some 70,000 objects that each collection during
    them scans again, and so does the full collection of the interpreter's exit, GC off or
    not: main() calls gc.freeze() once its imports are done (the exit then skips them), and
    gc.enable() if it goes on to keep objects that may form cycles."""
    return [sys.executable, "-c",
            f"import gc, sys; gc.disable(); from {module} import main; sys.exit(main())"]
