"""`liteshift`: submit and follow jobs through the API, and start the API and the workers.

Every command opens the API client, makes one call and prints the result; an error is one
`liteshift: error: …` line on stderr with exit code 2 (refused) or 1 (could not talk).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.cli import render, watch
from api.cli.client import ApiClient, CliError
from worker.core.config import Settings, get_settings
from worker.core.errors import ConfigError

#: Tables per request when the CLI reads them all (the API's largest page).
ALL_PAGE = 1000


@dataclass
class Context:
    settings: Settings
    http: httpx.Client | None = None
    _client: ApiClient | None = field(default=None, init=False)

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            self._client = ApiClient(self.settings, self.http)
        return self._client


def cmd_submit(args: argparse.Namespace, ctx: Context) -> int:
    source = sys.stdin.readline().strip() if args.source_url == "-" else args.source_url
    options = {"chunk_rows": args.chunk_rows} if args.chunk_rows else {}
    options.update(_value_options(args))
    body = {"source": source, "target": args.target, "schema": args.schema,
            "tables": args.table or None, "exclude": args.exclude or [],
            "replace": args.replace, "options": options}
    job_id = ctx.client.post("/jobs", body)["job_id"]
    print(job_id)  # alone on stdout, so that JOB=$(liteshift submit ...) works
    _note(f"job {job_id} queued; follow it with `liteshift watch {job_id}`")
    return 0


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    """The summary and the tables that matter: every table of a small job; of a big one,
    those failed or copying, unless --all. --json prints one document with every table."""
    every = args.all or args.json
    job = ctx.client.get(f"/jobs/{args.job}", **({"limit": ALL_PAGE} if every else {}))
    if every:
        job["tables"] = _all_pages(ctx.client, job["tables"], job.get("next"))
        job.update(tables_matching=len(job["tables"]), next_cursor=None, next=None)
    elif job.get("next"):
        shown = ctx.client.get(f"/jobs/{args.job}/tables", state=["failed", "copying"])
        job["tables"] = shown["tables"]
    print(json.dumps(job, indent=2) if args.json else render.status(job))
    return 0


def _all_pages(client: ApiClient, first: list[Any], link: str | None) -> list[Any]:
    """`first`, then the `tables` of each page `next` links to, until the last."""
    found = list(first)
    while link:
        page = client.get(link)
        found += page["tables"]
        link = page.get("next")
    return found


def cmd_doctor(args: argparse.Namespace, ctx: Context) -> int:
    """Exit 1 when no worker runs or one lacks a compiled part (it copies much slower)."""
    workers = ctx.client.get("/workers")
    print(render.workers(workers))
    return 0 if workers and not any(info.get("problems") for info in workers.values()) else 1


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    job = watch.watch(ctx.client.get, args.job, interval_s=args.interval, every_s=args.every)
    return _finished(job)


def _finished(job: dict[str, Any]) -> int:
    state = job["state"]
    if state == "done":
        _note(f"job {job['id']} done: {job.get('target')}.db is published")
    else:
        _note(f"error: job {job['id']} {state}: {job.get('error') or 'no reason recorded'}")
    return watch.FINISHED[state]


def cmd_jobs(args: argparse.Namespace, ctx: Context) -> int:
    items = ctx.client.get("/jobs", limit=args.limit)
    print(json.dumps(items, indent=2) if args.json else render.jobs(items))
    return 0


def cmd_retry(args: argparse.Namespace, ctx: Context) -> int:
    answer = ctx.client.post(f"/jobs/{args.job}/retry", {"tables": args.table or None})
    retried = answer.get("retried") or []
    print(f"job {args.job}: retrying " + (", ".join(retried) if retried
                                          else "(planning or finalizing again)"))
    return 0


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.post(f"/jobs/{args.job}/cancel")
    print(f"job {args.job} cancelled")
    return 0


def cmd_cutover(args: argparse.Namespace, ctx: Context) -> int:
    """Ask for the cutover, then wait until the file is published (or cutover gave up)."""
    ctx.client.post(f"/jobs/{args.job}/cutover", {"timeout_s": args.timeout})
    while True:
        time.sleep(0.1)
        job = ctx.client.get(f"/jobs/{args.job}")
        asked = job.get("cutover") or {}
        if job["state"] == "done":
            print(f"job {args.job}: published {job.get('published')}; downtime "
                  f"{asked.get('downtime_s')} s (from the cutover request to the published "
                  "file)")
            return 0
        if job["state"] in ("failed", "cancelled"):
            raise CliError(f"job {args.job} {job['state']}: {job.get('error')}", code=1)
        if asked.get("state") == "timed_out":
            raise CliError(f"job {args.job}: cutover gave up after {args.timeout} s: "
                           f"{asked.get('error')}", code=1)


def cmd_resume(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.post(f"/jobs/{args.job}/resume")
    _note(f"job {args.job}: resuming; follow it with `liteshift watch {args.job}`")
    return 0


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    ctx.client.post(f"/jobs/{args.job}/verify", {"source": args.source})
    while True:  # the worker writes the result into the job
        time.sleep(0.5)
        result = ctx.client.get(f"/jobs/{args.job}").get("verification") or {}
        if result.get("state") not in (None, "running"):
            break
    print(json.dumps(result, indent=2) if args.json else render.verification(result))
    return 0 if result["state"] == "ok" else 1


def cmd_report(args: argparse.Namespace, ctx: Context) -> int:
    report = ctx.client.get(f"/jobs/{args.job}/report", limit=ALL_PAGE)
    if isinstance(report, dict) and "tables" in report:  # every table and object
        link = report.get("next")
        while link:
            page = ctx.client.get(link)
            report["tables"] += page["tables"]
            report["objects"] = (report.get("objects") or []) + (page.get("objects") or [])
            link = page.get("next")
        for key in ("tables_total", "next_cursor", "next"):
            report.pop(key, None)
    print(json.dumps(report, indent=2))
    return 0


def cmd_download(args: argparse.Namespace, ctx: Context) -> int:
    from api.cli.download import download

    out = Path(args.output)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists: pass --force to replace it, or choose another -o")
    sha256 = download(ctx.client, args.job, out, note=_note)
    _note(f"{out}: {out.stat().st_size:,} bytes, SHA-256 {sha256} (checked)")
    return 0


def cmd_worker(args: argparse.Namespace, ctx: Context) -> int:
    # exec, not import: the CLI process never loads worker.celery_app or the drivers.
    argv = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
            "--loglevel", "INFO", "-Q", ctx.settings.queue, "--prefetch-multiplier", "1",
            *args.celery_args]
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


def cmd_api(args: argparse.Namespace, ctx: Context) -> int:
    _refuse_open_api(args.host, ctx.settings)
    import uvicorn  # only this command needs it

    port = args.port or urlsplit(ctx.settings.api_url).port or 8000
    # log_config=None: uvicorn's lines go through the handler app_factory sets up
    # (worker/core/logs.py), in liteshift's format
    uvicorn.run("api.app:app_factory", factory=True, host=args.host, port=port,
                log_config=None)
    return 0


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    _refuse_open_api(args.host, ctx.settings)
    from api.cli.serve import serve

    port = args.port or urlsplit(ctx.settings.api_url).port or 8000
    return serve(ctx.settings, host=args.host, port=port, concurrency=args.concurrency)


def _refuse_open_api(host: str, settings: Settings) -> None:
    if not settings.api_token and not _is_loopback(host):
        raise CliError(
            f"refusing to listen on {host} without LITESHIFT_API_TOKEN: anyone who can "
            "reach it could submit jobs and download databases. Set LITESHIFT_API_TOKEN, "
            "or listen on 127.0.0.1")


def _is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8, ::1, and an IPv4-mapped loopback (::ffff:127.0.0.1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def _note(message: str) -> None:
    print(f"liteshift: {message}", file=sys.stderr)


Command = Callable[[argparse.Namespace, Context], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liteshift", description="Move a live PostgreSQL or MySQL/MariaDB database into a "
        "SQLite file. Talks to the liteshift API at LITESHIFT_API_URL (token: "
        "LITESHIFT_API_TOKEN).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_submit(sub)
    _add_job_commands(sub)
    worker = _command(sub, "worker", cmd_worker, "run a Celery worker for LITESHIFT_QUEUE",
                      epilog="Other arguments go to `celery worker`, e.g. --concurrency 4; "
                      "`liteshift worker -- --help` lists them.")
    worker.add_argument("celery_args", nargs="*", metavar="ARGS",
                        help="extra arguments for celery worker")
    api = _command(sub, "api", cmd_api, "run the HTTP API (uvicorn)")
    api.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; any other needs "
                     "LITESHIFT_API_TOKEN)")
    api.add_argument("--port", type=int, help="port (default: the one in LITESHIFT_API_URL)")
    serve = _command(sub, "serve", cmd_serve, "run the API and a worker (and, without "
                     "LITESHIFT_REDIS_URL, a private Redis) as one supervised process tree",
                     epilog="For one machine that holds the data volume (e.g. Fly.io). A "
                     "child that dies is restarted; SIGTERM/SIGINT stops them all.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address the API listens on (default 127.0.0.1; any other needs "
                       "LITESHIFT_API_TOKEN)")
    serve.add_argument("--port", type=int,
                       help="the API's port (default: the one in LITESHIFT_API_URL)")
    serve.add_argument("--concurrency", type=_positive(int), default=2, metavar="N",
                       help="the worker's processes (default 2)")
    return parser


def _add_submit(sub: Any) -> None:
    cmd = _command(sub, "submit", cmd_submit, "queue a job; prints only its id on stdout")
    cmd.add_argument("source_url", metavar="SOURCE_URL",
                     help="postgresql://user:password@host:5432/db[?sslmode=verify-full] or "
                     "mysql://user:password@host:3306/db[?ssl-mode=VERIFY_IDENTITY], a "
                     "configured source's name, or - to read it from stdin (keeps the password "
                     "out of `ps`)")
    cmd.add_argument("--target", required=True, metavar="NAME",
                     help="write <data dir>/<NAME>.db (letters, digits, underscores)")
    cmd.add_argument("--table", action="append", metavar="T",
                     help="copy only this table (repeat for more)")
    cmd.add_argument("--exclude", action="append", metavar="T",
                     help="skip this table (repeat for more)")
    cmd.add_argument("--schema", default="public",
                     help="PostgreSQL schema (default public); a MySQL source copies the "
                     "URL's database")
    cmd.add_argument("--replace", action="store_true",
                     help="replace an existing <target>.db (the old file is kept)")
    cmd.add_argument("--chunk-rows", type=_positive(int), metavar="N",
                     help="rows per committed chunk (default: the server's)")
    cmd.add_argument("--profile", choices=("ecto", "rails", "django", "plain"),
                     help="write values as this framework reads them (default ecto)")
    cmd.add_argument("--exact-decimals", action="store_true",
                     help="keep numeric columns exact, declared TEXT")
    cmd.add_argument("--utc-timestamps", action="store_true",
                     help="timestamp without time zone columns hold UTC (Z for ecto/plain)")
    cmd.add_argument("--no-snapshot", action="store_true",
                     help="read each table at its own moment, not all at one snapshot of "
                          "the source (the report then says consistent: false)")
    cmd.add_argument("--follow", action="store_true",
                     help="after the copy, keep applying the source's changes until "
                          "`liteshift cutover JOB` publishes the file (PostgreSQL sources)")
    cmd.add_argument("--column-type", action="append", metavar="TABLE.COLUMN=TYPE",
                     type=_column_type,
                     help="override one column: utc_datetime, naive_datetime, text, json, "
                          "decimal_text, decimal (repeat for more)")


def _value_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.profile:
        options["profile"] = args.profile
    if args.exact_decimals:
        options["exact_decimals"] = True
    if args.utc_timestamps:
        options["utc_timestamps"] = True
    if args.no_snapshot:
        options["snapshot"] = False
    if args.follow:
        options["follow"] = True
    if args.column_type:
        options["column_types"] = dict(args.column_type)
    return options


def _add_job_commands(sub: Any) -> None:
    status = _command(sub, "status", cmd_status, "show a job's progress and its tables that "
                      "need a look (failed, copying; every table of a small job)", job=True)
    status.add_argument("--all", action="store_true", help="list every table, page by page")
    status.add_argument("--json", action="store_true", help="print the raw JSON: one "
                        "document with every table")
    follow = _command(sub, "watch", cmd_watch, "follow the job's progress until it ends "
                      "(exit 0 when done, 1 when failed or cancelled)", job=True,
                      epilog="On a terminal: a live view. Otherwise: a line per change of "
                      "state, and the job's progress every --every seconds.")
    follow.add_argument("--interval", type=_positive(float), default=2.0, metavar="S",
                        help="seconds between refreshes (default 2)")
    follow.add_argument("--every", type=_positive(float), default=30.0, metavar="S",
                        help="off a terminal, a progress line at least this often while "
                        "nothing changes (default 30)")
    jobs = _command(sub, "jobs", cmd_jobs, "list recent jobs")
    jobs.add_argument("--limit", type=_positive(int), default=50, help="how many (default 50)")
    jobs.add_argument("--json", action="store_true", help="print the raw JSON")
    retry = _command(sub, "retry", cmd_retry, "retry a job's failed tables", job=True)
    retry.add_argument("--table", action="append", metavar="T",
                       help="retry only this table (repeat for more; default: all failed)")
    _command(sub, "doctor", cmd_doctor, "show the running workers and whether each has its "
             "compiled parts (exit 1 when none runs or one lacks them)")
    _command(sub, "cancel", cmd_cancel, "cancel a job", job=True)
    cutover = _command(sub, "cutover", cmd_cutover, "publish a following job's file: stop "
                       "the app's writes first; waits until the follow has every change, "
                       "checks, publishes, and prints the downtime", job=True)
    cutover.add_argument("--timeout", type=_positive(float), default=60.0, metavar="S",
                         help="give up (and go on following) if not caught up in S seconds "
                              "(default 60)")
    fetch = _command(sub, "download", cmd_download, "fetch a done job's file, resuming a cut "
                     "transfer and checking its SHA-256", job=True,
                     epilog="Bytes go to FILE.part first; FILE appears only once its SHA-256 "
                     "matches the API's. Run the same command again to resume.")
    fetch.add_argument("-o", "--output", required=True, metavar="FILE",
                       help="where to write the file")
    fetch.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _command(sub, "report", cmd_report, "print a finished job's report (JSON)", job=True)
    _command(sub, "resume", cmd_resume, "resume a job after a crash or a Redis restart "
             "(rebuilds its state from the volume)", job=True)
    verify = _command(sub, "verify", cmd_verify, "re-read the published file and compare "
                      "row counts and checksums (exit 0 when they match)", job=True)
    verify.add_argument("--source", action="store_true",
                        help="re-read the source too, and name the first differing key")
    verify.add_argument("--json", action="store_true", help="print the raw JSON")


def _command(sub: Any, name: str, func: Command, help_text: str, *, job: bool = False,
             epilog: str | None = None) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text,
                                                     description=help_text, epilog=epilog)
    parser.set_defaults(func=func)
    if job:
        parser.add_argument("job", metavar="JOB", help="job id (from submit or `jobs`)")
    return parser


def _column_type(text: str) -> tuple[str, str]:
    column, equals, kind = text.partition("=")
    if not equals or "." not in column.strip(".") or not kind:
        raise argparse.ArgumentTypeError(
            f"expected TABLE.COLUMN=TYPE (e.g. users.born_at=naive_datetime), not {text!r}")
    return column, kind


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    argv = list(argv)
    # `worker` passes its arguments through to celery untouched (options included), which
    # argparse cannot express; only its own --help is ours.
    if argv[:1] == ["worker"] and not {"-h", "--help"} & set(argv[1:2]):
        rest = argv[1:]
        return argparse.Namespace(command="worker", func=cmd_worker,
                                  celery_args=rest[1:] if rest[:1] == ["--"] else rest)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None,
         http: httpx.Client | None = None) -> int:
    """Run one command. Tests pass `settings`, and an `http` client bound to a test app."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        ctx = Context(settings or get_settings(), http)
        code: int = args.func(args, ctx)
        return code
    except (CliError, ConfigError) as exc:
        print(f"liteshift: error: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`liteshift report JOB | head`): stop quietly, as other
        # Unix tools do, and keep Python's exit flush from failing on the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
