//! Causeway's federation endpoint: the acceptor (one TLS port, ALPN routing to the handlers
//! it is given), the agent hub and smart lockout, sessions and sealed sign-in state, the
//! sign-in methods (PTA, PHS), the sync ingestion API, HTTP, and the portal (login, SAML
//! 2.0 IdP, WS-Federation, logout, pages, mounted applications). Protocol messages come
//! from `causeway-saml`, state from `causeway-store`. It must never open a redirect to an
//! unregistered URL, nor log a password, cookie value or key.
#![forbid(unsafe_code)]

pub mod acceptor;
pub mod apps;
pub mod audit;
pub mod client_addr;
pub mod hub;
pub mod ingest;
mod key_file;
pub mod metrics;
pub mod oidc_clients;
pub mod portal;
pub mod session;
pub mod signin;
pub mod web;

/// Locks a mutex, taking the data even if a thread panicked while holding it: every table
/// guarded this way stays consistent between statements, so poisoning carries no meaning.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
