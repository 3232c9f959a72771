//! The paged-results control (RFC 2696, `1.2.840.113556.1.4.319`) written and read by hand:
//! ldap3's parser of the response value panics on a malformed one, and the value comes
//! from the directory. Every length is checked; the cookie is bounded.

use ldap3::controls::{Control, RawControl};

/// `LDAP_PAGED_RESULT_OID_STRING`.
pub const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// The largest paging cookie accepted from a DC (Samba's are a few dozen bytes).
pub const MAX_COOKIE: usize = 4096;

/// The request control: SEQUENCE { INTEGER size, OCTET STRING cookie }.
pub fn request(size: i32, cookie: &[u8]) -> RawControl {
    RawControl::from(ldap3::controls::PagedResults {
        size,
        cookie: cookie.to_vec(),
    })
}

/// The cookie to send for the next page, `None` when the DC says the search is complete.
pub fn next_cookie(ctrls: &[Control]) -> Result<Option<Vec<u8>>, String> {
    let raw = ctrls
        .iter()
        .map(|c| &c.1)
        .find(|c| c.ctype == PAGED_RESULTS_OID)
        .ok_or("no paged-results control in the answer")?;
    let val = raw
        .val
        .as_deref()
        .ok_or("paged-results control without a value")?;
    let cookie = parse_value(val)?;
    Ok((!cookie.is_empty()).then(|| cookie.to_vec()))
}

/// The cookie of a paged-results response value (the size estimate is ignored).
pub fn parse_value(val: &[u8]) -> Result<&[u8], String> {
    let (tag, body, rest) = read_tlv(val)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err("not exactly one SEQUENCE".into());
    }
    let (tag, _size, body) = read_tlv(body)?;
    if tag != 0x02 {
        return Err("the size is not an INTEGER".into());
    }
    let (tag, cookie, rest) = read_tlv(body)?;
    if tag != 0x04 || !rest.is_empty() {
        return Err("the cookie is not one OCTET STRING".into());
    }
    if cookie.len() > MAX_COOKIE {
        return Err(format!(
            "a {}-byte cookie (at most {MAX_COOKIE})",
            cookie.len()
        ));
    }
    Ok(cookie)
}

/// One BER TLV with a definite length: (tag, value, what follows).
fn read_tlv(b: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let (&tag, b) = b.split_first().ok_or("truncated before a tag")?;
    let (&first, b) = b.split_first().ok_or("truncated before a length")?;
    let (len, b) = if first < 0x80 {
        (usize::from(first), b)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || b.len() < n {
            return Err("a length that is indefinite, too long or truncated".into());
        }
        let len = b[..n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, &b[n..])
    };
    if b.len() < len {
        return Err(format!("a {len}-byte value with {} bytes left", b.len()));
    }
    Ok((tag, &b[..len], &b[len..]))
}
