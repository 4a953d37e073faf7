"""`liteshift status` says which moment of the source the job's tables are read at."""

from __future__ import annotations

from api.cli import render


def test_a_postgresql_moment_shows_its_lsn_and_time():
    line = render.moment({"consistent": True, "kind": "postgres", "method": "replication_slot",
                          "lsn": "0/16B3748", "at": "2026-12-03T09:56:36.035508Z"})
    assert line == ("snapshot: LSN 0/16B3748 at 2026-12-03T09:56:36.035508Z "
                    "(replication_slot), consistent: true")


def test_a_mysql_moment_shows_its_gtid_or_binlog_position():
    base = {"consistent": True, "kind": "mysql", "at": "2026-12-03T10:00:00.000000Z"}
    assert "GTID 0-1-1519 " in render.moment({**base, "method": "flush_tables_with_read_lock",
                                               "gtid": "0-1-1519", "binlog_file": "b.000002",
                                               "binlog_pos": 75})
    assert "binlog b.000002:75 " in render.moment({**base, "method": "binlog_snapshot",
                                                   "binlog_file": "b.000002", "binlog_pos": 75})


def test_no_moment_says_why_and_the_status_shows_it():
    job = {"id": "j", "state": "done", "target": "t", "source": "s", "tables": [],
           "snapshot": {"consistent": False, "reason": "turned off for this job (--no-snapshot)"}}
    assert ("snapshot: none, consistent: false (turned off for this job (--no-snapshot))"
            in render.status(job))
