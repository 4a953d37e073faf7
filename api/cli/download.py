"""`liteshift download JOB -o FILE`: fetch a published file, resuming a cut transfer (HTTP
Range) and checking the whole file's SHA-256 against the one the API sends.

The bytes go to FILE.part and FILE only appears, by rename, once their SHA-256 matches; the
hash the partial file belongs to is kept beside it (FILE.part.sha256) and sent back as
If-Range, so a file that changed on the server meanwhile is fetched whole instead of
spliced.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from api.cli.client import ApiClient, CliError

ATTEMPTS = 5  # transfers cut by the network, resumed within one command
PIECE_BYTES = 1024 * 1024


def download(client: ApiClient, job_id: str, out: Path, *,
             note: Callable[[str], None] = print) -> str:
    """Fetch the job's file into `out`; returns its SHA-256."""
    part = out.with_name(out.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            sha256 = _transfer(client, job_id, part)
            break
        except httpx.TransportError as exc:
            if attempt == ATTEMPTS:
                raise CliError(f"the download was cut {ATTEMPTS} times ({exc}); run the same "
                               f"command again to resume from {part.stat().st_size} bytes",
                               1) from None
            note(f"transfer cut ({exc}); resuming from byte {_size(part)}")
            time.sleep(min(2 ** attempt, 10))
    _verify(part, sha256)
    os.replace(part, out)
    _hash_file(part).unlink(missing_ok=True)
    return sha256


def _transfer(client: ApiClient, job_id: str, part: Path) -> str:
    have, known = _size(part), _read(_hash_file(part))
    headers = dict(client.headers)
    if have and known:
        headers |= {"Range": f"bytes={have}-", "If-Range": f'"{known}"'}
    with client.http.stream("GET", f"/jobs/{job_id}/download", headers=headers,
                            timeout=httpx.Timeout(3600.0, connect=5.0)) as response:
        if response.status_code == 416 and known:  # the partial file is already whole
            return known
        if response.status_code >= 400:
            response.read()
            raise CliError(client.error_message(response),
                           2 if response.status_code < 500 else 1)
        sha256 = response.headers.get("x-content-sha256")
        if not sha256:
            raise CliError("the API sent no X-Content-SHA256 header: is it an older liteshift?", 1)
        _hash_file(part).write_text(sha256 + "\n")
        # 206: the rest of the same bytes; 200: the whole file (new, or changed meanwhile)
        with open(part, "ab" if response.status_code == 206 else "wb") as handle:
            for piece in response.iter_bytes(PIECE_BYTES):
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
    return sha256


def _verify(part: Path, sha256: str) -> None:
    with open(part, "rb") as handle:
        got = hashlib.file_digest(handle, "sha256").hexdigest()
    if got != sha256:
        part.unlink(missing_ok=True)
        _hash_file(part).unlink(missing_ok=True)
        raise CliError(f"the downloaded file's SHA-256 is {got}, the API's is {sha256}: it "
                       "was corrupted in transit (removed); run the command again", 1)


def _hash_file(part: Path) -> Path:
    return part.with_name(part.name + ".sha256")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None
