//! Causeway's SAML stack, pure: a bounded XML reader, a writer that emits canonical XML,
//! exclusive c14n, XML-DSig, SAML 2.0 messages, bindings and metadata, and SAML 1.1 with
//! the WS-Fed RSTR. It must never do I/O (no tokio, no hyper, no store) nor trust a URL
//! from a message; every parser here reads outside input and is fuzzed (`fuzz/`).
#![forbid(unsafe_code)]

pub mod saml2;
pub mod url;
pub mod wsfed;
pub mod xml;
