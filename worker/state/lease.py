"""One writer per table: a Redis lease with a heartbeat and a fencing token.

The lease keeps a second worker from starting the same table; the token, checked inside
each chunk's SQLite transaction (worker/sqlite/workfile.py), stops a writer that lost its
lease without knowing it (a long pause, a Redis restart) from committing anything more.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from worker.state.store import Keys

# Tokens must grow past every token this table ever saw, even after Redis lost its counter:
# the caller passes the newest token recorded in the work file.
_ACQUIRE = """
local token = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if token <= floor then token = floor + 1; redis.call('SET', KEYS[2], token) end
if redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[1]) then return token end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    def __init__(self, client: redis.Redis, keys: Keys, job_id: str, name: str, ttl_s: float):
        self.redis: Any = client  # decode_responses=True: replies are str
        self.key = keys.lease(job_id, name)
        self.fence_key = keys.fence()
        self.ttl_ms = int(ttl_s * 1000)
        self.token = 0
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, floor: int = 0) -> bool:
        token = int(self.redis.eval(_ACQUIRE, 2, self.key, self.fence_key, self.ttl_ms, floor))
        if not token:
            return False
        self.token = token
        self._thread = threading.Thread(target=self._heartbeat, name="liteshift-lease",
                                        daemon=True)
        self._thread.start()
        return True

    def holder(self) -> str | None:
        return self.redis.get(self.key)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.redis.eval(_RENEW, 1, self.key, str(self.token), self.ttl_ms):
                    self.lost.set()
                    return
            except redis.RedisError:
                continue  # Redis away: the fencing token still protects the work file

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        try:
            self.redis.eval(_RELEASE, 1, self.key, str(self.token))
        except redis.RedisError:
            pass  # it expires by itself

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
