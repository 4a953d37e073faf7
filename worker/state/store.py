"""Job and table state in Redis: every key is named here, every writer takes a pipeline.

Redis mirrors what the volume holds (manifest + work files are the truth about progress), so
it can be rebuilt after a loss. Nothing here ever stores a cleartext password: the job hash
holds the redacted URL for people and the sealed (encrypted) URL for workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from enum import Enum
from typing import Any

import redis

from worker.core.config import Settings
from worker.core.serverpaths import hide_paths


class JobState(str, Enum):
    QUEUED = "queued"
    PLANNING = "planning"
    COPYING = "copying"
    FINALIZING = "finalizing"
    FOLLOWING = "following"  # built, applying the source's changes until cutover
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class TableState(str, Enum):
    PENDING = "pending"
    COPYING = "copying"
    COPIED = "copied"
    VERIFIED = "verified"
    FAILED = "failed"


ENDED = (TableState.VERIFIED, TableState.FAILED)  # a table's copy is over, for now
EVENTS_MAX = 10_000  # per job; `watch` only needs the recent past
WAKE_TTL_S = 60  # a wake nobody waited for goes: the follower reads the job anyway

#: Histograms the workers add to and the API's /metrics reads (api/metrics.py): each
#: name's upper bounds, in seconds. Changing a name's bounds needs a new name, or the counts
#: already in Redis would fall in the wrong buckets.
HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "chunk_commit_seconds": (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    "finalize_step_seconds": (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0),
}

# Hashes as one JSON array: every value is already JSON text (_encode), so it is spliced in
# as it is and only the field names are encoded.
_TABLES_AS_JSON = """
local out = {}
for _, key in ipairs(KEYS) do
  local flat = redis.call('HGETALL', key)
  if #flat > 0 then
    local fields = {}
    for i = 1, #flat, 2 do fields[#fields + 1] = cjson.encode(flat[i]) .. ':' .. flat[i + 1] end
    out[#out + 1] = '{' .. table.concat(fields, ',') .. '}'
  end
end
return '[' .. table.concat(out, ',') .. ']'
"""

# KEYS[1] a job's hash, the others keys of the same job written after it may have ended (a
# task finishing beside a cancel): they expire when the job's hash does, if it does.
_EXPIRE_WITH_JOB = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return ttl
"""

# A target's claim expires with its job (ARGV[2] seconds) or no longer (ARGV[2] = 0), if the
# job (ARGV[1]) still holds it: another job may have claimed the name since.
_RETAIN_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return redis.call('PERSIST', KEYS[1])
"""

# KEYS: the jobs index, then job hashes; ARGV: their job ids. Ids whose hash is gone leave
# the index, checked and removed in one step so a job restored meanwhile is not dropped.
_FORGET_GONE = """
local removed = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return removed
"""

#: How many of the oldest jobs one pass of forget_expired looks at.
FORGET_BATCH = 1000


class Keys:
    """Names of every Redis key liteshift uses, under one configurable prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def table(self, job_id: str, table: str) -> str:
        return f"{self.prefix}:job:{job_id}:table:{table}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def ended(self, job_id: str) -> str:
        """The set of a job's tables that are verified or failed (StateStore.tables_ended)."""
        return f"{self.prefix}:job:{job_id}:ended"

    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    def active(self) -> str:
        return f"{self.prefix}:active"

    def lease(self, job_id: str, name: str) -> str:
        return f"{self.prefix}:lease:{job_id}:{name}"

    def wake(self, job_id: str) -> str:
        """A list the job's follower blocks on while the source is quiet: a push wakes it
        (StateStore.wake_follower)."""
        return f"{self.prefix}:job:{job_id}:wake"

    def fence(self) -> str:
        return f"{self.prefix}:fence"

    def target(self, target: str) -> str:
        return f"{self.prefix}:target:{target}"

    def histogram(self, name: str) -> str:
        """A hash of `<label>|<upper bound>` counts, `<label>|sum` and `<label>|count`."""
        return f"{self.prefix}:metrics:{name}"

    def worker(self, name: str) -> str:
        """A running worker's self-description (StateStore.announce_worker), with a TTL."""
        return f"{self.prefix}:worker:{name}"


def now() -> float:
    return round(time.time(), 3)


class StateStore:
    """Reads and writes job and table state. Methods that write take an optional pipeline."""

    def __init__(self, client: redis.Redis, prefix: str, *, retention_s: int = 0):
        # Any: redis-py's stubs type every reply as bytes | str; ours decode to str.
        self.redis: Any = client
        self.keys = Keys(prefix)
        self.retention_s = retention_s  # a finished job's keys live this long; 0: for ever

    @classmethod
    def from_settings(cls, settings: Settings) -> StateStore:
        client = redis.Redis.from_url(settings.redis_url, decode_responses=True,
                                      socket_connect_timeout=5, health_check_interval=30)
        return cls(client, settings.redis_prefix, retention_s=settings.job_retention_s)

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, job_id: str, fields: dict[str, Any]) -> None:
        record = {**fields, "id": job_id, "state": JobState.QUEUED.value,
                  "created_at": now(), "updated_at": now()}
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.job(job_id), mapping=_encode(record))
        pipe.zadd(self.keys.jobs(), {job_id: record["created_at"]})
        pipe.sadd(self.keys.active(), job_id)
        self.add_event(job_id, "job_state", pipeline=pipe, state=JobState.QUEUED.value)
        pipe.execute()

    def restore_job(self, job_id: str, fields: dict[str, Any]) -> None:
        """Write a job rebuilt from the volume, keeping its recorded times and state."""
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.job(job_id), mapping=_encode({**fields, "id": job_id,
                                                          "updated_at": now()}))
        pipe.zadd(self.keys.jobs(), {job_id: float(fields.get("created_at") or now())})
        finished = JobState(fields["state"]).finished
        if finished:
            pipe.srem(self.keys.active(), job_id)
        else:
            pipe.sadd(self.keys.active(), job_id)
        self.add_event(job_id, "job_restored", pipeline=pipe, state=fields["state"])
        self._retain(pipe, job_id, target=fields.get("target"), tables=[], finished=finished)
        pipe.execute()

    def job(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        return _decode(raw) if raw else None

    def jobs_fields(self, job_ids: list[str], *fields: str) -> list[dict[str, Any]]:
        """The named fields of each job, in one round trip (missing ones are None)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), list(fields))
        return [{name: (json.loads(value) if value is not None else None)
                 for name, value in zip(fields, values)} for values in pipe.execute()]

    def active_job_ids(self) -> list[str]:
        return sorted(self.redis.smembers(self.keys.active()))

    def job_ids(self, limit: int = 100) -> list[str]:
        return list(self.redis.zrevrange(self.keys.jobs(), 0, limit - 1))

    def update_job(self, job_id: str, pipeline: Any = None, **fields: Any) -> None:
        target = pipeline if pipeline is not None else self.redis
        target.hset(self.keys.job(job_id),
                    mapping=_encode({**_public(fields), "updated_at": now()}))

    def set_job_state(self, job_id: str, state: JobState, *,
                      expect: Collection[JobState] | None = None, **fields: Any) -> bool:
        """Move the job to `state` if it is in one of the `expect`ed states (any, when None),
        and never out of `cancelled`: compare and set, under WATCH, so a task that read the
        job before a cancel cannot move it afterwards. The state and its event change in one
        MULTI (whoever sees the state sees the event). Returns whether the job moved.

        Moving to `cancelled` is refused once finalize began publishing (begin_publishing):
        from then on the file is the job's, and the cancel comes too late."""
        key = self.keys.job(job_id)
        extra = {"finished_at": now()} if state.finished else {}
        fields = _public(fields)  # the event quotes the error too

        def move(pipe: Any) -> bool:
            current, publishing, target, tables = pipe.hmget(key, "state", "publishing",
                                                             "target", "tables")
            was = JobState(json.loads(current)) if current else None
            if was == JobState.CANCELLED or (expect is not None and was not in expect):
                return False
            if state == JobState.CANCELLED and publishing and json.loads(publishing):
                return False
            pipe.multi()
            self.update_job(job_id, pipeline=pipe, state=state.value, **extra, **fields)
            pipe.hdel(key, "publishing")
            if state.finished:
                pipe.srem(self.keys.active(), job_id)
            else:
                pipe.sadd(self.keys.active(), job_id)
            self.add_event(job_id, "job_state", pipeline=pipe, state=state.value,
                           **{k: v for k, v in fields.items() if k == "error"})
            if state.finished or was is None or was.finished:  # ends, or runs again
                self._retain(pipe, job_id, target=json.loads(target) if target else None,
                             tables=fields.get("tables") or json.loads(tables or "[]"),
                             finished=state.finished)
            return True

        return bool(self.redis.transaction(move, key, value_from_callable=True))

    # -- retention ----------------------------------------------------------------------
    def _retain(self, pipe: Any, job_id: str, *, target: str | None, tables: list[str],
                finished: bool) -> None:
        """A job that ends keeps its keys for the retention, then Redis drops them (the
        volume keeps its record: `liteshift resume` restores it); a job that runs again
        (retry, resume) keeps them until it ends again."""
        if finished and not self.retention_s:
            return
        keys = [self.keys.job(job_id), self.keys.events(job_id), self.keys.ended(job_id),
                *(self.keys.table(job_id, name) for name in tables)]
        for name in keys:
            if finished:
                pipe.expire(name, self.retention_s)
            else:
                pipe.persist(name)
        if target:
            pipe.eval(_RETAIN_CLAIM, 1, self.keys.target(target), job_id,
                      self.retention_s if finished else 0)

    def expire_with_job(self, job_id: str, tables: Collection[str],
                        pipeline: Any = None) -> None:
        """The tables' keys (and the set of ended ones) expire when the job's hash does: for
        keys a task creates while the job may be ending."""
        target = pipeline if pipeline is not None else self.redis
        keys = [self.keys.job(job_id), self.keys.ended(job_id),
                *(self.keys.table(job_id, name) for name in tables)]
        target.eval(_EXPIRE_WITH_JOB, len(keys), *keys)

    def forget_expired(self) -> int:
        """Drop from the jobs index the jobs whose keys expired (or Redis lost), so that it
        does not grow for ever. Only jobs created more than the retention ago can have
        expired: the oldest FORGET_BATCH of those are looked at. Returns how many left."""
        cutoff = time.time() - self.retention_s
        ids = self.redis.zrangebyscore(self.keys.jobs(), "-inf", cutoff, start=0,
                                       num=FORGET_BATCH)
        if not ids:
            return 0
        keys = [self.keys.jobs(), *(self.keys.job(job_id) for job_id in ids)]
        return int(self.redis.eval(_FORGET_GONE, len(keys), *keys, *ids))

    def begin_publishing(self, job_id: str) -> bool:
        """The last word before the file is renamed into place (finalize, or a follow's
        cutover): true, and from now on a cancel is refused, if the job is still finalizing
        or following (so not cancelled)."""
        key = self.keys.job(job_id)

        def mark(pipe: Any) -> bool:
            current = pipe.hget(key, "state")
            if not current or JobState(json.loads(current)) not in (JobState.FINALIZING,
                                                                    JobState.FOLLOWING):
                return False
            pipe.multi()
            self.update_job(job_id, pipeline=pipe, publishing=True)
            return True

        return bool(self.redis.transaction(mark, key, value_from_callable=True))

    def wake_follower(self, job_id: str, pipeline: Any = None) -> None:
        """Wake the job's follower now (a cutover or a cancel was asked for), rather than
        at the end of its wait for the source."""
        target = pipeline or self.redis
        target.rpush(self.keys.wake(job_id), "wake")
        target.expire(self.keys.wake(job_id), WAKE_TTL_S)

    def wait_for_wake(self, job_id: str, timeout_s: float) -> bool:
        """Block up to timeout_s, or until wake_follower; True when woken."""
        key = self.keys.wake(job_id)
        if self.redis.blpop([key], timeout=timeout_s) is None:
            return False
        self.redis.delete(key)  # several wakes while busy wake it once
        return True

    def job_state(self, job_id: str) -> JobState | None:
        value = self.redis.hget(self.keys.job(job_id), "state")
        return JobState(json.loads(value)) if value else None

    # -- tables -------------------------------------------------------------------------
    def table(self, job_id: str, table: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.keys.table(job_id, table))
        return _decode(raw) if raw else None

    def tables(self, job_id: str, names: list[str]) -> list[dict[str, Any]]:
        """Every named table's hash that exists, in order. One Lua call and one json.loads:
        the last table's end reads all of its job's tables (finish_if_complete), and with
        hundreds of small tables a reply element and a JSON value per field would be most of
        a task's time (ops/bench/TARGETS.md)."""
        if not names:
            return []
        keys = [self.keys.table(job_id, name) for name in names]
        return list(json.loads(self.redis.eval(_TABLES_AS_JSON, len(keys), *keys)))

    def update_table(self, job_id: str, table: str, pipeline: Any = None, **fields: Any) -> None:
        target = pipeline if pipeline is not None else self.redis
        target.hset(self.keys.table(job_id, table),
                    mapping=_encode({**_public(fields), "updated_at": now()}))

    def set_table_state(self, job_id: str, table: str, state: TableState, *,
                        new_attempt: bool = False, pipeline: Any = None,
                        **fields: Any) -> None:
        """The state, its event and the job's set of ended tables change in one MULTI, so
        the set never disagrees with the hashes (every state change comes through here; a
        table hash written otherwise is `pending`, which is not in the set either). With
        `new_attempt`, the table's `attempts` count grows by one in the same round trip.
        Given a `pipeline` (a MULTI), the commands join it and the caller executes it."""
        fields = _public(fields)
        pipe = pipeline if pipeline is not None else self.redis.pipeline(transaction=True)
        self.update_table(job_id, table, pipeline=pipe, state=state.value, **fields)
        if new_attempt:
            pipe.hincrby(self.keys.table(job_id, table), "attempts", 1)
        if state in ENDED:
            pipe.sadd(self.keys.ended(job_id), table)
        else:
            pipe.srem(self.keys.ended(job_id), table)
        self.add_event(job_id, "table_state", pipeline=pipe, table=table, state=state.value,
                       **{k: v for k, v in fields.items() if k == "error"})
        self.expire_with_job(job_id, [table], pipeline=pipe)
        if pipeline is None:
            pipe.execute()

    def tables_ended(self, job_id: str) -> int:
        """How many of the job's tables are verified or failed: one SCARD, so that each
        table's end need not read every table of the job (n² reads for n tables)."""
        return int(self.redis.scard(self.keys.ended(job_id)))

    def add_bytes_done(self, job_id: str, table: str, size: int, pipeline: Any = None) -> None:
        """Bytes committed for the table, resumed chunks counted again: the work done."""
        target = pipeline if pipeline is not None else self.redis
        target.hincrby(self.keys.table(job_id, table), "bytes_done", size)

    # -- finalize's steps ---------------------------------------------------------------
    def set_finalize_progress(self, job_id: str, progress: dict[str, Any],
                              pipeline: Any = None) -> None:
        """The job's `finalize` field: the step under way with done/total, and the steps
        finished with their seconds (worker/jobs/finalize_steps.py)."""
        self.update_job(job_id, pipeline=pipeline, finalize=progress)

    # -- metrics ------------------------------------------------------------------------
    def observe(self, name: str, value: float, label: str = "", pipeline: Any = None) -> None:
        """Count `value` in histogram `name` (one of HISTOGRAMS), under `label`."""
        bounds = HISTOGRAMS[name]
        upper = next((repr(float(b)) for b in bounds if value <= b), "+Inf")
        target = pipeline if pipeline is not None else self.redis
        key = self.keys.histogram(name)
        target.hincrby(key, f"{label}|{upper}", 1)
        target.hincrbyfloat(key, f"{label}|sum", value)
        target.hincrby(key, f"{label}|count", 1)

    def histogram(self, name: str) -> dict[str, dict[str, Any]]:
        """{label: {"buckets": [(upper bound, cumulative count)…], "sum": s, "count": n}}"""
        bounds = [repr(float(b)) for b in HISTOGRAMS[name]] + ["+Inf"]
        found: dict[str, dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.keys.histogram(name)).items():
            label, _, part = field.rpartition("|")
            found.setdefault(label, {})[part] = float(value)
        out = {}
        for label, parts in found.items():
            running, buckets = 0.0, []
            for bound in bounds:
                running += parts.get(bound, 0.0)
                buckets.append((bound, running))
            out[label] = {"buckets": buckets, "sum": parts.get("sum", 0.0),
                          "count": parts.get("count", 0.0)}
        return out

    # -- events -------------------------------------------------------------------------
    def add_event(self, job_id: str, event: str, pipeline: Any = None, **fields: Any) -> None:
        target = pipeline if pipeline is not None else self.redis
        target.xadd(self.keys.events(job_id), _encode({"event": event, "at": now(), **fields}),
                    maxlen=EVENTS_MAX, approximate=True)

    def events(self, job_id: str, after: str = "0-0", count: int = 500) -> list[tuple[str, dict]]:
        return [(event_id, _decode(fields)) for event_id, fields
                in self.redis.xrange(self.keys.events(job_id), min=f"({after}"
                                     if after != "0-0" else "-", count=count)]

    # -- targets ------------------------------------------------------------------------
    def claim_target(self, target: str, job_id: str) -> str | None:
        """Reserve a target name for one job at a time; returns the holder if taken."""
        key = self.keys.target(target)
        if self.redis.set(key, job_id, nx=True):
            return None
        holder = self.redis.get(key)
        if holder and holder != job_id:
            state = self.job_state(holder)
            if state is None or state.finished:  # stale claim from a finished or lost job
                self.redis.set(key, job_id)
                return None
            return holder
        return None

    def release_target(self, target: str, job_id: str) -> None:
        key = self.keys.target(target)
        if self.redis.get(key) == job_id:
            self.redis.delete(key)

    # -- workers ------------------------------------------------------------------------
    def announce_worker(self, name: str, info: dict[str, Any], ttl_s: float) -> None:
        """Say this worker runs, and how (its compiled parts): refreshed while it runs, gone
        ttl_s after it stops."""
        self.redis.set(self.keys.worker(name), json.dumps(info), px=max(1, int(ttl_s * 1000)))

    def forget_worker(self, name: str) -> None:
        self.redis.delete(self.keys.worker(name))

    def any_lease(self, job_id: str, names: Collection[str]) -> bool:
        """Whether any of these leases of the job is held (a worker is on that work now)."""
        keys = [self.keys.lease(job_id, name) for name in names]
        return bool(keys) and bool(self.redis.exists(*keys))

    def any_worker(self, queue: str) -> bool:
        """Whether some worker consuming `queue` runs (announce_worker's entries live only
        while it does; one that does not say its queue counts)."""
        return any(info.get("queue", queue) == queue for info in self.workers().values())

    def workers(self) -> dict[str, dict[str, Any]]:
        start = len(self.keys.worker(""))
        names = sorted(self.redis.scan_iter(match=self.keys.worker("*"), count=1000))
        values = self.redis.mget(names) if names else []
        return {key[start:]: json.loads(value) for key, value in zip(names, values, strict=True)
                if value is not None}


def _public(fields: dict[str, Any]) -> dict[str, Any]:
    """An error, as the API and the CLI will show it: no server paths."""
    error = fields.get("error")
    return {**fields, "error": hide_paths(error)} if isinstance(error, str) else fields


def _encode(fields: dict[str, Any]) -> dict[str, str]:
    """Every field is JSON, strings too, so that a table named "123" stays a string."""
    return {key: json.dumps(value.value if isinstance(value, Enum) else value)
            for key, value in fields.items()}


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    return {key: json.loads(value) for key, value in raw.items()}
