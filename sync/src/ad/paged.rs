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

/// Why a page could not be read.
#[derive(Debug)]
pub enum PageError {
    /// The server did not answer within the timeout.
    Timeout(std::time::Duration),
    /// The connection failed.
    Ldap(String),
    /// The server refused the search.
    Refused {
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic.
        text: String,
    },
    /// The paging control is missing or malformed, or the server would loop.
    Paging(String),
}

/// One paged subtree search, read a page per [`Pager::next`] call: the one loop every
/// paged read here (a full import, the `uSNChanged` sweep, OpenLDAP's fallback) runs, so
/// each keeps only what it does with a page.
#[derive(Debug)]
pub struct Pager {
    size: i32,
    cookie: Vec<u8>,
    done: bool,
}

impl Pager {
    /// A search in pages of `size` entries.
    pub fn new(size: i32) -> Self {
        Self {
            size,
            cookie: Vec::new(),
            done: false,
        }
    }

    /// The next page's entries (referrals included, as the server sent them), or `None`
    /// once the server said the search is complete. `extra` controls go with the paging
    /// control on every request.
    pub async fn next(
        &mut self,
        ldap: &mut ldap3::Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
        extra: &[RawControl],
        timeout: std::time::Duration,
    ) -> Result<Option<Vec<ldap3::ResultEntry>>, PageError> {
        if self.done {
            return Ok(None);
        }
        let mut controls = vec![request(self.size, &self.cookie)];
        controls.extend(extra.iter().cloned());
        let ldap3::SearchResult(entries, res) = tokio::time::timeout(
            timeout,
            ldap.with_controls(controls).search(
                base,
                ldap3::Scope::Subtree,
                filter,
                attrs.to_vec(),
            ),
        )
        .await
        .map_err(|_| PageError::Timeout(timeout))?
        .map_err(|e| PageError::Ldap(e.to_string()))?;
        if res.rc != 0 {
            return Err(PageError::Refused {
                rc: res.rc,
                text: res.text,
            });
        }
        match next_cookie(&res.ctrls).map_err(PageError::Paging)? {
            // An empty page that leads back to itself would be asked for forever.
            Some(c) if entries.is_empty() && c == self.cookie => {
                return Err(PageError::Paging(
                    "the paged search returned an empty page with the same cookie".into(),
                ))
            }
            Some(c) => self.cookie = c,
            None => self.done = true,
        }
        Ok(Some(entries))
    }
}
