//! The RFC 4533 control values, read and written with bounds. A server's answer is
//! outside input: every length is checked against what is left, nothing panics.

use ldap3::asn1::{StructureTag, PL};

/// The longest cookie or value accepted from a server.
const MAX_LEN: usize = 1024 * 1024;

/// An entry's state in a Sync State control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Present,
    Add,
    Modify,
    Delete,
}

/// A Sync State control value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncState {
    pub(crate) state: State,
    pub(crate) uuid: Vec<u8>,
}

/// A Sync Done control value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SyncDone {
    pub(crate) cookie: Option<Vec<u8>>,
    pub(crate) refresh_deletes: bool,
}

/// What a Sync Info message says, as far as a refreshOnly pass needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncInfo {
    /// A new cookie alone.
    NewCookie,
    /// The end of a delete (`present: false`) or present phase.
    Phase { present: bool },
    /// A set of entryUUIDs: deleted (`deletes`) or present.
    IdSet { uuids: Vec<Vec<u8>>, deletes: bool },
    /// Another intermediate response.
    Other,
}

/// One TLV: tag byte and contents.
fn tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, rest) = b.split_first().ok_or("a value ends before a tag")?;
    let (&first, mut rest) = rest.split_first().ok_or("a value ends before a length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(format!("a length of {n} bytes"));
        }
        let l = rest[..n]
            .iter()
            .fold(0usize, |a, x| (a << 8) | usize::from(*x));
        rest = &rest[n..];
        l
    };
    if len > rest.len() || len > MAX_LEN {
        return Err(format!("a length of {len} with {} bytes left", rest.len()));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The elements of a SEQUENCE (or SET).
fn elements(mut b: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (t, v, rest) = tlv(b)?;
        out.push((t, v));
        b = rest;
    }
    Ok(out)
}

fn sequence<'a>(b: &'a [u8], what: &str) -> Result<Vec<(u8, &'a [u8])>, String> {
    let (t, v, rest) = tlv(b)?;
    if t != 0x30 || !rest.is_empty() {
        return Err(format!("{what}: not one SEQUENCE"));
    }
    elements(v)
}

fn boolean(v: &[u8]) -> Result<bool, String> {
    match v {
        [x] => Ok(*x != 0),
        _ => Err(format!("a BOOLEAN of {} bytes", v.len())),
    }
}

/// Reads a Sync State control value.
pub(crate) fn sync_state(b: &[u8]) -> Result<SyncState, String> {
    let el = sequence(b, "Sync State")?;
    let state = match el.first() {
        Some((0x0a, [0])) => State::Present,
        Some((0x0a, [1])) => State::Add,
        Some((0x0a, [2])) => State::Modify,
        Some((0x0a, [3])) => State::Delete,
        _ => return Err("Sync State: no state 0-3 first".into()),
    };
    match el.get(1) {
        Some((0x04, u)) => Ok(SyncState {
            state,
            uuid: u.to_vec(),
        }),
        _ => Err("Sync State: no entryUUID".into()),
    }
}

/// Reads a Sync Done control value.
pub(crate) fn sync_done(b: &[u8]) -> Result<SyncDone, String> {
    let mut d = SyncDone::default();
    for (t, v) in sequence(b, "Sync Done")? {
        match t {
            0x04 => d.cookie = Some(v.to_vec()),
            0x01 => d.refresh_deletes = boolean(v)?,
            _ => return Err(format!("Sync Done: an element with tag {t:#04x}")),
        }
    }
    Ok(d)
}

/// Reads a Sync Info value (the intermediate response's value).
pub(crate) fn sync_info(b: &[u8]) -> Result<SyncInfo, String> {
    let (t, v, rest) = tlv(b)?;
    if !rest.is_empty() {
        return Err("Sync Info: bytes after the value".into());
    }
    match t {
        0x80 => Ok(SyncInfo::NewCookie),
        0xa1 | 0xa2 => {
            elements(v)?;
            Ok(SyncInfo::Phase { present: t == 0xa2 })
        }
        0xa3 => {
            let mut deletes = false;
            let mut uuids = Vec::new();
            for (t, v) in elements(v)? {
                match t {
                    0x04 => {}
                    0x01 => deletes = boolean(v)?,
                    0x31 => {
                        for (t, u) in elements(v)? {
                            if t != 0x04 {
                                return Err("syncIdSet: a UUID that is not an OCTET STRING".into());
                            }
                            uuids.push(u.to_vec());
                        }
                    }
                    _ => return Err(format!("syncIdSet: an element with tag {t:#04x}")),
                }
            }
            Ok(SyncInfo::IdSet { uuids, deletes })
        }
        _ => Err(format!("Sync Info: a choice with tag {t:#04x}")),
    }
}

/// Reads an intermediate response as ldap3 hands it over (`[APPLICATION 25]` with
/// `[0]` name and `[1]` value).
pub(crate) fn intermediate(st: &StructureTag) -> Result<SyncInfo, String> {
    let PL::C(parts) = &st.payload else {
        return Err("an intermediate response that is not constructed".into());
    };
    let mut name = None;
    let mut value = None;
    for p in parts {
        if let PL::P(b) = &p.payload {
            match p.id {
                0 => name = Some(b.as_slice()),
                1 => value = Some(b.as_slice()),
                _ => {}
            }
        }
    }
    if name != Some(super::SYNC_INFO_OID.as_bytes()) {
        return Ok(SyncInfo::Other);
    }
    sync_info(value.ok_or("a Sync Info message without a value")?)
}

/// Writes a refreshOnly Sync Request value with `cookie` (empty: none).
/// A Sync Request control value in refreshAndPersist mode without a cookie (the change
/// watcher's: it only needs to hear that something changed).
pub(crate) fn sync_persist_request() -> Vec<u8> {
    vec![0x30, 0x03, 0x0a, 0x01, 0x03]
}

pub(crate) fn sync_request(cookie: &[u8]) -> Vec<u8> {
    let mut inner = vec![0x0a, 0x01, 0x01];
    if !cookie.is_empty() {
        inner.push(0x04);
        push_len(&mut inner, cookie.len());
        inner.extend_from_slice(cookie);
    }
    let mut out = vec![0x30];
    push_len(&mut out, inner.len());
    out.extend(inner);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let b = (len as u32).to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
}
