//! Causeway's certificate authority and key rollover: enrollment tokens, CSR issuance,
//! renewal and revocation of agent certificates, token-signing key sets, rustls configs.
//! It must never write a private key to a file others can read, nor log one.
//!
//! Built in the pass-through-authentication issue; this crate holds no code yet.
#![forbid(unsafe_code)]
