"""Start and end a follow: the built file kept in the job's directory, the cutover that
publishes it, and the end of the follow on the source.

Cutover is asked for through the job (`request`, from the API: no driver there) and done by
the job's follower, the one writer of the file: it reads the source's position once it sees
the request (the app's writes have stopped by then), goes on applying until it has every
transaction committed before that position, runs the final checks, drops the follow's
tables and publishes the file as finalize does, then drops the slot. A follower killed at
any point resumes the cutover from the file: the follow's tables gone means the checks
passed; the file at `<target>.db` with the inode recorded just before the rename means it
was published (finalize.published_earlier).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from worker import sources
from worker.core.config import Settings
from worker.core.errors import JobCancelled, LiteshiftError, VerificationFailed
from worker.core.logs import get_logger
from worker.core.model import TablePlan
from worker.follow import position
from worker.follow.changes import ChangeStream
from worker.jobs import finalize
from worker.sqlite.build import build_database, remove_build
from worker.state.jobfiles import read_json, remove_work_files, write_json_atomic, write_outcome
from worker.state.manifest import read_manifest
from worker.state.store import JobState, StateStore
from worker.state.targets import report_path

BUILT = "follow.json"  # the build's checks and objects, for the report at cutover
DEFAULT_TIMEOUT_S = 60.0


def followed_path(job_dir: Path, target: str) -> Path:
    return finalize.partial_path(job_dir, target)


def follows(job: dict[str, Any]) -> bool:
    return bool((job.get("options") or {}).get("follow"))


# -- start: finalize's part for a follow job ---------------------------------------------

def begin(settings: Settings, store: StateStore, job: dict[str, Any],
          tables: list[dict[str, Any]]) -> None:
    """Build the file as finalize does (indexes, checks) but keep it in the job's directory,
    record where the follow starts in it, and hand the job to its follower."""
    job_dir = settings.job_dir(job["id"])
    _, plans, objects = read_manifest(job_dir)
    path = followed_path(job_dir, job["target"])
    checks = build_database(path, plans, job_dir / "tables", objects)
    write_json_atomic(job_dir / BUILT, {"checks": checks, "objects": objects})
    states = {t["name"]: t for t in tables}
    counts = {p.name: (int(checks["rows"][p.name]), int(states[p.name]["checksum"], 16))
              for p in plans}
    lossy = {p.name: dict(states[p.name].get("lossy") or {}) for p in plans}
    db = sqlite3.connect(path)
    try:
        position.start(db, counts, resume=0, lossy=lossy)
    finally:
        db.close()
    store.set_job_state(job["id"], JobState.FOLLOWING, follow={"lag_bytes": None,
                                                                "changes_applied": 0})
    get_logger(job_id=job["id"], step="follow").info("job_following", file=str(path))


# -- the follower's side ---------------------------------------------------------------

def target(store: StateStore, job: dict[str, Any], stream: ChangeStream) -> int | None:
    """The source position cutover waits for, read once the request is seen."""
    asked = job.get("cutover") or {}
    if asked.get("state") != "waiting":
        return None
    if asked.get("target") is None:
        asked = {**asked, "target": stream.current_position()}
        store.update_job(job["id"], cutover=asked)
        get_logger(job_id=job["id"], step="cutover").info(
            "cutover_target", position=asked["target"],
            since_request_s=round(time.time() - float(asked["requested_at"]), 3))
        job["cutover"] = asked
    return int(asked["target"])


def expired(store: StateStore, job: dict[str, Any]) -> bool:
    """A cutover that did not catch up in time is withdrawn; the follow goes on."""
    asked = job.get("cutover") or {}
    if time.time() - float(asked.get("requested_at") or 0) <= float(asked.get("timeout_s")
                                                                   or DEFAULT_TIMEOUT_S):
        return False
    store.update_job(job["id"], cutover={**asked, "state": "timed_out",
                                         "error": "the follow did not catch up with the "
                                                  "source in time; it goes on following"})
    job["cutover"] = {}
    return True


def finish(settings: Settings, store: StateStore, job: dict[str, Any], db: sqlite3.Connection,
           stream: ChangeStream, plans: Iterable[TablePlan]) -> str:
    """The file has every change up to the cutover's position: check it, publish it."""
    started = time.monotonic()
    _final_checks(db)
    get_logger(job_id=job["id"], step="cutover").info(
        "cutover_checked", seconds=round(time.monotonic() - started, 3),
        since_request_s=round(time.time() - float(job["cutover"]["requested_at"]), 3))
    lossy = position.lossy(db)
    write_json_atomic(settings.job_dir(job["id"]) / "follow_counts.json",
                      {k: [*v, lossy.get(k, {})] for k, v in position.counts(db).items()})
    position.finish(db)
    return publish(settings, store, job, db, stream, list(plans))


def _final_checks(db: sqlite3.Connection) -> None:
    quick = [r[0] for r in db.execute("PRAGMA quick_check")]
    if quick != ["ok"]:
        raise VerificationFailed(f"PRAGMA quick_check failed on the followed file: {quick[:5]}")
    violations = db.execute("PRAGMA foreign_key_check").fetchmany(5)
    if violations:
        shown = "; ".join(f"{t} rowid {rowid} → {parent}" for t, rowid, parent, _ in violations)
        raise VerificationFailed(f"PRAGMA foreign_key_check found rows whose parent is "
                                 f"missing after following the source ({shown})")


def publish(settings: Settings, store: StateStore, job: dict[str, Any], db: sqlite3.Connection,
            stream: ChangeStream, plans: list[TablePlan]) -> str:
    job_dir = settings.job_dir(job["id"])
    db.close()  # the file is complete: no journal may be left beside it
    path = followed_path(job_dir, job["target"])
    built = read_json(job_dir / BUILT) or {}
    counts = read_json(job_dir / "follow_counts.json") or {}
    checks = {**built.get("checks", {}), "rows": {k: v[0] for k, v in counts.items()},
              "quick_check": "ok"}
    tables = {name: {"checksum": f"{v[1]:016x}", "lossy": v[2] if len(v) > 2 else {}}
              for name, v in counts.items()}
    report = finalize.build_report(job, plans, built.get("objects", []), tables, checks)
    if not store.begin_publishing(job["id"]):  # cancelled: nothing may be published
        raise JobCancelled("job cancelled before its cutover published", job_id=job["id"])
    final, backup = finalize.publish(
        path, settings.data_dir, job["target"], replace=bool(job.get("replace")),
        intent=lambda backup: finalize._record_intent(job_dir, path, report, backup))
    _done(settings, store, job, final, backup, report)
    stream.end()
    return "done"


def published_already(settings: Settings, store: StateStore, job: dict[str, Any]) -> bool:
    """Killed after the rename: finish the job from the published file."""
    job_dir = settings.job_dir(job["id"])
    done = finalize.published_earlier(job_dir, settings.data_dir, job["target"])
    if done is None:
        return False
    final, backup, report = done
    _done(settings, store, job, final, backup, report)
    end_on_source(settings, store, job)
    return True


def _done(settings: Settings, store: StateStore, job: dict[str, Any], final: Path,
          backup: str | None, report: dict[str, Any]) -> None:
    job_dir = settings.job_dir(job["id"])
    asked = job.get("cutover") or {}
    downtime = round(time.time() - float(asked.get("requested_at") or time.time()), 3)
    report["published"] = {"path": final.name, "replaced_file_kept_as": backup,
                           "bytes": final.stat().st_size}
    report["cutover"] = {"downtime_s": downtime, "requested_at": asked.get("requested_at"),
                         "source_position": asked.get("target")}
    write_json_atomic(report_path(settings.data_dir, job["target"]), report)
    store.set_job_state(job["id"], JobState.DONE, published=final.name,
                        report=report_path(settings.data_dir, job["target"]).name,
                        backup=backup, error=None,
                        cutover={**asked, "state": "done", "downtime_s": downtime})
    write_outcome(job_dir, JobState.DONE.value, published=final.name, backup=backup)
    (job_dir / finalize.PUBLISHING).unlink(missing_ok=True)
    store.release_target(job["target"], job["id"])
    remove_work_files(job_dir)
    get_logger(job_id=job["id"], step="cutover").info("job_published", path=str(final),
                                                      downtime_s=downtime)


# -- the end of a follow on the source ---------------------------------------------------

def end_follow(settings: Settings, store: StateStore, job: dict[str, Any],
               stream: ChangeStream, db: sqlite3.Connection) -> None:
    """Cancelled: the slot goes, and the followed file."""
    stream.end()
    store.update_job(job["id"], follow_ended=True)
    db.close()
    remove_build(followed_path(settings.job_dir(job["id"]), job["target"]))


def end_on_source(settings: Settings, store: StateStore, job: dict[str, Any]) -> list[str]:
    """Drop the job's slots and publication (a job that ended while no follower ran)."""
    if not follows(job) or job.get("follow_ended") or job.get("source_kind") != "postgres":
        return []
    from worker.sources.postgres import changes as pg_changes
    from worker.sources.sealing import unseal
    from worker.sources.url import parse_source_url

    source = parse_source_url(unseal(settings, job["source_sealed"]),
                              allow=settings.host_allow)
    with sources.for_kind(source.kind).connect(source,
                                               timeout_s=settings.connect_timeout_s) as conn:
        dropped = pg_changes.end_follow(conn, job_id=job["id"])
    store.update_job(job["id"], follow_ended=True)
    if dropped:
        get_logger(job_id=job["id"], step="follow").info("follow_slots_dropped",
                                                         slots=dropped)
    return dropped


def end_failed(settings: Settings, store: StateStore, job: dict[str, Any]) -> None:
    """A follow job that failed: its slot dropped now, best effort, rather than left holding
    the source's WAL until a reaper's sweep (none runs once every worker stopped). The
    sweep stays the backstop: it tries again while `follow_ended` is not set."""
    try:
        end_on_source(settings, store, job)
    except LiteshiftError as exc:
        get_logger(job_id=job["id"], step="follow").warning("follow_end_failed",
                                                            error=str(exc))
