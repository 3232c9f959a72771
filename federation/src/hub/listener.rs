//! The hub's network side: a TLS listener on which agents open channels (ALPN
//! `causeway-agent/1`, client certificate required) and new agents enroll (ALPN
//! `causeway-enroll/1`, one-time token, no certificate yet). Who a certificate belongs
//! to, and whether it may still connect, is the [`AgentAuthority`]'s answer. It must never
//! let an unauthenticated peer hold a connection without a deadline or above the caps.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use causeway_proto::agent::{Frame, GoAwayReason, ALPN, ENROLL_ALPN};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::web::{HttpLimits, Metrics};

use causeway_proto::agent::io::{read_frame, write_frame};

use super::{AgentPeer, Hub};

/// Why an agent may not connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No agent has this certificate.
    Unknown,
    /// The agent was revoked.
    Revoked,
    /// The agent waits for an administrator's approval.
    NotApproved,
}

impl Refusal {
    fn reason(self) -> GoAwayReason {
        match self {
            Refusal::Unknown | Refusal::Revoked => GoAwayReason::Revoked,
            Refusal::NotApproved => GoAwayReason::NotApproved,
        }
    }
}

/// A successful enrollment.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The new agent's id.
    pub agent_id: String,
    /// Its client certificate (PEM).
    pub cert_pem: String,
    /// The CA to pin (PEM).
    pub ca_pem: String,
    /// Whether it may take traffic at once.
    pub approved: bool,
}

/// The registry and CA behind the hub (implemented over `causeway-certs`). Calls may block
/// (database, signing): the listener runs them on the blocking pool.
pub trait AgentAuthority: Send + Sync + 'static {
    /// The agent holding the certificate with this SHA-256 fingerprint (lowercase hex).
    fn authorize(&self, cert_fingerprint: &str) -> Result<AgentPeer, Refusal>;
    /// Whether a connected agent is still allowed (polled about every second).
    fn still_allowed(&self, agent_id: &str) -> Result<(), Refusal>;
    /// Consumes `token`, signs the CSR and registers the agent. `Err` is operator-readable
    /// and never contains the token.
    fn enroll(
        &self,
        token: &str,
        host_name: &str,
        hpke_public_key: [u8; 32],
        csr_pem: &str,
    ) -> Result<Enrollment, String>;
    /// Signs a renewal CSR for a connected agent; returns the new certificate (PEM).
    fn renew(&self, agent_id: &str, csr_pem: &str) -> Result<String, String>;
    /// Notes that the agent was seen.
    fn touch(&self, agent_id: &str);
}

/// How long an unauthenticated peer may take over its TLS handshake (and over the
/// enrollment request that follows it) unless configured otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections the endpoint holds open, and for how long an idle one may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Deadline for the TLS handshake and for an enrollment request.
    pub handshake_timeout: Duration,
    /// Timeouts of the HTTP side (header read, idle connection).
    pub http: HttpLimits,
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
            http: HttpLimits::default(),
            max_connections: 10_000,
            max_connections_per_source: 64,
            max_agent_channels: 1_000,
        }
    }
}

/// Accepts agents on `listener` until the task is dropped. `tls` must offer both ALPNs and
/// verify client certificates against Causeway's CA while allowing none (enrollment).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
) {
    serve_with_web(listener, tls, hub, authority, None).await;
}

/// Like [`serve`], and HTTP connections (ALPN `h2`, `http/1.1` or none) go to `web`; with
/// the default [`ConnectionLimits`].
pub async fn serve_with_web(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
    web: Option<Arc<crate::web::WebState>>,
) {
    serve_with_limits(
        listener,
        tls,
        hub,
        authority,
        web,
        ConnectionLimits::default(),
    )
    .await;
}

/// Like [`serve_with_web`], with these limits.
pub async fn serve_with_limits(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
    web: Option<Arc<crate::web::WebState>>,
    limits: ConnectionLimits,
) {
    hub.set_authority(authority.clone());
    let mut watcher = tokio::spawn(watch_revocations(hub.clone(), authority.clone()));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let metrics = web
        .as_ref()
        .map_or_else(Metrics::new, |w| w.metrics.clone());
    let gate = Gate::new(&limits, metrics);
    let mut backoff = AcceptBackoff::default();
    let mut accept_log = Throttle::new(LOG_PERIOD);
    loop {
        let (tcp, addr) = match listener.accept().await {
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
        let (a, h, auth, w) = (
            acceptor.clone(),
            hub.clone(),
            authority.clone(),
            web.clone(),
        );
        tokio::spawn(async move { connection(tcp, addr, admission, limits, a, h, auth, w).await });
        if watcher.is_finished() {
            warn!("revocation watcher stopped; restarting it");
            watcher = tokio::spawn(watch_revocations(hub.clone(), authority.clone()));
        }
    }
}

#[allow(clippy::too_many_arguments)] // one connection's context, passed once
async fn connection(
    tcp: TcpStream,
    addr: SocketAddr,
    admission: Admission,
    limits: ConnectionLimits,
    acceptor: tokio_rustls::TlsAcceptor,
    hub: Arc<Hub>,
    authority: Arc<dyn AgentAuthority>,
    web: Option<Arc<crate::web::WebState>>,
) {
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(peer = %addr, error = %e, "refused a TLS connection (certificate not from Causeway's CA, or not TLS)");
            return;
        }
        Err(_) => {
            warn!(peer = %addr, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    match alpn.as_deref() {
        Some(a) if a == ALPN => {
            let Some(der) = cert else {
                warn!(peer = %addr, "agent channel without a client certificate; closed");
                return;
            };
            let fp = causeway_certs::fingerprint_of_der(&der);
            let a2 = authority.clone();
            let fp2 = fp.clone();
            let verdict = tokio::task::spawn_blocking(move || a2.authorize(&fp2))
                .await
                .unwrap_or(Err(Refusal::Unknown));
            match verdict {
                Ok(peer) => {
                    let _channel = match admission.into_agent_channel() {
                        Ok(p) => p,
                        Err((gate, refused)) => {
                            gate.refused(refused, addr);
                            return;
                        }
                    };
                    let id = peer.agent_id.clone();
                    // Off the async threads: the registry may wait on a CLI's write lock.
                    let (a, i) = (authority.clone(), id.clone());
                    let _ = tokio::task::spawn_blocking(move || a.touch(&i)).await;
                    if let Err(e) = hub.serve_channel(tls, peer).await {
                        info!(agent = %id, peer = %addr, error = %e, "agent channel ended");
                    }
                }
                Err(refusal) => {
                    warn!(peer = %addr, fingerprint = %fp, ?refusal, "refused an agent connection");
                    let mut tls = tls;
                    let _ = write_frame(
                        &mut tls,
                        &Frame::GoAway {
                            reason: refusal.reason(),
                            detail: format!("{refusal:?}"),
                        },
                    )
                    .await;
                }
            }
        }
        Some(a) if a == ENROLL_ALPN => {
            enroll(tls, addr, authority, limits.handshake_timeout).await;
        }
        None | Some(b"h2" | b"http/1.1") if web.is_some() => {
            if let Some(web) = web {
                crate::web::serve_connection(tls, web, Some(addr), limits.http).await;
            }
        }
        other => {
            warn!(peer = %addr, alpn = ?other.map(String::from_utf8_lossy), "connection without the agent protocol; closed");
        }
    }
}

async fn enroll<S>(
    mut tls: S,
    addr: SocketAddr,
    authority: Arc<dyn AgentAuthority>,
    timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = match tokio::time::timeout(timeout, read_frame(&mut tls)).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => {
            warn!(peer = %addr, error = %e, "malformed enrollment request");
            return;
        }
        Err(_) => return,
    };
    let Frame::Enroll {
        token,
        host_name,
        hpke_public_key,
        csr_pem,
    } = frame
    else {
        warn!(peer = %addr, "enrollment connection sent something else than Enroll");
        return;
    };
    let host = host_name.clone();
    let result = tokio::task::spawn_blocking(move || {
        authority.enroll(token.expose_secret(), &host_name, hpke_public_key, &csr_pem)
    })
    .await
    .unwrap_or_else(|_| Err("enrollment failed inside the endpoint".into()));
    let reply = match result {
        Ok(e) => {
            info!(peer = %addr, host = %host, agent = %e.agent_id, approved = e.approved, "agent enrolled");
            Frame::Enrolled {
                agent_id: e.agent_id,
                cert_pem: e.cert_pem,
                ca_pem: e.ca_pem,
                approved: e.approved,
            }
        }
        Err(reason) => {
            warn!(peer = %addr, host = %host, %reason, "enrollment refused");
            Frame::EnrollRefused { reason }
        }
    };
    let _ = write_frame(&mut tls, &reply).await;
}

/// Cuts off connected agents that were revoked or lost their approval, within ~1 s.
async fn watch_revocations(hub: Arc<Hub>, authority: Arc<dyn AgentAuthority>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let connected = hub.connected_agents();
        if connected.is_empty() {
            continue;
        }
        let a = authority.clone();
        let refused: Vec<(String, Refusal)> = tokio::task::spawn_blocking(move || {
            connected
                .into_iter()
                .filter_map(|id| a.still_allowed(&id).err().map(|r| (id, r)))
                .collect()
        })
        .await
        .unwrap_or_default();
        for (id, refusal) in refused {
            let n = hub.disconnect_agent(&id, refusal.reason());
            warn!(agent = %id, ?refusal, channels = n, "agent cut off");
        }
    }
}

/// How often a repeated warning (accept errors, refused connections) may be logged.
const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Who a connection is counted against: an IPv4 address, or the /64 an IPv6 address is
/// in (one host usually holds a whole /64, so per address would be no cap at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    V6(u64),
}

impl SourceKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
                Some(v4) => Self::V4(u32::from(v4)),
                None => Self::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

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
    /// The metric label: the setting that was reached.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refused::Global => "max_connections",
            Refused::PerSource => "max_connections_per_source",
            Refused::AgentChannels => "max_agent_channels",
        }
    }

    /// Every label, so the counters exist at zero from the start.
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
}

impl Gate {
    fn new(limits: &ConnectionLimits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            general: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            agents: Arc::new(Semaphore::new(limits.max_agent_channels.max(1))),
            per_source: limits.max_connections_per_source.max(1),
            sources: Mutex::new(HashMap::new()),
            metrics,
            refusal_log: Mutex::new(Throttle::new(LOG_PERIOD)),
        })
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
struct Admission {
    _general: OwnedSemaphorePermit,
    _source: SourceSlot,
    _open: OpenConnection,
    gate: Arc<Gate>,
}

/// An authenticated agent channel's permit.
#[derive(Debug)]
struct AgentChannel {
    _permit: OwnedSemaphorePermit,
    _open: OpenConnection,
}

impl Admission {
    /// Moves an authenticated agent's connection to the agents' pool, freeing its general
    /// and per-source slots.
    fn into_agent_channel(self) -> Result<AgentChannel, (Arc<Gate>, Refused)> {
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
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn gate(max: usize, per_source: usize, agents: usize) -> Arc<Gate> {
        let limits = ConnectionLimits {
            max_connections: max,
            max_connections_per_source: per_source,
            max_agent_channels: agents,
            ..ConnectionLimits::default()
        };
        Gate::new(&limits, Metrics::new())
    }

    fn v4(d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, d))
    }

    #[test]
    fn a_source_over_its_cap_is_refused_and_its_entry_goes_at_zero() {
        let g = gate(10, 2, 1);
        let a = g.admit(v4(1)).expect("first");
        let b = g.admit(v4(1)).expect("second");
        assert_eq!(g.admit(v4(1)).err(), Some(Refused::PerSource));
        // Another source is not affected.
        let c = g.admit(v4(2)).expect("other source");
        drop(a);
        let a = g.admit(v4(1)).expect("a slot was given back");
        drop((a, b, c));
        assert!(
            crate::lock(&g.sources).is_empty(),
            "no entry outlives its last connection"
        );
        assert_eq!(g.general.available_permits(), 10);
    }

    #[test]
    fn the_global_cap_refuses_and_gives_the_source_slot_back() {
        let g = gate(2, 5, 1);
        let _a = g.admit(v4(1)).expect("1");
        let _b = g.admit(v4(2)).expect("2");
        assert_eq!(g.admit(v4(3)).err(), Some(Refused::Global));
        assert!(!crate::lock(&g.sources).contains_key(&SourceKey::of(v4(3))));
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64() {
        let g = gate(10, 1, 1);
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("v6");
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("v6");
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("v6");
        let _x = g.admit(IpAddr::V6(a)).expect("first in the /64");
        assert_eq!(g.admit(IpAddr::V6(b)).err(), Some(Refused::PerSource));
        let _y = g.admit(IpAddr::V6(c)).expect("another /64");
        // An IPv4-mapped address counts as the IPv4 address.
        let _z = g.admit(v4(7)).expect("v4");
        let mapped = Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped();
        assert_eq!(g.admit(IpAddr::V6(mapped)).err(), Some(Refused::PerSource));
    }

    #[test]
    fn agent_channels_leave_the_general_pool_and_have_their_own_cap() {
        let g = gate(1, 1, 1);
        let agent = g
            .admit(v4(1))
            .expect("handshake slot")
            .into_agent_channel()
            .expect("agent slot");
        // The browser pool and the source's slot are free again while the agent stays.
        let browser = g.admit(v4(1)).expect("browser after the agent moved");
        drop(browser);
        let second = g.admit(v4(1)).expect("second agent's handshake");
        assert!(matches!(
            second.into_agent_channel(),
            Err((_, Refused::AgentChannels))
        ));
        drop(agent);
        assert_eq!(g.general.available_permits(), 1);
        assert_eq!(g.agents.available_permits(), 1);
    }

    #[test]
    fn connections_open_follows_admissions() {
        let g = gate(4, 4, 4);
        let open = || g.metrics.connections_open().get();
        let a = g.admit(v4(1)).expect("a");
        let b = g
            .admit(v4(1))
            .expect("b")
            .into_agent_channel()
            .expect("agent");
        assert_eq!(open(), 2);
        drop(a);
        assert_eq!(open(), 1);
        drop(b);
        assert_eq!(open(), 0);
    }

    #[test]
    fn a_repeated_warning_is_logged_once_then_once_a_minute_with_a_count() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_secs(60));
        assert_eq!(t.hit(t0), Some(0), "the first is logged");
        // Ten a second for a minute: all suppressed.
        for i in 1..600 {
            assert_eq!(t.hit(t0 + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(
            t.hit(t0 + Duration::from_secs(60)),
            Some(599),
            "a minute later, one line says how many were kept quiet"
        );
        assert_eq!(t.hit(t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(10));
    }
}
