"""The query parameters of paged views (`limit`, `cursor`, `state`, `since`): their checks,
with messages that say the allowed values, and the `next` link to the following page; and
the page of a report."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query

from api.error_handlers import ApiError
from worker.state.pages import DEFAULT_PAGE, MAX_PAGE, TableQuery
from worker.state.store import TableState

STATES = ", ".join(state.value for state in TableState)

Limit = Annotated[int | None, Query(description=f"tables per page, 1 to {MAX_PAGE} (default "
                                    f"{DEFAULT_PAGE}); on GET /jobs/{{id}}, 0 gives the "
                                    "summary alone")]
Cursor = Annotated[int, Query(description="where the page starts: the `next_cursor` of the "
                              "page before (0: the first page)")]
States = Annotated[list[str] | None, Query(description=f"only tables in these states ({STATES})"
                                           ": repeat it or separate them with commas")]
Since = Annotated[float | None, Query(description="only tables changed after this time "
                                      "(seconds since the epoch, as in `as_of`)")]


def check_limit(limit: int | None, *, default: int, smallest: int = 1,
                largest: int = MAX_PAGE, what: str = "tables") -> int:
    if limit is None:
        return default
    if not smallest <= limit <= largest:
        raise ApiError(422, f"limit: {limit} is outside {smallest} to {largest}: ask for at "
                       f"most {largest} {what} per page and follow `next` for the rest")
    return limit


#: Past any real position (Redis takes 64-bit positions only): a larger cursor was not given
#: by this API.
MAX_CURSOR = 2**31 - 1


def check_cursor(cursor: int) -> int:
    if not 0 <= cursor <= MAX_CURSOR:
        raise ApiError(422, f"cursor: {str(cursor)[:24]} is not a position: start at 0, or "
                       "pass the `next_cursor` of the page before")
    return cursor


def table_query(*, limit: int | None, cursor: int, states: list[str] | None,
                since: float | None, smallest_limit: int = 1) -> TableQuery:
    """A TableQuery from the query string, or a 422 that says what to send instead."""
    chosen = []
    for item in states or []:
        for name in filter(None, (part.strip() for part in item.split(","))):
            try:
                chosen.append(TableState(name))
            except ValueError:
                raise ApiError(422, f"state: {name[:64]!r} is not a table state: use one or "
                               f"more of {STATES}") from None
    if since is not None and not since >= 0:
        raise ApiError(422, f"since: {since} is not a time: pass the `as_of` of an earlier "
                       "answer (seconds since the epoch)")
    return TableQuery(limit=check_limit(limit, default=DEFAULT_PAGE, smallest=smallest_limit),
                      cursor=check_cursor(cursor), states=tuple(dict.fromkeys(chosen)),
                      since=since)


def tables_link(job_id: str, query: TableQuery, next_cursor: int | None) -> str | None:
    """The URL of the page after this one (None on the last): same filter, same size."""
    if next_cursor is None:
        return None
    params: list[tuple[str, object]] = [("cursor", next_cursor),
                                        ("limit", query.limit or DEFAULT_PAGE)]
    params += [("state", state.value) for state in query.states]
    if query.since is not None:
        params.append(("since", repr(query.since)))
    return f"/jobs/{job_id}/tables?{urlencode(params)}"


def report_page(job_id: str, content: Any, start: int, size: int) -> Any:
    """The report with `size` of its tables from `start` on, and the objects (the table
    itself, its indexes, sequences, defaults…) of those tables; objects of no listed table
    come on the first page. report.json keeps them all."""
    if not isinstance(content, dict) or not isinstance(content.get("tables"), list):
        return content
    tables = content["tables"]
    page = tables[start:start + size]
    listed = {str(t.get("name")) for t in tables if isinstance(t, dict)}
    shown = {str(t.get("name")) for t in page if isinstance(t, dict)}
    objects = [o for o in content.get("objects") or [] if isinstance(o, dict) and (
        _owner(o, listed) in shown or (start == 0 and _owner(o, listed) is None))]
    more = start + size < len(tables)
    return {**content, "tables": page, "objects": objects, "tables_total": len(tables),
            "next_cursor": start + size if more else None,
            "next": f"/jobs/{job_id}/report?cursor={start + size}&limit={size}" if more
            else None}


def _owner(entry: dict[str, Any], listed: set[str]) -> str | None:
    """The table a report object belongs to: its `table`, or its `name` (a table's own
    entry), or the table its `name` starts with ('orders.created_at' for a default; names
    may hold dots, so every prefix before a dot is tried)."""
    for candidate in (entry.get("table"), entry.get("name")):
        if isinstance(candidate, str) and candidate in listed:
            return candidate
    name = str(entry.get("name") or "")
    return next((name[:i] for i, ch in enumerate(name) if ch == "." and name[:i] in listed),
                None)
