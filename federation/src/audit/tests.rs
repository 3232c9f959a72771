use super::*;

fn dir(name: &str) -> PathBuf {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    let d = std::env::temp_dir().join(format!(
        "causeway-audit-{name}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn all(d: &Path) -> Vec<Event> {
    let mut v = Vec::new();
    read(d, |e| v.push(e)).expect("read");
    v
}

#[test]
fn times_are_rfc3339_utc_with_milliseconds_and_parse_back() {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_764_654_781_123);
    let s = rfc3339(t);
    assert_eq!(s, "2025-12-02T05:53:01.123Z");
    assert_eq!(parse_time(&s), Some(t));
    assert_eq!(
        parse_time("2025-12-02T06:53:01.123+01:00"),
        Some(t),
        "offsets count"
    );
    assert_eq!(
        parse_time("1764654781"),
        None,
        "Unix seconds are not RFC 3339"
    );
}

#[test]
fn a_line_leaves_out_empty_fields_and_reads_back_the_same() {
    let d = dir("roundtrip");
    let log = AuditLog::open(&d, Rotation::default()).expect("open");
    let e = Event::password_check(
        "alice@corp.example",
        Some("192.0.2.7".parse().expect("ip")),
        Some("https://sp.example/saml"),
        "pass_through",
        Some("agent-1"),
        "success",
    );
    log.append(std::slice::from_ref(&e)).expect("append");
    let text = std::fs::read_to_string(d.join(FILE_NAME)).expect("file");
    assert!(!text.contains("\"actor\""), "{text}");
    assert!(text.contains("\"kind\":\"signin\""), "{text}");
    assert_eq!(all(&d), vec![e]);
}

#[cfg(unix)]
#[test]
fn the_directory_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir("modes").join("audit");
    let log = AuditLog::open(&d, Rotation::default()).expect("open");
    log.append(&[Event::admin("user.add", "a@b.example", "ok")])
        .expect("append");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&d), 0o700);
    assert_eq!(mode(&d.join(FILE_NAME)), 0o600);
}

#[test]
fn rotation_keeps_the_newest_files_and_loses_no_line_in_between() {
    let d = dir("rotate");
    let rot = Rotation {
        max_file_bytes: 1000,
        keep_files: 3,
    };
    let log = AuditLog::open(&d, rot).expect("open");
    for i in 0..200 {
        log.append(&[Event::admin("user.add", &format!("u{i}@x.example"), "ok")])
            .expect("append");
    }
    let files = AuditLog::files(&d);
    assert_eq!(files.len(), 4, "current + 3 kept: {files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).expect("meta").len() <= 1000, "{f:?}");
    }
    assert!(!d.join(format!("{FILE_NAME}.4")).exists());
    // What is kept is a contiguous run ending with the last event, oldest first.
    let targets: Vec<usize> = all(&d)
        .iter()
        .map(|e| {
            e.target.as_deref().expect("target")[1..]
                .split('@')
                .next()
                .expect("n")
                .parse()
                .expect("number")
        })
        .collect();
    assert_eq!(*targets.last().expect("some"), 199);
    for w in targets.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a line lost or out of order: {targets:?}");
    }
}

#[test]
fn concurrent_writers_never_interleave_lines() {
    let d = dir("concurrent");
    let rot = Rotation {
        max_file_bytes: 20_000,
        keep_files: 100,
    };
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = AuditLog::open(&d, rot).expect("open");
            std::thread::spawn(move || {
                for i in 0..100 {
                    let e = Event::admin("user.add", &format!("t{t}-{i}"), "ok")
                        .with_detail("x".repeat(200));
                    log.append(&[e]).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let events = all(&d);
    assert_eq!(events.len(), 400, "every line whole and kept");
}

#[test]
fn a_malformed_line_is_named_by_file_and_line_and_an_unfinished_last_line_is_skipped() {
    let d = dir("malformed");
    let log = AuditLog::open(&d, Rotation::default()).expect("open");
    log.append(&[Event::admin("user.add", "a@x.example", "ok")])
        .expect("append");
    let path = d.join(FILE_NAME);
    let mut f = open_append(&path).expect("open");
    f.write_all(b"{\"time\":\"2026").expect("partial");
    assert_eq!(all(&d).len(), 1, "a line being written is not an error");
    f.write_all(b"\n").expect("newline");
    let err = read(&d, |_| {}).expect_err("malformed");
    let msg = err.to_string();
    assert!(msg.contains("audit.jsonl:2: not an audit record"), "{msg}");
}

#[test]
fn an_oversized_line_is_refused_after_reading_no_more_than_the_bound() {
    let d = dir("oversized");
    std::fs::write(d.join(FILE_NAME), vec![b'x'; MAX_LINE * 4]).expect("write");
    let msg = read(&d, |_| {}).expect_err("oversized").to_string();
    assert!(
        msg.contains(&format!("longer than {MAX_LINE} bytes")),
        "{msg}"
    );
}

#[test]
fn installed_log_receives_recorded_events_through_the_writer_thread() {
    let d = dir("installed");
    install(AuditLog::open(&d, Rotation::default()).expect("open"));
    record(Event::agent(
        "agent.connected",
        "agent-7",
        Some("127.0.0.1".parse().expect("ip")),
        "ok",
    ));
    // The writer thread appends asynchronously: wait for the line, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if all(&d)
            .iter()
            .any(|e| e.agent.as_deref() == Some("agent-7"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not written");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    *SINK.write().unwrap_or_else(|p| p.into_inner()) = None;
}
