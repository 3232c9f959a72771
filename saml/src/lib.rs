//! Causeway's SAML stack, pure: bounded XML reader, canonical writer, exclusive c14n,
//! XML-DSig, SAML 2.0 messages, bindings and metadata, SAML 1.1 + WS-Fed RSTR. It must never
//! do I/O (no tokio, hyper or store) nor trust a URL from a message; its parsers are fuzzed.
#![forbid(unsafe_code)]

pub mod saml2;
pub mod url;
pub mod wsfed;
pub mod xml;
