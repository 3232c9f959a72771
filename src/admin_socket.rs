//! The endpoint's local admin socket, `<data dir>/admin.sock` (mode 0600): how
//! `causeway users test-signin` asks the running endpoint, the only process that holds the
//! connected agents and the live smart-lockout counters, to run one sign-in check exactly
//! as the sign-in page would, without a session or a cookie. Only the data directory's
//! owner (or root) may connect; the password crosses only this socket and is never logged.

use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use causeway_credential::{Password, SignInOutcome};
use causeway_federation::signin::{Authenticator, Method, Path as SignInPath, Reason, Trace};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};
use zeroize::Zeroizing;

/// The socket's name inside the data directory.
const SOCKET_NAME: &str = "admin.sock";
/// The one request this socket answers.
const TEST_SIGNIN: &str = "test-signin";
/// A request is a verb, a UPN, an address and a password: a few hundred bytes.
const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Checks answered at once; more wait in the accept queue.
const MAX_CONCURRENT: usize = 4;
/// How long the client waits for the answer: longer than the hub's deadline (10 s) plus a
/// lockout wait, so that a slow directory shows as the endpoint's outcome, not a timeout.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the admin socket of the endpoint using `data_dir` lives.
pub(crate) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Listens on the admin socket of `data_dir`; `None` (with a warning) when it cannot, since
/// sign-ins matter more than the diagnostic. Returns the uid allowed to connect besides
/// root: the data directory's owner.
pub(crate) async fn bind(data_dir: &Path) -> Option<(UnixListener, u32)> {
    let path = socket_path(data_dir);
    let owner = match std::fs::metadata(data_dir) {
        Ok(m) => m.uid(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "admin socket not served: cannot read the data directory's owner");
            return None;
        }
    };
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            warn!(path = %path.display(), "admin socket not served: another endpoint answers on it (two endpoints on one data directory?); `causeway users test-signin` reaches that one");
            return None;
        }
        // Left by an endpoint that stopped: nobody answers on it.
        let _ = std::fs::remove_file(&path);
    }
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "admin socket not served: `causeway users test-signin` cannot reach this endpoint");
            return None;
        }
    };
    // The data directory is 0700 already; the socket itself is the owner's alone too.
    if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
        warn!(path = %path.display(), error = %e, "admin socket not served: cannot restrict it to its owner");
        let _ = std::fs::remove_file(&path);
        return None;
    }
    info!(path = %path.display(), "admin socket ready (causeway users test-signin)");
    Some((listener, owner))
}

/// Answers on `listener` until the endpoint stops.
pub(crate) async fn serve(listener: UnixListener, owner: u32, auth: Arc<Authenticator>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    loop {
        // Wait for a slot before accepting: excess clients wait in the kernel's queue.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "admin socket: accept failed");
                // Out of descriptors, most likely: do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let auth = auth.clone();
        tokio::spawn(async move {
            let _permit = permit;
            handle(stream, owner, &auth).await;
        });
    }
}

async fn handle(mut stream: UnixStream, owner: u32, auth: &Authenticator) {
    let reply = match answer(&mut stream, owner, auth).await {
        Ok(text) => text,
        Err(why) => format!("error: {why}\n"),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

async fn answer(stream: &mut UnixStream, owner: u32, auth: &Authenticator) -> Result<String> {
    let uid = stream
        .peer_cred()
        .context("cannot tell who connected")?
        .uid();
    if uid != owner && uid != 0 {
        warn!(
            uid,
            owner, "admin socket: refused a client that does not own the data directory"
        );
        bail!("only the owner of the data directory (uid {owner}) or root may use this socket");
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut *stream)
            .take(MAX_REQUEST as u64 + 1)
            .read_to_end(&mut buf),
    )
    .await;
    match read {
        Ok(Ok(_)) if buf.len() <= MAX_REQUEST => {}
        Ok(Ok(_)) => bail!("request longer than {MAX_REQUEST} bytes"),
        Ok(Err(e)) => bail!("cannot read the request: {e}"),
        Err(_) => bail!("no complete request within {} s", REQUEST_TIMEOUT.as_secs()),
    }
    let req = Request::decode(&buf)?;
    let trace = auth
        .authenticate_traced(&req.upn, req.password, req.source)
        .await;
    info!(
        user = %req.upn,
        outcome = %trace.outcome,
        path = path_name(trace.path),
        "diagnostic sign-in (causeway users test-signin): no session created"
    );
    Ok(report(&trace))
}

/// One `test-signin` request: `test-signin\n<upn>\n<source address or nothing>\n<password>`,
/// the password running to the end of the stream (so any character but NUL may be in it).
struct Request {
    upn: String,
    source: Option<IpAddr>,
    password: Password,
}

impl Request {
    fn encode(upn: &str, source: Option<IpAddr>, password: &Password) -> Zeroizing<Vec<u8>> {
        let source = source.map(|s| s.to_string()).unwrap_or_default();
        let mut out = Zeroizing::new(Vec::new());
        for part in [TEST_SIGNIN, upn, &source] {
            out.extend_from_slice(part.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(password.expose_secret().as_bytes());
        out
    }

    fn decode(buf: &[u8]) -> Result<Self> {
        let mut parts = buf.splitn(4, |&b| b == b'\n');
        let (Some(verb), Some(upn), Some(source), Some(password)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("malformed request");
        };
        if verb != TEST_SIGNIN.as_bytes() {
            bail!("unknown request (this endpoint answers only {TEST_SIGNIN})");
        }
        let upn = std::str::from_utf8(upn)
            .context("the user name is not UTF-8")?
            .to_owned();
        let source = match std::str::from_utf8(source) {
            Ok("") => None,
            Ok(s) => Some(s.parse().context("the source is not an IP address")?),
            Err(_) => bail!("the source is not an IP address"),
        };
        let password =
            Password::from_utf8(password.to_vec()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Self {
            upn,
            source,
            password,
        })
    }
}

fn path_name(p: SignInPath) -> &'static str {
    match p {
        SignInPath::PassThrough => "pass-through",
        SignInPath::HashSync => "hash sync",
        SignInPath::None => "none",
    }
}

/// What `test-signin` prints: `outcome:` first (scripts read it), then the path, why that
/// path, and what the outcome means.
fn report(t: &Trace) -> String {
    let path = path_name(t.path);
    let why = match (t.reason, t.agents_connected) {
        (Reason::CloudOnly, _) => {
            "cloud-only user: always checked against its own stored verifier".to_owned()
        }
        (Reason::NotServed, _) => {
            "not a domain this endpoint serves (no [[domain]] entry): checked like a name that exists nowhere, so it never succeeds".to_owned()
        }
        (Reason::NoAgentFellBack, _) => {
            "no agent connected, fell back to hash sync (the domain's method is pta+phs)".to_owned()
        }
        (Reason::Domain(Method::Phs), _) => "the domain's method is phs (password hash sync)".to_owned(),
        (Reason::Domain(Method::Pta), false) => {
            "no agent connected, and the domain's method is pta (pass-through only): there is no hash-sync fallback (method pta+phs would have one)".to_owned()
        }
        (Reason::Domain(Method::Pta), true) => {
            "the domain's method is pta (pass-through): an agent asked the directory".to_owned()
        }
        (Reason::Domain(Method::PtaWithPhsFallback), _) => {
            "an agent is connected, so pass-through was used (the domain's method is pta+phs; hash sync only when no agent is connected)".to_owned()
        }
    };
    let mut out = format!(
        "outcome: {}\npath: {path}\nwhy: {why}\ndetail: {}\n",
        t.outcome,
        t.outcome.operator_text()
    );
    if t.path == SignInPath::None && t.reason != Reason::NotServed {
        out.push_str("note: answered by smart lockout or throttling, before any password check\n");
    }
    out
}

/// Asks the endpoint running on `data_dir` to check `password` for `upn`; returns its
/// report, and whether the outcome was a success.
pub(crate) async fn test_signin(
    data_dir: &Path,
    upn: &str,
    source: Option<IpAddr>,
    password: &Password,
) -> Result<(String, bool)> {
    let path = socket_path(data_dir);
    let mut stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no running endpoint answers on {}: test-signin asks the running `causeway serve` (only it has the connected agents and the live lockout counters); start it, or pass the --data-dir it runs with",
            path.display()
        )
    })?;
    let request = Request::encode(upn, source, password);
    let mut reply = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, async {
        stream.write_all(&request).await?;
        stream.shutdown().await?;
        (&mut stream)
            .take(MAX_REQUEST as u64)
            .read_to_end(&mut reply)
            .await
    })
    .await
    .with_context(|| {
        format!(
            "the endpoint did not answer within {} s",
            ANSWER_TIMEOUT.as_secs()
        )
    })?
    .context("talking to the endpoint's admin socket")?;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if let Some(e) = reply.strip_prefix("error: ") {
        bail!("the endpoint refused the check: {}", e.trim_end());
    }
    let success = reply
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("outcome: "))
        .and_then(SignInOutcome::from_code)
        .context("the endpoint's answer has no outcome")?
        == SignInOutcome::Success;
    Ok((reply, success))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Password {
        Password::new(s.into()).expect("valid")
    }

    #[test]
    fn requests_round_trip_with_any_password() {
        for (source, password) in [
            (None, "Blue-Harbor-41"),
            (Some("192.0.2.7".parse().expect("ip")), "with\nnew\nlines "),
        ] {
            let bytes = Request::encode("alice@corp.example", source, &pw(password));
            let r = Request::decode(&bytes).expect("decodes");
            assert_eq!(r.upn, "alice@corp.example");
            assert_eq!(r.source, source);
            assert_eq!(r.password.expose_secret(), password);
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        for bad in [
            &b""[..],
            b"test-signin\nalice@corp.example",
            b"test-signin\nalice@corp.example\n\n",
            b"shutdown\nalice@corp.example\n\nx",
            b"test-signin\nalice@corp.example\nnot-an-ip\nx",
        ] {
            assert!(Request::decode(bad).is_err(), "{bad:?}");
        }
    }

    /// One endpoint per data directory answers: a second one leaves the live socket alone,
    /// and the socket a stopped endpoint left behind is taken over. Owner-only either way.
    #[tokio::test]
    async fn a_live_socket_is_kept_and_a_stale_one_replaced() {
        let dir = causeway_testkit::TempDir::new("admin-socket");
        let (first, owner) = bind(dir.path()).await.expect("binds");
        assert_eq!(owner, std::fs::metadata(dir.path()).expect("dir").uid());
        let mode = std::fs::metadata(socket_path(dir.path()))
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(bind(dir.path()).await.is_none(), "the first still answers");
        drop(first);
        assert!(socket_path(dir.path()).exists(), "left behind");
        let (_again, _) = bind(dir.path()).await.expect("a stale socket is replaced");
    }

    /// What a client may cost is bounded: a request over 4 KiB is refused once 4 KiB + 1
    /// bytes are read, and a client that sends nothing is let go after 5 s (paused clock).
    #[tokio::test(start_paused = true)]
    async fn requests_are_bounded_in_size_and_time() {
        let dir = causeway_testkit::TempDir::new("admin-bounds");
        let store =
            causeway_store::SqliteStore::open(&dir.path().join("directory.sqlite")).expect("store");
        let hub =
            causeway_federation::hub::Hub::new(causeway_federation::hub::HubConfig::new("ep"));
        let auth = Arc::new(Authenticator::new(hub, Arc::new(store), Vec::new()));
        let (listener, owner) = bind(dir.path()).await.expect("binds");
        tokio::spawn(serve(listener, owner, auth));
        let ask = |request: Option<Vec<u8>>| {
            let path = socket_path(dir.path());
            async move {
                let mut s = UnixStream::connect(path).await.expect("connect");
                if let Some(r) = request {
                    s.write_all(&r).await.expect("send");
                }
                let mut reply = String::new();
                s.read_to_string(&mut reply).await.expect("reply");
                reply
            }
        };
        let started = tokio::time::Instant::now();
        // One byte over, and never an end of stream: the server stops reading at the bound.
        let reply = ask(Some(vec![b'x'; MAX_REQUEST + 1])).await;
        assert_eq!(reply, "error: request longer than 4096 bytes\n");
        assert!(started.elapsed() < REQUEST_TIMEOUT, "refused at once");
        let reply = ask(None).await;
        assert_eq!(reply, "error: no complete request within 5 s\n");
        assert!(started.elapsed() >= REQUEST_TIMEOUT);
    }

    fn trace(outcome: SignInOutcome, path: SignInPath, reason: Reason, agents: bool) -> Trace {
        Trace {
            outcome,
            path,
            reason,
            agents_connected: agents,
            agent: None,
        }
    }

    #[test]
    fn the_report_says_which_path_and_why() {
        let r = report(&trace(
            SignInOutcome::Success,
            SignInPath::HashSync,
            Reason::NoAgentFellBack,
            false,
        ));
        assert!(r.starts_with("outcome: success\npath: hash sync\n"), "{r}");
        assert!(
            r.contains("no agent connected, fell back to hash sync"),
            "{r}"
        );
        let r = report(&trace(
            SignInOutcome::DirectoryUnavailable,
            SignInPath::PassThrough,
            Reason::Domain(Method::Pta),
            false,
        ));
        assert!(
            r.starts_with("outcome: directory_unavailable\npath: pass-through\n"),
            "{r}"
        );
        assert!(
            r.contains("no agent connected") && r.contains("no hash-sync fallback"),
            "{r}"
        );
        let r = report(&trace(
            SignInOutcome::AccountLocked,
            SignInPath::None,
            Reason::CloudOnly,
            false,
        ));
        assert!(
            r.contains("path: none") && r.contains("smart lockout"),
            "{r}"
        );
    }
}
