//! Test-only codecs: the server's view of our requests and Samba's layout of replies,
//! and the fixtures.

// In tests a panic is the failure report, and every fixture is fixed data.
#![allow(clippy::unwrap_used)]

use super::super::prefix::PrefixEntry;
use super::super::*;
use crate::ndr::{Limits, NdrError, Reader, Writer};

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub(crate) fn impacket(name: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(&format!("{name}.impacket.json"))).unwrap()
}

/// A decoder of `DRS_MSG_GETCHGREQ_V8` stubs, to read impacket's requests and ours the
/// same way (a server's view of a request).
#[derive(Debug, PartialEq)]
pub(crate) struct DecodedRequest {
    pub dsa_dest: [u8; 16],
    pub invocation_src: [u8; 16],
    pub nc: DsName,
    pub from: UsnVector,
    pub utd: Option<Vec<Cursor>>,
    pub flags: u32,
    pub max_objects: u32,
    pub extended_op: u32,
    pub pas: Vec<u32>,
    pub prefix: PrefixTable,
}

impl DecodedRequest {
    /// The partial attribute set as OIDs, through the request's own prefix table.
    pub(crate) fn pas_oids(&self) -> std::collections::BTreeSet<String> {
        self.pas
            .iter()
            .map(|a| oid_from_ber(&self.prefix.oid_of(*a).expect("attid in table")).unwrap())
            .collect()
    }
}

pub(crate) fn decode_request(stub: &[u8]) -> Result<DecodedRequest, NdrError> {
    let mut r = Reader::new(stub, Limits::default());
    r.array::<20>("hDrs")?;
    assert_eq!(r.u32("dwInVersion")?, 8);
    assert_eq!(r.u32("arm")?, 8);
    r.align("V8", 8)?;
    let dsa_dest = r.guid("dest")?;
    let invocation_src = r.guid("inv")?;
    r.ref_ptr("pNC")?;
    let from = UsnVector::read(&mut r)?;
    let utd_ptr = r.unique_ptr("utd")?;
    let flags = r.u32("flags")?;
    let max_objects = r.u32("max")?;
    let _max_bytes = r.u32("bytes")?;
    let extended_op = r.u32("exop")?;
    r.u64("fsmo")?;
    let pas_ptr = r.unique_ptr("pas")?;
    assert!(!r.unique_ptr("pasex")?);
    let prefix_scalars = PrefixTable::read_scalars(&mut r)?;
    let nc = DsName::read(&mut r)?;
    let utd = if utd_ptr {
        let max = r.u32("utd")?;
        r.align("utd", 8)?;
        assert_eq!(r.u32("ver")?, 1);
        r.u32("r1")?;
        assert_eq!(r.u32("count")?, max);
        r.u32("r2")?;
        let mut c = Vec::new();
        for _ in 0..max {
            r.align("cursor", 8)?;
            c.push(Cursor {
                dsa: r.guid("dsa")?,
                usn: r.i64("usn")?,
            });
        }
        Some(c)
    } else {
        None
    };
    let mut pas = Vec::new();
    if pas_ptr {
        let n = r.conformance("pas", 4)?;
        assert_eq!(r.u32("ver")?, 1);
        r.u32("r1")?;
        assert_eq!(r.u32("count")? as usize, n);
        for _ in 0..n {
            pas.push(r.u32("attr")?);
        }
    }
    let prefix = PrefixTable::read_buffers(&mut r, prefix_scalars)?;
    assert_eq!(r.remaining(), 0, "trailing bytes in request");
    Ok(DecodedRequest {
        dsa_dest,
        invocation_src,
        nc,
        from,
        utd,
        flags,
        max_objects,
        extended_op,
        pas,
        prefix,
    })
}

/// An encoder of `DRS_MSG_GETCHGREPLY_V6` stubs in Samba's layout (less the metadata
/// vectors), for round trips and for the driver's tests.
pub(crate) fn encode_reply(reply: &GetNcReply) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(6);
    w.u32(6);
    w.align(8);
    w.guid(&reply.dsa_src);
    w.guid(&reply.invocation_src);
    w.pointer(reply.nc.is_some());
    reply.from.write(&mut w);
    reply.to.write(&mut w);
    w.pointer(reply.utd.is_some());
    reply.prefix.write_scalars(&mut w);
    w.u32(reply.extended_ret);
    w.u32(reply.num_objects);
    w.u32(0);
    w.pointer(!reply.objects.is_empty());
    w.u32(u32::from(reply.more_data));
    w.u32(0);
    w.u32(0);
    w.u32(0);
    w.pointer(false);
    w.u32(reply.drs_error);
    if let Some(nc) = &reply.nc {
        nc.write(&mut w);
    }
    if let Some(utd) = &reply.utd {
        w.conformance(utd.len());
        w.align(8);
        w.u32(2);
        w.u32(0);
        w.u32(utd.len() as u32);
        w.u32(0);
        for c in utd {
            w.align(8);
            w.guid(&c.dsa);
            w.i64(c.usn);
            w.i64(0);
        }
    }
    reply.prefix.write_buffers(&mut w);
    // Every node's scalars, then each node's referents from the last node back.
    for (i, o) in reply.objects.iter().enumerate() {
        w.pointer(i + 1 < reply.objects.len());
        w.pointer(true);
        w.u32(o.flags);
        w.u32(o.attrs.len() as u32);
        w.pointer(!o.attrs.is_empty());
        w.u32(u32::from(o.is_nc_prefix));
        w.pointer(o.parent_guid.is_some());
        w.pointer(false);
    }
    for o in reply.objects.iter().rev() {
        o.name.write(&mut w);
        if !o.attrs.is_empty() {
            w.conformance(o.attrs.len());
            for a in &o.attrs {
                w.u32(a.attid);
                w.u32(a.values.len() as u32);
                w.pointer(!a.values.is_empty());
            }
            for a in &o.attrs {
                if a.values.is_empty() {
                    continue;
                }
                w.conformance(a.values.len());
                for v in &a.values {
                    w.u32(v.len() as u32);
                    w.pointer(true);
                }
                for v in &a.values {
                    w.byte_array(v);
                }
            }
        }
        if let Some(g) = &o.parent_guid {
            w.guid(g);
        }
    }
    w.u32(reply.status);
    w.into_bytes()
}

/// The standard prefix table entry for 1.2.840.113556.1.4 (index 9 in Samba's map).
pub(crate) fn samba_like_table() -> PrefixTable {
    PrefixTable {
        entries: vec![
            PrefixEntry {
                ndx: 0,
                prefix: oid_to_ber("2.5.4").unwrap(),
            },
            PrefixEntry {
                ndx: 2,
                prefix: oid_to_ber("1.2.840.113556.1.2").unwrap(),
            },
            PrefixEntry {
                ndx: 9,
                prefix: oid_to_ber("1.2.840.113556.1.4").unwrap(),
            },
        ],
    }
}
