"""Replication slots left behind: a slot holds WAL on the source until it is dropped, so
the reaper looks for follow jobs that ended without dropping theirs (a worker killed as the
job failed, a source away at that moment) and drops them, and reports liteshift slots on
those sources that no job it knows of owns."""

from __future__ import annotations

import time
from typing import Any

from worker import sources
from worker.core.config import Settings
from worker.core.errors import LiteshiftError
from worker.core.logs import get_logger
from worker.follow import cutover
from worker.sources.sealing import unseal
from worker.sources.url import parse_source_url
from worker.state.store import JobState, StateStore

SWEEP_EVERY_S = 15.0
RECENT_JOBS = 200
_last = 0.0


def sweep(settings: Settings, store: StateStore, *, force: bool = False) -> dict[str, Any]:
    """At most every SWEEP_EVERY_S: returns what was dropped and what was found unowned."""
    global _last
    if not force and time.monotonic() - _last < SWEEP_EVERY_S:
        return {}
    _last = time.monotonic()
    log = get_logger(step="reaper")
    jobs = [j for j in (store.job(i) for i in store.job_ids(RECENT_JOBS))
            if j and cutover.follows(j) and j.get("source_kind") == "postgres"]
    dropped, unowned = [], []
    known = {j["id"] for j in jobs}
    seen_sources: dict[str, dict[str, Any]] = {}
    for job in jobs:
        seen_sources.setdefault(job["source_sealed"], job)
        if JobState(job["state"]).finished and not job.get("follow_ended"):
            try:
                dropped += cutover.end_on_source(settings, store, job)
            except LiteshiftError as exc:
                log.warning("follow_slot_not_dropped", job_id=job["id"], error=str(exc))
    for sealed in seen_sources:
        try:
            unowned += _unowned(settings, sealed, known, store)
        except LiteshiftError as exc:
            log.warning("slot_sweep_failed", error=str(exc))
    if dropped:
        log.warning("forgotten_slots_dropped", slots=dropped)
    if unowned:
        log.warning("unowned_slots_found", slots=unowned,
                    hint="liteshift_<job>_… slots no known job owns: drop them with "
                         "pg_drop_replication_slot() if no liteshift runs against this source")
    return {"dropped": dropped, "unowned": unowned}


def _unowned(settings: Settings, sealed: str, known: set[str], store: StateStore) -> list[str]:
    from worker.sources.postgres import changes as pg_changes

    source = parse_source_url(unseal(settings, sealed), allow=settings.host_allow)
    with sources.for_kind(source.kind).connect(source,
                                               timeout_s=settings.connect_timeout_s) as conn:
        slots = pg_changes.liteshift_slots(conn)
    out = []
    for name, _active in slots:
        job_id = name.split("_")[1] if name.count("_") >= 2 else ""
        if job_id not in known and store.job(job_id) is None:
            out.append(name)
    return out
