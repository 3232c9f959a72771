//! SSO sessions in memory, and pending sign-in flows in the browser. A session is found by
//! the SHA-256 of its cookie value, so the table never holds a value a browser could
//! present; a flow (what an application asked for, registered URLs only) is sealed with
//! XChaCha20-Poly1305 and carried by the browser until the user has signed in, so no
//! request without a password creates state here. Every table is bounded and expires.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};
use sha2::Digest;

use crate::lock;

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

/// How long a sign-in flow lives, counted from the moment the application asked.
pub const FLOW_TTL: Duration = Duration::from_secs(15 * 60);
/// How far ahead of our clock a flow's creation time may be (another process sharing the
/// key, or a clock stepped back): beyond it the state is treated as expired.
const FLOW_FUTURE_SKEW: Duration = Duration::from_secs(60);
/// Largest sealed state accepted, checked before any decoding. A SAML target is at most
/// about 3.5 KiB of text (entity id 1 KiB, ACS 2 KiB, request id, RelayState and format),
/// a WS-Federation one a little more with a 2 KiB `wctx`; base64 adds a third.
pub const MAX_FLOW_BLOB: usize = 12 * 1024;
/// The file, in the token-signing key directory, that holds the key of the sealed state.
pub const FLOW_KEY_FILE: &str = "flow-state.key";
const MAX_USED_FLOWS: usize = 100_000;
const BLOB_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
// Distinct associated data per purpose, so a sealed logout confirmation can never be
// read as a sign-in flow or the other way round.
const FLOW_AAD: &[u8] = b"causeway sign-in flow v1";
const LOGOUT_AAD: &[u8] = b"causeway logout confirmation v1";

/// Why a sign-in flow (or a logout confirmation) carried by the browser was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Not base64url, cut short, or of an unknown version: damaged on the way.
    #[error("the sign-in state is damaged or cut short")]
    Malformed,
    /// It does not decrypt under our key: altered, made up, or sealed under another key.
    #[error("the sign-in state was not issued by this service, or it was altered")]
    Tampered,
    /// Older than [`FLOW_TTL`].
    #[error("the sign-in state is older than 15 minutes")]
    Expired,
    /// A sign-in already succeeded with this flow.
    #[error("the sign-in form was already used")]
    Used,
    /// The form's anti-forgery token or the browser's login cookie does not match.
    #[error("the sign-in form was not issued to this browser")]
    Forged,
}

/// The key that seals sign-in state handed to browsers (XChaCha20-Poly1305: a random
/// 192-bit nonce per seal, so nonces never repeat in practice). Printed as `[redacted]`.
pub struct FlowKey(XChaCha20Poly1305);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey([redacted])")
    }
}

impl FlowKey {
    /// A key of the given bytes.
    pub fn from_bytes(k: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*k)))
    }

    /// A fresh random key (state sealed under it does not survive the process).
    pub fn random() -> Self {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *k).expect("OS random generator");
        Self::from_bytes(&k)
    }

    /// Loads the key from `path`, or creates it there (mode 0600) when it does not exist.
    /// Kept on disk so that a restart does not turn every pending sign-in into an error,
    /// and so that processes sharing the data directory accept each other's state.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(k) = Self::read(path)? {
            return Ok(k);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map_or_else(|| FLOW_KEY_FILE.into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{name}.{}.tmp", &random_token()[..12]));
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *key).expect("OS random generator");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(&*key)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "cannot create the sign-in state key {}: {e}",
                tmp.display()
            ));
        }
        // A hard link publishes the complete file or nothing; when another process won
        // the race its key is the one everybody uses.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Self::from_bytes(&key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path)?
                .ok_or_else(|| format!("the sign-in state key {} vanished", path.display())),
            Err(e) => Err(format!(
                "cannot create the sign-in state key {}: {e}",
                path.display()
            )),
        }
    }

    fn read(path: &Path) -> Result<Option<Self>, String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "cannot read the sign-in state key {}: {e}",
                    path.display()
                ))
            }
        };
        if !meta.is_file() {
            return Err(format!(
                "the sign-in state key {} is not a regular file",
                path.display()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "the sign-in state key {} is open to other users (mode {mode:o}): run chmod 600 on it",
                path.display()
            ));
        }
        let bytes =
            zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
                format!("cannot read the sign-in state key {}: {e}", path.display())
            })?);
        let k: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            format!(
                "the sign-in state key {} holds {} bytes, not 32: remove it to have a new one made (pending sign-ins then start again)",
                path.display(),
                bytes.len()
            )
        })?;
        Ok(Some(Self::from_bytes(k)))
    }

    /// `version ‖ nonce ‖ ciphertext ‖ tag`, base64url.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("OS random generator");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(BLOB_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                aad,
                out[1 + NONCE_LEN..].as_mut().into(),
            )
            // Only messages beyond 256 GiB are refused.
            .expect("XChaCha20-Poly1305 seals a small message");
        out.extend_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    fn open(&self, aad: &[u8], blob: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, FlowError> {
        if blob.len() > MAX_FLOW_BLOB {
            return Err(FlowError::Malformed);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(blob.as_bytes())
            .map_err(|_| FlowError::Malformed)?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != BLOB_VERSION {
            return Err(FlowError::Malformed);
        }
        let nonce: [u8; NONCE_LEN] = raw[1..=NONCE_LEN]
            .try_into()
            .map_err(|_| FlowError::Malformed)?;
        let tag: [u8; TAG_LEN] = raw[raw.len() - TAG_LEN..]
            .try_into()
            .map_err(|_| FlowError::Malformed)?;
        let mut body = zeroize::Zeroizing::new(raw[1 + NONCE_LEN..raw.len() - TAG_LEN].to_vec());
        self.0
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                aad,
                body.as_mut_slice().into(),
                &chacha20poly1305::Tag::from(tag),
            )
            .map_err(|_| FlowError::Tampered)?;
        Ok(body)
    }
}

/// Writes the fields of sealed state (length-prefixed, so no value can spill into another).
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, v: &str) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v.as_bytes());
    }
    fn opt(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// Reads what [`Writer`] wrote. The data was authenticated already, so a failure here means
/// a version mismatch, reported as damage.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FlowError> {
        if self.0.len() < n {
            return Err(FlowError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FlowError> {
        Ok(self.take(1)?[0])
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], FlowError> {
        self.take(N)?.try_into().map_err(|_| FlowError::Malformed)
    }
    fn u64(&mut self) -> Result<u64, FlowError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    fn str(&mut self) -> Result<String, FlowError> {
        let n = usize::try_from(self.u64()?).map_err(|_| FlowError::Malformed)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FlowError::Malformed)
    }
    fn opt(&mut self) -> Result<Option<String>, FlowError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(FlowError::Malformed),
        }
    }
    fn done(&self) -> Result<(), FlowError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FlowError::Malformed)
        }
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether state created at `created` is still within [`FLOW_TTL`] at `now`.
fn check_age(created: SystemTime, now: SystemTime) -> Result<(), FlowError> {
    match now.duration_since(created) {
        Ok(age) if age < FLOW_TTL => Ok(()),
        Ok(_) => Err(FlowError::Expired),
        Err(e) if e.duration() <= FLOW_FUTURE_SKEW => Ok(()),
        Err(_) => Err(FlowError::Expired),
    }
}

/// A pending sign-in, as read back from the sealed state the browser carried. Its
/// `Debug` leaves out the form token and the browser binding.
#[derive(Clone)]
pub struct Flow {
    /// Where it ends.
    pub target: Target,
    /// Whether the password may, must or must not be asked.
    pub prompt: Prompt,
    /// Names the flow across re-sealings (for the used-once check).
    id: [u8; 16],
    /// When the application asked (whole seconds).
    created: SystemTime,
    /// Hash of the login cookie of the browser the form was shown to.
    browser: Option<[u8; 32]>,
    /// The form's anti-forgery token (new at every rendering).
    csrf: [u8; 16],
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("target", &self.target)
            .field("prompt", &self.prompt)
            .field("created", &self.created)
            .field("bound", &self.browser.is_some())
            .finish_non_exhaustive()
    }
}

impl Flow {
    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = Writer::default();
        w.bytes(&self.id);
        w.u64(unix_secs(self.created));
        w.u8(match self.prompt {
            Prompt::IfNeeded => 0,
            Prompt::Always => 1,
            Prompt::Never => 2,
        });
        match &self.browser {
            None => w.u8(0),
            Some(b) => {
                w.u8(1);
                w.bytes(b);
            }
        }
        w.bytes(&self.csrf);
        match &self.target {
            Target::Portal => w.u8(0),
            Target::Saml {
                sp,
                acs,
                request_id,
                relay_state,
                name_id_format,
            } => {
                w.u8(1);
                w.str(sp);
                w.str(acs);
                w.opt(request_id.as_deref());
                w.opt(relay_state.as_deref());
                w.str(name_id_format);
            }
            Target::WsFed { realm, reply, wctx } => {
                w.u8(2);
                w.str(realm);
                w.str(reply);
                w.opt(wctx.as_deref());
            }
        }
        zeroize::Zeroizing::new(w.0)
    }

    fn decode(b: &[u8]) -> Result<Self, FlowError> {
        let mut r = Reader(b);
        let id = r.arr()?;
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(r.u64()?);
        let prompt = match r.u8()? {
            0 => Prompt::IfNeeded,
            1 => Prompt::Always,
            2 => Prompt::Never,
            _ => return Err(FlowError::Malformed),
        };
        let browser = match r.u8()? {
            0 => None,
            1 => Some(r.arr()?),
            _ => return Err(FlowError::Malformed),
        };
        let csrf = r.arr()?;
        let target = match r.u8()? {
            0 => Target::Portal,
            1 => Target::Saml {
                sp: r.str()?,
                acs: r.str()?,
                request_id: r.opt()?,
                relay_state: r.opt()?,
                name_id_format: r.str()?,
            },
            2 => Target::WsFed {
                realm: r.str()?,
                reply: r.str()?,
                wctx: r.opt()?,
            },
            _ => return Err(FlowError::Malformed),
        };
        r.done()?;
        Ok(Self {
            target,
            prompt,
            id,
            created,
            browser,
            csrf,
        })
    }

    /// When the application asked for this sign-in.
    pub fn created(&self) -> SystemTime {
        self.created
    }
}

/// What a confirmed sign-out goes on to do, sealed into the confirmation form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutNext {
    /// Answer the SAML application that asked (after telling the session's others).
    Saml(LogoutOrigin),
    /// Back to a registered WS-Federation reply URL, or the signed-out page.
    WsFed {
        /// The registered URL to return to.
        back: Option<String>,
    },
}

/// Pending sign-in flows. They live in the browser, sealed (encrypted and authenticated)
/// under a key only this service holds: in the redirect to the sign-in page, then in the
/// form, bound to the browser's login cookie. An unauthenticated request therefore
/// creates no state here at all; the only table is the used-once record, written by
/// successful sign-ins alone.
#[derive(Debug)]
pub struct Flows {
    key: FlowKey,
    /// Flow id → the end of its life; a flow found here cannot sign in again.
    used: Mutex<Table<[u8; 16], SystemTime>>,
}

impl Flows {
    /// Flows sealed under `key`.
    pub fn new(key: FlowKey) -> Self {
        Self {
            key,
            used: Mutex::new(Table::new(MAX_USED_FLOWS)),
        }
    }

    /// Starts a flow created `now`; returns the sealed state, not yet bound to a browser.
    pub fn start(&self, target: Target, prompt: Prompt, now: SystemTime) -> String {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("OS random generator");
        let f = Flow {
            target,
            prompt,
            id,
            // Whole seconds, as sealed, so that a flow reads back as it was made.
            created: SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs(now)),
            browser: None,
            csrf: [0; 16],
        };
        self.key.seal(FLOW_AAD, &f.encode())
    }

    /// Reads sealed state: authentic, within its lifetime and not used for a sign-in yet.
    pub fn open(&self, blob: &str, now: SystemTime) -> Result<Flow, FlowError> {
        let f = Flow::decode(&self.key.open(FLOW_AAD, blob)?)?;
        check_age(f.created, now)?;
        let used = lock(&self.used)
            .get(&f.id)
            .is_some_and(|until| *until > now);
        if used {
            return Err(FlowError::Used);
        }
        Ok(f)
    }

    /// Seals `flow` again for the form shown to the browser whose login cookie hashes to
    /// `browser`, with a fresh anti-forgery token; returns (state, token).
    pub fn bind(&self, flow: &Flow, browser: [u8; 32]) -> (String, String) {
        let mut f = flow.clone();
        getrandom::fill(&mut f.csrf).expect("OS random generator");
        f.browser = Some(browser);
        let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(f.csrf);
        (self.key.seal(FLOW_AAD, &f.encode()), csrf)
    }

    /// Reads the state of a posted form, which must come with its anti-forgery token and
    /// from the browser it was shown to (its login cookie).
    pub fn take_if(
        &self,
        blob: &str,
        csrf: &str,
        browser: Option<[u8; 32]>,
        now: SystemTime,
    ) -> Result<Flow, FlowError> {
        use subtle::ConstantTimeEq;
        let f = self.open(blob, now)?;
        let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(csrf.as_bytes())
            .unwrap_or_default();
        let token_ok = f.browser.is_some() && bool::from(f.csrf.as_slice().ct_eq(&csrf));
        let browser_ok =
            matches!((f.browser, browser), (Some(a), Some(b)) if bool::from(a.ct_eq(&b)));
        if !token_ok || !browser_ok {
            return Err(FlowError::Forged);
        }
        Ok(f)
    }

    /// Records that `flow` signed a user in (call only after the password was accepted):
    /// false when it had done so already. Bounded, and only successful sign-ins write
    /// here, so nobody without a password can push another user's record out.
    pub fn mark_used(&self, flow: &Flow, now: SystemTime) -> bool {
        let mut used = lock(&self.used);
        if used.get(&flow.id).is_some_and(|until| *until > now) {
            return false;
        }
        used.insert(
            flow.id,
            flow.created + FLOW_TTL + FLOW_FUTURE_SKEW,
            |until| *until <= now,
        );
        true
    }

    /// Entries in the used-once record (the only server-side state of flows).
    pub fn used_len(&self) -> usize {
        lock(&self.used).len()
    }

    /// Seals what a confirmed sign-out goes on to do.
    pub fn seal_logout(&self, next: &LogoutNext, now: SystemTime) -> String {
        let mut w = Writer::default();
        w.u64(unix_secs(now));
        match next {
            LogoutNext::Saml(o) => {
                w.u8(1);
                w.str(&o.app);
                w.str(&o.request_id);
                w.opt(o.relay_state.as_deref());
            }
            LogoutNext::WsFed { back } => {
                w.u8(2);
                w.opt(back.as_deref());
            }
        }
        self.key.seal(LOGOUT_AAD, &w.0)
    }

    /// Reads what [`Flows::seal_logout`] sealed (within [`FLOW_TTL`]).
    pub fn open_logout(&self, blob: &str, now: SystemTime) -> Result<LogoutNext, FlowError> {
        let b = self.key.open(LOGOUT_AAD, blob)?;
        let mut r = Reader(&b);
        check_age(SystemTime::UNIX_EPOCH + Duration::from_secs(r.u64()?), now)?;
        let next = match r.u8()? {
            1 => LogoutNext::Saml(LogoutOrigin {
                app: r.str()?,
                request_id: r.str()?,
                relay_state: r.opt()?,
            }),
            2 => LogoutNext::WsFed { back: r.opt()? },
            _ => return Err(FlowError::Malformed),
        };
        r.done()?;
        Ok(next)
    }
}

const MAX_SEEN_REQUESTS: usize = 100_000;

/// IDs of signed AuthnRequests already answered, per application, until their
/// IssueInstant falls out of the accepted window (after that the window refuses them).
/// Only requests whose signature verified are recorded, so filling the table takes a
/// registered application's signing key: an unauthenticated flood cannot push an entry
/// out and replay it.
#[derive(Debug)]
pub struct SeenRequests {
    map: Mutex<Table<[u8; 32], SystemTime>>,
}

impl Default for SeenRequests {
    fn default() -> Self {
        Self {
            map: Mutex::new(Table::new(MAX_SEEN_REQUESTS)),
        }
    }
}

impl SeenRequests {
    /// Records `issuer`'s request `id` until `until`; false when it was seen before.
    pub fn first_use(&self, issuer: &str, id: &str, until: SystemTime, now: SystemTime) -> bool {
        let mut h = sha2::Sha256::new();
        h.update(issuer.as_bytes());
        h.update([0]);
        h.update(id.as_bytes());
        let k: [u8; 32] = h.finalize().into();
        let mut map = lock(&self.map);
        if map.get(&k).is_some_and(|u| *u > now) {
            return false;
        }
        map.insert(k, until, |u| *u <= now);
        true
    }

    /// Requests recorded.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    fn flows() -> Flows {
        Flows::new(FlowKey::from_bytes(&[7; 32]))
    }

    fn saml_target() -> Target {
        Target::Saml {
            sp: "https://sp.example/metadata".into(),
            acs: "https://sp.example/acs".into(),
            request_id: Some("_req1".into()),
            relay_state: Some("state é".into()),
            name_id_format: "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into(),
        }
    }

    #[test]
    fn sealed_flow_state_reads_back_as_it_was_made_and_says_nothing_in_clear() {
        let f = flows();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let blob = f.start(saml_target(), Prompt::Always, now);
        assert!(!blob.contains("sp.example") && blob.len() < 600, "{blob}");
        let flow = f.open(&blob, now).expect("opens");
        assert_eq!(flow.prompt, Prompt::Always);
        assert_eq!(flow.created(), now);
        match &flow.target {
            Target::Saml {
                acs, relay_state, ..
            } => {
                assert_eq!(acs, "https://sp.example/acs");
                assert_eq!(relay_state.as_deref(), Some("state é"));
            }
            other => panic!("{other:?}"),
        }
        let ws = f.start(
            Target::WsFed {
                realm: "urn:r".into(),
                reply: "https://rp/".into(),
                wctx: Some("x".repeat(2048)),
            },
            Prompt::IfNeeded,
            now,
        );
        assert!(ws.len() <= MAX_FLOW_BLOB);
        assert!(matches!(
            f.open(&ws, now).expect("opens").target,
            Target::WsFed { wctx: Some(w), .. } if w.len() == 2048
        ));
        // Two seals of the same flow differ (random nonce).
        assert_ne!(blob, f.start(saml_target(), Prompt::Always, now));
        assert_eq!(format!("{:?}", FlowKey::random()), "FlowKey([redacted])");
    }

    #[test]
    fn damaged_altered_foreign_and_expired_flow_state_is_refused_for_what_it_is() {
        let f = flows();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let blob = f.start(Target::Portal, Prompt::IfNeeded, now);
        assert_eq!(f.open("%%%", now).err(), Some(FlowError::Malformed));
        assert_eq!(f.open(&blob[..20], now).err(), Some(FlowError::Malformed));
        assert_eq!(
            f.open(&"A".repeat(MAX_FLOW_BLOB + 1), now).err(),
            Some(FlowError::Malformed)
        );
        // One flipped bit anywhere after the version byte.
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&blob)
            .expect("b64");
        for i in 1..raw.len() {
            raw[i] ^= 1;
            let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
            assert_eq!(f.open(&t, now).err(), Some(FlowError::Tampered), "byte {i}");
            raw[i] ^= 1;
        }
        // Sealed under another key (another deployment, or a lost key file).
        let other = Flows::new(FlowKey::from_bytes(&[8; 32]));
        assert_eq!(other.open(&blob, now).err(), Some(FlowError::Tampered));
        // A logout confirmation is not a flow, nor the other way round.
        let lo = f.seal_logout(&LogoutNext::WsFed { back: None }, now);
        assert_eq!(f.open(&lo, now).err(), Some(FlowError::Tampered));
        assert_eq!(f.open_logout(&blob, now).err(), Some(FlowError::Tampered));
        assert_eq!(
            f.open_logout(&lo, now),
            Ok(LogoutNext::WsFed { back: None })
        );
        // Expiry is checked on use, against the creation time sealed inside.
        assert!(f
            .open(&blob, now + FLOW_TTL - Duration::from_secs(1))
            .is_ok());
        assert_eq!(
            f.open(&blob, now + FLOW_TTL).err(),
            Some(FlowError::Expired)
        );
        assert_eq!(
            f.open_logout(&lo, now + FLOW_TTL).err(),
            Some(FlowError::Expired)
        );
        assert_eq!(
            f.open(&blob, now - FLOW_FUTURE_SKEW - Duration::from_secs(1))
                .err(),
            Some(FlowError::Expired),
            "from the future"
        );
    }

    #[test]
    fn a_flow_signs_in_once_and_only_from_the_browser_it_was_shown_to() {
        let f = flows();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let unbound = f.start(Target::Portal, Prompt::IfNeeded, now);
        let browser = token_hash("cookie");
        // The redirect's state is not a form: it has no token and no browser.
        assert_eq!(
            f.take_if(&unbound, "", Some(browser), now).err(),
            Some(FlowError::Forged)
        );
        let flow = f.open(&unbound, now).expect("opens");
        let (form, csrf) = f.bind(&flow, browser);
        assert_eq!(
            f.take_if(&form, "wrong", Some(browser), now).err(),
            Some(FlowError::Forged)
        );
        assert_eq!(
            f.take_if(&form, &csrf, Some(token_hash("other")), now)
                .err(),
            Some(FlowError::Forged)
        );
        assert_eq!(
            f.take_if(&form, &csrf, None, now).err(),
            Some(FlowError::Forged)
        );
        // A re-rendered form has a new token; the old token does not fit it.
        let (form2, csrf2) = f.bind(&flow, browser);
        assert_ne!(csrf, csrf2);
        assert_eq!(
            f.take_if(&form2, &csrf, Some(browser), now).err(),
            Some(FlowError::Forged)
        );
        let taken = f.take_if(&form, &csrf, Some(browser), now).expect("taken");
        assert_eq!(
            f.used_len(),
            0,
            "a failed or pending attempt writes nothing"
        );
        assert!(f.mark_used(&taken, now), "first sign-in");
        assert!(!f.mark_used(&taken, now), "a concurrent second one loses");
        for (blob, token) in [(&form, &csrf), (&form2, &csrf2)] {
            assert_eq!(
                f.take_if(blob, token, Some(browser), now).err(),
                Some(FlowError::Used),
                "every rendering of a used flow is spent"
            );
        }
        assert_eq!(f.open(&unbound, now).err(), Some(FlowError::Used));
        // The record goes once the flow would have expired anyway.
        assert_eq!(f.used_len(), 1);
        let later = now + FLOW_TTL + FLOW_FUTURE_SKEW;
        let other = f.open(&f.start(Target::Portal, Prompt::IfNeeded, later), later);
        assert!(f.mark_used(&other.expect("opens"), later));
        assert_eq!(f.used_len(), 1, "the expired record was dropped");
    }

    #[test]
    fn a_flood_of_unauthenticated_flow_starts_neither_evicts_a_pending_sign_in_nor_grows_state() {
        // The old table held 100,000 flows and dropped the oldest: this many starts
        // pushed out a real user's flow, who then read "expired" with the right password.
        let f = flows();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let user = f.start(saml_target(), Prompt::IfNeeded, now);
        let browser = token_hash("user's login cookie");
        let (form, csrf) = f.bind(&f.open(&user, now).expect("opens"), browser);
        for _ in 0..120_000 {
            let _ = f.start(Target::Portal, Prompt::IfNeeded, now);
        }
        assert_eq!(f.used_len(), 0, "no state for requests without a password");
        let flow = f
            .take_if(&form, &csrf, Some(browser), now + Duration::from_secs(60))
            .expect("the user's pending sign-in is intact");
        assert!(matches!(flow.target, Target::Saml { .. }));
    }

    #[test]
    fn the_used_once_record_and_the_request_id_cache_stay_within_their_bounds() {
        let f = flows();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let flow = f
            .open(&f.start(Target::Portal, Prompt::IfNeeded, now), now)
            .expect("opens");
        for i in 0..MAX_USED_FLOWS + 10 {
            let mut g = flow.clone();
            g.id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            assert!(f.mark_used(&g, now));
        }
        assert_eq!(f.used_len(), MAX_USED_FLOWS);
        let s = SeenRequests::default();
        let until = now + Duration::from_secs(600);
        for i in 0..MAX_SEEN_REQUESTS + 10 {
            assert!(s.first_use("sp", &format!("_{i}"), until, now));
        }
        assert_eq!(s.len(), MAX_SEEN_REQUESTS);
        let shown = format!("{flow:?}");
        assert!(
            !shown.contains("csrf") && shown.contains("bound: false"),
            "{shown}"
        );
    }

    #[test]
    fn the_flow_key_is_created_private_then_loaded_and_a_loose_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("causeway-flowkey-{}", random_token()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(FLOW_KEY_FILE);
        let now = SystemTime::now();
        let a = Flows::new(FlowKey::load_or_create(&path).expect("created"));
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let blob = a.start(Target::Portal, Prompt::IfNeeded, now);
        // A restart loads the same key: pending sign-ins survive it.
        let b = Flows::new(FlowKey::load_or_create(&path).expect("loaded"));
        assert!(b.open(&blob, now).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = FlowKey::load_or_create(&path).expect_err("loose");
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let e = FlowKey::load_or_create(&path).expect_err("short");
        assert!(e.contains("holds 5 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_signed_request_id_is_answered_once_per_application_until_its_window_ends() {
        let s = SeenRequests::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let until = now + Duration::from_secs(600);
        assert!(s.first_use("sp1", "_a", until, now));
        assert!(!s.first_use("sp1", "_a", until, now), "replay");
        assert!(
            s.first_use("sp2", "_a", until, now),
            "another application's ID"
        );
        assert!(
            s.first_use("sp1", "_a", until, until),
            "the window refuses it from here"
        );
        assert_eq!(s.len(), 1, "records past their window were dropped");
    }
}
