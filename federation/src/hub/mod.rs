//! The agent hub: accepts agents' long-lived channels, tracks their health, and dispatches
//! each pass-through check sealed to one agent's key, with a deadline. Each channel
//! encapsulates to the agent's key once, when it comes up; its checks are sealed with keys
//! derived from that (see `causeway_credential::envelope`). If that agent drops
//! or times out, the check is retried on another agent within the same deadline. Capacity
//! is bounded: past it, checks are answered `Throttled` at once instead of piling up.

pub mod authority;
pub mod listener;
pub mod lockout;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use causeway_credential::envelope::MAX_LIFETIME_SECS;
use causeway_credential::{
    AgentPublicKey, ChannelSealer, EnvelopeContext, Password, RequestId, SignInOutcome,
};
use causeway_proto::agent::io::{read_frame, write_frame, write_with_heartbeat};
use causeway_proto::agent::{Frame, GoAwayReason, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tracing::{debug, info, warn};

use lockout::{LockoutPolicy, SmartLockout};

/// How the hub behaves.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This endpoint replica's id; agents check envelopes name it.
    pub endpoint_id: String,
    /// Total time a check may take, retries included.
    pub deadline: Duration,
    /// Time one agent gets before the check is retried on another.
    pub attempt_timeout: Duration,
    /// Checks in flight at once across all agents; past this, `Throttled`.
    pub max_in_flight: usize,
    /// Frames queued per channel before the channel counts as full.
    pub channel_queue: usize,
    /// Idle interval after which a Ping is sent; a peer silent for 3 intervals is dead.
    pub heartbeat: Duration,
    /// Smart lockout and throttling.
    pub lockout: LockoutPolicy,
}

impl HubConfig {
    /// Defaults for an endpoint with the given id.
    pub fn new(endpoint_id: impl Into<String>) -> Self {
        Self {
            endpoint_id: endpoint_id.into(),
            deadline: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(4),
            max_in_flight: 1024,
            channel_queue: 256,
            heartbeat: Duration::from_secs(5),
            lockout: LockoutPolicy::default(),
        }
    }
}

/// What the hub knows about an authenticated agent connection (from its certificate and
/// the registry).
#[derive(Debug, Clone)]
pub struct AgentPeer {
    /// The agent's id (its certificate's subject).
    pub agent_id: String,
    /// The key its credentials are sealed to.
    pub hpke_public_key: AgentPublicKey,
}

/// A pass-through check to run.
#[derive(Debug)]
pub struct CheckRequest {
    /// The sign-in name as typed.
    pub user_name: String,
    /// The password (zeroized when the request is dropped).
    pub password: Password,
    /// Where the attempt came from, for per-source throttling and familiar places.
    pub source: Option<IpAddr>,
}

/// The hub's end of an agent channel: its errors name the agent.
#[derive(Debug)]
pub struct AtHub;

impl causeway_proto::agent::io::Side for AtHub {
    type Own = HubEnded;
    const MALFORMED: &'static str = "agent sent a malformed frame";
    const BROKE: &'static str = "agent broke the protocol";
    const SILENT: (&'static str, &'static str) = ("agent stopped answering (no frame for ", ")");
    const IO: &'static str = "agent connection failed";
}

/// Why a channel ended, as the hub sees it.
pub type ChannelError = causeway_proto::agent::io::ChannelError<AtHub>;

/// Why the hub itself ended a channel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubEnded {
    /// The agent was revoked or disconnected by an administrator.
    #[error("agent disconnected by the hub: {0:?}")]
    Disconnected(GoAwayReason),
    /// Encapsulating to the agent's registered HPKE key failed (the OS random generator
    /// failed, or the registry holds a broken key: re-enroll the agent).
    #[error("cannot set up the channel key for this agent")]
    ChannelKey,
}

struct Channel {
    id: u64,
    agent_id: String,
    /// Seals this channel's envelopes. Held while a Check is sealed *and* queued, so the
    /// frames go out in sequence order (the agent refuses one that goes back).
    sealer: Mutex<ChannelSealer>,
    tx: mpsc::Sender<Frame>,
    outstanding: AtomicUsize,
    max_in_flight: usize,
    pending: Mutex<HashMap<RequestId, oneshot::Sender<SignInOutcome>>>,
    kick: Notify,
    kicked: Mutex<Option<GoAwayReason>>,
    /// The agent said GoAway: it finishes what it has, and gets nothing new.
    draining: std::sync::atomic::AtomicBool,
}

impl Channel {
    /// Whether new checks may be routed here.
    fn usable(&self) -> bool {
        lock(&self.kicked).is_none() && !self.draining.load(Ordering::Acquire)
    }
}

/// The hub. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    config: HubConfig,
    channels: Mutex<Vec<Arc<Channel>>>,
    next_channel: AtomicU64,
    capacity: Semaphore,
    /// Signalled whenever a check finishes on some channel (a slot may be free).
    slot_freed: Notify,
    /// Rotates the start among equally loaded channels, so that ties do not always go to
    /// the agent that connected first (the others would sit idle with cold DC connections).
    next_tie: AtomicUsize,
    lockout: SmartLockout,
    authority: std::sync::OnceLock<Arc<dyn listener::AgentAuthority>>,
}

/// What dispatch finds when it looks for a channel.
enum Pick {
    /// This channel has a free slot.
    Channel(Arc<Channel>),
    /// Channels exist that were not tried yet, but every one is full.
    Busy,
    /// No channel left to try.
    None,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint_id", &self.config.endpoint_id)
            .field("channels", &lock(&self.channels).len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a sealed envelope may be opened.
const ENVELOPE_LIFETIME_SECS: u64 = 60;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hub {
    /// A hub with `config`.
    pub fn new(config: HubConfig) -> Arc<Self> {
        let lockout = SmartLockout::new(config.lockout.clone());
        Arc::new(Self {
            capacity: Semaphore::new(config.max_in_flight),
            config,
            channels: Mutex::new(Vec::new()),
            next_channel: AtomicU64::new(1),
            slot_freed: Notify::new(),
            next_tie: AtomicUsize::new(0),
            lockout,
            authority: std::sync::OnceLock::new(),
        })
    }

    /// Sets the registry and CA that renew agents' certificates (once; later calls are
    /// ignored). [`listener::AgentHandler::start`] does this.
    pub fn set_authority(&self, authority: Arc<dyn listener::AgentAuthority>) {
        let _ = self.authority.set(authority);
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The smart-lockout state (the sign-in page asks it how long a lock lasts).
    pub fn lockout(&self) -> &SmartLockout {
        &self.lockout
    }

    /// Ids of the agents with at least one open channel.
    pub fn connected_agents(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.channels)
            .iter()
            .map(|c| c.agent_id.clone())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether any agent can take a check now (one that said GoAway cannot).
    pub fn has_agents(&self) -> bool {
        lock(&self.channels).iter().any(|c| c.usable())
    }

    /// Closes every channel of `agent_id` at once (revocation, or withdrawn approval).
    pub fn disconnect_agent(&self, agent_id: &str, reason: GoAwayReason) -> usize {
        let chans: Vec<Arc<Channel>> = lock(&self.channels)
            .iter()
            .filter(|c| c.agent_id == agent_id)
            .cloned()
            .collect();
        for c in &chans {
            *lock(&c.kicked) = Some(reason);
            c.kick.notify_one();
        }
        chans.len()
    }

    /// The endpoint is stopping: tells every agent so (GoAway, so it reconnects to another
    /// replica or later) and waits, at most `within`, for their channels to close. Call it
    /// once no sign-in is in flight any more.
    pub async fn shut_down(&self, within: Duration) {
        let chans: Vec<Arc<Channel>> = lock(&self.channels).clone();
        for c in &chans {
            *lock(&c.kicked) = Some(GoAwayReason::ShuttingDown);
            c.kick.notify_one();
        }
        let deadline = Instant::now() + within;
        while !lock(&self.channels).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Checks a credential through an agent. Never fails: every problem is an outcome.
    /// Smart lockout counts it against the name as typed, normalised.
    pub async fn check(self: &Arc<Self>, req: CheckRequest) -> SignInOutcome {
        let account = lockout::AccountKey::of_name(&req.user_name);
        self.check_as(req, account).await
    }

    /// [`Hub::check`], counted against `account` (the caller resolved the name to the
    /// account, e.g. to its immutable id).
    pub async fn check_as(
        self: &Arc<Self>,
        req: CheckRequest,
        account: lockout::AccountKey,
    ) -> SignInOutcome {
        self.check_answered_by(req, account).await.0
    }

    /// [`Hub::check_as`], with the id of the agent whose answer it is (none when smart
    /// lockout, capacity or the deadline answered), for the audit log.
    pub async fn check_answered_by(
        self: &Arc<Self>,
        req: CheckRequest,
        account: lockout::AccountKey,
    ) -> (SignInOutcome, Option<String>) {
        // The check runs in its own task: a caller that stops waiting (a browser that went
        // away) cannot leave a slot taken or a bind that reached AD uncounted.
        let hub = self.clone();
        tokio::spawn(async move { hub.check_to_the_end(req, account).await })
            .await
            .unwrap_or((SignInOutcome::DirectoryUnavailable, None))
    }

    async fn check_to_the_end(
        &self,
        req: CheckRequest,
        account: lockout::AccountKey,
    ) -> (SignInOutcome, Option<String>) {
        let started = Instant::now();
        let deadline = started + self.config.deadline;
        let ticket = match self
            .lockout
            .admit_waiting(&account, &req.password, req.source, deadline)
            .await
        {
            Ok(t) => t,
            Err(o) => {
                debug!(user = ?req.user_name, outcome = %o, "answered by smart lockout without asking the directory");
                // Not sooner than a real check would answer (throttling is about the
                // source and says nothing about the account: it stays immediate).
                if o != SignInOutcome::Throttled {
                    let floor = self.lockout.answer_floor();
                    tokio::time::sleep_until((started + floor).into()).await;
                }
                return (o, None);
            }
        };
        let Ok(_permit) = self.capacity.try_acquire() else {
            warn!(
                max_in_flight = self.config.max_in_flight,
                "hub at capacity; check refused"
            );
            return (SignInOutcome::Throttled, None);
        };
        let mut tried: Vec<u64> = Vec::new();
        // Attempts whose bind may have reached AD without a verdict coming back here.
        let mut maybe_bound = 0u32;
        // The agent whose answer the outcome is.
        let mut answered_by = None;
        let outcome = loop {
            let now = Instant::now();
            if now >= deadline {
                break SignInOutcome::DirectoryUnavailable;
            }
            // Register interest before looking, so a slot freed in between is not missed.
            let freed = self.slot_freed.notified();
            let chan = match self.pick(&tried) {
                Pick::Channel(c) => c,
                Pick::Busy => {
                    // Busy is not down: wait for a slot within the same deadline.
                    let _ = tokio::time::timeout(deadline - now, freed).await;
                    continue;
                }
                Pick::None => {
                    if tried.is_empty() {
                        debug!("no agent connected");
                    }
                    break SignInOutcome::DirectoryUnavailable;
                }
            };
            tried.push(chan.id);
            let budget = (deadline - now).min(self.config.attempt_timeout);
            match self.attempt(&chan, &req, budget).await {
                // An agent that cannot reach its DC (or is full) must not fail the sign-in
                // while another agent may succeed.
                Ok(o @ (SignInOutcome::DirectoryUnavailable | SignInOutcome::Throttled)) => {
                    info!(agent = %chan.agent_id, user = ?req.user_name, outcome = %o, "agent could not check; trying another agent");
                    maybe_bound += 1;
                    if matches!(self.peek(&tried), Pick::None) {
                        answered_by = Some(chan.agent_id.clone());
                        break o;
                    }
                }
                Ok(o) => {
                    answered_by = Some(chan.agent_id.clone());
                    break o;
                }
                Err(why) => {
                    maybe_bound += 1;
                    info!(agent = %chan.agent_id, user = ?req.user_name, why, "check not answered; retrying on another agent");
                }
            }
        };
        ticket.record(outcome, maybe_bound + 1, SystemTime::now());
        if !matches!(
            outcome,
            SignInOutcome::DirectoryUnavailable | SignInOutcome::Throttled
        ) {
            self.lockout.note_check_latency(started.elapsed());
        }
        (outcome, answered_by)
    }

    /// Whether any untried channel is left (without reserving a slot).
    fn peek(&self, tried: &[u64]) -> Pick {
        let any = lock(&self.channels)
            .iter()
            .any(|c| !tried.contains(&c.id) && c.usable());
        if any {
            Pick::Busy
        } else {
            Pick::None
        }
    }

    /// The healthy channel with the fewest outstanding checks, skipping those tried already,
    /// with one of its slots reserved (released at the end of [`Hub::attempt`]).
    fn pick(&self, tried: &[u64]) -> Pick {
        let chans = lock(&self.channels);
        let mut by_load: Vec<(usize, &Arc<Channel>)> = chans
            .iter()
            .filter(|c| !tried.contains(&c.id) && c.usable())
            .map(|c| (c.outstanding.load(Ordering::Relaxed), c))
            .collect();
        if by_load.is_empty() {
            return Pick::None;
        }
        by_load.sort_by_key(|(load, _)| *load);
        // Among the least loaded, start at a rotating place: with idle agents every check
        // would otherwise go to the first one connected.
        let tied = by_load
            .iter()
            .take_while(|(l, _)| *l == by_load[0].0)
            .count();
        if tied > 1 {
            let start = self.next_tie.fetch_add(1, Ordering::Relaxed) % tied;
            by_load[..tied].rotate_left(start);
        }
        let by_load = by_load.into_iter().map(|(_, c)| c);
        // Reserve the slot atomically: two checks racing for a channel's last slot must
        // not both get it (the agent would refuse the second).
        for c in by_load {
            let reserved = c
                .outstanding
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < c.max_in_flight).then_some(n + 1)
                })
                .is_ok();
            if reserved {
                return Pick::Channel(c.clone());
            }
        }
        Pick::Busy
    }

    async fn attempt(
        &self,
        chan: &Arc<Channel>,
        req: &CheckRequest,
        budget: Duration,
    ) -> Result<SignInOutcome, &'static str> {
        let request_id = RequestId::random();
        // A fixed minute, not the attempt's few seconds: an agent whose clock runs a little
        // ahead must not find every envelope expired. The replay cache covers the minute.
        let expires_at = unix_now() + ENVELOPE_LIFETIME_SECS.min(MAX_LIFETIME_SECS);
        let ctx = EnvelopeContext {
            request_id,
            user_name: req.user_name.clone(),
            endpoint_id: self.config.endpoint_id.clone(),
            expires_at,
        };
        let (tx, rx) = oneshot::channel();
        let queued = {
            let mut sealer = lock(&chan.sealer);
            match sealer.seal(&ctx, &req.password) {
                Err(_) => Err("sealing failed"),
                Ok(envelope) => {
                    // Registered before it is sent: the verdict may come back at once.
                    lock(&chan.pending).insert(request_id, tx);
                    chan.tx
                        .try_send(Frame::Check {
                            request_id,
                            deadline_ms: u32::try_from(budget.as_millis()).unwrap_or(u32::MAX),
                            envelope,
                        })
                        .map_err(|_| "channel queue full or closed")
                }
            }
        };
        let result = match queued {
            Err(why) => Err(why),
            Ok(()) => match tokio::time::timeout(budget, rx).await {
                Ok(Ok(outcome)) => Ok(outcome),
                Ok(Err(_)) => Err("agent channel closed"),
                Err(_) => Err("agent timed out"),
            },
        };
        lock(&chan.pending).remove(&request_id);
        chan.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.slot_freed.notify_waiters();
        result
    }

    /// Serves one agent channel until it ends. `stream` is the agent's TLS stream, already
    /// authenticated as `peer`. Malformed input closes this channel only.
    pub async fn serve_channel<S>(
        self: &Arc<Self>,
        stream: S,
        peer: AgentPeer,
    ) -> Result<(), ChannelError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let silent_limit = self.config.heartbeat * 3;
        let hello = tokio::time::timeout(Duration::from_secs(10), read_frame(&mut rd))
            .await
            .map_err(|_| ChannelError::Silent(Duration::from_secs(10)))??;
        let Frame::Hello {
            version,
            agent_id,
            max_in_flight,
            agent_version,
        } = hello
        else {
            return Err(ChannelError::Protocol("first frame was not Hello"));
        };
        if version != PROTOCOL_VERSION {
            let _ = write_frame(
                &mut wr,
                &Frame::GoAway {
                    reason: GoAwayReason::UnsupportedVersion,
                    detail: format!("hub speaks version {PROTOCOL_VERSION}"),
                },
            )
            .await;
            return Err(ChannelError::Protocol("unsupported protocol version"));
        }
        if agent_id != peer.agent_id {
            let _ = write_frame(
                &mut wr,
                &Frame::GoAway {
                    reason: GoAwayReason::ProtocolError,
                    detail: "agent id does not match certificate".into(),
                },
            )
            .await;
            return Err(ChannelError::Protocol(
                "Hello names another agent than the certificate",
            ));
        }
        // The channel's one encapsulation (a fresh one for every connection, so reconnects
        // and renewals change keys); the agent hears of it before any Check can be routed here.
        let Ok((sealer, channel_key)) = ChannelSealer::new(&peer.hpke_public_key) else {
            warn!(agent = %peer.agent_id, "cannot encapsulate to the agent's registered HPKE key; channel refused");
            let _ = write_frame(
                &mut wr,
                &Frame::GoAway {
                    reason: GoAwayReason::ShuttingDown,
                    detail: "the endpoint cannot set up a channel key; its log says why".into(),
                },
            )
            .await;
            return Err(ChannelError::Own(HubEnded::ChannelKey));
        };
        write_frame(
            &mut wr,
            &Frame::Welcome {
                endpoint_id: self.config.endpoint_id.clone(),
                heartbeat_ms: u32::try_from(self.config.heartbeat.as_millis()).unwrap_or(u32::MAX),
            },
        )
        .await?;
        write_frame(&mut wr, &Frame::ChannelKey { key: channel_key }).await?;

        let (tx, mut rx) = mpsc::channel::<Frame>(self.config.channel_queue);
        let chan = Arc::new(Channel {
            id: self.next_channel.fetch_add(1, Ordering::Relaxed),
            agent_id: peer.agent_id.clone(),
            sealer: Mutex::new(sealer),
            tx: tx.clone(),
            outstanding: AtomicUsize::new(0),
            max_in_flight: usize::from(max_in_flight.max(1)),
            pending: Mutex::new(HashMap::new()),
            kick: Notify::new(),
            kicked: Mutex::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        lock(&self.channels).push(chan.clone());
        self.slot_freed.notify_waiters();
        info!(agent = %peer.agent_id, %agent_version, channel = chan.id, "agent channel up");

        let heartbeat = self.config.heartbeat;
        let writer = async {
            write_with_heartbeat(&mut wr, &mut rx, heartbeat, || None)
                .await
                .map_err(ChannelError::from)
        };
        let reader = async {
            let mut last_renewal: Option<Instant> = None;
            loop {
                let read = tokio::time::timeout(silent_limit, read_frame(&mut rd))
                    .await
                    .map_err(|_| ChannelError::Silent(silent_limit))?;
                let f = match read {
                    Ok(f) => f,
                    // A draining agent closes once its checks are answered (or its own
                    // deadline passed): what was pending is retried elsewhere below.
                    Err(_) if chan.draining.load(Ordering::Acquire) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                match f {
                    Frame::Verdict {
                        request_id,
                        outcome,
                        ..
                    } => {
                        if let Some(waiter) = lock(&chan.pending).remove(&request_id) {
                            let _ = waiter.send(outcome);
                        }
                    }
                    Frame::Ping(n) => {
                        let _ = tx.try_send(Frame::Pong(n));
                    }
                    Frame::Pong(_) => {}
                    Frame::Renew { csr_pem } => {
                        // One renewal per channel per 10 minutes: each costs a signature and
                        // a registry write, and rotates the agent's fingerprints.
                        if last_renewal
                            .is_some_and(|t: Instant| t.elapsed() < Duration::from_secs(600))
                        {
                            warn!(agent = %chan.agent_id, "renewal asked again too soon; ignored");
                            continue;
                        }
                        last_renewal = Some(Instant::now());
                        let Some(authority) = self.authority.get().cloned() else {
                            warn!(agent = %chan.agent_id, "renewal asked, but this hub has no CA");
                            continue;
                        };
                        let (tx, id) = (tx.clone(), chan.agent_id.clone());
                        tokio::spawn(async move {
                            let id2 = id.clone();
                            let r = tokio::task::spawn_blocking(move || {
                                authority.renew(&id2, &csr_pem)
                            })
                            .await;
                            match r {
                                Ok(Ok(cert_pem)) => {
                                    info!(agent = %id, "agent certificate renewed");
                                    let _ = tx.send(Frame::Renewed { cert_pem }).await;
                                }
                                Ok(Err(e)) => warn!(agent = %id, error = %e, "renewal refused"),
                                Err(_) => warn!(agent = %id, "renewal failed inside the endpoint"),
                            }
                        });
                    }
                    Frame::GoAway { reason, .. } => {
                        // No new checks from now on; the ones it holds are answered on this
                        // channel, which closes once none is left.
                        chan.draining.store(true, Ordering::Release);
                        let in_flight = lock(&chan.pending).len();
                        info!(agent = %chan.agent_id, channel = chan.id, ?reason, in_flight, "agent sent GoAway: no new checks go to it; waiting for its checks in flight");
                    }
                    _ => return Err(ChannelError::Protocol("unexpected frame from agent")),
                }
                if chan.draining.load(Ordering::Acquire) && lock(&chan.pending).is_empty() {
                    info!(agent = %chan.agent_id, channel = chan.id, "agent drained: every check it held is answered");
                    return Ok(());
                }
            }
        };
        let kicked = async {
            chan.kick.notified().await;
            let reason = lock(&chan.kicked).unwrap_or(GoAwayReason::ShuttingDown);
            // Tell the agent why, through the writer (still running in this select), and
            // give it a moment to flush before the connection is dropped.
            let detail = match reason {
                GoAwayReason::Revoked => "agent certificate revoked",
                GoAwayReason::NotApproved => "agent approval withdrawn",
                _ => "closed by the hub",
            };
            let _ = tx.try_send(Frame::GoAway {
                reason,
                detail: detail.into(),
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err::<(), _>(ChannelError::Own(HubEnded::Disconnected(reason)))
        };
        let result = tokio::select! {
            r = reader => r,
            r = writer => r,
            r = kicked => r,
        };
        // Unregister first so no new check is routed here, then fail what was pending:
        // dropping the senders makes the waiting checks retry elsewhere at once.
        lock(&self.channels).retain(|c| c.id != chan.id);
        lock(&chan.pending).clear();
        if let Err(ChannelError::Own(HubEnded::Disconnected(GoAwayReason::ShuttingDown))) = &result
        {
            // The endpoint is stopping: routine, the agent reconnects elsewhere or later.
            info!(agent = %chan.agent_id, "agent told GoAway: the endpoint is stopping");
        } else if let Err(ChannelError::Own(HubEnded::Disconnected(reason))) = &result {
            warn!(agent = %chan.agent_id, ?reason, "agent channel closed by the hub");
        } else if let Err(e) = &result {
            warn!(agent = %chan.agent_id, error = %e, "agent channel closed");
        } else {
            info!(agent = %chan.agent_id, "agent channel closed");
        }
        result
    }
}

#[cfg(test)]
mod tests;
