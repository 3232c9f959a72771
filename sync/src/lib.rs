//! Causeway's sync job: LDAP import from AD and OpenLDAP, filters, attribute mapping,
//! export to the endpoint, and password hash sync. It must never send a raw NT hash off
//! the premises (only salted PBKDF2 verifiers), nor lose or duplicate a change on a crash.
//!
//! Built in the sync issue; this crate holds no code yet.
#![forbid(unsafe_code)]
