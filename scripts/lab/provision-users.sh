#!/usr/bin/env bash
# provision-users.sh — N benchmark users (default 20000) in OU=Bench of the lab's first
# forest, for `causeway bench sync`; made once, then reused.
#
#   scripts/lab/provision-users.sh [N]
#
# Users bench00000 … bench<N-1> (cn = sAMAccountName), each with userPrincipalName and
# mail <sam>@<dns domain>, givenName, sn, displayName, department (50 values), employeeID
# and userAccountControl 512 (enabled, no password: an import benchmark never signs in;
# pwdLastSet -1, so no "password expired" flag either). Idempotent: only the missing ones
# are added (a second call with the same N adds nothing and takes well under a second: it
# only counts); users past N from an earlier, larger call are left alone.
# Prints BENCH_OU_DN, BENCH_USERS (present in range), BENCH_ADDED and
# BENCH_PROVISION_SECONDS as KEY=VALUE lines.
#
# How: Samba's own Python bindings on the DC's local sam.ldb (root; the DC may be
# running: ldb's locking and sequence numbers make the new users visible to it at once),
# in transactions of 2000 adds without fsync (ldb nosync) and in ldb's batch mode. Batch
# mode is what makes it fast: without it every add runs in a nested transaction that
# copies the transaction's index cache, and the objectClass/objectCategory/primaryGroupID
# index records hold every user, so each add costs O(users) and the run O(N²) (measured:
# 500 adds/s on an empty domain falling to 54/s at 7000 users; with batch mode 800/s at
# 11000). Over LDAPS the DC managed 17 adds/s at 11000 users (one transaction and fsync
# per add), and `ldbadd --nosync` of the same LDIF 80/s; so neither is used.
#
# Measured (2 shared cores, the DC running, load 2): N=20000 into an empty OU 25.6 s
# (57.7 s at load 4.5); a second call 0.7 s.
#
# Knobs: CAUSEWAY_LAB_DIR (the lab folder, as scripts/lab.sh), BENCH_OU (Bench),
# BENCH_PREFIX (bench: the names' prefix, letters and digits ending with a letter), BENCH_FOREST (ad: the first forest; ad2: the second, which `causeway bench sync` fills
# with its N users so that the other tests' full imports of the first stay small),
# BENCH_PASSWORD (unset: passwords left alone; set: every user in range whose password is
# not this one gets it, for `causeway bench hashsync`, which changes some; the NT hashes
# are compared, so a second call only reads them; BENCH_PASSWORDS_SET says how many).
set -euo pipefail

N=${1:-20000}
LAB=${CAUSEWAY_LAB_DIR:-${TMPDIR:-/tmp}/causeway-lab}
LAB=${LAB%/}
FOREST=${BENCH_FOREST:-ad}
case "$FOREST" in ad|ad2) ;; *) echo "provision-users: BENCH_FOREST must be ad or ad2, got '$FOREST'" >&2; exit 1;; esac
DIR=$LAB/$FOREST
CONF=$DIR/dc/etc/smb.conf
OU=${BENCH_OU:-Bench}
PREFIX=${BENCH_PREFIX:-bench}
SYSPY=/usr/bin/python3   # Debian's python: the one python3-samba is built for

say() { printf 'provision-users: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

case "$N" in ''|*[!0-9]*) die "N must be a number of users, got '$N'";; esac
[ "$N" -le 99999 ] || die "N must be at most 99999 (five-digit names), got $N"
case "$OU" in *[!A-Za-z0-9-]*|'') die "BENCH_OU must be a plain name, got '$OU'";; esac
case "$PREFIX" in [a-z]*) ;; *) die "BENCH_PREFIX must start with a lowercase letter, got '$PREFIX'";; esac
case "$PREFIX" in *[!a-z0-9]*) die "BENCH_PREFIX must be lowercase letters and digits, got '$PREFIX'";; esac
case "$PREFIX" in *[0-9]) die "BENCH_PREFIX must end with a letter (the number follows it), got '$PREFIX'";; esac
[ "${#PREFIX}" -le 15 ] || die "BENCH_PREFIX must be at most 15 letters (sAMAccountName is 20)"
[ "$(id -u)" = 0 ] || die "must run as root (it writes the DC's sam.ldb)"
[ -e "$DIR/dc/private/sam.ldb" ] || die "no lab DC at $DIR (run: sudo scripts/lab.sh start)"
[ -f "$CONF" ] || die "no $CONF (start the lab once: it writes the DC's smb.conf)"

# The DC script's lock: no user reset or provisioning runs while we write.
exec 9>"$DIR/.lock"
flock 9

BENCH_PASSWORD=${BENCH_PASSWORD:-} "$SYSPY" - "$CONF" "$OU" "$N" "$PREFIX" <<'PYEOF'
import os, sys, time
import ldb
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session

conf, ou_name, n, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t0 = time.time()
lp = LoadParm(); lp.load(conf)
# batch_mode: no nested transaction per add (see the header); nosync: no fsync per commit.
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp,
           flags=ldb.FLG_NOSYNC, options=["batch_mode:1"])
base = str(db.domain_dn()); dns = db.domain_dns_name()
ou = "OU=%s,%s" % (ou_name, base)
if not len(db.search(base, ldb.SCOPE_ONELEVEL, "(ou=%s)" % ldb.binary_encode(ou_name), ["dn"])):
    db.add({"dn": ou, "objectClass": "organizationalUnit",
            "description": "Causeway benchmark users (scripts/lab/provision-users.sh)"})

have = set()
# Names from the DNs alone (cn = sAMAccountName): no attribute to decode, so the
# check of a provisioned OU stays fast.
for r in db.search(ou, ldb.SCOPE_ONELEVEL, "(objectClass=user)", ["dn"]):
    s = str(r.dn.get_rdn_value())
    if s.startswith(prefix) and s[len(prefix):].isdigit():
        have.add(int(s[len(prefix):]))
missing = [i for i in range(n) if i not in have]

GIVEN = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ida", "Jon"]
BATCH = 2000
for k in range(0, len(missing), BATCH):
    db.transaction_start()
    try:
        for i in missing[k:k + BATCH]:
            sam = "%s%05d" % (prefix, i)
            db.add({"dn": "CN=%s,%s" % (sam, ou), "objectClass": "user",
                    "sAMAccountName": sam, "userPrincipalName": "%s@%s" % (sam, dns),
                    "givenName": GIVEN[i % len(GIVEN)], "sn": "Bench%05d" % i,
                    "displayName": "%s Bench%05d" % (GIVEN[i % len(GIVEN)], i),
                    "mail": "%s@%s" % (sam, dns), "department": "Department %02d" % (i % 50),
                    "employeeID": "E%07d" % i, "userAccountControl": "512",
                    "pwdLastSet": "-1"})
    except Exception:
        db.transaction_cancel()
        raise
    db.transaction_commit()
    print("provision-users: %d of %d added" % (min(k + BATCH, len(missing)), len(missing)),
          file=sys.stderr)

# Known passwords (BENCH_PASSWORD) for the users in range that have another: the NT hash
# written as unicodePwd with the bypass-password-hash control (what Samba's provisioning
# does), so no Kerberos keys are derived. Through the password_hash module instead (a
# plain unicodePwd modify) it took 34 s for 400 users at load 3 (85 ms each: 28 min for
# 20000). Hash sync reads only unicodePwd; `samba-tool user setpassword` (the bench's
# changes) still goes the whole way. pwdLastSet is set to now, as a reset would.
password = os.environ.get("BENCH_PASSWORD", "")
set_count = 0
if password:
    from samba import dsdb
    from samba.crypto import md4_hash_blob
    nt = md4_hash_blob(password.encode("utf-16-le"))
    now = str(int((time.time() + 11644473600) * 10000000))
    bypass = ["local_oid:%s:0" % dsdb.DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID]
    names = set("%s%05d" % (prefix, i) for i in range(n))
    bare = [str(r.dn) for r in db.search(ou, ldb.SCOPE_ONELEVEL, "(objectClass=user)",
                                         ["unicodePwd"])
            if str(r.dn.get_rdn_value()) in names
            and ("unicodePwd" not in r or r["unicodePwd"][0] != nt)]
    for k in range(0, len(bare), BATCH):
        db.transaction_start()
        try:
            for dn in bare[k:k + BATCH]:
                m = ldb.Message(ldb.Dn(db, dn))
                m["unicodePwd"] = ldb.MessageElement(nt, ldb.FLAG_MOD_REPLACE, "unicodePwd")
                m["pwdLastSet"] = ldb.MessageElement(now, ldb.FLAG_MOD_REPLACE, "pwdLastSet")
                db.modify(m, controls=bypass)
        except Exception:
            db.transaction_cancel()
            raise
        db.transaction_commit()
        set_count += len(bare[k:k + BATCH])
        print("provision-users: %d of %d passwords set" % (set_count, len(bare)),
              file=sys.stderr)

print("BENCH_OU_DN=%s" % ou)
print("BENCH_PASSWORDS_SET=%d" % set_count)
print("BENCH_USERS=%d" % (len(have & set(range(n))) + len(missing)))
print("BENCH_ADDED=%d" % len(missing))
print("BENCH_PROVISION_SECONDS=%.2f" % (time.time() - t0))
PYEOF
