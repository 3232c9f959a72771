//! Single logouts on their way round a session's applications through the browser. It
//! must never keep a chain past its lifetime, nor hand one back twice.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::table::Table;
use super::{random_token, Participant, Session};
use crate::lock;

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
