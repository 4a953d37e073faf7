"""How a source turns its driver's exceptions into ours (worker/core/errors.py), once, where
it calls the driver: the same three outcomes and messages for every kind.

- refused for good (`SourceRejected`): wrong credentials, no such database, permission, a
  query the source refuses; the advice says what to check;
- cut (`SourceUnavailable`): the connection failed or broke, worth a retry from the last
  committed chunk;
- anything else unknown: `SourceUnavailable`, with the driver's text.
Each source says which of its errors is which (postgres/source.py, mysql/source.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from worker.core.errors import SourceError, SourceRejected, SourceUnavailable
from worker.core.redact import redact


def translate_error(exc: BaseException, *, what: str,
                    permanent: Callable[[BaseException, str], str | None],
                    transient: Callable[[BaseException], bool],
                    refused: Callable[[BaseException], bool]) -> SourceError:
    """Our error for a driver's `exc` (or SQLAlchemy's, whose `orig` is the driver's), while
    doing `what`. `permanent(error, text)` gives the advice for an error that retrying
    cannot fix, or None; `transient` tells a cut connection; `refused`, a refused query."""
    orig = getattr(exc, "orig", None) or exc
    text = redact(str(orig).strip().splitlines()[0] if str(orig).strip() else repr(orig))
    advice = permanent(orig, text)
    if advice is not None:
        return SourceRejected(f"{what}: {advice}")
    if transient(orig) or isinstance(orig, OSError):
        return SourceUnavailable(f"{what}: connection failed or was cut ({text}); "
                                 "will retry from the last committed chunk")
    if refused(orig):
        return SourceRejected(f"{what}: the source refused the query ({text})")
    return SourceUnavailable(f"{what}: {text}")


def sqlalchemy_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(SQLAlchemy's OperationalError, its root error), or empty tuples before SQLAlchemy is
    imported: sources import it only to reflect keys (a reader process does not pay for
    it), so no error can be one of its own before that."""
    exceptions = sys.modules.get("sqlalchemy.exc")
    if exceptions is None:
        return (), ()
    return (exceptions.OperationalError,), (exceptions.SQLAlchemyError,)
