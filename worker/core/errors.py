"""liteshift's exceptions: one root, a few families, and retry markers.

    LiteshiftError
    ├── ConfigError          bad LITESHIFT_* setting
    ├── InputError           a request we refuse (bad URL, bad target name, unknown table)
    │   └── TargetConflict      <target>.db exists, or another job is writing it
    ├── SourceError          reading the source failed
    │   ├── SourceUnavailable   (Transient) connection refused or cut; retried with backoff
    │   ├── SourceRejected      (Permanent) wrong password, missing database or table
    │   └── SnapshotLost        (Permanent) the job's one moment of the source is gone
    ├── SchemaError          (Permanent) a schema object or type we cannot translate
    ├── TargetError          writing SQLite failed
    │   ├── TargetExists        (Permanent) <target>.db exists and replace was not asked
    │   ├── VolumeFull          (Permanent) no space left; free some and retry
    │   ├── WorkFileBusy        (Transient) another process holds a work file's lock
    │   └── VerificationFailed  (Permanent) counts, checksums or integrity checks disagree
    ├── LeaseLost            (Permanent) another worker took over this table; stop quietly
    └── JobCancelled         the job was cancelled while we worked

    BigRowHere               no failure: a worker reading a table itself met a row longer
                             than a chunk; the chunk loop has a reader process read on

Messages say what is wrong and what to do. Every exception pickles (Celery ships them).
"""

from __future__ import annotations


class LiteshiftError(Exception):
    """Raised for every failure liteshift knows how to explain."""

    transient = False

    def __init__(self, message: str, *, job_id: str | None = None, table: str | None = None):
        super().__init__(message)
        self.message = message
        self.job_id = job_id
        self.table = table

    def __reduce__(self):  # keep keyword-only context through pickling
        return (_rebuild, (type(self), self.message, self.job_id, self.table))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls, message, job_id, table):
    return cls(message, job_id=job_id, table=table)


class Transient(LiteshiftError):
    """Raised for failures that may pass: the task layer retries them with backoff."""

    transient = True


class ConfigError(LiteshiftError):
    """Raised when a LITESHIFT_* setting is invalid."""


class InputError(LiteshiftError):
    """Raised when a request is refused before anything is queued or written."""


class TargetConflict(InputError):
    """Raised when the target file exists or another job is writing it."""


class SourceError(LiteshiftError):
    """Raised when reading the source database fails."""


class SourceUnavailable(SourceError, Transient):
    """Raised when the source cannot be reached or the connection was cut."""


class SourceRejected(SourceError):
    """Raised when the source refuses us for good: credentials, database, table."""


class SnapshotLost(SourceError):
    """Raised when a table must be read in the job's snapshot and that snapshot is gone (its
    holder stopped, the source restarted): reading on would mix two moments."""


class SchemaError(LiteshiftError):
    """Raised when a schema object or column type cannot be translated."""


class TargetError(LiteshiftError):
    """Raised when writing or publishing the SQLite file fails."""


class TargetExists(TargetError):
    """Raised when <target>.db exists and the job did not ask to replace it."""


class VolumeFull(TargetError):
    """Raised when the data volume has no space left."""


class WorkFileBusy(TargetError, Transient):
    """Raised when a work file stayed locked past SQLite's busy timeout: a worker that froze
    in the middle of a commit (its lease taken over since) still holds the lock."""


class VerificationFailed(TargetError):
    """Raised when row counts, checksums or SQLite's own checks disagree."""


class LeaseLost(LiteshiftError):
    """Raised when another worker holds this table's lease with a newer fencing token."""


class JobCancelled(LiteshiftError):
    """Raised when the job was cancelled while a task was working on it."""


class BigRowHere(Exception):
    """Raised when a worker reading a table itself meets a row longer than a chunk, after
    the chunk before it: the chunk loop (worker/sqlite/chunks.py, copy_rows) has a reader
    process read the table on from its last commit. One process would hold the driver's
    buffer, the payload and SQLite's record of the row at once (ops/bench/RESULTS.md, big
    rows). Never leaves the chunk loop."""
