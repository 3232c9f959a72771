//! Applications served beside the portal under a path prefix of their own, on the same
//! origin: the binary's demo SAML applications today, an admin UI later. The portal knows
//! them only through this trait, so their code stays out of the IdP's library.
//!
//! A mount is given the portal's page helpers (the same layout, CSP and cookies) and the
//! published signing keys; requests under its prefix from a browser without a session spend
//! the anonymous budget like every other sign-in page.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::Request;

use super::{Portal, Resp};
use causeway_saml::saml2::ServiceProvider;

/// What a mount's handler returns: the answer, or (as the portal's own handlers do) the
/// page that ended the request early.
pub type MountFuture<'a> = Pin<Box<dyn Future<Output = Result<Resp, Resp>> + Send + 'a>>;

/// An application mounted beside the portal.
pub trait Mount: Send + Sync + fmt::Debug {
    /// The path prefix it answers, starting and ending with `/` (e.g. `/demo/`).
    fn prefix(&self) -> &str;

    /// The SAML service providers it registers with the IdP (its own metadata).
    fn service_providers(&self) -> Vec<ServiceProvider> {
        Vec::new()
    }

    /// The OpenID Connect clients it registers with the provider.
    fn oidc_clients(&self) -> Vec<causeway_oidc::Client> {
        Vec::new()
    }

    /// Answers one request whose path starts with [`Mount::prefix`].
    fn handle<'a>(&'a self, portal: &'a Arc<Portal>, req: Request<Incoming>) -> MountFuture<'a>;
}
