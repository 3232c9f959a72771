//! The audit log against a real `causeway serve`: sign-ins through the page are recorded
//! with user, client address, application, method and outcome; `causeway audit` filters
//! them; and the password typed appears in no audit file.

mod common;

use std::time::{Duration, Instant};

use common::endpoint::{alert, Browser};
use common::federation::{endpoint_with_user, sign_in_from, USER};

/// `causeway audit <args> --json` lines, waiting (bounded) until `pred` holds for them:
/// the endpoint's writer thread appends shortly after the sign-in answered.
fn audit_until(
    ep: &common::endpoint::Endpoint,
    args: &[&str],
    pred: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut a = vec!["audit", "--json"];
        a.extend_from_slice(args);
        let lines: Vec<String> = ep.cli(&a, None).lines().map(str::to_owned).collect();
        if pred(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "audit {args:?} never matched: {lines:#?}\n{}",
            ep.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sign_ins_are_audited_with_who_where_what_and_how_and_never_the_password() {
    let (ep, pw) = endpoint_with_user("audit-signin", "");
    let start = format!("{}/demo/app1/", ep.url);

    // A wrong password first, then the right one.
    let b = Browser::new(&ep.dir.join("wrong"));
    let (_, _, page, _) = b.follow(&ep.url, &start);
    let wrong = format!("{pw}-wrong");
    let (_, _, page) = b.sign_in(&ep.url, &page, USER, &wrong);
    assert!(
        alert(&page).is_some(),
        "a wrong password is refused: {page}"
    );
    let b = Browser::new(&ep.dir.join("right"));
    sign_in_from(&ep, &b, &start, USER, &pw);

    let lines = audit_until(
        &ep,
        &["--user", &USER.to_uppercase(), "--kind", "signin"],
        |l| l.len() >= 2,
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, outcome) in lines.iter().zip(["invalid_credentials", "success"]) {
        for want in [
            "\"kind\":\"signin\"".to_owned(),
            "\"action\":\"password\"".to_owned(),
            format!("\"outcome\":\"{outcome}\""),
            format!("\"user\":\"{USER}\""),
            "\"client\":\"127.0.0.1\"".to_owned(),
            "\"method\":\"hash_sync\"".to_owned(),
            "/demo/app1".to_owned(),
        ] {
            assert!(line.contains(&want), "{want} in {line}");
        }
    }
    // The filters: another user, another app, another kind, a window in the past.
    assert!(audit_until(&ep, &["--user", "nobody@cloud.causeway.test"], |_| true).is_empty());
    assert!(audit_until(&ep, &["--app", "urn:other"], |_| true).is_empty());
    assert!(audit_until(&ep, &["--kind", "sync"], |_| true).is_empty());
    assert!(audit_until(&ep, &["--until", "2020-01-01T00:00:00Z"], |_| true).is_empty());
    assert_eq!(
        audit_until(&ep, &["--since", "-1h", "--kind", "signin"], |_| true).len(),
        2
    );
    // People read text: one line per event, the fields named.
    let text = ep.cli(&["audit", "--user", USER, "--kind", "signin"], None);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.contains(&format!("user={USER}")) && text.contains("method=hash_sync"),
        "{text}"
    );

    // No audit file holds either password, in any form.
    for f in std::fs::read_dir(ep.data().join("audit")).expect("audit dir") {
        let p = f.expect("entry").path();
        let content = std::fs::read(&p).expect("read");
        let content = String::from_utf8_lossy(&content);
        for secret in [&pw, &wrong] {
            assert!(
                !content.contains(secret.as_str()),
                "{} holds a password",
                p.display()
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ep.data().join("audit/audit.jsonl"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "audit.jsonl is private: {mode:o}");
    }
}

#[test]
fn a_bad_time_is_refused_with_the_forms_it_takes() {
    let (ep, _) = endpoint_with_user("audit-badtime", "");
    let out = std::process::Command::new(common::endpoint::bin())
        .args(["audit", "--since", "yesterday", "--data-dir"])
        .arg(ep.data())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--since") && err.contains("RFC 3339") && err.contains("-2h"),
        "{err}"
    );
}

#[test]
fn admin_changes_are_audited_with_who_and_how_they_ended_and_never_the_token() {
    let (ep, pw) = endpoint_with_user("audit-admin", "");
    ep.cli(&["users", "disable", USER], None);
    let token = ep.cli(&["certs", "token", "--for", "agent", "--ttl", "10m"], None);
    // A refused change is recorded too, with why.
    let refused = std::process::Command::new(common::endpoint::bin())
        .args([
            "users",
            "enable",
            "nobody@cloud.causeway.test",
            "--data-dir",
        ])
        .arg(ep.data())
        .output()
        .expect("run");
    assert!(!refused.status.success());

    let lines = audit_until(&ep, &["--kind", "admin"], |l| l.len() >= 4);
    let find = |action: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("\"action\":\"{action}\"")))
            .unwrap_or_else(|| panic!("{action} audited: {lines:#?}"))
    };
    let add = find("user.add");
    assert!(add.contains("\"outcome\":\"ok\"") && add.contains(&format!("\"target\":\"{USER}\"")));
    assert!(add.contains("\"actor\":"), "who acted: {add}");
    assert!(find("user.disable").contains("\"outcome\":\"ok\""));
    let t = find("certs.token");
    assert!(t.contains("agent enrollment token, valid 600s"), "{t}");
    let failed = find("user.enable");
    assert!(
        failed.contains("\"outcome\":\"failed\"") && failed.contains("nobody@cloud.causeway.test"),
        "{failed}"
    );
    // Listing is not a change.
    ep.cli(&["users", "list"], None);
    assert_eq!(
        audit_until(&ep, &["--kind", "admin"], |_| true).len(),
        lines.len()
    );

    let all = std::fs::read_to_string(ep.data().join("audit/audit.jsonl")).expect("audit");
    assert!(
        !all.contains(token.trim()),
        "the enrollment token is in the audit log"
    );
    assert!(!all.contains(&pw), "the password is in the audit log");
}
