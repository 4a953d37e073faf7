"""The modes of every file and directory liteshift creates on the volume.

Owner only (files 0600, directories 0700), or readable by one group the operator names
(LITESHIFT_FILE_GROUP: 0640 and 0750, owned by that group). A copied database holds whatever
the source held, and job records hold sealed sources: the mode is given when each file is
created, never fixed afterwards, so no file is readable by others even for a moment. The
process's umask still applies on top (it can only take bits away).

SQLite creates a database's -wal, -shm and -journal with the database file's mode, and a
rename keeps the mode: so a database created here first (create_file) keeps its mode up to
<target>.db and beside it.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

_group: int | None = None  # set once at start (configure), like the log format


def configure(group: str | None) -> None:
    """Files from now on are the group's too (a name or a number), or the owner's only."""
    global _group
    _group = None if not group else find_group(group)


def find_group(group: str) -> int:
    """The group's id; KeyError naming it when the system has no such group."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise KeyError(f"no group {group!r} on this system (see `getent group`)") from None


def file_mode() -> int:
    return 0o640 if _group is not None else 0o600


def dir_mode() -> int:
    return 0o750 if _group is not None else 0o700


def make_dirs(path: Path) -> None:
    """`mkdir -p`, each directory it creates with dir_mode(); existing ones are left as
    they are (the data directory is the operator's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, dir_mode())
        except FileExistsError:
            continue  # another process made it meanwhile
        if _group is not None:
            os.chown(folder, -1, _group)


def open_new(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """os.open with file_mode(): a file descriptor, the group set before anything is
    written."""
    fd = os.open(path, flags, file_mode())
    if _group is not None:
        try:
            os.fchown(fd, -1, _group)
        except OSError:
            os.close(fd)
            raise
    return fd


def adopt(fd: int) -> None:
    """Give a file another library created (tempfile's mkstemp: 0600) file_mode() and the
    group, before anything is written to it."""
    if _group is not None:
        os.fchown(fd, -1, _group)
    os.fchmod(fd, file_mode())


def create_file(path: Path) -> None:
    """Create `path` empty, with file_mode(), unless it exists: for files another library
    then opens (SQLite keeps an existing file's mode)."""
    try:
        os.close(open_new(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        pass
