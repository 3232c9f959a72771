//! The start page and the sign-in form: showing it bound to this browser, checking the
//! posted form (anti-forgery token, browser binding, used once), the password, and what
//! the page then says. It must never echo a password, nor sign in twice with one form.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use causeway_credential::{Password, SignInOutcome};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use tracing::{info, warn};
use zeroize::Zeroizing;

use crate::session::{token_hash, Flow, FlowError, Prompt, Session, Target};
use causeway_store::UserRecord;

use super::http::{cookie, query_param, read_secret_body, set_cookie, sso_cookie, Resp};
use super::login_rules::{self, after_password, parse_login_form, AfterPassword, LoginForm};
use super::{claims, pages, Portal, LOGIN_COOKIE, MAX_FORM, SSO_COOKIE};

impl Portal {
    pub(super) fn session_of(
        &self,
        req: &Request<Incoming>,
    ) -> Option<(Zeroizing<String>, Session)> {
        let c = sso_cookie(req)?;
        let s = self.sessions.get(&c, SystemTime::now())?;
        Some((c, s))
    }

    pub(super) fn home(&self, req: &Request<Incoming>) -> Resp {
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
                        let name = apps.saml_settings.get(id).and_then(|s| s.name.clone());
                        (
                            format!("/saml/idp-init?{q}"),
                            name.unwrap_or_else(|| id.clone()),
                        )
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

    pub(super) fn login_page(&self, req: &Request<Incoming>) -> Resp {
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
            Ok(flow) => {
                let hint = Self::oidc_login_hint(&flow.target).unwrap_or_default();
                self.render_login(&flow, &hint, None, StatusCode::OK)
            }
            Err(e) => self.flow_refused(e),
        }
    }

    /// The page for sign-in state that cannot be used, saying why.
    pub(super) fn flow_refused(&self, e: FlowError) -> Resp {
        let (status, title, text) = login_rules::flow_refusal(e);
        self.error_page(status, title, text)
    }

    pub(super) fn app_name(&self, t: &Target) -> Option<String> {
        match t {
            Target::Saml { sp, .. } => Some(self.saml_app_name(sp)),
            Target::WsFed { realm, .. } => Some(self.realm_name(realm)),
            Target::Oidc { client_id, .. } => Some(self.oidc_client_name(client_id)),
            Target::Portal => None,
        }
    }

    /// A relying party's display name, or its realm.
    pub(super) fn realm_name(&self, realm: &str) -> String {
        self.current_apps()
            .wsfed
            .get(realm)
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| realm.to_owned())
    }

    /// Shows the form again with `message` (a failed attempt keeps its flow).
    pub(super) fn retry_login(
        &self,
        flow: Flow,
        username: &str,
        message: &str,
        status: StatusCode,
    ) -> Resp {
        self.render_login(&flow, username, Some(message), status)
    }

    /// The sign-in form, with the flow sealed again for this browser: a new login cookie
    /// and a new anti-forgery token at every rendering.
    pub(super) fn render_login(
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

    pub(super) async fn login_post(
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
        let form = parse_login_form(&body).map_err(|e| self.bad_request(&e.to_string()))?;
        let LoginForm {
            flow: flow_id,
            csrf,
            username,
            password,
        } = form;
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
        if let Some(msg) = login_rules::username_too_long(&username) {
            return Ok(self.retry_login(flow, "", msg, StatusCode::BAD_REQUEST));
        }
        // Moved, not copied, into the secret type (which zeroizes it if it refuses it).
        let pw = password.map(|mut p| Password::from_utf8(std::mem::take(&mut *p)));
        let password = match pw {
            Some(Ok(p)) if !username.is_empty() => p,
            _ => {
                let msg = login_rules::missing_credentials(&username);
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
        };
        let trace = self
            .auth
            .authenticate_traced(&username, password, source)
            .await;
        let (outcome, path) = (trace.outcome, trace.path);
        // The name as typed is not a secret, and says whom the line is about; quoted
        // (Debug) so that what a client typed cannot forge log lines. The client is the
        // address through trusted proxies.
        let client = source.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        info!(user = ?username, %client, outcome = outcome.code(), path = ?path, operator = outcome.operator_text(), "sign-in");
        crate::audit::record(crate::audit::Event::password_check(
            &username,
            source,
            flow.target.app_id(),
            path.label(),
            trace.agent.as_deref(),
            outcome.code(),
        ));
        let user = if outcome == SignInOutcome::Success {
            self.user_after_password(&username).await
        } else {
            None
        };
        let user = match after_password(outcome, user) {
            AfterPassword::SignIn(u) => u,
            AfterPassword::Disabled => {
                let msg = SignInOutcome::AccountDisabled.user_message();
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
            AfterPassword::NotSynchronised => {
                warn!(user = ?username, %client, "password accepted by the directory, but the user is not in the directory store (not synchronised yet)");
                let msg = login_rules::NOT_SYNCHRONISED;
                return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
            }
            AfterPassword::Failed(o) => {
                let msg = self.outcome_message(o, &username, source).await;
                return Ok(self.retry_login(flow, &username, &msg, StatusCode::OK));
            }
        };
        let Some(groups) = self.groups_at_sign_in(&user).await else {
            let msg = SignInOutcome::DirectoryUnavailable.user_message();
            return Ok(self.retry_login(flow, &username, msg, StatusCode::OK));
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
            claims::identity_of(user, groups),
            self.cfg.session_lifetime,
            SystemTime::now(),
        );
        let cookie_value = Zeroizing::new(cookie_value);
        if let Some(app) = flow.target.app_id() {
            crate::audit::record(crate::audit::Event::token_issued(
                &session.upn,
                source,
                app,
                path.label(),
            ));
        }
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

    /// The store's record of a user whose password the directory accepted: the one place
    /// the sign-in reads the store (a failed read counts as no record).
    pub(super) async fn user_after_password(&self, username: &str) -> Option<UserRecord> {
        self.store.user_by_upn(username).await.ok().flatten()
    }

    /// The names of the groups `user` is in, directly or nested, for the session's
    /// groups claim; `None` when the store cannot say (the sign-in is refused as a
    /// directory outage rather than issuing a token with groups missing, which an
    /// application could read as fewer rights, or as none of its deny groups).
    pub(super) async fn groups_at_sign_in(&self, user: &UserRecord) -> Option<Vec<String>> {
        match self.synced.groups_of(user.id.as_str()).await {
            Ok(groups) => {
                if groups.len() > claims::MAX_GROUPS {
                    warn!(
                        groups = groups.len(),
                        kept = claims::MAX_GROUPS,
                        "the user is in more groups than the groups claim carries; the first by name are sent"
                    );
                }
                Some(groups)
            }
            Err(e) => {
                warn!(error = %e, "cannot read the user's groups; sign-in refused");
                None
            }
        }
    }

    pub(super) async fn outcome_message(
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
                return login_rules::locked_message(d);
            }
        }
        o.user_message().to_owned()
    }
}
