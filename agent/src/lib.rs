//! Causeway's on-premises agent: dials out to the endpoint's hub, opens sealed credentials
//! and checks them against Active Directory with an LDAP bind. It must never listen on a
//! port, never report a directory outage as a wrong password, and never keep a password
//! longer than the bind needs it.
#![forbid(unsafe_code)]

pub mod ad;
pub mod channel;
pub mod config;
pub mod connect;
pub mod enroll;
pub mod runtime;
pub mod state;
pub mod validator;
