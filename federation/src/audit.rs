//! The audit log: one JSON line per sign-in, administrator change, agent event and sync
//! event, in `<data dir>/audit/audit.jsonl`, rotated by size, read back by `causeway audit`.
//!
//! An [`Event`] holds identifiers and fixed words only — a UPN as typed, a client address,
//! an application id, an agent id, an outcome code — and its constructors take nothing
//! else, so no password, hash, key or token can reach the file.
//!
//! The log is process-wide, like the tracing subscriber: `serve` installs a writer thread
//! ([`install`]), the admin commands write through the same file lock at once
//! ([`install_direct`]), and every part of the endpoint calls [`record`] without the log
//! being threaded through its constructors. Before anything is installed (unit tests,
//! library users), [`record`] does nothing.
//!
//! Several processes append to one file: every append and every rotation happens under an
//! exclusive lock on `audit.lock`, so lines never interleave and a rotation never loses one.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::RwLock;
use std::time::SystemTime;

use tracing::warn;

/// The current file's name inside the audit directory; rotated files add `.1`, `.2`, ….
pub const FILE_NAME: &str = "audit.jsonl";

/// The longest line [`read`] accepts: a record is a few hundred bytes.
pub const MAX_LINE: usize = 16 * 1024;

/// Events queued for the writer thread before new ones are counted as dropped (and the
/// count written as an event of its own once the writer catches up).
const QUEUE: usize = 8192;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A password checked at the sign-in page, or a token issued to an application.
    Signin,
    /// A change an administrator made (users, apps, certificates, approvals).
    Admin,
    /// An agent connected, went away, enrolled, was refused or renewed.
    Agent,
    /// A sync host's runs and batches.
    Sync,
    /// The audit log itself (events dropped under load).
    Audit,
}

impl Kind {
    /// The word `causeway audit --kind` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Signin => "signin",
            Kind::Admin => "admin",
            Kind::Agent => "agent",
            Kind::Sync => "sync",
            Kind::Audit => "audit",
        }
    }
}

/// One audit record. Optional fields are left out of the line when empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// When (RFC 3339, UTC, milliseconds).
    pub time: String,
    /// What it is about.
    pub kind: Kind,
    /// What happened, e.g. `password`, `token`, `user.add`, `agent.connected`.
    pub action: String,
    /// How it ended: a sign-in outcome code, or `ok` / `refused` / `failed`.
    pub outcome: String,
    /// The user (a UPN, as typed at the sign-in page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The client's address (through trusted proxies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// The application: SAML entity id, WS-Fed realm or OIDC client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// How the password was checked: `pass_through`, `hash_sync`, `none`, or `session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The agent involved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Who acted: the OS user of an admin command, or the sync host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What was acted on (a UPN, an app id, an agent id, a connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A short fixed explanation (never user input beyond identifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// RFC 3339 in UTC with milliseconds, e.g. `2026-12-02T05:53:01.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        d.subsec_millis()
    )
}

/// Parses an [`Event::time`] (any RFC 3339 time).
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let dt = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    let nanos = dt.unix_timestamp_nanos();
    let nanos = u64::try_from(nanos).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos))
}

impl Event {
    fn new(kind: Kind, action: &str, outcome: &str) -> Self {
        Self {
            time: rfc3339(SystemTime::now()),
            kind,
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            user: None,
            client: None,
            app: None,
            method: None,
            agent: None,
            actor: None,
            target: None,
            detail: None,
        }
    }

    /// A password checked at the sign-in page.
    pub fn password_check(
        user: &str,
        client: Option<std::net::IpAddr>,
        app: Option<&str>,
        method: &str,
        agent: Option<&str>,
        outcome: &str,
    ) -> Self {
        let mut e = Self::new(Kind::Signin, "password", outcome);
        e.user = Some(user.to_owned());
        e.client = client.map(|c| c.to_string());
        e.app = app.map(str::to_owned);
        e.method = Some(method.to_owned());
        e.agent = agent.map(str::to_owned);
        e
    }

    /// A token (SAML assertion, WS-Fed token, ID token) issued to an application.
    pub fn token_issued(
        user: &str,
        client: Option<std::net::IpAddr>,
        app: &str,
        method: &str,
    ) -> Self {
        let mut e = Self::new(Kind::Signin, "token", "success");
        e.user = Some(user.to_owned());
        e.client = client.map(|c| c.to_string());
        e.app = Some(app.to_owned());
        e.method = Some(method.to_owned());
        e
    }

    /// An administrator's change (`action` like `user.add`) to `target`.
    pub fn admin(action: &str, target: &str, outcome: &str) -> Self {
        let mut e = Self::new(Kind::Admin, action, outcome);
        e.actor = Some(os_user());
        e.target = Some(target.to_owned());
        e
    }

    /// An agent event (`action` like `agent.connected`).
    pub fn agent(
        action: &str,
        agent: &str,
        client: Option<std::net::IpAddr>,
        outcome: &str,
    ) -> Self {
        let mut e = Self::new(Kind::Agent, action, outcome);
        e.agent = Some(agent.to_owned());
        e.client = client.map(|c| c.to_string());
        e
    }

    /// A sync event (`action` like `sync.run_started`) from `host` for `connector`.
    pub fn sync(action: &str, host: &str, connector: Option<&str>, outcome: &str) -> Self {
        let mut e = Self::new(Kind::Sync, action, outcome);
        e.actor = Some(host.to_owned());
        e.target = connector.map(str::to_owned);
        e
    }

    /// The event as its stored JSON line (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Adds a short explanation (fixed words and counts, never a secret).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The OS user running this process, for admin events: `$SUDO_USER` (who ran sudo), else
/// `$USER` / `$LOGNAME`, else the numeric uid from `/proc/self/status`.
fn os_user() -> String {
    let plausible =
        |u: &String| !u.is_empty() && u.len() <= 64 && u.chars().all(|c| c.is_ascii_graphic());
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(plausible))
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            Some(format!("uid {}", uid.split_whitespace().next()?))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// How big files grow and how many are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept (`audit.jsonl.1` … `.N`); older ones are deleted.
    pub keep_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_file_bytes: 64 * 1024 * 1024,
            keep_files: 10,
        }
    }
}

/// An audit directory, for appending under its lock.
#[derive(Debug, Clone)]
pub struct AuditLog {
    dir: PathBuf,
    rotation: Rotation,
}

impl AuditLog {
    /// Opens (and creates, mode 0700) the audit directory `dir`.
    pub fn open(dir: &Path, rotation: Rotation) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        set_mode(dir, 0o700)?;
        Ok(Self {
            dir: dir.to_owned(),
            rotation,
        })
    }

    /// Appends `events` as one write, rotating first when the file would grow too big.
    pub fn append(&self, events: &[Event]) -> std::io::Result<()> {
        let mut text = Vec::with_capacity(events.len() * 256);
        for e in events {
            serde_json::to_writer(&mut text, e).map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("audit.lock"))?;
        lock.lock()?;
        let current = self.dir.join(FILE_NAME);
        let size = std::fs::metadata(&current).map_or(0, |m| m.len());
        if size > 0 && size + text.len() as u64 > self.rotation.max_file_bytes {
            self.rotate()?;
        }
        let mut f = open_append(&current)?;
        f.write_all(&text)?;
        drop(lock);
        Ok(())
    }

    /// Shifts `audit.jsonl.N-1` to `.N` … and the current file to `.1` (the lock held).
    fn rotate(&self) -> std::io::Result<()> {
        let keep = self.rotation.keep_files;
        let name = |i: u32| self.dir.join(format!("{FILE_NAME}.{i}"));
        if keep == 0 {
            return std::fs::remove_file(self.dir.join(FILE_NAME));
        }
        match std::fs::remove_file(name(keep)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for i in (1..keep).rev() {
            match std::fs::rename(name(i), name(i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(self.dir.join(FILE_NAME), name(1))
    }

    /// The files to read, oldest first.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let n = name
                    .strip_prefix(FILE_NAME)?
                    .strip_prefix('.')?
                    .parse()
                    .ok()?;
                Some((n, e.path()))
            })
            .collect();
        rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
        let current = dir.join(FILE_NAME);
        if current.exists() {
            files.push(current);
        }
        files
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Why an audit file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not an audit record.
    #[error("{}:{line}: {problem}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number (from 1).
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// Reads every record in `dir`, oldest first, giving each to `each`; stops at the first
/// malformed line with its file and line number. Lines are bounded by [`MAX_LINE`].
pub fn read(dir: &Path, mut each: impl FnMut(Event)) -> Result<(), ReadError> {
    for path in AuditLog::files(dir) {
        let io = |source| ReadError::Io {
            path: path.clone(),
            source,
        };
        let mut r = BufReader::new(File::open(&path).map_err(io)?);
        let mut buf = Vec::new();
        let mut line = 0;
        loop {
            buf.clear();
            line += 1;
            let n = (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(io)?;
            if n == 0 {
                break;
            }
            let malformed = |problem: String| ReadError::Malformed {
                path: path.clone(),
                line,
                problem,
            };
            if buf.last() != Some(&b'\n') {
                if n > MAX_LINE {
                    return Err(malformed(format!("longer than {MAX_LINE} bytes")));
                }
                // The last line of a file another process is appending to: not yet whole.
                break;
            }
            let e: Event = serde_json::from_slice(&buf[..buf.len() - 1])
                .map_err(|e| malformed(format!("not an audit record: {e}")))?;
            each(e);
        }
    }
    Ok(())
}

enum Sink {
    Thread(SyncSender<Event>),
    Direct(AuditLog),
}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Sends every later [`record`] to `log` through a writer thread (for `serve`: a sign-in
/// never waits on the disk). Replaces what was installed before.
pub fn install(log: AuditLog) {
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer(&log, &rx))
        .map(|_| ())
        .unwrap_or_else(
            |e| warn!(error = %e, "cannot start the audit writer; audit events are not written"),
        );
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(Sink::Thread(tx));
}

/// Writes every later [`record`] to `log` at once (for one-shot admin commands).
pub fn install_direct(log: AuditLog) {
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = Some(Sink::Direct(log));
}

/// Records `event` in the installed log; without one, does nothing.
pub fn record(event: Event) {
    let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
    match sink.as_ref() {
        None => {}
        Some(Sink::Direct(log)) => {
            if let Err(e) = log.append(std::slice::from_ref(&event)) {
                warn!(error = %e, "cannot write the audit log");
            }
        }
        Some(Sink::Thread(tx)) => match tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if DROPPED.fetch_add(1, Ordering::Relaxed).is_multiple_of(1000) {
                    warn!("audit writer behind; events dropped (their count will be recorded)");
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                warn!("audit writer stopped; event not written");
            }
        },
    }
}

fn writer(log: &AuditLog, rx: &Receiver<Event>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push(
                Event::new(Kind::Audit, "dropped", "failed")
                    .with_detail(format!("{dropped} events dropped: the writer was behind")),
            );
        }
        if let Err(e) = log.append(&batch) {
            warn!(error = %e, events = batch.len(), "cannot write the audit log");
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests;
