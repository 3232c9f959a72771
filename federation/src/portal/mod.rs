//! The sign-in side of the endpoint: the login page and SSO session, the SAML 2.0 IdP
//! (`/saml/*`), WS-Federation (`/wsfed`), both metadata documents, and the built-in demo
//! applications. Every URL a browser is sent to comes from a registered application, never
//! from the request alone; every form is bound to the browser it was shown to and can be
//! used once.

// Handlers return the page to show as `Err` so that `?` ends a request early; a response
// on the stack is a fine price for that.
#![allow(clippy::result_large_err)]

mod budget;
mod demo;
pub mod pages;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::Engine;
use causeway_certs::signing::{KeySet, RolloverPolicy};
use causeway_credential::{Password, SignInOutcome};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::apps::Apps;
use crate::hub::Hub;
use crate::saml::{
    self, binding, messages, AuthnRequest, IdpUrls, LogoutRequest, SamlAttribute, BINDING_POST,
    BINDING_REDIRECT, NAMEID_EMAIL, NAMEID_PERSISTENT, NAMEID_UNSPECIFIED,
};
use crate::session::{
    token_hash, Flow, FlowError, FlowKey, Flows, Identity, LogoutChain, LogoutNext, LogoutOrigin,
    Logouts, Participant, Prompt, SeenRequests, Session, Sessions, Target, FLOW_KEY_FILE,
};
use crate::signin::Authenticator;
use crate::store::DirectoryStore;
use crate::xml::{self, SigningKey, VerifiedKey};

/// The SSO session cookie.
pub const SSO_COOKIE: &str = "__Host-causeway_sso";
/// The cookie that binds a sign-in form to the browser it was shown to.
pub const LOGIN_COOKIE: &str = "__Host-causeway_login";
const MAX_FORM: usize = 16 * 1024;
const MAX_SAML_BODY: usize = binding::MAX_ENCODED + 16 * 1024;
/// Largest `wctx` accepted: it travels inside the sealed flow state, in a URL.
const MAX_WCTX: usize = 2048;

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
    /// Serve the two demo applications under `/demo/`.
    pub demo_apps: bool,
    /// Sign-in requests without a session one source may make: per second (0: no
    /// limit) and in a burst.
    pub anonymous_per_source: (u32, u32),
}

struct Keys {
    signing: Arc<SigningKey>,
    published: Vec<String>,
}

/// The sign-in side.
pub struct Portal {
    cfg: PortalConfig,
    urls: IdpUrls,
    store: Arc<dyn DirectoryStore>,
    auth: Arc<Authenticator>,
    hub: Arc<Hub>,
    keys: RwLock<Arc<Keys>>,
    apps: RwLock<Arc<Apps>>,
    sessions: Sessions,
    flows: Flows,
    seen_requests: SeenRequests,
    anonymous: budget::AnonymousBudget,
    logouts: Logouts,
    demo: Option<demo::DemoApps>,
    csp_hashes: String,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("public_url", &self.cfg.public_url)
            .finish_non_exhaustive()
    }
}

type Resp = Response<Full<Bytes>>;

fn csp_hash(s: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s.as_bytes()))
    )
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(i) => &url[..after + i],
        None => url,
    }
}

impl Portal {
    /// Loads (or creates) the signing keys and the registered applications.
    pub fn new(
        cfg: PortalConfig,
        store: Arc<dyn DirectoryStore>,
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
        let demo = cfg.demo_apps.then(|| demo::DemoApps::new(&public_url));
        let p = Self {
            csp_hashes: format!(
                "style-src {}; script-src {}",
                csp_hash(pages::CSS),
                csp_hash(pages::AUTOPOST_JS)
            ),
            urls,
            store,
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
            demo,
            cfg: PortalConfig { public_url, ..cfg },
        };
        p.reload_apps()?;
        Ok(Arc::new(p))
    }

    fn keys_of(set: &KeySet, now: SystemTime) -> Result<Keys, String> {
        let active = set
            .active(now)
            .ok_or("no token-signing key is active (all expired?)")?;
        Ok(Keys {
            signing: Arc::new(SigningKey::new(
                active.private_key().clone(),
                &active.cert_der,
            )),
            published: set
                .published(now)
                .iter()
                .map(|k| base64::engine::general_purpose::STANDARD.encode(&k.cert_der))
                .collect(),
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
        if let Some(d) = &self.demo {
            for sp in d.service_providers() {
                apps.saml.insert(sp.entity_id.clone(), sp);
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
        if Self::starts_sign_in_work(&path) && self.session_of(&req).is_none() {
            let source = self.auth.client_source(req.headers(), peer);
            if !self.anonymous.take(source, std::time::Instant::now()) {
                return self.too_many_requests();
            }
        }
        let r = match (&method, path.as_str()) {
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
            (_, p) if p.starts_with("/demo/") => match &self.demo {
                Some(d) => d.handle(self, req).await,
                None => Err(self.error_page(
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is nothing at this address.",
                )),
            },
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
        };
        match r {
            Ok(r) | Err(r) => r,
        }
    }

    // ---- responses ------------------------------------------------------------------

    fn html(&self, status: StatusCode, body: String, form_action: &str) -> Resp {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert("cache-control", HeaderValue::from_static("no-store"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        h.insert(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        );
        let csp = format!(
            "default-src 'none'; {}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
            self.csp_hashes
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert("content-security-policy", v);
        }
        r
    }

    /// Whether a request to `path` makes the endpoint do sign-in work (parse a SAML
    /// message, seal a flow, check a password, render a page), which a request without a
    /// session pays for from its source's budget. Metadata and static answers are free.
    fn starts_sign_in_work(path: &str) -> bool {
        matches!(
            path,
            "/" | "/login"
                | "/logout"
                | "/saml/sso"
                | "/saml/continue"
                | "/saml/idp-init"
                | "/saml/slo"
                | "/wsfed"
        ) || path.starts_with("/demo/")
    }

    /// A source that spent its budget for sign-in work without a session: a short answer
    /// that costs nothing to make.
    fn too_many_requests(&self) -> Resp {
        let mut r = self.error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            "Too many sign-in requests came from your network. Wait a moment, then try again.",
        );
        if let Ok(v) = HeaderValue::from_str(&self.anonymous.retry_after().to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
        r
    }

    fn error_page(&self, status: StatusCode, title: &str, text: &str) -> Resp {
        self.html(status, pages::message(title, text, None), "'none'")
    }

    fn redirect(location: &str) -> Resp {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(location) {
            r.headers_mut().insert(LOCATION, v);
        }
        r.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        r
    }

    fn xml(body: String) -> Resp {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/samlmetadata+xml"),
        );
        r.headers_mut().insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=3600"),
        );
        r
    }

    fn bad_request(&self, text: &str) -> Resp {
        self.error_page(
            StatusCode::BAD_REQUEST,
            "This request cannot be handled",
            text,
        )
    }

    // ---- metadata -------------------------------------------------------------------

    fn saml_metadata(&self) -> Resp {
        let keys = self.current_keys();
        Self::xml(saml::idp_metadata(
            &self.urls,
            &keys.published,
            SystemTime::now() + Duration::from_secs(86_400),
        ))
    }

    fn federation_metadata(&self) -> Resp {
        let keys = self.current_keys();
        Self::xml(crate::wsfed::federation_metadata(
            &self.urls,
            &format!("{}/wsfed", self.cfg.public_url),
            &keys.published,
            SystemTime::now() + Duration::from_secs(86_400),
        ))
    }

    // ---- start page, login, logout -----------------------------------------------------

    fn session_of(&self, req: &Request<Incoming>) -> Option<(Zeroizing<String>, Session)> {
        let c = sso_cookie(req)?;
        let s = self.sessions.get(&c, SystemTime::now())?;
        Some((c, s))
    }

    fn home(&self, req: &Request<Incoming>) -> Resp {
        match self.session_of(req) {
            Some((_, s)) => {
                let apps = self.current_apps();
                let links: Vec<(String, String)> = apps
                    .saml
                    .keys()
                    .map(|id| {
                        let q: String = form_urlencoded::Serializer::new(String::new())
                            .append_pair("sp", id)
                            .finish();
                        (format!("/saml/idp-init?{q}"), id.clone())
                    })
                    .collect();
                self.html(
                    StatusCode::OK,
                    pages::home(&s.upn, &s.csrf, &links),
                    "'self'",
                )
            }
            None => {
                let flow = self
                    .flows
                    .start(Target::Portal, Prompt::IfNeeded, SystemTime::now());
                Self::redirect(&format!("/login?flow={flow}"))
            }
        }
    }

    fn login_page(&self, req: &Request<Incoming>) -> Resp {
        let Some(blob) = query_param(req, "flow") else {
            if self.session_of(req).is_some() {
                return Self::redirect("/");
            }
            let flow = self
                .flows
                .start(Target::Portal, Prompt::IfNeeded, SystemTime::now());
            return Self::redirect(&format!("/login?flow={flow}"));
        };
        match self.flows.open(&blob, SystemTime::now()) {
            Ok(flow) => self.render_login(&flow, "", None, StatusCode::OK),
            Err(e) => self.flow_refused(e),
        }
    }

    /// The page for sign-in state that cannot be used, saying why.
    fn flow_refused(&self, e: FlowError) -> Resp {
        let (status, title, text) = match e {
            FlowError::Expired => (
                StatusCode::BAD_REQUEST,
                "This sign-in page has expired",
                "It is older than 15 minutes. Go back to the application and sign in again.",
            ),
            FlowError::Used => (
                StatusCode::BAD_REQUEST,
                "This sign-in page was already used",
                "It was already used to sign in, and a sign-in page can be used once. Go back to the application and sign in again.",
            ),
            FlowError::Malformed | FlowError::Tampered => (
                StatusCode::BAD_REQUEST,
                "This sign-in link is not valid",
                "It was damaged or altered on the way, or it was not issued by this sign-in service. Go back to the application and sign in again.",
            ),
            FlowError::Forged => (
                StatusCode::FORBIDDEN,
                "This sign-in form cannot be used",
                "It was not issued to this browser, or it was replaced by a newer one. Go back to the application and sign in again.",
            ),
        };
        self.error_page(status, title, text)
    }

    fn app_name(&self, t: &Target) -> Option<String> {
        match t {
            Target::Saml { sp, .. } => Some(sp.clone()),
            Target::WsFed { realm, .. } => Some(self.realm_name(realm)),
            Target::Portal => None,
        }
    }

    /// A relying party's display name, or its realm.
    fn realm_name(&self, realm: &str) -> String {
        self.current_apps()
            .wsfed
            .get(realm)
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| realm.to_owned())
    }

    /// Shows the form again with `message` (a failed attempt keeps its flow).
    fn retry_login(&self, flow: Flow, username: &str, message: &str, status: StatusCode) -> Resp {
        self.render_login(&flow, username, Some(message), status)
    }

    /// The sign-in form, with the flow sealed again for this browser: a new login cookie
    /// and a new anti-forgery token at every rendering.
    fn render_login(
        &self,
        flow: &Flow,
        username: &str,
        error: Option<&str>,
        status: StatusCode,
    ) -> Resp {
        let browser = Zeroizing::new(crate::session::random_token());
        let (blob, csrf) = self.flows.bind(flow, token_hash(&browser));
        let app = self.app_name(&flow.target);
        let mut r = self.html(
            status,
            pages::login(&blob, &csrf, username, error, app.as_deref()),
            "'self'",
        );
        set_cookie(&mut r, LOGIN_COOKIE, &browser, Some(900));
        r
    }

    async fn login_post(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: Option<SocketAddr>,
    ) -> Result<Resp, Resp> {
        let browser = cookie(&req, LOGIN_COOKIE).map(|c| token_hash(&c));
        let old_session = sso_cookie(&req);
        let source = self.auth.client_source(req.headers(), peer);
        // The body holds the URL-encoded password: it is read into one zeroizing buffer
        // and decoded field by field into zeroizing buffers (no copy left behind).
        let body = read_secret_body(req, MAX_FORM).await?;
        let mut flow_id = None;
        let mut csrf = None;
        let mut username = None;
        let mut password: Option<Zeroizing<Vec<u8>>> = None;
        for (k, v) in form_fields(&body) {
            let slot = match k.as_slice() {
                b"flow" => &mut flow_id,
                b"csrf" => &mut csrf,
                b"username" => &mut username,
                b"password" => {
                    if password.is_some() {
                        return Err(self.bad_request("The form was sent with a field twice."));
                    }
                    password = Some(v);
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                return Err(self.bad_request("The form was sent with a field twice."));
            }
            *slot = Some(String::from_utf8_lossy(&v).into_owned());
        }
        let (Some(flow_id), Some(csrf)) = (flow_id, csrf) else {
            return Err(self.bad_request(
                "The sign-in form is incomplete. Go back to the application and sign in again.",
            ));
        };
        let flow = match self
            .flows
            .take_if(&flow_id, &csrf, browser, SystemTime::now())
        {
            Ok(f) => f,
            Err(e) => {
                if e == FlowError::Forged {
                    warn!(peer = ?peer.map(|p| p.ip()), "sign-in form refused: anti-forgery token or browser binding does not match");
                }
                return Err(self.flow_refused(e));
            }
        };
        let username = username.unwrap_or_default().trim().to_owned();
        if username.chars().count() > 256 {
            return Ok(self.retry_login(
                flow,
                "",
                "The user name is too long.",
                StatusCode::BAD_REQUEST,
            ));
        }
        // Moved, not copied, into the secret type (which zeroizes it if it refuses it).
        let pw = password.map(|mut p| Password::from_utf8(std::mem::take(&mut *p)));
        let password = match pw {
            Some(Ok(p)) if !username.is_empty() => p,
            _ => {
                let msg = if username.is_empty() {
                    "Enter your user name (name@domain) and your password."
                } else {
                    "Enter your password."
                };
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
        };
        let (outcome, path) = self.auth.authenticate(&username, password, source).await;
        info!(outcome = outcome.code(), path = ?path, operator = outcome.operator_text(), "sign-in");
        let user = if outcome == SignInOutcome::Success {
            let store = self.store.clone();
            let name = username.clone();
            store.user_by_upn(&name).await.ok().flatten()
        } else {
            None
        };
        let user = match (outcome, user) {
            (SignInOutcome::Success, Some(u)) if !u.disabled => u,
            (SignInOutcome::Success, Some(_)) => {
                let msg = SignInOutcome::AccountDisabled.user_message();
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
            (SignInOutcome::Success, None) => {
                warn!("password accepted by the directory, but the user is not in the directory store (not synchronised yet)");
                let msg = "Your password is correct, but your account has not been set up for sign-in here yet (it is not synchronised). Contact your help desk.";
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
            (o, _) => {
                let msg = self.outcome_message(o, &username, source).await;
                return Ok(self.retry_login(flow, &username, &msg, StatusCode::OK));
            }
        };
        // The flow signs in once: a copy of the form (same cookie, same token) cannot.
        if !self.flows.mark_used(&flow, SystemTime::now()) {
            return Err(self.flow_refused(FlowError::Used));
        }
        // A new session at every sign-in (the old cookie value is worthless from now on).
        if let Some(old) = old_session {
            self.sessions.end(&old);
        }
        let (cookie_value, session) = self.sessions.create(
            Identity {
                upn: user.upn,
                immutable_id: user.id.as_str().to_owned(),
                mail: user.mail,
                display_name: user.display_name,
            },
            self.cfg.session_lifetime,
            SystemTime::now(),
        );
        let cookie_value = Zeroizing::new(cookie_value);
        let mut r = self.complete(flow.target, &cookie_value, &session);
        set_cookie(
            &mut r,
            SSO_COOKIE,
            &cookie_value,
            Some(self.cfg.session_lifetime.as_secs()),
        );
        set_cookie(&mut r, LOGIN_COOKIE, "", Some(0));
        Ok(r)
    }

    async fn outcome_message(
        &self,
        o: SignInOutcome,
        username: &str,
        source: Option<std::net::IpAddr>,
    ) -> String {
        if o == SignInOutcome::AccountLocked {
            let account = self.auth.account_for(username).await;
            if let Some(d) =
                self.hub
                    .lockout()
                    .locked_for(&account, source, std::time::SystemTime::now())
            {
                let mins = d.as_secs().div_ceil(60).max(1);
                return format!(
                    "Your account is locked because of too many failed sign-in attempts. Try again in {mins} minute{}.",
                    if mins == 1 { "" } else { "s" }
                );
            }
        }
        o.user_message().to_owned()
    }

    async fn logout(&self, req: Request<Incoming>) -> Result<Resp, Resp> {
        let c = sso_cookie(&req);
        let now = SystemTime::now();
        let session = c.as_deref().and_then(|c| self.sessions.get(c, now));
        if req.method() == Method::GET {
            return Ok(match session {
                Some(s) => self.html(StatusCode::OK, pages::home(&s.upn, &s.csrf, &[]), "'self'"),
                None => self.html(
                    StatusCode::OK,
                    pages::message(
                        "Signed out",
                        "You are not signed in.",
                        Some(("/", "Sign in")),
                    ),
                    "'none'",
                ),
            });
        }
        let body = read_body(req, MAX_FORM).await?;
        let mut csrf = String::new();
        let mut next = None;
        for (k, v) in form_urlencoded::parse(&body) {
            match &*k {
                "csrf" => csrf = v.into_owned(),
                "next" => next = Some(v.into_owned()),
                _ => {}
            }
        }
        match (c, session) {
            (Some(c), Some(s)) => {
                use subtle::ConstantTimeEq;
                if !bool::from(s.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
                    return Err(self.error_page(
                        StatusCode::FORBIDDEN,
                        "Sign-out refused",
                        "The sign-out form was not issued to this session.",
                    ));
                }
                // What the confirmation page was shown for (a sign-out an application asked
                // for without a signature we could check), sealed into its form.
                let next = next
                    .map(|b| self.flows.open_logout(&b, now))
                    .transpose()
                    .map_err(|e| {
                        self.bad_request(&format!(
                            "The sign-out confirmation cannot be used: {e}. Nothing was ended."
                        ))
                    })?;
                let ended = self.sessions.end(&c);
                info!(
                    asked_by_application = next.is_some(),
                    "signed out at the endpoint"
                );
                // The session's applications are told one after the other, then the
                // application that asked (or the signed-out page).
                let mut r = match (ended, next) {
                    (Some(s), None) => self.next_logout(LogoutChain::new(&s, None)),
                    (Some(s), Some(LogoutNext::Saml(o))) => {
                        self.next_logout(LogoutChain::new(&s, Some(o)))
                    }
                    (_, Some(LogoutNext::WsFed { back: Some(u) })) => Self::redirect(&u),
                    _ => self.signed_out(),
                };
                set_cookie(&mut r, SSO_COOKIE, "", Some(0));
                Ok(r)
            }
            _ => Ok(self.signed_out()),
        }
    }

    /// "Sign out of Causeway?" for a sign-out that came without a signature we could
    /// verify (a plain link can send one): only the confirmed, CSRF-protected POST to
    /// `/logout` ends the session.
    fn confirm_logout(&self, s: &Session, next: &LogoutNext, app: Option<&str>) -> Resp {
        let sealed = self.flows.seal_logout(next, SystemTime::now());
        self.html(
            StatusCode::OK,
            pages::confirm_logout(&s.upn, &s.csrf, &sealed, app),
            "'self'",
        )
    }

    fn signed_out(&self) -> Resp {
        let mut r = self.html(
            StatusCode::OK,
            pages::message("Signed out", "You are signed out. Close the browser to end sessions that applications keep on their own.", Some(("/", "Sign in again"))),
            "'none'",
        );
        set_cookie(&mut r, SSO_COOKIE, "", Some(0));
        r
    }

    // ---- completing a flow -------------------------------------------------------------

    /// Answers at once for a browser with a session (unless the password is asked for
    /// again); otherwise keeps the request as a flow and sends the browser to sign in,
    /// or, when the application asked for no prompt, tells it the user is not signed in.
    fn proceed(&self, target: Target, prompt: Prompt, req: &Request<Incoming>) -> Resp {
        self.answer_without_page(target, prompt, req)
            .unwrap_or_else(|target| {
                let flow = self.flows.start(target, prompt, SystemTime::now());
                Self::redirect(&format!("/login?flow={flow}"))
            })
    }

    fn continue_flow(&self, blob: &str, req: &Request<Incoming>) -> Resp {
        let flow = match self.flows.open(blob, SystemTime::now()) {
            Ok(f) => f,
            Err(e) => return self.flow_refused(e),
        };
        match self.answer_without_page(flow.target, flow.prompt, req) {
            Ok(r) => r,
            // The same sealed state goes on to the sign-in page.
            Err(_) => Self::redirect(&format!(
                "/login?flow={}",
                form_urlencoded::byte_serialize(blob.as_bytes()).collect::<String>()
            )),
        }
    }

    /// The answer that needs no sign-in page: the assertion for a browser with a
    /// session (unless `prompt` is Always), or NoPassive when `prompt` is Never. Gives
    /// the target back when the user has to sign in.
    fn answer_without_page(
        &self,
        target: Target,
        prompt: Prompt,
        req: &Request<Incoming>,
    ) -> Result<Resp, Target> {
        if prompt != Prompt::Always {
            if let Some((c, s)) = self.session_of(req) {
                return Ok(self.complete(target, &c, &s));
            }
        }
        if prompt == Prompt::Never {
            return Ok(self.no_passive(target));
        }
        Err(target)
    }

    /// The answer to IsPassive without a usable session: a signed Response with status
    /// Responder / NoPassive, posted to the application, which then knows the user is not
    /// signed in without anything shown to them.
    fn no_passive(&self, target: Target) -> Resp {
        match target {
            Target::Saml {
                sp,
                acs,
                request_id,
                relay_state,
                ..
            } => {
                info!(app = %sp, "passive sign-in request without a session: answered NoPassive");
                let xml = messages::build_error_response(
                    &self.urls.entity_id,
                    &acs,
                    request_id.as_deref(),
                    saml::STATUS_RESPONDER,
                    Some(saml::STATUS_NO_PASSIVE),
                    SystemTime::now(),
                    &self.current_keys().signing,
                );
                self.send_saml(
                    true,
                    &acs,
                    "SAMLResponse",
                    &xml,
                    relay_state.as_deref(),
                    &sp,
                )
            }
            // Only SAML asks for passive sign-in.
            other => {
                let flow = self.flows.start(other, Prompt::IfNeeded, SystemTime::now());
                Self::redirect(&format!("/login?flow={flow}"))
            }
        }
    }

    fn complete(&self, target: Target, cookie_value: &str, s: &Session) -> Resp {
        let now = SystemTime::now();
        let keys = self.current_keys();
        match target {
            Target::Portal => Self::redirect("/"),
            Target::Saml {
                sp,
                acs,
                request_id,
                relay_state,
                name_id_format,
            } => {
                let name_id = match name_id_format.as_str() {
                    NAMEID_EMAIL => s.mail.clone().unwrap_or_else(|| s.upn.clone()),
                    NAMEID_UNSPECIFIED => s.upn.clone(),
                    _ => s.immutable_id.clone(),
                };
                let attrs = vec![
                    SamlAttribute {
                        name: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
                        friendly: "upn",
                        values: vec![s.upn.clone()],
                    },
                    SamlAttribute {
                        name: "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
                        friendly: "mail",
                        values: s.mail.iter().cloned().collect(),
                    },
                    SamlAttribute {
                        name: "http://schemas.microsoft.com/identity/claims/displayname",
                        friendly: "displayName",
                        values: s.display_name.iter().cloned().collect(),
                    },
                    SamlAttribute {
                        name: "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
                        friendly: "groups",
                        // Empty until the store holds groups (they come with sync).
                        values: Vec::new(),
                    },
                    SamlAttribute {
                        name: "http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID",
                        friendly: "immutableID",
                        values: vec![s.immutable_id.clone()],
                    },
                ];
                let xml = messages::build_response(
                    &messages::ResponseParams {
                        issuer: &self.urls.entity_id,
                        acs_url: &acs,
                        audience: &sp,
                        in_response_to: request_id.as_deref(),
                        name_id: &name_id,
                        name_id_format: &name_id_format,
                        session_index: &s.session_index,
                        authn_instant: s.authn_instant,
                        session_not_on_or_after: s.expires,
                        now,
                        validity: self.cfg.token_validity,
                        attributes: &attrs,
                    },
                    &keys.signing,
                );
                self.sessions.add_participant(
                    cookie_value,
                    Participant {
                        app: sp.clone(),
                        name_id,
                        format: name_id_format,
                    },
                );
                info!(app = %sp, "SAML assertion issued");
                self.send_saml(
                    true,
                    &acs,
                    "SAMLResponse",
                    &xml,
                    relay_state.as_deref(),
                    &sp,
                )
            }
            Target::WsFed { realm, reply, wctx } => {
                let rstr = crate::wsfed::build_rstr(
                    &crate::wsfed::TokenParams {
                        issuer: &self.urls.entity_id,
                        realm: &realm,
                        immutable_id: &s.immutable_id,
                        upn: &s.upn,
                        mail: s.mail.as_deref(),
                        display_name: s.display_name.as_deref(),
                        groups: &[],
                        authn_instant: s.authn_instant,
                        now,
                        validity: self.cfg.token_validity.max(Duration::from_secs(3600)),
                    },
                    &keys.signing,
                );
                self.sessions.add_participant(
                    cookie_value,
                    Participant {
                        app: realm.clone(),
                        name_id: s.immutable_id.clone(),
                        format: "wsfed".into(),
                    },
                );
                info!(realm = %realm, "WS-Federation token issued");
                let mut fields = vec![("wa", "wsignin1.0"), ("wresult", rstr.as_str())];
                if let Some(c) = wctx.as_deref() {
                    fields.push(("wctx", c));
                }
                let name = self.realm_name(&realm);
                self.html(
                    StatusCode::OK,
                    pages::autopost(&reply, &fields, &name),
                    origin(&reply),
                )
            }
        }
    }

    // ---- SAML ----------------------------------------------------------------------------

    /// Checks a message's signature against the application's registered certificates:
    /// true when one verified, false when the message is unsigned and the application
    /// does not promise to sign (the caller decides what an unsigned message may do).
    fn check_signature(
        &self,
        sp: &saml::ServiceProvider,
        msg: &binding::Inbound,
        root: &xml::Node,
        what: &str,
    ) -> Result<bool, Resp> {
        let keys: Vec<VerifiedKey> = sp.keys();
        let signed_xml = root.child(xml::ns::DS, "Signature").is_some();
        if let Some(sig) = &msg.redirect_signature {
            let mut ok = false;
            for k in &keys {
                match k.verify_raw(&sig.alg, &sig.signed, &sig.signature) {
                    Ok(true) => {
                        ok = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        return Err(self.bad_request(&format!(
                            "The {what} from {} is signed in a way we do not accept: {e}.",
                            sp.entity_id
                        )));
                    }
                }
            }
            if !ok {
                warn!(app = %sp.entity_id, "{what} signature does not verify");
                return Err(self.bad_request(&format!("The {what} from {} has a signature that does not verify with the certificate in its registered metadata.", sp.entity_id)));
            }
            return Ok(true);
        }
        if signed_xml || (sp.authn_requests_signed && !msg.redirect) {
            return xml::verify_enveloped(root, "ID", &keys)
                .map(|()| true)
                .map_err(|e| {
                    warn!(app = %sp.entity_id, error = %e, "{what} signature refused");
                    self.bad_request(&format!(
                        "The {what} from {} is not correctly signed: {e}.",
                        sp.entity_id
                    ))
                });
        }
        if sp.authn_requests_signed {
            return Err(self.bad_request(&format!(
                "{} signs its requests (its metadata says so), but this {what} is not signed.",
                sp.entity_id
            )));
        }
        Ok(false)
    }

    fn saml_sso_post(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
    ) -> Result<Resp, Resp> {
        let (target, prompt) = self.saml_target(msg)?;
        let flow = self.flows.start(target, prompt, SystemTime::now());
        // Cross-site POSTs carry no SameSite=Lax cookie: continue with a same-site GET so
        // that an SSO session is seen.
        Ok(Self::redirect(&format!("/saml/continue?flow={flow}")))
    }

    fn saml_sso(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
        req: &Request<Incoming>,
    ) -> Result<Resp, Resp> {
        let (target, prompt) = self.saml_target(msg)?;
        Ok(self.proceed(target, prompt, req))
    }

    /// Where a SAML AuthnRequest wants the answer, once every check has passed, and
    /// whether it asks for the password even with a session (ForceAuthn) or for no
    /// prompt at all (IsPassive). Both at once cannot be met: that is answered NoPassive
    /// at once (as the error side of the result, although it is a normal SAML answer).
    fn saml_target(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
    ) -> Result<(Target, Prompt), Resp> {
        let msg =
            msg.map_err(|e| self.bad_request(&format!("The SAML request is unreadable: {e}.")))?;
        if !msg.is_request {
            return Err(self.bad_request("Expected a SAMLRequest at the sign-on address."));
        }
        let req = AuthnRequest::parse(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The SAML request was refused: {e}.")))?;
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&req.issuer) else {
            warn!(issuer = %req.issuer.chars().take(200).collect::<String>(), "AuthnRequest from an unregistered application");
            return Err(self.bad_request(&format!("The application {:?} is not registered with this sign-in service. Ask your administrator to register it (causeway apps add).", req.issuer.chars().take(200).collect::<String>())));
        };
        let signed = self.check_signature(sp, &msg, &req.root, "sign-in request")?;
        let now = SystemTime::now();
        match &req.destination {
            Some(d) if d != &self.urls.sso => {
                return Err(self.bad_request(&format!(
                    "The request was meant for {:?}, not for this sign-in service ({}).",
                    d.chars().take(200).collect::<String>(),
                    self.urls.sso
                )));
            }
            // The signature covers Destination only if it is there (SAML bindings
            // 3.4.5.2 and 3.5.5.2 require it in signed requests): without it a signed
            // request for another IdP could be replayed here.
            None if signed => {
                return Err(self.bad_request(&format!(
                    "The signed request from {} names no Destination; a signed request must name this sign-in service ({}).",
                    sp.entity_id, self.urls.sso
                )));
            }
            _ => {}
        }
        // A signed request is good for a few minutes and for one answer; an unsigned one
        // proves nothing about when it was made, so these checks would mean nothing.
        let replay_until = if signed {
            Some(req.check_issue_instant(now).map_err(|e| {
                warn!(app = %sp.entity_id, "signed sign-in request outside its time window");
                self.bad_request(&format!("The sign-in request was refused: {e}."))
            })?)
        } else {
            None
        };
        if let Some(b) = &req.protocol_binding {
            if b != BINDING_POST {
                return Err(self.bad_request("The application asks for the answer over a binding other than HTTP-POST, which this sign-in service does not offer."));
            }
        }
        let acs = sp.acs_for(req.acs_url.as_deref(), req.acs_index).map_err(|u| {
            warn!(app = %sp.entity_id, acs = %u.chars().take(200).collect::<String>(), "AuthnRequest names an unregistered AssertionConsumerService");
            self.bad_request(&format!("The application asked for the answer to go to {:?}, which is not in its registered metadata. Nothing was sent.", u.chars().take(200).collect::<String>()))
        })?;
        let format = match req.name_id_format.as_deref() {
            None | Some(NAMEID_UNSPECIFIED) => sp
                .name_id_formats
                .iter()
                .find(|f| {
                    [NAMEID_PERSISTENT, NAMEID_EMAIL, NAMEID_UNSPECIFIED].contains(&f.as_str())
                })
                .cloned()
                .unwrap_or_else(|| NAMEID_PERSISTENT.to_owned()),
            Some(f @ (NAMEID_PERSISTENT | NAMEID_EMAIL)) => f.to_owned(),
            Some(f) => {
                return Err(self.bad_request(&format!("The application asks for the NameID format {:?}; this sign-in service issues persistent, emailAddress and unspecified.", f.chars().take(200).collect::<String>())));
            }
        };
        // Recorded last, once the request is known to be answerable.
        if let Some(until) = replay_until {
            if !self
                .seen_requests
                .first_use(&sp.entity_id, &req.id, until, now)
            {
                warn!(app = %sp.entity_id, "signed sign-in request replayed");
                return Err(self.bad_request(&format!(
                    "This sign-in request from {} was answered already (its ID {:?} was seen before); a request is used once. Go back to the application and sign in again.",
                    sp.entity_id, req.id
                )));
            }
        }
        let target = Target::Saml {
            sp: sp.entity_id.clone(),
            acs: acs.to_owned(),
            request_id: Some(req.id.clone()),
            relay_state: msg.relay_state.clone(),
            name_id_format: format,
        };
        match (req.is_passive, req.force_authn) {
            // A fresh sign-in that shows nothing cannot be done, session or not.
            (true, true) => Err(self.no_passive(target)),
            (true, false) => Ok((target, Prompt::Never)),
            (false, true) => Ok((target, Prompt::Always)),
            (false, false) => Ok((target, Prompt::IfNeeded)),
        }
    }

    fn idp_initiated(&self, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let Some(entity) = query_param(req, "sp") else {
            return Err(
                self.bad_request("Name the application: /saml/idp-init?sp=<its entity id>.")
            );
        };
        let relay = query_param(req, "RelayState");
        if let Some(n) = relay
            .as_ref()
            .map(String::len)
            .filter(|n| *n > binding::MAX_RELAY_STATE)
        {
            return Err(self.bad_request(&format!(
                "RelayState is {n} bytes long; at most {} are accepted.",
                binding::MAX_RELAY_STATE
            )));
        }
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&entity) else {
            return Err(self.bad_request(&format!(
                "The application {:?} is not registered with this sign-in service.",
                entity.chars().take(200).collect::<String>()
            )));
        };
        let acs = sp.acs_for(None, None).map_err(|_| {
            self.bad_request("The application has no HTTP-POST assertion consumer service.")
        })?;
        let format = sp
            .name_id_formats
            .iter()
            .find(|f| [NAMEID_PERSISTENT, NAMEID_EMAIL, NAMEID_UNSPECIFIED].contains(&f.as_str()))
            .cloned()
            .unwrap_or_else(|| NAMEID_PERSISTENT.to_owned());
        Ok(self.proceed(
            Target::Saml {
                sp: sp.entity_id.clone(),
                acs: acs.to_owned(),
                request_id: None,
                relay_state: relay,
                name_id_format: format,
            },
            Prompt::IfNeeded,
            req,
        ))
    }

    fn saml_slo(
        &self,
        msg: Result<binding::Inbound, binding::BindingError>,
        cookie_value: Option<Zeroizing<String>>,
    ) -> Result<Resp, Resp> {
        let msg = msg.map_err(|e| {
            self.bad_request(&format!("The SAML logout message is unreadable: {e}."))
        })?;
        if !msg.is_request {
            return self.logout_answered(&msg);
        }
        let lr = LogoutRequest::parse(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The logout request was refused: {e}.")))?;
        let apps = self.current_apps();
        let Some(sp) = apps.saml.get(&lr.issuer) else {
            return Err(self.bad_request(
                "The logout request comes from an application that is not registered.",
            ));
        };
        let signed = self.check_signature(sp, &msg, &lr.root, "logout request")?;
        if let Some(d) = &lr.destination {
            if d != &self.urls.slo {
                return Err(self.bad_request("The logout request was meant for another address."));
            }
        }
        if !signed {
            // Anybody can send an unsigned request (a plain link does it): it ends no
            // session by itself. With a session, its user is asked; without one there is
            // nothing of this browser's to end, and the application gets its answer.
            let origin = LogoutOrigin {
                app: sp.entity_id.clone(),
                request_id: lr.id.clone(),
                relay_state: msg.relay_state.clone(),
            };
            let session = cookie_value
                .as_deref()
                .and_then(|c| self.sessions.get(c, SystemTime::now()));
            info!(app = %sp.entity_id, with_session = session.is_some(), "unsigned logout request: asking the user to confirm");
            return Ok(match session {
                Some(s) => self.confirm_logout(&s, &LogoutNext::Saml(origin), Some(&sp.entity_id)),
                None => self.answer_logout(&origin, false),
            });
        }
        let by_cookie = cookie_value.as_deref().and_then(|c| {
            let s = self.sessions.get(c, SystemTime::now())?;
            s.participants
                .iter()
                .any(|p| p.app == sp.entity_id && p.name_id == lr.name_id)
                .then(|| self.sessions.end(c))
                .flatten()
        });
        let clear_cookie = by_cookie.is_some();
        let ended = by_cookie.or_else(|| {
            lr.session_indexes
                .iter()
                .find_map(|i| self.sessions.end_by_index(&sp.entity_id, &lr.name_id, i))
        });
        info!(app = %sp.entity_id, session_ended = ended.is_some(), "single logout requested by an application");
        let origin = LogoutOrigin {
            app: sp.entity_id.clone(),
            request_id: lr.id.clone(),
            relay_state: msg.relay_state.clone(),
        };
        let mut r = match ended {
            // The session's other applications are told first, then the one that asked.
            Some(s) => self.next_logout(LogoutChain::new(&s, Some(origin))),
            None => self.answer_logout(&origin, false),
        };
        if clear_cookie {
            set_cookie(&mut r, SSO_COOKIE, "", Some(0));
        }
        Ok(r)
    }

    /// A LogoutResponse from an application we sent a LogoutRequest to, as part of a
    /// single logout: checked, then on to the next application.
    fn logout_answered(&self, msg: &binding::Inbound) -> Result<Resp, Resp> {
        let (root, issuer, in_response_to, ok) = messages::parse_logout_response(&msg.xml)
            .map_err(|e| self.bad_request(&format!("The logout response was refused: {e}.")))?;
        let chain = msg
            .relay_state
            .as_deref()
            .and_then(|r| self.logouts.take(r));
        let Some((mut chain, (app, request_id))) =
            chain.and_then(|mut c| c.waiting_for.take().map(|w| (c, w)))
        else {
            // Not (or no longer) part of a logout here: the session is gone already.
            info!(app = %issuer.chars().take(200).collect::<String>(), success = ok, "logout response received outside a single logout");
            return Ok(self.signed_out());
        };
        if issuer != app || in_response_to.as_deref() != Some(request_id.as_str()) {
            warn!(app = %app, "logout response does not answer our logout request");
            return Err(self.bad_request(
                "The logout response does not answer this service's logout request.",
            ));
        }
        let apps = self.current_apps();
        if let Some(sp) = apps.saml.get(&app) {
            self.check_signature(sp, msg, &root, "logout response")?;
        }
        info!(app = %app, success = ok, "single logout: the application answered");
        chain.partial |= !ok;
        Ok(self.next_logout(chain))
    }

    /// Sends the browser to the next application of a single logout with a LogoutRequest,
    /// or, when every application has been told, answers the one that asked (or shows
    /// the signed-out page). Applications without a SAML logout service are skipped.
    fn next_logout(&self, mut chain: LogoutChain) -> Resp {
        let apps = self.current_apps();
        while let Some(p) = chain.pending.pop() {
            let Some(sp) = apps.saml.get(&p.app) else {
                continue;
            };
            let Some((binding_uri, location, _)) = sp.logout_endpoint() else {
                continue;
            };
            let keys = self.current_keys();
            let post = binding_uri != BINDING_REDIRECT;
            let (id, xml) = messages::build_logout_request(
                &self.urls.entity_id,
                location,
                &p.name_id,
                &p.format,
                &sp.entity_id,
                &chain.session_index,
                SystemTime::now(),
                post.then_some(&keys.signing),
            );
            chain.waiting_for = Some((sp.entity_id.clone(), id));
            let relay = self.logouts.park(chain);
            info!(app = %sp.entity_id, "single logout: sending a logout request to an application of the session");
            return self.send_saml(
                post,
                location,
                "SAMLRequest",
                &xml,
                Some(&relay),
                &sp.entity_id,
            );
        }
        match &chain.origin {
            Some(o) => self.answer_logout(o, chain.partial),
            None => self.signed_out(),
        }
    }

    /// The LogoutResponse to the application that asked for a logout.
    fn answer_logout(&self, origin: &LogoutOrigin, partial: bool) -> Resp {
        let LogoutOrigin {
            app,
            request_id,
            relay_state,
        } = origin;
        let apps = self.current_apps();
        let Some((binding_uri, _, response_url)) =
            apps.saml.get(app).and_then(|sp| sp.logout_endpoint())
        else {
            return self.signed_out();
        };
        let keys = self.current_keys();
        let post = binding_uri != BINDING_REDIRECT;
        let xml = messages::build_logout_response(
            &self.urls.entity_id,
            response_url,
            request_id,
            partial,
            SystemTime::now(),
            post.then_some(&keys.signing),
        );
        self.send_saml(
            post,
            response_url,
            "SAMLResponse",
            &xml,
            relay_state.as_deref(),
            app,
        )
    }

    /// Sends a SAML message through the browser: an auto-post form (the XML is signed
    /// already) or a redirect whose query string is signed (HTTP-Redirect binding).
    fn send_saml(
        &self,
        post: bool,
        url: &str,
        param: &str,
        xml: &str,
        relay_state: Option<&str>,
        app: &str,
    ) -> Resp {
        if post {
            let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
            let mut fields = vec![(param, encoded.as_str())];
            if let Some(rs) = relay_state {
                fields.push(("RelayState", rs));
            }
            return self.html(
                StatusCode::OK,
                pages::autopost(url, &fields, app),
                origin(url),
            );
        }
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair(param, &binding::deflate_encode(xml));
        if let Some(rs) = relay_state {
            q.append_pair("RelayState", rs);
        }
        q.append_pair("SigAlg", xml::ns::RSA_SHA256);
        let signed = q.finish();
        let sig = base64::engine::general_purpose::STANDARD
            .encode(self.current_keys().signing.sign_raw(signed.as_bytes()));
        let sig: String = form_urlencoded::byte_serialize(sig.as_bytes()).collect();
        let sep = if url.contains('?') { '&' } else { '?' };
        Self::redirect(&format!("{url}{sep}{signed}&Signature={sig}"))
    }

    // ---- WS-Federation -------------------------------------------------------------------

    fn wsfed(&self, req: &Request<Incoming>) -> Result<Resp, Resp> {
        let q = req.uri().query().unwrap_or("");
        if q.len() > 16 * 1024 {
            return Err(self.bad_request("The request is too large."));
        }
        let mut wa = None;
        let mut wtrealm = None;
        let mut wreply = None;
        let mut wctx = None;
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let slot = match &*k {
                "wa" => &mut wa,
                "wtrealm" => &mut wtrealm,
                "wreply" => &mut wreply,
                "wctx" => &mut wctx,
                _ => continue,
            };
            if slot.is_some() {
                return Err(self.bad_request(&format!("The parameter {k} appears more than once.")));
            }
            *slot = Some(v.into_owned());
        }
        let apps = self.current_apps();
        match wa.as_deref() {
            Some("wsignin1.0") => {
                let Some(realm) = wtrealm else {
                    return Err(self.bad_request(
                        "wtrealm is missing: which application is this sign-in for?",
                    ));
                };
                let Some(rp) = apps.wsfed.get(&realm) else {
                    warn!(realm = %realm.chars().take(200).collect::<String>(), "WS-Federation sign-in for an unregistered realm");
                    return Err(self.bad_request(&format!(
                        "The application {:?} is not registered with this sign-in service.",
                        realm.chars().take(200).collect::<String>()
                    )));
                };
                let reply = rp.reply_for(wreply.as_deref()).map_err(|u| {
                    warn!(realm = %realm, wreply = %u.chars().take(200).collect::<String>(), "wreply not registered");
                    self.bad_request(&format!("The reply address {:?} is not registered for this application. Nothing was sent.", u.chars().take(200).collect::<String>()))
                })?;
                if let Some(n) = wctx.as_ref().map(String::len).filter(|n| *n > MAX_WCTX) {
                    return Err(self.bad_request(&format!(
                        "wctx is {n} bytes long; at most {MAX_WCTX} are accepted."
                    )));
                }
                Ok(self.proceed(
                    Target::WsFed {
                        realm: realm.clone(),
                        reply: reply.to_owned(),
                        wctx,
                    },
                    Prompt::IfNeeded,
                    req,
                ))
            }
            Some("wsignout1.0" | "wsignoutcleanup1.0") => {
                // Back to the application only if it is a registered reply URL.
                let back = wreply.as_deref().and_then(|w| {
                    apps.wsfed
                        .values()
                        .find_map(|rp| rp.reply_urls.iter().find(|u| *u == w))
                });
                // A WS-Federation sign-out is a plain GET that any page can cause: with a
                // session, its user confirms it first.
                if let Some((_, s)) = self.session_of(req) {
                    info!("WS-Federation sign-out: asking the user to confirm");
                    return Ok(self.confirm_logout(
                        &s,
                        &LogoutNext::WsFed {
                            back: back.cloned(),
                        },
                        None,
                    ));
                }
                let mut r = match back {
                    Some(u) => Self::redirect(u),
                    None => self.html(
                        StatusCode::OK,
                        pages::message("Signed out", "You are signed out.", None),
                        "'none'",
                    ),
                };
                set_cookie(&mut r, SSO_COOKIE, "", Some(0));
                Ok(r)
            }
            Some(other) => Err(self.bad_request(&format!(
                "wa={:?} is not supported (wsignin1.0 and wsignout1.0 are).",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(self.bad_request("wa is missing.")),
        }
    }

    pub(crate) fn current_verified_keys(&self) -> Vec<VerifiedKey> {
        self.current_keys()
            .published
            .iter()
            .filter_map(|c| VerifiedKey::from_cert_base64(c).ok())
            .collect()
    }
}

/// A cookie's value from the request.
pub(crate) fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    for h in req.headers().get_all(COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, v)) = part.trim().split_once('=') {
                if k == name && !v.is_empty() && v.len() <= 128 {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// The SSO cookie's value, in a buffer zeroized when dropped (it is as good as the
/// password for the session's lifetime).
pub(crate) fn sso_cookie(req: &Request<Incoming>) -> Option<Zeroizing<String>> {
    cookie(req, SSO_COOKIE).map(Zeroizing::new)
}

pub(crate) fn set_cookie(r: &mut Resp, name: &str, value: &str, max_age: Option<u64>) {
    // Zeroized when done: it may carry the SSO cookie value (the header keeps its own copy).
    let mut c = Zeroizing::new(format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    ));
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    let Ok(v) = HeaderValue::from_str(&c) else {
        return;
    };
    // One Set-Cookie per name: a later call replaces an earlier one.
    let prefix = format!("{name}=");
    let others: Vec<HeaderValue> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter(|h| !h.as_bytes().starts_with(prefix.as_bytes()))
        .cloned()
        .collect();
    let h = r.headers_mut();
    h.remove(SET_COOKIE);
    for o in others {
        h.append(SET_COOKIE, o);
    }
    h.append(SET_COOKIE, v);
}

pub(crate) fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    if q.len() > 16 * 1024 {
        return None;
    }
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn too_large() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(b"request body too large\n")));
    *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    r
}

fn too_slow() -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(b"request body too slow\n")));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r
}

/// Reads a body that holds a secret (the sign-in form) into one zeroizing buffer of
/// `max` bytes, allocated up front so that it never moves (a reallocation would leave the
/// old copy behind). Each chunk hyper hands over is wiped once copied when nothing else
/// holds it; what hyper's own read buffer keeps is out of reach.
pub(crate) async fn read_secret_body(
    req: Request<Incoming>,
    max: usize,
) -> Result<Zeroizing<Vec<u8>>, Resp> {
    use zeroize::Zeroize;
    fn wipe(b: Bytes) {
        if let Ok(mut m) = b.try_into_mut() {
            m.as_mut().zeroize();
        }
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        // The same answer as read_body, including its bounded drain.
        return read_body(req, max)
            .await
            .map(|_| Zeroizing::new(Vec::new()));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(max));
    let mut body = req.into_body();
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(too_large());
            };
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > max {
                    wipe(data);
                    return Err(too_large());
                }
                out.extend_from_slice(&data);
                wipe(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(30), read).await {
        Ok(Ok(())) => Ok(out),
        Ok(Err(r)) => Err(r),
        Err(_) => Err(too_slow()),
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` and `%XX`) into a
/// zeroizing buffer sized up front. `form_urlencoded` would leave unzeroized
/// intermediate copies for values with `+` or `%XX`: a password nearly always has one.
fn form_decode(s: &[u8]) -> Zeroizing<Vec<u8>> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                s.get(i + 1).and_then(|b| hex(*b)),
                s.get(i + 2).and_then(|b| hex(*b)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                // Not an escape: kept as it is, as form_urlencoded does.
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The fields of a URL-encoded form, names and values decoded into zeroizing buffers.
fn form_fields(body: &[u8]) -> impl Iterator<Item = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>)> + '_ {
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (form_decode(k), form_decode(v))
        })
}

/// Reads a body of at most `max` bytes; a larger one gets 413.
pub(crate) async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Resp> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        // Read and drop a moderately oversized body (bounded, with the same timeout) so
        // that the 413 is not lost to a connection reset; beyond 1 MiB answer at once.
        if n <= 1024 * 1024 {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                Limited::new(req.into_body(), 1024 * 1024).collect(),
            )
            .await;
        }
        return Err(too_large());
    }
    match tokio::time::timeout(
        Duration::from_secs(30),
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(too_slow()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_decode_like_form_urlencoded_into_zeroizing_buffers() {
        let body = b"flow=a%2Bb&csrf=&username=carla%40x.test&password=p+w%C3%A9%25%zz%4&odd&=v";
        let ours: Vec<(Vec<u8>, Vec<u8>)> = form_fields(body)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let theirs: Vec<(Vec<u8>, Vec<u8>)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(ours, theirs);
        assert_eq!(ours[3].1, "p wé%%zz%4".as_bytes());
        assert_eq!(&form_decode(b"%41%42%43")[..], b"ABC");
    }
}
