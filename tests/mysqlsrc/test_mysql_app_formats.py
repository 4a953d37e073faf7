"""What apps store, from MariaDB (issue 23): its native uuid as each profile's app writes it,
the decimals Django's reader rounds counted as lossy, time defaults in the values' form."""

from __future__ import annotations

import json
import sqlite3

from worker.jobs import control

SCHEMA = """
CREATE TABLE things (
  id int PRIMARY KEY, u uuid, amount decimal(30,10),
  tm time(6) NOT NULL DEFAULT '12:00:00'
);
INSERT INTO things (id, u, amount) VALUES
  (1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 12.5),
  (2, '00000000-0000-0000-0000-000000000000', 1234567890.123456),
  (3, NULL, 12345678901234567890.123456789),
  (4, 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', 1234567890123456)
"""


def _move(my_db, settings_env, store, send, worker, wait_for, target, options):
    job_id = control.submit_job(settings_env, store, send, source=my_db.url, target=target,
                                options=options)
    view = wait_for(store, job_id, ["done", "failed"], timeout=90, workers=[worker])
    assert view["state"] == "done", view
    report = json.loads((settings_env.data_dir / f"{target}.report.json").read_text())
    lossy = {c["name"]: c["lossy_values"] for c in report["tables"][0]["columns"]
             if c["lossy_values"]}
    db = sqlite3.connect(settings_env.data_dir / f"{target}.db")
    try:
        db.execute("INSERT INTO things (id) VALUES (9)")  # the time default, as data is
        times = {r[0] for r in db.execute("SELECT tm FROM things")}
        return db.execute("SELECT u FROM things WHERE id < 9 ORDER BY id").fetchall(), \
            lossy, times
    finally:
        db.close()


def test_mariadb_uuid_and_decimals_as_each_app_reads_them(my_db, settings_env, store, send,
                                                           worker_proc, wait_for):
    # Given MariaDB's native uuid (Django 5's UUIDField there) and a decimal(30,10)
    my_db.script(SCHEMA)
    worker = worker_proc()
    moved = [my_db, settings_env, store, send, worker, wait_for]

    # When it is moved for Django, and for Ecto
    django_uuids, django_lossy, django_times = _move(*moved, "dj", {"profile": "django"})
    ecto_uuids, ecto_lossy, ecto_times = _move(*moved, "ecto", {"profile": "ecto"})
    _, _, rails_times = _move(*moved, "rails", {"profile": "rails"})

    # Then Django gets its UUIDField's 32 hex digits, Ecto the hyphenated lowercase text
    assert django_uuids == [("a0eebc999c0b4ef8bb6d6bb9bd380a11",),
                            ("00000000000000000000000000000000",), (None,),
                            ("ffffffffffffffffffffffffffffffff",)]
    assert ecto_uuids == [("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",),
                          ("00000000-0000-0000-0000-000000000000",), (None,),
                          ("ffffffff-ffff-ffff-ffff-ffffffffffff",)]
    # and Django's count has every value past 15 significant digits, which its reader
    # rounds; Ecto's only the one REAL cannot hold
    assert django_lossy == {"amount": 3}
    assert ecto_lossy == {"amount": 1}
    # and a time column's default is written as its values are (one form per profile)
    assert (django_times, ecto_times, rails_times) == (
        {"12:00:00"}, {"12:00:00.000000"}, {"2000-01-01 12:00:00"})
