"""docker-compose.yml keeps the promises the README makes (no Docker engine needed to check)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the file's anchors and merge keys


def _named_mounts(service: dict[str, Any], volumes: dict[str, Any]) -> dict[str, str]:
    """Named-volume mounts of a service, as {volume: path in the container}."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source"), entry.get("target")
        if source in volumes:
            mounts[source] = target
    return mounts


def test_redis_api_and_worker_are_defined(compose):
    assert {"redis", "api", "worker"} <= set(compose["services"])
    assert compose["services"]["redis"]["image"].startswith("redis:7")


def test_api_and_worker_share_the_data_volume_at_the_same_path(compose):
    volumes = compose.get("volumes") or {}
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    assert _named_mounts(api, volumes).get("liteshift-data") == "/data"
    assert _named_mounts(worker, volumes).get("liteshift-data") == "/data"
    for service in (api, worker):
        env = service["environment"]
        assert env["LITESHIFT_DATA_DIR"] == "/data"
        assert env["LITESHIFT_REDIS_URL"] == "redis://redis:6379/0"


def test_every_long_running_service_has_a_healthcheck(compose):
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/healthz" in " ".join(compose["services"]["api"]["healthcheck"]["test"])
    assert compose["services"]["worker"]["healthcheck"]["test"]


def test_api_and_worker_wait_for_a_healthy_redis(compose):
    for name in ("api", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name


def test_the_api_refuses_to_start_without_a_token(compose):
    token = compose["services"]["api"]["environment"]["LITESHIFT_API_TOKEN"]
    assert token.startswith("${LITESHIFT_API_TOKEN:?"), token


def test_flower_is_optional(compose):
    flower = compose["services"].get("flower")
    if flower is not None:
        assert flower.get("profiles"), "flower must sit behind a profile"
