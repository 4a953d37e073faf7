"""No answer, CLI output, job error or report shows a server path: they name the target, or a
file relative to the data volume. Provoked: a target taken at submit and while the job runs,
a bad target, an unknown job; read back through the API process and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess

from faults.support import LITESHIFT, REPO
from worker.jobs import control


def test_errors_answers_and_reports_show_no_server_path(pg_db, settings_env, store, send,
                                                         worker_proc, wait_for, api_process):
    volume = str(settings_env.data_dir)
    pg_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    pg_db.execute("INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 20) i")
    worker = worker_proc()
    api = api_process()
    seen: dict[str, str] = {}  # what a person would read, by where it came from

    def cli(*args: str) -> None:
        done = subprocess.run([*LITESHIFT, *args], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "LITESHIFT_API_URL": api.url}, timeout=60)
        seen[f"liteshift {' '.join(args)}"] = done.stdout + done.stderr

    with api.client() as http:
        # Given a job done, and a job whose target another file took while it ran
        done_id = http.post("/jobs", json={"source": pg_db.url,
                                           "target": "paths_done"}).json()["job_id"]
        assert wait_for(store, done_id, ["done", "failed"], workers=[worker])["state"] == "done"
        os.killpg(worker.proc.pid, signal.SIGSTOP)  # the file appears before it publishes
        try:
            late_id = control.submit_job(settings_env, store, send, source=pg_db.url,
                                         target="paths_late")
            (settings_env.data_dir / "paths_late.db").write_bytes(b"")
        finally:
            os.killpg(worker.proc.pid, signal.SIGCONT)
        late = wait_for(store, late_id, ["done", "failed"], workers=[worker])
        assert late["state"] == "failed" and "paths_late.db already exists" in late["error"]

        # When people look at them, and make a few mistakes
        (settings_env.data_dir / "paths_taken.db").write_bytes(b"")
        taken = http.post("/jobs", json={"source": pg_db.url, "target": "paths_taken"})
        assert taken.status_code == 409
        seen["target taken"] = taken.text
        seen["bad target"] = http.post("/jobs", json={"source": pg_db.url,
                                                      "target": "../etc"}).text
        unknown = http.post("/jobs/nosuchjob/resume")
        assert unknown.status_code == 404
        seen["resume unknown"] = unknown.text
        for path in (f"/jobs/{done_id}", f"/jobs/{done_id}/report", f"/jobs/{late_id}",
                     f"/jobs/{late_id}/report", "/jobs"):
            seen[path] = http.get(path).text
    cli("status", late_id)
    cli("status", done_id)
    cli("report", done_id)
    cli("jobs")
    cli("resume", "nosuchjob")
    seen["report file"] = (settings_env.data_dir / "paths_done.report.json").read_text()
    seen["late error in Redis"] = str(store.job(late_id))

    # Then none of it shows the data volume's path: each names the target or a file on it
    assert "paths_done.db" in seen[f"/jobs/{done_id}"]
    assert "paths_taken.db already exists on the data volume" in seen["target taken"]
    assert {where: text for where, text in seen.items() if volume in text} == {}
