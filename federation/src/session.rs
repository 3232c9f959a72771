//! SSO sessions and pending sign-in flows, in memory. A session is found by the SHA-256
//! of its cookie value, so the table never holds a value a browser could present; flows
//! hold what an application asked for (registered URLs only) until the user has signed in.
//! Both are bounded and expire.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use sha2::Digest;

use crate::lock;

/// Random token, base64url (no padding) of 32 bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS random generator");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
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

/// A bounded table that drops its oldest entries first. Insertion order is kept in a
/// queue beside the map, so making room costs O(1) amortised however full the table is
/// (a scan for the oldest entry under the lock would let a flood of unauthenticated
/// requests, each starting a flow, make every request pay for the whole table). Entries
/// share one lifetime, so the oldest is also the first to expire.
#[derive(Debug)]
struct Table<K, V> {
    map: HashMap<K, (u64, V)>,
    /// (sequence number, key) in insertion order; entries whose key was removed or
    /// re-inserted since are skipped when they reach the front.
    order: VecDeque<(u64, K)>,
    seq: u64,
    max: usize,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    fn new(max: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            seq: 0,
            max,
        }
    }

    /// Inserts `v`, first dropping from the front stale queue entries, entries for which
    /// `expired` holds, and the oldest entries while the table is full.
    fn insert(&mut self, k: K, v: V, expired: impl Fn(&V) -> bool) {
        let replaces = self.map.contains_key(&k);
        while let Some((seq, key)) = self.order.front() {
            match self.map.get(key) {
                Some((s, v)) if s == seq => {
                    let full = self.map.len() >= self.max && !replaces;
                    if !(expired(v) || full) {
                        break;
                    }
                    self.map.remove(key);
                }
                _ => {}
            }
            self.order.pop_front();
        }
        // Removed entries leave their queue entries behind; keep the queue within twice
        // the map (amortised: this runs only after the queue has doubled).
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(seq, key)| map.get(key).is_some_and(|(s, _)| s == seq));
        }
        self.seq += 1;
        self.order.push_back((self.seq, k.clone()));
        self.map.insert(k, (self.seq, v));
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(k).map(|(_, v)| v)
    }

    fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    fn remove<Q: Hash + Eq + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.map.remove(k).map(|(_, v)| v)
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (_, v))| (k, v))
    }

    fn len(&self) -> usize {
        self.map.len()
    }
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
            authn_instant: now,
            expires: now + lifetime,
            session_index: crate::saml::new_id(),
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

/// What a sign-in flow ends in.
#[derive(Debug, Clone)]
pub enum Target {
    /// A SAML Response posted to a registered ACS.
    Saml {
        /// SP entity id.
        sp: String,
        /// The registered ACS URL.
        acs: String,
        /// The AuthnRequest's ID (none for IdP-initiated).
        request_id: Option<String>,
        /// RelayState to return.
        relay_state: Option<String>,
        /// NameID format to issue.
        name_id_format: String,
    },
    /// A WS-Federation token posted to a registered reply URL.
    WsFed {
        /// The realm.
        realm: String,
        /// The registered reply URL.
        reply: String,
        /// `wctx`, echoed unchanged.
        wctx: Option<String>,
    },
    /// The endpoint's own start page.
    Portal,
}

/// A pending sign-in.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Where it ends.
    pub target: Target,
    /// The form's anti-forgery token (rotated at every rendering).
    pub csrf: String,
    /// Hash of the login cookie the browser got with the form.
    pub browser: Option<[u8; 32]>,
    /// Whether the password may, must or must not be asked.
    pub prompt: Prompt,
    created: Instant,
}

/// Whether a sign-in may show the sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Only without a session (the usual case).
    IfNeeded,
    /// Even with a session (SAML ForceAuthn).
    Always,
    /// Never (SAML IsPassive): without a session the application is told so.
    Never,
}

const FLOW_TTL: Duration = Duration::from_secs(15 * 60);
const MAX_FLOWS: usize = 100_000;

/// Pending flows.
#[derive(Debug)]
pub struct Flows {
    map: Mutex<Table<String, Flow>>,
}

impl Default for Flows {
    fn default() -> Self {
        Self {
            map: Mutex::new(Table::new(MAX_FLOWS)),
        }
    }
}

impl Flows {
    /// Starts a flow; returns its id.
    pub fn start(&self, target: Target, prompt: Prompt) -> String {
        let id = random_token();
        let now = Instant::now();
        lock(&self.map).insert(
            id.clone(),
            Flow {
                target,
                csrf: String::new(),
                browser: None,
                prompt,
                created: now,
            },
            |f| now.duration_since(f.created) >= FLOW_TTL,
        );
        id
    }

    /// A live flow.
    pub fn get(&self, id: &str) -> Option<Flow> {
        let mut map = lock(&self.map);
        match map.get(id) {
            Some(f) if f.created.elapsed() < FLOW_TTL => Some(f.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Binds a flow to a browser (its login cookie) and a fresh form token.
    pub fn bind(&self, id: &str, browser: [u8; 32]) -> Option<String> {
        let mut map = lock(&self.map);
        let f = map.get_mut(id)?;
        f.csrf = random_token();
        f.browser = Some(browser);
        Some(f.csrf.clone())
    }

    /// Takes a flow out when the form's token and the browser match (it can be used once).
    pub fn take_if(
        &self,
        id: &str,
        csrf: &str,
        browser: Option<[u8; 32]>,
    ) -> Result<Flow, FlowError> {
        use subtle::ConstantTimeEq;
        let mut map = lock(&self.map);
        let f = map.get(id).ok_or(FlowError::Unknown)?;
        if f.created.elapsed() >= FLOW_TTL {
            map.remove(id);
            return Err(FlowError::Unknown);
        }
        let token_ok = !f.csrf.is_empty() && bool::from(f.csrf.as_bytes().ct_eq(csrf.as_bytes()));
        let browser_ok =
            matches!((f.browser, browser), (Some(a), Some(b)) if bool::from(a.ct_eq(&b)));
        if !token_ok || !browser_ok {
            return Err(FlowError::Forged);
        }
        map.remove(id).ok_or(FlowError::Unknown)
    }

    /// Puts a flow back (after a failed attempt), with a new token.
    pub fn put_back(&self, id: &str, mut f: Flow) -> String {
        f.csrf = random_token();
        let t = f.csrf.clone();
        let now = Instant::now();
        lock(&self.map).insert(id.to_owned(), f, |f| {
            now.duration_since(f.created) >= FLOW_TTL
        });
        t
    }

    /// Removes a flow.
    pub fn remove(&self, id: &str) -> Option<Flow> {
        lock(&self.map).remove(id)
    }
}

/// A single logout going round a session's applications through the browser (the
/// front channel): each is sent a LogoutRequest in turn, and answers with a
/// LogoutResponse that brings the browser back here for the next one.
#[derive(Debug, Clone)]
pub struct LogoutChain {
    /// Applications still to be told.
    pub pending: Vec<Participant>,
    /// The SessionIndex the applications were given.
    pub session_index: String,
    /// The application being told now, and the ID of our LogoutRequest to it.
    pub waiting_for: Option<(String, String)>,
    /// The application that asked; none when the user signed out at the endpoint.
    pub origin: Option<LogoutOrigin>,
    /// Whether an application did not confirm its logout.
    pub partial: bool,
    created: Instant,
}

/// The application that asked for a single logout, and what its answer must carry.
#[derive(Debug, Clone)]
pub struct LogoutOrigin {
    /// Its entity id.
    pub app: String,
    /// Its LogoutRequest's ID (our answer's InResponseTo).
    pub request_id: String,
    /// Its RelayState, returned unchanged.
    pub relay_state: Option<String>,
}

impl LogoutChain {
    /// A logout of `session` for every participant but `origin`'s application.
    pub fn new(session: &Session, origin: Option<LogoutOrigin>) -> Self {
        let asker = origin.as_ref().map(|o| o.app.as_str());
        Self {
            pending: session
                .participants
                .iter()
                .filter(|p| Some(p.app.as_str()) != asker)
                .rev()
                .cloned()
                .collect(),
            session_index: session.session_index.clone(),
            waiting_for: None,
            origin,
            partial: false,
            created: Instant::now(),
        }
    }
}

const LOGOUT_TTL: Duration = Duration::from_secs(5 * 60);
const MAX_LOGOUTS: usize = 20_000;

/// Logouts waiting for an application's answer, keyed by the RelayState we sent it.
#[derive(Debug)]
pub struct Logouts {
    map: Mutex<Table<String, LogoutChain>>,
}

impl Default for Logouts {
    fn default() -> Self {
        Self {
            map: Mutex::new(Table::new(MAX_LOGOUTS)),
        }
    }
}

impl Logouts {
    /// Keeps `chain` until its application answers; returns the key to send as RelayState.
    pub fn park(&self, chain: LogoutChain) -> String {
        let id = random_token();
        let now = Instant::now();
        lock(&self.map).insert(id.clone(), chain, |c| {
            now.duration_since(c.created) >= LOGOUT_TTL
        });
        id
    }

    /// Takes back the chain parked under `id` (once).
    pub fn take(&self, id: &str) -> Option<LogoutChain> {
        lock(&self.map)
            .remove(id)
            .filter(|c| c.created.elapsed() < LOGOUT_TTL)
    }
}

/// Why a posted form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    /// No such flow: expired, already used, or never issued.
    Unknown,
    /// The anti-forgery token or browser binding does not match.
    Forged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_drops_its_oldest_entries_and_its_queue_stays_bounded() {
        let mut t: Table<u32, u32> = Table::new(3);
        for k in 0..3 {
            t.insert(k, k, |_| false);
        }
        t.insert(3, 3, |_| false);
        assert_eq!(t.len(), 3);
        assert!(t.get(&0).is_none(), "the oldest went first");
        assert!(t.get(&1).is_some() && t.get(&3).is_some());
        // A removed entry frees its place; its stale queue entry is skipped later.
        assert_eq!(t.remove(&2), Some(2));
        t.insert(4, 4, |_| false);
        assert!(t.get(&1).is_some(), "no eviction while there was room");
        // Re-inserting moves an entry to the back.
        t.insert(1, 10, |_| false);
        t.insert(5, 5, |_| false);
        assert_eq!(t.get(&1), Some(&10));
        assert!(t.get(&3).is_none());
        // Expired entries at the front go even when there is room.
        t.insert(6, 6, |v| *v == 4);
        assert!(t.get(&4).is_none());
        // Churn (insert and remove) never lets the queue grow without bound.
        let mut big: Table<u32, ()> = Table::new(100);
        for k in 0..50_000 {
            big.insert(k, (), |_| false);
            big.remove(&k);
        }
        assert!(
            big.order.len() <= 2 * big.len() + 1025,
            "{}",
            big.order.len()
        );
    }

    #[test]
    fn sessions_are_found_by_cookie_and_end() {
        let s = Sessions::default();
        let now = SystemTime::now();
        let who = Identity {
            upn: "a@b.c".into(),
            immutable_id: "id".into(),
            mail: None,
            display_name: None,
        };
        let (c, sess) = s.create(who.clone(), Duration::from_secs(60), now);
        assert_eq!(s.get(&c, now).expect("live").upn, "a@b.c");
        assert!(s.get("other", now).is_none());
        assert!(
            s.get(&c, now + Duration::from_secs(61)).is_none(),
            "expired"
        );
        let (c, _) = s.create(who, Duration::from_secs(60), now);
        s.add_participant(
            &c,
            Participant {
                app: "sp".into(),
                name_id: "n".into(),
                format: "f".into(),
            },
        );
        let idx = s.get(&c, now).expect("live").session_index;
        assert_ne!(idx, sess.session_index);
        assert!(s.end_by_index("sp", "n", &idx).is_some());
        assert!(s.get(&c, now).is_none());
    }

    #[test]
    fn a_logout_chain_tells_every_other_application_in_sign_in_order_once() {
        let s = Sessions::default();
        let now = SystemTime::now();
        let who = Identity {
            upn: "a@b.c".into(),
            immutable_id: "id".into(),
            mail: None,
            display_name: None,
        };
        let (c, _) = s.create(who, Duration::from_secs(60), now);
        for app in ["a", "b", "c"] {
            s.add_participant(
                &c,
                Participant {
                    app: app.into(),
                    name_id: "n".into(),
                    format: "f".into(),
                },
            );
        }
        let session = s.end(&c).expect("live");
        let mut chain = LogoutChain::new(
            &session,
            Some(LogoutOrigin {
                app: "b".into(),
                request_id: "_r".into(),
                relay_state: None,
            }),
        );
        let order: Vec<String> =
            std::iter::from_fn(|| chain.pending.pop().map(|p| p.app)).collect();
        assert_eq!(
            order,
            ["a", "c"],
            "the asking application is answered, not told"
        );
        let logouts = Logouts::default();
        let id = logouts.park(LogoutChain::new(&session, None));
        assert_eq!(logouts.take(&id).expect("parked").pending.len(), 3);
        assert!(logouts.take(&id).is_none(), "a parked logout is taken once");
    }

    #[test]
    fn a_flow_is_used_once_by_the_browser_it_was_shown_to() {
        let f = Flows::default();
        let id = f.start(Target::Portal, Prompt::IfNeeded);
        let browser = token_hash("cookie");
        let csrf = f.bind(&id, browser).expect("bound");
        assert_eq!(
            f.take_if(&id, "wrong", Some(browser)).err(),
            Some(FlowError::Forged)
        );
        assert_eq!(
            f.take_if(&id, &csrf, Some(token_hash("other"))).err(),
            Some(FlowError::Forged)
        );
        assert_eq!(f.take_if(&id, &csrf, None).err(), Some(FlowError::Forged));
        let flow = f.take_if(&id, &csrf, Some(browser)).expect("taken");
        assert_eq!(
            f.take_if(&id, &csrf, Some(browser)).err(),
            Some(FlowError::Unknown),
            "replay"
        );
        let csrf2 = f.put_back(&id, flow);
        assert_ne!(csrf2, csrf);
        assert_eq!(
            f.take_if(&id, &csrf, Some(browser)).err(),
            Some(FlowError::Forged),
            "old token"
        );
    }
}
