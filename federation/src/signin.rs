//! Which way a password is checked: per domain, pass-through (the hub and an agent),
//! password hash sync (the store's verifier), or pass-through with hash sync as the
//! fallback when no agent is connected. Cloud-only users are always checked against their
//! verifier. Smart lockout and per-source throttling apply to every path, and to every
//! name alike: a name that exists nowhere (or in a domain we do not serve) is counted and
//! locked like a real account, and costs the same reads and the same verifier work.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use causeway_credential::{Password, PhsVerifier, SignInOutcome};
use tracing::{info, warn};

use crate::client_addr::TrustedProxies;
use crate::hub::lockout::AccountKey;
use crate::hub::{CheckRequest, Hub};
use causeway_store::{spend_like_a_check, verify_found_at, DirectoryStore, Source, UserRecord};

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

impl Path {
    /// The metric label (one of [`crate::metrics::SIGNIN_PATHS`], which the metrics create
    /// at zero).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Path::PassThrough => "pass_through",
            Path::HashSync => "hash_sync",
            Path::None => "none",
        }
    }
}

/// Why a sign-in took its path (what `causeway users test-signin` explains).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A cloud-only user: always checked against its own verifier.
    CloudOnly,
    /// The method configured for the user's domain.
    Domain(Method),
    /// Pass-through with hash-sync fallback, and no agent was connected.
    NoAgentFellBack,
    /// Not a domain this endpoint serves (or not a well-formed name): checked like a name
    /// that exists nowhere.
    NotServed,
}

/// One sign-in's outcome, the path that answered and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The outcome.
    pub outcome: SignInOutcome,
    /// The path that answered.
    pub path: Path,
    /// Why that path.
    pub reason: Reason,
    /// Whether any agent was connected when the path was chosen.
    pub agents_connected: bool,
    /// The agent whose answer it is (pass-through only).
    pub agent: Option<String>,
}

/// What one read of the store gave for a name: its row, or the stand-in verifier parsed
/// in its place (so both paths spend the same work).
enum Found {
    Row((UserRecord, Option<PhsVerifier>)),
    StandIn(Option<PhsVerifier>),
}

/// Checks sign-ins for the configured domains.
pub struct Authenticator {
    hub: Arc<Hub>,
    store: Arc<dyn DirectoryStore>,
    domains: Vec<(String, Method)>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    proxies: TrustedProxies,
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
            proxies: TrustedProxies::default(),
        }
    }

    /// Counts every sign-in in `metrics` (by outcome and path, with its latency).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Believes `Forwarded` / `X-Forwarded-For` from these peers (none by default).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// The address a sign-in came from, for throttling and familiar places: the TCP peer,
    /// or what a trusted proxy in front of us says.
    pub fn client_source(
        &self,
        headers: &hyper::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<IpAddr> {
        self.proxies.client(headers, peer)
    }

    /// The store's user for a well-formed name, if any.
    async fn lookup(&self, upn: &str) -> Option<UserRecord> {
        if causeway_store::check_upn(upn).is_err() {
            return None;
        }
        self.store.user_by_upn(upn).await.ok().flatten()
    }

    /// The store's user and verifier for `upn` (one read); `Err` when the store cannot be
    /// read. A name without a row, or a malformed one, does the same work with a stand-in
    /// row and returns the stand-in's verifier.
    async fn read_verifier(&self, upn: &str) -> Result<Found, ()> {
        let read = if causeway_store::check_upn(upn).is_err() {
            Ok(None)
        } else {
            self.store.verifier_of(upn).await
        };
        match read {
            // The stand-in is built here, as a real row's verifier is parsed inside the
            // read: either way one row's worth of work after one trip to the store.
            Ok(f) => Ok(match f {
                Some(row) => Found::Row(row),
                None => Found::StandIn(causeway_store::read_like_a_row()),
            }),
            Err(e) => {
                warn!(error = %e, "directory store unreadable");
                Err(())
            }
        }
    }

    fn account_of(upn: &str, user: Option<&UserRecord>) -> AccountKey {
        match user {
            Some(u) => AccountKey::of_id(&u.id),
            None => AccountKey::of_name(upn),
        }
    }

    /// The account smart lockout counts `upn` against (the store's immutable id if it
    /// knows the user, else the normalised name).
    pub async fn account_for(&self, upn: &str) -> AccountKey {
        let user = self.lookup(upn).await;
        Self::account_of(upn, user.as_ref())
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
        let t = self.authenticate_traced(upn, password, source).await;
        (t.outcome, t.path)
    }

    /// [`Authenticator::authenticate`], saying also why it took its path: the very same
    /// check (lockout, throttling, metrics), for `causeway users test-signin`.
    pub async fn authenticate_traced(
        &self,
        upn: &str,
        password: Password,
        source: Option<IpAddr>,
    ) -> Trace {
        let started = Instant::now();
        let agents_connected = self.hub.has_agents();
        let ((outcome, path), reason, agent) = self
            .authenticate_inner(upn, password, source, agents_connected)
            .await;
        if let Some(m) = &self.metrics {
            m.record(outcome, path.label(), started.elapsed());
        }
        Trace {
            outcome,
            path,
            reason,
            agents_connected,
            agent,
        }
    }

    async fn authenticate_inner(
        &self,
        upn: &str,
        password: Password,
        source: Option<IpAddr>,
        agents_connected: bool,
    ) -> ((SignInOutcome, Path), Reason, Option<String>) {
        // Only well-formed names reach a directory: no surrounding spaces or control
        // characters, bounded length (they travel to AD). Malformed names are still
        // counted like any other, so no kind of name is cheaper to guess against.
        let well_formed = causeway_store::check_upn(upn).is_ok();
        // One read of the user and its verifier, for every name (a name without a row
        // parses a dummy verifier instead), so that a real user costs no second read.
        let found = self.read_verifier(upn).await;
        let user = match &found {
            Ok(Found::Row((u, _))) => Some(u),
            _ => None,
        };
        let account = Self::account_of(upn, user);
        let cloud = user.as_ref().is_some_and(|u| u.source == Source::Cloud);
        let method = if cloud {
            Some(Method::Phs)
        } else if well_formed {
            self.method_for(upn)
        } else {
            None
        };
        let use_phs = match method {
            // Not a domain of ours: the same reads, lockout and verifier work as a hash
            // check, and the answer a name that does not exist gets.
            None => {
                let r = self
                    .hash_sync(found, account, password, source, false)
                    .await;
                return (r, Reason::NotServed, None);
            }
            Some(Method::Phs) => true,
            Some(Method::Pta) => false,
            Some(Method::PtaWithPhsFallback) => {
                let no_agent = !agents_connected;
                if no_agent {
                    info!("no agent connected; checking the synchronised password hash instead");
                }
                no_agent
            }
        };
        let reason = match method {
            _ if cloud => Reason::CloudOnly,
            Some(Method::PtaWithPhsFallback) if use_phs => Reason::NoAgentFellBack,
            Some(m) => Reason::Domain(m),
            None => Reason::NotServed,
        };
        let mut agent = None;
        let r = if use_phs {
            self.hash_sync(found, account, password, source, true).await
        } else {
            let (o, by) = self
                .hub
                .check_answered_by(
                    CheckRequest {
                        user_name: upn.to_owned(),
                        password,
                        source,
                    },
                    account,
                )
                .await;
            agent = by;
            (o, Path::PassThrough)
        };
        (r, reason, agent)
    }

    /// A password-hash-sync check (`served`), or the same work for a name we do not serve.
    /// Every path reads the verifier, passes smart lockout and runs one verifier check
    /// (a dummy one when there is nothing to check or the answer comes from memory), so
    /// neither a name's existence nor a remembered wrong password shows in the timing.
    async fn hash_sync(
        &self,
        found: Result<Found, ()>,
        account: AccountKey,
        password: Password,
        source: Option<IpAddr>,
        served: bool,
    ) -> (SignInOutcome, Path) {
        let deadline = Instant::now() + self.hub.config().deadline;
        // A row in a domain we do not serve is checked like no row at all.
        let found = match found {
            Ok(Found::Row(row)) if served => Ok(Found::Row(row)),
            Ok(Found::Row(_)) => Ok(Found::StandIn(causeway_store::read_like_a_row())),
            other => other,
        };
        let ticket = match self
            .hub
            .lockout()
            .admit_waiting(&account, &password, source, deadline)
            .await
        {
            Ok(t) => t,
            // Throttling is about the source, not the account: it says nothing about the
            // name and stays cheap.
            Err(o @ SignInOutcome::Throttled) => return (o, Path::None),
            Err(o) => {
                let _ = tokio::task::spawn_blocking(move || spend_like_a_check(&password)).await;
                return (o, Path::None);
            }
        };
        let Ok(found) = found else {
            return (SignInOutcome::DirectoryUnavailable, Path::HashSync);
        };
        let now = SystemTime::now();
        let outcome = match tokio::task::spawn_blocking(move || match found {
            Found::Row(row) => verify_found_at(Some(row), &password, now),
            Found::StandIn(v) => causeway_store::verify_stand_in(v.as_ref(), &password),
        })
        .await
        {
            Ok(o) => o,
            Err(_) => {
                warn!("password hash check failed inside the endpoint");
                return (SignInOutcome::DirectoryUnavailable, Path::HashSync);
            }
        };
        ticket.record(outcome, 1, now);
        let path = if served { Path::HashSync } else { Path::None };
        (outcome, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use causeway_credential::PhsVerifier;
    use causeway_store::{NewUser, SqliteStore, Users as _};

    #[test]
    fn every_path_is_counted_from_zero() {
        let m = crate::metrics::Metrics::new();
        let text = String::from_utf8(m.render(0)).expect("utf8");
        for p in [Path::PassThrough, Path::HashSync, Path::None] {
            let line = format!(
                "causeway_signins_total{{outcome=\"success\",path=\"{}\"}} 0",
                p.label()
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("valid")
    }

    async fn authenticator(name: &str) -> (Authenticator, Arc<Hub>, std::path::PathBuf) {
        let dir =
            std::env::temp_dir().join(format!("causeway-signin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let store = SqliteStore::open(&dir.join("directory.sqlite")).expect("store");
        store
            .add_cloud_user(
                &NewUser {
                    upn: "known@cloud.example".into(),
                    display_name: None,
                    mail: None,
                },
                &PhsVerifier::derive(&pw("Right-Pw-1")),
                "test",
                SystemTime::now(),
            )
            .await
            .expect("user");
        let hub = Hub::new(HubConfig::new("ep"));
        let auth = Authenticator::new(
            hub.clone(),
            Arc::new(store),
            vec![("corp.example".into(), Method::Phs)],
        );
        (auth, hub, dir)
    }

    /// The trace names the path and why: a cloud-only user, each method of a domain with
    /// no agent connected, and a domain that is not served.
    #[tokio::test]
    async fn the_trace_says_why_each_path_was_taken() {
        let (_, hub, dir) = authenticator("trace").await;
        let store = SqliteStore::open(&dir.join("directory.sqlite")).expect("store");
        let auth = Authenticator::new(
            hub,
            Arc::new(store),
            vec![
                ("pta.example".into(), Method::Pta),
                ("both.example".into(), Method::PtaWithPhsFallback),
                ("phs.example".into(), Method::Phs),
            ],
        );
        let cases = [
            (
                "known@cloud.example",
                "Right-Pw-1",
                SignInOutcome::Success,
                Path::HashSync,
                Reason::CloudOnly,
            ),
            (
                "a@pta.example",
                "x",
                SignInOutcome::DirectoryUnavailable,
                Path::PassThrough,
                Reason::Domain(Method::Pta),
            ),
            (
                "a@both.example",
                "x",
                SignInOutcome::UnknownUser,
                Path::HashSync,
                Reason::NoAgentFellBack,
            ),
            (
                "a@phs.example",
                "x",
                SignInOutcome::UnknownUser,
                Path::HashSync,
                Reason::Domain(Method::Phs),
            ),
            (
                "a@elsewhere.example",
                "x",
                SignInOutcome::UnknownUser,
                Path::None,
                Reason::NotServed,
            ),
        ];
        for (upn, password, outcome, path, reason) in cases {
            let t = auth.authenticate_traced(upn, pw(password), None).await;
            assert_eq!(
                t,
                Trace {
                    outcome,
                    path,
                    reason,
                    agents_connected: false,
                    agent: None,
                },
                "{upn}"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// The oracle is gone: a real account, an unknown name in a served domain, a name in a
    /// domain we do not serve and a malformed name all read the same words for the same
    /// guesses, and all lock at the fourth distinct wrong password.
    #[tokio::test]
    async fn unknown_names_lock_exactly_like_known_ones() {
        let (auth, hub, dir) = authenticator("oracle").await;
        let names = [
            "known@cloud.example",
            "nobody@corp.example",
            "someone@elsewhere.example",
            "no-domain-at-all",
        ];
        let mut words: Vec<Vec<&str>> = Vec::new();
        for name in names {
            let mut seen = Vec::new();
            for i in 0..5 {
                let (o, _) = auth
                    .authenticate(name, pw(&format!("Guess-{i}")), None)
                    .await;
                seen.push(o.user_message());
            }
            // The right password is held too while locked.
            let (o, _) = auth.authenticate(name, pw("Right-Pw-1"), None).await;
            seen.push(o.user_message());
            let account = auth.account_for(name).await;
            assert!(
                hub.lockout()
                    .locked_for(&account, None, SystemTime::now())
                    .is_some(),
                "{name} is locked"
            );
            words.push(seen);
        }
        let wrong = SignInOutcome::InvalidCredentials.user_message();
        let locked = SignInOutcome::AccountLocked.user_message();
        assert_eq!(
            words[0],
            vec![wrong, wrong, wrong, locked, locked, locked],
            "the real account"
        );
        for (name, w) in names.iter().zip(&words) {
            assert_eq!(w, &words[0], "{name} reads like the real account");
        }
        // Variants of a name share its budget: the store's id is the key.
        assert_eq!(
            auth.account_for("KNOWN@cloud.example").await,
            auth.account_for("known@cloud.example").await
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
