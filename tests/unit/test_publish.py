"""The atomic publish and the files a job keeps on the volume, on a temporary directory: no
service. A published name appears complete or not at all, is never overwritten unless asked,
and a re-run recognises its own file by inode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.core.config import Settings
from worker.core.errors import ConfigError, TargetError, TargetExists
from worker.core.model import ColumnPlan, TablePlan
from worker.jobs.finalize import _record_intent, partial_path, publish, published_earlier
from worker.sources.sealing import seal, unseal
from worker.state.jobfiles import read_json, write_json_atomic
from worker.state.manifest import read_manifest, table_plan, write_manifest


def built(job_dir: Path, target: str, content: bytes) -> Path:
    job_dir.mkdir(parents=True, exist_ok=True)
    path = partial_path(job_dir, target)
    path.write_bytes(content)
    return path


def test_publish_links_the_new_file_into_place_and_never_overwrites(tmp_path):
    job_dir = tmp_path / ".liteshift" / "jobs" / "j1"
    final, backup = publish(built(job_dir, "app", b"new"), tmp_path, "app", replace=False)

    assert final == tmp_path / "app.db" and final.read_bytes() == b"new" and backup is None
    assert not partial_path(job_dir, "app").exists()
    with pytest.raises(TargetExists, match="submit with replace"):
        publish(built(job_dir, "app", b"newer"), tmp_path, "app", replace=False)
    assert final.read_bytes() == b"new"


def test_replace_keeps_the_old_file_under_a_new_name(tmp_path):
    (tmp_path / "app.db").write_bytes(b"old")
    job_dir = tmp_path / "job"
    intents: list[str | None] = []

    final, backup = publish(built(job_dir, "app", b"new"), tmp_path, "app", replace=True,
                            intent=intents.append)

    assert final.read_bytes() == b"new"
    # named on the volume, beside the file (answers show no server path)
    assert backup is not None and (tmp_path / backup).read_bytes() == b"old"
    assert backup.startswith("app.") and backup.endswith(".old.db") and "/" not in backup
    assert intents == [backup]  # recorded before the rename


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_target_an_app_has_open_is_refused_even_with_replace(tmp_path, suffix):
    (tmp_path / "app.db").write_bytes(b"old")
    (tmp_path / f"app.db{suffix}").write_bytes(b"")
    partial = built(tmp_path / "job", "app", b"new")

    with pytest.raises(TargetError, match="is in use"):
        publish(partial, tmp_path, "app", replace=True)
    assert (tmp_path / "app.db").read_bytes() == b"old" and partial.exists()


def test_a_rerun_finishes_from_its_own_published_file_and_not_from_anothers(tmp_path):
    job_dir = tmp_path / "job"
    report = {"tables": []}
    partial = built(job_dir, "app", b"new")
    publish(partial, tmp_path, "app", replace=False,
            intent=lambda backup: _record_intent(job_dir, partial, report, backup))

    # killed after the link: the intent names the published inode
    assert published_earlier(job_dir, tmp_path, "app") == (tmp_path / "app.db", None, report)
    # somebody else's file under that name is not ours
    (tmp_path / "theirs.db").write_bytes(b"theirs")  # made while ours lives: another inode
    (tmp_path / "theirs.db").replace(tmp_path / "app.db")
    assert published_earlier(job_dir, tmp_path, "app") is None


def test_json_records_are_replaced_whole(tmp_path):
    path = tmp_path / "a" / "record.json"
    write_json_atomic(path, {"n": 1})
    write_json_atomic(path, {"n": 2})

    assert read_json(path) == {"n": 2} and read_json(tmp_path / "missing.json") is None
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]  # no temporary left


def test_the_manifest_gives_back_the_plans_it_was_given(tmp_path):
    column = ColumnPlan(name="id", source_type="integer", sqlite_type="INTEGER",
                        select_sql='"id"', wire="int8", converter=None, rule="integer",
                        lossy=False, note="", nullable=False)
    plan = TablePlan(name="t", file="t.db", columns=[column], key=["id"],
                     key_kind="primary_key", key_types=["integer"], key_positions=[0],
                     create_sql='CREATE TABLE "t" ("id" INTEGER PRIMARY KEY)',
                     insert_sql='INSERT INTO "t" ("id") VALUES (?)', rows_estimated=3)
    write_manifest(tmp_path, {"id": "j"}, [plan], [{"kind": "view", "fate": "skipped"}])

    job, plans, objects = read_manifest(tmp_path)
    assert (job, plans, objects) == ({"id": "j"}, [plan], [{"kind": "view", "fate": "skipped"}])
    assert table_plan(tmp_path, "t") == plan
    with pytest.raises(TargetError, match="not in the job's plan"):
        table_plan(tmp_path, "u")
    assert "secret" not in json.dumps(read_json(tmp_path / "manifest.json"))


def test_a_sealed_url_opens_only_with_the_same_key(tmp_path):
    url = "postgresql://app:s3cret@db/app"
    settings = Settings(data_dir=tmp_path, secret_key="one key")

    sealed = seal(settings, url)
    assert "s3cret" not in sealed and unseal(settings, sealed) == url
    other = Settings(data_dir=tmp_path, secret_key="another key")
    with pytest.raises(ConfigError, match="must share LITESHIFT_SECRET_KEY"):
        unseal(other, sealed)


def test_without_a_secret_key_a_key_file_is_made_once_on_the_volume(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key=None)

    sealed = seal(settings, "mysql://r:pw@h/d")
    key_file = tmp_path / ".liteshift" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert unseal(Settings(data_dir=tmp_path, secret_key=None), sealed) == "mysql://r:pw@h/d"
