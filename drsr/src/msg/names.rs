//! `IDL_DRSCrackNames` (opnum 12, [MS-DRSR] 4.1.4) and `IDL_DRSDomainControllerInfo`
//! (opnum 16, 4.1.5).

use super::{reader, DrsHandle, MsgError};
use crate::ndr::{NdrError, Reader, Writer};

/// `DS_NAME_FORMAT` ([MS-DRSR] 4.1.4.1.3), the formats this client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum NameFormat {
    /// `DS_FQDN_1779_NAME`: a DN.
    Fqdn1779 = 1,
    /// `DS_NT4_ACCOUNT_NAME`: `DOMAIN\sam`.
    Nt4Account = 2,
    /// `DS_UNIQUE_ID_NAME`: `{guid}`.
    UniqueId = 6,
    /// `DS_CANONICAL_NAME`: `lab.causeway.test/Users/alice`.
    Canonical = 7,
    /// `DS_USER_PRINCIPAL_NAME`.
    UserPrincipal = 8,
}

/// `IDL_DRSCrackNames` request, `DRS_MSG_CRACKREQ_V1` (4.1.4.1.2).
pub fn encode_crack_request(
    handle: &DrsHandle,
    offered: NameFormat,
    desired: NameFormat,
    names: &[&str],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&handle.0);
    w.u32(1); // dwInVersion
    w.u32(1); // union arm
    w.u32(0); // CodePage
    w.u32(0); // LocaleId
    w.u32(0); // dwFlags
    w.u32(offered as u32);
    w.u32(desired as u32);
    w.u32(names.len() as u32);
    w.pointer(true); // rpNames
    w.conformance(names.len());
    for _ in names {
        w.pointer(true);
    }
    for n in names {
        w.wstring(n);
    }
    w.into_bytes()
}

/// One `DS_NAME_RESULT_ITEMW` (4.1.4.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrackedName {
    /// `status` (`DS_NAME_ERROR`: 0 is success, 2 not found, 3 not unique …).
    pub status: u32,
    /// `pDomain`.
    pub domain: Option<String>,
    /// `pName`.
    pub name: Option<String>,
}

/// Decodes an `IDL_DRSCrackNames` reply: `pdwOutVersion`, `DRS_MSG_CRACKREPLY_V1`
/// (4.1.4.1.7), return value. Returns the items and the return value.
pub fn decode_crack_reply(stub: &[u8]) -> Result<(Vec<CrackedName>, u32), MsgError> {
    let mut r = reader(stub);
    decode_crack(&mut r).map_err(MsgError::ndr("IDL_DRSCrackNames"))
}

fn decode_crack(r: &mut Reader<'_>) -> Result<(Vec<CrackedName>, u32), NdrError> {
    let version = r.u32("pdwOutVersion")?;
    let arm = r.u32("DRS_MSG_CRACKREPLY arm")?;
    if version != 1 || arm != 1 {
        return Err(NdrError::Invalid {
            what: "DRS_MSG_CRACKREPLY version",
            value: u64::from(version),
        });
    }
    let mut items = Vec::new();
    if r.unique_ptr("pResult")? {
        let count = r.u32("DS_NAME_RESULTW cItems")?;
        if r.unique_ptr("DS_NAME_RESULTW rItems")? {
            let n = r.conformance("DS_NAME_RESULT_ITEMW array", 12)?;
            if n as u64 != u64::from(count) {
                return Err(NdrError::Invalid {
                    what: "DS_NAME_RESULTW cItems (disagrees with its array)",
                    value: u64::from(count),
                });
            }
            let mut scalars = Vec::with_capacity(n);
            for _ in 0..n {
                let status = r.u32("DS_NAME_RESULT_ITEMW status")?;
                let domain = r.unique_ptr("DS_NAME_RESULT_ITEMW pDomain")?;
                let name = r.unique_ptr("DS_NAME_RESULT_ITEMW pName")?;
                scalars.push((status, domain, name));
            }
            for (status, domain, name) in scalars {
                let domain = opt_string(r, domain, "DS_NAME_RESULT_ITEMW pDomain")?;
                let name = opt_string(r, name, "DS_NAME_RESULT_ITEMW pName")?;
                items.push(CrackedName {
                    status,
                    domain,
                    name,
                });
            }
        }
    }
    let status = r.u32("IDL_DRSCrackNames return value")?;
    Ok((items, status))
}

fn opt_string(
    r: &mut Reader<'_>,
    present: bool,
    what: &'static str,
) -> Result<Option<String>, NdrError> {
    if present {
        r.wstring(what).map(Some)
    } else {
        Ok(None)
    }
}

/// `IDL_DRSDomainControllerInfo` request, `DRS_MSG_DCINFOREQ_V1` (4.1.5.1.2) asking
/// for `InfoLevel` 2 (which carries the NTDS DSA object's GUID).
pub fn encode_dcinfo_request(handle: &DrsHandle, domain: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&handle.0);
    w.u32(1); // dwInVersion
    w.u32(1); // union arm
    w.pointer(true); // Domain
    w.u32(2); // InfoLevel
    w.wstring(domain);
    w.into_bytes()
}

/// One `DS_DOMAIN_CONTROLLER_INFO_2W` (4.1.5.1.9), the members this client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcInfo {
    /// `DnsHostName`.
    pub dns_host_name: Option<String>,
    /// `NtdsDsaObjectName`.
    pub ntds_dsa_name: Option<String>,
    /// `fIsPdc`.
    pub is_pdc: bool,
    /// `NtdsDsaObjectGuid` (wire order): the DSA a replication request names.
    pub ntds_dsa_guid: [u8; 16],
}

/// Decodes an `IDL_DRSDomainControllerInfo` reply (`DRS_MSG_DCINFOREPLY_V2`, 4.1.5.1.5).
/// Returns the DCs and the return value.
pub fn decode_dcinfo_reply(stub: &[u8]) -> Result<(Vec<DcInfo>, u32), MsgError> {
    let mut r = reader(stub);
    decode_dcinfo(&mut r).map_err(MsgError::ndr("IDL_DRSDomainControllerInfo"))
}

/// `DS_DOMAIN_CONTROLLER_INFO_2W`: 7 string pointers, 3 BOOLs, 4 GUIDs.
const DCINFO2_SIZE: usize = 7 * 4 + 3 * 4 + 4 * 16;

fn decode_dcinfo(r: &mut Reader<'_>) -> Result<(Vec<DcInfo>, u32), NdrError> {
    let version = r.u32("pdwOutVersion")?;
    let arm = r.u32("DRS_MSG_DCINFOREPLY arm")?;
    if version != 2 || arm != 2 {
        return Err(NdrError::Invalid {
            what: "DRS_MSG_DCINFOREPLY version (this client asks for 2)",
            value: u64::from(version),
        });
    }
    let count = r.u32("DRS_MSG_DCINFOREPLY_V2 cItems")?;
    let mut out = Vec::new();
    if r.unique_ptr("DRS_MSG_DCINFOREPLY_V2 rItems")? {
        let n = r.conformance("DS_DOMAIN_CONTROLLER_INFO_2W array", DCINFO2_SIZE)?;
        if n as u64 != u64::from(count) {
            return Err(NdrError::Invalid {
                what: "DRS_MSG_DCINFOREPLY_V2 cItems (disagrees with its array)",
                value: u64::from(count),
            });
        }
        let mut scalars = Vec::with_capacity(n);
        for _ in 0..n {
            let mut ptrs = [false; 7];
            for p in &mut ptrs {
                *p = r.unique_ptr("DS_DOMAIN_CONTROLLER_INFO_2W string")?;
            }
            let is_pdc = r.u32("fIsPdc")? != 0;
            let _ds_enabled = r.u32("fDsEnabled")?;
            let _is_gc = r.u32("fIsGc")?;
            let _site = r.guid("SiteObjectGuid")?;
            let _computer = r.guid("ComputerObjectGuid")?;
            let _server = r.guid("ServerObjectGuid")?;
            let dsa = r.guid("NtdsDsaObjectGuid")?;
            scalars.push((ptrs, is_pdc, dsa));
        }
        for (ptrs, is_pdc, dsa) in scalars {
            // NetbiosName, DnsHostName, SiteName, SiteObjectName, ComputerObjectName,
            // ServerObjectName, NtdsDsaObjectName: deferred in that order.
            let mut strings: [Option<String>; 7] = Default::default();
            for (s, present) in strings.iter_mut().zip(ptrs) {
                *s = opt_string(r, present, "DS_DOMAIN_CONTROLLER_INFO_2W string")?;
            }
            let [_, dns, _, _, _, _, ntds] = strings;
            out.push(DcInfo {
                dns_host_name: dns,
                ntds_dsa_name: ntds,
                is_pdc,
                ntds_dsa_guid: dsa,
            });
        }
    }
    let status = r.u32("IDL_DRSDomainControllerInfo return value")?;
    Ok((out, status))
}
