# Sourced by ops/*.sh and .ci/run: the virtualenv and the local services liteshift needs.
# shellcheck shell=bash

LITESHIFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_HOST=127.0.0.1
REDIS_HOST=127.0.0.1

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt-get install the packages given, once per shell, with one `apt-get update` first.
apt_install() {
  [ "$(id -u)" = 0 ] || die "need to install $*, which takes root: run sudo apt-get install -y $*"
  command -v apt-get >/dev/null || die "need $* and this is not a Debian-like system: install them"
  say "installing $*"
  if [ -z "${_LITESHIFT_APT_UPDATED:-}" ]; then
    apt-get update -qq || die "apt-get update failed"
    _LITESHIFT_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# A C compiler and the headers of Python and SQLite, for worker/native/_fastsqlite.c and
# worker/native/_pgcopy.c (the install works without them, slower; the worker warns at start and
# tests/test_native.py fails then).
ensure_build_tools() {
  command -v cc >/dev/null || apt_install gcc
  [ -e /usr/include/sqlite3.h ] || apt_install libsqlite3-dev
  python3 -c 'import os, sysconfig
raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || apt_install python3-dev
}

# .venv with liteshift and its dev tools; reinstalled when pyproject.toml, setup.py or the C
# sources change.
ensure_venv() {
  local venv="$LITESHIFT_ROOT/.venv" stamp="$LITESHIFT_ROOT/.venv/.installed-stamp"
  command -v python3 >/dev/null || apt_install python3
  if [ ! -x "$venv/bin/python" ]; then
    python3 -c 'import ensurepip' 2>/dev/null || apt_install python3-venv
    say "creating $venv"
    python3 -m venv "$venv" || die "python3 -m venv $venv failed"
  fi
  if [ ! -e "$stamp" ] || [ -n "$(cd "$LITESHIFT_ROOT" && find pyproject.toml setup.py \
        worker/native -maxdepth 1 \( -name '*.c' -o -name '*.h' -o -name pyproject.toml \
        -o -name setup.py \) -newer "$stamp" 2>/dev/null)" ]; then
    ensure_build_tools
    say "installing liteshift into $venv (pip install -e '.[dev]', compiling worker/native/*.c)"
    if ! (cd "$LITESHIFT_ROOT" && "$venv/bin/pip" install --disable-pip-version-check \
          -e '.[dev]') >"$venv/pip-install.log" 2>&1; then
      tail -n 30 "$venv/pip-install.log" >&2
      die "pip install -e '.[dev]' failed (above; whole log: $venv/pip-install.log)"
    fi
    touch "$stamp"
  fi
}

# Ruby and Debian's ActiveRecord with its SQLite, PostgreSQL and MySQL adapters, for the
# real-client tier (tests/clients/rails_app/scenario.rb).
ensure_ruby_clients() {
  local missing=()
  command -v ruby >/dev/null || missing+=(ruby)
  local lib pkg pair
  for pair in active_record:ruby-activerecord sqlite3:ruby-sqlite3 pg:ruby-pg mysql2:ruby-mysql2; do
    lib=${pair%%:*} pkg=${pair#*:}
    command -v ruby >/dev/null && ruby -e "require '$lib'" 2>/dev/null || missing+=("$pkg")
  done
  [ "${#missing[@]}" = 0 ] || apt_install "${missing[@]}"
}

pg_version() {  # the newest installed major version, if any
  find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}
pg_up() { pg_isready -q -h "$PG_HOST" -p 5432; }
redis_up() { [ "$(redis-cli -h "$REDIS_HOST" -p 6379 ping 2>/dev/null)" = PONG ]; }
mariadb_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }

# Run "$@" every half second until it succeeds; give up after 30 s.
wait_for() {
  local _
  for _ in $(seq 60); do "$@" && return 0; sleep 0.5; done
  return 1
}

# PostgreSQL on 127.0.0.1:5432 (user postgres, no password) and Redis on 127.0.0.1:6379.
ensure_services() {
  local fresh_pg="" version
  if ! command -v pg_isready >/dev/null || ! command -v psql >/dev/null; then
    apt_install postgresql-client
  fi
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
  fi
  if ! pg_up; then
    if [ -z "$(pg_version)" ]; then
      apt_install postgresql
      fresh_pg=1
    fi
    version=$(pg_version)
    say "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  fi
  if ! redis_up; then
    say "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null || true
  fi
  wait_for pg_up || die "PostgreSQL is not answering on $PG_HOST:5432; start it with:
  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start"
  wait_for redis_up || die "Redis is not answering on $REDIS_HOST:6379; start it with:
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 (its log: /var/log/redis/ci.log)"
  [ -z "$fresh_pg" ] || pg_trust_loopback
  psql -X -q -h "$PG_HOST" -U postgres -d postgres -Atc 'SELECT 1' >/dev/null \
    || die "cannot log in to PostgreSQL as postgres on $PG_HOST without a password: allow it
  (trust for 127.0.0.1 in pg_hba.conf) or export PGPASSWORD"
  pg_enable_logical
}

# Logical decoding (the snapshot's replication slot and follow mode) needs wal_level=logical,
# which only a restart applies. Idempotent: a server already set so is left alone; the
# setting keeps every other use of the server working (it only adds to the WAL).
pg_enable_logical() {
  local level
  level=$(psql -X -h "$PG_HOST" -U postgres -d postgres -Atc 'SHOW wal_level') \
    || die "cannot read PostgreSQL's wal_level"
  [ "$level" = logical ] && return 0
  say "setting PostgreSQL's wal_level=logical (was $level) and restarting it"
  psql -X -q -h "$PG_HOST" -U postgres -d postgres -c 'ALTER SYSTEM SET wal_level = logical' \
    || die "ALTER SYSTEM SET wal_level = logical failed"
  pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main restart \
    || die "restarting PostgreSQL for wal_level=logical failed"
  wait_for pg_up || die "PostgreSQL did not come back after the restart for wal_level=logical"
}

# A PostgreSQL we just installed asks for passwords; the demo and tests log in as postgres
# over 127.0.0.1 without one, as on the dev machines. Only ever done to a fresh install.
pg_trust_loopback() {
  local hba
  hba=$(runuser -u postgres -- psql -XAtc 'SHOW hba_file') || die "cannot read pg_hba.conf"
  say "allowing passwordless logins from 127.0.0.1 in the fresh $hba"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  runuser -u postgres -- psql -XAtc 'SELECT pg_reload_conf()' >/dev/null
}

# MariaDB on 127.0.0.1:3306, root without a password: the MySQL-source tests' server. The
# driver (mysql-connector-python) is a wheel with its C extension: no build packages.
ensure_mariadb() {
  local fresh=""
  if mariadb_up; then
    mariadb_enable_binlog
    return 0
  fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client
    fresh=1
  fi
  say "starting MariaDB"
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  if [ -n "$fresh" ]; then
    # Debian's root logs in by unix socket only; the tests log in over TCP without a
    # password, as on the dev machines. Only ever done to a fresh install.
    wait_for mariadb -u root -e 'SELECT 1' >/dev/null 2>&1 || die "MariaDB did not start"
    say "allowing root without a password from 127.0.0.1 in the fresh MariaDB"
    mariadb -u root -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket
        OR mysql_native_password USING PASSWORD('');
      CREATE USER IF NOT EXISTS root@'127.0.0.1';
      GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION" \
      || die "cannot open MariaDB's root to 127.0.0.1"
  fi
  wait_for mariadb_up || die "MariaDB is not answering on 127.0.0.1:3306 as root; start it with:
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd (log: /var/log/mysql/error.log)"
  mariadb_enable_binlog
}

MARIADB_BINLOG_CONF=/etc/my.cnf
MARIADB_BINLOG_MARK="# liteshift: row-based binlog for follow mode"

# Follow mode reads the row-based binlog with full row images; log_bin takes a restart. The
# settings go in /etc/my.cnf, the first option file MariaDB reads on Debian (whatever
# /etc/mysql/my.cnf includes), once, under a marker line. Binlogs expire after a day.
mariadb_enable_binlog() {
  local now
  now=$(mariadb -h 127.0.0.1 -P 3306 -u root -NBe \
    'SELECT CONCAT_WS(" ", @@log_bin, @@binlog_format, @@binlog_row_image)') \
    || die "cannot read MariaDB's binlog settings"
  [ "$now" = "ON ROW FULL" ] && return 0
  if ! grep -qF "$MARIADB_BINLOG_MARK" "$MARIADB_BINLOG_CONF" 2>/dev/null; then
    say "enabling MariaDB's row-based binlog in $MARIADB_BINLOG_CONF (was: $now)"
    printf '\n%s\n[mariadbd]\nserver_id = 1\nlog_bin = mysql-bin\nbinlog_format = ROW\nbinlog_row_image = FULL\nexpire_logs_days = 1\n' \
      "$MARIADB_BINLOG_MARK" >>"$MARIADB_BINLOG_CONF" || die "cannot write $MARIADB_BINLOG_CONF"
  fi
  say "restarting MariaDB for its binlog settings"
  mariadb-admin -h 127.0.0.1 -P 3306 -u root shutdown || die "cannot stop MariaDB to restart it"
  wait_for bash -c '! pgrep -x mariadbd >/dev/null' || die "MariaDB did not stop"
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
  wait_for mariadb_up || die "MariaDB did not come back after the restart for its binlog
  (log: /var/log/mysql/error.log)"
}
