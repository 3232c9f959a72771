//! Causeway's certificate authority: its CA key and certificate, agent certificates issued
//! from CSRs (renewal) and the rustls configs that use them; agent ids and the errors of
//! enrollment. The agent registry (tokens, agents, revocation) is `causeway-store`'s. It must
//! never write a private key to a file others can read, nor log a key or token.
#![forbid(unsafe_code)]

mod ca;
mod error;
mod id;
pub mod pinned;
mod request;
pub mod signing;
mod text;
mod tls;
mod util;

pub use ca::{
    renewal_due, Ca, IssuedCert, IssuedKeyAndCert, CA_CERT_FILE, CA_COMMON_NAME, CA_KEY_FILE,
    DEFAULT_AGENT_CERT_VALIDITY, MAX_AGENT_CERT_VALIDITY, MAX_CSR_PEM_LEN, MIN_AGENT_CERT_VALIDITY,
    REGISTRY_FILE,
};
pub use error::{CertsError, CsrError, DbError, TokenError};
pub use id::{AgentId, MalformedAgentId};
pub use request::new_key_and_csr;
pub use tls::{
    agent_client_config, certified_key, load_cert_files, server_config,
    server_config_with_resolver, trusting_only, LoadedCert,
};
pub use util::{
    fingerprint_of_der, from_unix_secs, host_name, is_fingerprint, unix_secs, validity_of_pem,
};

#[cfg(test)]
mod tests {
    /// The hub shares these across tasks and the blocking pool.
    #[test]
    fn shared_types_are_send_and_sync() {
        fn both<T: Send + Sync>() {}
        both::<crate::Ca>();
        both::<crate::IssuedKeyAndCert>();
        both::<crate::CertsError>();
    }
}
