#!/usr/bin/env bash
# scripts/test.sh — the one command that runs every Causeway test on this machine:
#   1. installs the system packages the build and the tests need (scripts/install-deps.sh);
#   2. starts the AD lab (a real Samba AD DC and OpenLDAP on loopback, scripts/lab.sh),
#      or reuses one that is already running;
#   3. runs every test in the workspace (cargo nextest when present, else cargo test);
#   4. stops the lab if this script started it, even when tests fail.
# Needs root for the lab (Samba binds 389/636 on 127.0.0.2). Extra arguments go to the
# test runner, e.g. `scripts/test.sh -E 'test(lockout)'` with nextest.
# Knobs: CAUSEWAY_LAB_DIR (lab folder), CAUSEWAY_KEEP_LAB=1 (leave a lab this script
# started running afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

scripts/install-deps.sh
scripts/install-test-tools.sh >/dev/null

started_lab=0
if ! scripts/lab.sh status >/dev/null 2>&1; then
  t_lab=$(date +%s.%N)
  scripts/lab.sh start >/dev/null
  started_lab=1
  echo "test.sh: lab started in $(elapsed "$t_lab") s" >&2
else
  echo "test.sh: reusing the running lab" >&2
fi
stop_lab() {
  if [ $started_lab = 1 ] && [ "${CAUSEWAY_KEEP_LAB:-0}" != 1 ]; then
    scripts/lab.sh stop >/dev/null 2>&1 || echo "test.sh: warning: lab stop failed" >&2
  fi
}
trap stop_lab EXIT

t_tests=$(date +%s.%N)
# Doc tests first (nextest does not run them), so that the runner's summary comes last.
cargo test --workspace --doc --quiet
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
echo "test.sh: tests took $(elapsed "$t_tests") s, $(elapsed "$t0") s in all" >&2
