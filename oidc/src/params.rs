//! Bounded parsing of a query string or form body into parameters. The whole input, the
//! number of parameters and each value are bounded before anything is decoded into a
//! map, and a repeated parameter is refused (RFC 6749 §3.1: "parameters MUST NOT be
//! included more than once"), so a hostile request costs one pass over at most
//! [`MAX_INPUT`] bytes.

use std::collections::BTreeMap;

use crate::error::{invalid_request, OAuthError};

/// Most bytes of a query string or form body.
pub const MAX_INPUT: usize = 8 * 1024;
/// Most parameters.
pub const MAX_PARAMS: usize = 32;
/// Most bytes of a parameter's name.
pub const MAX_NAME: usize = 64;

/// Decoded parameters, each present once.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

// Values may be codes, verifiers or secrets: only the names are shown.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` input (a query string or a body).
    pub fn parse(input: &[u8]) -> Result<Self, OAuthError> {
        if input.len() > MAX_INPUT {
            return Err(invalid_request(format!(
                "the request's parameters exceed {MAX_INPUT} bytes"
            )));
        }
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(input) {
            if map.len() >= MAX_PARAMS {
                return Err(invalid_request(format!(
                    "more than {MAX_PARAMS} parameters"
                )));
            }
            if k.len() > MAX_NAME {
                return Err(invalid_request("a parameter name is too long"));
            }
            if map.contains_key(k.as_ref()) {
                return Err(invalid_request(format!(
                    "the parameter {} is given more than once",
                    printable(&k)
                )));
            }
            map.insert(k.into_owned(), v.into_owned());
        }
        Ok(Self(map))
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A parameter of at most `max` bytes without control characters.
    pub fn bounded(&self, name: &str, max: usize) -> Result<Option<&str>, OAuthError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.len() > max => Err(invalid_request(format!(
                "{name} is longer than {max} bytes"
            ))),
            Some(v) if v.chars().any(char::is_control) => Err(invalid_request(format!(
                "{name} contains control characters"
            ))),
            Some(v) => Ok(Some(v)),
        }
    }

    /// A required bounded parameter.
    pub fn required(&self, name: &str, max: usize) -> Result<&str, OAuthError> {
        self.bounded(name, max)?
            .ok_or_else(|| invalid_request(format!("{name} is missing")))
    }

    /// Whether a parameter is present (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A parameter name as it may appear in a description: already bounded by
/// [`MAX_NAME`], with anything but `[a-z0-9_]` replaced.
fn printable(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_oversized_and_too_many_parameters_are_refused_before_use() {
        assert!(Params::parse(b"a=1&b=2").is_ok());
        let e = Params::parse(b"state=1&state=2").expect_err("refused");
        assert_eq!(e.description, "the parameter state is given more than once");
        let big = vec![b'a'; MAX_INPUT + 1];
        assert!(Params::parse(&big).is_err());
        let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=x&")).collect();
        assert!(Params::parse(many.as_bytes()).is_err());
        let p = Params::parse(b"state=abc&nonce=%01").expect("ok");
        assert!(p.bounded("state", 2).is_err());
        assert!(p.bounded("nonce", 10).is_err(), "control character");
        assert_eq!(p.bounded("state", 3).expect("ok"), Some("abc"));
    }

    #[test]
    fn debug_shows_names_only() {
        let p = Params::parse(b"code=SECRETCODE&client_secret=hunter2").expect("ok");
        let d = format!("{p:?}");
        assert!(!d.contains("SECRETCODE") && !d.contains("hunter2"), "{d}");
        assert!(d.contains("client_secret"));
    }
}
