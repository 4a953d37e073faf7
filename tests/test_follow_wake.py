"""A follower waiting for its source to have more is woken by a cutover or cancel request
(StateStore.wake_follower), through real Redis: the wait ends at the request, not at the end
of its timeout, and several requests while it was busy wake it once."""

from __future__ import annotations

from typing import Any

from worker.state.store import WAKE_TTL_S


def test_a_wake_ends_the_wait_and_wakes_once(store: Any) -> None:
    # Given two wakes asked for while the follower was busy
    store.wake_follower("job1")
    store.wake_follower("job1")
    assert 0 < store.redis.ttl(store.keys.wake("job1")) <= WAKE_TTL_S

    # Then its next wait is woken (a wait that times out returns False), the one after
    # times out, and a wake for another job wakes only that job's follower
    assert store.wait_for_wake("job1", 60) is True
    assert store.wait_for_wake("job1", 0.05) is False
    store.wake_follower("job2")
    assert store.wait_for_wake("job1", 0.05) is False
    assert store.wait_for_wake("job2", 60) is True
    assert not store.redis.exists(store.keys.wake("job1"), store.keys.wake("job2"))
