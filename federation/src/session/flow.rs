//! Pending sign-in flows and logout confirmations, sealed into the browser: what an
//! application asked for, bound to the browser's login cookie and its form. It must never
//! keep server-side state for a request without a password, nor let a flow sign in twice.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine;

use super::seal::{FlowKey, Reader, Writer};
use super::table::Table;
use super::LogoutOrigin;
use crate::lock;

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
    /// An OpenID Connect authorization code sent to a registered redirect URI.
    Oidc {
        /// The client id.
        client_id: String,
        /// The checked authorization request (`causeway_oidc::AuthorizeRequest::encode`).
        request: String,
    },
    /// The endpoint's own start page.
    Portal,
}

impl Target {
    /// The application's id (SAML entity id, WS-Fed realm, OIDC client id), for logs and
    /// the audit log.
    pub fn app_id(&self) -> Option<&str> {
        match self {
            Target::Saml { sp, .. } => Some(sp),
            Target::WsFed { realm, .. } => Some(realm),
            Target::Oidc { client_id, .. } => Some(client_id),
            Target::Portal => None,
        }
    }
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
pub(super) const FLOW_FUTURE_SKEW: Duration = Duration::from_secs(60);
pub(super) const MAX_USED_FLOWS: usize = 100_000;
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
    pub(super) id: [u8; 16],
    /// When the application asked (whole seconds).
    pub(super) created: SystemTime,
    /// Hash of the login cookie of the browser the form was shown to.
    pub(super) browser: Option<[u8; 32]>,
    /// The form's anti-forgery token (new at every rendering).
    pub(super) csrf: [u8; 16],
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
            Target::Oidc { client_id, request } => {
                w.u8(3);
                w.str(client_id);
                w.str(request);
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
            3 => Target::Oidc {
                client_id: r.str()?,
                request: r.str()?,
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
