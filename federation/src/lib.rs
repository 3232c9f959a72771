//! Causeway's federation endpoint: HTTP server, sign-in page and SSO session, SAML 2.0 IdP,
//! WS-Federation, metadata, the agent hub and the directory store. It must never open a
//! redirect to an unregistered URL, nor log a password, cookie value or key.
#![forbid(unsafe_code)]

pub mod apps;
pub mod hub;
pub mod portal;
pub mod saml;
pub mod session;
pub mod signin;
pub mod store;
pub mod web;
pub mod wsfed;
pub mod xml;
