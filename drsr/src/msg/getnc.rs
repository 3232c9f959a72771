//! `IDL_DRSGetNCChanges` (opnum 3, [MS-DRSR] 4.1.10): request `DRS_MSG_GETCHGREQ_V8`
//! (4.1.10.2.5) and reply `DRS_MSG_GETCHGREPLY_V6` (4.1.10.2.11).
//!
//! The reply's objects are a linked list (`REPLENTINFLIST`, 5.161) whose successor
//! pointer is the node's *first* member, so NDR writes every node's scalars first and
//! then the nodes' other referents from the last node back to the first. It is read here
//! iteratively, each node charged as one level of depth.

use super::prefix::PrefixTable;
use super::{Cursor, DrsHandle, DsName, MsgError, UsnVector};
use crate::ndr::{Limits, NdrError, Reader, Writer};

/// `DRS_WRIT_REP` ([MS-DRSR] 5.41): replicate a writable NC (secrets need it).
pub const DRS_WRIT_REP: u32 = 0x0000_0010;
/// `DRS_INIT_SYNC`: the first replication of this NC.
pub const DRS_INIT_SYNC: u32 = 0x0000_0020;

/// `DRS_NEVER_SYNCED`: this client has never replicated the NC (first full pass).
pub const DRS_NEVER_SYNCED: u32 = 0x0020_0000;

/// `EXOP_REQ` ([MS-DRSR] 5.74): the extended operations this client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExtendedOp {
    /// No extended operation: normal (full or incremental) replication.
    None = 0,
    /// `EXOP_REPL_OBJ`: replicate one object.
    ReplObj = 6,
    /// `EXOP_REPL_SECRETS`: replicate one object's secrets.
    ReplSecrets = 7,
}

/// `DRS_MSG_GETCHGREQ_V8` (4.1.10.2.5), the members a client sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetNcRequest {
    /// `uuidDsaObjDest`.
    pub dsa_dest: [u8; 16],
    /// `uuidInvocIdSrc`.
    pub invocation_src: [u8; 16],
    /// `pNC`: the naming context, or the object of an extended operation.
    pub nc: DsName,
    /// `usnvecFrom`.
    pub from: UsnVector,
    /// `pUpToDateVecDest` (sent as `UPTODATE_VECTOR_V1_EXT`, 5.200).
    pub utd: Option<Vec<Cursor>>,
    /// `ulFlags` (`DRS_OPTIONS`).
    pub flags: u32,
    /// `cMaxObjects`.
    pub max_objects: u32,
    /// `cMaxBytes`.
    pub max_bytes: u32,
    /// `ulExtendedOp`.
    pub extended_op: ExtendedOp,
    /// `pPartialAttrSet` as ATTRTYPs under `prefix` (sorted ascending when sent).
    pub partial_attrs: Vec<u32>,
    /// `PrefixTableDest`.
    pub prefix: PrefixTable,
}

/// Encodes the request stub: `hDrs`, `dwInVersion` 8, the V8 arm.
pub fn encode_getnc_request(handle: &DrsHandle, req: &GetNcRequest) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&handle.0);
    w.u32(8); // dwInVersion
    w.u32(8); // union arm
    w.align(8); // the V8 structure holds hypers
    w.guid(&req.dsa_dest);
    w.guid(&req.invocation_src);
    w.pointer(true); // pNC ([ref], 4 bytes when embedded)
    req.from.write(&mut w);
    w.pointer(req.utd.is_some());
    w.u32(req.flags);
    w.u32(req.max_objects);
    w.u32(req.max_bytes);
    w.u32(req.extended_op as u32);
    w.u64(0); // liFsmoInfo
    w.pointer(!req.partial_attrs.is_empty());
    w.pointer(false); // pPartialAttrSetEx1
    req.prefix.write_scalars(&mut w);
    // Deferred referents, in member order.
    req.nc.write(&mut w);
    if let Some(cursors) = &req.utd {
        w.conformance(cursors.len());
        w.align(8);
        w.u32(1); // dwVersion
        w.u32(0);
        w.u32(cursors.len() as u32);
        w.u32(0);
        for c in cursors {
            w.align(8);
            w.guid(&c.dsa);
            w.i64(c.usn);
        }
    }
    if !req.partial_attrs.is_empty() {
        let mut attrs = req.partial_attrs.clone();
        attrs.sort_unstable();
        attrs.dedup();
        w.conformance(attrs.len());
        w.u32(1); // dwVersion
        w.u32(0);
        w.u32(attrs.len() as u32);
        for a in attrs {
            w.u32(a);
        }
    }
    req.prefix.write_buffers(&mut w);
    w.into_bytes()
}

/// One `ATTR` (5.9): an ATTRTYP (under the reply's prefix table) and its values.
#[derive(Clone, PartialEq, Eq)]
pub struct Attr {
    /// `attrTyp`.
    pub attid: u32,
    /// `AttrVal`: each value's bytes.
    pub values: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Attr {
    /// Value lengths only: some values are encrypted secrets ([`super::EncryptedValue`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lens: Vec<usize> = self.values.iter().map(Vec::len).collect();
        f.debug_struct("Attr")
            .field("attid", &format_args!("{:#010x}", self.attid))
            .field("value_lengths", &lens)
            .finish()
    }
}

/// One replicated object (`REPLENTINFLIST` / `ENTINF`, 5.161, 5.53).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplObject {
    /// `Entinf.pName`.
    pub name: DsName,
    /// `Entinf.ulFlags`.
    pub flags: u32,
    /// `Entinf.AttrBlock`.
    pub attrs: Vec<Attr>,
    /// `fIsNCPrefix`.
    pub is_nc_prefix: bool,
    /// `pParentGuid`.
    pub parent_guid: Option<[u8; 16]>,
}

/// `DRS_MSG_GETCHGREPLY_V6` (4.1.10.2.11), less the linked values (`rgValues`, which
/// this client never asks for: it does not advertise linked-value replication, and they
/// are read and dropped if a server sends them anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetNcReply {
    /// `uuidDsaObjSrc`.
    pub dsa_src: [u8; 16],
    /// `uuidInvocIdSrc`.
    pub invocation_src: [u8; 16],
    /// `pNC`.
    pub nc: Option<DsName>,
    /// `usnvecFrom`.
    pub from: UsnVector,
    /// `usnvecTo`: the watermark to send back in the next request.
    pub to: UsnVector,
    /// `pUpToDateVecSrc` (V2 cursors; sent only with the last reply of a pass).
    pub utd: Option<Vec<Cursor>>,
    /// `PrefixTableSrc`: how this reply's ATTRTYPs map to OIDs.
    pub prefix: PrefixTable,
    /// `ulExtendedRet` (`EXOP_ERR`, 5.75; 1 is success, 0 no extended operation).
    pub extended_ret: u32,
    /// `cNumObjects`.
    pub num_objects: u32,
    /// The objects, in the server's order.
    pub objects: Vec<ReplObject>,
    /// `fMoreData`.
    pub more_data: bool,
    /// `cNumValues` (linked values read and dropped).
    pub num_values: u32,
    /// `dwDRSError`.
    pub drs_error: u32,
    /// The call's return value (a Win32 error; 0 is success).
    pub status: u32,
}

/// Decodes an `IDL_DRSGetNCChanges` reply stub.
pub fn decode_getnc_reply(stub: &[u8]) -> Result<GetNcReply, MsgError> {
    decode_getnc_reply_with(stub, Limits::default())
}

/// [`decode_getnc_reply`] under explicit caps.
pub fn decode_getnc_reply_with(stub: &[u8], limits: Limits) -> Result<GetNcReply, MsgError> {
    const CALL: &str = "IDL_DRSGetNCChanges";
    let mut r = Reader::new(stub, limits);
    let version = r.u32("pdwOutVersion").map_err(MsgError::ndr(CALL))?;
    if version != 6 {
        return Err(MsgError::UnexpectedVersion {
            call: CALL,
            version,
            expected: 6,
        });
    }
    decode_v6(&mut r).map_err(MsgError::ndr(CALL))
}

fn decode_v6(r: &mut Reader<'_>) -> Result<GetNcReply, NdrError> {
    let arm = r.u32("DRS_MSG_GETCHGREPLY arm")?;
    if arm != 6 {
        return Err(NdrError::Invalid {
            what: "DRS_MSG_GETCHGREPLY arm (disagrees with pdwOutVersion)",
            value: u64::from(arm),
        });
    }
    r.align("DRS_MSG_GETCHGREPLY_V6", 8)?;
    let dsa_src = r.guid("uuidDsaObjSrc")?;
    let invocation_src = r.guid("uuidInvocIdSrc")?;
    let nc_ptr = r.unique_ptr("pNC")?;
    let from = UsnVector::read(r)?;
    let to = UsnVector::read(r)?;
    let utd_ptr = r.unique_ptr("pUpToDateVecSrc")?;
    let prefix_scalars = PrefixTable::read_scalars(r)?;
    let extended_ret = r.u32("ulExtendedRet")?;
    let num_objects = r.u32("cNumObjects")?;
    let _num_bytes = r.u32("cNumBytes")?;
    let objects_ptr = r.unique_ptr("pObjects")?;
    let more_data = r.u32("fMoreData")? != 0;
    let _nc_size_objects = r.u32("cNumNcSizeObjects")?;
    let _nc_size_values = r.u32("cNumNcSizeValues")?;
    let num_values = r.u32("cNumValues")?;
    let values_ptr = r.unique_ptr("rgValues")?;
    let drs_error = r.u32("dwDRSError")?;

    let nc = if nc_ptr { Some(DsName::read(r)?) } else { None };
    let utd = if utd_ptr { Some(read_utd_v2(r)?) } else { None };
    let prefix = PrefixTable::read_buffers(r, prefix_scalars)?;
    let objects = if objects_ptr {
        read_objects(r)?
    } else {
        Vec::new()
    };
    if values_ptr {
        skip_values(r, num_values)?;
    }
    let status = r.u32("IDL_DRSGetNCChanges return value")?;
    Ok(GetNcReply {
        dsa_src,
        invocation_src,
        nc,
        from,
        to,
        utd,
        prefix,
        extended_ret,
        num_objects,
        objects,
        more_data,
        num_values,
        drs_error,
        status,
    })
}

/// `UPTODATE_VECTOR_V2_EXT` (5.201).
fn read_utd_v2(r: &mut Reader<'_>) -> Result<Vec<Cursor>, NdrError> {
    const WHAT: &str = "UPTODATE_VECTOR_V2_EXT";
    let max = r.u32(WHAT)?;
    r.align(WHAT, 8)?;
    let version = r.u32(WHAT)?;
    let _reserved1 = r.u32(WHAT)?;
    let count = r.u32(WHAT)?;
    let _reserved2 = r.u32(WHAT)?;
    if version != 2 || count != max {
        return Err(NdrError::Invalid {
            what: "UPTODATE_VECTOR_V2_EXT dwVersion or cNumCursors",
            value: u64::from(if version != 2 { version } else { count }),
        });
    }
    let n = r.check_count("UPTODATE_CURSOR_V2 array", u64::from(count), 32)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        r.align("UPTODATE_CURSOR_V2", 8)?;
        let dsa = r.guid("UPTODATE_CURSOR_V2 uuidDsa")?;
        let usn = r.i64("UPTODATE_CURSOR_V2 usnHighPropUpdate")?;
        let _time = r.i64("UPTODATE_CURSOR_V2 timeLastSyncSuccess")?;
        out.push(Cursor { dsa, usn });
    }
    Ok(out)
}

/// The scalars of one `REPLENTINFLIST` node.
struct NodeHead {
    next: bool,
    name: bool,
    flags: u32,
    attr_count: u32,
    attrs: bool,
    is_nc_prefix: bool,
    parent: bool,
    meta: bool,
}

/// Wire size of a node's scalars: 8 `unsigned long`s.
const NODE_SIZE: usize = 32;

fn read_node_head(r: &mut Reader<'_>) -> Result<NodeHead, NdrError> {
    // Charge the node before reading it, so a chain costs its length in the budget.
    r.check_count("REPLENTINFLIST", 1, NODE_SIZE)?;
    Ok(NodeHead {
        next: r.unique_ptr("REPLENTINFLIST pNextEntInf")?,
        name: r.unique_ptr("ENTINF pName")?,
        flags: r.u32("ENTINF ulFlags")?,
        attr_count: r.u32("ATTRBLOCK attrCount")?,
        attrs: r.unique_ptr("ATTRBLOCK pAttr")?,
        is_nc_prefix: r.u32("REPLENTINFLIST fIsNCPrefix")? != 0,
        parent: r.unique_ptr("REPLENTINFLIST pParentGuid")?,
        meta: r.unique_ptr("REPLENTINFLIST pMetaDataExt")?,
    })
}

fn read_objects(r: &mut Reader<'_>) -> Result<Vec<ReplObject>, NdrError> {
    let mut heads = vec![read_node_head(r)?];
    while heads.last().is_some_and(|h| h.next) {
        r.enter("REPLENTINFLIST chain")?;
        heads.push(read_node_head(r)?);
    }
    let mut out = Vec::with_capacity(heads.len());
    // The last node's referents come first.
    while let Some(h) = heads.pop() {
        if !heads.is_empty() {
            r.leave();
        }
        let name = if h.name {
            DsName::read(r)?
        } else {
            return Err(NdrError::NullPointer {
                what: "ENTINF pName",
                at: r.position(),
            });
        };
        let attrs = if h.attrs {
            read_attrs(r, h.attr_count)?
        } else {
            Vec::new()
        };
        let parent_guid = if h.parent {
            Some(r.guid("REPLENTINFLIST pParentGuid")?)
        } else {
            None
        };
        if h.meta {
            skip_meta(r)?;
        }
        out.push(ReplObject {
            name,
            flags: h.flags,
            attrs,
            is_nc_prefix: h.is_nc_prefix,
            parent_guid,
        });
    }
    out.reverse();
    Ok(out)
}

/// `ATTR` array then each `ATTRVAL` array then each value's bytes.
fn read_attrs(r: &mut Reader<'_>, count: u32) -> Result<Vec<Attr>, NdrError> {
    let n = r.conformance("ATTR array", 12)?;
    if n as u64 != u64::from(count) {
        return Err(NdrError::Invalid {
            what: "ATTRBLOCK attrCount (disagrees with its array)",
            value: u64::from(count),
        });
    }
    let mut heads = Vec::with_capacity(n);
    for _ in 0..n {
        let attid = r.u32("ATTR attrTyp")?;
        let val_count = r.u32("ATTRVALBLOCK valCount")?;
        let present = r.unique_ptr("ATTRVALBLOCK pAVal")?;
        heads.push((attid, val_count, present));
    }
    let mut out = Vec::with_capacity(n);
    for (attid, val_count, present) in heads {
        let mut values = Vec::new();
        if present {
            let m = r.conformance("ATTRVAL array", 8)?;
            if m as u64 != u64::from(val_count) {
                return Err(NdrError::Invalid {
                    what: "ATTRVALBLOCK valCount (disagrees with its array)",
                    value: u64::from(val_count),
                });
            }
            let mut vheads = Vec::with_capacity(m);
            for _ in 0..m {
                let len = r.u32("ATTRVAL valLen")?;
                let p = r.unique_ptr("ATTRVAL pVal")?;
                vheads.push((len, p));
            }
            values.reserve(m);
            for (len, p) in vheads {
                values.push(if p {
                    r.byte_array("ATTRVAL pVal", Some(len))?.to_vec()
                } else {
                    Vec::new()
                });
            }
        }
        out.push(Attr { attid, values });
    }
    Ok(out)
}

/// `PROPERTY_META_DATA_EXT_VECTOR` (5.155): read for its size and dropped.
fn skip_meta(r: &mut Reader<'_>) -> Result<(), NdrError> {
    const WHAT: &str = "PROPERTY_META_DATA_EXT_VECTOR";
    let max = r.u32(WHAT)?;
    r.align(WHAT, 8)?;
    let count = r.u32(WHAT)?;
    if count != max {
        return Err(NdrError::Invalid {
            what: "PROPERTY_META_DATA_EXT_VECTOR cNumProps (disagrees with its array)",
            value: u64::from(count),
        });
    }
    // Each PROPERTY_META_DATA_EXT: dwVersion, (pad), timeChanged, uuid, usn = 40 bytes.
    let n = r.check_count("PROPERTY_META_DATA_EXT array", u64::from(count), 40)?;
    for _ in 0..n {
        r.align("PROPERTY_META_DATA_EXT", 8)?;
        r.bytes("PROPERTY_META_DATA_EXT", 40)?;
    }
    Ok(())
}

/// `REPLVALINF_V1` array (5.167): read for its size and dropped.
fn skip_values(r: &mut Reader<'_>, count: u32) -> Result<(), NdrError> {
    let n = r.conformance("REPLVALINF_V1 array", 72)?;
    if n as u64 != u64::from(count) {
        return Err(NdrError::Invalid {
            what: "cNumValues (disagrees with rgValues)",
            value: u64::from(count),
        });
    }
    let mut heads = Vec::with_capacity(n);
    for _ in 0..n {
        r.align("REPLVALINF_V1", 8)?;
        let object = r.unique_ptr("REPLVALINF_V1 pObject")?;
        let _attid = r.u32("REPLVALINF_V1 attrTyp")?;
        let len = r.u32("REPLVALINF_V1 valLen")?;
        let val = r.unique_ptr("REPLVALINF_V1 pVal")?;
        let _present = r.u32("REPLVALINF_V1 fIsPresent")?;
        r.align("REPLVALINF_V1", 8)?;
        r.bytes("VALUE_META_DATA_EXT_V1", 48)?;
        heads.push((object, len, val));
    }
    for (object, len, val) in heads {
        if object {
            DsName::read(r)?;
        }
        if val {
            r.byte_array("REPLVALINF_V1 pVal", Some(len))?;
        }
    }
    Ok(())
}
