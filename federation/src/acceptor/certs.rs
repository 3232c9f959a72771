//! Which certificate a handshake on the endpoint gets: browsers and relying parties see
//! the operator's own (`server.tls_cert_file` / `server.tls_key_file`), reloaded when the
//! files change or on SIGHUP; agents and sync hosts, which pin Causeway's CA, keep the
//! certificate that CA issued, chosen by the ALPN they offer. A reload only changes what
//! later handshakes see: open connections keep theirs, and a bad file keeps the old pair.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use causeway_certs::{load_cert_files, CertsError, LoadedCert};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::Notify;
use tracing::{info, warn};

/// The operator's certificate chain and key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// What a file's metadata says about its content, to notice a change without reading it.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(p: &std::path::Path) -> Stamp {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The browser-facing certificate in force, and the files it came from.
#[derive(Debug)]
pub struct BrowserCert {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when they were last read (loaded or refused), so that a bad file
    /// is reported once, not at every poll.
    seen: std::sync::Mutex<(Stamp, Stamp)>,
}

impl BrowserCert {
    /// Loads `files` (checked as [`load_cert_files`] does at `now`).
    pub fn load(files: CertFiles, now: SystemTime) -> Result<Arc<Self>, CertsError> {
        let seen = (stamp(&files.cert), stamp(&files.key));
        let loaded = load_cert_files(&files.cert, &files.key, now)?;
        info!(cert_file = %files.cert.display(), subject = %loaded.subject, not_after = %fmt_time(loaded.not_after), "browsers are served the configured certificate");
        Ok(Arc::new(Self {
            current: RwLock::new(loaded.key),
            seen: std::sync::Mutex::new(seen),
            files,
        }))
    }

    /// The pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again and, if they hold a usable pair, serves it from the next
    /// handshake on; otherwise keeps the current pair and says why.
    pub fn reload(&self, now: SystemTime) -> Result<LoadedCert, CertsError> {
        *crate::lock(&self.seen) = (stamp(&self.files.cert), stamp(&self.files.key));
        match load_cert_files(&self.files.cert, &self.files.key, now) {
            Ok(loaded) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.key.clone();
                info!(cert_file = %self.files.cert.display(), subject = %loaded.subject, not_after = %fmt_time(loaded.not_after), "browser certificate reloaded; new connections get it, open ones keep theirs");
                Ok(loaded)
            }
            Err(e) => {
                warn!(error = %e, "browser certificate not reloaded; still serving the previous one");
                Err(e)
            }
        }
    }

    /// Whether either file changed since it was last read.
    fn changed(&self) -> bool {
        let now = (stamp(&self.files.cert), stamp(&self.files.key));
        *crate::lock(&self.seen) != now
    }

    /// Reloads whenever `reload_now` is notified (SIGHUP) and when the files change
    /// (checked every `poll`); runs until the task is dropped.
    pub async fn watch(self: Arc<Self>, poll: Duration, reload_now: Arc<Notify>) {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = reload_now.notified() => {}
                _ = tick.tick() => {
                    if !self.changed() {
                        continue;
                    }
                }
            }
            let _ = self.reload(SystemTime::now());
        }
    }
}

fn fmt_time(t: SystemTime) -> String {
    causeway_saml::saml2::fmt_time(t)
}

/// Chooses each handshake's certificate: Causeway's own for a client that offers one of
/// `internal_alpn` (agents, sync hosts, enrollment), the operator's for everyone else
/// when it is configured.
#[derive(Debug)]
pub struct CertChoice {
    internal: Arc<CertifiedKey>,
    internal_alpn: Vec<Vec<u8>>,
    browser: Option<Arc<BrowserCert>>,
}

impl CertChoice {
    /// Serves `internal` to clients offering any of `internal_alpn`, and `browser` (or,
    /// without it, `internal`) to the rest.
    pub fn new(
        internal: Arc<CertifiedKey>,
        internal_alpn: Vec<Vec<u8>>,
        browser: Option<Arc<BrowserCert>>,
    ) -> Self {
        Self {
            internal,
            internal_alpn,
            browser,
        }
    }
}

impl ResolvesServerCert for CertChoice {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let internal = hello
            .alpn()
            .is_some_and(|mut offered| offered.any(|a| self.internal_alpn.iter().any(|i| i == a)));
        match &self.browser {
            Some(b) if !internal => Some(b.current()),
            _ => Some(self.internal.clone()),
        }
    }
}
