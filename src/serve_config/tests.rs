use super::*;

fn parse(t: &str) -> Result<ServeConfig, ConfigError> {
    ServeConfig::parse(t, Path::new("causeway.toml"))
}

#[test]
fn empty_is_all_defaults_and_the_example_validates() {
    let c = parse("").expect("empty");
    assert_eq!(c.session_lifetime, Duration::from_secs(8 * 3600));
    assert_eq!(c.rollover, RolloverPolicy::default());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("causeway.example.toml");
    let c = ServeConfig::load(&path).expect("the shipped example validates");
    assert_eq!(c.domains.len(), 2);
}

#[test]
fn errors_name_line_and_column() {
    let e = parse("[server]\npublic_url = \"http://x\"\n").expect_err("http");
    assert_eq!((e.line, e.column), (Some(2), Some(14)), "{e}");
    let e =
        parse("[[domain]]\nname = \"corp.example\"\nmethod = \"kerberos\"\n").expect_err("method");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("causeway.toml:3:"), "{e}");
    let e = parse("[session]\nlifetime = \"5w\"\n").expect_err("unit");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[server]\nlisten = 8443\n").expect_err("type");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[sever]\n").expect_err("typo");
    assert_eq!(e.line, Some(1), "{e}");
    let e = parse("[signing]\nactivate_after_publish = \"30d\"\n").expect_err("policy");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[lockout]\nthreshold = 5\ndirectory_threshold = 5\n").expect_err("budget");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("directory_threshold"), "{e}");
    let e =
        parse("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n").expect_err("cidr");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[throttle]\nper_source_per_minute = 5\n").expect_err("old name");
    assert_eq!(e.line, Some(2), "{e}");
    let e = parse("[[wsfed_app]]\nrealm = \"urn:x\"\nreply_urls = [\"javascript:x\"]\n")
        .expect_err("url");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn connection_settings_are_read_and_checked_with_their_line() {
    let c = parse(
        "[server]\nidle_timeout = \"5s\"\nhandshake_timeout = \"3s\"\nmax_connections = 500\nmax_connections_per_source = 8\nmetrics_listen = \"127.0.0.1:0\"\n",
    )
    .expect("valid");
    assert_eq!(c.connections.idle_timeout, Duration::from_secs(5));
    assert_eq!(c.connections.handshake_timeout, Duration::from_secs(3));
    assert_eq!(c.connections.max_connections, Some(500));
    assert_eq!(c.connections.max_connections_per_source, 8);
    assert_eq!(c.metrics_listen, Some("127.0.0.1:0".parse().expect("addr")));
    assert_eq!(parse("").expect("empty").metrics_listen, None);
    for (text, line) in [
        ("[server]\n\nidle_timeout = \"0s\"\n", 3),
        ("[server]\nidle_timeout = \"2h\"\n", 2),
        ("[server]\nhandshake_timeout = \"1d\"\n", 2),
        ("[server]\nheader_read_timeout = \"soon\"\n", 2),
        ("[server]\nmax_connections = 0\n", 2),
        ("[server]\nmax_connections_per_source = -1\n", 2),
        ("[server]\nmax_agent_channels = 1000001\n", 2),
        (
            "[server]\nmax_connections = 10\nmax_connections_per_source = 11\n",
            3,
        ),
        ("[server]\nmetrics_listen = \"localhost\"\n", 2),
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, Some(line), "{text}: {e}");
    }
}

#[test]
fn connection_caps_stay_below_the_file_descriptor_limit() {
    let d = ConnectionSettings::default();
    // A generous limit: the documented defaults.
    let (l, w) = d.limits(Some(1 << 20));
    assert_eq!((l.max_connections, l.max_agent_channels), (10_000, 1_000));
    assert!(w.is_none());
    // 1024 descriptors: the defaults are derived below it, without a warning.
    let (l, w) = d.limits(Some(1024));
    assert!(w.is_none());
    assert_eq!(l.max_agent_channels, 96);
    assert_eq!(l.max_connections, 1024 - 256 - 96);
    // Caps set above the limit are lowered, and the operator is told.
    let set = ConnectionSettings {
        max_connections: Some(5_000),
        ..d
    };
    let (l, w) = set.limits(Some(1024));
    assert!(l.max_connections + l.max_agent_channels <= 1024 - 256);
    assert!(w.expect("a warning").contains("RLIMIT_NOFILE 1024"));
    // Unknown limit: as configured.
    assert_eq!(set.limits(None).0.max_connections, 5_000);
}

#[test]
fn the_metrics_token_is_read_from_its_file_and_never_shown() {
    let dir = std::env::temp_dir().join(format!("causeway-metrics-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("causeway.toml");
    std::fs::write(dir.join("token"), "0123456789abcdef-unique-5e1\n").expect("token");
    std::fs::write(dir.join("short"), "tiny-5e2").expect("short");
    let c = ServeConfig::parse("[server]\nmetrics_token_file = \"token\"\n", &cfg)
        .expect("relative to the config file");
    let t = c.metrics_token.as_ref().expect("token");
    assert_eq!(t.expose_secret(), "0123456789abcdef-unique-5e1");
    assert!(
        !format!("{c:?}").contains("unique-5e1"),
        "Debug shows the token"
    );
    let e = ServeConfig::parse("[server]\n\nmetrics_token_file = \"short\"\n", &cfg)
        .expect_err("short");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(!e.to_string().contains("tiny-5e2"), "{e}");
    let e = ServeConfig::parse("[server]\nmetrics_token_file = \"missing\"\n", &cfg)
        .expect_err("missing");
    assert_eq!(e.line, Some(2), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lockout_throttle_and_proxies_are_read() {
    let c = parse("").expect("empty");
    assert_eq!(c.lockout.threshold, 3);
    assert_eq!(c.lockout.directory_threshold, 4);
    assert_eq!(c.lockout.per_source_failures_per_minute, 120);
    assert_eq!(c.anonymous_budget, (50, 200));
    let c = parse("[throttle]\nanonymous_per_source_per_second = 10\n").expect("rate");
    assert_eq!(
        c.anonymous_budget,
        (10, 40),
        "four seconds' worth unless given"
    );
    let c = parse("[throttle]\nanonymous_per_source_per_second = 0\n").expect("off");
    assert_eq!(c.anonymous_budget.0, 0);
    let e = parse("[throttle]\nanonymous_per_source_per_second = 5\nanonymous_burst = 0\n")
        .expect_err("no burst");
    assert_eq!(e.line, Some(3), "{e}");
    assert_eq!(c.trusted_proxies, TrustedProxies::default());
    let c = parse(
        "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[lockout]\nthreshold = 5\nwindow = \"1h\"\nlock_for = \"5m\"\nfamiliar_locations = 4\n[throttle]\nper_source_failures_per_minute = 600\n",
    )
    .expect("valid");
    assert_eq!(c.lockout.threshold, 5);
    assert_eq!(
        c.lockout.directory_threshold, 6,
        "one above the threshold unless given"
    );
    assert_eq!(c.lockout.window, Duration::from_secs(3600));
    assert_eq!(c.lockout.lock_for, Duration::from_secs(300));
    assert_eq!(c.lockout.familiar_locations, 4);
    assert_eq!(c.lockout.per_source_failures_per_minute, 600);
    let behind: std::net::SocketAddr = "10.1.2.3:5000".parse().expect("addr");
    let mut h = hyper::HeaderMap::new();
    h.insert("x-forwarded-for", "198.51.100.7".parse().expect("value"));
    assert_eq!(
        c.trusted_proxies.client(&h, Some(behind)),
        Some("198.51.100.7".parse().expect("ip"))
    );
}

#[test]
fn the_sync_lease_is_read_bounded_and_its_errors_name_the_line() {
    assert_eq!(
        parse("").expect("empty").sync_lease,
        causeway_store::DEFAULT_LEASE
    );
    let c = parse("[sync]\nlease = \"90s\"\n").expect("valid");
    assert_eq!(c.sync_lease, Duration::from_secs(90));
    for (text, line) in [
        ("[sync]\nlease = \"1s\"\n", 2),
        ("[sync]\n\nlease = \"11m\"\n", 3),
        ("[sync]\nlease = \"soon\"\n", 2),
        ("[sync]\nleese = \"60s\"\n", 2),
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, Some(line), "{text}: {e}");
    }
    assert_eq!(
        parse("[sync]\nlease = \"3s\"\n")
            .expect("short but allowed")
            .sync_lease,
        Duration::from_secs(3)
    );
    let e = parse("[sync]\nlease = \"1s\"\n").expect_err("short");
    assert!(e.to_string().contains("sync.lease"), "{e}");
}

#[test]
fn the_sync_certificate_validity_is_read_and_bounded() {
    assert_eq!(
        parse("").expect("empty").sync_certificate_validity,
        causeway_certs::DEFAULT_AGENT_CERT_VALIDITY
    );
    let c = parse("[sync]\ncertificate_validity = \"2m\"\n").expect("valid");
    assert_eq!(c.sync_certificate_validity, Duration::from_secs(120));
    for (text, line) in [
        ("[sync]\ncertificate_validity = \"59s\"\n", 2),
        ("[sync]\n\ncertificate_validity = \"366d\"\n", 3),
        ("[sync]\ncertificate_validity = \"later\"\n", 2),
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, Some(line), "{text}: {e}");
        if !text.contains("later") {
            assert!(e.to_string().contains("sync.certificate_validity"), "{e}");
        }
    }
}

#[test]
fn agent_listen_and_shutdown_timeout_are_read_and_checked_with_their_line() {
    let c = parse("[server]\nagent_listen = \"0.0.0.0:8444\"\nshutdown_timeout = \"30s\"\n")
        .expect("valid");
    assert_eq!(c.agent_listen, Some("0.0.0.0:8444".parse().expect("addr")));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
    let d = parse("").expect("empty");
    assert_eq!(
        (d.agent_listen, d.shutdown_timeout),
        (None, DEFAULT_SHUTDOWN_TIMEOUT)
    );
    assert!(d.browser_cert.is_none());
    for (text, line) in [
        ("[server]\n\nagent_listen = \"8444\"\n", 3),
        ("[server]\nshutdown_timeout = \"2h\"\n", 2),
        ("[server]\ntls_key_file = \"key.pem\"\n", 2),
    ] {
        let e = parse(text).expect_err(text);
        assert_eq!(e.line, Some(line), "{text}: {e}");
    }
}

#[test]
fn saml_metadata_terms_are_read_bounded_and_their_errors_name_the_line() {
    let d = parse("").expect("empty").saml_metadata;
    assert_eq!(
        (d.valid_for, d.cache_duration, d.signed),
        (
            Duration::from_secs(86_400),
            Duration::from_secs(3600),
            false
        )
    );
    let c = parse("[saml]\nsign_metadata = true\nmetadata_valid_for = \"7d\"\nmetadata_cache_duration = \"6h\"\n")
        .expect("valid")
        .saml_metadata;
    assert_eq!(
        (c.valid_for, c.cache_duration, c.signed),
        (
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(6 * 3600),
            true
        )
    );
    let e = parse("[saml]\nmetadata_valid_for = \"10m\"\n").expect_err("short");
    assert_eq!(e.line, Some(2), "{e}");
    // Relying parties must be told to refresh before their copy expires.
    let e = parse("[saml]\nmetadata_valid_for = \"1d\"\nmetadata_cache_duration = \"2d\"\n")
        .expect_err("cache past validity");
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.to_string().contains("metadata_valid_for"), "{e}");
    let e = parse("[saml]\nsign_metadata = \"yes\"\n").expect_err("type");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn a_configured_relying_party_on_plain_http_off_loopback_is_refused_with_its_line() {
    let e = parse("[[wsfed_app]]\nrealm = \"urn:x\"\nreply_urls = [\"http://rp.example/\"]\n")
        .expect_err("plain http");
    assert!(
        e.line.is_some() && e.to_string().contains("loopback only"),
        "{e}"
    );
    parse("[[wsfed_app]]\nrealm = \"urn:x\"\nreply_urls = [\"http://127.0.0.1:8080/\"]\n")
        .expect("loopback is fine");
}
