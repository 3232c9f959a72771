//! The endpoint's one public port: admits each TCP connection under the caps, completes
//! its TLS handshake within a deadline, and hands it by ALPN to the handler it was given
//! (the agent side, the HTTP side). It names neither, and must never let an
//! unauthenticated peer hold a connection without a deadline or above the caps.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::client_addr::SourceKey;
use crate::metrics::Metrics;

pub mod certs;

/// How long an unauthenticated peer may take over its TLS handshake (and over the
/// enrollment request that follows it) unless configured otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the endpoint holds open, and how long a handshake may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Deadline for the TLS handshake (the agent side also gives it to an enrollment
    /// request).
    pub handshake_timeout: Duration,
    /// Connections open at once that are not (yet) authenticated agent channels: pending
    /// handshakes, browsers, relying parties, enrollments.
    pub max_connections: usize,
    /// Of those, how many one source (an IPv4 address, an IPv6 /64) may hold.
    pub max_connections_per_source: usize,
    /// Authenticated agent channels, counted apart so that a flood of browser connections
    /// cannot starve them: an agent's connection moves from the general pool to this one
    /// once its certificate is accepted, and gives up its per-source slot.
    pub max_agent_channels: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: 10_000,
            max_connections_per_source: 64,
            max_agent_channels: 1_000,
        }
    }
}

/// A connection on the public port once its TLS handshake is done.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A connection the acceptor admitted and hands to a [`Handler`].
#[derive(Debug)]
pub struct Accepted {
    /// The TLS stream (its ALPN and client certificate are on `tls.get_ref().1`).
    pub tls: TlsStream,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The connection's place under the caps: hold it for as long as the connection is
    /// open (an agent channel trades it with [`Admission::into_agent_channel`]).
    pub admission: Admission,
}

/// What a handler returns: serving one connection until it ends.
pub type Serving = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One branch behind the acceptor: serves the connections routed to it. The acceptor is
/// given its handlers (see [`Routes`]) rather than calling them by name, so that neither
/// side of the port imports the other.
pub trait Handler: Send + Sync + 'static {
    /// Serves `conn` until it closes.
    fn serve(self: Arc<Self>, conn: Accepted) -> Serving;
}

/// Which handler serves which negotiated ALPN.
#[derive(Clone, Default)]
pub struct Routes {
    by_alpn: Vec<(Vec<u8>, Arc<dyn Handler>)>,
    http: Option<Arc<dyn Handler>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field(
                "alpn",
                &self
                    .by_alpn
                    .iter()
                    .map(|(a, _)| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
            )
            .field("http", &self.http.is_some())
            .finish()
    }
}

impl Routes {
    /// No routes: every connection is closed after its handshake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections that negotiated `alpn` go to `handler` (checked before HTTP).
    pub fn alpn(mut self, alpn: &[u8], handler: Arc<dyn Handler>) -> Self {
        self.by_alpn.push((alpn.to_vec(), handler));
        self
    }

    /// HTTP connections (ALPN `h2`, `http/1.1` or none) go to `handler`; without it they
    /// are closed.
    pub fn http(mut self, handler: Arc<dyn Handler>) -> Self {
        self.http = Some(handler);
        self
    }

    /// The handler for a connection that negotiated `alpn`, if any.
    fn pick(&self, alpn: Option<&[u8]>) -> Option<&Arc<dyn Handler>> {
        if let Some(a) = alpn {
            if let Some((_, h)) = self.by_alpn.iter().find(|(x, _)| x.as_slice() == a) {
                return Some(h);
            }
        }
        match alpn {
            None | Some(b"h2" | b"http/1.1") => self.http.as_ref(),
            Some(_) => None,
        }
    }
}

/// The endpoint's stop signal (SIGTERM): set once, seen by the acceptors and by every
/// connection's handler through its [`Admission`].
#[derive(Debug, Default)]
pub struct Shutdown {
    stopped: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl Shutdown {
    /// A signal not set yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Sets the signal (again is harmless).
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the signal is set.
    pub fn is_stopping(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once the signal is set.
    pub async fn stopped(&self) {
        loop {
            let n = self.notify.notified();
            tokio::pin!(n);
            // Registered before the flag is read, so a stop in between is not missed.
            n.as_mut().enable();
            if self.is_stopping() {
                return;
            }
            n.await;
        }
    }
}

/// Accepts connections on `listener` until the task is dropped, and hands each, once its
/// TLS handshake is done, to the handler `routes` names for its ALPN. `tls` must offer
/// those ALPNs; `metrics` counts open and refused connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: ConnectionLimits,
    routes: Routes,
    metrics: Arc<Metrics>,
) {
    let never = Shutdown::new();
    serve_until(
        listener,
        tls,
        limits,
        routes,
        metrics,
        never,
        Duration::ZERO,
    )
    .await;
}

/// [`serve`] until `shutdown` is set; then stops accepting (the listening socket is
/// closed, so new connections are refused at once), lets the handlers finish what is in
/// flight (they see the signal through [`Admission::stopping`]), and returns once every
/// connection but the agent and sync channels has closed, or after `drain` — `true` if
/// all closed in time. Agent channels are the hub's to close (it says GoAway).
pub async fn serve_until(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    limits: ConnectionLimits,
    routes: Routes,
    metrics: Arc<Metrics>,
    shutdown: Arc<Shutdown>,
    drain: Duration,
) -> bool {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let routes = Arc::new(routes);
    let gate = Gate::new(&limits, metrics, shutdown.clone());
    let mut backoff = AcceptBackoff::default();
    let mut accept_log = Throttle::new(LOG_PERIOD);
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.stopped() => break,
            a = listener.accept() => a,
        };
        let (tcp, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning, and
                // say so once a minute rather than ten times a second.
                if let Some(suppressed) = accept_log.hit(Instant::now()) {
                    warn!(error = %e, suppressed, "accept failed; backing off");
                }
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        backoff.succeeded();
        // Refused before any TLS work: the cheapest answer is closing the socket.
        let admission = match gate.admit(addr.ip()) {
            Ok(a) => a,
            Err(refused) => {
                drop(tcp);
                gate.refused(refused, addr);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (a, r) = (acceptor.clone(), routes.clone());
        tokio::spawn(connection(
            tcp,
            addr,
            admission,
            limits.handshake_timeout,
            a,
            r,
        ));
    }
    drop(listener);
    let open = limits.max_connections.max(1) - gate.general.available_permits();
    info!(listen = ?local, open, drain_s = drain.as_secs(), "stopped accepting connections; letting those open finish");
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(drain, gate.general.acquire_many(all))
        .await
        .is_ok();
    if !drained {
        let left = limits.max_connections.max(1) - gate.general.available_permits();
        warn!(listen = ?local, left, "connections still open at the drain deadline; closing them");
    }
    drained
}

/// Whether a failed handshake is a peer that simply went away (a browser closing a spare
/// connection, a port probe): routine, so not worth a warning.
pub(crate) fn closed_during_handshake(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// One connection: its handshake, then its handler.
async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    admission: Admission,
    handshake_timeout: Duration,
    acceptor: tokio_rustls::TlsAcceptor,
    routes: Arc<Routes>,
) {
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if closed_during_handshake(&e) => {
            debug!(peer = %addr, error = %e, "peer closed the connection during the TLS handshake");
            return;
        }
        // Anyone can cause these: warned about at most once a minute, with a count, so
        // that a flood of bad handshakes cannot flood the log; each is still at debug.
        Ok(Err(e)) => {
            match admission.gate.handshake_warning() {
                Some(suppressed) => {
                    warn!(peer = %addr, error = %e, suppressed, "refused a TLS connection (certificate not from Causeway's CA, or not TLS)")
                }
                None => debug!(peer = %addr, error = %e, "refused a TLS connection"),
            }
            return;
        }
        Err(_) => {
            match admission.gate.handshake_warning() {
                Some(suppressed) => warn!(peer = %addr, suppressed, "TLS handshake timed out"),
                None => debug!(peer = %addr, "TLS handshake timed out"),
            }
            return;
        }
    };
    let alpn = tls.get_ref().1.alpn_protocol();
    match routes.pick(alpn) {
        Some(handler) => {
            handler
                .clone()
                .serve(Accepted {
                    tls,
                    peer: addr,
                    admission,
                })
                .await;
        }
        None => {
            warn!(peer = %addr, alpn = ?alpn.map(String::from_utf8_lossy), "connection without the agent protocol; closed");
        }
    }
}

/// How often a repeated warning (accept errors, refused connections) may be logged.
const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_connections` connections are open.
    Global,
    /// This source holds `max_connections_per_source`.
    PerSource,
    /// `max_agent_channels` agent channels are open.
    AgentChannels,
}

impl Refused {
    /// The metric label: the setting that was reached (one of
    /// [`crate::metrics::REFUSAL_REASONS`], which the metrics create at zero).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refused::Global => "max_connections",
            Refused::PerSource => "max_connections_per_source",
            Refused::AgentChannels => "max_agent_channels",
        }
    }

    /// Every reason.
    #[cfg(test)]
    pub(crate) const ALL: [Refused; 3] =
        [Refused::Global, Refused::PerSource, Refused::AgentChannels];
}

/// Admits connections at accept time. The per-source table holds an entry only while that
/// source has a connection open, so it never has more than `max_connections` entries.
#[derive(Debug)]
struct Gate {
    general: Arc<Semaphore>,
    agents: Arc<Semaphore>,
    per_source: usize,
    sources: Mutex<HashMap<SourceKey, usize>>,
    metrics: Arc<Metrics>,
    refusal_log: Mutex<Throttle>,
    /// Failed handshakes (other than hang-ups), warned about once a minute.
    handshake_log: Mutex<Throttle>,
    shutdown: Arc<Shutdown>,
}

impl Gate {
    fn new(limits: &ConnectionLimits, metrics: Arc<Metrics>, shutdown: Arc<Shutdown>) -> Arc<Self> {
        Arc::new(Self {
            general: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            agents: Arc::new(Semaphore::new(limits.max_agent_channels.max(1))),
            per_source: limits.max_connections_per_source.max(1),
            sources: Mutex::new(HashMap::new()),
            metrics,
            refusal_log: Mutex::new(Throttle::new(LOG_PERIOD)),
            handshake_log: Mutex::new(Throttle::new(LOG_PERIOD)),
            shutdown,
        })
    }

    /// `Some(suppressed since the last one)` if a failed handshake is to be warned about
    /// now, `None` if it is one of the suppressed.
    fn handshake_warning(&self) -> Option<u64> {
        crate::lock(&self.handshake_log).hit(Instant::now())
    }

    /// A slot for a new connection from `ip`, or why there is none.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refused> {
        let key = SourceKey::of(ip);
        {
            let mut sources = crate::lock(&self.sources);
            let n = sources.entry(key).or_insert(0);
            if *n >= self.per_source {
                return Err(Refused::PerSource);
            }
            *n += 1;
        }
        // Built before the global permit so that a refusal below gives the slot back.
        let source = SourceSlot {
            gate: self.clone(),
            key,
        };
        let general = self
            .general
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Global)?;
        Ok(Admission {
            _general: general,
            _source: source,
            _open: OpenConnection::new(&self.metrics),
            gate: self.clone(),
        })
    }

    /// Counts a refusal, and logs it at most once a minute (a flood must not flood the log).
    fn refused(&self, why: Refused, peer: SocketAddr) {
        self.metrics.connection_refused(why.label());
        if let Some(suppressed) = crate::lock(&self.refusal_log).hit(Instant::now()) {
            warn!(%peer, limit = why.label(), suppressed, "connection refused: limit reached");
        }
    }
}

/// One connection's place in its source's count; given back on drop.
#[derive(Debug)]
struct SourceSlot {
    gate: Arc<Gate>,
    key: SourceKey,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = crate::lock(&self.gate.sources);
        if let Some(n) = sources.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                sources.remove(&self.key);
            }
        }
    }
}

/// Keeps `causeway_connections_open` right however the connection ends.
#[derive(Debug)]
struct OpenConnection(prometheus::IntGauge);

impl OpenConnection {
    fn new(metrics: &Metrics) -> Self {
        let g = metrics.connections_open();
        g.inc();
        Self(g)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An admitted connection's permits, held until it closes.
#[derive(Debug)]
pub struct Admission {
    _general: OwnedSemaphorePermit,
    _source: SourceSlot,
    _open: OpenConnection,
    gate: Arc<Gate>,
}

/// An authenticated agent channel's permit, held until the channel closes.
#[derive(Debug)]
pub struct AgentChannel {
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
}

impl Admission {
    /// Returns once the endpoint is stopping: a handler finishes what is in flight and
    /// closes (an HTTP connection closes gracefully; an idle one at once).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let s = self.gate.shutdown.clone();
        async move { s.stopped().await }
    }

    /// Moves an authenticated agent's connection from `peer` to the agents' pool, freeing
    /// its general and per-source slots; `None` (counted and logged) when that pool is
    /// full, and the connection is to be closed.
    pub fn into_agent_channel(self, peer: SocketAddr) -> Option<AgentChannel> {
        match self.move_to_agents() {
            Ok(channel) => Some(channel),
            Err((gate, refused)) => {
                gate.refused(refused, peer);
                None
            }
        }
    }

    fn move_to_agents(self) -> Result<AgentChannel, (Arc<Gate>, Refused)> {
        match self.gate.agents.clone().try_acquire_owned() {
            Ok(permit) => Ok(AgentChannel {
                _permit: permit,
                _open: self._open,
            }),
            Err(_) => Err((self.gate, Refused::AgentChannels)),
        }
    }
}

/// Lets a repeated warning through once, then at most once per `period`, with the number
/// of occurrences it kept quiet about in between.
#[derive(Debug)]
pub(crate) struct Throttle {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// One occurrence at `now`: `Some(suppressed since the last line)` if it should be
    /// logged, `None` if it is one of the suppressed.
    pub(crate) fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The pause after a failed `accept`: 10 ms, doubling to 1 s, back to 10 ms on success.
#[derive(Debug)]
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    const MIN: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// How long to wait after this failure.
    pub(crate) fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    pub(crate) fn succeeded(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { next: Self::MIN }
    }
}

#[cfg(test)]
mod tests;
