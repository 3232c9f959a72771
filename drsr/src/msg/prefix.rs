//! `SCHEMA_PREFIX_TABLE` ([MS-DRSR] 5.177) and the ATTRTYP ↔ OID mapping (5.16.4).
//!
//! An `ATTRTYP` is `index << 16 | last arc`: the index names a table entry holding the
//! BER bytes of the OID without its last arc. A server encodes the attributes of its
//! reply through *its* table, so a client maps them back through the reply's table, never
//! by assuming the well-known numbering.

use crate::ndr::{NdrError, Reader, Writer};

/// One `PrefixTableEntry` (5.153): `ndx` and the BER bytes of an OID prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixEntry {
    /// `ndx`.
    pub ndx: u32,
    /// `prefix.elements`.
    pub prefix: Vec<u8>,
}

/// A `SCHEMA_PREFIX_TABLE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixTable {
    /// The entries, in wire order.
    pub entries: Vec<PrefixEntry>,
}

/// The schemaInfo entry a request's table must end with when it carries a partial
/// attribute set: Samba decodes such a table with `have_schema_info = true` and refuses it
/// (`WERR_INVALID_PARAMETER`) unless the last entry is `id_prefix 0`, 21 bytes starting
/// `0xFF` (see `shared/ad-lab/README.md`, *DRSUAPI*).
fn schema_info_entry() -> PrefixEntry {
    let mut prefix = vec![0u8; 21];
    prefix[0] = 0xFF;
    PrefixEntry { ndx: 0, prefix }
}

/// The attributes this client replicates, with their OIDs ([MS-ADA1..3]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KnownAttr {
    /// `unicodePwd` (1.2.840.113556.1.4.90), encrypted.
    UnicodePwd,
    /// `ntPwdHistory` (1.2.840.113556.1.4.94), encrypted.
    NtPwdHistory,
    /// `pwdLastSet` (1.2.840.113556.1.4.96).
    PwdLastSet,
    /// `userAccountControl` (1.2.840.113556.1.4.8).
    UserAccountControl,
    /// `accountExpires` (1.2.840.113556.1.4.159).
    AccountExpires,
    /// `objectSid` (1.2.840.113556.1.4.146).
    ObjectSid,
    /// `sAMAccountName` (1.2.840.113556.1.4.221).
    SamAccountName,
    /// `userPrincipalName` (1.2.840.113556.1.4.656).
    UserPrincipalName,
    /// `sAMAccountType` (1.2.840.113556.1.4.302): tells users from groups and computers.
    SamAccountType,
    /// `isDeleted` (1.2.840.113556.1.2.48): tombstones in incremental passes.
    IsDeleted,
}

/// Every [`KnownAttr`] with its OID; this is the partial attribute set of a request.
pub const KNOWN_ATTRS: [(KnownAttr, &str); 10] = [
    (KnownAttr::UnicodePwd, "1.2.840.113556.1.4.90"),
    (KnownAttr::NtPwdHistory, "1.2.840.113556.1.4.94"),
    (KnownAttr::PwdLastSet, "1.2.840.113556.1.4.96"),
    (KnownAttr::UserAccountControl, "1.2.840.113556.1.4.8"),
    (KnownAttr::AccountExpires, "1.2.840.113556.1.4.159"),
    (KnownAttr::ObjectSid, "1.2.840.113556.1.4.146"),
    (KnownAttr::SamAccountName, "1.2.840.113556.1.4.221"),
    (KnownAttr::UserPrincipalName, "1.2.840.113556.1.4.656"),
    (KnownAttr::SamAccountType, "1.2.840.113556.1.4.302"),
    (KnownAttr::IsDeleted, "1.2.840.113556.1.2.48"),
];

/// The BER content octets of a dotted OID (`None` if it is not one).
pub fn oid_to_ber(oid: &str) -> Option<Vec<u8>> {
    let arcs: Vec<u64> = oid
        .split('.')
        .map(|a| a.parse().ok())
        .collect::<Option<_>>()?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) {
        return None;
    }
    let mut out = Vec::new();
    let first = arcs[0].checked_mul(40)?.checked_add(arcs[1])?;
    for arc in std::iter::once(first).chain(arcs[2..].iter().copied()) {
        let mut tmp = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            tmp.push((v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        tmp.reverse();
        out.extend(tmp);
    }
    Some(out)
}

/// The dotted form of BER content octets (`None` if malformed).
pub fn oid_from_ber(ber: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    let mut in_arc = false;
    for &b in ber {
        if v > (u64::MAX >> 7) {
            return None;
        }
        v = (v << 7) | u64::from(b & 0x7f);
        in_arc = true;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let (a, b) = if v < 80 {
                    (v / 40, v % 40)
                } else {
                    (2, v - 80)
                };
                arcs.push(a);
                arcs.push(b);
            } else {
                arcs.push(v);
            }
            v = 0;
            in_arc = false;
        }
    }
    if in_arc || arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Splits an OID's BER into (prefix, low 16 bits of an ATTRTYP) as [MS-DRSR] 5.16.4 does:
/// a last arc under 128 is one byte; otherwise the last two bytes become the low word
/// (bit 15 set when the arc needs three or more bytes, whose high bytes stay in the prefix).
fn split_ber(ber: &[u8]) -> Option<(&[u8], u16)> {
    let last_start = ber[..ber.len().checked_sub(1)?]
        .iter()
        .rposition(|b| b & 0x80 == 0)
        .map_or(0, |i| i + 1);
    let last_len = ber.len() - last_start;
    if last_len == 1 {
        let (p, l) = ber.split_at(ber.len() - 1);
        return Some((p, u16::from(l[0])));
    }
    let (p, l) = ber.split_at(ber.len() - 2);
    let low = (u16::from(l[0] & 0x7f) << 7) | u16::from(l[1] & 0x7f);
    Some((p, if last_len > 2 { low | 0x8000 } else { low }))
}

impl PrefixTable {
    /// The table a request carries for `oids`: one entry per distinct prefix, numbered
    /// 0, 1, …, then the schemaInfo entry. Returns the table and each OID's ATTRTYP.
    pub fn for_request(oids: &[&str]) -> Option<(Self, Vec<u32>)> {
        let mut entries: Vec<PrefixEntry> = Vec::new();
        let mut attids = Vec::with_capacity(oids.len());
        for oid in oids {
            let ber = oid_to_ber(oid)?;
            let (prefix, low) = split_ber(&ber)?;
            let ndx = match entries.iter().position(|e| e.prefix == prefix) {
                Some(i) => i,
                None => {
                    entries.push(PrefixEntry {
                        ndx: entries.len() as u32,
                        prefix: prefix.to_vec(),
                    });
                    entries.len() - 1
                }
            };
            attids.push(((ndx as u32) << 16) | u32::from(low));
        }
        entries.push(schema_info_entry());
        Some((Self { entries }, attids))
    }

    /// The BER bytes of the OID an ATTRTYP names through this table.
    pub fn oid_of(&self, attid: u32) -> Option<Vec<u8>> {
        let ndx = attid >> 16;
        let low = (attid & 0xffff) as u16;
        let entry = self.entries.iter().find(|e| e.ndx == ndx)?;
        let mut ber = entry.prefix.clone();
        if low < 128 {
            ber.push(low as u8);
        } else {
            let low = low & 0x7fff;
            ber.push(((low >> 7) as u8 & 0x7f) | 0x80);
            ber.push((low & 0x7f) as u8);
        }
        Some(ber)
    }

    /// The ATTRTYP this table gives `oid`, if it has its prefix.
    pub fn attid_of(&self, oid: &str) -> Option<u32> {
        let ber = oid_to_ber(oid)?;
        let (prefix, low) = split_ber(&ber)?;
        // The last entry of a request table is schemaInfo, never a prefix; it cannot
        // match a real OID prefix (it starts 0xFF), so no special case is needed.
        let entry = self.entries.iter().find(|e| e.prefix == prefix)?;
        Some((entry.ndx << 16) | u32::from(low))
    }

    /// Each known attribute's ATTRTYP under this table.
    pub(crate) fn known(&self) -> Vec<(u32, KnownAttr)> {
        KNOWN_ATTRS
            .iter()
            .filter_map(|(a, oid)| self.attid_of(oid).map(|id| (id, *a)))
            .collect()
    }

    /// Writes the scalars (`PrefixCount`, `pPrefixEntry`).
    pub(crate) fn write_scalars(&self, w: &mut Writer) {
        w.u32(self.entries.len() as u32);
        w.pointer(!self.entries.is_empty());
    }

    /// Writes the deferred entry array and the prefix bytes.
    pub(crate) fn write_buffers(&self, w: &mut Writer) {
        if self.entries.is_empty() {
            return;
        }
        w.conformance(self.entries.len());
        for e in &self.entries {
            w.u32(e.ndx);
            w.u32(e.prefix.len() as u32);
            w.pointer(true);
        }
        for e in &self.entries {
            w.byte_array(&e.prefix);
        }
    }

    /// Reads the scalars; returns (count, present).
    pub(crate) fn read_scalars(r: &mut Reader<'_>) -> Result<(u32, bool), NdrError> {
        let count = r.u32("SCHEMA_PREFIX_TABLE PrefixCount")?;
        let present = r.unique_ptr("SCHEMA_PREFIX_TABLE pPrefixEntry")?;
        Ok((count, present))
    }

    /// Reads the deferred entries.
    pub(crate) fn read_buffers(
        r: &mut Reader<'_>,
        (count, present): (u32, bool),
    ) -> Result<Self, NdrError> {
        if !present {
            return Ok(Self::default());
        }
        let n = r.conformance("PrefixTableEntry array", 12)?;
        if n as u64 != u64::from(count) {
            return Err(NdrError::Invalid {
                what: "SCHEMA_PREFIX_TABLE PrefixCount (disagrees with its array)",
                value: u64::from(count),
            });
        }
        let mut heads = Vec::with_capacity(n);
        for _ in 0..n {
            let ndx = r.u32("PrefixTableEntry ndx")?;
            let len = r.u32("OID_t length")?;
            let present = r.unique_ptr("OID_t elements")?;
            heads.push((ndx, len, present));
        }
        let mut entries = Vec::with_capacity(n);
        for (ndx, len, present) in heads {
            let prefix = if present {
                r.byte_array("OID_t elements", Some(len))?.to_vec()
            } else {
                Vec::new()
            };
            entries.push(PrefixEntry { ndx, prefix });
        }
        Ok(Self { entries })
    }
}
