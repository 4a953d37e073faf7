"""The one settings object: every knob comes from a LITESHIFT_* environment variable."""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core import filemodes
from worker.core.errors import ConfigError
from worker.sources.hosts import HostAllow


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LITESHIFT_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = Field(default="liteshift", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    data_dir: Path = Path("./data")
    api_url: str = "http://127.0.0.1:8000"
    api_token: str | None = None
    # Encrypts source URLs at rest (Redis, the manifest). When unset, a key file is created
    # once in <data_dir>/.liteshift/secret.key, which the API and workers share via the volume.
    secret_key: str | None = None
    queue: str = Field(default="liteshift", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    chunk_rows: int = Field(default=100_000, ge=1, le=1_000_000)
    # A worker holds about three chunks (one read ahead, one being inserted, one arriving)
    chunk_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    # Tables at least this big (the source's own size) are read in a child process, so
    # reading and writing use two cores (worker/sources/reader_process.py); 0 for every table,
    # -1 for none.
    reader_process_bytes: int = Field(default=32 * 1024 * 1024, ge=-1)
    # Tables at most this big (the source's own size) are copied in groups: one task and one
    # work file for up to group_tables of them (worker/jobs/grouping.py). 0: a task and a
    # work file per table.
    group_table_bytes: int = Field(default=1024 * 1024, ge=0)
    group_tables: int = Field(default=100, ge=2, le=10_000)
    lease_ttl_s: float = Field(default=30.0, gt=0.5, le=3600)
    source_retry_limit: int = Field(default=5, ge=0, le=100)
    source_retry_backoff_s: float = Field(default=2.0, ge=0, le=600)
    connect_timeout_s: int = Field(default=10, ge=1, le=300)
    # A follow job applies the source's changes in SQLite transactions of at most this many
    # changes, and looks for new ones this often when it has caught up.
    follow_batch_changes: int = Field(default=5_000, ge=1, le=1_000_000)
    follow_idle_s: float = Field(default=0.2, gt=0, le=60)
    probe_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Where a job's MySQL snapshot holder (worker/sources/mysql/snapshot.py) listens, on the
    # planning worker's host, and workers connect to read the job's tables in its moment.
    # Loopback serves workers on the same host; with workers on several hosts, set an
    # address of this host that they reach (0.0.0.0 listens everywhere and is announced
    # by host name).
    snapshot_address: str = "127.0.0.1"
    # A copying job's snapshot holds the source's old rows (and PostgreSQL's WAL, which can
    # fill its disk): once the job has had no worker for this long (none of its leases held
    # and no worker running), its holder releases the snapshot and fails the job, which
    # `liteshift retry` plans again under a new one.
    snapshot_idle_timeout_s: float = Field(default=900.0, ge=1, le=7 * 24 * 3600)
    # How many tables a request's `tables` or `exclude` may name: bounds the work and the
    # answer of one request.
    max_listed_tables: int = Field(default=10_000, ge=1, le=1_000_000)
    # Source checks (a probe process each, about 50 MB) the API runs at once; a submit
    # beyond them is answered 503 with Retry-After.
    probe_concurrency: int = Field(default=4, ge=1, le=256)
    # How long Redis keeps a finished (done, failed, cancelled) job's state; the volume
    # keeps its record for good, and `liteshift resume JOB` restores it. 0: for ever.
    job_retention_s: int = Field(default=7 * 24 * 3600, ge=0)
    # A group (name or number) that may read what liteshift writes on the volume: files
    # 0640 and directories 0750 of that group. Unset: 0600 and 0700, the owner's only.
    file_group: str | None = None
    log_format: str = Field(default="auto", pattern=r"^(auto|json|console)$")
    # Named sources, LITESHIFT_SOURCE_<NAME>=postgresql://…: jobs name them instead of
    # carrying a password; the API and the workers resolve the name from their own setting.
    sources: dict[str, str] = Field(default_factory=dict)
    # The TCP hosts sources may be read from: comma-separated CIDRs and host names (every
    # address a name resolves to must be in a listed network, unless the name is listed).
    # Empty: any TCP host. worker/sources/hosts.py reads it; README "Security" explains it.
    source_allow: str = ""
    # A PEM file of CA certificates that a MySQL source's ssl-mode=VERIFY_CA/VERIFY_IDENTITY
    # checks the server against instead of the system's store (a managed service's own CA,
    # e.g. Amazon RDS's bundle). The operator's: a URL never names a file.
    mysql_ssl_ca: Path | None = None

    @model_validator(mode="after")
    def _named_sources(self) -> Settings:
        prefix = "LITESHIFT_SOURCE_"
        # LITESHIFT_SOURCE_RETRY_LIMIT and _RETRY_BACKOFF_S are settings, not sources
        settings = {f"LITESHIFT_{name}".upper() for name in type(self).model_fields}
        for key, value in os.environ.items():
            if key.startswith(prefix) and len(key) > len(prefix) and key.upper() not in settings:
                self.sources.setdefault(key[len(prefix):].upper(), value)
        return self

    @field_validator("api_token")
    @classmethod
    def _token_as_sent(cls, value: str | None) -> str | None:
        # The CLI sends the token in an HTTP header, which holds neither non-ASCII nor
        # surrounding spaces: such a token could never match (or would crash the client).
        # Refused rather than stripped, so the API and every CLI agree on one token.
        if value and value != value.strip():
            raise ValueError("has spaces or line breaks at its start or end: remove them")
        if value and not all("!" <= c <= "~" for c in value):
            raise ValueError("must be printable ASCII without spaces, e.g. the output of "
                             "`openssl rand -hex 24`")
        return value

    @field_validator("file_group")
    @classmethod
    def _known_group(cls, value: str | None) -> str | None:
        if value:
            try:
                filemodes.find_group(value)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return value

    @field_validator("source_allow")
    @classmethod
    def _source_allow(cls, value: str) -> str:
        return HostAllow.parse(value).text

    @field_validator("mysql_ssl_ca")
    @classmethod
    def _ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            ssl.create_default_context(cafile=str(value))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"must be a readable PEM file of CA certificates ({exc})") from None
        return value.resolve()

    @property
    def host_allow(self) -> HostAllow:
        """LITESHIFT_SOURCE_ALLOW, parsed (worker/sources/hosts.py)."""
        return HostAllow.parse(self.source_allow)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def broker_url(self) -> str:
        """redis_url as Celery's Redis transport spells it: a unix socket (`liteshift serve`'s
        private Redis) is redis+socket:// to kombu, unix:// to redis-py."""
        if self.redis_url.startswith("unix://"):
            return "redis+socket://" + self.redis_url[len("unix://"):]
        return self.redis_url

    @property
    def state_dir(self) -> Path:
        """Where job manifests and work files live, beside the published files."""
        return self.data_dir / ".liteshift"

    def job_dir(self, job_id: str) -> Path:
        return self.state_dir / "jobs" / job_id


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read and validate the environment once; a bad variable is a ConfigError naming it."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"LITESHIFT_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    settings.data_dir = settings.data_dir.resolve()
    return settings
