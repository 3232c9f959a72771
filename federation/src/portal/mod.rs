//! The sign-in side of the endpoint: the login page and SSO session, the SAML 2.0 IdP
//! (`/saml/*`), WS-Federation (`/wsfed`), both metadata documents, and the applications
//! mounted beside it ([`Mount`]: the binary's demo apps). Every URL a browser is sent to comes from a registered application, never
//! from the request alone; every form is bound to the browser it was shown to and can be
//! used once. This file holds the `Portal`, its set-up and the routing of a request to
//! the file that does the job (login, answer, saml, wsfed, logout; http for plumbing).
//! Their decisions are pure functions beside them or in `login_rules`, `claims` and
//! `causeway_saml::wsfed::query`, unit-tested without a `Portal`.

// Handlers return the page to show as `Err` so that `?` ends a request early; a response
// on the stack is a fine price for that.
#![allow(clippy::result_large_err)]

mod answer;
mod budget;
mod claims;
mod http;
mod login;
mod login_rules;
mod logout;
mod mount;
mod oidc;
mod oidc_refresh;
mod oidc_state;
mod oidc_token;
pub mod pages;
mod pairwise;
mod saml;
mod wsfed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use causeway_certs::signing::{KeyHealth, KeySet, RolloverPolicy};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use tracing::warn;

use crate::apps::Apps;
use crate::hub::Hub;
use crate::session::{FlowKey, Flows, Logouts, SeenRequests, Sessions, FLOW_KEY_FILE};
use crate::signin::Authenticator;
use causeway_saml::saml2::{binding, IdpUrls};
use causeway_saml::xml::{SigningKey, VerifiedKey};
use causeway_store::{DirectoryStore, Synced};

pub use http::{cookie, query_param, read_body, set_cookie, Resp};
use http::{csp_hash, sso_cookie};
pub use mount::{Mount, MountFuture};

/// The SSO session cookie.
pub const SSO_COOKIE: &str = "__Host-causeway_sso";
/// The cookie that binds a sign-in form to the browser it was shown to.
pub const LOGIN_COOKIE: &str = "__Host-causeway_login";
const MAX_FORM: usize = 16 * 1024;
const MAX_SAML_BODY: usize = binding::MAX_ENCODED + 16 * 1024;

/// How the sign-in side is set up.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// The URL browsers and relying parties use, e.g. `https://sso.example.com`.
    pub public_url: String,
    /// How long an SSO session lasts.
    pub session_lifetime: Duration,
    /// How long an issued assertion or token may be used.
    pub token_validity: Duration,
    /// Token-signing key rollover.
    pub rollover: RolloverPolicy,
    /// Where the token-signing keys live.
    pub keys_dir: PathBuf,
    /// Where registered applications live.
    pub apps_dir: PathBuf,
    /// Applications from the configuration file (in addition to `apps_dir`).
    pub config_apps: Apps,
    /// Applications served beside the portal under their own path prefixes.
    pub mounts: Vec<Arc<dyn Mount>>,
    /// Sign-in requests without a session one source may make: per second (0: no
    /// limit) and in a burst.
    pub anonymous_per_source: (u32, u32),
    /// How our SAML metadata is published.
    pub metadata: MetadataConfig,
}

/// How our SAML metadata is published: `validUntil` is this long after it is served,
/// relying parties are told to fetch it again after `cache_duration`, and it may be
/// signed with the token-signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataConfig {
    /// How long a copy stays valid.
    pub valid_for: Duration,
    /// How often relying parties should fetch it again.
    pub cache_duration: Duration,
    /// Whether the document carries an enveloped signature.
    pub signed: bool,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            valid_for: Duration::from_secs(86_400),
            cache_duration: Duration::from_secs(3600),
            signed: false,
        }
    }
}

struct Keys {
    signing: Arc<SigningKey>,
    published: Vec<String>,
    /// For `/healthz` and the metrics: the signing key's end and its successor.
    health: KeyHealth,
    /// The same active key, for OpenID Connect tokens (`kid` = the key's id).
    oidc: Arc<causeway_oidc::Signer>,
    /// The JWKS of the published keys.
    jwks: String,
    /// The published keys, to read back an `id_token_hint`.
    oidc_published: Vec<causeway_oidc::jwt::PublishedKey>,
}

/// The sign-in side.
pub struct Portal {
    cfg: PortalConfig,
    urls: IdpUrls,
    store: Arc<dyn DirectoryStore>,
    /// The synchronised groups, read at sign-in for the groups claim.
    synced: Arc<dyn Synced>,
    auth: Arc<Authenticator>,
    hub: Arc<Hub>,
    keys: RwLock<Arc<Keys>>,
    apps: RwLock<Arc<Apps>>,
    sessions: Sessions,
    flows: Flows,
    seen_requests: SeenRequests,
    anonymous: budget::AnonymousBudget,
    logouts: Logouts,
    csp_hashes: String,
    /// Makes persistent NameIDs pairwise.
    pairwise: pairwise::PairwiseKey,
    oidc: oidc_state::OidcState,
    oidc_refresh: oidc_refresh::RefreshStore,
    oidc_endpoints: causeway_oidc::discovery::Endpoints,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("public_url", &self.cfg.public_url)
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// Loads (or creates) the signing keys and the registered applications. Users come
    /// from `store`, their groups from `synced`.
    pub fn new(
        cfg: PortalConfig,
        store: Arc<dyn DirectoryStore>,
        synced: Arc<dyn Synced>,
        auth: Arc<Authenticator>,
        hub: Arc<Hub>,
    ) -> Result<Arc<Self>, String> {
        cfg.rollover.validate()?;
        let public_url = cfg.public_url.trim_end_matches('/').to_owned();
        let urls = IdpUrls::under(&public_url);
        let set = KeySet::load_or_create(&cfg.keys_dir, &cfg.rollover, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let keys = Self::keys_of(&set, SystemTime::now())?;
        // Beside the token-signing keys: the same directory, kept private already.
        let flow_key = FlowKey::load_or_create(&cfg.keys_dir.join(FLOW_KEY_FILE))?;
        let pairwise =
            pairwise::PairwiseKey::load_or_create(&cfg.keys_dir.join(pairwise::PAIRWISE_KEY_FILE))?;
        let oidc = oidc_state::OidcState::load(&cfg.keys_dir)?;
        // In the data directory (the key directory's parent), beside the other stores.
        let oidc_refresh = oidc_refresh::RefreshStore::open(
            &cfg.keys_dir
                .parent()
                .unwrap_or(&cfg.keys_dir)
                .join(oidc_refresh::FILE),
        )?;
        let p = Self {
            oidc,
            oidc_refresh,
            oidc_endpoints: causeway_oidc::discovery::Endpoints::under(&public_url),
            csp_hashes: format!(
                "style-src {}; script-src {}",
                csp_hash(pages::CSS),
                csp_hash(pages::AUTOPOST_JS)
            ),
            urls,
            store,
            synced,
            auth,
            hub,
            keys: RwLock::new(Arc::new(keys)),
            apps: RwLock::new(Arc::new(Apps::default())),
            sessions: Sessions::default(),
            flows: Flows::new(flow_key),
            seen_requests: SeenRequests::default(),
            anonymous: budget::AnonymousBudget::new(
                cfg.anonymous_per_source.0,
                cfg.anonymous_per_source.1,
            ),
            logouts: Logouts::default(),
            pairwise,
            cfg: PortalConfig { public_url, ..cfg },
        };
        p.reload_apps()?;
        Ok(Arc::new(p))
    }

    fn keys_of(set: &KeySet, now: SystemTime) -> Result<Keys, String> {
        let active = set
            .active(now)
            .ok_or("no token-signing key is active (all expired?)")?;
        let jwks: Vec<causeway_oidc::jwt::PublishedKey> = set
            .published(now)
            .iter()
            .filter_map(|k| causeway_oidc::jwt::PublishedKey::from_cert(&k.id, &k.cert_der).ok())
            .collect();
        Ok(Keys {
            oidc: Arc::new(causeway_oidc::Signer::new(
                active.id.clone(),
                active.private_key().clone(),
            )),
            jwks: causeway_oidc::jwt::jwks(&jwks),
            oidc_published: jwks,
            signing: Arc::new(SigningKey::new(
                active.private_key().clone(),
                &active.cert_der,
            )),
            published: set
                .published(now)
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(&k.cert_der))
                .collect(),
            health: set.health(now),
        })
    }

    fn reload_apps(&self) -> Result<(), String> {
        let mut apps = Apps::load(&self.cfg.apps_dir).map_err(|e| e.to_string())?;
        for (k, v) in &self.cfg.config_apps.saml {
            apps.saml.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.cfg.config_apps.wsfed {
            apps.wsfed.insert(k.clone(), v.clone());
        }
        for m in &self.cfg.mounts {
            for sp in m.service_providers() {
                apps.saml.insert(sp.entity_id.clone(), sp);
            }
            for c in m.oidc_clients() {
                apps.oidc.insert(c.client_id.clone(), c);
            }
        }
        *self
            .apps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(apps);
        Ok(())
    }

    /// Applies the rollover policy and reloads keys and applications from disk (changes
    /// made by `causeway certs rollover` and `causeway apps add` in other processes).
    pub fn refresh(&self, now: SystemTime) -> Result<(), String> {
        let mut set = KeySet::load(&self.cfg.keys_dir).map_err(|e| e.to_string())?;
        set.maintain(&self.cfg.rollover, now)
            .map_err(|e| e.to_string())?;
        let keys = Self::keys_of(&set, now)?;
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        self.reload_apps()
    }

    /// Refreshes every `every` until the process ends.
    pub async fn maintain(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            let p = self.clone();
            match tokio::task::spawn_blocking(move || p.refresh(SystemTime::now())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "could not refresh keys or applications"),
                Err(e) => warn!(error = %e, "refresh task failed"),
            }
        }
    }

    /// The IdP's URLs.
    pub fn urls(&self) -> &IdpUrls {
        &self.urls
    }

    /// Certificates published now (base64 DER), signing one first.
    pub fn published_certs(&self) -> Vec<String> {
        self.current_keys().published.clone()
    }

    /// The signing key's end and whether its successor is published (as of the last
    /// refresh, at most 10 s old).
    pub fn key_health(&self) -> KeyHealth {
        self.current_keys().health.clone()
    }

    fn current_keys(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn current_apps(&self) -> Arc<Apps> {
        self.apps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Live SSO sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Answers one request (any path other than `/healthz` and `/metrics`).
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: Option<SocketAddr>,
    ) -> Resp {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let mount = self.mount_of(&path);
        if starts_sign_in_work(&path, mount.is_some()) && self.session_of(&req).is_none() {
            let source = self.auth.client_source(req.headers(), peer);
            if !self.anonymous.take(source, std::time::Instant::now()) {
                return self.too_many_requests();
            }
        }
        let r = if let Some(m) = mount {
            m.handle(self, req).await
        } else {
            match (&method, path.as_str()) {
                (&Method::GET, "/") => Ok(self.home(&req)),
                (&Method::GET, "/saml/metadata") => Ok(self.saml_metadata()),
                (&Method::GET, "/FederationMetadata/2007-06/FederationMetadata.xml") => {
                    Ok(self.federation_metadata())
                }
                (&Method::GET, "/login") => Ok(self.login_page(&req)),
                (&Method::POST, "/login") => self.login_post(req, peer).await,
                (&Method::GET | &Method::POST, "/logout") => self.logout(req).await,
                (&Method::GET, "/saml/sso") => {
                    let q = req.uri().query().unwrap_or("").to_owned();
                    self.saml_sso(binding::from_query(&q), &req)
                }
                (&Method::POST, "/saml/sso") => {
                    let body = read_body(req, MAX_SAML_BODY).await;
                    match body {
                        Ok(b) => self.saml_sso_post(binding::from_form(&b)),
                        Err(r) => Err(r),
                    }
                }
                (&Method::GET, "/saml/continue") => {
                    let flow = query_param(&req, "flow").unwrap_or_default();
                    Ok(self.continue_flow(&flow, &req))
                }
                (&Method::GET, "/saml/idp-init") => self.idp_initiated(&req),
                (&Method::GET, "/saml/slo") => {
                    let q = req.uri().query().unwrap_or("").to_owned();
                    let cookie = sso_cookie(&req);
                    self.saml_slo(binding::from_query(&q), cookie)
                }
                (&Method::POST, "/saml/slo") => {
                    let cookie = sso_cookie(&req);
                    match read_body(req, MAX_SAML_BODY).await {
                        Ok(b) => self.saml_slo(binding::from_form(&b), cookie),
                        Err(r) => Err(r),
                    }
                }
                (&Method::GET, "/wsfed") => self.wsfed(&req),
                (_, p) if oidc::handles(p) => self.oidc(req).await,
                (_, "/" | "/login" | "/saml/metadata" | "/saml/sso" | "/saml/slo" | "/wsfed") => {
                    Err(self.error_page(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "Method not allowed",
                        "This address does not accept that kind of request.",
                    ))
                }
                _ => Err(self.error_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is nothing at this address.",
                )),
            }
        };
        match r {
            Ok(r) | Err(r) => r,
        }
    }

    /// The application mounted at a prefix of `path`, if any.
    fn mount_of(&self, path: &str) -> Option<&Arc<dyn Mount>> {
        self.cfg
            .mounts
            .iter()
            .find(|m| path.starts_with(m.prefix()))
    }

    fn saml_metadata(&self) -> Resp {
        let keys = self.current_keys();
        let m = self.cfg.metadata;
        Self::xml(causeway_saml::saml2::idp_metadata_with(
            &self.urls,
            &keys.published,
            &causeway_saml::saml2::MetadataTerms {
                valid_until: SystemTime::now() + m.valid_for,
                cache_duration: m.cache_duration,
                sign_with: m.signed.then_some(&*keys.signing),
            },
        ))
    }

    fn federation_metadata(&self) -> Resp {
        let keys = self.current_keys();
        let m = self.cfg.metadata;
        Self::xml(causeway_saml::wsfed::federation_metadata_with(
            &self.urls,
            &format!("{}/wsfed", self.cfg.public_url),
            &keys.published,
            &causeway_saml::saml2::MetadataTerms {
                valid_until: SystemTime::now() + m.valid_for,
                cache_duration: m.cache_duration,
                sign_with: m.signed.then_some(&*keys.signing),
            },
        ))
    }

    /// The published token-signing keys, as a relying party checks them.
    pub fn current_verified_keys(&self) -> Vec<VerifiedKey> {
        self.current_keys()
            .published
            .iter()
            .filter_map(|c| VerifiedKey::from_cert_base64(c).ok())
            .collect()
    }
}

/// Whether a request to `path` makes the endpoint do sign-in work (parse a SAML message,
/// seal a flow, check a password, render a page), which a request without a session pays
/// for from its source's budget: the sign-in addresses and every mounted application
/// (`mounted`). Metadata and static answers are free.
fn starts_sign_in_work(path: &str, mounted: bool) -> bool {
    mounted
        || matches!(
            path,
            "/" | "/login"
                | "/logout"
                | "/saml/sso"
                | "/saml/continue"
                | "/saml/idp-init"
                | "/saml/slo"
                | "/wsfed"
                | "/oidc/authorize"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_work_is_every_sign_in_address_and_mounted_apps_but_not_metadata() {
        for p in [
            "/",
            "/login",
            "/logout",
            "/saml/sso",
            "/saml/continue",
            "/saml/idp-init",
            "/saml/slo",
            "/wsfed",
            "/oidc/authorize",
        ] {
            assert!(starts_sign_in_work(p, false), "{p}");
        }
        assert!(starts_sign_in_work("/demo/app1/", true), "a mounted app");
        for p in [
            "/saml/metadata",
            "/FederationMetadata/2007-06/FederationMetadata.xml",
            "/healthz",
            "/metrics",
            "/login/",
            "/wsfed/x",
            "/demo/",
            "/.well-known/openid-configuration",
            "/oidc/jwks",
            "/oidc/token",
            "",
        ] {
            assert!(!starts_sign_in_work(p, false), "{p}");
        }
    }
}
