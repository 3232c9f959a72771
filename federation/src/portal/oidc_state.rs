//! The OpenID Provider's server-side state: authorization codes (until redeemed, and
//! then a marker until they expire, so a second redemption is seen and revokes what the
//! first got) and the access tokens issued (for UserInfo, revocation and introspection).
//! Both tables are bounded; only a signed-in user makes a code, and only a redeemed code
//! makes a token, so nobody without a password can fill them. Keys are SHA-256 hashes:
//! no table holds a value a client could present.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use causeway_oidc::AuthorizeRequest;
use zeroize::Zeroizing;

use crate::lock;
use crate::session::token_hash;

/// How long a code may be redeemed (RFC 6749 §4.1.2 recommends at most 10 minutes; a
/// client redeems it at once).
pub(super) const CODE_TTL: Duration = Duration::from_secs(60);
const MAX_CODES: usize = 100_000;
const MAX_TOKENS: usize = 200_000;
const MAX_ASSERTIONS: usize = 100_000;
/// The file, beside the token-signing keys, of the key pairwise subjects are made with.
pub(super) const PAIRWISE_KEY_FILE: &str = "oidc-pairwise.key";

/// Who signed in, as the session knew them.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) upn: String,
    pub(super) mail: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) groups: Vec<String>,
}

/// What a code was issued for.
#[derive(Debug, Clone)]
pub(super) struct CodeGrant {
    pub(super) request: AuthorizeRequest,
    pub(super) sub: String,
    pub(super) user: User,
    pub(super) auth_time: SystemTime,
    pub(super) sid: String,
}

#[derive(Debug)]
struct CodeEntry {
    client_id: String,
    expires: SystemTime,
    /// `None` once redeemed.
    grant: Option<CodeGrant>,
    /// Access tokens (their hashes) issued from it.
    issued: Vec<[u8; 32]>,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub(super) struct TokenEntry {
    pub(super) client_id: String,
    pub(super) sub: String,
    pub(super) scopes: Vec<String>,
    pub(super) user: User,
    pub(super) expires: SystemTime,
    pub(super) issued_at: SystemTime,
}

/// Why a code cannot be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeRefused {
    /// Unknown or expired.
    Unknown,
    /// Redeemed before: the tokens issued from it are revoked now.
    Reused,
    /// Issued to another client.
    OtherClient,
}

/// The provider's state.
pub(super) struct OidcState {
    pairwise_key: Zeroizing<[u8; 32]>,
    codes: Mutex<HashMap<[u8; 32], CodeEntry>>,
    tokens: Mutex<HashMap<[u8; 32], TokenEntry>>,
    /// Client assertions seen (hash of client and `jti`) → their `exp`.
    assertions: Mutex<HashMap<[u8; 32], SystemTime>>,
}

impl std::fmt::Debug for OidcState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcState").finish_non_exhaustive()
    }
}

/// Makes room in a bounded table: drops expired entries when full; false if still full.
fn room<V>(map: &mut HashMap<[u8; 32], V>, max: usize, expired: impl Fn(&V) -> bool) -> bool {
    if map.len() >= max {
        map.retain(|_, v| !expired(v));
    }
    map.len() < max
}

impl OidcState {
    /// State with the pairwise key kept in `keys_dir` (made on first use).
    pub(super) fn load(keys_dir: &Path) -> Result<Self, String> {
        Ok(Self {
            pairwise_key: crate::key_file::load_or_create(
                &keys_dir.join(PAIRWISE_KEY_FILE),
                "the OpenID Connect pairwise subject key",
                "restore it from a backup (a new key changes every client's pairwise sub)",
            )?,
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            assertions: Mutex::new(HashMap::new()),
        })
    }

    /// Records a verified client assertion's `jti` until its `exp` (Unix seconds): true if
    /// it was seen before (a replay), or if the record is full of live ones (refused
    /// rather than forgotten; assertions live at most ten minutes).
    pub(super) fn assertion_used(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: SystemTime,
    ) -> bool {
        let k = token_hash(&format!("{client_id}\0{jti}"));
        let mut seen = lock(&self.assertions);
        if seen.get(&k).is_some_and(|e| *e > now) {
            return true;
        }
        if !room(&mut seen, MAX_ASSERTIONS, |e| *e <= now) {
            return true;
        }
        seen.insert(k, SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
        false
    }

    pub(super) fn pairwise_key(&self) -> &[u8] {
        self.pairwise_key.as_slice()
    }

    /// Stores a new code for `grant`; `None` when the table is full of live codes.
    pub(super) fn issue_code(&self, grant: CodeGrant, now: SystemTime) -> Option<String> {
        let code = causeway_oidc::random_token();
        let mut codes = lock(&self.codes);
        if !room(&mut codes, MAX_CODES, |c| c.expires <= now) {
            return None;
        }
        codes.insert(
            token_hash(&code),
            CodeEntry {
                client_id: grant.request.client_id.clone(),
                expires: now + CODE_TTL,
                grant: Some(grant),
                issued: Vec::new(),
            },
        );
        Some(code)
    }

    /// Redeems a code for `client_id` (once). A second redemption revokes the tokens the
    /// first one got (RFC 6749 §4.1.2).
    pub(super) fn redeem(
        &self,
        code: &str,
        client_id: &str,
        now: SystemTime,
    ) -> Result<CodeGrant, CodeRefused> {
        let k = token_hash(code);
        let mut codes = lock(&self.codes);
        let Some(e) = codes.get_mut(&k).filter(|e| e.expires > now) else {
            return Err(CodeRefused::Unknown);
        };
        if e.client_id != client_id {
            return Err(CodeRefused::OtherClient);
        }
        match e.grant.take() {
            Some(g) => Ok(g),
            None => {
                let issued = std::mem::take(&mut e.issued);
                drop(codes);
                let mut tokens = lock(&self.tokens);
                for t in issued {
                    tokens.remove(&t);
                }
                Err(CodeRefused::Reused)
            }
        }
    }

    /// Records an access token issued from `code`; false when the table is full.
    pub(super) fn record_token(
        &self,
        code: Option<&str>,
        token: &str,
        entry: TokenEntry,
        now: SystemTime,
    ) -> bool {
        let th = token_hash(token);
        {
            let mut tokens = lock(&self.tokens);
            if !room(&mut tokens, MAX_TOKENS, |t| t.expires <= now) {
                return false;
            }
            tokens.insert(th, entry);
        }
        if let Some(c) = code {
            if let Some(e) = lock(&self.codes).get_mut(&token_hash(c)) {
                e.issued.push(th);
            }
        }
        true
    }

    /// The live entry of an access token.
    pub(super) fn token(&self, token: &str, now: SystemTime) -> Option<TokenEntry> {
        lock(&self.tokens)
            .get(&token_hash(token))
            .filter(|t| t.expires > now)
            .cloned()
    }

    /// Revokes an access token if `client_id` holds it; whether it did.
    pub(super) fn revoke(&self, token: &str, client_id: &str) -> bool {
        let mut tokens = lock(&self.tokens);
        let k = token_hash(token);
        if tokens.get(&k).is_some_and(|t| t.client_id == client_id) {
            tokens.remove(&k);
            true
        } else {
            false
        }
    }

    /// Revokes every token of a subject at a client (the session ended).
    pub(super) fn revoke_sub(&self, client_id: &str, sub: &str) {
        lock(&self.tokens).retain(|_, t| !(t.client_id == client_id && t.sub == sub));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_oidc::authorize::{PromptKind, ResponseMode};

    fn grant() -> CodeGrant {
        CodeGrant {
            request: AuthorizeRequest {
                client_id: "app".into(),
                redirect_uri: "https://app.test/cb".into(),
                scopes: vec!["openid".into()],
                state: None,
                nonce: None,
                response_mode: ResponseMode::Query,
                prompt: PromptKind::IfNeeded,
                max_age: None,
                code_challenge: None,
                login_hint: None,
            },
            sub: "s".into(),
            user: User {
                upn: "u@x.test".into(),
                mail: None,
                display_name: None,
                groups: vec![],
            },
            auth_time: SystemTime::UNIX_EPOCH,
            sid: "sid".into(),
        }
    }

    fn entry(now: SystemTime) -> TokenEntry {
        let g = grant();
        TokenEntry {
            client_id: "app".into(),
            sub: g.sub,
            scopes: g.request.scopes,
            user: g.user,
            expires: now + Duration::from_secs(300),
            issued_at: now,
        }
    }

    fn state() -> OidcState {
        OidcState {
            pairwise_key: Zeroizing::new([7; 32]),
            codes: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            assertions: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn a_code_redeems_once_and_a_second_redemption_revokes_its_tokens() {
        let s = state();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let code = s.issue_code(grant(), t0).expect("code");
        assert_eq!(
            s.redeem(&code, "other", t0).map(|_| ()),
            Err(CodeRefused::OtherClient)
        );
        assert!(s.redeem(&code, "app", t0).is_ok());
        assert!(s.record_token(Some(&code), "AT", entry(t0), t0));
        assert!(s.token("AT", t0).is_some());
        assert_eq!(
            s.redeem(&code, "app", t0).map(|_| ()),
            Err(CodeRefused::Reused)
        );
        assert!(s.token("AT", t0).is_none(), "revoked by the reuse");
    }

    #[test]
    fn codes_expire_after_their_ttl() {
        let s = state();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let code = s.issue_code(grant(), t0).expect("code");
        assert_eq!(
            s.redeem(&code, "app", t0 + CODE_TTL).map(|_| ()),
            Err(CodeRefused::Unknown)
        );
        assert_eq!(
            s.redeem("made-up", "app", t0).map(|_| ()),
            Err(CodeRefused::Unknown)
        );
    }

    #[test]
    fn a_token_is_revoked_only_by_its_own_client() {
        let s = state();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let code = s.issue_code(grant(), t0).expect("code");
        s.redeem(&code, "app", t0).expect("redeem");
        s.record_token(Some(&code), "AT", entry(t0), t0);
        assert!(!s.revoke("AT", "other"));
        assert!(s.token("AT", t0).is_some());
        assert!(s.revoke("AT", "app"));
        assert!(s.token("AT", t0).is_none());
        assert!(s.token("AT", t0 + Duration::from_secs(301)).is_none());
    }
}
