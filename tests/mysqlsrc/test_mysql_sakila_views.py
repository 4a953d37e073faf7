"""Sakila's views through a real worker: GROUP_CONCAT(DISTINCT … ORDER BY … SEPARATOR …),
which SQLite before 3.44 cannot parse, and MariaDB's octet_length, return on SQLite the rows
they return on MariaDB."""

from __future__ import annotations

import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from worker.jobs import control

FIXTURE = Path(__file__).with_name("sakila_views.sql")
QUERIES = ["SELECT * FROM actor_info ORDER BY actor_id",
           "SELECT * FROM film_list ORDER BY FID, category",
           "SELECT * FROM nicer_but_slower_film_list ORDER BY FID, category"]


@pytest.mark.parametrize("profile", ["ecto", "rails"])
def test_sakila_views_return_the_rows_they_return_on_mariadb(
        my_db, settings_env, store, send, worker_proc, wait_for, profile):
    # Given Sakila's tables and views, as its sample schema writes them
    my_db.script(FIXTURE.read_text(encoding="utf-8"))
    worker = worker_proc()

    # When the database is moved
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target="sakila",
                                options={"profile": profile})
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "done", view

    # Then every view is translated and answers as on MariaDB
    report = json.loads((settings_env.data_dir / "sakila.report.json").read_text())
    fates = {o["name"]: (o["fate"], o.get("reason")) for o in report["objects"]
             if o["kind"] == "view"}
    assert fates == {name: ("translated", None) for name in
                     ("actor_info", "film_list", "nicer_but_slower_film_list")}
    db = sqlite3.connect(settings_env.data_dir / "sakila.db")
    try:
        for query in QUERIES:
            expected = [tuple(float(v) if isinstance(v, Decimal) else v for v in row)
                        for row in my_db.execute(query)]
            assert db.execute(query).fetchall() == expected, query
        assert db.execute("SELECT film_info FROM actor_info WHERE actor_id = 1").fetchone() == (
            "Action: ACE GOLDFINGER, AFFAIR PREJUDICE; Drama: ACADEMY DINOSAUR, ZORRO ARK",)
    finally:
        db.close()
