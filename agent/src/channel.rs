//! One agent channel: the agent's side of the protocol on an established, authenticated
//! stream to the hub. The hub's channel key comes first; each Check's envelope is opened in
//! arrival order (its sequence number must go up), then checks run concurrently (up to
//! `max_in_flight`) and verdicts go back as they finish. A silent hub is detected within
//! three heartbeats.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use causeway_credential::{
    ChannelOpener, EnvelopeOpener, OpenedCredential, RequestId, SignInOutcome,
};
use causeway_proto::agent::io::{read_frame, write_frame, write_with_heartbeat};
use causeway_proto::agent::{Frame, GoAwayReason, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, warn};

/// Runs the check the hub asks for. Implemented by [`crate::validator::Validator`].
pub trait CheckHandler: Send + Sync + 'static {
    /// The agent's envelope keys: each channel decapsulates its key with them.
    fn opener(&self) -> &EnvelopeOpener;

    /// Checks an opened credential (the channel opened and authenticated it); never fails,
    /// every problem is an outcome.
    fn check(
        &self,
        request_id: RequestId,
        credential: OpenedCredential,
        deadline: Instant,
    ) -> impl Future<Output = SignInOutcome> + Send;
}

/// Renews the agent's certificate over a live channel.
pub trait Renewer: Send + Sync {
    /// A CSR when renewal is due and none is in flight (checked at every heartbeat).
    fn csr_if_due(&self) -> Option<String>;
    /// The hub sent the renewed certificate.
    fn renewed(&self, cert_pem: &str);
}

/// Who this agent says it is in its Hello.
#[derive(Clone)]
pub struct Identity {
    /// The agent id (must match its certificate).
    pub agent_id: String,
    /// Checks run at once on one channel.
    pub max_in_flight: u16,
    /// Certificate renewal, if this agent renews through its channels.
    pub renewer: Option<Arc<dyn Renewer>>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

/// How a channel ended without an I/O or protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEnd {
    /// The hub said go away, and why.
    GoAway(GoAwayReason, String),
    /// This agent is stopping: it said GoAway, answered the checks it held, and the hub
    /// closed the channel (or the drain deadline passed).
    Drained,
}

/// The agent's stop signal (SIGTERM, SIGINT): `true` once set. A dropped sender never
/// stops anything.
pub type Stop = tokio::sync::watch::Receiver<bool>;

/// How long a stopping agent waits for its checks in flight: the hub gives a check at
/// most 10 s in all, so none can need more.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Returns once `stop` is set (never, if its sender is gone without setting it).
pub async fn stopped(stop: &mut Stop) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The agent's end of its channel: its errors name the hub.
#[derive(Debug)]
pub struct AtAgent;

impl causeway_proto::agent::io::Side for AtAgent {
    /// The agent ends a channel only for what the hub or the connection did.
    type Own = std::convert::Infallible;
    const MALFORMED: &'static str = "hub sent a malformed frame";
    const BROKE: &'static str = "hub broke the protocol";
    const SILENT: (&'static str, &'static str) = ("hub silent for ", "");
    const IO: &'static str = "connection to the hub failed";
}

/// Why a channel failed, as the agent sees it.
pub type ChannelError = causeway_proto::agent::io::ChannelError<AtAgent>;

/// Speaks the protocol on `stream` until the hub goes away or the connection fails.
/// `on_welcome` is called once the hub has accepted the channel.
pub async fn run<S, H>(
    stream: S,
    me: &Identity,
    handler: Arc<H>,
    on_welcome: impl FnOnce(&str),
) -> Result<ChannelEnd, ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: CheckHandler,
{
    let (_never, stop) = tokio::sync::watch::channel(false);
    run_until(stream, me, handler, on_welcome, stop).await
}

/// [`run`] until `stop` is set; then the agent says GoAway (the hub sends it nothing new),
/// answers the checks it holds, and ends once the hub closes the channel or after
/// [`DRAIN_TIMEOUT`].
pub async fn run_until<S, H>(
    stream: S,
    me: &Identity,
    handler: Arc<H>,
    on_welcome: impl FnOnce(&str),
    mut stop: Stop,
) -> Result<ChannelEnd, ChannelError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: CheckHandler,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    write_frame(
        &mut wr,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            agent_id: me.agent_id.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            max_in_flight: me.max_in_flight,
        },
    )
    .await?;
    let first = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut rd))
        .await
        .map_err(|_| ChannelError::Silent(Duration::from_secs(10)))??;
    let (endpoint_id, heartbeat) = match first {
        Frame::Welcome {
            endpoint_id,
            heartbeat_ms,
        } => (
            endpoint_id,
            Duration::from_millis(u64::from(heartbeat_ms.clamp(100, 60_000))),
        ),
        Frame::GoAway { reason, detail } => return Ok(ChannelEnd::GoAway(reason, detail)),
        _ => return Err(ChannelError::Protocol("first frame was not Welcome")),
    };
    on_welcome(&endpoint_id);
    let silent_limit = heartbeat * 3;
    let (tx, mut rx) = mpsc::channel::<Frame>(usize::from(me.max_in_flight.max(1)) * 2);
    let slots = Arc::new(Semaphore::new(usize::from(me.max_in_flight.max(1))));

    let writer = async {
        write_with_heartbeat(&mut wr, &mut rx, heartbeat, || {
            let csr_pem = me.renewer.as_ref().and_then(|r| r.csr_if_due())?;
            info!("certificate renewal due; asking the hub");
            Some(Frame::Renew { csr_pem })
        })
        .await
        .map_err(ChannelError::from)
    };
    // Checks spawned and not answered yet (for the drain's log line).
    let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = async {
        // Set by the hub's ChannelKey frame, which must come before any Check.
        let mut envelopes: Option<ChannelOpener<'_>> = None;
        // Once stopping: when the agent gives up waiting for the hub to close.
        let mut draining: Option<tokio::time::Instant> = None;
        loop {
            let read = tokio::select! {
                r = tokio::time::timeout(silent_limit, read_frame(&mut rd)) => r,
                () = stopped(&mut stop), if draining.is_none() => {
                    let n = in_flight.load(std::sync::atomic::Ordering::SeqCst);
                    info!(in_flight = n, "stopping: telling the hub GoAway, then finishing the checks in flight");
                    let bye = Frame::GoAway {
                        reason: GoAwayReason::ShuttingDown,
                        detail: "agent stopping".into(),
                    };
                    if tx.send(bye).await.is_err() {
                        return Ok(ChannelEnd::Drained);
                    }
                    draining = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                    continue;
                }
                () = async { tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)).await }, if draining.is_some() => {
                    let n = in_flight.load(std::sync::atomic::Ordering::SeqCst);
                    warn!(in_flight = n, "drain deadline passed; closing the channel");
                    return Ok(ChannelEnd::Drained);
                }
            };
            let f = match read.map_err(|_| ChannelError::Silent(silent_limit))? {
                Ok(f) => f,
                // The hub closes a draining channel once every verdict is in.
                Err(_) if draining.is_some() => {
                    info!("drained: the hub closed the channel after the last verdict");
                    return Ok(ChannelEnd::Drained);
                }
                Err(e) => return Err(e.into()),
            };
            match f {
                Frame::ChannelKey { key } => {
                    if envelopes.is_some() {
                        return Err(ChannelError::Protocol("hub sent a second channel key"));
                    }
                    // The channel's one decapsulation; every envelope key derives from it.
                    envelopes =
                        Some(handler.opener().accept_channel(&key).map_err(|_| {
                            ChannelError::Protocol("hub sent an invalid channel key")
                        })?);
                }
                Frame::Check {
                    request_id,
                    deadline_ms,
                    envelope,
                } => {
                    let Some(envelopes) = envelopes.as_mut() else {
                        return Err(ChannelError::Protocol(
                            "hub sent a Check before the channel key",
                        ));
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        // The hub sent more than we announced: answer at once, do not queue.
                        let _ = tx.try_send(Frame::Verdict {
                            request_id,
                            outcome: SignInOutcome::Throttled,
                            directory_us: 0,
                        });
                        continue;
                    };
                    let deadline = Instant::now() + Duration::from_millis(u64::from(deadline_ms));
                    // Opened here, in the order the hub sealed them, not in the spawned
                    // tasks, which may run in any order. A microsecond or two.
                    let credential = match envelopes.open(&envelope, &endpoint_id, unix_now()) {
                        Ok(c) if c.context.request_id == request_id => c,
                        Ok(_) => {
                            warn!(%request_id, "envelope belongs to another request; refused");
                            let _ = tx.try_send(refused(request_id));
                            continue;
                        }
                        Err(e) => {
                            // The kind only: the error carries no secret, no user input but
                            // lengths, times and sequence numbers.
                            warn!(%request_id, error = %e, "refused a credential envelope");
                            let _ = tx.try_send(refused(request_id));
                            continue;
                        }
                    };
                    let (tx, handler, in_flight) = (tx.clone(), handler.clone(), in_flight.clone());
                    in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let outcome = handler.check(request_id, credential, deadline).await;
                        let directory_us =
                            u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                        debug!(%request_id, %outcome, directory_us, "check answered");
                        // Free the slot before the hub can learn of the verdict: it may send
                        // the next check the moment it does.
                        drop(permit);
                        let _ = tx
                            .send(Frame::Verdict {
                                request_id,
                                outcome,
                                directory_us,
                            })
                            .await;
                        in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    });
                }
                Frame::Ping(n) => {
                    let _ = tx.try_send(Frame::Pong(n));
                }
                Frame::Pong(_) => {}
                Frame::Renewed { cert_pem } => match &me.renewer {
                    Some(r) => r.renewed(&cert_pem),
                    None => warn!("hub sent a certificate that was not asked for; ignored"),
                },
                Frame::GoAway { reason, detail } => {
                    match reason {
                        GoAwayReason::Revoked | GoAwayReason::NotApproved => {
                            warn!(?reason, %detail, "the hub refused this agent")
                        }
                        _ => info!(?reason, %detail, "the hub closed the channel"),
                    }
                    return Ok(ChannelEnd::GoAway(reason, detail));
                }
                _ => return Err(ChannelError::Protocol("unexpected frame from the hub")),
            }
        }
    };
    tokio::select! {
        r = reader => r,
        r = writer => match r {
            Ok(()) => Err(ChannelError::Protocol("writer stopped")),
            Err(e) => Err(e),
        },
    }
}

/// The verdict for an envelope the agent will not open: the hub tries another agent.
fn refused(request_id: RequestId) -> Frame {
    Frame::Verdict {
        request_id,
        outcome: SignInOutcome::DirectoryUnavailable,
        directory_us: 0,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use causeway_proto::agent::FrameError;

    use super::*;

    #[test]
    fn channel_errors_name_the_hub_in_the_words_the_logs_always_used() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let cases = [
            (
                ChannelError::from(causeway_proto::agent::io::WireError::Frame(
                    FrameError::TrailingBytes(2),
                )),
                "hub sent a malformed frame: 2 bytes after the end of the frame",
            ),
            (
                ChannelError::Protocol("writer stopped"),
                "hub broke the protocol: writer stopped",
            ),
            (
                ChannelError::Silent(Duration::from_secs(15)),
                "hub silent for 15s",
            ),
            (ChannelError::from(io), "connection to the hub failed: pipe"),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }

    /// Checks that wait for `release` before answering Success.
    struct Held {
        opener: EnvelopeOpener,
        started: Arc<tokio::sync::Notify>,
        release: Arc<tokio::sync::Notify>,
    }

    impl CheckHandler for Held {
        fn opener(&self) -> &EnvelopeOpener {
            &self.opener
        }

        fn check(
            &self,
            _: RequestId,
            _: OpenedCredential,
            _: Instant,
        ) -> impl Future<Output = SignInOutcome> + Send {
            let (started, release) = (self.started.clone(), self.release.clone());
            async move {
                started.notify_one();
                release.notified().await;
                SignInOutcome::Success
            }
        }
    }

    /// A hub spoken by hand: the agent's channel is up, with one check in its hands.
    struct Hub {
        io: tokio::io::DuplexStream,
        agent: tokio::task::JoinHandle<Result<ChannelEnd, ChannelError>>,
        stop: tokio::sync::watch::Sender<bool>,
        release: Arc<tokio::sync::Notify>,
    }

    async fn with_a_check_in_flight() -> Hub {
        let keys = causeway_credential::AgentKeyPair::generate();
        let public = keys.public().clone();
        let (started, release) = (Arc::default(), Arc::default());
        let handler = Arc::new(Held {
            opener: EnvelopeOpener::new(keys),
            started: Arc::clone(&started),
            release: Arc::clone(&release),
        });
        let (mut io, agent_side) = tokio::io::duplex(64 * 1024);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let me = Identity {
            agent_id: "agt-00000000000000ab".into(),
            max_in_flight: 4,
            renewer: None,
        };
        let agent =
            tokio::spawn(
                async move { run_until(agent_side, &me, handler, |_| {}, stopping).await },
            );
        assert!(matches!(read_frame(&mut io).await, Ok(Frame::Hello { .. })));
        // A slow heartbeat: nothing but the drain ends the channel in these tests.
        let welcome = Frame::Welcome {
            endpoint_id: "ep".into(),
            heartbeat_ms: 60_000,
        };
        write_frame(&mut io, &welcome).await.expect("welcome");
        let (mut sealer, key) = causeway_credential::ChannelSealer::new(&public).expect("key");
        write_frame(&mut io, &Frame::ChannelKey { key })
            .await
            .expect("key");
        let request_id = RequestId::random();
        let ctx = causeway_credential::EnvelopeContext {
            request_id,
            user_name: "alice@corp.example".into(),
            endpoint_id: "ep".into(),
            expires_at: unix_now() + 60,
        };
        let password = causeway_credential::Password::new("Pw-1".into()).expect("pw");
        let envelope = sealer.seal(&ctx, &password).expect("seal");
        let check = Frame::Check {
            request_id,
            deadline_ms: 60_000,
            envelope,
        };
        write_frame(&mut io, &check).await.expect("check");
        started.notified().await;
        Hub {
            io,
            agent,
            stop,
            release,
        }
    }

    #[tokio::test]
    async fn a_stopping_agent_says_goaway_before_answering_what_it_holds_and_ends_when_the_hub_closes(
    ) {
        let mut hub = with_a_check_in_flight().await;
        hub.stop.send(true).expect("stop");
        match read_frame(&mut hub.io).await.expect("frame") {
            Frame::GoAway { reason, .. } => assert_eq!(reason, GoAwayReason::ShuttingDown),
            other => panic!("GoAway must come first, got {other:?}"),
        }
        hub.release.notify_one();
        match read_frame(&mut hub.io).await.expect("frame") {
            Frame::Verdict { outcome, .. } => assert_eq!(outcome, SignInOutcome::Success),
            other => panic!("the check in flight is answered, got {other:?}"),
        }
        drop(hub.io);
        let end = hub.agent.await.expect("join").expect("no error");
        assert_eq!(end, ChannelEnd::Drained);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_agent_gives_up_on_a_check_at_the_drain_deadline() {
        let mut hub = with_a_check_in_flight().await;
        let t = tokio::time::Instant::now();
        hub.stop.send(true).expect("stop");
        assert!(matches!(
            read_frame(&mut hub.io).await,
            Ok(Frame::GoAway { .. })
        ));
        // The check never finishes and the hub never closes: the deadline ends it.
        let end = hub.agent.await.expect("join").expect("no error");
        assert_eq!(end, ChannelEnd::Drained);
        assert!(t.elapsed() >= DRAIN_TIMEOUT, "{:?}", t.elapsed());
        drop(hub.io);
    }
}
