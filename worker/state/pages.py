"""A job read a page of tables at a time: its summary over every table, and one page.

A job of thousands of tables must not cost a reply of every table's hash per request (nor
per tick of `liteshift watch`). One Lua call reads, inside Redis, the few fields of each
table that the summary adds up (state, rows, rate, time of change) and returns the sums and
the full hashes of one page only: the reply is bounded by the page, whatever the job's size,
and the summary and the page are one consistent moment.

Tables are paged in the plan's order; a cursor is a position in that order, so pages never
overlap and a table that changes state between two pages is neither doubled nor skipped for
an unfiltered listing (with a state filter, a table may move into or out of the filter
between pages: that is what changed, not a paging error).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from worker.state.store import StateStore, TableState

#: The most tables one page may hold: a page of the widest tables' hashes stays well under
#: a megabyte.
MAX_PAGE = 1000
#: Tables per page when the caller does not say.
DEFAULT_PAGE = 100

# KEYS[1]: the job's hash. ARGV: the tables' key prefix, the cursor (tables before this
# position are skipped), the page's size, the time a table must have changed after ('' for
# any), then the JSON-encoded states to list (none: every state). Job and table fields are
# JSON text already (store._encode), so they are spliced in as they are.
_JOB_PAGE = """
local raw = redis.call('HGETALL', KEYS[1])
if #raw == 0 then return false end
local fields, names = {}, {}
for i = 1, #raw, 2 do
  if raw[i] == 'tables' then
    local decoded = cjson.decode(raw[i + 1])
    if type(decoded) == 'table' then names = decoded end
  else fields[#fields + 1] = cjson.encode(raw[i]) .. ':' .. raw[i + 1] end
end
local prefix, cursor, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local since = tonumber(ARGV[4])
local wanted, any_state = {}, #ARGV < 5
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local counts, done, total, speed, matching = {}, 0, 0, 0, 0
-- With a page of 0 (the summary alone), `next_cursor` says where the first page starts.
local page, last = {}, cursor
local next_cursor = limit == 0 and 'pending' or 'null'
for position, name in ipairs(names) do
  local key = prefix .. name
  local f = redis.call('HMGET', key, 'state', 'rows_done', 'rows_estimated', 'rows_per_s',
                       'updated_at')
  local state = f[1] or '"pending"'
  counts[state] = (counts[state] or 0) + 1
  local rows = tonumber(f[2]) or 0
  done = done + rows
  total = total + math.max(rows, tonumber(f[3]) or 0)
  if state == '"copying"' then speed = speed + (tonumber(f[4]) or 0) end
  if (any_state or wanted[state]) and (not since or (tonumber(f[5]) or 0) > since) then
    matching = matching + 1
    if position > cursor then
      if #page < limit then
        local flat = redis.call('HGETALL', key)
        local t = {}
        for j = 1, #flat, 2 do t[#t + 1] = cjson.encode(flat[j]) .. ':' .. flat[j + 1] end
        if #t == 0 then t[1] = '"name":' .. cjson.encode(name) end
        page[#page + 1] = '{' .. table.concat(t, ',') .. '}'
        if #page == limit then next_cursor = 'pending' end
        last = position
      elseif next_cursor == 'pending' then
        next_cursor = tostring(last)
      end
    end
  end
end
if next_cursor == 'pending' then next_cursor = 'null' end
local by_state = {}
for state, n in pairs(counts) do by_state[#by_state + 1] = state .. ':' .. n end
return '{"job":{' .. table.concat(fields, ',') .. '},"tables_total":' .. #names ..
  ',"table_counts":{' .. table.concat(by_state, ',') .. '}' ..
  ',"rows_done":' .. string.format('%.0f', done) ..
  ',"rows_total":' .. string.format('%.0f', total) ..
  ',"rows_per_s":' .. string.format('%.0f', speed) ..
  ',"matching":' .. matching .. ',"next_cursor":' .. next_cursor ..
  ',"tables":[' .. table.concat(page, ',') .. ']}'
"""


@dataclass(frozen=True)
class TableQuery:
    """Which of a job's tables to list: those in `states` (all, when empty) that changed
    after `since` (a time.time() stamp), from plan position `cursor` on, `limit` of them."""

    limit: int = DEFAULT_PAGE
    cursor: int = 0
    states: tuple[TableState, ...] = ()
    since: float | None = None


def job_page(store: StateStore, job_id: str, query: TableQuery) -> dict[str, Any] | None:
    """The job's fields (without its list of table names), a summary of every table
    (`tables_total`, `table_counts` by state, `rows_done`, `rows_total`, `rows_per_s` of the
    tables copying) and the page: `tables`, `matching` (how many tables pass the filter)
    and `next_cursor` (None on the last page). None when Redis does not know the job."""
    prefix = store.keys.table(job_id, "")
    args: list[Any] = [prefix, query.cursor, query.limit,
                       "" if query.since is None else repr(float(query.since)),
                       *(json.dumps(state.value) for state in query.states)]
    raw = store.redis.eval(_JOB_PAGE, 1, store.keys.job(job_id), *args)
    if raw is None:
        return None
    answer: dict[str, Any] = json.loads(raw)
    answer["table_counts"] = {state.value: answer["table_counts"].get(state.value, 0)
                              for state in TableState}
    return answer


# KEYS: jobs' hashes. Each job's fields but its list of table names, which becomes a count.
_JOBS_LISTED = """
local out = {}
for _, key in ipairs(KEYS) do
  local raw = redis.call('HGETALL', key)
  if #raw > 0 then
    local fields = {}
    for i = 1, #raw, 2 do
      if raw[i] == 'tables' then
        local names = cjson.decode(raw[i + 1])
        fields[#fields + 1] = '"tables_total":' .. (type(names) == 'table' and #names or 0)
      else
        fields[#fields + 1] = cjson.encode(raw[i]) .. ':' .. raw[i + 1]
      end
    end
    out[#out + 1] = '{' .. table.concat(fields, ',') .. '}'
  end
end
return '[' .. table.concat(out, ',') .. ']'
"""


def jobs_page(store: StateStore, *, cursor: int, limit: int) -> tuple[list[dict[str, Any]],
                                                                      int | None]:
    """Jobs newest first from position `cursor`, at most `limit`, each with `tables_total`
    instead of its tables' names; and the cursor of the next page (None on the last)."""
    ids = store.redis.zrevrange(store.keys.jobs(), cursor, cursor + limit)  # one more: next?
    more = len(ids) > limit
    ids = ids[:limit]
    if not ids:
        return [], None
    keys = [store.keys.job(job_id) for job_id in ids]
    found = json.loads(store.redis.eval(_JOBS_LISTED, len(keys), *keys))
    return list(found), (cursor + limit if more else None)
