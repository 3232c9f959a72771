#!/usr/bin/env python3
"""Capture DRSUAPI plaintext stubs from the lab DC with impacket (the fixtures in drsr/testdata).

Run with the lab up and impacket installed (scripts/install-test-tools.sh puts it in the tools
venv), from a scratch folder: `python3 scripts/lab/drsr-capture.py OUTDIR`.

Writes, to the folder given as argv[1]:
  calls.json   : [{"name","opnum","request_hex","response_hex"}] in call order (plaintext NDR stubs)
  session.json : {"session_key_hex", "user","domain"}
  users.json   : per replicated user: {"dn","rid","sid_hex","guid_hex","unicodePwd_hex","ntPwdHistory_hex",
                  "nt_hash_impacket","history_impacket":[...], "pwdLastSet","userAccountControl","accountExpires","sam","upn"}
"""
import json, sys, os, struct, binascii
from impacket.dcerpc.v5 import transport, epm, drsuapi, samr
from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_PRIVACY
from impacket.dcerpc.v5.dtypes import NULL
from impacket.examples.secretsdump import NTDSHashes
from impacket import ntlm
from Cryptodome.Cipher import DES

out = sys.argv[1]
env = dict(l.strip().split('=', 1) for l in open('/tmp/causeway-lab/lab.env') if '=' in l)
host = env['AD_HOST']
user, pw, dom = 'svc-sync', 'Sync-Svc-Pw-51', env['AD_DOMAIN']
base = env['AD_BASE_DN']

calls = []
sb = epm.hept_map(host, drsuapi.MSRPC_UUID_DRSUAPI, protocol='ncacn_ip_tcp')
rpc = transport.DCERPCTransportFactory(sb)
rpc.set_credentials(user, pw, dom)
dce = rpc.get_dce_rpc()
dce.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
dce.connect()
dce.bind(drsuapi.MSRPC_UUID_DRSUAPI)

_call, _recv = dce.call, dce.recv
pending = {}
def call(function, body, uuid=None):
    data = body.getData() if hasattr(body, 'getData') else body
    pending['req'] = (function, bytes(data))
    return _call(function, body, uuid)
def recv():
    r = _recv()
    f, req = pending.pop('req')
    calls.append({"name": name[0], "opnum": f, "request_hex": req.hex(), "response_hex": bytes(r).hex()})
    return r
dce.call, dce.recv = call, recv
name = ['']

def bind():
    name[0] = 'DRSBind'
    req = drsuapi.DRSBind()
    req['puuidClientDsa'] = drsuapi.NTDSAPI_CLIENT_GUID
    drs = drsuapi.DRS_EXTENSIONS_INT()
    drs['cb'] = len(drs)
    drs['dwFlags'] = drsuapi.DRS_EXT_GETCHGREQ_V6 | drsuapi.DRS_EXT_GETCHGREPLY_V6 | drsuapi.DRS_EXT_GETCHGREQ_V8 | \
        drsuapi.DRS_EXT_STRONG_ENCRYPTION | drsuapi.DRS_EXT_NONDOMAIN_NCS
    drs['SiteObjGuid'] = drsuapi.NULLGUID
    drs['Pid'] = 0
    drs['dwReplEpoch'] = 0
    drs['dwFlagsExt'] = 0
    drs['ConfigObjGUID'] = drsuapi.NULLGUID
    drs['dwExtCaps'] = 0xffffffff
    req['pextClient']['cb'] = len(drs)
    req['pextClient']['rgb'] = list(drs.getData())
    return dce.request(req)['phDrs']

hDrs = bind()
name[0] = 'DRSDomainControllerInfo'
r = drsuapi.hDRSDomainControllerInfo(dce, hDrs, dom, 2)
dsa = r['pmsgOut']['V2']['rItems'][0]['NtdsDsaObjectGuid']

name[0] = 'DRSCrackNames'
r = drsuapi.hDRSCrackNames(dce, hDrs, 0, drsuapi.DS_NAME_FORMAT.DS_NT4_ACCOUNT_NAME, drsuapi.DS_NAME_FORMAT.DS_FQDN_1779_NAME,
                           (dom + '\\alice',))
alice_dn = r['pmsgOut']['V1']['pResult']['rItems'][0]['pName'][:-1]

prefix = []
pas = drsuapi.PARTIAL_ATTR_VECTOR_V1_EXT()
pas['dwVersion'] = 1
oids = list(NTDSHashes.ATTRTYP_TO_ATTID.values()) + ['1.2.840.113556.1.4.159']  # + accountExpires
pas['cAttrs'] = len(oids)
for oid in oids:
    pas['rgPartialAttr'].append(drsuapi.MakeAttid(prefix, oid))
info = drsuapi.PrefixTableEntry()
info['ndx'] = 0
info['prefix']['length'] = 21
info['prefix']['elements'] = list(b'\xff' + b'\x00' * 20)
prefix.append(info)

def getnc(dn, exop, flags, max_objects, usn=(0, 0, 0), utd=NULL, guid=None):
    req = drsuapi.DRSGetNCChanges()
    req['hDrs'] = hDrs
    req['dwInVersion'] = 8
    req['pmsgIn']['tag'] = 8
    v8 = req['pmsgIn']['V8']
    v8['uuidDsaObjDest'] = dsa
    v8['uuidInvocIdSrc'] = drsuapi.NULLGUID  # Samba: must be its invocationId or zero, else it zeroes the highwatermark (restart)
    ds = drsuapi.DSNAME()
    ds['SidLen'] = 0
    ds['Guid'] = drsuapi.NULLGUID
    ds['Sid'] = ''
    ds['NameLen'] = len(dn)
    ds['StringName'] = dn + '\x00'
    ds['structLen'] = len(ds.getData())
    v8['pNC'] = ds
    v8['usnvecFrom']['usnHighObjUpdate'] = usn[0]
    v8['usnvecFrom']['usnReserved'] = usn[1]
    v8['usnvecFrom']['usnHighPropUpdate'] = usn[2]
    v8['pUpToDateVecDest'] = utd
    v8['ulFlags'] = flags
    v8['cMaxObjects'] = max_objects
    v8['cMaxBytes'] = 0
    v8['ulExtendedOp'] = exop
    v8['pPartialAttrSet'] = pas
    v8['PrefixTableDest']['PrefixCount'] = len(prefix)
    v8['PrefixTableDest']['pPrefixEntry'] = prefix
    v8['pPartialAttrSetEx1'] = NULL
    return dce.request(req)

def rid_of(sid):
    return struct.unpack('<I', sid[-4:])[0]

def remove_des(h, rid):
    k1, k2 = ntlm.__dict__.get('deriveKey', None), None
    from impacket.examples.secretsdump import CryptoCommon
    c = CryptoCommon()
    a, b = c.deriveKey(int(rid))
    return DES.new(a, DES.MODE_ECB).decrypt(h[:8]) + DES.new(b, DES.MODE_ECB).decrypt(h[8:])

users = []
def collect(resp):
    r = resp['pmsgOut']['V6']
    tbl = r['PrefixTableSrc']['pPrefixEntry']
    obj = r['pObjects']
    n = 0
    while obj is not None and obj != NULL and obj != b'':
        n += 1
        ent = obj['Entinf']
        rec = {"dn": ''.join(ent['pName']['StringName'][:-1]), "guid_hex": bytes(ent['pName']['Guid']).hex()}
        for a in ent['AttrBlock']['pAttr']:
            try:
                oid = drsuapi.OidFromAttid(tbl, a['attrTyp'])
            except Exception:
                continue
            vals = [b''.join(v['pVal']) for v in a['AttrVal']['pAVal']]
            if not vals:
                continue
            v = vals[0]
            for k, o in list(NTDSHashes.ATTRTYP_TO_ATTID.items()) + [('accountExpires', '1.2.840.113556.1.4.159')]:
                if o == oid:
                    if k in ('unicodePwd', 'ntPwdHistory', 'objectSid'):
                        rec[k + '_hex'] = v.hex()
                    elif k in ('pwdLastSet', 'accountExpires'):
                        rec[k] = struct.unpack('<q', v)[0]
                    elif k == 'userAccountControl':
                        rec[k] = struct.unpack('<I', v)[0]
                    elif k in ('sAMAccountName', 'userPrincipalName'):
                        rec[{'sAMAccountName': 'sam', 'userPrincipalName': 'upn'}[k]] = v.decode('utf-16le')
        if 'objectSid_hex' in rec:
            sid = bytes.fromhex(rec['objectSid_hex'])
            rec['rid'] = rid_of(sid)
            if 'unicodePwd_hex' in rec:
                plain = drsuapi.DecryptAttributeValue(dce, bytes.fromhex(rec['unicodePwd_hex']))
                rec['nt_hash_impacket'] = remove_des(plain, rec['rid']).hex()
            if 'ntPwdHistory_hex' in rec:
                plain = drsuapi.DecryptAttributeValue(dce, bytes.fromhex(rec['ntPwdHistory_hex']))
                rec['history_impacket'] = [remove_des(plain[i:i + 16], rec['rid']).hex() for i in range(0, len(plain) - 15, 16)]
            users.append(rec)
        obj = obj['pNextEntInf']
    return r

# 1. one object (what secretsdump does): EXOP_REPL_OBJ for alice
name[0] = 'DRSGetNCChanges_exop_repl_obj_alice'
getnc(alice_dn, drsuapi.EXOP_REPL_OBJ, drsuapi.DRS_INIT_SYNC | drsuapi.DRS_WRIT_REP, 1)
# 2. EXOP_REPL_SECRETS for alice
name[0] = 'DRSGetNCChanges_exop_repl_secrets_alice'
try:
    getnc(alice_dn, 7, drsuapi.DRS_INIT_SYNC | drsuapi.DRS_WRIT_REP, 1)
except Exception as e:
    print('repl_secrets:', e)
    calls.append({"name": name[0] + "_error", "error": str(e)})
# 3. full replication of the domain NC, in pages of 200 objects
page = 0
usn = (0, 0, 0)
meta = {}
while True:
    name[0] = 'DRSGetNCChanges_full_page%d' % page
    resp = getnc(base, 0, drsuapi.DRS_INIT_SYNC | drsuapi.DRS_WRIT_REP | 0x10 | 0x00200000, 200, usn)  # + DRS_PER_SYNC? see flags
    r = collect(resp)
    usn = (r['usnvecTo']['usnHighObjUpdate'], r['usnvecTo']['usnReserved'], r['usnvecTo']['usnHighPropUpdate'])
    print(page, usn, r['cNumObjects'], r['fMoreData'])
    meta['last_usnvecTo'] = usn
    page += 1
    if not r['fMoreData'] or page > 200:
        break
meta['pages'] = page
# 4. incremental from the final highwatermark (nothing changed since): expect no objects
name[0] = 'DRSGetNCChanges_incremental_nochange'
r = getnc(base, 0, drsuapi.DRS_INIT_SYNC | drsuapi.DRS_WRIT_REP, 200, usn)['pmsgOut']['V6']
print('incremental objects', r['cNumObjects'], 'more', r['fMoreData'])
# 5. a different bind handle for an unknown DN (error shape)
name[0] = 'DRSGetNCChanges_bad_dn'
try:
    getnc('DC=nowhere,DC=invalid', 0, drsuapi.DRS_INIT_SYNC | drsuapi.DRS_WRIT_REP, 200)
except Exception as e:
    print('bad dn:', e)
os.makedirs(out, exist_ok=True)
json.dump(calls, open(os.path.join(out, 'calls.json'), 'w'), indent=1)
sk = dce.get_session_key()
json.dump({"session_key_hex": bytes(sk).hex(), "user": user, "domain": dom, **meta}, open(os.path.join(out, 'session.json'), 'w'), indent=1)
json.dump(users, open(os.path.join(out, 'users.json'), 'w'), indent=1)
print('calls', len(calls), 'users', len(users), 'pages', page)
