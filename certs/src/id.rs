//! Agent ids: `agt-` and 16 lowercase hex digits (8 random bytes).

use std::fmt;
use std::str::FromStr;

use crate::text::excerpt;

pub(crate) const PREFIX: &str = "agt-";
pub(crate) const HEX_LEN: usize = 16;

/// A string that is not an agent id (quoted as a bounded excerpt).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an agent id (expected \"agt-\" and 16 lowercase hex digits, as `causeway certs list` shows)")]
pub struct MalformedAgentId(String);

/// An agent's id, as it appears in its certificate's subject CN, in the registry and in
/// the CLI. Only [`AgentId::generate`] and [`AgentId::parse`] make one, so every value is
/// well-formed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// An id from 8 random bytes (see `AgentId::generate` in `util`, which draws them).
    pub(crate) fn from_random(bytes: [u8; HEX_LEN / 2]) -> Self {
        Self(format!("{PREFIX}{}", hex::encode(bytes)))
    }

    /// Parses an id strictly: `agt-` and exactly 16 lowercase hex digits, nothing around.
    pub fn parse(s: &str) -> Result<Self, MalformedAgentId> {
        let ok = s.len() == PREFIX.len() + HEX_LEN
            && s.starts_with(PREFIX)
            && s[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedAgentId(excerpt(s, 40)))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.0)
    }
}

impl FromStr for AgentId {
    type Err = MalformedAgentId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for AgentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = AgentId::generate().expect("random");
        let b = AgentId::generate().expect("random");
        assert_ne!(a, b);
        assert_eq!(AgentId::parse(a.as_str()).expect("parses"), a);
        assert_eq!(a.as_str().len(), 20);
        assert!(a.as_str().starts_with("agt-"));
    }

    #[test]
    fn parse_is_strict() {
        assert!(AgentId::parse("agt-0123456789abcdef").is_ok());
        for bad in [
            "",
            "agt-",
            "agt-0123456789abcde",
            "agt-0123456789abcdef0",
            "agt-0123456789ABCDEF",
            "AGT-0123456789abcdef",
            "agt_0123456789abcdef",
            " agt-0123456789abcdef",
            "agt-0123456789abcdeg",
            "agt-0123456789abcdé",
        ] {
            assert!(
                matches!(AgentId::parse(bad), Err(MalformedAgentId(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_quotes_only_a_bounded_excerpt() {
        let long = "x".repeat(10_000);
        let msg = AgentId::parse(&long).expect_err("bad").to_string();
        assert!(msg.len() < 300, "{msg}");
    }
}
