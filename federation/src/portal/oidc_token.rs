//! The OpenID Provider's back-channel endpoints: token (RFC 6749 §4.1.3, with PKCE),
//! UserInfo, revocation (RFC 7009) and introspection (RFC 7662), all with bounded forms.
//! It must never tell a client that failed authentication anything about a user or a
//! code, nor answer for a token another client holds.

use std::sync::Arc;
use std::time::SystemTime;

use causeway_oidc::params::{Params, MAX_INPUT};
use causeway_oidc::token::{self as tok, Grant};
use causeway_oidc::{ClientAuth, ErrorCode, OAuthError};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, StatusCode};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::http::{read_secret_body, Resp};
use super::oidc::{invalid_grant, json, oauth_error, unix};
use super::oidc_refresh::{RefreshGrant, RefreshRefused};
use super::oidc_state::{CodeRefused, TokenEntry, User};
use super::Portal;

/// What a token response is made of: a redeemed code's or refresh token's sign-in.
struct Issue {
    sub: String,
    scopes: Vec<String>,
    user: User,
    auth_time: SystemTime,
    sid: String,
    nonce: Option<String>,
    /// The code it was redeemed from (its tokens are revoked if it is presented again).
    code: Option<Zeroizing<String>>,
    /// The refresh-token family and its end, when refreshed.
    family: Option<([u8; 16], SystemTime)>,
}

impl Portal {
    /// Reads a client-authenticated form (token, revocation, introspection): the form and
    /// the authenticated client's id, or the error answer.
    async fn client_form(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Params, causeway_oidc::Client), Resp> {
        let authz = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| Zeroizing::new(v.to_owned()));
        // The body may hold the client secret.
        let body = read_secret_body(req, MAX_INPUT).await?;
        self.authenticated_form(authz.as_deref().map(String::as_str), &body)
    }

    /// The form of a client-authenticated request and its client, or the error answer.
    fn authenticated_form(
        &self,
        authz: Option<&str>,
        body: &[u8],
    ) -> Result<(Params, causeway_oidc::Client), Resp> {
        let basic = authz.is_some();
        let form = Params::parse(body).map_err(|e| oauth_error(&e, basic))?;
        let auth = ClientAuth::from_request(authz, &form).map_err(|e| oauth_error(&e, basic))?;
        let apps = self.current_apps();
        let audiences = [
            self.oidc_endpoints.token.as_str(),
            self.oidc_endpoints.issuer.as_str(),
        ];
        let now = SystemTime::now();
        match auth.authenticate_at(apps.oidc.get(auth.client_id()), &audiences, unix(now)) {
            Ok((c, None)) => Ok((form, c.clone())),
            Ok((c, Some(v))) => {
                if self.oidc.assertion_used(&c.client_id, &v.jti, v.exp, now) {
                    warn!(client = %c.client_id, "a client assertion was presented twice");
                    return Err(oauth_error(
                        &OAuthError::new(
                            ErrorCode::InvalidClient,
                            "the client assertion was used before",
                        ),
                        false,
                    ));
                }
                Ok((form, c.clone()))
            }
            Err(e) => {
                let method = match &auth {
                    ClientAuth::Basic { .. } => "client_secret_basic",
                    ClientAuth::Post { .. } => "client_secret_post",
                    ClientAuth::None { .. } => "none",
                    ClientAuth::PrivateKeyJwt { .. } => "private_key_jwt",
                };
                warn!(method, "OpenID Connect client authentication failed");
                Err(oauth_error(&e, basic))
            }
        }
    }

    pub(super) async fn token(&self, req: Request<Incoming>) -> Resp {
        let authz = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| Zeroizing::new(v.to_owned()));
        match read_secret_body(req, MAX_INPUT).await {
            Ok(body) => self.token_request(authz.as_deref().map(String::as_str), &body),
            Err(r) => r,
        }
    }

    /// Answers a token request (its `Authorization` header and form body) as the token
    /// endpoint does; for applications mounted in the same process (the demo client, the
    /// benchmark), which have no need of a second TLS connection to themselves.
    pub fn token_request(&self, authorization: Option<&str>, body: &[u8]) -> Resp {
        let (form, client) = match self.authenticated_form(authorization, body) {
            Ok(f) => f,
            Err(r) => return r,
        };
        match self.token_for(&form, &client) {
            Ok(r) => r,
            Err(e) => {
                info!(client = %client.client_id, error = e.code.as_str(), "token request refused");
                oauth_error(&e, false)
            }
        }
    }

    fn token_for(&self, form: &Params, client: &causeway_oidc::Client) -> Result<Resp, OAuthError> {
        let now = SystemTime::now();
        let issue = match Grant::parse(form)? {
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => self.code_grant(client, code, &redirect_uri, code_verifier.as_deref(), now)?,
            Grant::RefreshToken {
                refresh_token,
                scope,
            } => {
                let g = self
                    .oidc_refresh
                    .take(&refresh_token, &client.client_id, now, |granted| {
                        scope
                            .as_ref()
                            .is_none_or(|asked| asked.iter().all(|s| granted.contains(s)))
                    })
                    .map_err(|(r, sub)| match r {
                        RefreshRefused::Unknown => {
                            invalid_grant("the refresh token is unknown, expired or revoked")
                        }
                        RefreshRefused::OtherClient => {
                            invalid_grant("the refresh token was issued to another client")
                        }
                        RefreshRefused::Reused => {
                            warn!(client = %client.client_id, "a refresh token was used twice; its family and the user's access tokens at this client are revoked");
                            if let Some(sub) = sub {
                                self.oidc.revoke_sub(&client.client_id, &sub);
                            }
                            invalid_grant("the refresh token was already used; every token of its sign-in is revoked")
                        }
                        RefreshRefused::Scope => OAuthError::new(
                            ErrorCode::InvalidScope,
                            "a refresh may ask for the granted scopes or fewer, not more",
                        ),
                        RefreshRefused::Storage => OAuthError::new(
                            ErrorCode::ServerError,
                            "the refresh-token store cannot be read",
                        ),
                    })?;
                // RFC 6749 §6: the same scopes or fewer, never more.
                let scopes = match scope {
                    None => g.scopes,
                    Some(asked) if asked.iter().all(|s| g.scopes.contains(s)) => {
                        g.scopes.into_iter().filter(|s| asked.contains(s)).collect()
                    }
                    Some(_) => {
                        return Err(OAuthError::new(
                            ErrorCode::InvalidScope,
                            "a refresh may ask for the granted scopes or fewer, not more",
                        ))
                    }
                };
                Issue {
                    sub: g.sub,
                    scopes,
                    user: g.user,
                    auth_time: g.auth_time,
                    sid: g.sid,
                    nonce: None,
                    code: None,
                    family: Some((g.family, g.expires)),
                }
            }
        };
        self.issue_tokens(client, issue, now)
    }

    /// Redeems a code: once, for its client, with its redirect URI and PKCE verifier.
    fn code_grant(
        &self,
        client: &causeway_oidc::Client,
        code: Zeroizing<String>,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        now: SystemTime,
    ) -> Result<Issue, OAuthError> {
        let g = self
            .oidc
            .redeem(&code, &client.client_id, now)
            .map_err(|r| match r {
                CodeRefused::Unknown => invalid_grant("the code is unknown or expired"),
                CodeRefused::OtherClient => invalid_grant("the code was issued to another client"),
                CodeRefused::Reused => {
                    warn!(client = %client.client_id, "an authorization code was redeemed twice; the tokens issued from it are revoked");
                    invalid_grant("the code was already used; the tokens issued from it are revoked")
                }
            })?;
        if g.request.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        match (&g.request.code_challenge, code_verifier) {
            (Some(ch), Some(v)) if causeway_oidc::pkce::verifies(ch, v) => {}
            (Some(_), Some(_)) => {
                return Err(invalid_grant(
                    "the code_verifier does not match the code_challenge",
                ))
            }
            (Some(_), None) => {
                return Err(invalid_grant(
                    "code_verifier is missing (the authorization request had a code_challenge)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "code_verifier given, but the authorization request had no code_challenge",
                ))
            }
            (None, None) => {}
        }
        Ok(Issue {
            sub: g.sub,
            scopes: g.request.scopes,
            user: g.user,
            auth_time: g.auth_time,
            sid: g.sid,
            nonce: g.request.nonce,
            code: Some(code),
            family: None,
        })
    }

    /// Signs and records the access token and ID token, and, with `offline_access`, the
    /// next refresh token of the sign-in's family.
    fn issue_tokens(
        &self,
        client: &causeway_oidc::Client,
        g: Issue,
        now: SystemTime,
    ) -> Result<Resp, OAuthError> {
        let keys = self.current_keys();
        let lifetime = self.cfg.token_validity.as_secs();
        let jti = causeway_oidc::random_token();
        let issuer = &self.oidc_endpoints.issuer;
        let signed = |typ: &str, claims: &serde_json::Value| {
            keys.oidc.sign(typ, claims).map_err(|_| {
                warn!("cannot sign an OpenID Connect token");
                OAuthError::new(ErrorCode::ServerError, "the token could not be signed")
            })
        };
        let access = Zeroizing::new(signed(
            tok::ACCESS_TOKEN_TYP,
            &tok::access_token_claims(&tok::AccessTokenParams {
                issuer,
                audience: &self.oidc_endpoints.userinfo,
                client_id: &client.client_id,
                sub: &g.sub,
                scopes: &g.scopes,
                jti: &jti,
                auth_time: unix(g.auth_time),
                now: unix(now),
                lifetime,
            }),
        )?);
        let id_token = signed(
            "JWT",
            &tok::id_token_claims(&tok::IdTokenParams {
                issuer,
                client_id: &client.client_id,
                sub: &g.sub,
                nonce: g.nonce.as_deref(),
                auth_time: unix(g.auth_time),
                now: unix(now),
                lifetime,
                access_token: &access,
                sid: &g.sid,
            }),
        )?;
        let refresh = if g.scopes.iter().any(|s| s == "offline_access") {
            let (family, expires) = g.family.unwrap_or_else(|| {
                let mut f = [0u8; 16];
                getrandom::fill(&mut f).expect("OS random generator");
                (f, now + super::oidc_refresh::FAMILY_TTL)
            });
            let r = self
                .oidc_refresh
                .issue(
                    &RefreshGrant {
                        family,
                        client_id: client.client_id.clone(),
                        sub: g.sub.clone(),
                        scopes: g.scopes.clone(),
                        user: g.user.clone(),
                        auth_time: g.auth_time,
                        sid: g.sid.clone(),
                        expires,
                    },
                    now,
                )
                .map_err(|_| {
                    warn!("cannot write the refresh-token store");
                    OAuthError::new(
                        ErrorCode::ServerError,
                        "the refresh token could not be stored",
                    )
                })?;
            Some(Zeroizing::new(r))
        } else {
            None
        };
        let entry = TokenEntry {
            client_id: client.client_id.clone(),
            sub: g.sub.clone(),
            scopes: g.scopes.clone(),
            user: g.user,
            expires: now + self.cfg.token_validity,
            issued_at: now,
        };
        if !self
            .oidc
            .record_token(g.code.as_deref().map(String::as_str), &access, entry, now)
        {
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many live tokens; try again later",
            ));
        }
        info!(client = %client.client_id, refreshed = g.code.is_none(), "OpenID Connect tokens issued");
        let mut body = serde_json::json!({
            "access_token": access.as_str(),
            "token_type": "Bearer",
            "expires_in": lifetime,
            "id_token": id_token,
            "scope": g.scopes.join(" "),
        });
        if let Some(r) = &refresh {
            body["refresh_token"] = serde_json::json!(r.as_str());
        }
        Ok(json(StatusCode::OK, body.to_string(), false))
    }

    /// The UserInfo answer for an access token, as the endpoint gives it.
    pub fn userinfo_of(&self, token: &str) -> Resp {
        let bad = || {
            oauth_error(
                &OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token is missing, expired or revoked",
                ),
                false,
            )
        };
        if token.len() > causeway_oidc::jwt::MAX_JWT {
            return bad();
        }
        let Some(t) = self.oidc.token(token, SystemTime::now()) else {
            return bad();
        };
        let u = &t.user;
        let claims = tok::userinfo_claims(
            &t.sub,
            &t.scopes,
            &tok::UserClaims {
                upn: &u.upn,
                mail: u.mail.as_deref(),
                display_name: u.display_name.as_deref(),
                groups: &u.groups,
            },
        );
        json(StatusCode::OK, claims.to_string(), false)
    }

    /// The OpenID Connect issuer (the public URL).
    pub fn oidc_issuer(&self) -> &str {
        &self.oidc_endpoints.issuer
    }

    /// The keys an ID token may be checked with now (the JWKS).
    pub fn oidc_published_keys(&self) -> Vec<causeway_oidc::jwt::PublishedKey> {
        self.current_keys().oidc_published.clone()
    }

    /// The key OpenID Connect tokens are signed with now (for the benchmark's bound).
    pub fn oidc_signer(&self) -> Arc<causeway_oidc::Signer> {
        self.current_keys().oidc.clone()
    }

    pub(super) async fn userinfo(&self, req: Request<Incoming>) -> Resp {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| Zeroizing::new(v.to_owned()));
        let token = match header {
            Some(h) => h
                .strip_prefix("Bearer ")
                .map(|t| Zeroizing::new(t.trim().to_owned())),
            // RFC 6750 §2.2: the form body of a POST.
            None if req.method() == Method::POST => {
                let body = match read_secret_body(req, MAX_INPUT).await {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                Params::parse(&body)
                    .ok()
                    .and_then(|p| p.get("access_token").map(|t| Zeroizing::new(t.to_owned())))
            }
            None => None,
        };
        self.userinfo_of(token.as_deref().map_or("", String::as_str))
    }

    /// The authenticated client and the `token` parameter its request names (RFC 7009
    /// and RFC 7662 both need it): an OAuth error when either is missing.
    async fn client_and_token(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Zeroizing<String>, causeway_oidc::Client), Resp> {
        let (form, client) = self.client_form(req).await?;
        let Some(token) = form.get("token") else {
            return Err(oauth_error(
                &OAuthError::new(ErrorCode::InvalidRequest, "token is missing"),
                false,
            ));
        };
        Ok((Zeroizing::new(token.to_owned()), client))
    }

    /// RFC 7009: always 200 for an authenticated client, whether or not the token was
    /// live (so it says nothing about other clients' tokens).
    pub(super) async fn revoke(&self, req: Request<Incoming>) -> Resp {
        let (token, client) = match self.client_and_token(req).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let token = token.as_str();
        if self.oidc.revoke(token, &client.client_id) {
            info!(client = %client.client_id, "access token revoked");
        } else if self.oidc_refresh.revoke(token, &client.client_id) {
            info!(client = %client.client_id, "refresh token family revoked");
        }
        json(StatusCode::OK, String::new(), false)
    }

    /// RFC 7662, for the client the token was issued to: anything else is `active: false`.
    pub(super) async fn introspect(&self, req: Request<Incoming>) -> Resp {
        let (token, client) = match self.client_and_token(req).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let token = token.as_str();
        let body = match self.oidc.token(token, SystemTime::now()) {
            Some(t) if t.client_id == client.client_id => serde_json::json!({
                "active": true,
                "scope": t.scopes.join(" "),
                "client_id": t.client_id,
                "sub": t.sub,
                "exp": unix(t.expires),
                "iat": unix(t.issued_at),
                "iss": self.oidc_endpoints.issuer,
                "token_type": "Bearer",
            }),
            _ => match self
                .oidc_refresh
                .live(token, &client.client_id, SystemTime::now())
            {
                Some((sub, scopes, exp)) => serde_json::json!({
                    "active": true,
                    "scope": scopes.join(" "),
                    "client_id": client.client_id,
                    "sub": sub,
                    "exp": unix(exp),
                    "iss": self.oidc_endpoints.issuer,
                    "token_type": "refresh_token",
                }),
                None => serde_json::json!({ "active": false }),
            },
        };
        json(StatusCode::OK, body.to_string(), false)
    }
}
