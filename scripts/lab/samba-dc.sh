#!/usr/bin/env bash
# samba-dc.sh — a throwaway, real Samba Active Directory domain controller on a
# loopback address, for tests.  Everything lives under one directory.
#
#   samba-dc.sh start  [DIR]   provision (first time only), start, wait until ready,
#                              print KEY=VALUE facts (also written to DIR/lab.env)
#   samba-dc.sh stop   [DIR]   stop the DC this script started (PID from DIR/run/lab.pid)
#   samba-dc.sh status [DIR]   exit 0 and print the facts if running, exit 3 if not
#   samba-dc.sh env    [DIR]   print the facts without starting anything
#   samba-dc.sh users  [DIR]   put every test user back into its documented state, and
#                              unlock every account (lockoutTime=0 also zeroes badPwdCount)
#                              except erin-locked, which is locked again (alias: reset)
#   samba-dc.sh check  [DIR]   bind as every test user over LDAPS and print the results
#   samba-dc.sh shared [DIR]   only make sure the cross-forest pieces exist (the shared UPN
#                              suffix and the dup user; additive, for a running DC)
#   samba-dc.sh install        install the missing Debian packages (root), nothing else
#   samba-dc.sh wipe   [DIR]   stop, then delete DIR (only if this script created it)
#
# DIR defaults to $AD_LAB_DIR, else ${TMPDIR:-/tmp}/causeway-ad-lab. scripts/lab.sh drives this
# script with DIR=$CAUSEWAY_LAB_DIR/ad; use that, not this, in day-to-day work.
# Domain policy: complexity on, min length 7, history 24, minPwdAge 0, maxPwdAge 42 d, and
# a domain-wide lockout (threshold 5, duration 1 min, counter reset after 1 min). A PSO
# (threshold 3, duration 0 = until an admin unlocks) overrides it for erin-locked and
# ivan-lockout. kim-domainlock, liam-smartlock and nora-probe are ordinary users under the
# domain policy, each reserved for one kind of test (domain threshold, the hub's smart
# lockout, wrong-password probes) so that parallel tests never lock each other's account.
# Knobs (environment): AD_LAB_IP (127.0.0.2; any 127.x address; the DC owns the
# standard ports 88/135/389/445/464/636/3268/3269 on it, Samba cannot move 389/636),
# AD_LAB_REALM (LAB.CAUSEWAY.TEST), AD_LAB_DOMAIN (LAB), AD_LAB_HOSTNAME (dc1),
# AD_LAB_ADMIN_PASSWORD, AD_LAB_ALLOW_PLAIN_LDAP=1 (accept simple binds without
# TLS), AD_LAB_NO_INSTALL=1 (never apt-get), AD_LAB_PREFORK (prefork children, 4),
# AD_LAB_START_TIMEOUT (60 s); AD_LAB_PROFILE (lab: the users above; lab2: a second,
# independent forest with only bob, carol, svc-sync and dup), AD_LAB_ENV_PREFIX (AD: the
# facts' key prefix, e.g. AD2 for the second forest), AD_LAB_SHARED_UPN_SUFFIX
# (shared.causeway.test: added to uPNSuffixes; `dup@<it>` exists in every forest, the
# cross-forest UPN conflict a sync must quarantine); AD_LAB_TEMPLATE_DIR
# (/var/cache/causeway-lab: where a provisioned DC is kept for the next cold start, see
# "provisioned templates" below), AD_LAB_TEMPLATE=0 (always provision).
#
# Needs root: privileged ports, security.* xattrs on sysvol, and a private mount
# namespace (unshare) in which DIR/run is bound over /run/samba and lab copies of
# /etc/resolv.conf and /etc/hosts are bound over the real ones, so that the DC
# never looks up names outside this machine and never touches system paths.
# It stops only the processes it started (PID file + process tree), never by name.
set -euo pipefail
export PATH="/usr/sbin:/sbin:$PATH"   # samba, slapd, slapadd live in sbin
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

CMD=${1:-status}
DIR=${2:-${AD_LAB_DIR:-${TMPDIR:-/tmp}/causeway-ad-lab}}
IP=${AD_LAB_IP:-127.0.0.2}
REALM=${AD_LAB_REALM:-LAB.CAUSEWAY.TEST}
REALM=${REALM^^}
DOMAIN=${AD_LAB_DOMAIN:-LAB}
HOSTNAME_SHORT=${AD_LAB_HOSTNAME:-dc1}
ADMIN_PW=${AD_LAB_ADMIN_PASSWORD:-Lab-Root-Pw-0}
PREFORK=${AD_LAB_PREFORK:-4}
START_TIMEOUT=${AD_LAB_START_TIMEOUT:-60}
STRONG_AUTH=yes
[ "${AD_LAB_ALLOW_PLAIN_LDAP:-0}" = 1 ] && STRONG_AUTH=no
PROFILE=${AD_LAB_PROFILE:-lab}
P=${AD_LAB_ENV_PREFIX:-AD}
SHARED_SUFFIX=${AD_LAB_SHARED_UPN_SUFFIX:-shared.causeway.test}
case "$PROFILE" in lab|lab2) ;; *) echo "samba-dc: error: AD_LAB_PROFILE must be lab or lab2, got '$PROFILE'" >&2; exit 1;; esac
case "$P" in [A-Z]*) ;; *) echo "samba-dc: error: AD_LAB_ENV_PREFIX must be upper case, got '$P'" >&2; exit 1;; esac

DNSDOMAIN=${REALM,,}
FQDN="$HOSTNAME_SHORT.$DNSDOMAIN"
BASE_DN=$(printf 'DC=%s' "${DNSDOMAIN//./,DC=}")
MARKER="$DIR/.causeway-ad-lab"
PIDFILE="$DIR/run/lab.pid"
CONF="$DIR/dc/etc/smb.conf"
CA="$DIR/tls/ca.pem"
LOG="$DIR/log/samba.log"
SYSPY=/usr/bin/python3   # Debian's python: the one python3-samba is built for

# Test users: NAME (sAMAccountName), password, state.  Passwords meet AD
# complexity, contain no account-name part and no shell-special characters.
USERS=(
  "alice|Blue-Harbor-41|normal, member of lab-users, has givenName/sn/mail"
  "bob-disabled|Green-Valley-42|disabled (userAccountControl 514) -> data 533"
  "carol-mustchange|Red-Canyon-43|pwdLastSet=0, must change at next logon -> data 773"
  "dave-expired-account|Amber-Forest-44|accountExpires in 2009 -> data 701"
  "erin-locked|Silver-Lake-45|locked out (lockout PSO, threshold 3, duration 0 = until unlocked) -> data 775"
  "frank-pwdexpired|Golden-Field-46|pwdLastSet in 2009, maxPwdAge 42 d -> data 532"
  "gina-hours|Violet-Ridge-47|logonHours all zero -> data 530"
  "hank-workstation|Copper-Bay-48|userWorkstations=NOWHERE -> data 531"
  "ivan-lockout|Ivory-Gate-49|normal but under the lockout PSO: 3 bad binds lock it (-> 775)"
  "olivia-staff|Indigo-Shore-50|normal, in OU=Staff (for OU filters)"
  "kim-domainlock|Teal-Meadow-52|normal, under the domain-wide lockout only (threshold 5, 1 min): reserved for domain-lockout tests"
  "liam-smartlock|Olive-Grove-53|normal, domain lockout only: reserved for the hub's smart-lockout tests"
  "nora-probe|Coral-Reef-54|normal, domain lockout only: reserved for wrong-password probes (log-leak tests)"
  "svc-sync|Sync-Svc-Pw-51|Replicating Directory Changes (+ All) on the domain, LCRP on Deleted Objects: DirSync/DRSUAPI as non-admin"
  "dup|Twin-Brook-55|normal, UPN dup@<shared suffix>: the same UPN as dup in the second forest (cross-forest conflict)"
)
# The second forest (AD_LAB_PROFILE=lab2): a few ordinary users, its own svc-sync with the
# same rights, and its own dup (same UPN as the first forest's, another password).
if [ "$PROFILE" = lab2 ]; then
  USERS=(
    "bob|Green-Meadow-61|normal, member of lab-users, has givenName/sn/mail"
    "carol|Red-Harbor-62|normal"
    "svc-sync|Sync-Svc-Pw-71|Replicating Directory Changes (+ All) on the domain, LCRP on Deleted Objects"
    "dup|Twin-Peak-65|normal, UPN dup@<shared suffix>: the same UPN as dup in the first forest"
  )
fi
upn_of() {  # $1 sAMAccountName: its userPrincipalName
  if [ "$1" = dup ]; then echo "dup@$SHARED_SUFFIX"; else echo "$1@$DNSDOMAIN"; fi
}

say() { printf '%s\n' "samba-dc: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (privileged ports, xattrs, mount namespace)"; }

check_ip() {
  case "$IP" in 127.*) ;; *) die "AD_LAB_IP must be a 127.x loopback address, got $IP";; esac
}

# ---------------------------------------------------------------- packages
PKGS=(samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind python3-samba
      ldb-tools ldap-utils openssl krb5-user smbclient util-linux)
ensure_packages() {
  local missing=() p
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "${AD_LAB_NO_INSTALL:-0}" = 1 ] && die "missing packages: ${missing[*]} (AD_LAB_NO_INSTALL=1)"
  [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root to install them"
  say "installing ${missing[*]}"
  # Keep Debian's maintainer scripts from starting system smbd/nmbd/winbind/samba-ad-dc
  # (they would take 0.0.0.0:445 and clash with the lab); removed again below.
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_added=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  # DPkg::Lock::Timeout: wait (up to 10 min) for another apt-get/dpkg instead of failing at once
  local -a apt=(apt-get -y -q -o DPkg::Lock::Timeout=600)
  "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2 \
    || { "${apt[@]}" update >&2 && "${apt[@]}" install --no-install-recommends "${missing[@]}" >&2; } || rc=$?
  [ $policy_added = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || die "apt-get install failed"
}

# ---------------------------------------------------------------- processes
# The PID file holds "PID STARTTIME" (field 22 of /proc/PID/stat), so a recycled PID is
# never mistaken for ours. (samba rewrites its own argv, so cmdline cannot be used.)
# /proc/PID/stat after the "(comm) " field: state is field 3, starttime field 22.
proc_stat() {  # $1 pid: prints "STATE STARTTIME", fails if there is no such process
  local line f
  { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
  read -ra f <<<"${line##*) }"
  echo "${f[0]} ${f[19]}"
}
starttime() { local s; s=$(proc_stat "$1") && echo "${s#* }"; }
# alive (a zombie counts as gone: PID 1 may take seconds to reap the servers we
# started, which were reparented to it) and, if $2 is given, started at that time
pid_is_ours() {
  local s
  [ -n "$1" ] && s=$(proc_stat "$1") || return 1
  [ "${s%% *}" != Z ] || return 1
  [ -z "${2:-}" ] || [ "${s#* }" = "$2" ]
}
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid st; read -r pid st < "$PIDFILE" || true
  pid_is_ours "$pid" "${st:-x}" && { echo "$pid"; return 0; }
  return 1
}
descendants() {  # "PID:STARTTIME" of every descendant of $1, from one pass over /proc
  # (cat, not awk, reads the files: a process may vanish between glob and read; cat then
  # fails, which under pipefail + set -e would end `stop` silently before it kills
  # anything: it happens whenever another lab server stops at the same time)
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { pid = $1; sub(/^.*\) /, ""); parent[pid] = $2; start[pid] = $20 }
    END {
      n = 1; queue[1] = root
      while (n > 0) {
        p = queue[n]; n--
        for (c in parent) if (parent[c] == p) { print c ":" start[c]; queue[++n] = c }
      }
    }'
}

# ---------------------------------------------------------------- setup
write_files() {
  mkdir -p "$DIR/etc" "$DIR/run" "$DIR/log" "$DIR/tls" "$DIR/dc/cache"
  cat > "$DIR/etc/resolv.conf" <<EOF
# resolver seen by the lab DC only (bound over /etc/resolv.conf in its mount namespace)
nameserver $IP
options timeout:1 attempts:1
EOF
  cat > "$DIR/etc/hosts" <<EOF
127.0.0.1 localhost
$IP $FQDN $HOSTNAME_SHORT $DNSDOMAIN
EOF
  cat > "$DIR/etc/krb5.conf" <<EOF
# Use with KRB5_CONFIG=$DIR/etc/krb5.conf (no system change needed)
[libdefaults]
	default_realm = $REALM
	dns_lookup_realm = false
	dns_lookup_kdc = false
	rdns = false
	udp_preference_limit = 0
[realms]
	$REALM = {
		kdc = $IP:88
		admin_server = $IP:464
		kpasswd_server = $IP:464
	}
[domain_realm]
	.$DNSDOMAIN = $REALM
	$DNSDOMAIN = $REALM
EOF
}

make_tls() {  # own CA + server cert with SANs (Samba's self-made cert has no SAN: rustls/webpki reject it)
  local CA_TAG=""; [ "$PROFILE" = lab ] || CA_TAG=" $REALM"   # the second forest's CA is named apart
  [ -s "$DIR/tls/cert.pem" ] && [ -s "$DIR/tls/key.pem" ] && [ -s "$CA" ] && return 0
  local t="$DIR/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$t/ca.key" -out "$t/ca.pem" \
    -subj "/O=Causeway Lab/CN=Causeway Lab AD CA${CA_TAG}" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$t/key.pem" -out "$t/cert.csr" \
    -subj "/O=Causeway Lab/CN=$FQDN" 2>/dev/null
  printf '%s\n' "subjectAltName=DNS:$FQDN,DNS:$DNSDOMAIN,DNS:$HOSTNAME_SHORT,IP:$IP" \
    "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" > "$t/cert.ext"
  openssl x509 -req -sha256 -days 825 -in "$t/cert.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
    -CAcreateserial -extfile "$t/cert.ext" -out "$t/cert.pem" 2>/dev/null
  chmod 600 "$t/key.pem" "$t/ca.key"   # Samba refuses a key file readable by others
  rm -f "$t/cert.csr"
}

write_smb_conf() {
  cat > "$CONF" <<EOF
# Written by samba-dc.sh. A single AD DC bound to $IP only; all state under $DIR.
[global]
	netbios name = ${HOSTNAME_SHORT^^}
	realm = $REALM
	workgroup = $DOMAIN
	server role = active directory domain controller
	interfaces = $IP/8
	bind interfaces only = yes
	# ldap+kdc serve LDAP/LDAPS/GC/Kerberos/kpasswd; rpc serves epmapper(135)+DRSUAPI/SAMR/...;
	# s3fs (smbd) + winbindd serve SMB on 445 (impacket's secretsdump needs it). No DNS,
	# NetBIOS, CLDAP, dnsupdate (which would query DNS servers), KCC or outbound replication.
	server services = s3fs, rpc, ldap, kdc, winbindd
	disable netbios = yes
	smb ports = 445
	prefork children = $PREFORK
	private dir = $DIR/dc/private
	state directory = $DIR/dc/state
	cache directory = $DIR/dc/cache
	lock directory = $DIR/dc
	binddns dir = $DIR/dc/bind-dns
	pid directory = $DIR/run
	ncalrpc dir = $DIR/run/ncalrpc
	winbindd socket directory = $DIR/run/winbindd
	ntp signd socket directory = $DIR/run/ntp_signd
	log file = $DIR/log/log.%m
	max log size = 10000
	panic action =
	tls enabled = yes
	tls keyfile = $DIR/tls/key.pem
	tls certfile = $DIR/tls/cert.pem
	tls cafile = $DIR/tls/ca.pem
	# yes (default): simple binds need LDAPS or StartTLS ("BindSimple: Transport encryption required.")
	ldap server require strong auth = $STRONG_AUTH
	# default 60: an OLD password keeps working for 60 min after a change (NTLM/simple bind)
	old password allowed period = 0
	idmap_ldb:use rfc2307 = yes

[sysvol]
	path = $DIR/dc/state/sysvol
	read only = no

[netlogon]
	path = $DIR/dc/state/sysvol/$DNSDOMAIN/scripts
	read only = no
EOF
}

# Run "$@" in a private mount namespace in which the lab's own files and folders are
# bound over the system paths Samba would otherwise use whatever smb.conf says:
# /run/samba (winbindd client socket dir is compiled in), /var/log/samba (samba-dcerpcd
# and rpcd_* log there), /etc/resolv.conf and /etc/hosts (no DNS queries leave the box).
# unshare and sh exec, so the PID of the background job is the final program's PID.
# shellcheck disable=SC2016  # expanded by the inner sh, not here
NS_SCRIPT='
    while [ "$1" != "--" ]; do
      if [ -e "$2" ]; then mount --bind "$1" "$2" || exit 1; fi
      shift 2
    done
    shift; exec "$@"'
ns_binds() {
  mkdir -p /run/samba /var/log/samba   # mount points (Debian's samba package ships both)
  printf '%s\n' "$DIR/run" /run/samba "$DIR/log" /var/log/samba \
    "$DIR/etc/resolv.conf" /etc/resolv.conf "$DIR/etc/hosts" /etc/hosts --
}
in_ns() {
  local -a binds; mapfile -t binds < <(ns_binds)
  unshare --mount --propagation private -- /bin/sh -c "$NS_SCRIPT" in_ns "${binds[@]}" "$@"
}

provision() {  # ldb:nosync: no fsync per write while provisioning (~1 s less under load)
  say "provisioning $REALM ($DOMAIN) into $DIR/dc"
  local t0; t0=$(date +%s.%N)
  in_ns samba-tool domain provision --use-rfc2307 --realm="$REALM" --domain="$DOMAIN" \
    --server-role=dc --dns-backend=NONE --adminpass="$ADMIN_PW" --host-name="$HOSTNAME_SHORT" \
    --host-ip="$IP" --targetdir="$DIR/dc" \
    --option="interfaces=$IP/8" --option="bind interfaces only=yes" \
    --option="ldb:nosync=true" > "$DIR/log/provision.log" 2>&1 \
    || { tail -20 "$DIR/log/provision.log" >&2; die "provision failed (log: $DIR/log/provision.log)"; }
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f\n", b-a}' > "$DIR/log/provision.seconds"
}

setup_users() {  # $1: lab, lab2 or shared. Idempotent: creates or resets every test user on the local sam.ldb
  local -a args=()
  local u
  for u in "${USERS[@]}"; do args+=("${u%%|*}" "$(cut -d'|' -f2 <<<"$u")"); done
  "$SYSPY" "$HERE/samba-setup-users.py" "${1:-$PROFILE}" "$CONF" "$FQDN" "$SHARED_SUFFIX" "${args[@]}"
}

# ---------------------------------------------------------------- provisioned templates
# Provisioning is most of a cold start (~4 s of one core per DC, twice that when both
# forests provision at once on 2 cores). The first provision of a DC therefore leaves a
# tar of the finished, stopped DC (sam.ldb with its users, TLS files) in
# $AD_LAB_TEMPLATE_DIR (/var/cache/causeway-lab; AD_LAB_TEMPLATE=0: never), and a later
# start in an empty folder unpacks it instead of provisioning. The name holds a hash of
# everything the DC's contents depend on: the text of this script and of
# samba-setup-users.py, the identity knobs, the folder (absolute paths end up in the
# databases) and the Samba version; so any change of those provisions afresh, as does a
# template over 7 days old. The template holds the lab's keys like the folder does:
# root-only, for throwaway labs only.
TEMPLATE_DIR=${AD_LAB_TEMPLATE_DIR:-/var/cache/causeway-lab}
template_path() {
  local key
  key=$({ cat "$0" "$HERE/samba-setup-users.py"; echo "$IP|$REALM|$DOMAIN|$HOSTNAME_SHORT|$ADMIN_PW|$PROFILE|$SHARED_SUFFIX|$DIR"
          dpkg-query -W -f='${Version}' samba 2>/dev/null; } | sha256sum | cut -c1-16)
  echo "$(template_stem)$key.tar"
}
template_stem() {  # one stem per lab folder and forest: older templates of it are pruned
  echo "$TEMPLATE_DIR/ad-$PROFILE-${REALM,,}-$(printf '%s' "$DIR" | sha256sum | cut -c1-8)-"
}
restore_template() {
  [ "${AD_LAB_TEMPLATE:-1}" != 0 ] || return 1
  local t; t=$(template_path)
  [ -s "$t" ] || return 1
  # Every password in it was set when it was made, and maxPwdAge is 42 days: an old
  # template would come up with every test user's password expired (data 532).
  if [ -z "$(find "$t" -mtime -7 2>/dev/null)" ]; then
    say "template $t is over 7 days old (its passwords near maxPwdAge): provisioning afresh"
    rm -f -- "$t"
    return 1
  fi
  rm -rf "$DIR/dc"
  # --xattrs: sysvol carries its NT ACLs in security.* xattrs
  local t0; t0=$(date +%s.%N)
  rm -f "$DIR/log/provision.seconds"
  if tar --xattrs --xattrs-include='*' -C "$DIR" -xf "$t" 2>"$DIR/log/template.log"; then
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f\n", b-a}' > "$DIR/log/restore.seconds"
    say "restored the provisioned DC from $t"
    return 0
  fi
  say "warning: could not unpack $t (see $DIR/log/template.log); provisioning instead"
  rm -rf "$DIR/dc"
  return 1
}
save_template() {
  [ "${AD_LAB_TEMPLATE:-1}" != 0 ] || return 0
  local t tmp; t=$(template_path); tmp="$t.$$"
  mkdir -p "$TEMPLATE_DIR" && chmod 700 "$TEMPLATE_DIR" || { say "warning: cannot write $TEMPLATE_DIR; no template saved"; return 0; }
  if tar --xattrs --xattrs-include='*' -C "$DIR" -cf "$tmp" dc tls log/shared.done 2>"$DIR/log/template.log"; then
    mv -f "$tmp" "$t"
    local old
    for old in "$(template_stem)"*.tar; do [ "$old" = "$t" ] || rm -f -- "$old"; done
  else
    rm -f "$tmp"; say "warning: could not save a template (see $DIR/log/template.log)"
  fi
}

wait_ready() {  # LDAPS answers with our CA, and the KDC, SMB and epmapper ports accept
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT)) port ok
  while [ $SECONDS -lt $deadline ]; do
    pid_is_ours "$pid" || { tail -30 "$LOG" >&2; die "samba exited during start (log: $LOG)"; }
    ok=1
    for port in 88 135 445 636; do
      (exec 3<>"/dev/tcp/$IP/$port") 2>/dev/null || { ok=0; break; }
    done
    if [ $ok = 1 ] && LDAPTLS_CACERT="$CA" ldapsearch -x -LLL -o nettimeout=2 -H "ldaps://$IP" \
         -b '' -s base dnsHostName >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "not ready after ${START_TIMEOUT}s (log: $LOG)"
}

print_env() {
  local pid=${1:-} u name key
  {
    echo "${P}_LAB_DIR=$DIR"
    echo "${P}_HOST=$IP"
    echo "${P}_LDAP_URL=ldap://$IP:389"
    echo "${P}_LDAPS_URL=ldaps://$IP:636"
    echo "${P}_LDAP_PORT=389"
    echo "${P}_LDAPS_PORT=636"
    echo "${P}_GC_PORT=3268"
    echo "${P}_GC_TLS_PORT=3269"
    echo "${P}_KDC=$IP:88"
    echo "${P}_KPASSWD=$IP:464"
    echo "${P}_SMB_PORT=445"
    echo "${P}_EPMAP_PORT=135"
    echo "${P}_REALM=$REALM"
    echo "${P}_DOMAIN=$DOMAIN"
    echo "${P}_DNS_DOMAIN=$DNSDOMAIN"
    echo "${P}_BASE_DN=$BASE_DN"
    echo "${P}_DC_FQDN=$FQDN"
    echo "${P}_TLS_SERVER_NAME=$FQDN"
    echo "${P}_CA_CERT=$CA"
    echo "${P}_KRB5_CONFIG=$DIR/etc/krb5.conf"
    echo "${P}_SMB_CONF=$CONF"
    echo "${P}_REQUIRE_TLS_FOR_SIMPLE_BIND=$STRONG_AUTH"
    echo "${P}_ADMIN_USER=Administrator"
    echo "${P}_ADMIN_UPN=Administrator@$DNSDOMAIN"
    echo "${P}_ADMIN_DN=CN=Administrator,CN=Users,$BASE_DN"
    echo "${P}_ADMIN_PASSWORD=$ADMIN_PW"
    echo "${P}_GROUP_DN=CN=lab-users,CN=Users,$BASE_DN"
    echo "${P}_LOCKOUT_THRESHOLD=5"
    echo "${P}_LOCKOUT_DURATION_SECONDS=60"
    echo "${P}_LOCKOUT_OBSERVATION_SECONDS=60"
    if [ "$PROFILE" = lab ]; then
      echo "${P}_PSO_LOCKOUT_THRESHOLD=3"
      echo "${P}_PSO_LOCKOUT_DURATION_SECONDS=0"
    fi
    echo "${P}_SHARED_UPN_SUFFIX=$SHARED_SUFFIX"
    for u in "${USERS[@]}"; do
      name=${u%%|*}; key=${name%%-*}; key=${key^^}
      [ "$name" = svc-sync ] && key=SVC_SYNC
      echo "${P}_${key}_SAM=$name"
      echo "${P}_${key}_UPN=$(upn_of "$name")"
      if [ "$name" = olivia-staff ]; then echo "${P}_${key}_DN=CN=$name,OU=Staff,$BASE_DN"
      else echo "${P}_${key}_DN=CN=$name,CN=Users,$BASE_DN"; fi
      echo "${P}_${key}_PASSWORD=$(cut -d'|' -f2 <<<"$u")"
    done
    [ -n "$pid" ] && echo "${P}_PID=$pid"
    [ -f "$DIR/log/provision.seconds" ] && echo "${P}_PROVISION_SECONDS=$(cat "$DIR/log/provision.seconds")"
    [ -f "$DIR/log/restore.seconds" ] && echo "${P}_TEMPLATE_RESTORE_SECONDS=$(cat "$DIR/log/restore.seconds")"
    [ -f "$DIR/log/start.seconds" ] && echo "${P}_START_SECONDS=$(cat "$DIR/log/start.seconds")"
    [ -f "$DIR/log/boot.seconds" ] && echo "${P}_BOOT_SECONDS=$(cat "$DIR/log/boot.seconds")"
    echo "${P}_LOG=$LOG"
  }
}

start() {
  need_root; check_ip
  if [ -d "$DIR" ] && [ ! -e "$MARKER" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists and was not created by this script"
  fi
  mkdir -p "$DIR"; touch "$MARKER"
  exec 9>"$DIR/.lock"; flock 9
  local pid t0; t0=$(date +%s.%N)
  if pid=$(running_pid); then
    say "already running (pid $pid)"; print_env "$pid" | tee "$DIR/lab.env"; return 0
  fi
  ensure_packages
  if [ -e "$DIR/lab.conf" ] && [ "$(cat "$DIR/lab.conf")" != "$IP $REALM $DOMAIN $HOSTNAME_SHORT" ]; then
    die "$DIR was provisioned as '$(cat "$DIR/lab.conf")'; run '$0 wipe $DIR' first"
  fi
  for port in 88 135 389 445 464 636 3268 3269; do
    if (exec 3<>"/dev/tcp/$IP/$port") 2>/dev/null; then die "$IP:$port is already in use"; fi
  done
  write_files
  local fresh=0
  if [ ! -e "$DIR/dc/private/sam.ldb" ] && restore_template; then
    echo "$IP $REALM $DOMAIN $HOSTNAME_SHORT" > "$DIR/lab.conf"
  fi
  make_tls
  if [ ! -e "$DIR/dc/private/sam.ldb" ]; then
    rm -rf "$DIR/dc"; mkdir -p "$DIR/dc"; provision; fresh=1
    echo "$IP $REALM $DOMAIN $HOSTNAME_SHORT" > "$DIR/lab.conf"
  fi
  mkdir -p "$DIR/dc/cache" "$DIR/dc/etc"
  write_smb_conf
  if [ $fresh = 1 ]; then
    # The ldap/, GC/ ... SPNs are normally added at first start by the dnsupdate service,
    # which this lab does not run (it would query DNS servers): add them now, locally.
    in_ns samba_spnupdate -s "$CONF" >> "$DIR/log/provision.log" 2>&1 \
      || say "warning: samba_spnupdate failed (Kerberos tickets for ldap/$FQDN will not work)"
    setup_users "$PROFILE"
    echo "$SHARED_SUFFIX" > "$DIR/log/shared.done"
    save_template
  fi
  rm -f "$PIDFILE"
  # samba -i: no daemonising, and it makes itself a process-group leader (its SIGTERM
  # handler then TERMs the whole group). unshare and sh exec, so $! is the samba master.
  # stdin must be /dev/null: with a pipe or socket on stdin, samba -i exits at its EOF.
  local -a binds; mapfile -t binds < <(ns_binds)
  local t1; t1=$(date +%s.%N)
  unshare --mount --propagation private -- /bin/sh -c "$NS_SCRIPT" in_ns "${binds[@]}" \
    samba -i -s "$CONF" --debug-stdout -d "${AD_LAB_DEBUG:-1}" </dev/null >"$LOG" 2>&1 9>&- &
  pid=$!
  echo "$pid $(starttime "$pid")" > "$PIDFILE"
  wait_ready "$pid"
  local t2; t2=$(date +%s.%N)
  awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.2f\n", b-a}' > "$DIR/log/start.seconds"
  awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f\n", b-a}' > "$DIR/log/boot.seconds"
  say "ready in $(cat "$DIR/log/start.seconds") s, samba itself $(cat "$DIR/log/boot.seconds") s (pid $pid)"
  print_env "$pid" | tee "$DIR/lab.env"
}

stop() {
  [ -d "$DIR" ] || { say "nothing at $DIR"; return 0; }
  exec 9>"$DIR/.lock"; flock 9
  local pid st kids k i left
  if ! pid=$(running_pid); then say "not running"; rm -f "$PIDFILE"; return 0; fi
  st=$(starttime "$pid")
  # remember the tree we started (pid:starttime), to reap stragglers precisely
  kids=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true    # samba's handler TERMs its own process group
  for i in $(seq 1 300); do pid_is_ours "$pid" "$st" || break; sleep 0.05; done
  if pid_is_ours "$pid" "$st"; then say "samba $pid ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  for i in $(seq 1 50); do
    left=""
    for k in $kids; do pid_is_ours "${k%%:*}" "${k#*:}" && left="$left ${k%%:*}"; done
    [ -z "$left" ] && break
    # shellcheck disable=SC2086  # $left is a list of PIDs
    if [ "$i" = 50 ]; then say "killing leftover children:$left"; kill -KILL $left 2>/dev/null || true; fi
    sleep 0.1
  done
  rm -f "$PIDFILE"
  say "stopped (pid $pid)"
}

status() {
  local pid
  if [ -d "$DIR" ] && pid=$(running_pid); then print_env "$pid"; return 0; fi
  say "not running ($DIR)"; return 3
}

users() {
  need_root
  [ -e "$DIR/dc/private/sam.ldb" ] || die "no DC provisioned at $DIR"
  exec 9>"$DIR/.lock"; flock 9
  setup_users "$PROFILE"
  say "test users reset"
}

shared() {  # additive: the shared UPN suffix and dup, on a DC provisioned before they existed
  need_root
  [ -e "$DIR/dc/private/sam.ldb" ] || die "no DC provisioned at $DIR"
  exec 9>"$DIR/.lock"; flock 9
  setup_users shared
  echo "$SHARED_SUFFIX" > "$DIR/log/shared.done"   # scripts/lab.sh runs this once per DC
  say "shared UPN suffix $SHARED_SUFFIX and dup@$SHARED_SUFFIX present"
}

check() {  # simple bind over LDAPS as every test user; prints the server's verbatim answer
  [ -f "$DIR/lab.env" ] || die "not started"
  local u name pass out rc
  # alice's wrong password goes first: her successful bind right after zeroes badPwdCount
  # again, so check never brings her closer to the domain-wide lockout.
  local probe=alice; [ "$PROFILE" = lab ] || probe=bob
  for u in "Administrator|$ADMIN_PW" "$probe|wrong-password" "${USERS[@]}" "nobody-here|whatever"; do
    name=${u%%|*}; pass=$(cut -d'|' -f2 <<<"$u")
    out=$(LDAPTLS_CACERT="$CA" ldapsearch -x -LLL -H "ldaps://$IP" -D "$(upn_of "$name")" -w "$pass" \
          -b '' -s base dnsHostName 2>&1) && rc=0 || rc=$?
    if [ $rc = 0 ]; then printf '%-22s %-18s rc=0 success\n' "$name" "$pass"
    else printf '%-22s %-18s rc=%s %s\n' "$name" "$pass" "$rc" "$(grep -o 'additional info: .*' <<<"$out" | head -1)"; fi
  done
}

wipe() {
  [ -d "$DIR" ] || return 0
  [ -e "$MARKER" ] || die "$DIR has no $(basename "$MARKER") marker; not deleting it"
  stop
  rm -rf -- "$DIR"
  say "wiped $DIR"
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) print_env "$(running_pid 2>/dev/null || true)" ;;
  users|reset) users ;;
  shared) shared ;;
  check) check ;;
  install) ensure_packages ;;
  wipe) wipe ;;
  *) sed -n '2,30p' "$0" >&2; exit 2 ;;
esac
