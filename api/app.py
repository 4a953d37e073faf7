"""The liteshift HTTP API: submit, watch, retry, cancel and fetch jobs.

Handlers are thin: parse, call one function from worker.jobs.control, map its errors. Run it with
`liteshift api`, or `uvicorn --factory api.app:app_factory`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import error_handlers
from api.error_handlers import ApiError
from api.guards import BearerAuth, BodyLimit
from api.metrics import registry_for
from api.models import CutoverRequest, JobRequest, RetryRequest, VerifyRequest
from api.paging import (
    Cursor,
    Limit,
    Since,
    States,
    check_cursor,
    check_limit,
    report_page,
    table_query,
    tables_link,
)
from api.queue import TaskQueue
from api.snapshot import download_copy
from api.source_check import Probe, keep_one_ready, run_probe, scrub
from worker.core import filemodes, serverpaths
from worker.core.config import Settings, get_settings
from worker.core.errors import ConfigError, InputError, LiteshiftError, TargetConflict
from worker.core.logs import configure_logging
from worker.core.redact import redact_value
from worker.jobs import control
from worker.jobs.control import Send
from worker.sources.url import check_reachable, parse_source_url, resolve_source
from worker.state import recorded
from worker.state.jobfiles import JOB_ID_RE
from worker.state.pages import DEFAULT_PAGE, TableQuery
from worker.state.store import JobState, StateStore
from worker.state.targets import published_path, report_path


@dataclass
class Services:
    """What the handlers work with; tests pass fakes for `send` and `probe`."""

    settings: Settings
    store: StateStore
    send: Send
    probe: Probe
    probes_running: int = 0  # handlers run on one event loop: no lock needed


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Deps = Annotated[Services, Depends(_services)]
JobId = Annotated[str, Path(pattern=f"^{JOB_ID_RE.pattern}$", description="job id")]

router = APIRouter()


@router.post("/jobs", status_code=202, summary="Submit a job: copy a source into <target>.db")
async def submit(body: JobRequest, svc: Deps) -> dict[str, str]:
    try:
        # Everything that can be refused without the source, before a probe is started
        control.check_request(svc.settings, target=body.target, tables=body.tables,
                              exclude=body.exclude,
                              options=body.options.model_dump(exclude_none=True))
        url = resolve_source(svc.settings.sources, body.source)
        parsed = parse_source_url(url, allow=svc.settings.host_allow)
        tables = await _probe(svc, parsed, url, body.schema_)
        job_id = await run_in_threadpool(_submit, svc, body, tables)
    except TargetConflict as exc:
        raise ApiError(409, scrub(str(exc), body.source)) from None
    except InputError as exc:
        raise ApiError(422, scrub(str(exc), body.source)) from None
    except LiteshiftError as exc:
        raise ApiError(422, scrub(str(exc), body.source)) from None
    return {"job_id": job_id, "state": JobState.QUEUED.value}


async def _probe(svc: Services, parsed: Any, url: str, schema: str) -> list[str]:
    """The source check, at most LITESHIFT_PROBE_CONCURRENCY at once: each holds a process
    for up to the probe timeout, so unbounded they let a flood of submits to a silent host
    exhaust the API's memory."""
    if svc.probes_running >= svc.settings.probe_concurrency:
        raise ApiError(503, f"{svc.probes_running} source checks are running, the most "
                       "LITESHIFT_PROBE_CONCURRENCY allows: submit again in a few seconds",
                       headers={"Retry-After": str(svc.settings.connect_timeout_s)})
    svc.probes_running += 1
    try:
        await run_in_threadpool(check_reachable, parsed, svc.settings.connect_timeout_s)
        return await svc.probe(svc.settings, url, schema)
    finally:
        svc.probes_running -= 1


def _submit(svc: Services, body: JobRequest, source_tables: list[str]) -> str:
    return control.submit_job(
        svc.settings, svc.store, svc.send, source=body.source, target=body.target,
        schema=body.schema_, tables=body.tables, exclude=body.exclude, replace=body.replace,
        options=body.options.model_dump(exclude_none=True), source_tables=source_tables)


@router.get("/jobs", summary="List recent jobs, newest first, a page at a time (the next "
            "page's URL in the Link header)")
def jobs(svc: Deps, response: Response, limit: Limit = None,
         cursor: Cursor = 0) -> list[dict[str, Any]]:
    size = check_limit(limit, default=50, what="jobs")
    found, next_cursor = control.jobs_page(svc.store, limit=size, cursor=check_cursor(cursor))
    if next_cursor is not None:
        response.headers["Link"] = f'</jobs?cursor={next_cursor}&limit={size}>; rel="next"'
    return [redact_value(job) for job in found]


@router.get("/jobs/{job_id}", summary="A job: its summary over all its tables, and the first "
            "page of its tables (`next` links the rest)")
def job(job_id: JobId, svc: Deps, limit: Limit = None, cursor: Cursor = 0,
        state: States = None, since: Since = None) -> dict[str, Any]:
    query = table_query(limit=limit, cursor=cursor, states=state, since=since,
                        smallest_limit=0)
    view = _view(svc, job_id, query)
    view["next"] = tables_link(job_id, query, view["next_cursor"])
    return redact_value(view)  # type: ignore[no-any-return]


@router.get("/jobs/{job_id}/tables", summary="A page of a job's tables, in plan order, "
            "optionally only those in some states or changed since a time")
def job_tables(job_id: JobId, svc: Deps, limit: Limit = None, cursor: Cursor = 0,
               state: States = None, since: Since = None) -> dict[str, Any]:
    query = table_query(limit=limit, cursor=cursor, states=state, since=since)
    view = _view(svc, job_id, query)
    return redact_value({  # type: ignore[no-any-return]
        "job_id": job_id, "state": view.get("state"), "as_of": view["as_of"],
        "tables_total": view["tables_total"], "tables_matching": view["tables_matching"],
        "tables": view["tables"], "next_cursor": view["next_cursor"],
        "next": tables_link(job_id, query, view["next_cursor"])})


def _view(svc: Services, job_id: str, query: TableQuery) -> dict[str, Any]:
    as_of = time.time()  # taken before the read: a later `since=as_of` misses no change
    try:
        view = control.job_view(svc.store, job_id, query)
    except InputError:
        view = _recorded(svc, job_id, query)
    view["as_of"] = round(as_of, 3)
    return view


def _recorded(svc: Services, job_id: str, query: TableQuery) -> dict[str, Any]:
    """A finished job Redis let go, from its record on the volume (read-only); else 404."""
    view = recorded.job_view(svc.settings, job_id, query,
                             why=control.forgotten_why(svc.settings))
    if view is None:
        _require_job(svc, job_id)  # 404 saying why, unless Redis has the job again
        raise ApiError(409, f"job {job_id} was restored to Redis meanwhile: ask again")
    return view


@router.post("/jobs/{job_id}/retry", status_code=202, summary="Retry failed tables")
def retry(job_id: JobId, svc: Deps, body: RetryRequest | None = None) -> dict[str, Any]:
    _require_job(svc, job_id)
    try:
        retried = control.retry_job(svc.store, svc.send, job_id, body.tables if body else None)
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return {"job_id": job_id, "retried": retried}


@router.post("/jobs/{job_id}/cancel", status_code=202, summary="Cancel a running job")
def cancel(job_id: JobId, svc: Deps) -> dict[str, str]:
    _require_job(svc, job_id)
    try:
        control.cancel_job(svc.settings, svc.store, job_id, svc.send)
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return {"job_id": job_id, "state": JobState.CANCELLED.value}


@router.post("/jobs/{job_id}/cutover", status_code=202,
             summary="Publish a following job's file once it has caught up with the source")
def cutover(job_id: JobId, svc: Deps, body: CutoverRequest | None = None) -> dict[str, Any]:
    _require_job(svc, job_id)
    try:
        asked = control.request_cutover(svc.store, svc.send, job_id,
                                        timeout_s=(body or CutoverRequest()).timeout_s)
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return {"job_id": job_id, "cutover": asked}


@router.post("/jobs/{job_id}/resume", status_code=202,
             summary="Resume after a crash or a Redis loss (rebuilds state from the volume)")
def resume(job_id: JobId, svc: Deps) -> dict[str, str]:
    try:
        control.request_resume(svc.settings, svc.store, svc.send, job_id)
    except InputError as exc:
        raise ApiError(404, str(exc)) from None
    return {"job_id": job_id, "state": "resuming"}


@router.post("/jobs/{job_id}/verify", status_code=202,
             summary="Re-read the published file (and the source) and compare checksums")
def verify(job_id: JobId, svc: Deps, body: VerifyRequest | None = None) -> dict[str, str]:
    _require_job(svc, job_id)
    try:
        control.request_verify(svc.store, svc.send, job_id,
                               against_source=bool(body and body.source))
    except InputError as exc:
        raise ApiError(409, str(exc)) from None
    return {"job_id": job_id, "verification": "running"}


@router.get("/jobs/{job_id}/report", summary="The verification report of a finished job, "
            "its tables a page at a time (`next` links the rest)")
def report(job_id: JobId, svc: Deps, limit: Limit = None, cursor: Cursor = 0) -> JSONResponse:
    size, start = check_limit(limit, default=DEFAULT_PAGE), check_cursor(cursor)
    if svc.store.job(job_id) is None:
        return _recorded_report(svc, job_id, start, size)
    target = _require_done(svc, job_id, "report")
    path = report_path(svc.settings.data_dir, target)
    if not path.exists():
        raise ApiError(404, f"job {job_id} is done but its report {path.name} is missing")
    content = json.loads(path.read_text())
    # A later job with --replace rewrites the same file; do not pass its report off as ours.
    other = content.get("job_id") if isinstance(content, dict) else None
    if other not in (None, job_id):
        raise ApiError(404, f"target {target!r} was since rewritten by job {other}; "
                       f"ask for that job's report")
    return JSONResponse(redact_value(report_page(job_id, content, start, size)))


def _recorded_report(svc: Services, job_id: str, start: int, size: int) -> JSONResponse:
    """The report of a done job Redis let go, read from the volume and marked so."""
    view = _recorded(svc, job_id, TableQuery(limit=0))
    if view["state"] != JobState.DONE.value:
        raise ApiError(404, f"job {job_id} ended {view['state']}: only a done job has a report")
    content = recorded.finished_report(svc.settings, job_id, view["target"])
    if content is None:
        raise ApiError(404, f"job {job_id} is done but its report {view['target']}.report.json "
                       "is gone or was since rewritten by a later job (--replace)")
    page = {**report_page(job_id, content, start, size), "from_volume": True,
            "note": view["note"]}
    return JSONResponse(redact_value(page))


@router.get("/jobs/{job_id}/download", response_class=FileResponse,
            summary="The published SQLite file: resumable (Range, If-Range on its ETag), "
            "its SHA-256 in X-Content-SHA256 and Repr-Digest")
def download(job_id: JobId, svc: Deps) -> FileResponse:
    target = _require_done(svc, job_id, "file")
    path = published_path(svc.settings.data_dir, target)
    if not path.exists():
        raise ApiError(404, f"job {job_id} is done but {path.name} is gone (moved or "
                       "deleted?)")
    copy = download_copy(path, svc.settings.state_dir / "downloads")
    digest = base64.b64encode(bytes.fromhex(copy.sha256)).decode()
    # The ETag is the content's hash: a resumed download (If-Range) gets the rest of the same
    # bytes, or the whole new file if it changed meanwhile.
    return FileResponse(copy.path, media_type="application/vnd.sqlite3",
                        filename=f"{target}.db",
                        headers={"ETag": f'"{copy.sha256}"', "X-Content-SHA256": copy.sha256,
                                 "Repr-Digest": f"sha-256=:{digest}:"})


@router.get("/metrics", summary="Prometheus metrics: jobs by state, rows and bytes per "
            "table, chunk commit and finalize step durations, follow lag",
            response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", summary="Liveness: answers 200 when Redis answers; says how many "
            "workers run and whether any lacks its compiled parts")
def healthz(svc: Deps) -> dict[str, Any]:
    svc.store.redis.ping()  # a RedisError becomes a 503 in api.error_handlers
    workers = svc.store.workers()
    # Open without a token (it is the container's health check): counts, no names.
    slow = sum(1 for info in workers.values() if info.get("problems"))
    return {"redis": "ok", "workers": len(workers),
            "compiled_parts": "ok" if not slow else
            f"missing on {slow} worker(s), which copy 2-3x slower: `liteshift doctor` says "
            "which parts and how to fix it"}


@router.get("/workers", summary="The running workers and their compiled parts")
def workers(svc: Deps) -> dict[str, Any]:
    return svc.store.workers()


def _require_job(svc: Services, job_id: str) -> dict[str, Any]:
    found = svc.store.job(job_id)
    if found is None and (svc.settings.job_dir(job_id) / "job.json").exists():
        raise ApiError(404, f"job {job_id} is on the volume but its live state is gone from "
                       f"Redis: {control.forgotten_why(svc.settings)}. `liteshift resume "
                       f"{job_id}` rebuilds it from the volume")
    if found is None:
        raise ApiError(404, f"no job {job_id!r} in Redis or on the data volume: "
                       "`liteshift jobs` lists the recent ones")
    return found


def _require_done(svc: Services, job_id: str, what: str) -> str:
    found = _require_job(svc, job_id)
    if found.get("state") != JobState.DONE.value:
        raise ApiError(404, f"job {job_id} is {found.get('state')}: its {what} is there once "
                       "it is done (`liteshift watch` follows it)")
    return str(found["target"])


def create_app(settings: Settings | None = None, *, store: StateStore | None = None,
               send: Send | None = None, probe: Probe | None = None) -> FastAPI:
    """Build the app. Everything it talks to can be replaced, for tests."""
    settings = settings or get_settings()
    filemodes.configure(settings.file_group)
    serverpaths.configure(settings.data_dir)
    app = FastAPI(title="liteshift", version="0.1.0",
                  description="Move a live PostgreSQL or MySQL/MariaDB database into a verified "
                              "SQLite file.")
    app.state.services = Services(
        settings=settings, store=store or StateStore.from_settings(settings),
        send=send or TaskQueue(settings).send, probe=probe or run_probe)
    if probe is None:
        keep_one_ready()  # the first submission need not wait for the drivers' imports
    error_handlers.install(app, redis_url=settings.redis_url)
    app.state.metrics = registry_for(app.state.services.store)
    app.include_router(router)
    app.add_middleware(BodyLimit)
    if settings.api_token:
        app.add_middleware(BearerAuth, token=settings.api_token)  # added last: runs first
    return app


def app_factory() -> FastAPI:
    """Entry point for uvicorn --factory: a bad setting stops it with a message, no trace."""
    try:
        settings = get_settings()
    except ConfigError as exc:
        raise SystemExit(f"liteshift: error: {exc}") from None
    configure_logging(settings.log_format)
    return create_app(settings)
