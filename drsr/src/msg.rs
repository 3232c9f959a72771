//! DRSUAPI requests and replies ([MS-DRSR] 4.1), encoded and decoded with [`crate::ndr`].
//!
//! Only what a password-hash replication client needs: `IDL_DRSBind` / `IDL_DRSUnbind`,
//! `IDL_DRSDomainControllerInfo`, `IDL_DRSCrackNames` and `IDL_DRSGetNCChanges` (request
//! V8, reply V6). Every decoder takes a server's stub and fails with a precise
//! [`MsgError`] rather than panicking or allocating what the message cannot back.
//!
//! [MS-DRSR]: https://learn.microsoft.com/openspecs/windows_protocols/ms-drsr

use std::future::Future;

use crate::ndr::{Limits, NdrError, Reader, Writer};

mod bind;
mod getnc;
mod names;
mod prefix;
#[cfg(test)]
pub(crate) mod tests;

pub use bind::{
    decode_bind_reply, decode_unbind_reply, encode_bind_request, encode_unbind_request, BindReply,
    Extensions, BIND_FLAGS, NTDSAPI_CLIENT_GUID,
};
pub use getnc::{
    decode_getnc_reply, decode_getnc_reply_with, encode_getnc_request, Attr, ExtendedOp,
    GetNcReply, GetNcRequest, ReplObject, DRS_INIT_SYNC, DRS_NEVER_SYNCED, DRS_WRIT_REP,
};
pub use names::{
    decode_crack_reply, decode_dcinfo_reply, encode_crack_request, encode_dcinfo_request,
    CrackedName, DcInfo, NameFormat,
};
pub use prefix::{oid_from_ber, oid_to_ber, KnownAttr, PrefixEntry, PrefixTable, KNOWN_ATTRS};

/// A transport that carries one DRSUAPI call: the opnum and the plaintext request stub
/// in, the plaintext response stub out. The sealed DCE/RPC association implements it;
/// tests implement it over recorded stubs.
pub trait Call {
    /// Sends one request and returns the response stub.
    fn call(
        &mut self,
        opnum: u16,
        stub: &[u8],
    ) -> impl Future<Output = Result<Vec<u8>, CallError>> + Send;
}

/// A call that failed below DRSUAPI (connection, sealing, RPC fault). It keeps the
/// transport's error as its source; that error must not carry secrets either.
#[derive(Debug, thiserror::Error)]
// The transport's error is in the message: an operator reading `sync status` sees one
// line, and "failed in the RPC transport" alone does not say what to fix.
#[error("the RPC transport failed: {source}")]
pub struct CallError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl CallError {
    /// Wraps a transport error.
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// A DRSUAPI reply this client cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsgError {
    /// The stub is not valid NDR for the expected structure.
    #[error("the server's {call} reply is malformed")]
    Ndr {
        /// Which call's reply.
        call: &'static str,
        /// What is wrong where.
        #[source]
        source: NdrError,
    },
    /// The server answered with a reply version this client did not ask for.
    #[error("the server's {call} reply has version {version}, but this client asked for {expected} (it advertises neither compression nor newer replies)")]
    UnexpectedVersion {
        /// Which call.
        call: &'static str,
        /// The version received.
        version: u32,
        /// The version expected.
        expected: u32,
    },
}

impl MsgError {
    fn ndr(call: &'static str) -> impl FnOnce(NdrError) -> MsgError {
        move |source| MsgError::Ndr { call, source }
    }
}

/// Opnums of the DRSUAPI interface ([MS-DRSR] 4.1).
pub mod opnum {
    /// `IDL_DRSBind` (4.1.3).
    pub const BIND: u16 = 0;
    /// `IDL_DRSUnbind` (4.1.25).
    pub const UNBIND: u16 = 1;
    /// `IDL_DRSGetNCChanges` (4.1.10).
    pub const GET_NC_CHANGES: u16 = 3;
    /// `IDL_DRSCrackNames` (4.1.4).
    pub const CRACK_NAMES: u16 = 12;
    /// `IDL_DRSDomainControllerInfo` (4.1.5).
    pub const DC_INFO: u16 = 16;
}

/// `DRS_HANDLE` ([MS-DRSR] 5.40): a 20-byte context handle from `IDL_DRSBind`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DrsHandle(pub [u8; 20]);

impl std::fmt::Debug for DrsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A handle is not a secret, but it is noise in logs.
        f.write_str("DrsHandle(..)")
    }
}

/// A raw attribute value still encrypted with the session key (`unicodePwd`,
/// `ntPwdHistory`, [MS-DRSR] 4.1.10.6.11). Not a secret as such, but its `Debug` shows
/// only its length so that a log line never carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedValue(pub(crate) Vec<u8>);

impl EncryptedValue {
    /// Wraps a value as the server sent it.
    pub fn new(raw: Vec<u8>) -> Self {
        Self(raw)
    }

    /// The value as the server sent it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for EncryptedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptedValue({} bytes)", self.0.len())
    }
}

/// `USN_VECTOR` ([MS-DRSR] 5.206): a replication watermark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UsnVector {
    /// `usnHighObjUpdate`.
    pub high_obj_update: i64,
    /// `usnReserved`.
    pub reserved: i64,
    /// `usnHighPropUpdate`.
    pub high_prop_update: i64,
}

impl UsnVector {
    fn write(&self, w: &mut Writer) {
        w.i64(self.high_obj_update);
        w.i64(self.reserved);
        w.i64(self.high_prop_update);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, NdrError> {
        Ok(Self {
            high_obj_update: r.i64("USN_VECTOR")?,
            reserved: r.i64("USN_VECTOR")?,
            high_prop_update: r.i64("USN_VECTOR")?,
        })
    }
}

/// `UPTODATE_CURSOR_V1` / `_V2` ([MS-DRSR] 5.198, 5.199): what this client has seen of
/// one DC's changes (the sync time of V2 is not kept: requests carry V1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// `uuidDsa`: the invocation id of the originating DC.
    pub dsa: [u8; 16],
    /// `usnHighPropUpdate`.
    pub usn: i64,
}

/// `DSNAME` ([MS-DRSR] 5.50): an object's GUID, SID and DN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DsName {
    /// `Guid` in wire order (all zero when unknown).
    pub guid: [u8; 16],
    /// `Sid`: the binary SID, `SidLen` bytes (empty when the object has none).
    pub sid: Vec<u8>,
    /// `StringName`: the DN (may be empty when named by GUID).
    pub dn: String,
}

/// Wire size of `DSNAME`'s members before `StringName` (5.50): `structLen`, `SidLen`,
/// `Guid`, `Sid` (28), `NameLen`.
const DSNAME_FIXED: usize = 4 + 4 + 16 + 28 + 4;

impl DsName {
    /// Writes the referent of a `DSNAME*` (a conformant structure).
    fn write(&self, w: &mut Writer) {
        let units: Vec<u16> = self.dn.encode_utf16().collect();
        let sid_len = self.sid.len().min(28);
        w.conformance(units.len() + 1);
        // structLen as Samba computes it: the structure without the conformance.
        w.u32(u32::try_from(DSNAME_FIXED + 2 * (units.len() + 1)).unwrap_or(u32::MAX));
        w.u32(sid_len as u32);
        w.guid(&self.guid);
        let mut sid = [0u8; 28];
        sid[..sid_len].copy_from_slice(&self.sid[..sid_len]);
        w.bytes(&sid);
        w.u32(units.len() as u32);
        for u in units.into_iter().chain(std::iter::once(0)) {
            w.u16(u);
        }
    }

    /// Reads the referent of a `DSNAME*`.
    fn read(r: &mut Reader<'_>) -> Result<Self, NdrError> {
        const WHAT: &str = "DSNAME";
        let max = r.u32(WHAT)?;
        // The fixed members come first: check the characters against what follows them.
        let _struct_len = r.u32(WHAT)?;
        let sid_len = r.u32(WHAT)?;
        if sid_len > 28 {
            return Err(NdrError::Invalid {
                what: "DSNAME SidLen",
                value: u64::from(sid_len),
            });
        }
        let guid = r.guid(WHAT)?;
        let sid28 = r.array::<28>(WHAT)?;
        let name_len = r.u32(WHAT)?;
        if u64::from(name_len) + 1 != u64::from(max) {
            return Err(NdrError::Invalid {
                what: "DSNAME NameLen (disagrees with its array size)",
                value: u64::from(name_len),
            });
        }
        let n = r.check_count("DSNAME StringName", u64::from(max), 2)?;
        let at = r.position();
        let units = r.utf16("DSNAME StringName", n)?;
        let dn = match units.split_last() {
            Some((0, body)) => String::from_utf16(body).map_err(|_| NdrError::BadString {
                what: "DSNAME StringName",
                at,
            })?,
            _ => {
                return Err(NdrError::BadString {
                    what: "DSNAME StringName",
                    at,
                })
            }
        };
        Ok(Self {
            guid,
            sid: sid28[..sid_len as usize].to_vec(),
            dn,
        })
    }
}

/// The standard text form of a GUID given in wire order.
pub fn guid_to_string(g: &[u8; 16]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([g[0], g[1], g[2], g[3]]),
        u16::from_le_bytes([g[4], g[5]]),
        u16::from_le_bytes([g[6], g[7]]),
        g[8],
        g[9],
        g[10],
        g[11],
        g[12],
        g[13],
        g[14],
        g[15]
    )
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, with or without braces, to wire order.
pub fn guid_from_string(s: &str) -> Option<[u8; 16]> {
    let s = s.trim().trim_start_matches('{').trim_end_matches('}');
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if parts.len() != 5 || parts.iter().zip(lens).any(|(p, l)| p.len() != l) {
        return None;
    }
    let hex: String = parts.concat();
    let mut b = [0u8; 16];
    for (i, byte) in b.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

/// A reader with this crate's default caps.
fn reader(stub: &[u8]) -> Reader<'_> {
    Reader::new(stub, Limits::default())
}
