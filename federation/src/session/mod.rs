//! SSO sessions in memory, and pending sign-in flows in the browser. A session is found by
//! the SHA-256 of its cookie value, so the table never holds a value a browser could
//! present; a flow (what an application asked for, registered URLs only) is sealed with
//! XChaCha20-Poly1305 and carried by the browser until the user has signed in, so no
//! request without a password creates state here. Every table is bounded and expires.

mod flow;
mod logout;
mod replay;
mod seal;
mod table;
#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;
use sha2::Digest;

use crate::lock;
pub use flow::{Flow, FlowError, Flows, LogoutNext, Prompt, Target, FLOW_TTL};
pub use logout::{LogoutChain, LogoutOrigin, Logouts};
pub use replay::SeenRequests;
pub use seal::{FlowKey, FLOW_KEY_FILE, MAX_FLOW_BLOB};
use table::Table;

/// Random token, base64url (no padding) of 32 bytes.
pub fn random_token() -> String {
    // The raw bytes are as good as the token (an SSO cookie value, say): wiped after use.
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *b).expect("OS random generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b.as_slice())
}

/// SHA-256 of a token (what the tables are keyed by).
pub fn token_hash(t: &str) -> [u8; 32] {
    sha2::Sha256::digest(t.as_bytes()).into()
}

/// An application the session has signed in to (for single logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// SP entity id or WS-Fed realm.
    pub app: String,
    /// The NameID it received.
    pub name_id: String,
    /// Its format.
    pub format: String,
}

/// Who a session belongs to, as the directory store knew them at sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user's UPN.
    pub upn: String,
    /// The user's immutable id.
    pub immutable_id: String,
    /// Mail address.
    pub mail: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// The names of the groups the user is a member of, directly or nested (at most
    /// `portal::claims::MAX_GROUPS`): the groups claim.
    pub groups: Vec<String>,
}

/// An SSO session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user's UPN.
    pub upn: String,
    /// The user's immutable id.
    pub immutable_id: String,
    /// Mail address (at sign-in).
    pub mail: Option<String>,
    /// Display name (at sign-in).
    pub display_name: Option<String>,
    /// Group names (at sign-in), for the groups claim.
    pub groups: Vec<String>,
    /// When the user typed their password.
    pub authn_instant: SystemTime,
    /// When the session ends.
    pub expires: SystemTime,
    /// SAML SessionIndex.
    pub session_index: String,
    /// Applications signed in to.
    pub participants: Vec<Participant>,
    /// Token for the sign-out form.
    pub csrf: String,
}

const MAX_SESSIONS: usize = 200_000;

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<Table<[u8; 32], Session>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            map: Mutex::new(Table::new(MAX_SESSIONS)),
        }
    }
}

impl Sessions {
    /// Starts a session; returns the cookie value (shown to the browser only).
    pub fn create(&self, who: Identity, lifetime: Duration, now: SystemTime) -> (String, Session) {
        let cookie = random_token();
        let s = Session {
            upn: who.upn,
            immutable_id: who.immutable_id,
            mail: who.mail,
            display_name: who.display_name,
            groups: who.groups,
            authn_instant: now,
            expires: now + lifetime,
            session_index: causeway_saml::saml2::new_id(),
            participants: Vec::new(),
            csrf: random_token(),
        };
        // When full, the oldest session goes rather than refusing new sign-ins.
        lock(&self.map).insert(token_hash(&cookie), s.clone(), |s| s.expires <= now);
        (cookie, s)
    }

    /// The live session for a cookie value.
    pub fn get(&self, cookie: &str, now: SystemTime) -> Option<Session> {
        let mut map = lock(&self.map);
        let k = token_hash(cookie);
        match map.get(&k) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Records that the session signed in to an application.
    pub fn add_participant(&self, cookie: &str, p: Participant) {
        if let Some(s) = lock(&self.map).get_mut(&token_hash(cookie)) {
            if !s.participants.contains(&p) && s.participants.len() < 64 {
                s.participants.push(p);
            }
        }
    }

    /// Ends the session of a cookie.
    pub fn end(&self, cookie: &str) -> Option<Session> {
        lock(&self.map).remove(&token_hash(cookie))
    }

    /// Ends the session with this SessionIndex held by a user with this NameID at `app`
    /// (a LogoutRequest that arrived without the cookie).
    pub fn end_by_index(&self, app: &str, name_id: &str, session_index: &str) -> Option<Session> {
        let mut map = lock(&self.map);
        let k = map
            .iter()
            .find(|(_, s)| {
                s.session_index == session_index
                    && s.participants
                        .iter()
                        .any(|p| p.app == app && p.name_id == name_id)
            })
            .map(|(k, _)| *k)?;
        map.remove(&k)
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
