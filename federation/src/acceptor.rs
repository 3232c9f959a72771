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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::client_addr::SourceKey;
use crate::metrics::Metrics;

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
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let routes = Arc::new(routes);
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
        Ok(Err(e)) => {
            warn!(peer = %addr, error = %e, "refused a TLS connection (certificate not from Causeway's CA, or not TLS)");
            return;
        }
        Err(_) => {
            warn!(peer = %addr, "TLS handshake timed out");
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
            .move_to_agents()
            .expect("agent slot");
        // The browser pool and the source's slot are free again while the agent stays.
        let browser = g.admit(v4(1)).expect("browser after the agent moved");
        drop(browser);
        let second = g.admit(v4(1)).expect("second agent's handshake");
        assert!(matches!(
            second.move_to_agents(),
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
        let b = g.admit(v4(1)).expect("b").move_to_agents().expect("agent");
        assert_eq!(open(), 2);
        drop(a);
        assert_eq!(open(), 1);
        drop(b);
        assert_eq!(open(), 0);
    }

    #[test]
    fn every_refusal_reason_is_counted_from_zero() {
        let text = String::from_utf8(Metrics::new().render(0)).expect("utf8");
        for r in Refused::ALL {
            let line = format!(
                "causeway_connections_refused_total{{reason=\"{}\"}} 0",
                r.label()
            );
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
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

    /// Routing by ALPN over a real TLS handshake: each handler answers with its name, and
    /// a handler that must not see the connection panics (in this task, so the test fails).
    mod routing {
        use super::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        const AGENT: &[u8] = b"causeway-agent/1";
        const OTHER: &[u8] = b"something-else/1";

        struct Answers(&'static [u8]);

        impl Handler for Answers {
            fn serve(self: Arc<Self>, mut conn: Accepted) -> Serving {
                Box::pin(async move {
                    conn.tls.write_all(self.0).await.expect("answer");
                    conn.tls.shutdown().await.expect("close");
                })
            }
        }

        struct Panics;

        impl Handler for Panics {
            fn serve(self: Arc<Self>, _conn: Accepted) -> Serving {
                panic!("routed to a handler that must not see this connection")
            }
        }

        struct Tls {
            server: Arc<rustls::ServerConfig>,
            roots: rustls::RootCertStore,
        }

        fn tls() -> Tls {
            let dir = std::env::temp_dir().join(format!(
                "causeway-acceptor-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let now = std::time::SystemTime::now();
            let ca = causeway_certs::Ca::load_or_create(&dir, now).expect("ca");
            let cert = ca
                .issue_server_cert(&["localhost".to_owned()], now)
                .expect("server cert");
            let server = causeway_certs::server_config(
                cert.chain_der(),
                cert.private_key_der().expect("key"),
                ca.enrollment_client_verifier().expect("verifier"),
                vec![
                    AGENT.to_vec(),
                    OTHER.to_vec(),
                    b"h2".to_vec(),
                    b"http/1.1".to_vec(),
                ],
            )
            .expect("server config");
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert_der().clone()).expect("root");
            let _ = std::fs::remove_dir_all(&dir);
            Tls {
                server: Arc::new(server),
                roots,
            }
        }

        /// What a client offering `alpn` reads before the connection closes (`Err` if it
        /// was closed without a TLS close_notify, as the acceptor does when nothing serves
        /// that ALPN).
        async fn route(tls: &Tls, routes: Routes, alpn: Option<&[u8]>) -> std::io::Result<Vec<u8>> {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(tls.roots.clone())
            .with_no_client_auth();
            client.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
            let gate = gate(4, 4, 4);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            let server = async {
                let (tcp, peer) = listener.accept().await.expect("accept");
                let admission = gate.admit(peer.ip()).expect("admitted");
                connection(
                    tcp,
                    peer,
                    admission,
                    Duration::from_secs(10),
                    acceptor,
                    Arc::new(routes),
                )
                .await;
            };
            let client = async {
                let tcp = TcpStream::connect(addr).await.expect("connect");
                let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
                let mut s = connector.connect(name, tcp).await.expect("handshake");
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.map(|_| out)
            };
            let ((), read) = tokio::join!(server, client);
            assert_eq!(
                gate.general.available_permits(),
                4,
                "the admission ends with the connection"
            );
            read
        }

        fn agents_and_web(agent: Arc<dyn Handler>, web: Arc<dyn Handler>) -> Routes {
            Routes::new().alpn(AGENT, agent).http(web)
        }

        #[tokio::test]
        async fn the_agent_alpn_goes_to_the_agent_handler_only() {
            let tls = tls();
            let r = agents_and_web(Arc::new(Answers(b"agent")), Arc::new(Panics));
            let read = route(&tls, r, Some(AGENT)).await.expect("served");
            assert_eq!(read, b"agent");
        }

        #[tokio::test]
        async fn http_alpns_and_none_go_to_the_http_handler_only() {
            let tls = tls();
            for alpn in [Some(&b"h2"[..]), Some(b"http/1.1"), None] {
                let r = agents_and_web(Arc::new(Panics), Arc::new(Answers(b"web")));
                let read = route(&tls, r, alpn).await.expect("served");
                assert_eq!(read, b"web", "{alpn:?}");
            }
        }

        #[tokio::test]
        async fn an_alpn_nobody_serves_is_closed_without_a_handler() {
            let tls = tls();
            let r = agents_and_web(Arc::new(Panics), Arc::new(Panics));
            let read = route(&tls, r, Some(OTHER)).await;
            assert!(read.map_or(true, |r| r.is_empty()), "closed unanswered");
        }

        #[tokio::test]
        async fn without_an_http_handler_http_is_closed() {
            let tls = tls();
            let r = Routes::new().alpn(AGENT, Arc::new(Panics));
            for alpn in [Some(&b"h2"[..]), None] {
                let read = route(&tls, r.clone(), alpn).await;
                assert!(
                    read.map_or(true, |r| r.is_empty()),
                    "{alpn:?} closed unanswered"
                );
            }
        }
    }
}
