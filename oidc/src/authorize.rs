//! The authorization request (OIDC Core §3.1.2.1): parsed from bounded parameters and
//! checked against the registered client. A request that does not name a registered
//! client and one of its exact redirect URIs is [`Refused::Page`]: it is shown to the
//! user and never redirected anywhere (RFC 6749 §4.1.2.1). Every other problem goes
//! back to that redirect URI as an OAuth error.

use crate::client::{Client, MAX_CLIENT_ID, MAX_REDIRECT_URI};
use crate::error::{invalid_request, ErrorCode, OAuthError};
use crate::params::Params;

/// Most bytes of `state`.
pub const MAX_STATE: usize = 1024;
/// Most bytes of `nonce`.
pub const MAX_NONCE: usize = 512;
/// Most bytes of `scope`.
pub const MAX_SCOPE: usize = 1024;
/// Most bytes of `login_hint`.
pub const MAX_LOGIN_HINT: usize = 256;
/// The scopes this provider knows; others are left out of the grant (RFC 6749 §3.3).
pub const SCOPES: &[&str] = &["openid", "profile", "email", "groups", "offline_access"];

/// How the answer reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ResponseMode {
    /// In the redirect URI's query.
    Query,
    /// Posted as a form (OAuth 2.0 Form Post Response Mode).
    FormPost,
}

/// What the client asked about the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PromptKind {
    /// Only without a session.
    IfNeeded,
    /// `prompt=none`: never; without a session the answer is `login_required`.
    None,
    /// `prompt=login`: always, even with a session.
    Login,
}

/// A checked authorization request.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizeRequest {
    /// The client.
    pub client_id: String,
    /// One of its registered redirect URIs.
    pub redirect_uri: String,
    /// The granted scopes (known ones, in [`SCOPES`] order), `openid` among them.
    pub scopes: Vec<String>,
    /// Echoed to the client.
    pub state: Option<String>,
    /// Put into the ID token.
    pub nonce: Option<String>,
    /// How the answer is sent.
    pub response_mode: ResponseMode,
    /// The sign-in page: if needed, never, or always.
    pub prompt: PromptKind,
    /// `max_age` in seconds.
    pub max_age: Option<u64>,
    /// The PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// A name to fill the sign-in form with.
    pub login_hint: Option<String>,
}

// state and nonce are the client's secrets as much as anything: left out.
impl std::fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("response_mode", &self.response_mode)
            .field("prompt", &self.prompt)
            .field("max_age", &self.max_age)
            .field("pkce", &self.code_challenge.is_some())
            .finish_non_exhaustive()
    }
}

/// Why an authorization request is not answered with a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Shown to the user, never redirected: the client or redirect URI is not registered
    /// (or cannot be read).
    Page(String),
    /// Sent to the client at its registered redirect URI.
    Redirect {
        /// Where.
        redirect_uri: String,
        /// How.
        mode: ResponseMode,
        /// The request's `state`, echoed.
        state: Option<String>,
        /// What went wrong.
        error: OAuthError,
    },
}

impl AuthorizeRequest {
    /// Parses and checks a request; `client` looks a registered client up by id.
    pub fn parse<'a>(
        input: &[u8],
        client: impl FnOnce(&str) -> Option<&'a Client>,
    ) -> Result<(Self, &'a Client), Refused> {
        let p = Params::parse(input).map_err(|e| Refused::Page(e.description))?;
        let page = |e: OAuthError| Refused::Page(e.description);
        let client_id = p.required("client_id", MAX_CLIENT_ID).map_err(page)?;
        let c = client(client_id).ok_or_else(|| {
            Refused::Page(
                "The application (client_id) is not registered with this sign-in service.".into(),
            )
        })?;
        let redirect_uri = p.required("redirect_uri", MAX_REDIRECT_URI).map_err(page)?;
        if !c.has_redirect_uri(redirect_uri) {
            return Err(Refused::Page(
                "The redirect_uri is not registered for this application. Nothing was sent to it."
                    .into(),
            ));
        }
        let mut mode = ResponseMode::Query;
        let mut state = None;
        let back = |mode, state: &Option<String>, error| Refused::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            mode,
            state: state.clone(),
            error,
        };
        // state first, so every later error echoes it.
        match p.bounded("state", MAX_STATE) {
            Ok(s) => state = s.map(str::to_owned),
            Err(e) => return Err(back(mode, &state, e)),
        }
        match p.get("response_mode") {
            None | Some("query") => {}
            Some("form_post") => mode = ResponseMode::FormPost,
            Some(_) => {
                return Err(back(
                    mode,
                    &state,
                    invalid_request("response_mode must be query or form_post"),
                ))
            }
        }
        Self::check(&p, c, redirect_uri, mode, state.clone())
            .map(|r| (r, c))
            .map_err(|e| back(mode, &state, e))
    }

    fn check(
        p: &Params,
        c: &Client,
        redirect_uri: &str,
        response_mode: ResponseMode,
        state: Option<String>,
    ) -> Result<Self, OAuthError> {
        if p.has("request") {
            return Err(OAuthError::new(
                ErrorCode::RequestNotSupported,
                "request objects are not supported: send the parameters in the query",
            ));
        }
        if p.has("request_uri") {
            return Err(OAuthError::new(
                ErrorCode::RequestUriNotSupported,
                "request_uri is not supported: send the parameters in the query",
            ));
        }
        if p.has("registration") {
            return Err(OAuthError::new(
                ErrorCode::RegistrationNotSupported,
                "dynamic registration is not supported",
            ));
        }
        match p.get("response_type") {
            Some("code") => {}
            None => return Err(invalid_request("response_type is missing")),
            Some(_) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ))
            }
        }
        let scope = p.required("scope", MAX_SCOPE)?;
        let asked: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
        if !asked.contains(&"openid") {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "scope must include openid",
            ));
        }
        let scopes = SCOPES
            .iter()
            .filter(|s| asked.contains(s))
            .map(|s| (*s).to_owned())
            .collect();
        let nonce = p.bounded("nonce", MAX_NONCE)?.map(str::to_owned);
        let prompt = match p.bounded("prompt", 128)? {
            None => PromptKind::IfNeeded,
            Some(v) => {
                let words: Vec<&str> = v.split(' ').filter(|s| !s.is_empty()).collect();
                if words.contains(&"none") && words.len() > 1 {
                    return Err(invalid_request("prompt=none cannot be combined"));
                }
                if words.contains(&"none") {
                    PromptKind::None
                } else if words.contains(&"login") {
                    PromptKind::Login
                } else {
                    // consent and select_account: registration is the consent, and a
                    // browser has one session.
                    PromptKind::IfNeeded
                }
            }
        };
        let max_age = match p.bounded("max_age", 10)? {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| invalid_request("max_age must be a number of seconds"))?,
            ),
        };
        let code_challenge = match p.bounded("code_challenge", 128)? {
            Some(ch) => {
                crate::pkce::check_challenge(ch, p.get("code_challenge_method"))?;
                Some(ch.to_owned())
            }
            None if c.public => {
                return Err(invalid_request(
                    "a public client must use PKCE (code_challenge with S256)",
                ))
            }
            None if p.has("code_challenge_method") => {
                return Err(invalid_request(
                    "code_challenge_method without code_challenge",
                ))
            }
            None => None,
        };
        let login_hint = p.bounded("login_hint", MAX_LOGIN_HINT)?.map(str::to_owned);
        Ok(Self {
            client_id: c.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state,
            nonce,
            response_mode,
            prompt,
            max_age,
            code_challenge,
            login_hint,
        })
    }

    /// Whether it was granted `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Sealable form (JSON), for the sign-in flow the browser carries.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads [`AuthorizeRequest::encode`]'s output back.
    pub fn decode(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }
}

/// The fields of an authorization answer (a code, or an error), in order, with `iss`
/// (RFC 9207) so a client talking to several providers can tell who answered.
pub fn answer_fields(
    issuer: &str,
    state: Option<&str>,
    result: Result<&str, &OAuthError>,
) -> Vec<(String, String)> {
    let mut f = Vec::new();
    match result {
        Ok(code) => f.push(("code".into(), code.to_owned())),
        Err(e) => {
            f.push(("error".into(), e.code.as_str().to_owned()));
            f.push(("error_description".into(), e.description.clone()));
        }
    }
    if let Some(s) = state {
        f.push(("state".into(), s.to_owned()));
    }
    f.push(("iss".into(), issuer.to_owned()));
    f
}

/// `redirect_uri` with `fields` added to its query.
pub fn redirect_with(redirect_uri: &str, fields: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{sep}{}", s.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SubjectType;

    fn client(public: bool) -> Client {
        Client {
            client_id: "app".into(),
            name: None,
            redirect_uris: vec!["https://app.test/cb".into()],
            post_logout_redirect_uris: vec![],
            public,
            secret_sha256: (!public).then(|| "0".repeat(64)),
            subject_type: SubjectType::Pairwise,
            jwks: None,
            frontchannel_logout_uri: None,
        }
    }

    const CH: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn parse(q: &str, c: &Client) -> Result<AuthorizeRequest, Refused> {
        AuthorizeRequest::parse(q.as_bytes(), |id| (id == c.client_id).then_some(c)).map(|r| r.0)
    }

    fn error_of(r: Result<AuthorizeRequest, Refused>) -> (ErrorCode, Option<String>) {
        match r {
            Err(Refused::Redirect { error, state, .. }) => (error.code, state),
            other => panic!("expected a redirected error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_is_read_with_its_state_nonce_pkce_and_prompt() {
        let c = client(true);
        let r = parse(&format!("response_type=code&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&scope=openid%20email%20bogus&state=s1&nonce=n1&code_challenge={CH}&code_challenge_method=S256&prompt=login&max_age=60&response_mode=form_post"), &c).expect("ok");
        assert_eq!(r.scopes, vec!["openid", "email"]);
        assert_eq!(r.state.as_deref(), Some("s1"));
        assert_eq!(r.nonce.as_deref(), Some("n1"));
        assert_eq!(r.prompt, PromptKind::Login);
        assert_eq!(r.max_age, Some(60));
        assert_eq!(r.response_mode, ResponseMode::FormPost);
        assert_eq!(AuthorizeRequest::decode(&r.encode()), Some(r));
    }

    #[test]
    fn an_unknown_client_or_unregistered_redirect_uri_is_a_page_never_a_redirect() {
        let c = client(false);
        let base = "response_type=code&scope=openid";
        for q in [
            format!("{base}&client_id=other&redirect_uri=https%3A%2F%2Fapp.test%2Fcb"),
            format!("{base}&client_id=app&redirect_uri=https%3A%2F%2Fevil.test%2Fcb"),
            format!("{base}&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb%2F"),
            format!("{base}&client_id=app"),
            format!("{base}&client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&redirect_uri=https%3A%2F%2Fevil.test%2F"),
        ] {
            assert!(matches!(parse(&q, &c), Err(Refused::Page(_))), "{q}");
        }
    }

    #[test]
    fn each_bad_parameter_is_its_own_oauth_error_with_the_state() {
        let c = client(true);
        let base = "client_id=app&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&state=st";
        let pk = format!("code_challenge={CH}&code_challenge_method=S256");
        let cases = [
            (format!("{base}&response_type=token&scope=openid&{pk}"), ErrorCode::UnsupportedResponseType),
            (format!("{base}&response_type=code&scope=email&{pk}"), ErrorCode::InvalidScope),
            (format!("{base}&response_type=code&scope=openid"), ErrorCode::InvalidRequest),
            (format!("{base}&response_type=code&scope=openid&code_challenge={CH}&code_challenge_method=plain"), ErrorCode::InvalidRequest),
            (format!("{base}&response_type=code&scope=openid&{pk}&request=eyJ"), ErrorCode::RequestNotSupported),
            (format!("{base}&response_type=code&scope=openid&{pk}&request_uri=https%3A%2F%2Fx"), ErrorCode::RequestUriNotSupported),
            (format!("{base}&response_type=code&scope=openid&{pk}&prompt=none%20login"), ErrorCode::InvalidRequest),
            (format!("{base}&response_type=code&scope=openid&{pk}&max_age=soon"), ErrorCode::InvalidRequest),
            (format!("{base}&response_type=code&scope=openid&{pk}&nonce={}", "n".repeat(MAX_NONCE + 1)), ErrorCode::InvalidRequest),
        ];
        for (q, code) in cases {
            assert_eq!(error_of(parse(&q, &c)), (code, Some("st".into())), "{q}");
        }
    }

    #[test]
    fn answers_carry_state_and_issuer() {
        let f = answer_fields("https://idp.test", Some("a b"), Ok("C"));
        assert_eq!(
            redirect_with("https://app.test/cb?x=1", &f),
            "https://app.test/cb?x=1&code=C&state=a+b&iss=https%3A%2F%2Fidp.test"
        );
    }
}
