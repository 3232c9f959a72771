//! Secrets never reach the logs: sign-ins with unique passwords — right, wrong, locked,
//! against a dead DC — go through hub, agent and the real Samba DC with every log target
//! at TRACE (including `log` records from dependencies such as ldap3), and the captured
//! output must not contain any of the passwords, nor the envelope key.
//!
//! Its own test binary: the subscriber it installs is process-wide.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_agent::channel::{self, Identity};
use causeway_agent::validator::{
    DcTarget, DirectorySettings, LoginResolution, Transport, Validator,
};
use causeway_credential::{AgentKeyPair, EnvelopeOpener, Password, SignInOutcome};
use causeway_federation::hub::{AgentPeer, CheckRequest, Hub, HubConfig};
use common::{lab, tls_config};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_key_in_any_log_line() {
    let capture = Capture::default();
    let sink = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .init(); // also routes `log` records (ldap3, rustls) into the same writer
    let lab = lab();
    let hub = Hub::new(HubConfig::new("endpoint-leak"));
    let keys = AgentKeyPair::generate();
    let key_hex: String = keys
        .secret()
        .expose_secret_bytes()
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let peer = AgentPeer {
        agent_id: "agt-00000000000leak1".into(),
        hpke_public_key: keys.public().clone(),
    };
    let dead = DcTarget {
        url: "ldaps://127.0.0.1:1".into(),
        transport: Transport::Ldaps,
    };
    let live = DcTarget {
        url: lab.get("AD_LDAPS_URL").into(),
        transport: Transport::Ldaps,
    };
    let validator = Arc::new(Validator::new(
        EnvelopeOpener::new(keys),
        DirectorySettings {
            dcs: vec![dead, live],
            tls: tls_config(Some(&PathBuf::from(lab.get("AD_CA_CERT")))),
            op_timeout: Duration::from_secs(3),
            pool_per_dc: 4,
            cool_down: Duration::from_secs(10),
            login: LoginResolution::AsTyped,
        },
    ));
    let (a, b) = tokio::io::duplex(64 * 1024);
    let h = hub.clone();
    tokio::spawn(async move { h.serve_channel(a, peer).await });
    let me = Identity {
        agent_id: "agt-00000000000leak1".into(),
        max_in_flight: 8,
        renewer: None,
    };
    tokio::spawn(async move { channel::run(b, &me, validator, |_| {}).await });
    for _ in 0..200 {
        if hub.has_agents() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let alice = lab.user("alice", "UPN");
    let right = lab.user("alice", "PASSWORD");
    // Wrong guesses go to the lab account reserved for them (AD's domain threshold counts
    // every test process running at once).
    let target = lab.user("nora-probe", "UPN");
    common::set_lockout_time_zero(lab, lab.user("nora-probe", "DN")).await;
    let unique = [
        "Uniq-Leak-Probe-7c1e9",
        "Uniq-Leak-Probe-b42d0",
        "Uniq-Leak-Probe-0f3a8",
    ];
    let check = |user: &str, pw: &str| CheckRequest {
        user_name: user.into(),
        password: Password::new(pw.into()).expect("valid"),
        source: None,
    };
    assert_eq!(hub.check(check(alice, right)).await, SignInOutcome::Success);
    assert_eq!(
        hub.check(check(target, unique[0])).await,
        SignInOutcome::InvalidCredentials
    );
    assert_eq!(
        hub.check(check(target, unique[1])).await,
        SignInOutcome::InvalidCredentials
    );
    // The same wrong password again: answered by smart lockout, still never logged.
    assert_eq!(
        hub.check(check(target, unique[0])).await,
        SignInOutcome::InvalidCredentials
    );
    // The third distinct one locks the user at the hub.
    assert_eq!(
        hub.check(check(target, unique[2])).await,
        SignInOutcome::InvalidCredentials
    );
    assert_eq!(
        hub.check(check(target, "Uniq-Leak-After-Lock")).await,
        SignInOutcome::AccountLocked
    );
    assert_eq!(
        hub.check(check(lab.user("erin-locked", "UPN"), "Uniq-Leak-Locked-55"))
            .await,
        SignInOutcome::AccountLocked
    );

    let text = String::from_utf8_lossy(&capture.0.lock().expect("capture")).into_owned();
    assert!(
        text.len() > 1000,
        "the capture saw the run ({} bytes)",
        text.len()
    );
    assert!(
        text.contains("agent channel up"),
        "the capture saw the hub's own logs"
    );
    assert!(
        text.contains("rustls::"),
        "the capture saw dependencies' `log` records at TRACE"
    );
    std::fs::write(
        std::env::temp_dir().join("causeway-no-leak-capture.log"),
        &text,
    )
    .expect("keep the capture");
    for secret in unique.iter().copied().chain([
        right,
        "Uniq-Leak-Locked-55",
        "Uniq-Leak-After-Lock",
        key_hex.as_str(),
    ]) {
        assert!(!text.contains(secret), "a secret appeared in the logs");
    }
    // UTF-16LE forms of the passwords (what unicodePwd or NTLM would carry) are absent too.
    for pw in unique {
        let wide: String = pw.chars().flat_map(|c| [c, '\0']).collect();
        assert!(!text.contains(&wide));
    }
}
