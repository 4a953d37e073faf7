#!/usr/bin/env bash
# The README's first command: build a demo PostgreSQL database, run a worker and the API, copy
# the database into .demo/data/demo.db through the real queue, and show what came out.
# Re-runnable: the source is rebuilt and the job replaces demo.db (keeping the old file).
set -euo pipefail
# shellcheck source=ops/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$LITESHIFT_ROOT"

ensure_venv
ensure_services

DEMO="$LITESHIFT_ROOT/.demo"
SOURCE_DB=liteshift_demo
SOURCE_URL="postgresql://postgres@127.0.0.1/$SOURCE_DB"
mkdir -p "$DEMO/data"
rm -f "$DEMO"/data/demo.*.old.db  # the previous run's backups (each run keeps one)

say "creating the demo source database $SOURCE_DB"
psql -X -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $SOURCE_DB WITH (FORCE)" -c "CREATE DATABASE $SOURCE_DB"
psql -X -q -h 127.0.0.1 -U postgres -d "$SOURCE_DB" -v ON_ERROR_STOP=1 <<'SQL'
CREATE TYPE order_status AS ENUM ('pending', 'paid', 'shipped', 'refunded');

CREATE TABLE users (
  id         bigserial PRIMARY KEY,
  email      text NOT NULL UNIQUE,
  name       text NOT NULL,
  is_admin   boolean NOT NULL DEFAULT false,
  api_key    uuid NOT NULL DEFAULT gen_random_uuid(),
  avatar     bytea,
  inserted_at timestamp(0) NOT NULL DEFAULT now(),
  last_seen  timestamptz
);

CREATE TABLE products (
  id     serial PRIMARY KEY,
  sku    text NOT NULL UNIQUE,
  title  text NOT NULL,
  price  numeric(10,2) NOT NULL CHECK (price >= 0),
  attrs  jsonb NOT NULL DEFAULT '{}',
  active boolean NOT NULL DEFAULT true
);

CREATE TABLE posts (
  id          bigint PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title       text NOT NULL,
  body        text,
  tags        text[] NOT NULL DEFAULT '{}',
  meta        jsonb,
  published   boolean NOT NULL DEFAULT false,
  score       double precision,
  inserted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX posts_user_id_index ON posts (user_id);
CREATE INDEX posts_inserted_at_index ON posts (inserted_at DESC);
CREATE INDEX posts_published_index ON posts (inserted_at) WHERE published;  -- partial
CREATE INDEX posts_lower_title_index ON posts (lower(title));  -- on an expression

-- A composite primary key: copied in (user_id, post_id) order, resumable by row value.
CREATE TABLE likes (
  user_id  bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  post_id  bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
  liked_at timestamptz NOT NULL,
  PRIMARY KEY (user_id, post_id)
);

CREATE TABLE orders (
  id         uuid PRIMARY KEY,
  user_id    bigint NOT NULL REFERENCES users (id),
  product_id integer NOT NULL REFERENCES products (id),
  quantity   integer NOT NULL,
  total      numeric(12,2) NOT NULL,
  status     order_status NOT NULL DEFAULT 'pending',
  placed_at  timestamptz NOT NULL
);
CREATE INDEX orders_user_id_status_index ON orders (user_id, status);

CREATE VIEW recent_posts AS
  SELECT id, user_id, title FROM posts WHERE inserted_at > now() - interval '7 days';

INSERT INTO users (email, name, is_admin, avatar, inserted_at, last_seen)
SELECT 'user' || g || '@example.com', 'User ' || g, g % 500 = 0,
       CASE WHEN g % 10 = 0 THEN decode(md5(g::text), 'hex') END,
       timestamp '2023-01-01' + g * interval '17 minutes',
       CASE WHEN g % 3 > 0 THEN timestamptz '2024-06-01 00:00:00+00' + g * interval '1 minute' END
FROM generate_series(1, 20000) g;

INSERT INTO products (sku, title, price, attrs, active)
SELECT 'SKU-' || lpad(g::text, 5, '0'), 'Product ' || g, round((g * 7.31)::numeric % 500, 2),
       jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + g % 3], 'weight_g', g % 900),
       g % 20 <> 0
FROM generate_series(1, 1000) g;

INSERT INTO posts (id, user_id, title, body, tags, meta, published, score, inserted_at)
SELECT g, 1 + (g * 7919) % 20000, 'Post number ' || g,
       repeat('Lorem ipsum dolor sit amet. ', 1 + g % 8),
       ARRAY[(ARRAY['elixir', 'sqlite', 'rails'])[1 + g % 3], 'tag' || g % 10],
       CASE WHEN g % 4 = 0 THEN jsonb_build_object('views', g % 1000, 'draft', g % 8 = 0) END,
       g % 5 <> 0, CASE WHEN g % 7 <> 0 THEN (g % 1000) / 7.0 END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '73 seconds'
FROM generate_series(1, 200000) g;

INSERT INTO likes (user_id, post_id, liked_at)
SELECT 1 + (g * 37) % 20000, g, timestamptz '2024-02-01 00:00:00+00' + g * interval '11 seconds'
FROM generate_series(1, 150000) g;

INSERT INTO orders (id, user_id, product_id, quantity, total, status, placed_at)
SELECT md5('order' || g)::uuid, 1 + (g * 13) % 20000, 1 + g % 1000, 1 + g % 4,
       round(((1 + g % 4) * ((g % 1000) * 7.31 % 500))::numeric, 2),
       (ARRAY['pending', 'paid', 'shipped', 'refunded'])[1 + g % 4]::order_status,
       timestamptz '2024-03-01 00:00:00+00' + g * interval '5 minutes'
FROM generate_series(1, 50000) g;

ANALYZE;
SQL

# A worker and the API of our own, on a queue, Redis prefix and port nobody else uses.
export LITESHIFT_DATA_DIR="$DEMO/data"
export LITESHIFT_QUEUE=liteshift-demo
export LITESHIFT_REDIS_PREFIX=liteshift-demo
export LITESHIFT_REDIS_URL=redis://127.0.0.1:6379/0
export LITESHIFT_LOG_FORMAT=json
PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export LITESHIFT_API_URL="http://127.0.0.1:$PORT"
LITESHIFT_API_TOKEN=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')
export LITESHIFT_API_TOKEN
PATH="$LITESHIFT_ROOT/.venv/bin:$PATH"

# Forget earlier demo runs (an interrupted one would still hold the target): the demo owns
# this Redis prefix and queue, and the job directories under .demo/data/.liteshift/jobs.
redis-cli -n 0 --scan --pattern "$LITESHIFT_REDIS_PREFIX:*" | xargs -r redis-cli -n 0 del >/dev/null
redis-cli -n 0 del "$LITESHIFT_QUEUE" >/dev/null
rm -rf "$DEMO/data/.liteshift/jobs"

PIDS=()
stop_all() {  # TERM lets celery finish its tasks (warm shutdown); KILL whatever is left
  local pid _
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true  # its process group (setsid below)
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

say "starting a worker (log: .demo/worker.log) and the API on port $PORT (log: .demo/api.log)"
setsid liteshift worker --concurrency 2 >"$DEMO/worker.log" 2>&1 &
PIDS+=($!)
setsid liteshift api --port "$PORT" >"$DEMO/api.log" 2>&1 &
PIDS+=($!)

api_up() {
  python -c 'import sys, urllib.request as u; u.urlopen(sys.argv[1] + "/healthz", timeout=2)' \
    "$LITESHIFT_API_URL" 2>/dev/null
}
if ! wait_for api_up; then
  tail -n 20 "$DEMO/api.log" >&2
  die "the API did not answer on $LITESHIFT_API_URL/healthz (log above: .demo/api.log)"
fi

JOB=$(liteshift submit "$SOURCE_URL" --target demo --replace)
say "job $JOB submitted; watching it"
# In the background so that a TERM to this script stops everything at once: bash runs traps
# only between foreground commands, but `wait` is interrupted by them.
timeout 600 liteshift watch "$JOB" --interval 1 &
PIDS+=($!)
if ! wait $!; then
  tail -n 20 "$DEMO/worker.log" >&2
  die "job $JOB did not finish (worker log above: .demo/worker.log)"
fi

DB="$LITESHIFT_DATA_DIR/demo.db"
echo
echo "Published: $DB"
echo "Rows per table (read from the SQLite file, checked against PostgreSQL):"
python - "$DB" "$SOURCE_URL" <<'PY'
import json, sqlite3, sys
from pathlib import Path
import psycopg
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite%' ORDER BY name")]
with psycopg.connect(sys.argv[2]) as pg:
    bad = 0
    for name in names:
        lite = db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        source = pg.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
        bad += lite != source
        print(f"  {name:<10} {lite:>9,}" + ("" if lite == source else f"  (PostgreSQL: {source:,})"))
report = json.loads(Path(sys.argv[1]).with_suffix(".report.json").read_text())
skipped = [o for o in report["objects"] if o["fate"] != "translated"]
print(f"Schema objects: {len(report['objects']) - len(skipped)} translated, "
      f"{len(skipped)} skipped" + (":" if skipped else ""))
for o in skipped:
    print(f"  {o['kind']} {o['name']}: {o.get('reason')}")
sys.exit(1 if bad else 0)
PY
echo "Report:    $LITESHIFT_DATA_DIR/demo.report.json  (or: liteshift report $JOB)"
echo "Logs:      .demo/worker.log, .demo/api.log"
