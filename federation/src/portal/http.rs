//! HTTP plumbing of the sign-in side: the security headers of every page, plain answers
//! (redirect, error page, 413/408), cookies, query parameters and bounded body reading.
//! It must never read a body past its bound or time, nor leave a copy of a secret body
//! or cookie value behind where it can avoid it.

use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Request, Response, StatusCode};
use sha2::Digest;
use zeroize::Zeroizing;

/// An answer the portal (or a mounted application) sends.
pub type Resp = Response<Full<Bytes>>;

use super::{pages, Portal, SSO_COOKIE};

pub(super) fn csp_hash(s: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
    )
}

/// `scheme://host[:port]` of an absolute URL.
pub(super) fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

impl Portal {
    /// An HTML page with the portal's security headers; `form_action` is the page's
    /// CSP `form-action` source (`'self'`, an origin, or `'none'`).
    pub fn html(&self, status: StatusCode, body: String, form_action: &str) -> Resp {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
        let csp = format!(
            "default-src 'none'; {}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
            self.csp_hashes
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert("content-security-policy", v);
        }
        r
    }
    /// A source that spent its budget for sign-in work without a session: a short answer
    /// that costs nothing to make.
    pub(super) fn too_many_requests(&self) -> Resp {
        let mut r = self.error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many sign-in requests came from your network. Wait a moment, then try again.",
        );
        if let Ok(v) = HeaderValue::from_str(&self.anonymous.retry_after().to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        r
    }

    /// A message page with `status`, its title and text.
    pub fn error_page(&self, status: StatusCode, title: &str, text: &str) -> Resp {
        self.html(status, pages::message(title, text, None), "'none'")
    }

    /// A 303 redirect to `location`, which the caller has checked.
    pub fn redirect(location: &str) -> Resp {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers_mut().insert(LOCATION, v);
        }
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }

    pub(super) fn xml(body: String) -> Resp {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/samlmetadata+xml"),
        );
        r.headers_mut().insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=3600"),
        );
        r
    }

    /// A 400 page saying what was wrong with the request.
    pub fn bad_request(&self, text: &str) -> Resp {
        self.error_page(
            StatusCode::BAD_REQUEST,
            "This request cannot be handled",
            text,
        )
    }

    // ---- metadata -------------------------------------------------------------------
}

/// A cookie's value from the request.
pub fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    for h in req.headers().get_all(COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name && !v.is_empty() && v.len() <= 128 {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// The SSO cookie's value, in a buffer zeroized when dropped (it is as good as the
/// password for the session's lifetime).
pub(super) fn sso_cookie(req: &Request<Incoming>) -> Option<Zeroizing<String>> {
    cookie(req, SSO_COOKIE).map(Zeroizing::new)
}

/// Sets a `__Host-` style cookie (Secure, HttpOnly, SameSite=Lax, Path=/) on `r`.
pub fn set_cookie(r: &mut Resp, name: &str, value: &str, max_age: Option<u64>) {
    // Zeroized when done: it may carry the SSO cookie value (the header keeps its own copy).
    let mut c = Zeroizing::new(format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    ));
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    let Ok(v) = HeaderValue::from_str(&c) else {
        return;
    };
    // One Set-Cookie per name: a later call replaces an earlier one.
    let prefix = format!("{name}=");
    let others: Vec<HeaderValue> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter(|h| !h.as_bytes().starts_with(prefix.as_bytes()))
        .cloned()
        .collect();
    let h = r.headers_mut();
    h.remove(SET_COOKIE);
    for o in others {
        h.append(SET_COOKIE, o);
    }
    h.append(SET_COOKIE, v);
}

/// One parameter of the request's query string, decoded.
pub fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    if q.len() > 16 * 1024 {
        return None;
    }
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub(super) fn too_large() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(b"request body too large\n")));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r
}

pub(super) fn too_slow() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(b"request body too slow\n")));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r
}

/// Reads a body that holds a secret (the sign-in form) into one zeroizing buffer of
/// `max` bytes, allocated up front so that it never moves (a reallocation would leave the
/// old copy behind). Each chunk hyper hands over is wiped once copied when nothing else
/// holds it; what hyper's own read buffer keeps is out of reach.
pub(super) async fn read_secret_body(
    req: Request<Incoming>,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, Resp> {
    use zeroize::Zeroize;
    pub(super) fn wipe(b: Bytes) {
        if let Ok(mut m) = b.try_into_mut() {
            m.as_mut().zeroize();
        }
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        // The same answer as read_body, including its bounded drain.
        return read_body(req, max)
            .await
            .map(|_| Zeroizing::new(Vec::new()));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(max));
    let mut body = req.into_body();
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(too_large());
            };
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    wipe(data);
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
                wipe(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(r)) => Err(r),
        Err(_) => Err(too_slow()),
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` and `%XX`) into a
/// zeroizing buffer sized up front. `form_urlencoded` would leave unzeroized
/// intermediate copies for values with `+` or `%XX`: a password nearly always has one.
pub(super) fn form_decode(s: &[u8]) -> Zeroizing<Vec<u8>> {
    pub(super) fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|b| hex(*b)),
                s.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                // Not an escape: kept as it is, as form_urlencoded does.
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The fields of a URL-encoded form, names and values decoded into zeroizing buffers.
pub(super) fn form_fields(
    body: &[u8],
) -> impl Iterator<Item = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>)> + '_ {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (form_decode(k), form_decode(v))
        })
}

/// Reads a body of at most `max` bytes; a larger one gets 413.
pub async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        // Read and drop a moderately oversized body (bounded, with the same timeout) so
        // that the 413 is not lost to a connection reset; beyond 1 MiB answer at once.
        if n <= 1024 * 1024 {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                Limited::new(req.into_body(), 1024 * 1024).collect(),
            )
            .await;
        }
        return Err(too_large());
    }
    match tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(too_slow()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_like_form_urlencoded_into_zeroizing_buffers() {
        let body = b"flow=a%2Bb&csrf=&username=carla%40x.test&password=p+w%C3%A9%25%zz%4&odd&=v";
        let ours: Vec<(Vec<u8>, Vec<u8>)> = form_fields(body)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let theirs: Vec<(Vec<u8>, Vec<u8>)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours[3].1, "p wé%%zz%4".as_bytes());
        assert_eq!(&form_decode(b"%41%42%43")[..], b"ABC");
    }

    #[test]
    fn a_pages_form_may_post_only_to_the_origin_of_the_url_it_names() {
        assert_eq!(
            origin("https://sp.test:8443/acs?x=1"),
            "https://sp.test:8443"
        );
        assert_eq!(origin("https://sp.test"), "https://sp.test");
        assert_eq!(origin("http://sp.test/"), "http://sp.test");
        // No scheme: cut at the first slash all the same.
        assert_eq!(origin("sp.test/acs"), "sp.test");
    }
}
