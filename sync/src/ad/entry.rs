//! One entry of a DirSync (or `uSNChanged`) answer, checked and normalised: the anchor GUID,
//! the plain DN (AD sends the extended `<GUID=…>;<SID=…>;DN` form), whether it is a
//! tombstone, and the attribute values that changed — with linked attributes in DirSync's
//! incremental form (`member;range=1-1` added, `member;range=0-0` removed) kept apart.
//!
//! A DC's answer is outside input: every value and every count is bounded, and a malformed
//! GUID or SID is an error that names the entry and the attribute, never a panic.

use std::collections::BTreeMap;
use std::fmt;

use ldap3::SearchEntry;

/// The most bytes in one attribute value (a `thumbnailPhoto` is not imported; the largest
/// value we map, a certificate or a long `proxyAddresses` entry, is far smaller).
pub const MAX_VALUE: usize = 64 * 1024;
/// The most values of one attribute in one entry. AD returns at most 1,500 values of a
/// linked attribute per range by default (`MaxValRange`); 5,000 allows a raised limit.
pub const MAX_VALUES: usize = 5_000;
/// The longest DN accepted.
pub const MAX_DN: usize = 4 * 1024;

/// An object's `objectGUID` (or `ms-DS-ConsistencyGuid`): 16 bytes in AD's byte order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid([u8; 16]);

impl Guid {
    /// From the 16 bytes AD stores; anything else is refused with its length.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        <[u8; 16]>::try_from(b)
            .map(Self)
            .map_err(|_| format!("a GUID is 16 bytes, this one is {}", b.len()))
    }

    /// The 16 bytes as AD stores them.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From the text form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (as in `<GUID=…>`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let groups: Vec<usize> = s.split('-').map(str::len).collect();
        if groups != [8, 4, 4, 4, 12] || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a GUID (8-4-4-4-12 hexadecimal digits)"
            ));
        }
        let mut t = [0u8; 16];
        for (i, b) in t.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        // The first three groups are little-endian in AD's bytes.
        let mut b = t;
        b[..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        Ok(Self(b))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02x}"))
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// A security identifier, `S-1-5-21-…`, read from AD's binary form.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sid(String);

impl Sid {
    /// From the binary form: revision 1, a sub-authority count ≤ 15, a 48-bit big-endian
    /// authority, then that many 32-bit little-endian sub-authorities, nothing after.
    pub fn from_bytes(b: &[u8]) -> Result<Self, String> {
        let (&rev, rest) = b.split_first().ok_or("an empty SID")?;
        let (&count, rest) = rest.split_first().ok_or("a SID of one byte")?;
        if rev != 1 {
            return Err(format!("SID revision {rev}; only revision 1 exists"));
        }
        if count > 15 {
            return Err(format!("{count} sub-authorities; a SID has at most 15"));
        }
        if rest.len() != 6 + 4 * usize::from(count) {
            return Err(format!(
                "a SID with {count} sub-authorities is {} bytes, this one is {}",
                8 + 4 * usize::from(count),
                b.len()
            ));
        }
        let authority = rest[..6]
            .iter()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
        let mut s = format!("S-1-{authority}");
        for sub in rest[6..].chunks_exact(4) {
            let v = u32::from_le_bytes([sub[0], sub[1], sub[2], sub[3]]);
            s.push_str(&format!("-{v}"));
        }
        Ok(Self(s))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.0)
    }
}

/// The values of one attribute in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Values {
    /// The attribute's values as sent (the whole list, for an ordinary attribute).
    pub values: Vec<Vec<u8>>,
    /// Linked-attribute values added since the cookie (`;range=1-1`).
    pub added: Vec<Vec<u8>>,
    /// Linked-attribute values removed since the cookie (`;range=0-0`).
    pub removed: Vec<Vec<u8>>,
}

/// One checked entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `objectGUID`: it never changes on rename or move.
    pub guid: Guid,
    /// `objectSid`, for security principals.
    pub sid: Option<Sid>,
    /// The DN without the extended `<GUID=…>;<SID=…>;` prefix.
    pub dn: String,
    /// A tombstone (`isDeleted: TRUE`).
    pub deleted: bool,
    /// Attribute values by lower-case name, without `objectGUID`, `objectSid`, `isDeleted`.
    pub attrs: BTreeMap<String, Values>,
}

/// Why an entry of a DC's answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The entry's DN as sent (cut to [`MAX_DN`]).
    pub dn: String,
    /// The attribute at fault, if one is.
    pub attribute: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attribute {
            Some(a) => write!(f, "{}: attribute {a}: {}", self.dn, self.message),
            None => write!(f, "{}: {}", self.dn, self.message),
        }
    }
}

impl std::error::Error for EntryError {}

impl Entry {
    /// Checks one entry of an answer. ldap3 puts values that are not UTF-8 in `bin_attrs`
    /// and the rest in `attrs`; both are read as bytes here.
    pub fn from_search(e: &SearchEntry) -> Result<Self, EntryError> {
        let shown_dn: String = e.dn.chars().take(MAX_DN).collect();
        let err = |attribute: Option<&str>, message: String| EntryError {
            dn: shown_dn.clone(),
            attribute: attribute.map(str::to_owned),
            message,
        };
        if e.dn.len() > MAX_DN {
            return Err(err(None, format!("the DN is over {MAX_DN} bytes")));
        }
        let (dn_guid, dn) = strip_extended(&e.dn).map_err(|m| err(None, m))?;
        let mut attrs: BTreeMap<String, Values> = BTreeMap::new();
        let mut guid = None;
        let mut sid = None;
        let mut deleted = false;
        let text = e
            .attrs
            .iter()
            .map(|(k, v)| (k, v.iter().map(|s| s.as_bytes()).collect::<Vec<_>>()));
        let bin = e
            .bin_attrs
            .iter()
            .map(|(k, v)| (k, v.iter().map(Vec::as_slice).collect::<Vec<_>>()));
        for (name, vals) in text.chain(bin) {
            if vals.len() > MAX_VALUES {
                return Err(err(
                    Some(name),
                    format!("{} values; at most {MAX_VALUES} are read", vals.len()),
                ));
            }
            if let Some(v) = vals.iter().find(|v| v.len() > MAX_VALUE) {
                return Err(err(
                    Some(name),
                    format!("a value of {} bytes; at most {MAX_VALUE} are read", v.len()),
                ));
            }
            let lower = name.to_ascii_lowercase();
            let (base, range) = match lower.split_once(";range=") {
                Some((b, r)) => (b.to_owned(), Some(r.to_owned())),
                None => (lower, None),
            };
            let one = |what: &str| -> Result<&[u8], EntryError> {
                match vals.as_slice() {
                    [v] => Ok(v),
                    _ => Err(err(
                        Some(name),
                        format!("{what} must have exactly one value, got {}", vals.len()),
                    )),
                }
            };
            match (base.as_str(), range.as_deref()) {
                ("objectguid", None) => {
                    guid = Some(Guid::from_bytes(one("objectGUID")?).map_err(|m| err(Some(name), m))?)
                }
                ("objectsid", None) => {
                    sid = Some(Sid::from_bytes(one("objectSid")?).map_err(|m| err(Some(name), m))?)
                }
                // Cleared (no values): the object was restored from the recycle bin, and a
                // DirSync delta says so with an empty isDeleted.
                ("isdeleted", None) if vals.is_empty() => deleted = false,
                ("isdeleted", None) => deleted = one("isDeleted")?.eq_ignore_ascii_case(b"TRUE"),
                (_, None) => {
                    attrs.entry(base).or_default().values =
                        vals.iter().map(|v| v.to_vec()).collect()
                }
                (_, Some("1-1")) => {
                    attrs.entry(base).or_default().added = vals.iter().map(|v| v.to_vec()).collect()
                }
                (_, Some("0-0")) => {
                    attrs.entry(base).or_default().removed =
                        vals.iter().map(|v| v.to_vec()).collect()
                }
                (_, Some(r)) => {
                    return Err(err(
                        Some(name),
                        format!("range {r:?}: only DirSync's incremental 1-1 and 0-0 are read (ranged retrieval is not asked for)"),
                    ))
                }
            }
        }
        let guid = match (guid, dn_guid) {
            (Some(g), Some(d)) if g != d => {
                return Err(err(
                    Some("objectGUID"),
                    format!("{g} differs from the DN's <GUID={d}>"),
                ))
            }
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => return Err(err(None, "no objectGUID: the entry has no anchor".into())),
        };
        Ok(Self {
            guid,
            sid,
            dn,
            deleted,
            attrs,
        })
    }

    /// The first value of an attribute as UTF-8 text, if it has one.
    pub fn text(&self, attr: &str) -> Option<&str> {
        self.attrs
            .get(attr)
            .and_then(|v| v.values.first())
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Splits AD's extended DN (`<GUID=…>;<SID=…>;CN=…`) into the GUID and the plain DN. A DN
/// without the prefix is returned as it is.
fn strip_extended(dn: &str) -> Result<(Option<Guid>, String), String> {
    let mut rest = dn;
    let mut guid = None;
    while let Some(tail) = rest.strip_prefix('<') {
        let (part, after) = tail
            .split_once('>')
            .ok_or_else(|| "an extended DN part without its closing '>'".to_owned())?;
        if let Some(g) = part.strip_prefix("GUID=") {
            guid = Some(Guid::parse(g)?);
        }
        rest = after.strip_prefix(';').unwrap_or(after);
    }
    Ok((guid, rest.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const GUID_BYTES: [u8; 16] = [
        0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];
    const GUID_TEXT: &str = "00112233-4455-6677-8899-aabbccddeeff";

    fn entry(dn: &str, text: &[(&str, &[&str])], bin: &[(&str, &[&[u8]])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: text
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: bin
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|b| b.to_vec()).collect()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn guids_round_trip_in_ads_mixed_byte_order() {
        let g = Guid::from_bytes(&GUID_BYTES).expect("16 bytes");
        assert_eq!(g.to_string(), GUID_TEXT);
        assert_eq!(Guid::parse(GUID_TEXT).expect("text"), g);
        assert!(Guid::from_bytes(&GUID_BYTES[..15])
            .expect_err("refused")
            .contains("15"));
        assert!(Guid::parse("00112233-4455-6677-8899-aabbccddeef").is_err());
        assert!(Guid::parse("0011223g-4455-6677-8899-aabbccddeeff").is_err());
    }

    #[test]
    fn sids_read_and_refuse_bad_lengths() {
        // S-1-5-21-1-2-3-1104
        let mut b = vec![1, 5, 0, 0, 0, 0, 0, 5];
        for v in [21u32, 1, 2, 3, 1104] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            Sid::from_bytes(&b).expect("sid").as_str(),
            "S-1-5-21-1-2-3-1104"
        );
        assert!(Sid::from_bytes(&b[..b.len() - 1])
            .expect_err("refused")
            .contains("is 28 bytes"));
        let mut bad = b.clone();
        bad[0] = 2;
        assert!(Sid::from_bytes(&bad)
            .expect_err("refused")
            .contains("revision 2"));
        bad = b.clone();
        bad[1] = 16;
        assert!(Sid::from_bytes(&bad)
            .expect_err("refused")
            .contains("at most 15"));
        assert!(Sid::from_bytes(&[]).is_err());
    }

    #[test]
    fn an_extended_dn_gives_the_plain_dn_and_must_agree_with_objectguid() {
        let dn = format!("<GUID={GUID_TEXT}>;<SID=S-1-5-21-1>;CN=alice,CN=Users,DC=lab");
        let e = Entry::from_search(&entry(
            &dn,
            &[
                ("userPrincipalName", &["alice@lab"]),
                ("member;range=1-1", &["CN=a"]),
                ("member;range=0-0", &["CN=b"]),
            ],
            &[("objectGUID", &[&GUID_BYTES])],
        ))
        .expect("valid");
        assert_eq!(e.dn, "CN=alice,CN=Users,DC=lab");
        assert_eq!(e.guid.to_string(), GUID_TEXT);
        assert_eq!(e.text("userprincipalname"), Some("alice@lab"));
        assert_eq!(e.attrs["member"].added, vec![b"CN=a".to_vec()]);
        assert_eq!(e.attrs["member"].removed, vec![b"CN=b".to_vec()]);
        assert!(!e.deleted);

        let mut other = GUID_BYTES;
        other[0] ^= 1;
        let bad = Entry::from_search(&entry(&dn, &[], &[("objectGUID", &[&other])]))
            .expect_err("GUIDs disagree");
        assert_eq!(bad.attribute.as_deref(), Some("objectGUID"));
        assert!(bad.message.contains("differs from the DN's"), "{bad}");
    }

    #[test]
    fn a_cleared_is_deleted_is_a_restored_object() {
        let e = Entry::from_search(&entry(
            "CN=probe,OU=Staff,DC=lab",
            &[("isDeleted", &[])],
            &[("objectGUID", &[&GUID_BYTES])],
        ))
        .expect("valid");
        assert!(!e.deleted);
    }

    #[test]
    fn a_tombstone_is_seen() {
        let e = Entry::from_search(&entry(
            "CN=probe\\0ADEL:x,CN=Deleted Objects,DC=lab",
            &[("isDeleted", &["TRUE"])],
            &[("objectGUID", &[&GUID_BYTES])],
        ))
        .expect("valid");
        assert!(e.deleted);
        assert!(!e.attrs.contains_key("isdeleted"));
    }

    #[test]
    fn hostile_entries_are_refused_with_the_dn_and_attribute() {
        let g: &[(&str, &[&[u8]])] = &[("objectGUID", &[&GUID_BYTES])];
        let big = "x".repeat(MAX_VALUE + 1);
        let e = Entry::from_search(&entry("CN=a", &[("description", &[&big])], g))
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!(
                "CN=a: attribute description: a value of {} bytes; at most {MAX_VALUE} are read",
                MAX_VALUE + 1
            )
        );

        let many: Vec<&str> = vec!["v"; MAX_VALUES + 1];
        let e = Entry::from_search(&entry("CN=a", &[("proxyAddresses", &many)], g))
            .expect_err("refused");
        assert!(e.message.contains("5001 values"), "{e}");

        let e = Entry::from_search(&entry("CN=a", &[], &[("objectGUID", &[&GUID_BYTES[..4]])]))
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "CN=a: attribute objectGUID: a GUID is 16 bytes, this one is 4"
        );

        let e = Entry::from_search(&entry(
            "CN=a",
            &[],
            &[("objectGUID", &[&GUID_BYTES, &GUID_BYTES])],
        ))
        .expect_err("refused");
        assert!(e.message.contains("exactly one value, got 2"), "{e}");

        let e = Entry::from_search(&entry("CN=a", &[], &[("objectSid", &[&[1, 1, 0]])]))
            .expect_err("refused");
        assert_eq!(e.attribute.as_deref(), Some("objectSid"));

        let e = Entry::from_search(&entry("CN=a", &[], &[])).expect_err("refused");
        assert!(e.message.contains("no anchor"), "{e}");

        let e = Entry::from_search(&entry("CN=a", &[("member;range=0-1499", &["x"])], g))
            .expect_err("refused");
        assert!(e.message.contains("only DirSync's incremental"), "{e}");

        let e = Entry::from_search(&entry("<GUID=zz>;CN=a", &[], g)).expect_err("refused");
        assert!(e.message.contains("is not a GUID"), "{e}");

        let long = format!("CN={}", "a".repeat(MAX_DN));
        let e = Entry::from_search(&entry(&long, &[], g)).expect_err("refused");
        assert!(e.message.contains("DN is over"), "{e}");
        assert_eq!(e.dn.chars().count(), MAX_DN);
    }
}
