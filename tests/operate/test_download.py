"""GET /jobs/{id}/download is resumable (Range, If-Range on the content's hash) and sends the
file's SHA-256; `liteshift download` resumes a partial file and checks the hash."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess

from faults.support import LITESHIFT, REPO, make_narrow_tables

TOKEN = "download-token-0123456789"


def ranged(api) -> int:
    """Partial answers (206) to downloads, in the API's access log."""
    return sum("/download HTTP/1.1\" 206" in json.loads(line)["event"]
               for line in api.log_text().splitlines())


def test_a_ranged_download_resumes_and_the_checksum_matches(
        pg_db, settings_env, store, worker_proc, api_process, wait_for, tmp_path):
    # Given a done job, served by an API that needs a token
    make_narrow_tables(pg_db, {"things": 20_000})
    worker = worker_proc()
    api = api_process({"LITESHIFT_API_TOKEN": TOKEN})
    with api.client(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        answer = http.post("/jobs", json={"source": pg_db.url, "target": "fetched"})
        job_id = answer.json()["job_id"]
        assert wait_for(store, job_id, ["done", "failed"], workers=[worker])["state"] == "done"

        # When the file is fetched whole, then from byte 5000 with If-Range on its ETag
        whole = http.get(f"/jobs/{job_id}/download")
        sha256 = whole.headers["x-content-sha256"]
        rest = http.get(f"/jobs/{job_id}/download",
                        headers={"Range": "bytes=5000-", "If-Range": whole.headers["etag"]})
        stale = http.get(f"/jobs/{job_id}/download",
                         headers={"Range": "bytes=5000-", "If-Range": '"not-this-file"'})

    # Then the hash in the headers is the body's, the range is the rest of the same bytes,
    # and a range on another version of the file gets the whole file instead
    assert whole.status_code == 200 and len(whole.content) > 100_000
    assert hashlib.sha256(whole.content).hexdigest() == sha256
    assert whole.headers["etag"] == f'"{sha256}"'
    assert whole.headers["repr-digest"].startswith("sha-256=:")
    assert rest.status_code == 206 and rest.content == whole.content[5000:]
    assert rest.headers["x-content-sha256"] == sha256
    assert stale.status_code == 200 and stale.content == whole.content

    # When `liteshift download` finds a partial file from a cut transfer
    out = tmp_path / "app.db"
    part = tmp_path / "app.db.part"
    part.write_bytes(whole.content[:70_000])
    (tmp_path / "app.db.part.sha256").write_text(sha256 + "\n")
    env = {**os.environ, "LITESHIFT_API_URL": api.url, "LITESHIFT_API_TOKEN": TOKEN}
    done = subprocess.run([*LITESHIFT, "download", job_id, "-o", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)

    # Then it asks for the rest only, and the file it leaves has the API's hash and the rows
    assert done.returncode == 0, done.stderr
    assert f"SHA-256 {sha256} (checked)" in done.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha256
    assert not part.exists() and not (tmp_path / "app.db.part.sha256").exists()
    assert ranged(api) == 2  # the test's own, and the CLI's
    db = sqlite3.connect(out)
    assert db.execute("SELECT count(*), sum(id) FROM things").fetchone() == (20_000, 200_010_000)
    db.close()

    # When the partial file holds bytes that are not the file's, the hash catches it
    bad = tmp_path / "bad.db"
    (tmp_path / "bad.db.part").write_bytes(b"\0" * 70_000)
    (tmp_path / "bad.db.part.sha256").write_text(sha256 + "\n")
    refused = subprocess.run([*LITESHIFT, "download", job_id, "-o", str(bad)], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "SHA-256" in refused.stderr and "run the command again" in refused.stderr
    assert not bad.exists() and not (tmp_path / "bad.db.part").exists()
    again = subprocess.run([*LITESHIFT, "download", job_id, "-o", str(bad)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert hashlib.sha256(bad.read_bytes()).hexdigest() == sha256
