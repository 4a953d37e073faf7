# One image for the API and the workers: `liteshift api` or `liteshift worker`, or both with
# a private Redis (redis-server is installed for it) under `liteshift serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITESHIFT_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY api ./api
COPY worker ./worker
# gcc and SQLite's headers build worker/native/_fastsqlite.c and worker/native/_pgcopy.c, then
# go; the
# check fails the build if either is missing (the copy would still work, 2-3x slower). The
# sources go too: `celery -A worker...` puts the working directory first on sys.path, and
# the uncompiled copy there would shadow the installed one.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libsqlite3-dev \
    && pip install . \
    && apt-get purge -y gcc libc6-dev libsqlite3-dev \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && rm -rf /app/api /app/worker \
    && python -c "from worker import native; s = native.status(); assert all(s.values()), s" \
    && useradd --create-home --uid 10001 liteshift \
    && mkdir -p /data && chown liteshift:liteshift /data

# A named volume mounted on /data starts with this directory's owner, so it is writable.
USER liteshift
VOLUME ["/data"]
EXPOSE 8000
CMD ["liteshift", "api", "--host", "0.0.0.0", "--port", "8000"]
