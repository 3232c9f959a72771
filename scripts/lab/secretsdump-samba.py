#!/usr/bin/env python3
"""impacket's secretsdump.py, made to work against a Samba AD DC.

Samba decodes the prefix table of a DRSGetNCChanges request that carries a partial
attribute set as if its last entry were the schemaInfo entry (id 0, 21 bytes: 0xFF then
the 20-byte schema signature), and refuses the request when it is not ("Failed to decode
remote prefixMap: WERR_INVALID_PARAMETER"; impacket then prints the opaque
"code: 0x0 - ERROR_SUCCESS"). impacket builds its prefix table without that entry, so
this wrapper adds it the first time impacket builds its partial attribute set, and runs
secretsdump.py with the arguments given. The tests use it as the independent reader that
our own DRSR client's NT hashes are compared with.

Against Samba, name one user as DOMAIN/user (`-just-dc-user LAB/alice`, 0.4 s): with a bare
name impacket's DRSCrackNames gets no result and it fails with "byte indices must be
integers". A whole-domain `-just-dc-ntlm` takes about 40 s for 8,000 accounts.
"""
import runpy
import shutil
import sys

from impacket.dcerpc.v5 import drsuapi
from impacket.examples import secretsdump

SCHEMA_INFO = b"\xff" + bytes(20)
_get_nc_changes = secretsdump.RemoteOperations._DRSGetNCChanges


def _with_schema_info(self, user_entry, ds_name):
    attr = "_RemoteOperations__ppartialAttrSet"
    if getattr(self, attr) is None:
        prefix_table = []
        attrs = drsuapi.PARTIAL_ATTR_VECTOR_V1_EXT()
        attrs["dwVersion"] = 1
        oids = list(secretsdump.NTDSHashes.ATTRTYP_TO_ATTID.values())
        attrs["cAttrs"] = len(oids)
        for oid in oids:
            attrs["rgPartialAttr"].append(drsuapi.MakeAttid(prefix_table, oid))
        entry = drsuapi.PrefixTableEntry()
        entry["ndx"] = 0
        entry["prefix"]["length"] = len(SCHEMA_INFO)
        entry["prefix"]["elements"] = list(SCHEMA_INFO)
        prefix_table.append(entry)
        setattr(self, "_RemoteOperations__prefixTable", prefix_table)
        setattr(self, attr, attrs)
    return _get_nc_changes(self, user_entry, ds_name)


secretsdump.RemoteOperations._DRSGetNCChanges = _with_schema_info
script = shutil.which("secretsdump.py")
if script is None:
    sys.exit("secretsdump.py is not on PATH (scripts/install-test-tools.sh installs impacket)")
sys.argv[0] = script
runpy.run_path(script, run_name="__main__")
