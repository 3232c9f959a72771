//! Causeway's sync job: LDAP import from AD and OpenLDAP, filters, attribute mapping,
//! export to the endpoint, and password hash sync. It must never send a raw NT hash off
//! the premises (only salted PBKDF2 verifiers), nor lose or duplicate a change on a crash.
//!
//! Today it holds the configuration file ([`config`]) and the Active Directory connector's
//! reading of a DC's answers ([`ad`]); the
//! connectors' run loops, scoping, mapping, matching, the run planner, export to the
//! endpoint's ingestion API and password hash sync are built on it in the sync issues.
#![forbid(unsafe_code)]

pub mod ad;
pub mod check;
pub mod config;
pub mod connect;
