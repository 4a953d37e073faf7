"""Benchmark liteshift against the tools people choose instead, on the same tables, one run.

    .venv/bin/python ops/bench/bench.py [--rows 1000000] [--narrow-rows 5000000] [--rounds 3]
        [--only pg-mixed,pg-narrow,mysql-mixed] [--tools duckdb,sequel,...] [--concurrency 2]
        [--sizes full|small] [--install auto|no|only] [--write REPORT.md]

Data sets (kept between runs, rebuilt only when their row count differs):
  pg-mixed     PostgreSQL liteshift_bench.bench_mixed: bigint key, integer, text, jsonb,
               text[], numeric(12,2), timestamptz, boolean, uuid, 16-byte bytea
  pg-narrow    PostgreSQL liteshift_bench_narrow.bench_narrow: bigint key, integer
  pg-events    PostgreSQL liteshift_bench_events.bench_events: bigint key, 9 mixed columns
               and one secondary index, on (user_id, happened_at) (issue 22)
  mysql-mixed  MariaDB/MySQL liteshift_bench.bench_mixed: the same values as json, a JSON
               array, decimal(12,2), datetime(6), tinyint(1), char(36) uuid, varbinary(16)
  pg-app       PostgreSQL liteshift_bench_app: an issue tracker's 8 tables, 3.2M rows, foreign
               keys, 11 secondary indexes (app_db.py; --sizes small: a twentieth)
  mysql-app    the same database in MariaDB/MySQL

Tools, each run as a subprocess in turn, several rounds, medians:
  liteshift         through the real queue: HTTP API (uvicorn) -> Redis -> Celery worker
                    (prefork, --concurrency) -> verified, published <target>.db; a new
                    worker per round, timed from POST /jobs until the job is done
  duckdb            DuckDB + postgres/mysql scanner + sqlite extensions (PyPI wheels)
  duckdb-indexes    the same, then the data set's indexes built with Python's sqlite3
  sequel            `sequel -C` (Debian's ruby-sequel, ruby-pg, ruby-mysql2, ruby-sqlite3)
  db-to-sqlite      PyPI db-to-sqlite (PostgreSQL only here)
  mysql-to-sqlite3  PyPI mysql-to-sqlite3's `mysql2sqlite` (MySQL only)
  sling             PyPI sling-linux-amd64 (the binary shipped in the wheel)
  psql-copy / mysql-read   the read floor: the table read to /dev/null, no SQLite file

Every SQLite output's row count is checked (a wrong count fails the run); a tool that is
missing or fails is reported as such. PyPI peers live in ops/bench/.peers-venv, never in
liteshift's venv; `--install auto` (default) installs what is missing, idempotently.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parents[1]
PEERS_VENV = BENCH_DIR / ".peers-venv"
PEERS_REQUIREMENTS = BENCH_DIR / "peers-requirements.txt"
PEERS_STAMP = PEERS_VENV / "installed-requirements.sha256"
DUCKDB_EXT_DIR = PEERS_VENV / "duckdb-extensions"
APT_PACKAGES = ("ruby-sequel", "ruby-pg", "ruby-sqlite3", "ruby-mysql2")

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
MY_HOST, MY_PORT, MY_USER = "127.0.0.1", 3306, "root"
SAMPLE_ID = 3  # the row whose values the fidelity table shows (exists at any size >= 3)

sys.path.insert(0, str(BENCH_DIR))
import app_db  # noqa: E402
from bench_pg import CREATE_SQL as PG_MIXED_SQL  # noqa: E402  (one definition of the table)
from isolation import isolated_run  # noqa: E402
from worker_process import WorkerProcess  # noqa: E402

PG_NARROW_SQL = """
DROP TABLE IF EXISTS bench_narrow;
CREATE TABLE bench_narrow (id bigint PRIMARY KEY, n integer);
INSERT INTO bench_narrow SELECT g, ((g * 7919) % 1000003)::int
FROM generate_series(1::bigint, %(rows)s) g;
"""

# An app's events table: what finalize costs when a table has a secondary index.
PG_EVENTS_SQL = """
DROP TABLE IF EXISTS bench_events;
CREATE TABLE bench_events (
  id bigint PRIMARY KEY, user_id integer NOT NULL, happened_at timestamptz NOT NULL,
  kind text NOT NULL, payload jsonb, amount numeric(12,2), ok boolean, ref uuid, data bytea,
  note text);
INSERT INTO bench_events
SELECT g, ((g * 7919) % 50021)::int, timestamptz '2024-01-01' + g * interval '17 seconds',
       (ARRAY['click', 'view', 'buy'])[1 + g % 3], jsonb_build_object('id', g, 'n', g % 10),
       round((g % 100000) / 100.0, 2), g % 2 = 0, md5(g::text)::uuid,
       decode(md5(g::text), 'hex'), 'event ' || g
FROM generate_series(1::bigint, %(rows)s) g;
CREATE INDEX bench_events_user_time ON bench_events (user_id, happened_at);
"""

# The values of PG_MIXED_SQL, in MariaDB/MySQL types (MariaDB's SEQUENCE engine makes rows).
MY_MIXED_DDL = """
CREATE TABLE bench_mixed (
  id bigint NOT NULL PRIMARY KEY, n int, t text, j json, tags json, price decimal(12,2),
  at datetime(6), flag tinyint(1), u char(36), b varbinary(16)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""
MY_MIXED_INSERT = """
INSERT INTO bench_mixed
SELECT g, (g * 7919) % 1000003, concat('row ', g, ' ', h),
       json_object('id', g, 'kind', concat('k', g % 10),
                   'even', json_extract(if(g % 2 = 0, 'true', 'false'), '$')),
       json_array(concat('t', g % 5), concat('t', g % 7)), round((g % 100000) / 100.0, 2),
       timestamp('2024-01-01 00:00:00') + interval g second, g % 3 = 0,
       concat_ws('-', substr(h, 1, 8), substr(h, 9, 4), substr(h, 13, 4), substr(h, 17, 4),
                 substr(h, 21, 12)),
       unhex(h)
FROM (SELECT seq AS g, md5(seq) AS h FROM seq_1_to_%(rows)s) s
"""
MIXED_COLUMNS = ("j", "tags", "price", "at", "flag", "u", "b")
APP_COLUMNS = ("state", "created_at", "closed_at")


# -- data sets --------------------------------------------------------------------------

@dataclass
class Dataset:
    key: str
    kind: str  # "pg" or "mysql"
    database: str
    table: str
    rows: int
    target: str
    columns: tuple[str, ...]
    # A whole database: every table's rows, checked one by one (`table` is the one the
    # fidelity table shows, `rows` their sum). Empty: `table` alone, `rows` rows.
    tables: dict[str, int] = field(default_factory=dict)
    size: str = "full"  # of a whole database (app_db.DIVISORS)

    @property
    def expected(self) -> dict[str, int]:
        return self.tables or {self.table: self.rows}

    @property
    def title(self) -> str:
        if self.tables:
            return (f"{self.rows:,} rows in {len(self.tables)} tables of {self.database}")
        return f"{self.rows:,} rows of {self.database}.{self.table}"

    @property
    def liteshift_url(self) -> str:
        if self.kind == "pg":
            return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{self.database}"
        return f"mysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{self.database}"


def datasets(args: argparse.Namespace) -> list[Dataset]:
    every = {
        "pg-mixed": Dataset("pg-mixed", "pg", args.database, "bench_mixed", args.rows,
                            "pg_mixed", MIXED_COLUMNS),
        "pg-narrow": Dataset("pg-narrow", "pg", f"{args.database}_narrow", "bench_narrow",
                             args.narrow_rows, "pg_narrow", ()),
        "pg-events": Dataset("pg-events", "pg", f"{args.database}_events", "bench_events",
                             args.rows, "pg_events", ("happened_at", "payload", "ref")),
        "mysql-mixed": Dataset("mysql-mixed", "mysql", args.database, "bench_mixed", args.rows,
                               "mysql_mixed", MIXED_COLUMNS),
    }
    app_rows = app_db.rows(args.sizes)
    app_base = app_db.database(args.database, args.sizes)
    for kind in ("pg", "mysql"):
        every[f"{kind}-app"] = Dataset(f"{kind}-app", kind, app_base, "issues",
                                       sum(app_rows.values()), f"{kind}_app", APP_COLUMNS,
                                       tables=app_rows, size=args.sizes)
    return [every[key] for key in args.only]


def ensure_dataset(ds: Dataset) -> None:
    if ds.tables and ds.kind == "pg":
        app_db.ensure_pg(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}", ds.database, ds.size)
    elif ds.tables:
        import mysql.connector

        app_db.ensure_mysql(lambda: mysql.connector.connect(host=MY_HOST, port=MY_PORT,
                                                            user=MY_USER),
                            ds.database, ds.size)
    else:
        (ensure_pg if ds.kind == "pg" else ensure_mysql)(ds)


def ensure_pg(ds: Dataset) -> None:
    import psycopg
    from psycopg import sql

    server = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             (ds.database,)).fetchone():
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(ds.database)))
    with psycopg.connect(f"{server}/{ds.database}", autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (ds.table,)).fetchone()[0]
        if exists and conn.execute(f"SELECT count(*) FROM {ds.table}").fetchone()[0] == ds.rows:
            return
        print(f"[{ds.key}] creating {ds.table} with {ds.rows:,} rows in {ds.database} ...",
              flush=True)
        started = time.perf_counter()
        script = {"bench_mixed": PG_MIXED_SQL, "bench_events": PG_EVENTS_SQL}.get(
            ds.table, PG_NARROW_SQL)
        with conn.transaction():
            conn.execute(script.replace("%(rows)s", str(int(ds.rows))))
        # Hint bits and statistics now, so the first timed read does not pay for them.
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {ds.table}")
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def ensure_mysql(ds: Dataset) -> None:
    import mysql.connector

    conn = mysql.connector.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{ds.database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{ds.database}`")
        cur.execute("SELECT count(*) FROM information_schema.tables "
                    "WHERE table_schema = %s AND table_name = %s", (ds.database, ds.table))
        if cur.fetchone()[0]:
            cur.execute(f"SELECT count(*) FROM {ds.table}")
            if cur.fetchone()[0] == ds.rows:
                return
        print(f"[{ds.key}] creating {ds.table} with {ds.rows:,} rows in MariaDB/MySQL "
              f"{ds.database} ...", flush=True)
        started = time.perf_counter()
        cur.execute(f"DROP TABLE IF EXISTS {ds.table}")
        cur.execute(MY_MIXED_DDL)
        conn.autocommit = False
        cur.execute(MY_MIXED_INSERT.replace("%(rows)s", str(int(ds.rows))))
        conn.commit()
        cur.execute(f"ANALYZE TABLE {ds.table}")
        cur.fetchall()
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        conn.close()


# -- installing the peers ---------------------------------------------------------------

def peers_python() -> Path:
    return PEERS_VENV / "bin" / "python"


def missing_apt_packages() -> list[str]:
    missing = []
    for name in APT_PACKAGES:
        result = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", name],
                                capture_output=True, text=True)
        if "install ok installed" not in result.stdout:
            missing.append(name)
    return missing


def install_peers() -> list[str]:
    """Install what is missing (idempotent); returns problems, each one line."""
    problems: list[str] = []
    missing = missing_apt_packages() if shutil.which("dpkg-query") else list(APT_PACKAGES)
    if missing:
        command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            problems.append(f"not installed: {' '.join(missing)} (as root: {' '.join(command)})")
        else:
            print(f"installing {' '.join(missing)} (apt) ...", flush=True)
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            ok = subprocess.run(command, env=env, capture_output=True).returncode == 0
            if not ok:  # an old or empty package list: update once, then try again
                subprocess.run(["apt-get", "update"], env=env, capture_output=True)
                result = subprocess.run(command, env=env, capture_output=True, text=True)
                if result.returncode:
                    problems.append(f"apt-get install {' '.join(missing)} failed: "
                                    + result.stderr.strip().splitlines()[-1:][0])
    wanted = hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()
    if PEERS_STAMP.exists() and PEERS_STAMP.read_text().strip() == wanted:
        return problems
    print(f"installing the PyPI peers into {PEERS_VENV} ...", flush=True)
    if not peers_python().exists():
        # The base interpreter, not liteshift's venv: nothing is shared with it.
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = subprocess.run([str(peers_python()), "-m", "pip", "install", "-q", "--disable-pip-"
                          "version-check", "-r", str(PEERS_REQUIREMENTS)],
                         capture_output=True, text=True)
    if pip.returncode:
        problems.append("pip install -r peers-requirements.txt failed: "
                        + " | ".join(pip.stderr.strip().splitlines()[-3:]))
        return problems
    ext = subprocess.run([str(peers_python()), str(BENCH_DIR / "peer_duckdb.py"), "install",
                          str(DUCKDB_EXT_DIR)], capture_output=True, text=True)
    if ext.returncode:
        problems.append("DuckDB extensions did not install: "
                        + " | ".join(ext.stderr.strip().splitlines()[-3:]))
        return problems
    PEERS_STAMP.write_text(wanted + "\n")
    return problems


# -- running one tool -------------------------------------------------------------------

@dataclass
class Run:
    seconds: float | None = None
    rss_mb: float | None = None
    cpu_s: float | None = None      # the whole machine's busy CPU time over the run
    error: str | None = None        # failed: the reason
    mismatch: str | None = None     # ran, but the output's row count is wrong
    extra: dict[str, Any] = field(default_factory=dict)


def busy_cpu_s() -> float:
    """The machine's busy CPU seconds since boot, all cores (/proc/stat: user, nice, system,
    irq, softirq; not idle, iowait or steal). A run's difference counts every process that
    worked for it, the database server's backends included, which a child's rusage misses."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def run_timed(argv: list[str], env: dict[str, str], log: Path, timeout_s: float,
              cwd: Path | None = None) -> tuple[float, float, int, float]:
    """Run argv to completion: wall seconds, peak RSS (MB, the child's and its reaped
    descendants' largest, from wait4's rusage), its exit code and the machine's busy CPU
    seconds meanwhile."""
    with open(log, "wb") as out:
        cpu_started = busy_cpu_s()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        timer = threading.Timer(timeout_s, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: the child is in a session of its own
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        cpu = busy_cpu_s() - cpu_started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped above, not by Popen
    return seconds, usage.ru_maxrss / 1024, proc.returncode, cpu


def tail(path: Path, lines: int = 8) -> str:
    """The last lines of a log, led by its first line that names an error, if any."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # colours
    all_lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = all_lines[-lines:]
    first_error = next((line for line in all_lines if re.search(r"error|exception", line, re.I)),
                       None)
    if first_error and first_error not in last:
        last = [first_error, "…", *last]
    return " | ".join(last)


def sqlite_count(path: Path, table: str) -> int:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
    finally:
        db.close()


def count_mismatch(path: Path, ds: Dataset, where: str) -> str | None:
    """None when every table of the data set holds its rows, else what differs."""
    wrong = []
    for table, rows in ds.expected.items():
        try:
            got = sqlite_count(path, table)
        except sqlite3.OperationalError as exc:  # no such table
            wrong.append(f"{table}: {exc}")
            continue
        if got != rows:
            wrong.append(f"row count {got} in {where}, not {rows:,}"
                         + (f" ({table})" if ds.tables else ""))
    return "; ".join(wrong) or None


@dataclass
class Tool:
    """A peer: how to run it on a data set, writing `out` (None: a read floor)."""
    name: str
    kinds: tuple[str, ...]
    command: Callable[[Dataset, Path, Path], tuple[list[str], dict[str, str]]]
    missing: Callable[[], str | None]
    version: Callable[[], str]
    floor: bool = False
    count_from_output: Callable[[str], int | None] | None = None


def _peer_bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def _missing_peer(name: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        if not _peer_bin(name).exists():
            return f"not installed ({_peer_bin(name)} missing; run with --install auto)"
        return None
    return missing


def _sling_bin() -> Path | None:
    found = sorted(PEERS_VENV.glob("lib/python*/site-packages/sling_linux_*/bin/sling-linux-*"))
    return found[0] if found else None


def _version(argv: list[str], pattern: str = r"(\d+\.\d+[\w.]*)") -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    found = re.search(pattern, out.stdout + out.stderr)
    return found.group(1) if found else "?"


def _pg_libpq(ds: Dataset) -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname={ds.database}"


def _duckdb(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    dsn = (_pg_libpq(ds) if ds.kind == "pg" else
           f"host={MY_HOST} port={MY_PORT} user={MY_USER} database={ds.database}")
    return ([str(peers_python()), str(BENCH_DIR / "peer_duckdb.py"), "copy",
             str(DUCKDB_EXT_DIR), ds.kind, dsn, ",".join(ds.expected), str(out)], {})


def _duckdb_indexes(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """DuckDB's copy, then the indexes liteshift's file has, by sqlite3 in the same process:
    what a do-it-yourself pipeline needs to produce what liteshift produces."""
    argv, env = _duckdb(ds, out, scratch)
    return [*argv, ";\n".join(app_db.SQLITE_INDEXES[ds.kind] if ds.tables else [])], env


def _sequel(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    source = (f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{ds.database}" if ds.kind == "pg" else
              f"mysql2://{MY_USER}@{MY_HOST}:{MY_PORT}/{ds.database}")
    return ["sequel", "-C", source, f"sqlite://{out}"], {}


def _db_to_sqlite(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    # +psycopg2: SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3, db-to-sqlite's is 2.
    url = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{ds.database}"
    return [str(_peer_bin("db-to-sqlite")), url, str(out), "--table", ds.table], {}


def _mysql2sqlite(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    return ([str(_peer_bin("mysql2sqlite")), "-f", str(out), "-d", ds.database, "-u", MY_USER,
             "-h", MY_HOST, "-P", str(MY_PORT), "-t", ds.table, "-q"], {})


def _sling(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    if ds.kind == "pg":
        source = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{ds.database}?sslmode=disable"
        stream = f"public.{ds.table}"
    else:
        source = f"mysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{ds.database}"
        stream = f"{ds.database}.{ds.table}"
    home = scratch / "sling-home"
    home.mkdir(exist_ok=True)
    env = {"BENCH_SRC": source, "BENCH_DST": f"sqlite://{out}", "SLING_HOME_DIR": str(home),
           "SLING_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    return ([str(_sling_bin()), "run", "--src-conn", "BENCH_SRC", "--src-stream", stream,
             "--tgt-conn", "BENCH_DST", "--tgt-object", f"main.{ds.table}"], env)


def _psql_copy(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    return (["psql", "-X", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", ds.database,
             "-c", f"\\copy {ds.table} to /dev/null"], {})


def _mysql_read(ds: Dataset, out: Path, scratch: Path) -> tuple[list[str], dict[str, str]]:
    # --quick: row by row, not buffered; wc -l counts what arrived (no newline in the data).
    query = f"SELECT * FROM {ds.table}"
    return (["sh", "-c", f"mysql --quick --batch --skip-column-names -h {MY_HOST} -P {MY_PORT} "
             f"-u {MY_USER} {ds.database} -e '{query}' | wc -l"], {})


def _count_copy(output: str) -> int | None:
    found = re.search(r"COPY (\d+)", output)
    return int(found.group(1)) if found else None


def _count_lines(output: str) -> int | None:
    found = re.search(r"^\s*(\d+)\s*$", output, re.M)
    return int(found.group(1)) if found else None


def _which(name: str, hint: str) -> Callable[[], str | None]:
    return lambda: None if shutil.which(name) else f"not installed ({hint})"


TOOLS: dict[str, Tool] = {tool.name: tool for tool in (
    Tool("duckdb", ("pg", "mysql"), _duckdb,
         lambda: None if DUCKDB_EXT_DIR.is_dir() else "not installed (run with --install auto)",
         lambda: _version([str(peers_python()), "-c", "import duckdb; print(duckdb.__version__)"])),
    Tool("duckdb-indexes", ("pg", "mysql"), _duckdb_indexes,
         lambda: None if DUCKDB_EXT_DIR.is_dir() else "not installed (run with --install auto)",
         lambda: _version([str(peers_python()), "-c", "import duckdb, sqlite3; "
                           "print(duckdb.__version__, 'sqlite', sqlite3.sqlite_version)"],
                          r"(\S+ sqlite \S+)")),
    Tool("sequel", ("pg", "mysql"), _sequel, _which("sequel", "apt-get install ruby-sequel "
                                                    "ruby-pg ruby-mysql2 ruby-sqlite3"),
         lambda: _version(["sequel", "--version"])),
    Tool("db-to-sqlite", ("pg",), _db_to_sqlite, _missing_peer("db-to-sqlite"),
         lambda: _version([str(_peer_bin("db-to-sqlite")), "--version"])),
    Tool("mysql-to-sqlite3", ("mysql",), _mysql2sqlite, _missing_peer("mysql2sqlite"),
         lambda: _version([str(_peer_bin("mysql2sqlite")), "--version"])),
    Tool("sling", ("pg", "mysql"), _sling,
         lambda: None if _sling_bin() else "not installed (PyPI sling-linux-amd64)",
         lambda: _version([str(_sling_bin()), "--version"])),
    Tool("psql-copy", ("pg",), _psql_copy, _which("psql", "apt-get install postgresql-client"),
         lambda: _version(["psql", "--version"]), floor=True, count_from_output=_count_copy),
    # liteshift itself with each table read at its own moment (--no-snapshot): what the
    # job's one snapshot costs, in the same run (Liteshift.run, not run_peer)
    Tool("liteshift-no-snapshot", ("pg", "mysql"), lambda *_: ([], {}), lambda: None,
         lambda: "this commit"),
    Tool("mysql-read", ("mysql",), _mysql_read, _which("mysql", "apt-get install "
                                                      "mariadb-client"),
         lambda: _version(["mysql", "--version"], r"(?:Distrib |from )(\d+\.\d+\.\d+)"),
         floor=True, count_from_output=_count_lines),
)}


# What runs when --tools is not given: the comparisons the benchmark is for, the read floor
# and sling. `sequel -C` and db-to-sqlite on the 5M-row narrow table would add about half an
# hour per round on a 2-core machine (ask for them with --tools).
DEFAULT_TOOLS: dict[str, tuple[str, ...]] = {
    "pg-mixed": ("duckdb", "sequel", "db-to-sqlite", "sling", "psql-copy"),
    "pg-narrow": ("duckdb", "sling", "psql-copy"),
    "pg-events": ("duckdb", "psql-copy"),
    "mysql-mixed": ("duckdb", "mysql-to-sqlite3", "sequel", "sling", "mysql-read"),
    "pg-app": ("duckdb", "duckdb-indexes"),
    "mysql-app": ("duckdb", "duckdb-indexes"),
}


# The tools that copy a whole database's tables (the app data sets), the rest one table.
WHOLE_DATABASE_TOOLS = ("duckdb", "duckdb-indexes", "sequel", "liteshift-no-snapshot")
BASELINE = "liteshift@"  # the --baseline tool's name: liteshift@<commit>


def baseline_tree(ref: str, scratch: Path) -> tuple[str, Path]:
    """A scratch worktree of `ref` (removed with the scratch directory) with its C
    extensions built, for a worker running that commit's code: (short commit, its path)."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    tree = scratch / f"baseline-{commit}"
    subprocess.run(["git", "worktree", "add", "--detach", "--force", str(tree), commit],
                   cwd=ROOT, check=True, capture_output=True)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                           cwd=tree, capture_output=True, text=True)
    if build.returncode:
        raise SystemExit(f"--baseline {ref}: its C extensions did not build: "
                         + " | ".join(build.stderr.strip().splitlines()[-3:]))
    return commit, tree


def remove_baseline_tree(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                   capture_output=True)


def run_peer(tool: Tool, ds: Dataset, scratch: Path, timeout_s: float) -> Run:
    out = scratch / "out" / f"{ds.key}.{tool.name}.db"
    out.parent.mkdir(exist_ok=True)
    for stale in out.parent.glob(f"{out.name}*"):
        stale.unlink()
    argv, extra_env = tool.command(ds, out, scratch)
    log = scratch / "logs" / f"{ds.key}.{tool.name}.log"
    log.parent.mkdir(exist_ok=True)
    try:
        seconds, rss, code, cpu = run_timed(argv, {**os.environ, **extra_env}, log,
                                            timeout_s, cwd=scratch)
    except OSError as exc:
        return Run(error=f"could not start: {exc}")
    if code != 0:
        reason = "timed out" if code == -signal.SIGKILL else f"exit {code}"
        return Run(seconds=seconds, rss_mb=rss, error=f"{reason}: {tail(log, 4)}")
    run = Run(seconds=seconds, rss_mb=rss, cpu_s=cpu)
    if tool.floor:
        got = tool.count_from_output(log.read_text(errors="replace")) if tool.count_from_output \
            else None
        if got != ds.rows:
            run.mismatch = f"row count {got} in the output, not {ds.rows:,}"
        return run
    try:
        run.mismatch = count_mismatch(out, ds, "the output")
    except sqlite3.Error as exc:
        return Run(seconds=seconds, rss_mb=rss, error=f"no readable output table: {exc}")
    run.extra["output"] = out
    return run


# -- liteshift, through the real queue --------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def _hwm_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) / 1024 if found else 0.0


class Liteshift:
    """The API (uvicorn) for the whole run, a fresh Celery worker per round, all on a queue,
    Redis key prefix and data directory of this run's own."""

    PHASES = (("plan", "queued", "copying"), ("copy", "copying", "finalizing"),
              ("finalize", "finalizing", "done"))

    def __init__(self, run_id: str, scratch: Path, concurrency: int, timeout_s: float):
        from worker.celery_app import app
        from worker.core.config import get_settings
        from worker.state.store import StateStore

        self.app, self.run_id, self.scratch = app, run_id, scratch
        self.concurrency, self.timeout_s = concurrency, timeout_s
        self.settings = get_settings()
        self.store = StateStore.from_settings(self.settings)
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.api_log = scratch / "logs" / "api.log"
        self.api_log.parent.mkdir(exist_ok=True)
        with open(self.api_log, "wb") as log:
            self.api = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.app:app_factory", "--factory", "--host",
                 "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.rounds = 0

    def wait_api(self, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise SystemExit(f"the API exited ({self.api.returncode}): {tail(self.api_log)}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the API did not answer within {timeout_s} s: {tail(self.api_log)}")

    def _start_worker(self, root: Path = ROOT) -> WorkerProcess:
        self.rounds += 1
        worker = WorkerProcess(name=f"{self.run_id}-{self.rounds}@bench",
                               queue=self.settings.queue, concurrency=self.concurrency,
                               log_path=self.scratch / "logs" / f"worker-{self.rounds}.log",
                               cwd=root)
        try:
            worker.wait_ready(self.app)
        except SystemExit as exc:  # one data set's failure, not the run's
            raise RuntimeError(str(exc)) from None
        return worker

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session, started above
                proc.wait()

    def run(self, ds: Dataset, options: dict[str, Any] | None = None,
            root: Path = ROOT) -> Run:
        """One job through the queue, by a worker running the code of the tree at `root`
        (another commit's, for --baseline: the worker imports `worker` from its working
        directory)."""
        import httpx

        from worker.state.store import JobState

        data = self.settings.data_dir
        for leftover in (data / f"{ds.target}.db", data / f"{ds.target}.report.json"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(self.settings.state_dir / "jobs", ignore_errors=True)
        try:
            worker = self._start_worker(root)
        except RuntimeError as exc:
            return Run(error=str(exc))
        try:
            cpu_started = busy_cpu_s()
            started = time.perf_counter()
            answer = httpx.post(f"{self.api_url}/jobs", timeout=120,
                                json={"source": ds.liteshift_url, "target": ds.target,
                                      "options": options or {}})
            if answer.status_code != 202:
                return Run(error=f"POST /jobs: {answer.status_code} {answer.text[:300]}")
            job_id = answer.json()["job_id"]
            deadline = time.monotonic() + self.timeout_s
            while True:
                state = self.store.job_state(job_id)
                if state is not None and state.finished:
                    break
                if time.monotonic() > deadline:
                    return Run(error=f"job {job_id} not done after {self.timeout_s:.0f} s")
                time.sleep(0.02)
            seconds = time.perf_counter() - started
            cpu = busy_cpu_s() - cpu_started
            tree = _proc_tree(worker.proc.pid)
            hwms = [_hwm_mb(pid) for pid in tree]
        finally:
            worker.stop()
        if state != JobState.DONE:
            job = self.store.job(job_id) or {}
            return Run(seconds=seconds, error=f"job {state.value}: {job.get('error')} "
                       f"(worker log: {worker.tail(4)})")
        run = Run(seconds=seconds, rss_mb=sum(hwms), cpu_s=cpu,
                  extra={"largest_process_mb": max(hwms), "processes": len(hwms),
                         "output": data / f"{ds.target}.db"})
        run.mismatch = count_mismatch(data / f"{ds.target}.db", ds, "the published file")
        entered = {e["state"]: e["at"] for _, e in self.store.events(job_id, count=10_000)
                   if e["event"] == "job_state"}
        run.extra["phases"] = {name: entered[end] - entered[start]
                               for name, start, end in self.PHASES
                               if start in entered and end in entered}
        steps = ((self.store.job(job_id) or {}).get("finalize") or {}).get("steps") or []
        run.extra["finalize_steps"] = {s["step"]: s["seconds"] for s in steps}
        return run

    def close(self) -> None:
        self._stop(self.api)
        redis = self.store.redis
        keys = [*redis.scan_iter(f"{self.run_id}*"), f"_kombu.binding.{self.run_id}",
                f"_kombu.binding_permanent.{self.run_id}"]
        redis.delete(*keys)
        pidbox = "_kombu.binding.celery.pidbox"
        for member in redis.smembers(pidbox):
            text = member.decode(errors="replace") if isinstance(member, bytes) else member
            if self.run_id in text:
                redis.srem(pidbox, member)


# -- what each output keeps -------------------------------------------------------------

def _cell(value: Any, width: int = 30) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    text = str(value).replace("|", "\\|")
    return text if len(text) <= width else text[:width - 1] + "…"


def inspect_output(path: Path, table: str, columns: tuple[str, ...]) -> dict[str, str]:
    """Primary key, indexes, and for each column its declared type and the sample row's
    value as SQLite holds it (storage class: value)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        info = db.execute(f'PRAGMA table_info("{table}")').fetchall()
        declared = {row[1]: row[2] or "(none)" for row in info}
        pk = [row[1] for row in sorted(info, key=lambda r: r[5]) if row[5]]
        indexes = db.execute(f'PRAGMA index_list("{table}")').fetchall()
        result = {"primary key": ", ".join(pk) or "none",
                  "indexes": str(len(indexes)) + (" (" + ", ".join(
                      {"pk": "primary key", "u": "UNIQUE", "c": "CREATE INDEX"}.get(ix[3], ix[3])
                      for ix in indexes) + ")" if indexes else "")}
        if columns:
            select = ", ".join(f'typeof("{c}"), "{c}"' for c in columns)
            row = db.execute(f'SELECT {select} FROM "{table}" WHERE id = ?',
                             (SAMPLE_ID,)).fetchone()
            for i, column in enumerate(columns):
                storage, value = (row[2 * i], row[2 * i + 1]) if row else ("-", None)
                result[column] = f"{declared.get(column, '?')} → {storage}: {_cell(value)}"
        return result
    finally:
        db.close()


def file_indexes(path: Path) -> str:
    """How many indexes the whole file has, besides the tables' own rowid b-trees: written
    ones (CREATE INDEX, partial or on expressions included) and SQLite's own (UNIQUE and
    non-rowid PRIMARY KEY constraints)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT sql IS NULL, sql LIKE '% WHERE %', sql LIKE '%(%(%' "
                          "FROM sqlite_master WHERE type = 'index'").fetchall()
    finally:
        db.close()
    own = sum(1 for auto, _, _ in rows if auto)
    partial = sum(1 for auto, where, _ in rows if not auto and where)
    return f"{len(rows)} ({len(rows) - own} written, {partial} partial; {own} SQLite's own)"


# -- the report -------------------------------------------------------------------------

def _machine(dsets: list[Dataset]) -> list[str]:
    def first(path: str, pattern: str) -> str:
        try:
            found = re.search(pattern, Path(path).read_text(), re.M)
        except OSError:
            return "?"
        return found.group(1).strip() if found else "?"

    cpu = first("/proc/cpuinfo", r"^model name\s*:\s*(.+)$")
    mem_kb = first("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    mem = f"{int(mem_kb) / 2**20:.1f} GiB" if mem_kb.isdigit() else "?"
    system = first("/etc/os-release", r'^PRETTY_NAME="?([^"]+)')
    lines = [
        f"cpu: {os.cpu_count()} x {cpu}, memory {mem}, {system}, "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}",
    ]
    if any(ds.kind == "pg" for ds in dsets):
        import psycopg

        with psycopg.connect(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres") as c:
            lines.append("source: " + c.execute("SHOW server_version").fetchone()[0].split()[0]
                         .join(["PostgreSQL ", ""]))
    if any(ds.kind == "mysql" for ds in dsets):
        import mysql.connector

        conn = mysql.connector.connect(host=MY_HOST, port=MY_PORT, user=MY_USER)
        cur = conn.cursor()
        cur.execute("SELECT version()")
        lines.append(f"source: MariaDB/MySQL {cur.fetchone()[0]}")
        conn.close()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    lines.append(f"liteshift: commit {commit or '?'}")
    return lines


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def dataset_report(ds: Dataset, names: list[str], runs: dict[str, list[Run]],
                   skipped: dict[str, str], concurrency: int) -> tuple[list[str], bool]:
    """Markdown lines for one data set, and whether every row count checked out."""
    ok = True
    lite = [r.seconds for r in runs.get("liteshift", []) if r.seconds and not r.error]
    lite_s = statistics.median(lite) if lite else None
    rounds = max((len(v) for v in runs.values()), default=0)
    lines = [f"### {ds.key}: {ds.title} "
             f"({'PostgreSQL' if ds.kind == 'pg' else 'MariaDB/MySQL'}), median of "
             f"{rounds} round(s)", "",
             "| tool | seconds | rows/s | CPU s | peak RSS MB | ratio | rows checked | note |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for name in names:
        if name in skipped:
            lines.append(f"| {name} | — | — | — | — | — | — | {skipped[name]} |")
            continue
        done = [r for r in runs.get(name, []) if r.seconds is not None and not r.error]
        failed = [r for r in runs.get(name, []) if r.error]
        wrong = [r for r in done if r.mismatch]
        notes = []
        if name.startswith(BASELINE):
            notes.append(f"liteshift at commit {name[len(BASELINE):]}, same queue and API")
        if name == "liteshift":
            notes.append(f"API → Redis → worker (prefork, concurrency {concurrency}) → "
                         "published, verified file; RSS: sum of the worker's "
                         f"{done[0].extra['processes'] if done else '?'} processes' peaks"
                         + (f" (largest {statistics.median(r.extra['largest_process_mb'] for r in done):.0f})"  # noqa: E501
                            if done else ""))
        if TOOLS.get(name) and TOOLS[name].floor:
            notes.append("read floor: to /dev/null, no SQLite file; rows counted from its "
                         "output")
        if failed:
            notes.append(f"FAILED {len(failed)}/{len(runs[name])}: {_cell(failed[0].error, 300)}")
        if wrong:
            ok = False
            notes.append(f"WRONG ROW COUNT: {wrong[0].mismatch}")
        seconds = statistics.median(r.seconds for r in done) if done else None  # type: ignore
        rss = statistics.median(r.rss_mb for r in done if r.rss_mb) if done else None
        cpus = [r.cpu_s for r in done if r.cpu_s is not None]
        cpu = statistics.median(cpus) if cpus else None
        ratio = seconds / lite_s if seconds and lite_s else None
        checked = ("WRONG" if wrong else f"yes, {len(done)}/{len(runs[name])}") if done else "—"
        lines.append(f"| {name} | {_fmt(seconds, '.2f')} | "
                     f"{_fmt(ds.rows / seconds if seconds else None, ',.0f')} | "
                     f"{_fmt(cpu, '.2f')} | {_fmt(rss, ',.0f')} | {_fmt(ratio, '.2f')} | "
                     f"{checked} | {'; '.join(notes)} |")
    lines.append("")
    lines.append("ratio = tool seconds / liteshift seconds (above 1: liteshift is faster). "
                 "CPU s = the whole machine's busy CPU time during the run, every process "
                 "that worked for it: the database server too, and for liteshift its API, "
                 "Redis and worker processes; this machine has "
                 f"{os.cpu_count()} cores.")
    for name in [n for n in names if n == "liteshift" or n.startswith(BASELINE)]:
        phases = [r.extra["phases"] for r in runs.get(name, []) if "phases" in r.extra]
        if phases:
            lines.append(f"{name} phases (medians, from the job's own events): " + ", ".join(
                f"{k} {statistics.median(p[k] for p in phases if k in p):.2f} s"
                for k in phases[0]))
        steps = [r.extra["finalize_steps"] for r in runs.get(name, [])
                 if r.extra.get("finalize_steps")]
        if steps:
            lines.append(f"{name} finalize steps (medians): " + ", ".join(
                f"{k} {statistics.median(p.get(k, 0.0) for p in steps):.2f} s"
                for k in steps[0]))
    lines.append("")
    # What each output keeps: inspected in the last round's files.
    inspected = {}
    for name in names:
        last = [r for r in runs.get(name, []) if "output" in r.extra and not r.error]
        if last:
            try:
                inspected[name] = inspect_output(last[-1].extra["output"], ds.table, ds.columns)
                if ds.tables:
                    inspected[name]["indexes in the file"] = file_indexes(
                        last[-1].extra["output"])
            except sqlite3.Error as exc:
                inspected[name] = {"primary key": f"unreadable: {exc}"}
    if inspected:
        heads = ["primary key", "indexes", *(["indexes in the file"] if ds.tables else []),
                 *ds.columns]
        sample = f" (row id = {SAMPLE_ID}: declared type → storage class: value)" \
            if ds.columns else ""
        lines += [f"What each output holds{sample}:", "",
                  "| tool | " + " | ".join(heads) + " |",
                  "|---|" + "---|" * len(heads)]
        for name, got in inspected.items():
            lines.append(f"| {name} | " + " | ".join(got.get(h, "") for h in heads) + " |")
        lines.append("")
    return lines, ok


# -- main -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="rows of the mixed tables (default 1,000,000)")
    parser.add_argument("--narrow-rows", type=int, default=5_000_000,
                        help="rows of the narrow table (default 5,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown")
    parser.add_argument("--sizes", choices=tuple(app_db.DIVISORS), default="full",
                        help="size of the app-shaped databases (pg-app, mysql-app): full "
                        "(3.2M rows), small (a twentieth, a quick run) or tiny (a thousandth, "
                        "the smoke test)")
    parser.add_argument("--only", default="pg-mixed,pg-narrow,mysql-mixed",
                        help="data sets, comma-separated (default all three)")
    parser.add_argument("--tools", default=None,
                        help="peers, comma-separated, each run on every data set it can read; "
                        "liteshift always runs. Default: per data set, "
                        + "; ".join(f"{k}: {', '.join(v)}" for k, v in DEFAULT_TOOLS.items())
                        + f". All: {', '.join(TOOLS)}")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="liteshift worker processes (default 2, this machine's cores)")
    parser.add_argument("--install", choices=("auto", "no", "only"), default="auto",
                        help="install missing peers first (auto, default), never (no), or "
                        "install and exit (only)")
    parser.add_argument("--prepare", action="store_true",
                        help="install the peers (unless --install no) and create the data "
                        "sets, then exit")
    parser.add_argument("--database", default="liteshift_bench",
                        help="source database name (PostgreSQL and MySQL; the narrow table "
                        "lives in <name>_narrow)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="Redis for liteshift (the run uses a queue and key prefix of its "
                        "own there and removes them after)")
    parser.add_argument("--timeout", type=float, default=1800,
                        help="seconds one tool run may take before it is killed")
    parser.add_argument("--baseline", metavar="REF",
                        help="also run liteshift at this commit (a worker in a scratch "
                        "worktree of it), in turns with this tree's, as tool liteshift@REF")
    parser.add_argument("--write", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (outputs, logs) and say where")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if args.tools is not None:
        args.tools = [s.strip() for s in args.tools.split(",")
                      if s.strip() and s.strip() != "liteshift"]
    unknown = [s for s in args.only if s not in DEFAULT_TOOLS]
    unknown += [t for t in args.tools or () if t not in TOOLS]
    if unknown:
        parser.error(f"unknown data set or tool: {', '.join(unknown)}")
    if min(args.rows, args.narrow_rows) < SAMPLE_ID or min(args.rounds, args.concurrency) < 1:
        parser.error(f"--rows/--narrow-rows must be at least {SAMPLE_ID}, --rounds and "
                     "--concurrency at least 1")
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(f"bench: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # clean up (workers, API, Redis keys) as on ^C
    command = "ops/bench/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    install_problems: list[str] = []
    if args.install != "no":
        install_problems = install_peers()
        for problem in install_problems:
            print(f"install: {problem}", file=sys.stderr)
        if args.install == "only":
            return 1 if install_problems else 0
    dsets = datasets(args)
    for ds in dsets:
        ensure_dataset(ds)
    if args.prepare:
        return 1 if install_problems else 0

    run_id, scratch = isolated_run("bench", args.redis_url)

    started_at = dt.datetime.now(dt.UTC)
    header = [f"Command: `.venv/bin/python {command.strip()}`", "",
              f"Run: {started_at:%Y-%m-%d %H:%M} UTC", ""]
    header += [f"- {line}" for line in _machine(dsets)]
    used = {t for ds in dsets for t in (DEFAULT_TOOLS[ds.key] if args.tools is None
                                        else args.tools)}
    versions = {name: TOOLS[name].version() for name in TOOLS
                if name in used and not TOOLS[name].missing()}
    header.append("- peers: " + (", ".join(f"{k} {v}" for k, v in versions.items()) or "none"))
    header.append("")
    print("\n".join(header), flush=True)

    lite = Liteshift(run_id, scratch, args.concurrency, args.timeout)
    report = list(header)
    all_ok = True
    baseline: tuple[str, Path] | None = None
    try:
        if args.baseline:
            baseline = baseline_tree(args.baseline, scratch)
            report.insert(len(header) - 1, f"- {BASELINE}{baseline[0]}: liteshift's worker "
                          f"running commit {baseline[0]} ({args.baseline}), in turns with "
                          "this commit's")
            print(report[len(header) - 1], flush=True)
        lite.wait_api()
        for ds in dsets:
            chosen = DEFAULT_TOOLS[ds.key] if args.tools is None else args.tools
            names = ["liteshift"] + [t for t in chosen if ds.kind in TOOLS[t].kinds and (
                t in WHOLE_DATABASE_TOOLS if ds.tables else t != "duckdb-indexes")]
            skipped = {t: TOOLS[t].missing() for t in names[1:] if TOOLS[t].missing()}
            if baseline:
                names.insert(1, f"{BASELINE}{baseline[0]}")
            runs: dict[str, list[Run]] = {name: [] for name in names}
            for round_no in range(1, args.rounds + 1):
                for name in names:
                    if name in skipped:
                        continue
                    # The previous tool's output (300 MB, not yet written back) would be
                    # flushed by the next fsync, whoever's it is: start each run clean.
                    os.sync()
                    run = (lite.run(ds) if name == "liteshift" else
                           lite.run(ds, options={"snapshot": False})
                           if name == "liteshift-no-snapshot"
                           else lite.run(ds, root=baseline[1]) if name.startswith(BASELINE)
                           else run_peer(TOOLS[name], ds, scratch, args.timeout))
                    runs[name].append(run)
                    status = (f"FAILED: {run.error}" if run.error else
                              f"{run.seconds:.2f} s, {run.rss_mb or 0:,.0f} MB, "
                              f"{run.cpu_s or 0:.2f} CPU s"
                              + (f", WRONG: {run.mismatch}" if run.mismatch else ", rows ok"))
                    print(f"[{ds.key}] round {round_no} {name}: {status}", flush=True)
            lines, ok = dataset_report(ds, names, runs, skipped, args.concurrency)
            all_ok &= ok
            lite_ok = any(r.seconds and not r.error for r in runs["liteshift"])
            if not lite_ok:
                all_ok = False
            print("\n" + "\n".join(lines), flush=True)
            report += lines
    finally:
        try:
            lite.close()
        except Exception as exc:  # noqa: BLE001  (the figures matter more than tidying up)
            print(f"bench: cleaning up liteshift's Redis keys failed: {exc!r}", file=sys.stderr)
        if baseline:
            remove_baseline_tree(baseline[1])
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    ended = dt.datetime.now(dt.UTC)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    report += [f"Run ended {ended:%H:%M} UTC ({(ended - started_at).seconds / 60:.0f} min); "
               f"load average at the end (1, 5, 15 min): {load}", ""]
    print(report[-2])
    if install_problems:
        report += ["Install problems: " + "; ".join(install_problems), ""]
    if args.write:
        args.write.write_text("\n".join(report) + "\n")
    if not all_ok:
        print("bench: a row count was wrong or liteshift failed (see above)", file=sys.stderr)
        return 1
    print("bench: every output's row count checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
