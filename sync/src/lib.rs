//! Causeway's sync job: LDAP import from AD and OpenLDAP, filters, attribute mapping,
//! export to the endpoint, and password hash sync. It must never send a raw NT hash off
//! the premises (only salted PBKDF2 verifiers), nor lose or duplicate a change on a crash.
//!
//! The rooms:
//! - [`config`]: the TOML file, its connectors and safety settings, with located errors.
//! - [`connect`]: reaching a connector's servers (failover, TLS, bind, root DSE).
//! - [`check`]: `causeway sync check`, the questions a first run would fail on.
//! - [`ad`]: the Active Directory connector — the DirSync control, checked entries, and
//!   mapping an object's attributes to what the endpoint stores.
//! - [`openldap`]: the OpenLDAP connector — an RFC 4533 content-sync pass on `entryUUID`.
//! - [`filter`]: a connector's LDAP filter, evaluated locally on whole objects.
//! - [`scope`]: whether an object is in a connector's scope, and which rule decided.
//! - [`space`]: the connector space, each object's whole attribute set with its cookie.
//! - [`run`]: the import stage of a run (`causeway sync import`).
//! - [`plan`]: what a run would export, and the deletion threshold (`causeway sync plan`).
//! - [`hashsync`]: password hash sync — NT hashes to verifiers on premises, only changes pushed.
//!
//! Still to come (the sync issues): staging mode and approval of a stopped run, export
//! to the endpoint's ingestion API with an export watermark committed after
//! acknowledgement, and password hash sync over MS-DRSR.
#![forbid(unsafe_code)]

pub mod ad;
pub mod check;
pub mod config;
pub mod connect;
pub mod cycle;
pub mod export;
pub mod filter;
pub mod hashsync;
pub mod mapping;
pub mod openldap;
pub mod plan;
pub mod run;
pub mod scope;
pub mod space;
