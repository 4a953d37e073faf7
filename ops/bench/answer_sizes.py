"""How big the API's answers about a job of many tables are, and how long they take: a job of
--tables empty tables through a real worker, then GET /jobs/{id} (and its summary, a filtered
page, the report) against every table inline, as one answer listed them before paging.

    .venv/bin/python ops/bench/answer_sizes.py                  # 2,000 tables
    .venv/bin/python ops/bench/answer_sizes.py --tables 300

The source tables live in their own schema of --database (dropped at the end); Redis prefix,
queue and data directory are the run's own (bench_targets.Bench), removed at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from bench_targets import SERVER, Bench, ensure_database, pg

SCHEMA = "bench_answer_sizes"


def compact(value: Any) -> int:
    """Bytes of `value` as the API sends JSON (Starlette's JSONResponse)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def median_ms(call: Any, rounds: int = 20) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--database", default="liteshift_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    args.worker_env = {}
    ensure_database(args.database)
    names = [f"e{i:04d}" for i in range(args.tables)]
    drop_schema(args.database, names)
    pg(args.database, f'CREATE SCHEMA "{SCHEMA}"')
    pg(args.database, "DO $$ BEGIN FOR i IN 0.." + str(args.tables - 1) + " LOOP EXECUTE "
       f"format('CREATE UNLOGGED TABLE \"{SCHEMA}\".e%s (id bigint PRIMARY KEY, s text)', "
       "lpad(i::text, 4, '0')); END LOOP; END $$")
    bench = Bench(args)
    try:
        from fastapi.testclient import TestClient

        from api.app import create_app
        from worker.core.redact import redact_value
        from worker.jobs.control import job_view
        from worker.state.targets import report_path

        async def no_probe(*_: Any) -> list[str]:
            return names

        with bench.worker(pool="prefork", concurrency=2) as worker:
            job_id, seconds = bench.run_job("sizes", names, schema=SCHEMA, workers=[worker])
        # The API reads Redis and the volume only: the job is finished, no worker is needed.
        http = TestClient(create_app(bench.settings, store=bench.store, send=bench.send,
                                     probe=no_probe))
        job = bench.store.job(job_id) or {}
        job.pop("source_sealed", None)
        inline = redact_value({**job, "tables": bench.store.tables(job_id, job["tables"])})
        report = json.loads(report_path(bench.settings.data_dir, "sizes").read_text())
        print(f"a job of {args.tables:,} empty tables, done in {seconds:.1f} s")
        print(f"  every table inline (one answer before paging): {compact(inline):>9,} bytes")
        for label, path in [
            ("GET /jobs/{id}", f"/jobs/{job_id}"),
            ("GET /jobs/{id}?limit=0", f"/jobs/{job_id}?limit=0"),
            ("GET /jobs/{id}/tables?state=failed", f"/jobs/{job_id}/tables?state=failed"),
            ("GET /jobs/{id}?limit=1000", f"/jobs/{job_id}?limit=1000"),
            ("GET /jobs/{id}/report", f"/jobs/{job_id}/report"),
        ]:
            answer = http.get(path)
            assert answer.status_code == 200, answer.text
            ms = median_ms(lambda p=path: http.get(p))
            print(f"  {label:<40} {len(answer.content):>9,} bytes, median {ms:6.1f} ms")
        print(f"  the whole report (report.json): {compact(report):>9,} bytes: " + ", ".join(
            f"{key} {compact(value):,}" for key, value in report.items()))
        page = http.get(f"/jobs/{job_id}/report").json()
        print("  its first page: " + ", ".join(f"{key} {compact(value):,}"
                                              for key, value in page.items()))
        print(f"  job_view in process, first page:  median "
              f"{median_ms(lambda: job_view(bench.store, job_id)):6.1f} ms; every table inline "
              f"(store.tables): median "
              f"{median_ms(lambda: bench.store.tables(job_id, job['tables'])):6.1f} ms")
        print(f"source: {SERVER}/{args.database}, schema {SCHEMA}")
    finally:
        bench.close()
        drop_schema(args.database, names)
    return 0


def drop_schema(database: str, names: list[str]) -> None:
    """A few hundred tables per statement: one DROP … CASCADE of thousands of tables takes a
    lock per table and runs out of the server's lock table."""
    for start in range(0, len(names), 200):
        pg(database, "DROP TABLE IF EXISTS " + ", ".join(
            f'"{SCHEMA}"."{name}"' for name in names[start:start + 200]))
    pg(database, f'DROP SCHEMA IF EXISTS "{SCHEMA}"')


if __name__ == "__main__":
    raise SystemExit(main())
