//! The HTTP-Redirect and HTTP-POST bindings, inbound: a SAML message out of a query
//! string (base64 of raw DEFLATE, with an optional detached signature) or a form body
//! (base64). Every size is bounded before any work is done, and inflation stops at
//! [`MAX_MESSAGE_BYTES`], so a deflate bomb costs at most that much.

use std::io::Read;

use base64::Engine;

use crate::xml::MAX_MESSAGE_BYTES;

/// Largest encoded message parameter accepted (the base64 of a [`MAX_MESSAGE_BYTES`]
/// message fits).
pub const MAX_ENCODED: usize = 96 * 1024;
/// Largest RelayState accepted. SAML bindings §3.4.3 says 80 bytes, but real SPs send
/// more (encoded return URLs); it travels sealed in the sign-in flow's URL, which this
/// bound keeps well within what browsers and proxies carry.
pub const MAX_RELAY_STATE: usize = 2048;

/// Why a binding could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// No SAMLRequest or SAMLResponse.
    #[error("the request carries no SAMLRequest or SAMLResponse parameter")]
    Missing,
    /// A parameter appears twice.
    #[error("the parameter {0} appears more than once")]
    Duplicate(&'static str),
    /// A parameter is too large.
    #[error("the parameter {0} is too large")]
    TooLarge(&'static str),
    /// Not valid base64.
    #[error("{0} is not valid base64")]
    Base64(&'static str),
    /// Not valid DEFLATE data.
    #[error("SAMLRequest is not valid DEFLATE data (the HTTP-Redirect binding compresses it)")]
    Deflate,
    /// Inflates to too much.
    #[error("SAMLRequest inflates to more than {MAX_MESSAGE_BYTES} bytes")]
    Bomb,
    /// Not UTF-8 / not percent-encoded properly.
    #[error("{0} is not valid UTF-8 text")]
    Encoding(&'static str),
    /// RelayState longer than [`MAX_RELAY_STATE`] bytes (decoded).
    #[error(
        "RelayState is {0} bytes long; at most {MAX_RELAY_STATE} are accepted (SAML asks for 80)"
    )]
    RelayStateTooLong(usize),
    /// A signature without an algorithm or the other way round.
    #[error("Signature and SigAlg must come together")]
    HalfSigned,
}

/// A detached signature of the HTTP-Redirect binding.
#[derive(Debug, Clone)]
pub struct RedirectSignature {
    /// SigAlg (an XML-DSig algorithm URI).
    pub alg: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The exact bytes that were signed (`SAMLRequest=…&RelayState=…&SigAlg=…`, as sent).
    pub signed: Vec<u8>,
}

/// A SAML message as received.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// Whether it is a request (SAMLRequest) or a response (SAMLResponse).
    pub is_request: bool,
    /// The XML.
    pub xml: String,
    /// RelayState, if any.
    pub relay_state: Option<String>,
    /// The detached signature (Redirect binding only).
    pub redirect_signature: Option<RedirectSignature>,
    /// Whether it came over HTTP-Redirect.
    pub redirect: bool,
}

fn b64(name: &'static str, v: &str) -> Result<Vec<u8>, BindingError> {
    let clean: String = v.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean.as_bytes())
        .map_err(|_| BindingError::Base64(name))
}

fn utf8(name: &'static str, b: Vec<u8>) -> Result<String, BindingError> {
    String::from_utf8(b).map_err(|_| BindingError::Encoding(name))
}

fn inflate(data: &[u8]) -> Result<String, BindingError> {
    let mut out = Vec::new();
    let limit = u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX) + 1;
    flate2::read::DeflateDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| BindingError::Deflate)?;
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(BindingError::Bomb);
    }
    utf8("SAMLRequest", out)
}

fn decode_component(name: &'static str, raw: &str) -> Result<String, BindingError> {
    let bytes: Vec<u8> = form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned().into_bytes())
        .unwrap_or_default();
    utf8(name, bytes)
}

/// Reads the HTTP-Redirect binding from a raw query string.
pub fn from_query(raw_query: &str) -> Result<Inbound, BindingError> {
    if raw_query.len() > MAX_ENCODED + 3 * MAX_RELAY_STATE + 4096 {
        return Err(BindingError::TooLarge("query string"));
    }
    let mut msg: Option<(&'static str, &str)> = None;
    let mut relay: Option<&str> = None;
    let mut sig_alg: Option<&str> = None;
    let mut sig: Option<&str> = None;
    for pair in raw_query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "SAMLRequest" | "SAMLResponse" => {
                if msg.is_some() {
                    return Err(BindingError::Duplicate("SAMLRequest"));
                }
                msg = Some((
                    if k == "SAMLRequest" {
                        "SAMLRequest"
                    } else {
                        "SAMLResponse"
                    },
                    v,
                ));
                continue;
            }
            "RelayState" => (&mut relay, "RelayState"),
            "SigAlg" => (&mut sig_alg, "SigAlg"),
            "Signature" => (&mut sig, "Signature"),
            _ => continue,
        };
        if slot.0.is_some() {
            return Err(BindingError::Duplicate(slot.1));
        }
        *slot.0 = Some(v);
    }
    let (name, raw) = msg.ok_or(BindingError::Missing)?;
    if raw.len() > MAX_ENCODED {
        return Err(BindingError::TooLarge(name));
    }
    let decoded = decode_component(name, raw)?;
    let xml = inflate(&b64(name, &decoded)?)?;
    let relay_state = relay
        .map(|r| {
            if r.len() > 3 * MAX_RELAY_STATE {
                return Err(BindingError::TooLarge("RelayState"));
            }
            let d = decode_component("RelayState", r)?;
            if d.len() > MAX_RELAY_STATE {
                return Err(BindingError::RelayStateTooLong(d.len()));
            }
            Ok(d)
        })
        .transpose()?;
    let redirect_signature = match (sig_alg, sig) {
        (None, None) => None,
        (Some(a), Some(s)) => {
            if s.len() > 4096 || a.len() > 512 {
                return Err(BindingError::TooLarge("Signature"));
            }
            let mut signed = format!("{name}={raw}");
            if let Some(r) = relay {
                signed.push_str("&RelayState=");
                signed.push_str(r);
            }
            signed.push_str("&SigAlg=");
            signed.push_str(a);
            Some(RedirectSignature {
                alg: decode_component("SigAlg", a)?,
                signature: b64("Signature", &decode_component("Signature", s)?)?,
                signed: signed.into_bytes(),
            })
        }
        _ => return Err(BindingError::HalfSigned),
    };
    Ok(Inbound {
        is_request: name == "SAMLRequest",
        xml,
        relay_state,
        redirect_signature,
        redirect: true,
    })
}

/// Reads the HTTP-POST binding from an `application/x-www-form-urlencoded` body.
pub fn from_form(body: &[u8]) -> Result<Inbound, BindingError> {
    if body.len() > MAX_ENCODED + 3 * MAX_RELAY_STATE + 4096 {
        return Err(BindingError::TooLarge("form body"));
    }
    let mut msg: Option<(bool, String)> = None;
    let mut relay: Option<String> = None;
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "SAMLRequest" | "SAMLResponse" => {
                if msg.is_some() {
                    return Err(BindingError::Duplicate("SAMLRequest"));
                }
                msg = Some((k == "SAMLRequest", v.into_owned()));
            }
            "RelayState" => {
                if relay.is_some() {
                    return Err(BindingError::Duplicate("RelayState"));
                }
                if v.len() > MAX_RELAY_STATE {
                    return Err(BindingError::RelayStateTooLong(v.len()));
                }
                relay = Some(v.into_owned());
            }
            _ => {}
        }
    }
    let (is_request, raw) = msg.ok_or(BindingError::Missing)?;
    let name = if is_request {
        "SAMLRequest"
    } else {
        "SAMLResponse"
    };
    if raw.len() > MAX_ENCODED {
        return Err(BindingError::TooLarge(name));
    }
    let xml = utf8(name, b64(name, &raw)?)?;
    if xml.len() > MAX_MESSAGE_BYTES {
        return Err(BindingError::TooLarge(name));
    }
    Ok(Inbound {
        is_request,
        xml,
        relay_state: relay,
        redirect_signature: None,
        redirect: false,
    })
}

/// Encodes a message for the HTTP-Redirect binding (raw DEFLATE, base64, URL-encoded).
pub fn deflate_encode(xml: &str) -> String {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(xml.as_bytes());
    let data = e.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn redirect_round_trip_keeps_the_signed_bytes_as_sent() {
        let q = format!(
            "SAMLRequest={}&RelayState={}&SigAlg={}&Signature={}",
            enc(&deflate_encode("<r/>")),
            enc("state 1"),
            enc("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
            enc("AAAA")
        );
        let m = from_query(&q).expect("reads");
        assert_eq!(m.xml, "<r/>");
        assert_eq!(m.relay_state.as_deref(), Some("state 1"));
        let s = m.redirect_signature.expect("signed");
        assert!(String::from_utf8(s.signed)
            .expect("utf8")
            .starts_with("SAMLRequest="));
        assert_eq!(s.signature, vec![0, 0, 0]);
    }

    #[test]
    fn hostile_parameters_are_refused_cheaply() {
        // 100 MB of zeros deflate to about 100 KB.
        use std::io::Write;
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'a'; 1024 * 1024];
        for _ in 0..20 {
            e.write_all(&zeros).expect("write");
        }
        let bomb = base64::engine::general_purpose::STANDARD.encode(e.finish().expect("finish"));
        let started = std::time::Instant::now();
        assert_eq!(
            from_query(&format!("SAMLRequest={}", enc(&bomb))).err(),
            Some(BindingError::Bomb)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(
            from_query("RelayState=x").err(),
            Some(BindingError::Missing)
        );
        assert_eq!(
            from_query("SAMLRequest=%%%").err(),
            Some(BindingError::Base64("SAMLRequest"))
        );
        assert_eq!(
            from_query("SAMLRequest=AAAA").err(),
            Some(BindingError::Deflate)
        );
        assert_eq!(
            from_query("SAMLRequest=a&SAMLRequest=b").err(),
            Some(BindingError::Duplicate("SAMLRequest"))
        );
        assert_eq!(
            from_query(&format!(
                "SAMLRequest={}&SigAlg=x",
                enc(&deflate_encode("<r/>"))
            ))
            .err(),
            Some(BindingError::HalfSigned)
        );
        let big = "A".repeat(MAX_ENCODED + 10);
        assert!(matches!(
            from_query(&format!("SAMLRequest={big}")),
            Err(BindingError::TooLarge(_))
        ));
        assert!(matches!(
            from_form(
                format!("SAMLRequest=PHIvPg%3D%3D&RelayState={}", "x".repeat(5000)).as_bytes()
            ),
            Err(BindingError::RelayStateTooLong(5000))
        ));
        assert_eq!(
            from_query(&format!(
                "SAMLRequest={}&RelayState={}",
                enc(&deflate_encode("<r/>")),
                "y".repeat(MAX_RELAY_STATE + 1)
            ))
            .err()
            .map(|e| e.to_string())
            .as_deref(),
            Some("RelayState is 2049 bytes long; at most 2048 are accepted (SAML asks for 80)")
        );
        assert_eq!(
            from_form(b"SAMLRequest=PHIvPg%3D%3D").expect("ok").xml,
            "<r/>"
        );
    }
}
