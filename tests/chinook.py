"""The Chinook sample database from shared/datasets, loaded with its own script.

shared/ sits beside the repository here and in CI's clone. A clone made anywhere else on
this machine finds it beside the repository it was cloned from; LITESHIFT_SHARED names it
outright.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    places = [Path(p) for p in [os.environ.get("LITESHIFT_SHARED")] if p]
    places.append(REPO.parent / "shared")
    origin = subprocess.run(["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True).stdout.strip()
    if origin and "://" not in origin and ":" not in origin.split("/")[0]:  # a local path
        places.append((REPO / origin).resolve().parent / "shared")
    return next((p for p in places if (p / "datasets").is_dir()), places[0])


def load_chinook(kind: str, database: str, env: dict[str, str]) -> None:
    """Load Chinook's `kind` ("pg" or "mysql") variant as `database` (the script drops and
    recreates it)."""
    script = shared_dir() / "datasets" / "chinook" / "load.sh"
    assert script.exists(), (f"{script} is missing: shared/ must sit beside the repository, "
                             "beside the one it was cloned from, or at $LITESHIFT_SHARED")
    subprocess.run([str(script), kind, database], env={**os.environ, **env}, check=True,
                   capture_output=True, timeout=120)
