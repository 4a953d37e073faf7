"""The app-shaped benchmark database: an issue tracker's tables, made the same in PostgreSQL
and in MariaDB/MySQL, deterministically (every value is a function of its row number).

    orgs 5,000 · users 200,000 · projects 30,000 · labels 20,000 · issues 800,000 ·
    comments 1,500,000 (text-heavy) · issue_labels 600,000 · schema_migrations 200

3,155,200 rows at full size, with foreign keys and 11 secondary indexes: unique, composite,
an expression (lower(email)) and a partial one (open issues by assignee). MariaDB has
neither expression nor partial indexes: there lower(email) is a VIRTUAL generated column
with a unique index on it, and the partial index is a composite (state, assignee_id) index,
what a MariaDB app would use; and a foreign key needs an index that starts with its column,
so issues.assignee_id has one of its own there (12 secondary indexes). SQLITE_INDEXES holds
the same indexes as SQLite sees them, for the "DuckDB + indexes" peer, which builds them
with sqlite3 after DuckDB's copy.

Sizes: "full", "small" (a twentieth, for a quick run), "tiny" (a thousandth, for the smoke
test). Each size lives in a database of its own (liteshift_bench_app, …_app_small, …), kept
between runs and made again only when its fingerprint (this module's SQL and the sizes),
kept as the database's comment, differs.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

FULL_ROWS = {
    "orgs": 5_000, "users": 200_000, "projects": 30_000, "labels": 20_000,
    "issues": 800_000, "comments": 1_500_000, "issue_labels": 600_000,
    "schema_migrations": 200,
}
DIVISORS = {"full": 1, "small": 20, "tiny": 1000}
# Made in this order (foreign keys point backwards); the order of the bench's report too.
TABLES = tuple(FULL_ROWS)

# A paragraph to cut text from: titles, descriptions, issue bodies and comments are slices
# of it at offsets and lengths that vary with the row number (so no two neighbours agree).
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. "
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt "
    "mollit anim id est laborum. Sed ut perspiciatis unde omnis iste natus error sit "
    "voluptatem accusantium doloremque laudantium, totam rem aperiam, eaque ipsa quae ab "
    "illo inventore veritatis et quasi architecto beatae vitae dicta sunt explicabo. Nemo "
    "enim ipsam voluptatem quia voluptas sit aspernatur aut odit aut fugit, sed quia "
    "consequuntur magni dolores eos qui ratione voluptatem sequi nesciunt. Neque porro "
    "quisquam est, qui dolorem ipsum quia dolor sit amet, consectetur, adipisci velit, sed "
    "quia non numquam eius modi tempora incidunt ut labore et dolore magnam aliquam quaerat "
    "voluptatem. Ut enim ad minima veniam, quis nostrum exercitationem ullam corporis "
    "suscipit laboriosam, nisi ut aliquid ex ea commodi consequatur? Quis autem vel eum iure "
    "reprehenderit qui in ea voluptate velit esse quam nihil molestiae consequatur."
)


def rows(size: str) -> dict[str, int]:
    """Each table's rows at `size`; schema_migrations keeps its 200 at every size."""
    div = DIVISORS[size]
    return {t: n if t == "schema_migrations" else max(n // div, 2) for t, n in FULL_ROWS.items()}


def database(prefix: str, size: str) -> str:
    return f"{prefix}_app" if size == "full" else f"{prefix}_app_{size}"


# -- PostgreSQL -------------------------------------------------------------------------

PG_TABLES = """
CREATE TABLE orgs (
  id bigint PRIMARY KEY, slug text NOT NULL UNIQUE, name text NOT NULL,
  plan text NOT NULL DEFAULT 'free', created_at timestamptz NOT NULL);
CREATE TABLE users (
  id bigint PRIMARY KEY, org_id bigint NOT NULL, email text NOT NULL, name text NOT NULL,
  role text NOT NULL, created_at timestamptz NOT NULL, last_seen_at timestamptz);
CREATE TABLE projects (
  id bigint PRIMARY KEY, org_id bigint NOT NULL, name text NOT NULL, description text,
  archived boolean NOT NULL DEFAULT false, created_at timestamptz NOT NULL);
CREATE TABLE labels (
  id bigint PRIMARY KEY, project_id bigint NOT NULL, name text NOT NULL,
  color text NOT NULL);
CREATE TABLE issues (
  id bigint PRIMARY KEY, project_id bigint NOT NULL, number integer NOT NULL,
  author_id bigint NOT NULL, assignee_id bigint, title text NOT NULL, body text,
  state text NOT NULL, priority smallint NOT NULL, created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL, closed_at timestamptz);
CREATE TABLE comments (
  id bigint PRIMARY KEY, issue_id bigint NOT NULL, author_id bigint NOT NULL,
  body text NOT NULL, created_at timestamptz NOT NULL, edited_at timestamptz);
CREATE TABLE issue_labels (
  issue_id bigint NOT NULL, label_id bigint NOT NULL, created_at timestamptz NOT NULL,
  PRIMARY KEY (issue_id, label_id));
CREATE TABLE schema_migrations (version text PRIMARY KEY, inserted_at timestamp NOT NULL);
"""

# Rows: g is the row number; {n_x} the size of table x. Text is cut from {lorem}.
PG_ROWS = """
INSERT INTO orgs SELECT g, 'org-' || g, 'Organisation ' || g,
  (ARRAY['free', 'team', 'business'])[1 + g % 3],
  timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour'
FROM generate_series(1::bigint, {n_orgs}) g;
INSERT INTO users SELECT g, 1 + (g * 7919) % {n_orgs},
  'User' || g || '@Example' || g % 50 || '.com', 'User ' || g,
  (ARRAY['member', 'admin', 'guest'])[1 + g % 3],
  timestamptz '2020-06-01 00:00:00+00' + g * interval '5 minutes',
  CASE WHEN g % 5 = 0 THEN NULL
       ELSE timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute' END
FROM generate_series(1::bigint, {n_users}) g;
INSERT INTO projects SELECT g, 1 + (g - 1) % {n_orgs}, 'project-' || g,
  substr({lorem}, (1 + (g * 31) % 500)::int, (30 + g % 120)::int), g % 10 = 0,
  timestamptz '2021-01-01 00:00:00+00' + g * interval '7 minutes'
FROM generate_series(1::bigint, {n_projects}) g;
INSERT INTO labels SELECT g, 1 + (g - 1) % {n_projects}, 'label-' || (g - 1) / {n_projects},
  '#' || substr(md5(g::text), 1, 6)
FROM generate_series(1::bigint, {n_labels}) g;
INSERT INTO issues SELECT g, 1 + (g - 1) % {n_projects}, 1 + (g - 1) / {n_projects},
  1 + (g * 7919) % {n_users},
  CASE WHEN g % 4 = 0 THEN NULL ELSE 1 + (g * 104729) % {n_users} END,
  'Issue ' || g || ': ' || substr({lorem}, (1 + (g * 31) % 600)::int, (20 + g % 40)::int),
  substr({lorem}, (1 + (g * 17) % 700)::int, (60 + (g * 13) % 240)::int),
  CASE WHEN g % 3 = 0 THEN 'open' ELSE 'closed' END, g % 4,
  timestamptz '2021-01-01 00:00:00+00' + g * interval '37 seconds',
  timestamptz '2021-01-01 00:00:00+00' + g * interval '37 seconds' + g % 1000 * interval '1 minute',
  CASE WHEN g % 3 = 0 THEN NULL
       ELSE timestamptz '2021-01-01 00:00:00+00' + g * interval '37 seconds'
            + g % 1000 * interval '1 minute' END
FROM generate_series(1::bigint, {n_issues}) g;
INSERT INTO comments SELECT g, 1 + (g * 7) % {n_issues}, 1 + (g * 104729) % {n_users},
  substr({lorem}, (1 + (g * 29) % 800)::int, (40 + (g * 11) % 400)::int),
  timestamptz '2021-02-01 00:00:00+00' + g * interval '19 seconds',
  CASE WHEN g % 7 = 0 THEN timestamptz '2021-02-01 00:00:00+00' + g * interval '20 seconds'
  END
FROM generate_series(1::bigint, {n_comments}) g;
INSERT INTO issue_labels SELECT 1 + (g - 1) / 2 % {n_issues},
  1 + ((g - 1) / 2 * 7919 + (g - 1) % 2) % {n_labels},
  timestamptz '2021-03-01 00:00:00+00' + g * interval '41 seconds'
FROM generate_series(1::bigint, {n_issue_labels}) g;
INSERT INTO schema_migrations SELECT
  to_char(timestamp '2019-01-01 00:00:00' + g * interval '3 days 7 hours', 'YYYYMMDDHH24MISS'),
  timestamp '2024-05-01 00:00:00' + g * interval '1 second'
FROM generate_series(1::bigint, {n_schema_migrations}) g;
"""

PG_INDEXES = """
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_org_id ON users (org_id);
CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name);
CREATE UNIQUE INDEX labels_project_name ON labels (project_id, name);
CREATE UNIQUE INDEX issues_project_number ON issues (project_id, number);
CREATE INDEX issues_author_id ON issues (author_id);
CREATE INDEX issues_open_assignee ON issues (assignee_id) WHERE state = 'open';
CREATE INDEX comments_issue_created ON comments (issue_id, created_at);
CREATE INDEX comments_author_id ON comments (author_id);
CREATE INDEX issue_labels_label_id ON issue_labels (label_id);
ALTER TABLE users ADD FOREIGN KEY (org_id) REFERENCES orgs;
ALTER TABLE projects ADD FOREIGN KEY (org_id) REFERENCES orgs;
ALTER TABLE labels ADD FOREIGN KEY (project_id) REFERENCES projects;
ALTER TABLE issues ADD FOREIGN KEY (project_id) REFERENCES projects;
ALTER TABLE issues ADD FOREIGN KEY (author_id) REFERENCES users;
ALTER TABLE issues ADD FOREIGN KEY (assignee_id) REFERENCES users;
ALTER TABLE comments ADD FOREIGN KEY (issue_id) REFERENCES issues;
ALTER TABLE comments ADD FOREIGN KEY (author_id) REFERENCES users;
ALTER TABLE issue_labels ADD FOREIGN KEY (issue_id) REFERENCES issues;
ALTER TABLE issue_labels ADD FOREIGN KEY (label_id) REFERENCES labels;
"""

# -- MariaDB / MySQL --------------------------------------------------------------------

MY_TABLES = """
CREATE TABLE orgs (
  id bigint NOT NULL PRIMARY KEY, slug varchar(64) NOT NULL, name varchar(255) NOT NULL,
  plan varchar(16) NOT NULL DEFAULT 'free', created_at datetime(6) NOT NULL,
  UNIQUE KEY orgs_slug_key (slug));
CREATE TABLE users (
  id bigint NOT NULL PRIMARY KEY, org_id bigint NOT NULL, email varchar(255) NOT NULL,
  email_lower varchar(255) AS (lower(email)) VIRTUAL, name varchar(255) NOT NULL,
  role varchar(16) NOT NULL, created_at datetime(6) NOT NULL, last_seen_at datetime(6));
CREATE TABLE projects (
  id bigint NOT NULL PRIMARY KEY, org_id bigint NOT NULL, name varchar(255) NOT NULL,
  description text, archived tinyint(1) NOT NULL DEFAULT 0, created_at datetime(6) NOT NULL);
CREATE TABLE labels (
  id bigint NOT NULL PRIMARY KEY, project_id bigint NOT NULL, name varchar(255) NOT NULL,
  color varchar(7) NOT NULL);
CREATE TABLE issues (
  id bigint NOT NULL PRIMARY KEY, project_id bigint NOT NULL, number int NOT NULL,
  author_id bigint NOT NULL, assignee_id bigint, title varchar(255) NOT NULL, body text,
  state varchar(16) NOT NULL, priority smallint NOT NULL, created_at datetime(6) NOT NULL,
  updated_at datetime(6) NOT NULL, closed_at datetime(6));
CREATE TABLE comments (
  id bigint NOT NULL PRIMARY KEY, issue_id bigint NOT NULL, author_id bigint NOT NULL,
  body text NOT NULL, created_at datetime(6) NOT NULL, edited_at datetime(6));
CREATE TABLE issue_labels (
  issue_id bigint NOT NULL, label_id bigint NOT NULL, created_at datetime(6) NOT NULL,
  PRIMARY KEY (issue_id, label_id));
CREATE TABLE schema_migrations (
  version varchar(32) NOT NULL PRIMARY KEY, inserted_at datetime NOT NULL);
"""

# The same values as PG_ROWS (MariaDB's SEQUENCE engine numbers the rows; integer division
# is DIV, timestamps are UTC).
MY_ROWS = """
INSERT INTO orgs SELECT seq, concat('org-', seq), concat('Organisation ', seq),
  elt(1 + seq % 3, 'free', 'team', 'business'),
  timestamp('2020-01-01 00:00:00') + interval seq hour
FROM seq_1_to_{n_orgs};
INSERT INTO users (id, org_id, email, name, role, created_at, last_seen_at)
SELECT seq, 1 + (seq * 7919) % {n_orgs},
  concat('User', seq, '@Example', seq % 50, '.com'), concat('User ', seq),
  elt(1 + seq % 3, 'member', 'admin', 'guest'),
  timestamp('2020-06-01 00:00:00') + interval (seq * 5) minute,
  if(seq % 5 = 0, NULL, timestamp('2024-01-01 00:00:00') + interval seq minute)
FROM seq_1_to_{n_users};
INSERT INTO projects SELECT seq, 1 + (seq - 1) % {n_orgs}, concat('project-', seq),
  substr({lorem}, 1 + (seq * 31) % 500, 30 + seq % 120), seq % 10 = 0,
  timestamp('2021-01-01 00:00:00') + interval (seq * 7) minute
FROM seq_1_to_{n_projects};
INSERT INTO labels SELECT seq, 1 + (seq - 1) % {n_projects},
  concat('label-', (seq - 1) DIV {n_projects}), concat('#', substr(md5(seq), 1, 6))
FROM seq_1_to_{n_labels};
INSERT INTO issues SELECT seq, 1 + (seq - 1) % {n_projects}, 1 + (seq - 1) DIV {n_projects},
  1 + (seq * 7919) % {n_users},
  if(seq % 4 = 0, NULL, 1 + (seq * 104729) % {n_users}),
  concat('Issue ', seq, ': ', substr({lorem}, 1 + (seq * 31) % 600, 20 + seq % 40)),
  substr({lorem}, 1 + (seq * 17) % 700, 60 + (seq * 13) % 240),
  if(seq % 3 = 0, 'open', 'closed'), seq % 4,
  timestamp('2021-01-01 00:00:00') + interval (seq * 37) second,
  timestamp('2021-01-01 00:00:00') + interval (seq * 37) second + interval (seq % 1000) minute,
  if(seq % 3 = 0, NULL, timestamp('2021-01-01 00:00:00') + interval (seq * 37) second
                        + interval (seq % 1000) minute)
FROM seq_1_to_{n_issues};
INSERT INTO comments SELECT seq, 1 + (seq * 7) % {n_issues}, 1 + (seq * 104729) % {n_users},
  substr({lorem}, 1 + (seq * 29) % 800, 40 + (seq * 11) % 400),
  timestamp('2021-02-01 00:00:00') + interval (seq * 19) second,
  if(seq % 7 = 0, timestamp('2021-02-01 00:00:00') + interval (seq * 20) second, NULL)
FROM seq_1_to_{n_comments};
INSERT INTO issue_labels SELECT 1 + (seq - 1) DIV 2 % {n_issues},
  1 + ((seq - 1) DIV 2 * 7919 + (seq - 1) % 2) % {n_labels},
  timestamp('2021-03-01 00:00:00') + interval (seq * 41) second
FROM seq_1_to_{n_issue_labels};
INSERT INTO schema_migrations SELECT
  date_format(timestamp('2019-01-01 00:00:00') + interval (seq * 79) hour, '%Y%m%d%H%i%s'),
  timestamp('2024-05-01 00:00:00') + interval seq second
FROM seq_1_to_{n_schema_migrations};
"""

MY_INDEXES = """
ALTER TABLE users ADD UNIQUE INDEX users_email_lower (email_lower), ADD INDEX users_org_id (org_id),
  ADD FOREIGN KEY (org_id) REFERENCES orgs (id);
ALTER TABLE projects ADD UNIQUE INDEX projects_org_name (org_id, name),
  ADD FOREIGN KEY (org_id) REFERENCES orgs (id);
ALTER TABLE labels ADD UNIQUE INDEX labels_project_name (project_id, name),
  ADD FOREIGN KEY (project_id) REFERENCES projects (id);
ALTER TABLE issues ADD UNIQUE INDEX issues_project_number (project_id, number),
  ADD INDEX issues_author_id (author_id), ADD INDEX issues_open_assignee (state, assignee_id),
  ADD INDEX issues_assignee_id (assignee_id),
  ADD FOREIGN KEY (project_id) REFERENCES projects (id),
  ADD FOREIGN KEY (author_id) REFERENCES users (id),
  ADD FOREIGN KEY (assignee_id) REFERENCES users (id);
ALTER TABLE comments ADD INDEX comments_issue_created (issue_id, created_at),
  ADD INDEX comments_author_id (author_id),
  ADD FOREIGN KEY (issue_id) REFERENCES issues (id),
  ADD FOREIGN KEY (author_id) REFERENCES users (id);
ALTER TABLE issue_labels ADD INDEX issue_labels_label_id (label_id),
  ADD FOREIGN KEY (issue_id) REFERENCES issues (id),
  ADD FOREIGN KEY (label_id) REFERENCES labels (id);
"""

# -- the same indexes in SQLite, for the DuckDB + indexes peer ---------------------------

_SQLITE_COMMON = [
    "CREATE UNIQUE INDEX orgs_slug_key ON orgs (slug)",
    "CREATE INDEX users_org_id ON users (org_id)",
    "CREATE UNIQUE INDEX projects_org_name ON projects (org_id, name)",
    "CREATE UNIQUE INDEX labels_project_name ON labels (project_id, name)",
    "CREATE UNIQUE INDEX issues_project_number ON issues (project_id, number)",
    "CREATE INDEX issues_author_id ON issues (author_id)",
    "CREATE INDEX comments_issue_created ON comments (issue_id, created_at)",
    "CREATE INDEX comments_author_id ON comments (author_id)",
    "CREATE INDEX issue_labels_label_id ON issue_labels (label_id)",
]
SQLITE_INDEXES = {
    "pg": [*_SQLITE_COMMON,
           "CREATE UNIQUE INDEX users_email_lower ON users (lower(email))",
           "CREATE INDEX issues_open_assignee ON issues (assignee_id) WHERE state = 'open'"],
    # DuckDB's copy holds MariaDB's virtual column as a plain one.
    "mysql": [*_SQLITE_COMMON,
              "CREATE UNIQUE INDEX users_email_lower ON users (email_lower)",
              "CREATE INDEX issues_open_assignee ON issues (state, assignee_id)",
              "CREATE INDEX issues_assignee_id ON issues (assignee_id)"],
}


def _script(template: str, counts: dict[str, int]) -> str:
    lorem = "'" + LOREM.replace("'", "''") + "'"
    values: dict[str, Any] = {f"n_{t}": n for t, n in counts.items()}
    text = template.replace("{lorem}", lorem)
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(int(value)))
    return text


def fingerprint(kind: str, size: str) -> str:
    parts = (PG_TABLES + PG_ROWS + PG_INDEXES if kind == "pg"
             else MY_TABLES + MY_ROWS + MY_INDEXES) + LOREM + repr(rows(size))
    return "liteshift app bench " + hashlib.sha256(parts.encode()).hexdigest()[:16]


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";\n") if s.strip().rstrip(";")]


def ensure_pg(dsn_server: str, name: str, size: str) -> None:
    """Make the PostgreSQL database `name` at `size` unless it already is (its comment)."""
    import psycopg
    from psycopg import sql

    wanted = fingerprint("pg", size)
    with psycopg.connect(f"{dsn_server}/postgres", autocommit=True) as admin:
        row = admin.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                            "WHERE datname = %s", (name,)).fetchone()
        if row and row[0] == wanted:
            return
        print(f"[app] making PostgreSQL database {name} ({size}) ...", flush=True)
        started = time.perf_counter()
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    counts = rows(size)
    with psycopg.connect(f"{dsn_server}/{name}", autocommit=True) as conn:
        with conn.transaction():
            for script in (PG_TABLES, PG_ROWS, PG_INDEXES):
                for statement in _statements(_script(script, counts)):
                    conn.execute(statement)
        # Hint bits and statistics now, so the first timed read does not pay for them.
        conn.execute("VACUUM (FREEZE, ANALYZE)")
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(wanted)))
    print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)


def ensure_mysql(connect: Any, name: str, size: str) -> None:
    """Make the MariaDB/MySQL database `name` at `size` unless it already is (its comment);
    `connect()` returns a mysql.connector connection to the server."""
    wanted = fingerprint("mysql", size)
    conn = connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA "
                    "WHERE SCHEMA_NAME = %s", (name,))
        row = cur.fetchone()
        if row and row[0] == wanted:
            return
        print(f"[app] making MariaDB/MySQL database {name} ({size}) ...", flush=True)
        started = time.perf_counter()
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{name}`")
        cur.execute("SET SESSION time_zone = '+00:00'")
        counts = rows(size)
        for script in (MY_TABLES, MY_ROWS):
            for statement in _statements(_script(script, counts)):
                cur.execute(statement)
                conn.commit()
        cur.execute("SET SESSION foreign_key_checks = 0")  # the rows are made to fit them
        for statement in _statements(_script(MY_INDEXES, counts)):
            cur.execute(statement)
        cur.execute("SET SESSION foreign_key_checks = 1")
        for table in TABLES:
            cur.execute(f"ANALYZE TABLE `{table}`")
            cur.fetchall()
        cur.execute(f"ALTER DATABASE `{name}` COMMENT = %s", (wanted,))
        print(f"  done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        conn.close()
