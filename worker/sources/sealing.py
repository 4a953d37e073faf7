"""Encrypt source URLs at rest: Redis and the manifest hold only the sealed form.

The key is LITESHIFT_SECRET_KEY, or else a key file created once on the data volume, which
the API and the workers share (Redis never sees it).
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken

from worker.core import filemodes
from worker.core.errors import ConfigError
from worker.sources.url import remember_url_password, resolve_source

if TYPE_CHECKING:  # pydantic's settings are slow to import: not in a reader or a probe
    from worker.core.config import Settings


def _key_file_key(state_dir: Path) -> bytes:
    path = state_dir / "secret.key"
    filemodes.make_dirs(path.parent)
    try:
        fd = filemodes.open_new(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


@lru_cache(maxsize=4)
def _fernet(secret_key: str | None, state_dir: str) -> Fernet:
    if secret_key:
        digest = hashlib.sha256(secret_key.encode()).digest()
        return Fernet(base64.urlsafe_b64encode(digest))
    return Fernet(_key_file_key(Path(state_dir)))


def seal(settings: Settings, plaintext: str) -> str:
    fernet = _fernet(settings.secret_key, str(settings.state_dir))
    return fernet.encrypt(plaintext.encode()).decode()


def unseal(settings: Settings, token: str) -> str:
    try:
        plaintext = _fernet(settings.secret_key, str(settings.state_dir)).decrypt(token.encode())
    except InvalidToken:
        raise ConfigError(
            "cannot decrypt the job's source URL: the API and the workers must share "
            "LITESHIFT_SECRET_KEY (or the same data volume holding .liteshift/secret.key)"
        ) from None
    url = resolve_source(settings.sources, plaintext.decode())
    remember_url_password(url)
    return url


def unseal_secret(settings: Settings, token: str) -> str:
    """A sealed secret that is not a source URL (a snapshot holder's token)."""
    try:
        return _fernet(settings.secret_key, str(settings.state_dir)).decrypt(
            token.encode()).decode()
    except InvalidToken:
        raise ConfigError("cannot decrypt a job's secret: the workers must share "
                          "LITESHIFT_SECRET_KEY (or the same data volume holding "
                          ".liteshift/secret.key)") from None
