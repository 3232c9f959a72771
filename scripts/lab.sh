#!/usr/bin/env bash
# scripts/lab.sh — Causeway's integration-test lab: two real Samba AD domain
# controllers (two independent forests) and a real OpenLDAP slapd, on loopback only,
# provisioned into one throwaway folder.
#
#   scripts/lab.sh start    install missing Debian packages (as root), provision on first
#                           use, start all three servers, wait until they answer, print the
#                           facts as KEY=VALUE on stdout and write them to
#                           $CAUSEWAY_LAB_DIR/lab.env. Idempotent: on a running lab it only
#                           prints the facts (LAB_START_SECONDS stays the real start's).
#   scripts/lab.sh status   print the facts and exit 0 when all three run; exit 3 when not
#   scripts/lab.sh env      print the facts without starting anything
#   scripts/lab.sh reset    put every test user back in its documented state: passwords,
#                           enabled/expired/must-change/hours/workstation states, and
#                           lockouts (every AD account unlocked with badPwdCount 0, then
#                           erin-locked locked again; slapd failure counters cleared)
#   scripts/lab.sh check    bind as every test user and print the servers' verbatim answers
#   scripts/lab.sh stop     stop all servers (only the processes this lab started)
#   scripts/lab.sh wipe     stop, then delete the folders this lab created
#
# Root is needed for start, reset, stop and wipe (Samba binds 88/135/389/445/636/... on its
# own loopback address, sets security xattrs and runs in a private mount namespace);
# status, env and check work as any user. Nothing listens outside 127.x.
#
# Folder: $CAUSEWAY_LAB_DIR, default ${TMPDIR:-/tmp}/causeway-lab; the DC lives in ad/,
# the second forest's DC in ad2/, slapd in ldap/, the combined facts in lab.env (plain
# KEY=VALUE lines, no quotes or spaces: read them or `source` them). Keys: AD_* (URLs,
# realm, base DN, CA certificate, admin, one AD_<NAME>_{SAM,UPN,DN,PASSWORD} block per
# test user, lockout policy),
# AD2_* (the same names for the second forest: AD2_LDAPS_URL, AD2_BASE_DN, AD2_CA_CERT,
# AD2_ADMIN_DN/_PASSWORD, AD2_SVC_SYNC_DN/_PASSWORD, AD2_BOB_*, AD2_CAROL_*, AD2_DUP_*),
# SLAPD_* (URLs, base DN, CA, admin, sync account, one SLAPD_<NAME>_{UID,DN,PASSWORD}
# block per user), LAB_DIR, LAB_ENV_FILE and LAB_START_SECONDS (wall time of the start
# that brought the lab up, package installation included).
#
# AD users (password; simple bind with the right password gets): alice (Blue-Harbor-41;
# success, in lab-users), bob-disabled (Green-Valley-42; data 533), carol-mustchange
# (Red-Canyon-43; 773), dave-expired-account (Amber-Forest-44; 701), erin-locked
# (Silver-Lake-45; 775), frank-pwdexpired (Golden-Field-46; 532), gina-hours
# (Violet-Ridge-47; 530), hank-workstation (Copper-Bay-48; 531), ivan-lockout
# (Ivory-Gate-49; locks after 3 bad binds), olivia-staff (Indigo-Shore-50; OU=Staff),
# svc-sync (Sync-Svc-Pw-51; replication rights); and, each reserved for one kind of test,
# kim-domainlock (Teal-Meadow-52; domain-wide lockout), liam-smartlock (Olive-Grove-53;
# the hub's smart lockout), nora-probe (Coral-Reef-54; wrong-password probes). Domain
# lockout: threshold 5, 1 min duration and window (AD_LOCKOUT_*); a PSO with threshold 3,
# duration 0 covers erin and ivan (AD_PSO_*). `check` leaves alice's badPwdCount at 0.
# dup (Twin-Brook-55) has UPN dup@shared.causeway.test (AD_SHARED_UPN_SUFFIX, in both
# forests' uPNSuffixes).
#
# Second forest (LAB2.CAUSEWAY.TEST, NetBIOS LAB2, dc1.lab2.causeway.test on 127.0.0.3,
# its own CA): Administrator (Lab2-Root-Pw-0), bob (Green-Meadow-61; in lab-users),
# carol (Red-Harbor-62), svc-sync (Sync-Svc-Pw-71; the same rights as the first forest's)
# and dup (Twin-Peak-65) whose UPN dup@shared.causeway.test is also the first forest's
# dup's: the cross-forest UPN conflict. Both DCs are provisioned once and reused: a
# stopped lab restarts from its folders, and a lab in an empty folder unpacks the
# provisioned DCs samba-dc.sh keeps in /var/cache/causeway-lab (AD_LAB_TEMPLATE_DIR;
# AD_LAB_TEMPLATE=0 always provisions). Measured on 2 cores (load 0.6-2; roughly double
# beside a cargo build): empty folder, nothing cached 7.6-9.2 s (each DC's provisioning
# ~4 s, in parallel); empty folder from the templates 2.0-2.6 s; restart of a stopped
# lab 1.4-1.9 s; `start` of a running lab 0.2 s.
#
# Knobs (environment): CAUSEWAY_LAB_DIR; for the DC (scripts/lab/samba-dc.sh):
# AD_LAB_IP (127.0.0.2, any 127.x), AD_LAB_REALM, AD_LAB_DOMAIN, AD_LAB_HOSTNAME,
# AD_LAB_ADMIN_PASSWORD, AD_LAB_ALLOW_PLAIN_LDAP=1, AD_LAB_PREFORK (4),
# AD_LAB_START_TIMEOUT (60), AD_LAB_NO_INSTALL=1, AD_LAB_DEBUG; for slapd
# (scripts/lab/slapd.sh): SLAPD_LAB_IP (127.0.0.1, any 127.x), SLAPD_LAB_PORT (3389),
# SLAPD_LAB_TLS_PORT (3636), SLAPD_LAB_SUFFIX, SLAPD_LAB_ADMIN_PASSWORD,
# SLAPD_LAB_NO_INSTALL=1, SLAPD_LAB_DEBUG; for the second forest: AD2_LAB_IP (127.0.0.3),
# AD2_LAB_REALM, AD2_LAB_DOMAIN, AD2_LAB_HOSTNAME, AD2_LAB_ADMIN_PASSWORD,
# AD2_LAB_PREFORK (2; the other AD_LAB_* knobs apply to both DCs). A second lab can run
# beside the first with another CAUSEWAY_LAB_DIR, AD_LAB_IP, AD2_LAB_IP and slapd address
# or ports.
#
# Processes are tracked by PID and start time (DIR/run/lab.pid) and only those, with their
# own children, are ever stopped. One lab.sh at a time per lab folder (flock).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AD=$HERE/lab/samba-dc.sh
LDAP=$HERE/lab/slapd.sh
LAB=${CAUSEWAY_LAB_DIR:-${TMPDIR:-/tmp}/causeway-lab}
LAB=${LAB%/}
AD_DIR=$LAB/ad
AD2_DIR=$LAB/ad2
LDAP_DIR=$LAB/ldap
ENV_FILE=$LAB/lab.env
MARKER=$LAB/.causeway-lab
CMD=${1:-help}

say() { printf 'lab: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
need_root() { [ "$(id -u)" = 0 ] || die "'$CMD' must run as root (e.g. sudo $0 $CMD)"; }

if [ ! -x "$AD" ] || [ ! -x "$LDAP" ]; then die "missing $AD or $LDAP (run from a full checkout)"; fi
case "$LAB" in /*) ;; *) die "CAUSEWAY_LAB_DIR must be an absolute path, got '$LAB'";; esac

# One lab.sh at a time per lab folder: parallel test processes all call `start`. The lock
# is fd 8, closed (8>&-) for the scripts we run, so no server started below inherits it.
# Someone who cannot write the folder (status/env/check as a user) locks nothing.
lock() {
  if [ -w "$LAB" ] || [ -w "$LAB/.lab.lock" ]; then
    exec 8>>"$LAB/.lab.lock"
    flock 8
  elif [ -r "$LAB/.lab.lock" ]; then
    exec 8<"$LAB/.lab.lock"
    flock -s 8
  fi
}

# The two forests: one script, two profiles. Each call names every knob that differs, so
# the first forest's AD_LAB_* settings never leak into the second's identity.
ad1() { AD_LAB_PROFILE=lab AD_LAB_ENV_PREFIX=AD "$AD" "$@"; }
ad2() {
  AD_LAB_PROFILE=lab2 AD_LAB_ENV_PREFIX=AD2 AD_LAB_IP=${AD2_LAB_IP:-127.0.0.3} \
    AD_LAB_REALM=${AD2_LAB_REALM:-LAB2.CAUSEWAY.TEST} AD_LAB_DOMAIN=${AD2_LAB_DOMAIN:-LAB2} \
    AD_LAB_HOSTNAME=${AD2_LAB_HOSTNAME:-dc1} AD_LAB_ADMIN_PASSWORD=${AD2_LAB_ADMIN_PASSWORD:-Lab2-Root-Pw-0} \
    AD_LAB_PREFORK=${AD2_LAB_PREFORK:-2} "$AD" "$@"
}
ad_up() { ad1 status "$AD_DIR" >/dev/null 2>&1 8>&-; }
ad2_up() { ad2 status "$AD2_DIR" >/dev/null 2>&1 8>&-; }
ldap_up() { "$LDAP" status "$LDAP_DIR" >/dev/null 2>&1 8>&-; }
running() { ad_up && ad2_up && ldap_up; }

last_start_seconds() { sed -n 's/^LAB_START_SECONDS=//p' "$ENV_FILE" 2>/dev/null | tail -1; }

facts() {  # $1: LAB_START_SECONDS to report (empty: none known)
  ad1 env "$AD_DIR" 8>&-
  ad2 env "$AD2_DIR" 8>&-
  "$LDAP" env "$LDAP_DIR" 8>&-
  echo "LAB_DIR=$LAB"
  echo "LAB_ENV_FILE=$ENV_FILE"
  [ -z "${1:-}" ] || echo "LAB_START_SECONDS=$1"
}

# Print the facts, and store them in lab.env when we may (atomically: readers never see
# half a file).
publish() {  # $1: LAB_START_SECONDS
  local text; text=$(facts "${1:-}")
  if [ -w "$LAB" ]; then
    printf '%s\n' "$text" > "$ENV_FILE.$$"
    mv -f "$ENV_FILE.$$" "$ENV_FILE"
  fi
  printf '%s\n' "$text"
}

# The lab folder is ours if it carries our marker, or holds nothing but what this script
# makes (ad/ and ldap/ are guarded by their own scripts' markers). Checked entry by
# entry, so a parallel start creating the same files is never mistaken for a stranger.
claim_folder() {
  mkdir -p "$LAB"
  local e
  if [ ! -e "$MARKER" ]; then
    for e in "$LAB"/* "$LAB"/.[!.]*; do
      [ -e "$e" ] || continue
      case "${e##*/}" in
        .causeway-lab|.lab.lock|lab.env|lab.env.*|ad|ad2|ldap) ;;
        *) die "$LAB holds '${e##*/}', which $0 did not make; choose another CAUSEWAY_LAB_DIR" ;;
      esac
    done
  fi
  touch "$MARKER"
}

start() {
  if running; then   # no root needed to read the facts of a running lab
    lock
    say "already running ($LAB)"
    publish "$(last_start_seconds)"
    return 0
  fi
  need_root
  claim_folder
  lock
  local t0; t0=$(now)
  if running; then   # someone else started it while we waited for the lock
    publish "$(last_start_seconds)"
    return 0
  fi
  # Packages first, one apt-get at a time; then all three servers at once (the DCs'
  # provisioning, ~3.5 s each on first use, dominates; slapd is ready in well under 1 s).
  # A server that already runs is left alone (its script's start only prints its facts).
  ad1 install 8>&- || die "could not install the Samba AD DC's packages"
  "$LDAP" install 8>&- || die "could not install slapd's packages"
  local ad_rc=0 ad2_rc=0 ldap_rc=0 ad_job ad2_job
  ad1 start "$AD_DIR" >/dev/null 8>&- &
  ad_job=$!
  ad2 start "$AD2_DIR" >/dev/null 8>&- &
  ad2_job=$!
  "$LDAP" start "$LDAP_DIR" >/dev/null 8>&- || ldap_rc=$?
  wait "$ad_job" || ad_rc=$?
  wait "$ad2_job" || ad2_rc=$?
  # A first-forest DC provisioned before the cross-forest user existed gets it now
  # (additive: nothing else of a running DC changes).
  if [ "$ad_rc" = 0 ] && [ ! -e "$AD_DIR/log/shared.done" ]; then
    ad1 shared "$AD_DIR" 8>&- || ad_rc=$?
  fi
  if [ "$ad_rc" != 0 ] || [ "$ad2_rc" != 0 ] || [ "$ldap_rc" != 0 ]; then
    [ "$ad_rc" = 0 ] || say "the AD DC did not start (exit $ad_rc; logs in $AD_DIR/log/)"
    [ "$ad2_rc" = 0 ] || say "the second forest's DC did not start (exit $ad2_rc; logs in $AD2_DIR/log/)"
    [ "$ldap_rc" = 0 ] || say "slapd did not start (exit $ldap_rc; log in $LDAP_DIR/log/)"
    die "start failed; whatever did start keeps running ('$0 stop' stops it)"
  fi
  local secs; secs=$(since "$t0")
  say "AD DCs and slapd ready in $secs s; facts in $ENV_FILE"
  publish "$secs"
}

status() {
  local ad=down ad2=down ldap=down
  ad_up && ad=up
  ad2_up && ad2=up
  ldap_up && ldap=up
  if [ $ad = up ] && [ $ad2 = up ] && [ $ldap = up ]; then
    facts "$(last_start_seconds)"
    return 0
  fi
  say "not running: AD DC $ad, second forest's DC $ad2, slapd $ldap ($LAB; start it with: sudo $0 start)"
  return 3
}

stop() {
  need_root
  [ -d "$LAB" ] || { say "nothing at $LAB"; return 0; }
  lock
  local t0 rc=0; t0=$(now)
  # the DCs take ~1.8 s each to stop: in parallel
  local ad_job; ad1 stop "$AD_DIR" 8>&- & ad_job=$!
  ad2 stop "$AD2_DIR" 8>&- || rc=$?
  "$LDAP" stop "$LDAP_DIR" 8>&- || rc=$?
  wait "$ad_job" || rc=$?
  # keep lab.env (the folder's facts), minus the PIDs that are gone now
  [ ! -e "$ENV_FILE" ] || publish "$(last_start_seconds)" >/dev/null
  say "stopped in $(since "$t0") s"
  return $rc
}

reset() {
  need_root
  [ -d "$LAB" ] || die "no lab at $LAB (run: sudo $0 start)"
  lock
  local t0; t0=$(now)
  ad1 users "$AD_DIR" 8>&-
  if [ -e "$AD2_DIR/dc/private/sam.ldb" ]; then
    ad2 users "$AD2_DIR" 8>&-
  else
    say "no second forest at $AD2_DIR: nothing to reset there"
  fi
  if ldap_up; then "$LDAP" users "$LDAP_DIR" 8>&-; else say "slapd not running: its users were not reset"; fi
  say "test users reset in $(since "$t0") s"
}

check() {
  [ -e "$ENV_FILE" ] || die "no lab at $LAB (run: sudo $0 start)"
  running || die "the lab is not (fully) running; see: $0 status"
  echo "== AD DC: simple binds over LDAPS (name, password, result, verbatim diagnostic)"
  ad1 check "$AD_DIR"
  echo "== second forest's AD DC: simple binds over LDAPS"
  ad2 check "$AD2_DIR"
  echo "== slapd: ldapwhoami -e ppolicy over LDAPS"
  "$LDAP" check "$LDAP_DIR"
}

wipe() {
  need_root
  [ -d "$LAB" ] || { say "nothing at $LAB"; return 0; }
  [ -e "$MARKER" ] || [ -e "$AD_DIR/.causeway-ad-lab" ] || [ -z "$(ls -A "$LAB")" ] \
    || die "$LAB was not made by $0; not deleting it"
  lock
  ad1 wipe "$AD_DIR" 8>&-      # each refuses a folder without its own marker
  ad2 wipe "$AD2_DIR" 8>&-
  "$LDAP" wipe "$LDAP_DIR" 8>&-
  rm -f -- "$ENV_FILE" "$MARKER" "$LAB/.lab.lock"
  rmdir -- "$LAB" 2>/dev/null || say "kept $LAB: it holds files this lab did not make"
  say "wiped $LAB"
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) facts "$(last_start_seconds)" ;;
  reset) reset ;;
  check) check ;;
  wipe) wipe ;;
  help|-h|--help) usage; exit 0 ;;
  *) usage >&2; die "unknown command '$CMD'" ;;
esac
