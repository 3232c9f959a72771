//! `IDL_DRSBind` (opnum 0, [MS-DRSR] 4.1.3) and `IDL_DRSUnbind` (opnum 1, 4.1.25).

use super::{reader, DrsHandle, MsgError};
use crate::ndr::{NdrError, Reader, Writer};

/// `NTDSAPI_CLIENT_GUID` ([MS-DRSR] 5.138, e24d201a-4fd6-11d1-a3da-0000f875ae0d, wire
/// order): the client DSA GUID a non-DC client binds with.
pub const NTDSAPI_CLIENT_GUID: [u8; 16] = [
    0x1a, 0x20, 0x4d, 0xe2, 0xd6, 0x4f, 0xd1, 0x11, 0xa3, 0xda, 0x00, 0x00, 0xf8, 0x75, 0xae, 0x0d,
];

/// `DRS_EXT_GETCHGREQ_V6` ([MS-DRSR] 5.39).
pub(crate) const DRS_EXT_GETCHGREQ_V6: u32 = 0x0040_0000;
/// `DRS_EXT_GETCHGREPLY_V6`.
pub(crate) const DRS_EXT_GETCHGREPLY_V6: u32 = 0x0400_0000;
/// `DRS_EXT_GETCHGREQ_V8`.
pub(crate) const DRS_EXT_GETCHGREQ_V8: u32 = 0x0100_0000;
/// `DRS_EXT_STRONG_ENCRYPTION`: secret attributes come encrypted with MD5(session key,
/// salt) + RC4 and a CRC (4.1.10.6.11), which is what `crate::secret` undoes.
pub(crate) const DRS_EXT_STRONG_ENCRYPTION: u32 = 0x0000_8000;
/// `DRS_EXT_NONDOMAIN_NCS`.
pub(crate) const DRS_EXT_NONDOMAIN_NCS: u32 = 0x0080_0000;

/// The flags this client advertises: the ones impacket's `secretsdump` sends, which
/// Samba's `drsuapi` server accepts and answers with `DRS_MSG_GETCHGREPLY_V6`. No
/// compression (`DRS_EXT_GETCHG_DEFLATE`, `W2K3_DEFLATE`, `GETCHGREPLY_V7`), no V9
/// replies and no linked-value replication, so replies are always uncompressed V6.
pub const BIND_FLAGS: u32 = DRS_EXT_GETCHGREQ_V6
    | DRS_EXT_GETCHGREPLY_V6
    | DRS_EXT_GETCHGREQ_V8
    | DRS_EXT_STRONG_ENCRYPTION
    | DRS_EXT_NONDOMAIN_NCS;

/// `DRS_EXTENSIONS_INT` ([MS-DRSR] 5.39), carried as the bytes of `DRS_EXTENSIONS` (5.38).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `dwFlags`.
    pub flags: u32,
    /// `SiteObjGuid`.
    pub site_guid: [u8; 16],
    /// `Pid`.
    pub pid: u32,
    /// `dwReplEpoch`: a client must bind again with the server's epoch when they differ.
    pub repl_epoch: u32,
    /// `dwFlagsExt`.
    pub flags_ext: u32,
    /// `ConfigObjGUID`.
    pub config_guid: [u8; 16],
    /// `dwExtCaps`.
    pub ext_caps: u32,
}

impl Extensions {
    /// What this client sends (epoch 0 until the server says otherwise).
    pub fn client(repl_epoch: u32) -> Self {
        Self {
            flags: BIND_FLAGS,
            repl_epoch,
            // As impacket: every extended capability bit is a mask of `flags_ext`.
            ext_caps: 0xffff_ffff,
            ..Self::default()
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(52);
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&self.site_guid);
        b.extend_from_slice(&self.pid.to_le_bytes());
        b.extend_from_slice(&self.repl_epoch.to_le_bytes());
        b.extend_from_slice(&self.flags_ext.to_le_bytes());
        b.extend_from_slice(&self.config_guid);
        b.extend_from_slice(&self.ext_caps.to_le_bytes());
        b
    }

    /// Older servers send a prefix of the structure (24, 28, 48 bytes …); the missing
    /// members read as zero, as [MS-DRSR] 5.39 says.
    fn from_bytes(b: &[u8]) -> Self {
        let mut full = [0u8; 52];
        let n = b.len().min(52);
        full[..n].copy_from_slice(&b[..n]);
        let u32_at =
            |i: usize| u32::from_le_bytes([full[i], full[i + 1], full[i + 2], full[i + 3]]);
        let guid_at = |i: usize| {
            let mut g = [0u8; 16];
            g.copy_from_slice(&full[i..i + 16]);
            g
        };
        Self {
            flags: u32_at(0),
            site_guid: guid_at(4),
            pid: u32_at(20),
            repl_epoch: u32_at(24),
            flags_ext: u32_at(28),
            config_guid: guid_at(32),
            ext_caps: u32_at(48),
        }
    }
}

/// `IDL_DRSBind` request: `[in, unique] UUID* puuidClientDsa, [in, unique]
/// DRS_EXTENSIONS* pextClient`.
pub fn encode_bind_request(client_dsa: &[u8; 16], ext: &Extensions) -> Vec<u8> {
    let mut w = Writer::new();
    w.pointer(true);
    w.guid(client_dsa);
    w.pointer(true);
    let rgb = ext.to_bytes();
    // DRS_EXTENSIONS is a conformant structure: { cb; [size_is(cb)] BYTE rgb[]; }.
    w.conformance(rgb.len());
    w.u32(rgb.len() as u32);
    w.bytes(&rgb);
    w.into_bytes()
}

/// `IDL_DRSBind` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindReply {
    /// `ppextServer` (`None` when the server sent none).
    pub server: Option<Extensions>,
    /// `phDrs`.
    pub handle: DrsHandle,
    /// The call's return value (a Win32 error; 0 is success).
    pub status: u32,
}

/// Decodes an `IDL_DRSBind` reply: `[out] DRS_EXTENSIONS** ppextServer, [out, ref]
/// DRS_HANDLE* phDrs`, return `ULONG`.
pub fn decode_bind_reply(stub: &[u8]) -> Result<BindReply, MsgError> {
    decode_bind(&mut reader(stub)).map_err(MsgError::ndr("IDL_DRSBind"))
}

fn decode_bind(r: &mut Reader<'_>) -> Result<BindReply, NdrError> {
    let server = if r.unique_ptr("ppextServer")? {
        let max = r.u32("DRS_EXTENSIONS")?;
        let cb = r.u32("DRS_EXTENSIONS cb")?;
        if cb != max || cb == 0 || cb > 10_000 {
            return Err(NdrError::Invalid {
                what: "DRS_EXTENSIONS cb",
                value: u64::from(cb),
            });
        }
        let n = r.check_count("DRS_EXTENSIONS rgb", u64::from(cb), 1)?;
        Some(Extensions::from_bytes(r.bytes("DRS_EXTENSIONS rgb", n)?))
    } else {
        None
    };
    let handle = DrsHandle(read_handle(r)?);
    let status = r.u32("IDL_DRSBind return value")?;
    Ok(BindReply {
        server,
        handle,
        status,
    })
}

fn read_handle(r: &mut Reader<'_>) -> Result<[u8; 20], NdrError> {
    r.align("DRS_HANDLE", 4)?;
    r.array::<20>("DRS_HANDLE")
}

/// `IDL_DRSUnbind` request: `[in, out, ref] DRS_HANDLE* phDrs`.
pub fn encode_unbind_request(handle: &DrsHandle) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(&handle.0);
    w.into_bytes()
}

/// Decodes an `IDL_DRSUnbind` reply (the zeroed handle, then the return value) and
/// returns the return value.
pub fn decode_unbind_reply(stub: &[u8]) -> Result<u32, MsgError> {
    let mut r = reader(stub);
    (|| {
        read_handle(&mut r)?;
        r.u32("IDL_DRSUnbind return value")
    })()
    .map_err(MsgError::ndr("IDL_DRSUnbind"))
}
