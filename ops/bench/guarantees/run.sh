#!/usr/bin/env bash
# What liteshift's guarantees cost on the PostgreSQL 1M mixed table, against DuckDB in the
# same runs. switches.patch adds one environment switch per guarantee; it is applied to a
# scratch worktree of HEAD only (never to the tree you work in), and bench.py runs there
# once with every guarantee kept, then with each switched off, then with all of them off:
#   LITESHIFT_EXPERIMENT_NO_READBACK         commit chunks without reading them back
#   LITESHIFT_EXPERIMENT_NO_INTEGRITY_CHECK  publish without the file checks (quick_check and the index scans, worker/sqlite/checks.py)
# Needs the bench's data and peers (bench.py --prepare). About 7 minutes.
#   ops/bench/guarantees/run.sh [ROUNDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
rounds=${1:-3}
tree=$(mktemp -d /tmp/liteshift-guarantees.XXXXXX)
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
git -C "$root" worktree add --detach --force "$tree" HEAD >/dev/null
git -C "$tree" apply "$here/switches.patch"
ln -s "$root/ops/bench/.peers-venv" "$tree/ops/bench/.peers-venv"
(cd "$tree" && "$python" setup.py -q build_ext --inplace >/dev/null 2>&1)

all="LITESHIFT_EXPERIMENT_NO_READBACK=1 LITESHIFT_EXPERIMENT_NO_INTEGRITY_CHECK=1"
for switches in "" LITESHIFT_EXPERIMENT_NO_READBACK=1 LITESHIFT_EXPERIMENT_NO_INTEGRITY_CHECK=1 \
        "$all"; do
    echo "== ${switches:-every guarantee kept}"
    # shellcheck disable=SC2086  # the switches are words on purpose
    env $switches "$python" "$tree/ops/bench/bench.py" --rounds "$rounds" --tools duckdb \
        --only pg-mixed --install no | grep -E '^\| (liteshift|duckdb) \| [0-9]|phases'
done
