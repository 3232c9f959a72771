//! Id newtypes, so that no trait takes an id as a bare string. [`causeway_certs::AgentId`]
//! stays in `causeway-certs`: it is the subject CN of the certificates the CA issues, and
//! the CA must not depend on the store.

use std::fmt;

pub use causeway_certs::AgentId;

/// A user's immutable id: base64 of 16 bytes (for synced users, of `ms-DS-ConsistencyGuid`
/// or `objectGUID`; for cloud-only users, random). The anchor sync matches on and the SAML
/// persistent NameID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImmutableId(String);

impl ImmutableId {
    /// A fresh random id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).expect("OS random generator");
        Self::from_guid_bytes(b)
    }

    /// The id of 16 directory bytes (`ms-DS-ConsistencyGuid` or `objectGUID`).
    pub fn from_guid_bytes(b: [u8; 16]) -> Self {
        use base64::Engine;
        Self(base64::engine::general_purpose::STANDARD.encode(b))
    }

    /// An id as a backend stored it (trusted: only stores call this).
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImmutableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
