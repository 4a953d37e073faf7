"""What a snapshot holder counts as its job being attended, against a real Redis: a lease of
the job held, or a worker of the job's queue announced. tests/test_snapshot_pg.py shows the
whole release with real workers killed -9."""

from __future__ import annotations

from worker.jobs.snapshot_holder import _attended
from worker.state.lease import Lease

JOB = {"id": "j1", "state": "copying", "tables": ["users", "posts"]}


def test_nobody_is_unattended(store, settings_env):
    assert not _attended(store, JOB, settings_env.queue)


def test_a_lease_of_one_of_its_tables_attends_it(store, settings_env):
    for job_id, attended in (("j1", True), ("other", False)):
        lease = Lease(store.redis, store.keys, job_id, "table:posts", settings_env.lease_ttl_s)
        assert lease.acquire()
        with lease:
            assert _attended(store, JOB, settings_env.queue) is attended
    assert not _attended(store, JOB, settings_env.queue)


def test_a_worker_of_its_queue_attends_it_and_one_of_another_does_not(store, settings_env):
    store.announce_worker("elsewhere:1", {"queue": "another-volume"}, ttl_s=60)
    assert not _attended(store, JOB, settings_env.queue)

    store.announce_worker("here:2", {"queue": settings_env.queue}, ttl_s=60)
    assert _attended(store, JOB, settings_env.queue)
