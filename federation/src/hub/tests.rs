//! The hub's dispatch logic, with in-memory protocol peers standing in for agents (the
//! real agent and directory are exercised by the workspace's integration tests).

use std::sync::atomic::AtomicUsize;

use causeway_credential::AgentKeyPair;
use causeway_proto::agent::FrameError;

use super::*;

/// A peer that answers every Check with `outcome` after `delay` (or never, if `None`).
fn fake_agent(
    hub: &Arc<Hub>,
    id: &str,
    delay: Option<Duration>,
    outcome: SignInOutcome,
    seen: Arc<AtomicUsize>,
) {
    let (hub_side, mut agent) = tokio::io::duplex(64 * 1024);
    let peer = AgentPeer {
        agent_id: id.into(),
        hpke_public_key: AgentKeyPair::generate().public().clone(),
    };
    let h = hub.clone();
    tokio::spawn(async move { h.serve_channel(hub_side, peer).await });
    let id = id.to_owned();
    tokio::spawn(async move {
        write_frame(
            &mut agent,
            &Frame::Hello {
                version: PROTOCOL_VERSION,
                agent_id: id,
                agent_version: "test".into(),
                max_in_flight: 64,
            },
        )
        .await?;
        let (mut rd, wr) = tokio::io::split(agent);
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        loop {
            match read_frame(&mut rd).await? {
                Frame::Check { request_id, .. } => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let Some(d) = delay else { continue };
                    let wr = wr.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(d).await;
                        let _ = write_frame(
                            &mut *wr.lock().await,
                            &Frame::Verdict {
                                request_id,
                                outcome,
                                directory_us: 1,
                            },
                        )
                        .await;
                    });
                }
                Frame::Ping(n) => write_frame(&mut *wr.lock().await, &Frame::Pong(n)).await?,
                _ => {}
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), ChannelError>(())
    });
}

async fn connected(hub: &Hub, n: usize) {
    for _ in 0..200 {
        if hub.connected_agents().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("fake agents did not connect");
}

fn req(user: &str) -> CheckRequest {
    CheckRequest {
        user_name: user.into(),
        password: Password::new("Some-Password-1".into()).expect("valid"),
        source: None,
    }
}

// The paused clock: "at once" is no time at all on tokio's clock, and the fake agent's
// 300 ms answer costs none of the test's.
#[tokio::test(start_paused = true)]
async fn past_capacity_checks_are_throttled_at_once() {
    let mut cfg = HubConfig::new("ep");
    cfg.max_in_flight = 2;
    let hub = Hub::new(cfg);
    fake_agent(
        &hub,
        "agt-1",
        Some(Duration::from_millis(300)),
        SignInOutcome::Success,
        Arc::default(),
    );
    connected(&hub, 1).await;
    let a = tokio::spawn({
        let h = hub.clone();
        async move { h.check(req("u1")).await }
    });
    let b = tokio::spawn({
        let h = hub.clone();
        async move { h.check(req("u2")).await }
    });
    // Both in flight: their checks are with the agent, which answers after 300 ms.
    while hub.capacity.available_permits() > 0 {
        tokio::task::yield_now().await;
    }
    let t = tokio::time::Instant::now();
    assert_eq!(hub.check(req("u3")).await, SignInOutcome::Throttled);
    assert_eq!(t.elapsed(), Duration::ZERO, "refused at once, not queued");
    assert_eq!(a.await.expect("a"), SignInOutcome::Success);
    assert_eq!(b.await.expect("b"), SignInOutcome::Success);
}

#[tokio::test]
async fn a_silent_agent_is_retried_on_another_within_the_deadline() {
    let mut cfg = HubConfig::new("ep");
    cfg.attempt_timeout = Duration::from_millis(200);
    cfg.deadline = Duration::from_secs(2);
    let hub = Hub::new(cfg);
    let (mute, good) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    fake_agent(&hub, "agt-mute", None, SignInOutcome::Success, mute.clone());
    fake_agent(
        &hub,
        "agt-good",
        Some(Duration::from_millis(5)),
        SignInOutcome::Success,
        good.clone(),
    );
    connected(&hub, 2).await;
    for i in 0..6 {
        let t = Instant::now();
        assert_eq!(
            hub.check(req(&format!("user{i}"))).await,
            SignInOutcome::Success
        );
        assert!(t.elapsed() < Duration::from_millis(600));
    }
    assert!(mute.load(Ordering::SeqCst) >= 1, "the mute agent was tried");
    assert_eq!(
        good.load(Ordering::SeqCst),
        6,
        "every check ended on the good agent"
    );
}

#[tokio::test]
async fn the_deadline_bounds_a_check_when_no_agent_answers() {
    let mut cfg = HubConfig::new("ep");
    cfg.attempt_timeout = Duration::from_millis(100);
    cfg.deadline = Duration::from_millis(300);
    let hub = Hub::new(cfg);
    fake_agent(
        &hub,
        "agt-mute",
        None,
        SignInOutcome::Success,
        Arc::default(),
    );
    connected(&hub, 1).await;
    let t = Instant::now();
    assert_eq!(
        hub.check(req("u")).await,
        SignInOutcome::DirectoryUnavailable
    );
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn outcomes_other_than_success_pass_through_and_feed_lockout() {
    let hub = Hub::new(HubConfig::new("ep"));
    fake_agent(
        &hub,
        "agt-1",
        Some(Duration::from_millis(1)),
        SignInOutcome::InvalidCredentials,
        Arc::default(),
    );
    connected(&hub, 1).await;
    for i in 0..3 {
        let r = CheckRequest {
            user_name: "victim".into(),
            password: Password::new(format!("guess-{i}")).expect("valid"),
            source: None,
        };
        assert_eq!(hub.check(r).await, SignInOutcome::InvalidCredentials);
    }
    assert_eq!(hub.check(req("victim")).await, SignInOutcome::AccountLocked);
    assert!(hub
        .lockout()
        .locked_for(
            &lockout::AccountKey::of_name("victim"),
            None,
            SystemTime::now()
        )
        .is_some());
}

/// An agent of the previous protocol version (one encapsulation per envelope) is told, in
/// words, which version the hub speaks, and gets no Welcome or channel key.
#[tokio::test]
async fn an_agent_of_another_protocol_version_is_told_the_hubs_version() {
    let hub = Hub::new(HubConfig::new("ep"));
    let (hub_side, mut agent) = tokio::io::duplex(64 * 1024);
    let peer = AgentPeer {
        agent_id: "agt-old".into(),
        hpke_public_key: AgentKeyPair::generate().public().clone(),
    };
    let h = hub.clone();
    let served = tokio::spawn(async move { h.serve_channel(hub_side, peer).await });
    write_frame(
        &mut agent,
        &Frame::Hello {
            version: 1,
            agent_id: "agt-old".into(),
            agent_version: "0.0.9".into(),
            max_in_flight: 8,
        },
    )
    .await
    .expect("hello");
    match read_frame(&mut agent).await.expect("an answer, not a hang") {
        Frame::GoAway { reason, detail } => {
            assert_eq!(reason, GoAwayReason::UnsupportedVersion);
            assert!(detail.contains(&PROTOCOL_VERSION.to_string()), "{detail}");
        }
        other => panic!("expected GoAway, got {other:?}"),
    }
    assert!(matches!(
        served.await.expect("task"),
        Err(ChannelError::Protocol("unsupported protocol version"))
    ));
    assert!(!hub.has_agents());
}

/// Speaks Hello and reads Welcome and the channel key, as an agent with `keys` would.
async fn handshake(
    hub: &Arc<Hub>,
    id: &str,
    keys: &AgentKeyPair,
) -> (tokio::io::DuplexStream, causeway_credential::ChannelKey) {
    let (hub_side, mut agent) = tokio::io::duplex(256 * 1024);
    let peer = AgentPeer {
        agent_id: id.into(),
        hpke_public_key: keys.public().clone(),
    };
    let h = hub.clone();
    tokio::spawn(async move { h.serve_channel(hub_side, peer).await });
    write_frame(
        &mut agent,
        &Frame::Hello {
            version: PROTOCOL_VERSION,
            agent_id: id.into(),
            agent_version: "test".into(),
            max_in_flight: 256,
        },
    )
    .await
    .expect("hello");
    assert!(matches!(
        read_frame(&mut agent).await.expect("welcome"),
        Frame::Welcome { .. }
    ));
    let Frame::ChannelKey { key } = read_frame(&mut agent).await.expect("channel key") else {
        panic!("the channel key must follow Welcome");
    };
    (agent, key)
}

/// Every channel, even a second one of the same agent, gets its own encapsulation; and
/// checks sent at once on one channel reach the agent in sequence order, so a real
/// opener (which refuses any envelope that goes back) opens every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_channel_has_its_own_key_and_concurrent_checks_arrive_in_order() {
    use causeway_credential::EnvelopeOpener;
    let hub = Hub::new(HubConfig::new("ep"));
    let opener = Arc::new(EnvelopeOpener::new(AgentKeyPair::generate()));
    let keys = AgentKeyPair::from_secret_bytes(&opener.keys().secret().expose_secret_bytes())
        .expect("same key");
    let (first, key1) = handshake(&hub, "agt-1", &keys).await;
    let (second, key2) = handshake(&hub, "agt-1", &keys).await;
    assert_ne!(key1, key2, "a fresh encapsulation per channel");
    // Route every check to the first channel: the second one's agent hangs up.
    drop(second);
    for _ in 0..200 {
        if lock(&hub.channels).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(lock(&hub.channels).len(), 1, "the second channel is gone");

    let agent = tokio::spawn({
        let opener = opener.clone();
        async move {
            let mut chan = opener.accept_channel(&key1).expect("decapsulate");
            let (mut rd, mut wr) = tokio::io::split(first);
            let mut opened = Vec::new();
            while opened.len() < 64 {
                match read_frame(&mut rd).await.expect("frame") {
                    Frame::Check {
                        request_id,
                        envelope,
                        ..
                    } => {
                        let now = unix_now();
                        let c = chan.open(&envelope, "ep", now).expect("opens, in order");
                        assert_eq!(c.context.request_id, request_id);
                        opened.push(c.context.user_name.clone());
                        write_frame(
                            &mut wr,
                            &Frame::Verdict {
                                request_id,
                                outcome: SignInOutcome::Success,
                                directory_us: 1,
                            },
                        )
                        .await
                        .expect("verdict");
                    }
                    Frame::Ping(n) => write_frame(&mut wr, &Frame::Pong(n)).await.expect("pong"),
                    other => panic!("unexpected {other:?}"),
                }
            }
            opened
        }
    });
    let checks: Vec<_> = (0..64)
        .map(|i| {
            let h = hub.clone();
            tokio::spawn(async move { h.check(req(&format!("user{i}"))).await })
        })
        .collect();
    for c in checks {
        assert_eq!(c.await.expect("check"), SignInOutcome::Success);
    }
    assert_eq!(agent.await.expect("agent").len(), 64);
}

#[test]
fn channel_errors_name_the_agent_in_the_words_the_logs_always_used() {
    let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
    let cases = [
        (
            ChannelError::from(causeway_proto::agent::io::WireError::Frame(
                FrameError::TrailingBytes(2),
            )),
            "agent sent a malformed frame: 2 bytes after the end of the frame",
        ),
        (
            ChannelError::Protocol("first frame was not Hello"),
            "agent broke the protocol: first frame was not Hello",
        ),
        (
            ChannelError::Silent(Duration::from_secs(10)),
            "agent stopped answering (no frame for 10s)",
        ),
        (ChannelError::from(io), "agent connection failed: pipe"),
        (
            ChannelError::Own(HubEnded::Disconnected(GoAwayReason::Revoked)),
            "agent disconnected by the hub: Revoked",
        ),
        (
            ChannelError::Own(HubEnded::ChannelKey),
            "cannot set up the channel key for this agent",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(e.to_string(), want);
    }
}

#[tokio::test(start_paused = true)]
async fn idle_agents_share_sequential_checks_instead_of_the_first_taking_all() {
    let hub = Hub::new(HubConfig::new("ep"));
    let (a, b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let ok = SignInOutcome::Success;
    fake_agent(&hub, "agt-a", Some(Duration::from_millis(1)), ok, a.clone());
    connected(&hub, 1).await;
    fake_agent(&hub, "agt-b", Some(Duration::from_millis(1)), ok, b.clone());
    connected(&hub, 2).await;
    const N: usize = 20;
    for i in 0..N {
        // One at a time: both agents are idle at every pick, a tie each time.
        assert_eq!(hub.check(req(&format!("tie{i}"))).await, ok);
    }
    let (a, b) = (a.load(Ordering::SeqCst), b.load(Ordering::SeqCst));
    assert_eq!(a + b, N);
    assert!(
        a >= N / 4 && b >= N / 4,
        "ties must spread: agt-a got {a}, agt-b got {b}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_says_goaway_answers_what_it_holds_and_gets_nothing_new() {
    let hub = Hub::new(HubConfig::new("ep"));
    let (hub_side, agent) = tokio::io::duplex(64 * 1024);
    let peer = AgentPeer {
        agent_id: "agt-leaving".into(),
        hpke_public_key: AgentKeyPair::generate().public().clone(),
    };
    let served = tokio::spawn({
        let h = hub.clone();
        async move { h.serve_channel(hub_side, peer).await }
    });
    let leaving_checks = Arc::new(AtomicUsize::new(0));
    let seen = leaving_checks.clone();
    let leaving = tokio::spawn(async move {
        let (mut rd, mut wr) = tokio::io::split(agent);
        write_frame(
            &mut wr,
            &Frame::Hello {
                version: PROTOCOL_VERSION,
                agent_id: "agt-leaving".into(),
                agent_version: "test".into(),
                max_in_flight: 64,
            },
        )
        .await?;
        loop {
            match read_frame(&mut rd).await {
                Ok(Frame::Check { request_id, .. }) => {
                    seen.fetch_add(1, Ordering::SeqCst);
                    // Going away with this check in hand: say so first, then answer it.
                    let bye = Frame::GoAway {
                        reason: GoAwayReason::ShuttingDown,
                        detail: "stopping".into(),
                    };
                    write_frame(&mut wr, &bye).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let verdict = Frame::Verdict {
                        request_id,
                        outcome: SignInOutcome::PasswordExpired,
                        directory_us: 1,
                    };
                    write_frame(&mut wr, &verdict).await?;
                }
                Ok(Frame::Ping(n)) => write_frame(&mut wr, &Frame::Pong(n)).await?,
                Ok(_) => {}
                // The hub closes the channel once nothing is pending on it.
                Err(_) => return Ok::<(), ChannelError>(()),
            }
        }
    });
    connected(&hub, 1).await;
    let held = tokio::spawn({
        let h = hub.clone();
        async move { h.check(req("held")).await }
    });
    while leaving_checks.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The GoAway is read before anything else happens on the hub's side.
    while hub.has_agents() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let other = Arc::new(AtomicUsize::new(0));
    fake_agent(
        &hub,
        "agt-staying",
        Some(Duration::from_millis(1)),
        SignInOutcome::Success,
        other.clone(),
    );
    while !hub.has_agents() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(hub.check(req("new")).await, SignInOutcome::Success);
    assert_eq!(
        held.await.expect("held"),
        SignInOutcome::PasswordExpired,
        "the check in flight is answered by the agent that held it, not retried"
    );
    assert_eq!(
        leaving_checks.load(Ordering::SeqCst),
        1,
        "nothing new after GoAway"
    );
    assert_eq!(other.load(Ordering::SeqCst), 1);
    served
        .await
        .expect("join")
        .expect("a drained channel ends cleanly");
    leaving
        .await
        .expect("join")
        .expect("the hub closed the channel");
    assert_eq!(hub.connected_agents(), vec!["agt-staying".to_owned()]);
}
