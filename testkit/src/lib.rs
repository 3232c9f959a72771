//! Causeway's test kit: what the other side of a sign-in does, for the demo applications
//! and the tests — the relying party's check of a SAML Response, throwaway signing keys,
//! and self-cleaning temporary directories. Nothing here is part of the identity provider; the IdP must never call it.
#![forbid(unsafe_code)]

pub mod sp;
mod temp_dir;

pub use causeway_saml::xml::test_key;
pub use sp::{validate_response, ValidatedAssertion};
pub use temp_dir::TempDir;
