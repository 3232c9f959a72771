#!/usr/bin/env bash
# scripts/lab.sh — Causeway's test lab: a real Samba AD domain controller and a real
# OpenLDAP slapd, both on loopback only, provisioned into one throwaway folder.
#
#   scripts/lab.sh start    install missing Debian packages (as root), provision on first
#                           use, start both, wait until they answer, print the facts as
#                           KEY=VALUE and write them to $CAUSEWAY_LAB_DIR/lab.env
#   scripts/lab.sh status   exit 0 and print the facts when both run, exit 3 when not
#   scripts/lab.sh env      print the facts without starting anything
#   scripts/lab.sh reset    put every AD test user back in its documented state
#                           (unlocks, re-enables, resets passwords and restrictions)
#   scripts/lab.sh check    bind as every test user and print the servers' verbatim answers
#   scripts/lab.sh stop     stop what this script started (PID + start time; never by name)
#   scripts/lab.sh wipe     stop, then delete the lab folder (only one this script made)
#
# Folder: $CAUSEWAY_LAB_DIR (default ${TMPDIR:-/tmp}/causeway-lab), with the DC in ad/ and
# slapd in ldap/. The DC listens on 127.0.0.2 (AD_LAB_IP; Samba cannot move ports 389/636,
# so it takes its own loopback address) and needs root; slapd on 127.0.0.1:3389/3636.
# Facts: AD_* (URLs, base DN, admin DN and password, CA certificate, one block per test
# user, lockout thresholds) and SLAPD_*, plus LAB_START_SECONDS for the last start.
# The knobs of scripts/lab/samba-dc.sh and scripts/lab/slapd.sh pass through.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
LAB=${CAUSEWAY_LAB_DIR:-${TMPDIR:-/tmp}/causeway-lab}
AD_DIR=$LAB/ad
LDAP_DIR=$LAB/ldap
ENV_FILE=$LAB/lab.env
cmd=${1:-status}

say() { printf 'lab: %s\n' "$*" >&2; }

facts() {  # both servers' facts, one KEY=VALUE a line
  "$here/lab/samba-dc.sh" env "$AD_DIR"
  "$here/lab/slapd.sh" env "$LDAP_DIR"
}

write_env() {  # $1: start seconds to record
  { facts; echo "LAB_DIR=$LAB"; echo "LAB_START_SECONDS=$1"; } > "$ENV_FILE.$$"
  mv "$ENV_FILE.$$" "$ENV_FILE"
}

# One lab.sh at a time per lab folder (test processes start the lab in parallel). The
# lock is on fd 8, closed for the servers we launch so that none of them keeps it.
lock() {
  mkdir -p "$LAB"
  exec 8>"$LAB/.lab.lock"
  flock 8
}

running() {
  "$here/lab/samba-dc.sh" status "$AD_DIR" >/dev/null 2>&1 && "$here/lab/slapd.sh" status "$LDAP_DIR" >/dev/null 2>&1
}

case "$cmd" in
  start)
    lock
    if running; then
      # Already up: refresh the facts (they are cheap), keep the last start's timing.
      last=$(sed -n 's/^LAB_START_SECONDS=//p' "$ENV_FILE" 2>/dev/null || true)
      write_env "${last:-0}"
      cat "$ENV_FILE"
      exit 0
    fi
    t0=$(date +%s.%N)
    "$here/lab/samba-dc.sh" start "$AD_DIR" >/dev/null 8>&-
    "$here/lab/slapd.sh" start "$LDAP_DIR" >/dev/null 8>&-
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
    write_env "$secs"
    say "AD DC and slapd ready in $secs s; facts in $ENV_FILE"
    cat "$ENV_FILE"
    ;;
  status)
    if running; then
      facts
      exit 0
    fi
    say "not running (start it with: sudo scripts/lab.sh start)"
    exit 3
    ;;
  env)
    facts
    ;;
  reset)
    "$here/lab/samba-dc.sh" users "$AD_DIR"
    ;;
  check)
    "$here/lab/samba-dc.sh" check "$AD_DIR"
    "$here/lab/slapd.sh" check "$LDAP_DIR"
    ;;
  stop)
    lock
    rc=0
    "$here/lab/samba-dc.sh" stop "$AD_DIR" || rc=$?
    "$here/lab/slapd.sh" stop "$LDAP_DIR" || rc=$?
    exit $rc
    ;;
  wipe)
    lock
    "$here/lab/samba-dc.sh" wipe "$AD_DIR" || true
    "$here/lab/slapd.sh" wipe "$LDAP_DIR" || true
    rm -f "$ENV_FILE" "$LAB/.lab.lock"
    rmdir "$LAB" 2>/dev/null || true
    ;;
  *)
    sed -n '2,22p' "$0" >&2
    exit 2
    ;;
esac
