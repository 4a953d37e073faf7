# One image for the API and the workers: `liteshift api` or `liteshift worker`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITESHIFT_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY worker ./worker
RUN pip install . \
    && useradd --create-home --uid 10001 liteshift \
    && mkdir -p /data && chown liteshift:liteshift /data

# A named volume mounted on /data starts with this directory's owner, so it is writable.
USER liteshift
VOLUME ["/data"]
EXPOSE 8000
CMD ["liteshift", "api", "--host", "0.0.0.0", "--port", "8000"]
