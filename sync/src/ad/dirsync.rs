//! AD's DirSync control (`1.2.840.113556.1.4.841`, MS-ADTS 3.1.1.3.4.1.3): the request asks
//! for "everything changed since this cookie", the response hands back the next cookie and
//! says whether more changes are waiting.
//!
//! Both values are small DER sequences, encoded and read here by hand: ldap3's own control
//! parsers panic on a malformed value and lber's reader recurses without a depth bound, and
//! a DC's answer is outside input. The reader accepts exactly the shape MS-ADTS gives
//! (`SEQUENCE { INTEGER, INTEGER, OCTET STRING }`), with a bounded cookie, and says what is
//! wrong otherwise.

use std::fmt;

use ldap3::controls::RawControl;

/// The control's OID.
pub const OID: &str = "1.2.840.113556.1.4.841";

/// The longest cookie accepted from a DC. Samba's are about 100 bytes and Windows' a few
/// hundred; a cookie this large is a broken or hostile answer, not a bigger directory.
pub const MAX_COOKIE: usize = 16 * 1024;

/// `LDAP_DIRSYNC_OBJECT_SECURITY`: return what the bind account may read, without
/// requiring the replication rights for every attribute.
pub const OBJECT_SECURITY: u32 = 0x0000_0001;
/// `LDAP_DIRSYNC_ANCESTORS_FIRST_ORDER`: parents before children, so an OU arrives before
/// the users in it.
pub const ANCESTORS_FIRST_ORDER: u32 = 0x0000_0800;
/// `LDAP_DIRSYNC_PUBLIC_DATA_ONLY`: no secret attributes (hashes come over DRSR instead).
pub const PUBLIC_DATA_ONLY: u32 = 0x0000_2000;
/// `LDAP_DIRSYNC_INCREMENTAL_VALUES`: linked attributes such as `member` arrive as the
/// values added and removed (`member;range=1-1` / `;range=0-0`), not the whole list.
pub const INCREMENTAL_VALUES: u32 = 0x8000_0000;

/// A DirSync request: the flags, the most bytes of attributes per answer, and the cookie
/// of the last acknowledged answer (empty for a full import).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The `LDAP_DIRSYNC_*` flags.
    pub flags: u32,
    /// The most bytes of attribute data the DC puts in one answer.
    pub max_bytes: u32,
    /// The cookie to continue from.
    pub cookie: Cookie,
}

/// A DirSync cookie: opaque to us, bounded by [`MAX_COOKIE`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cookie(Vec<u8>);

impl Cookie {
    /// A cookie from stored bytes; refuses one over [`MAX_COOKIE`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, DirSyncError> {
        if bytes.len() > MAX_COOKIE {
            return Err(DirSyncError::CookieTooLong(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The cookie's bytes, to store with the watermark.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// No cookie: a full import.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Cookie {
    // A cookie is not a secret, but it is long and opaque: its length says enough in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cookie({} bytes)", self.0.len())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("flags", &format_args!("{:#010x}", self.flags))
            .field("max_bytes", &self.max_bytes)
            .field("cookie", &self.cookie)
            .finish()
    }
}

impl From<&Request> for RawControl {
    fn from(r: &Request) -> RawControl {
        let mut body = Vec::with_capacity(r.cookie.0.len() + 16);
        // MS-ADTS declares both integers as 32-bit signed: INCREMENTAL_VALUES is sent as a
        // negative number (four bytes), which is what Windows and Samba expect.
        write_integer(&mut body, r.flags as i32);
        write_integer(&mut body, r.max_bytes.min(i32::MAX as u32) as i32);
        write_tlv(&mut body, 0x04, &r.cookie.0);
        let mut val = Vec::with_capacity(body.len() + 6);
        write_tlv(&mut val, 0x30, &body);
        RawControl {
            ctype: OID.to_owned(),
            // Critical: a DC that ignored it would answer with a plain full search, which
            // looks like a delta that changed everything.
            crit: true,
            val: Some(val),
        }
    }
}

/// What the DC's DirSync response control says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// More changes are waiting: search again with [`Response::cookie`] at once.
    pub more: bool,
    /// The cookie to store once this answer's objects are acknowledged.
    pub cookie: Cookie,
}

/// Why a DirSync response could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirSyncError {
    /// The DC's answer carried no DirSync control.
    Missing,
    /// The control had no value.
    NoValue,
    /// The value is not `SEQUENCE { INTEGER, INTEGER, OCTET STRING }`.
    Malformed(&'static str),
    /// The cookie is longer than [`MAX_COOKIE`].
    CookieTooLong(usize),
}

impl fmt::Display for DirSyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "the domain controller answered a DirSync search without a DirSync control",
            ),
            Self::NoValue => f.write_str("the domain controller's DirSync control has no value"),
            Self::Malformed(what) => {
                write!(
                    f,
                    "the domain controller's DirSync control is malformed: {what}"
                )
            }
            Self::CookieTooLong(n) => write!(
                f,
                "the DirSync cookie is {n} bytes; at most {MAX_COOKIE} are accepted"
            ),
        }
    }
}

impl std::error::Error for DirSyncError {}

impl Response {
    /// Finds and reads the DirSync control among a search result's controls.
    pub fn from_controls<'a>(
        ctrls: impl IntoIterator<Item = &'a RawControl>,
    ) -> Result<Self, DirSyncError> {
        let c = ctrls
            .into_iter()
            .find(|c| c.ctype == OID)
            .ok_or(DirSyncError::Missing)?;
        Self::parse(c.val.as_deref().ok_or(DirSyncError::NoValue)?)
    }

    /// Reads a DirSync response value.
    pub fn parse(val: &[u8]) -> Result<Self, DirSyncError> {
        let (tag, body, rest) = read_tlv(val)?;
        if tag != 0x30 {
            return Err(DirSyncError::Malformed("not a SEQUENCE"));
        }
        if !rest.is_empty() {
            return Err(DirSyncError::Malformed("bytes after the SEQUENCE"));
        }
        let (tag, more, body) = read_tlv(body)?;
        if tag != 0x02 {
            return Err(DirSyncError::Malformed("the first field is not an INTEGER"));
        }
        let more = read_integer(more)? != 0;
        let (tag, unused, body) = read_tlv(body)?;
        if tag != 0x02 {
            return Err(DirSyncError::Malformed(
                "the second field is not an INTEGER",
            ));
        }
        read_integer(unused)?;
        let (tag, cookie, body) = read_tlv(body)?;
        if tag != 0x04 {
            return Err(DirSyncError::Malformed("the cookie is not an OCTET STRING"));
        }
        if !body.is_empty() {
            return Err(DirSyncError::Malformed("fields after the cookie"));
        }
        Ok(Self {
            more,
            cookie: Cookie::new(cookie.to_vec())?,
        })
    }
}

fn write_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = (n as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) {
    out.push(tag);
    write_len(out, value.len());
    out.extend_from_slice(value);
}

/// DER INTEGER: the shortest two's-complement form.
fn write_integer(out: &mut Vec<u8>, v: i32) {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 3 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    write_tlv(out, 0x02, &bytes[start..]);
}

/// One tag-length-value with a single-byte tag and a definite length.
fn read_tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), DirSyncError> {
    let (&tag, b) = b
        .split_first()
        .ok_or(DirSyncError::Malformed("truncated"))?;
    let (&first, b) = b
        .split_first()
        .ok_or(DirSyncError::Malformed("truncated"))?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return Err(DirSyncError::Malformed(
                "a length that is not definite and short",
            ));
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        (len, &b[n..])
    };
    if b.len() < len {
        return Err(DirSyncError::Malformed(
            "a length past the end of the value",
        ));
    }
    Ok((tag, &b[..len], &b[len..]))
}

fn read_integer(v: &[u8]) -> Result<i64, DirSyncError> {
    if v.is_empty() || v.len() > 8 {
        return Err(DirSyncError::Malformed(
            "an INTEGER of 0 or more than 8 bytes",
        ));
    }
    let neg = v[0] & 0x80 != 0;
    Ok(v.iter().fold(if neg { -1i64 } else { 0 }, |acc, b| {
        (acc << 8) | i64::from(*b)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(flags: u32, cookie: &[u8]) -> Vec<u8> {
        let r = Request {
            flags,
            max_bytes: 1_048_576,
            cookie: Cookie::new(cookie.to_vec()).expect("short"),
        };
        RawControl::from(&r).val.expect("value")
    }

    #[test]
    fn request_bytes_are_the_der_ms_adts_describes() {
        // flags = INCREMENTAL_VALUES | OBJECT_SECURITY = 0x80000001 as a signed 32-bit
        // number; max bytes 1 MiB; empty cookie.
        assert_eq!(
            value(INCREMENTAL_VALUES | OBJECT_SECURITY, b""),
            [
                0x30, 0x0d, 0x02, 0x04, 0x80, 0x00, 0x00, 0x01, 0x02, 0x03, 0x10, 0x00, 0x00, 0x04,
                0x00,
            ]
        );
        assert_eq!(
            value(OBJECT_SECURITY, b"ab"),
            [0x30, 0x0c, 0x02, 0x01, 0x01, 0x02, 0x03, 0x10, 0x00, 0x00, 0x04, 0x02, b'a', b'b']
        );
        let c = RawControl::from(&Request {
            flags: 0,
            max_bytes: 0,
            cookie: Cookie::default(),
        });
        assert!(
            c.crit,
            "a DC that ignored the control would answer a full search"
        );
        assert_eq!(c.ctype, OID);
    }

    #[test]
    fn a_long_cookie_gets_a_long_form_length() {
        let cookie = vec![7u8; 300];
        let v = value(0, &cookie);
        // 3 (flags) + 5 (max bytes) + 4 + 300 (cookie) = 312 = 0x138.
        assert_eq!(&v[..4], &[0x30, 0x82, 0x01, 0x38]);
        let r = Response::parse(&v).expect("our own request has the response's shape");
        assert_eq!(r.cookie.as_bytes(), &cookie[..]);
    }

    #[test]
    fn responses_are_read_exactly() {
        let ok = [
            0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x04, 0x01, 0x42,
        ];
        let r = Response::parse(&ok).expect("valid");
        assert!(r.more);
        assert_eq!(r.cookie.as_bytes(), b"B");
        let done = [0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00];
        assert!(!Response::parse(&done).expect("valid").more);
    }

    #[test]
    fn malformed_responses_say_what_is_wrong() {
        let cases: [(&[u8], &str); 7] = [
            (&[], "truncated"),
            (&[0x31, 0x00], "not a SEQUENCE"),
            (&[0x30, 0x05, 0x02], "a length past the end of the value"),
            (
                &[0x30, 0x03, 0x04, 0x01, 0x00],
                "the first field is not an INTEGER",
            ),
            (
                &[0x30, 0x08, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x02, 0x00],
                "the cookie is not an OCTET STRING",
            ),
            (
                &[
                    0x30, 0x0a, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x04, 0x00, 0x05, 0x00,
                ],
                "fields after the cookie",
            ),
            (
                &[0x30, 0x85, 1, 0, 0, 0, 0],
                "a length that is not definite and short",
            ),
        ];
        for (bytes, want) in cases {
            match Response::parse(bytes) {
                Err(DirSyncError::Malformed(m)) => assert_eq!(m, want, "{bytes:02x?}"),
                other => panic!("{bytes:02x?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_cookie_is_refused_with_its_length() {
        let cookie = vec![0u8; MAX_COOKIE + 1];
        let mut body = vec![0x02, 0x01, 0x00, 0x02, 0x01, 0x00];
        write_tlv(&mut body, 0x04, &cookie);
        let mut v = Vec::new();
        write_tlv(&mut v, 0x30, &body);
        assert_eq!(
            Response::parse(&v),
            Err(DirSyncError::CookieTooLong(MAX_COOKIE + 1))
        );
        assert!(Cookie::new(cookie).is_err());
    }

    #[test]
    fn a_missing_control_is_named() {
        let other = RawControl {
            ctype: "1.2.840.113556.1.4.319".into(),
            crit: false,
            val: None,
        };
        assert_eq!(
            Response::from_controls([&other]),
            Err(DirSyncError::Missing)
        );
    }
}
