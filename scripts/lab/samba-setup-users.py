"""samba-setup-users.py: the lab DC's test users, policies and rights, written straight
into its local sam.ldb with Samba's own Python bindings (run by samba-dc.sh as root, with
Debian's /usr/bin/python3, the one python3-samba is built for). Idempotent.

argv: MODE (lab: the first forest's users; lab2: the second forest's; shared: only the
cross-forest pieces, additively), smb.conf, the DC's FQDN, the shared UPN suffix, then
sAMAccountName / password pairs.
"""
import re, sys, time
import ldb
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.auth import system_session
from samba.sd_utils import SDUtils
from samba.ndr import ndr_unpack, ndr_pack
from samba.dcerpc import security

mode, conf, fqdn, shared = sys.argv[1:5]
pw = dict(zip(sys.argv[5::2], sys.argv[6::2]))
lp = LoadParm(); lp.load(conf)
# FLG_NOSYNC: no fsync per transaction (a throwaway lab; ~250 fsyncs cost seconds under load)
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp,
           flags=ldb.FLG_NOSYNC)
base = str(db.domain_dn()); dns = db.domain_dns_name()
BYPASS_PWHASH = "local_oid:1.3.6.1.4.1.7165.4.3.12:0"   # DSDB_CONTROL_BYPASS_PASSWORD_HASH_OID
NEVER = "9223372036854775807"
PAST = "129000000000000000"                              # 2009-10-13 as FILETIME
filetime = lambda t: str(int((t + 11644473600) * 10**7))

def find(sam):
    r = db.search(base, ldb.SCOPE_SUBTREE, "(sAMAccountName=%s)" % ldb.binary_encode(sam), ["dn"])
    return str(r[0].dn) if len(r) else None

def mod(dn, changes, controls=None):
    m = ldb.Message(); m.dn = ldb.Dn(db, dn)
    for attr, vals in changes.items():
        if vals is None:
            m[attr] = ldb.MessageElement([], ldb.FLAG_MOD_DELETE, attr)
        else:
            m[attr] = ldb.MessageElement(vals, ldb.FLAG_MOD_REPLACE, attr)
    db.modify(m, controls=controls or [])

def has(dn, attr):
    return attr in db.search(dn, ldb.SCOPE_BASE, attrs=[attr])[0]

def user(sam, ou=None, given=None, sn=None):
    dn = find(sam)
    if dn is None:
        db.newuser(sam, pw[sam], useusernameascn=True, userou=ou, givenname=given, surname=sn,
                   mailaddress="%s@%s" % (sam, dns))
        return find(sam)
    # reset to a clean, enabled, unlocked state with the documented password
    db.setpassword("(sAMAccountName=%s)" % sam, pw[sam], force_change_at_next_login=False)
    db.enable_account("(sAMAccountName=%s)" % sam)
    mod(dn, {"accountExpires": NEVER, "lockoutTime": "0"})
    for a in ("logonHours", "userWorkstations"):
        if has(dn, a):
            mod(dn, {a: None})
    return dn

def ensure_shared():
    """The cross-forest pieces, additive only (safe on a running DC): the shared UPN suffix
    in this forest's uPNSuffixes, and dup with UPN dup@<shared suffix>. Every lab forest has
    its own dup, so the same UPN exists in two independent forests."""
    parts = "CN=Partitions," + str(db.get_config_basedn())
    cur = db.search(parts, ldb.SCOPE_BASE, attrs=["uPNSuffixes"])[0]
    if shared.lower() not in {str(v).lower() for v in cur.get("uPNSuffixes", [])}:
        m = ldb.Message(); m.dn = ldb.Dn(db, parts)
        m["uPNSuffixes"] = ldb.MessageElement([shared], ldb.FLAG_MOD_ADD, "uPNSuffixes")
        db.modify(m)
    dn = find("dup") if mode == "shared" else None
    if dn is None:
        dn = user("dup", given="Dup", sn="Twin")
    upn = "dup@" + shared
    if str(db.search(dn, ldb.SCOPE_BASE, attrs=["userPrincipalName"])[0]["userPrincipalName"][0]) != upn:
        mod(dn, {"userPrincipalName": upn})
    return dn

if mode == "shared":
    ensure_shared()
    sys.exit(0)

# Domain policy: self-service change allowed at once (default minPwdAge is 1 day);
# complexity on, min length 7, history 24, maxPwdAge 42 d. Domain-wide lockout after 5 bad
# passwords, for 1 minute, counter reset after 1 minute (durations are negative 100-ns
# intervals): the threshold Causeway's smart lockout must stay below.
MINUTE = str(-60 * 10**7)
mod(base, {"minPwdAge": "0", "lockoutThreshold": "5", "lockoutDuration": MINUTE,
           "lockOutObservationWindow": MINUTE})

# Unlock every account that a test may have locked or half-locked (Administrator
# included): writing lockoutTime=0 makes Samba zero badPwdCount as well (samldb).
# erin-locked is locked again further down.
for r in db.search(base, ldb.SCOPE_SUBTREE,
                   "(&(objectClass=user)(|(lockoutTime>=1)(badPwdCount>=1)))", ["dn"]):
    mod(str(r.dn), {"lockoutTime": "0"})

dns_of = {}
if mode == "lab":
    if not len(db.search(base, ldb.SCOPE_ONELEVEL, "(ou=Staff)", ["dn"])):
        db.add({"dn": "OU=Staff," + base, "objectClass": "organizationalUnit"})

    dns_of["alice"] = user("alice", given="Alice", sn="Lab")
    for s in ("bob-disabled", "carol-mustchange", "dave-expired-account", "erin-locked",
              "frank-pwdexpired", "gina-hours", "hank-workstation", "ivan-lockout", "svc-sync",
              "kim-domainlock", "liam-smartlock", "nora-probe"):
        dns_of[s] = user(s)
    dns_of["olivia-staff"] = user("olivia-staff", ou="OU=Staff", given="Olivia", sn="Staff")

    db.disable_account("(sAMAccountName=bob-disabled)")
    mod(dns_of["carol-mustchange"], {"pwdLastSet": "0"})
    mod(dns_of["dave-expired-account"], {"accountExpires": PAST})
    mod(dns_of["frank-pwdexpired"], {"pwdLastSet": PAST}, controls=[BYPASS_PWHASH])
    mod(dns_of["gina-hours"], {"logonHours": bytes(21)})
    mod(dns_of["hank-workstation"], {"userWorkstations": "NOWHERE"})

    # Fine-grained password policy: lockout after 3 bad passwords, locked until an admin
    # writes lockoutTime=0 (duration 0), applied only to erin-locked and ivan-lockout.
    pso = "CN=lab-lockout,CN=Password Settings Container,CN=System," + base
    applies = [dns_of["erin-locked"], dns_of["ivan-lockout"]]
    if not len(db.search(base, ldb.SCOPE_SUBTREE, "(cn=lab-lockout)", ["dn"])):
        db.add({"dn": pso, "objectClass": "msDS-PasswordSettings",
                "msDS-PasswordSettingsPrecedence": "10",
                "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
                "msDS-PasswordHistoryLength": "24", "msDS-PasswordComplexityEnabled": "TRUE",
                "msDS-MinimumPasswordLength": "7", "msDS-MinimumPasswordAge": "0",
                "msDS-MaximumPasswordAge": "-36288000000000",
                "msDS-LockoutThreshold": "3", "msDS-LockoutObservationWindow": "-18000000000",
                "msDS-LockoutDuration": "0", "msDS-PSOAppliesTo": applies})
    else:
        mod(pso, {"msDS-PSOAppliesTo": applies})
    # erin starts locked out: as if 3 bad passwords had just been tried
    mod(dns_of["erin-locked"], {"lockoutTime": filetime(time.time())})
else:  # lab2: the second forest's ordinary users
    dns_of["bob"] = user("bob", given="Bob", sn="Lab2")
    for s in ("carol", "svc-sync"):
        dns_of[s] = user(s)
dns_of["dup"] = ensure_shared()

# group with members (memberOf shows on them)
if find("lab-users") is None:
    db.newgroup("lab-users", description="Causeway lab users")
members = (["alice", "bob-disabled", "carol-mustchange", "dave-expired-account", "erin-locked",
            "olivia-staff"] if mode == "lab" else ["bob", "dup"])
cur = db.search(base, ldb.SCOPE_SUBTREE, "(sAMAccountName=lab-users)", ["member"])[0]
have = {str(x).lower() for x in cur.get("member", [])}
todo = [m for m in members if dns_of[m].lower() not in have]
if todo:
    db.add_remove_group_members("lab-users", todo, add_members_operation=True)

# svc-sync: DS-Replication-Get-Changes and -All on the domain root (what Entra Connect's
# AD DS connector account gets): DirSync and DRSUAPI GetNCChanges without admin rights.
sid = str(ndr_unpack(security.dom_sid,
                     db.search(dns_of["svc-sync"], ldb.SCOPE_BASE, attrs=["objectSid"])[0]["objectSid"][0]))
sdu = SDUtils(db)
sddl = sdu.get_sd_as_sddl(base)
for right in ("1131f6aa-9c07-11d1-f79f-00c04fc2dcd2", "1131f6ad-9c07-11d1-f79f-00c04fc2dcd2"):
    ace = "(OA;;CR;%s;;%s)" % (right, sid)
    if ace not in sddl:
        sdu.dacl_add_ace(base, ace)
# ...and List Contents + Read Property on CN=Deleted Objects: without it Samba's DirSync
# (and show-deleted searches) silently omit deletions for a non-admin account.
dod = "CN=Deleted Objects," + base
dsid = security.dom_sid(db.get_domain_sid())
ctl = ["show_deleted:1", "sd_flags:1:4"]
cur_sd = ndr_unpack(security.descriptor,
                    db.search(dod, ldb.SCOPE_BASE, attrs=["nTSecurityDescriptor"], controls=ctl)[0]["nTSecurityDescriptor"][0])
dsddl = cur_sd.as_sddl(dsid)
ace = "(A;;LCRP;;;%s)" % sid
if ace not in dsddl:
    new_sddl = re.sub(r"D:([A-Z]*)", lambda m: m.group(0) + ace, dsddl, count=1)
    m = ldb.Message(); m.dn = ldb.Dn(db, dod)
    m["nTSecurityDescriptor"] = ldb.MessageElement(
        ndr_pack(security.descriptor.from_sddl(new_sddl, dsid)), ldb.FLAG_MOD_REPLACE, "nTSecurityDescriptor")
    db.modify(m, controls=ctl)
