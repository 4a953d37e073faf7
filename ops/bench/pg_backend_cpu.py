"""PostgreSQL's own CPU for one binary COPY of the mixed table, by query shape.

The backend is one process per connection, so its CPU time (/proc/<pid>/stat, same host) is
what the source side of a copy costs, whoever reads it. Compared: liteshift's query (server
renderings, key order for resume), the same without the order, DuckDB's (raw columns by ctid
range, no order) and the raw columns in either order.

    .venv/bin/python ops/bench/pg_backend_cpu.py [--database liteshift_bench] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics

import psycopg

RAW = '"id", "n", "t", "j", "tags", "price", "at", "flag", "u", "b"'
RENDERED = ('"id"::int8, "n"::int8, "t"::text, "j"::text, "tags", "price"::text, "at", '
            '"flag"::int4::int8, "u", "b"')
TABLE = '"public"."bench_mixed"'
QUERIES = {
    "liteshift (renderings, key order)": f'SELECT {RENDERED} FROM {TABLE} ORDER BY "id"',
    "renderings, no order": f"SELECT {RENDERED} FROM {TABLE}",
    "raw columns, key order": f'SELECT {RAW} FROM {TABLE} ORDER BY "id"',
    "DuckDB (raw columns, ctid range)": (f"SELECT {RAW} FROM {TABLE} WHERE ctid BETWEEN "
                                         "'(0,0)'::tid AND '(4294967295,0)'::tid"),
    "raw columns, no order": f"SELECT {RAW} FROM {TABLE}",
}


def backend_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", default="liteshift_bench")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spent: dict[str, list[float]] = {name: [] for name in QUERIES}
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=args.database) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        for _ in range(args.rounds):
            for name, query in QUERIES.items():  # in turns, so drift hits each alike
                before = backend_cpu_s(pid)
                with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
                    for _block in copy:
                        pass
                spent[name].append(backend_cpu_s(pid) - before)
    print("| query | PostgreSQL backend CPU s (median) | all rounds |\n|---|---:|---|")
    for name, values in spent.items():
        print(f"| {name} | {statistics.median(values):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
