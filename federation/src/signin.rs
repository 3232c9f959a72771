//! Which way a password is checked: per domain, pass-through (the hub and an agent),
//! password hash sync (the store's verifier), or pass-through with hash sync as the
//! fallback when no agent is connected. Cloud-only users are always checked against their
//! verifier. Smart lockout and per-source throttling apply to every path.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use causeway_credential::{Password, SignInOutcome};
use tracing::{info, warn};

use crate::hub::{CheckRequest, Hub};
use crate::store::{verify_password, DirectoryStore, Source};

/// How a domain's passwords are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Pass-through authentication only: when no agent answers, the directory is unavailable.
    Pta,
    /// Password hash sync only.
    Phs,
    /// Pass-through, and hash sync when no agent is connected at all.
    PtaWithPhsFallback,
}

/// Which path answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Through an agent.
    PassThrough,
    /// Against the stored verifier.
    HashSync,
    /// Not checked (lockout, throttling, unknown domain).
    None,
}

/// Checks sign-ins for the configured domains.
pub struct Authenticator {
    hub: Arc<Hub>,
    store: Arc<dyn DirectoryStore>,
    domains: Vec<(String, Method)>,
    metrics: Option<Arc<crate::web::Metrics>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `domains` (DNS suffixes of UPNs, case-insensitive).
    pub fn new(
        hub: Arc<Hub>,
        store: Arc<dyn DirectoryStore>,
        domains: Vec<(String, Method)>,
    ) -> Self {
        let domains = domains
            .into_iter()
            .map(|(d, m)| (d.to_lowercase(), m))
            .collect();
        Self {
            hub,
            store,
            domains,
            metrics: None,
        }
    }

    /// Counts every sign-in in `metrics` (by outcome and path, with its latency).
    pub fn with_metrics(mut self, metrics: Arc<crate::web::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn method_for(&self, upn: &str) -> Option<Method> {
        let domain = upn.rsplit_once('@')?.1.to_lowercase();
        self.domains
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, m)| *m)
    }

    /// Checks `password` for `upn`; never fails, every problem is an outcome.
    pub async fn authenticate(
        &self,
        upn: &str,
        password: Password,
        source: Option<IpAddr>,
    ) -> (SignInOutcome, Path) {
        let started = Instant::now();
        let r = self.authenticate_inner(upn, password, source).await;
        if let Some(m) = &self.metrics {
            m.record(r.0, r.1, started.elapsed());
        }
        r
    }

    async fn authenticate_inner(
        &self,
        upn: &str,
        password: Password,
        source: Option<IpAddr>,
    ) -> (SignInOutcome, Path) {
        // Only well-formed names go further: no surrounding spaces or control characters,
        // bounded length (they key the lockout state and travel to AD).
        if crate::store::check_upn(upn).is_err() {
            let _ =
                tokio::task::spawn_blocking(move || crate::store::spend_like_a_check(&password))
                    .await;
            return (SignInOutcome::UnknownUser, Path::None);
        }
        let store = self.store.clone();
        let name = upn.to_owned();
        let cloud = tokio::task::spawn_blocking(move || store.user_by_upn(&name))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|u| u.source == Source::Cloud);
        let method = if cloud {
            Some(Method::Phs)
        } else {
            self.method_for(upn)
        };
        let use_phs = match method {
            None => {
                // Not a domain of ours: spend a verifier's work and say no, like a wrong
                // password, without keeping any lockout state for names we do not serve.
                let _ = tokio::task::spawn_blocking(move || {
                    crate::store::spend_like_a_check(&password)
                })
                .await;
                return (SignInOutcome::UnknownUser, Path::None);
            }
            Some(Method::Phs) => true,
            Some(Method::Pta) => false,
            Some(Method::PtaWithPhsFallback) => {
                let no_agent = !self.hub.has_agents();
                if no_agent {
                    info!("no agent connected; checking the synchronised password hash instead");
                }
                no_agent
            }
        };
        if use_phs {
            self.hash_sync(upn, password, source).await
        } else {
            let o = self
                .hub
                .check(CheckRequest {
                    user_name: upn.to_owned(),
                    password,
                    source,
                })
                .await;
            (o, Path::PassThrough)
        }
    }

    async fn hash_sync(
        &self,
        upn: &str,
        password: Password,
        source: Option<IpAddr>,
    ) -> (SignInOutcome, Path) {
        let deadline = Instant::now() + self.hub.config().deadline;
        let ticket = match self
            .hub
            .lockout()
            .admit_waiting(upn, &password, source, deadline)
            .await
        {
            Ok(t) => t,
            Err(o) => return (o, Path::None),
        };
        let store = self.store.clone();
        let name = upn.to_owned();
        let outcome = match tokio::task::spawn_blocking(move || {
            verify_password(store.as_ref(), &name, &password)
        })
        .await
        {
            Ok(o) => o,
            Err(_) => {
                warn!("password hash check failed inside the endpoint");
                return (SignInOutcome::DirectoryUnavailable, Path::HashSync);
            }
        };
        ticket.record(outcome, 1, Instant::now());
        (outcome, Path::HashSync)
    }
}
