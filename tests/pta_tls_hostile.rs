//! The agent transport against a peer that misbehaves: malformed frames close one
//! connection and nothing else, and envelopes replayed, reordered, tampered with, expired
//! or sent before the channel key are refused by the agent.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_agent::channel::{self, ChannelError, Identity};
use causeway_agent::connect::dial;
use causeway_agent::enroll;
use causeway_agent::runtime::endpoint_tls;
use causeway_agent::validator::Validator;
use causeway_credential::{EnvelopeOpener, Password, SignInOutcome};
use causeway_proto::agent::Frame;
use common::agent_hub::*;
use common::{lab, Lab};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hub spoken by hand to a real agent channel (real validator, real DC behind it).
struct HandHub {
    io: tokio::io::DuplexStream,
    agent: tokio::task::JoinHandle<Result<channel::ChannelEnd, ChannelError>>,
    public: causeway_credential::AgentPublicKey,
}

impl HandHub {
    /// Starts a real agent channel and answers its Hello with a Welcome for `endpoint_id`.
    async fn start(lab: &'static Lab, endpoint_id: &str) -> Self {
        let keys = causeway_credential::AgentKeyPair::generate();
        let public = keys.public().clone();
        let v = Arc::new(Validator::new(EnvelopeOpener::new(keys), directory(lab)));
        let (io, agent_side) = tokio::io::duplex(64 * 1024);
        let me = Identity {
            agent_id: "agt-00000000000000ab".into(),
            max_in_flight: 4,
            renewer: None,
        };
        let agent = tokio::spawn(async move { channel::run(agent_side, &me, v, |_| {}).await });
        let mut hub = Self { io, agent, public };
        assert!(matches!(hub.read().await, Some(Frame::Hello { .. })));
        hub.send(&Frame::Welcome {
            endpoint_id: endpoint_id.into(),
            heartbeat_ms: 5000,
        })
        .await;
        hub
    }

    /// The next frame from the agent, or `None` once it has closed the channel.
    async fn read(&mut self) -> Option<Frame> {
        let mut h = [0u8; 4];
        self.io.read_exact(&mut h).await.ok()?;
        let mut body = vec![0u8; u32::from_be_bytes(h) as usize];
        self.io.read_exact(&mut body).await.ok()?;
        Some(Frame::decode(&body).expect("frame"))
    }

    async fn send(&mut self, f: &Frame) {
        self.io.write_all(&f.to_bytes()).await.expect("send");
    }

    /// Sends a Check and waits for its verdict.
    async fn check(
        &mut self,
        request_id: causeway_credential::RequestId,
        envelope: causeway_credential::SealedEnvelope,
    ) -> SignInOutcome {
        self.send(&Frame::Check {
            request_id,
            deadline_ms: 5000,
            envelope,
        })
        .await;
        loop {
            match self.read().await.expect("agent still up") {
                Frame::Verdict { outcome, .. } => return outcome,
                _ => continue,
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A hub (here: a test speaking the protocol by hand) that replays a Check, reorders two,
/// tampers with one or sends one expired gets no verdict on the password: the real agent
/// refuses the envelope and says why in its log, and never binds with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_one_connection_and_nothing_else() {
    let lab = lab();
    let dir = tempdir("garbage");
    let ep = EndpointUnderTest::start(&dir, 0, false);
    let state = enroll::register(&ep.endpoint(), None, &ep.token(), "garbage-host")
        .await
        .expect("enrolled");
    let id = state.agent_id.clone();
    let tls = endpoint_tls(&state.ca_pem, &state.tls_cert_pem, &state.tls_key_pem).expect("tls");
    let _agent = run_agent(lab, state, ep.endpoint(), 1);
    until("connected", || ep.hub.connected_agents().contains(&id)).await;
    let bad_inputs: Vec<Vec<u8>> = vec![
        u32::MAX.to_be_bytes().to_vec(),         // oversized length
        vec![0, 0, 0, 0],                        // zero length
        vec![0, 0, 0, 3, 0x7f, 1, 2],            // unknown kind
        Frame::Ping(1).to_bytes()[..6].to_vec(), // truncated, then EOF
        Frame::Verdict {
            request_id: causeway_credential::RequestId([0; 16]),
            outcome: SignInOutcome::Success,
            directory_us: 0,
        }
        .to_bytes(), // Verdict before Hello
    ];
    for bad in bad_inputs {
        let mut s = dial(&ep.endpoint(), None, tls.clone())
            .await
            .expect("mTLS works");
        s.write_all(&bad).await.expect("write");
        let _ = s.shutdown().await;
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(12), s.read_to_end(&mut rest)).await;
        assert!(
            r.is_ok(),
            "the hub did not close a connection that sent {bad:?}"
        );
    }
    // The well-behaved agent is still there and serving.
    assert!(ep.hub.connected_agents().contains(&id));
    let alice = (lab.user("alice", "UPN"), lab.user("alice", "PASSWORD"));
    assert_eq!(
        ep.hub.check(req(alice.0, alice.1)).await,
        SignInOutcome::Success
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The agent side of "malformed frames": a hub that sends garbage loses its channel, and the
/// agent's process goes on (its loop reconnects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_drops_a_hub_that_sends_garbage() {
    let lab = lab();
    for garbage in [
        vec![0xffu8, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 1, 0x42],
        vec![0, 0, 0, 2, 2],
    ] {
        let (hub_side, agent_side) = tokio::io::duplex(4096);
        let me = Identity {
            agent_id: "agt-00000000000000dd".into(),
            max_in_flight: 4,
            renewer: None,
        };
        let v = Arc::new(Validator::new(
            EnvelopeOpener::new(causeway_credential::AgentKeyPair::generate()),
            directory(lab),
        ));
        let agent = tokio::spawn(async move { channel::run(agent_side, &me, v, |_| {}).await });
        let mut hub_side = hub_side;
        let mut hello = [0u8; 4];
        hub_side.read_exact(&mut hello).await.expect("hello header");
        hub_side.write_all(&garbage).await.expect("garbage");
        drop(hub_side); // a truncated frame followed by the end of the connection
        let r = tokio::time::timeout(Duration::from_secs(5), agent)
            .await
            .expect("agent reacted")
            .expect("no panic");
        assert!(
            matches!(
                r,
                Err(ChannelError::Frame(_))
                    | Err(ChannelError::Protocol(_))
                    | Err(ChannelError::Io(_))
            ),
            "{r:?}"
        );
    }
}

/// A hub (here: a test speaking the protocol by hand) that replays a Check, reorders two,
/// tampers with one or sends one expired gets no verdict on the password: the real agent
/// refuses the envelope and says why in its log, and never binds with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_reordered_tampered_or_expired_envelopes_are_refused_by_the_agent() {
    use causeway_credential::{ChannelSealer, EnvelopeContext, RequestId, SealedEnvelope};
    common::init_logs();
    let lab = lab();
    let mut hub = HandHub::start(lab, "ep-replay").await;
    let (mut sealer, key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    hub.send(&Frame::ChannelKey { key }).await;
    let password = Password::new(lab.user("alice", "PASSWORD").into()).expect("pw");
    let ctx = |ttl: u64| EnvelopeContext {
        request_id: RequestId::random(),
        user_name: lab.user("alice", "UPN").into(),
        endpoint_id: "ep-replay".into(),
        expires_at: unix_now() + ttl,
    };
    let mut seal = |c: &EnvelopeContext| sealer.seal(c, &password).expect("seal");

    let (c0, c1, c2, c3, c4) = (ctx(30), ctx(30), ctx(30), ctx(30), ctx(0));
    let (e0, e1, e2, e3, e4) = (seal(&c0), seal(&c1), seal(&c2), seal(&c3), seal(&c4));
    // The original opens and binds.
    assert_eq!(
        hub.check(c0.request_id, e0.clone()).await,
        SignInOutcome::Success
    );
    // Its replay does not.
    assert_eq!(
        hub.check(c0.request_id, e0).await,
        SignInOutcome::DirectoryUnavailable
    );
    // One ciphertext bit flipped.
    let mut tampered = e1.as_bytes().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        hub.check(c1.request_id, SealedEnvelope::from_bytes(tampered))
            .await,
        SignInOutcome::DirectoryUnavailable
    );
    // The later one first: it opens, and the earlier one cannot come after it.
    assert_eq!(hub.check(c3.request_id, e3).await, SignInOutcome::Success);
    assert_eq!(
        hub.check(c2.request_id, e2).await,
        SignInOutcome::DirectoryUnavailable
    );
    // Expired on arrival.
    assert_eq!(
        hub.check(c4.request_id, e4).await,
        SignInOutcome::DirectoryUnavailable
    );
    // An envelope of another channel to the same agent does not open on this one, even
    // with a sequence number this channel has not reached yet.
    let (mut other, _) = ChannelSealer::new(&hub.public).expect("encapsulate");
    let c5 = ctx(30);
    let e5 = (0..10)
        .map(|_| other.seal(&c5, &password).expect("seal"))
        .last()
        .expect("ten");
    assert_eq!(
        hub.check(c5.request_id, e5).await,
        SignInOutcome::DirectoryUnavailable
    );
}

/// A Check before the channel's key, or a second key, is a hub breaking the protocol: the
/// agent closes the channel instead of answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_before_the_channel_key_or_a_second_key_closes_the_channel() {
    use causeway_credential::{ChannelSealer, EnvelopeContext, RequestId};
    let lab = lab();
    let password = Password::new(lab.user("alice", "PASSWORD").into()).expect("pw");

    let mut hub = HandHub::start(lab, "ep-order").await;
    let (mut sealer, _key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    let c = EnvelopeContext {
        request_id: RequestId::random(),
        user_name: lab.user("alice", "UPN").into(),
        endpoint_id: "ep-order".into(),
        expires_at: unix_now() + 30,
    };
    let envelope = sealer.seal(&c, &password).expect("seal");
    hub.send(&Frame::Check {
        request_id: c.request_id,
        deadline_ms: 5000,
        envelope,
    })
    .await;
    while let Some(f) = hub.read().await {
        assert!(!matches!(f, Frame::Verdict { .. }), "answered {f:?}");
    }
    assert!(matches!(
        hub.agent.await.expect("task"),
        Err(ChannelError::Protocol(
            "hub sent a Check before the channel key"
        ))
    ));

    let mut hub = HandHub::start(lab, "ep-order").await;
    let (_, key) = ChannelSealer::new(&hub.public).expect("encapsulate");
    hub.send(&Frame::ChannelKey { key: key.clone() }).await;
    hub.send(&Frame::ChannelKey { key }).await;
    while hub.read().await.is_some() {}
    assert!(matches!(
        hub.agent.await.expect("task"),
        Err(ChannelError::Protocol("hub sent a second channel key"))
    ));
}
