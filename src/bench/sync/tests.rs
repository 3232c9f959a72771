//! Unit tests of the raw baseline's pure parts and of the RSS sampler on a real child, plus
//! one measurement against the lab (ignored by default: it needs the bench users).

use std::process::Command;
use std::sync::Arc;

use ldap3::controls::PagedResults;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::*;

fn control(val: Option<Vec<u8>>) -> Control {
    Control(
        None,
        RawControl {
            ctype: causeway_sync::ad::paged::PAGED_RESULTS_OID.into(),
            crit: false,
            val,
        },
    )
}

/// A response value as a DC sends it (the same SEQUENCE as the request).
fn response(size: i32, cookie: &[u8]) -> Vec<u8> {
    RawControl::from(PagedResults {
        size,
        cookie: cookie.to_vec(),
    })
    .val
    .expect("a value")
}

#[test]
fn the_rate_is_objects_over_elapsed_time_and_none_without_time() {
    let mut r = RawSearch {
        objects: 20_000,
        values: 0,
        pages: 20,
        elapsed: Duration::from_millis(2500),
    };
    assert_eq!(r.objects_per_second(), Some(8000.0));
    r.elapsed = Duration::ZERO;
    assert_eq!(r.objects_per_second(), None);
}

#[test]
fn the_baseline_asks_for_what_sync_asks_for() {
    let a = sync_attributes();
    assert_eq!(a, Mapping::default().attributes());
    for must in ["objectGUID", "userPrincipalName", "isDeleted", "member"] {
        assert!(
            a.iter().any(|x| x.eq_ignore_ascii_case(must)),
            "{must} missing from {a:?}"
        );
    }
}

#[test]
fn a_cookie_continues_and_an_empty_cookie_ends_the_search() {
    let next = next_cookie(&[control(Some(response(0, b"page-2")))]).expect("valid");
    assert_eq!(next.as_deref(), Some(&b"page-2"[..]));
    assert_eq!(
        next_cookie(&[control(Some(response(20_000, b"")))]).expect("valid"),
        None
    );
    // A long (two-byte length) cookie reads as well.
    let long = vec![7u8; 300];
    assert_eq!(
        next_cookie(&[control(Some(response(5, &long)))]).expect("valid"),
        Some(long)
    );
}

#[test]
fn a_dc_that_ignores_paging_is_an_error_not_the_last_page() {
    for (ctrls, what) in [
        (vec![], "no paged-results control"),
        (vec![control(None)], "without a value"),
    ] {
        let e = next_cookie(&ctrls).expect_err(what);
        assert!(e.to_string().contains(what), "{e}");
    }
}

#[test]
fn malformed_paging_values_are_refused_without_panicking() {
    let good = response(1, b"abc");
    let mut trailing = good.clone();
    trailing.push(0);
    let mut wrong_tag = good.clone();
    wrong_tag[0] = 0x31;
    let huge = response(1, &vec![0u8; causeway_sync::ad::paged::MAX_COOKIE + 1]);
    for (val, what) in [
        (vec![], "truncated before a tag"),
        (good[..good.len() - 1].to_vec(), "bytes left"),
        (trailing, "not exactly one SEQUENCE"),
        (wrong_tag, "not exactly one SEQUENCE"),
        (vec![0x30, 0x03, 0x04, 0x01, 0x00], "not an INTEGER"),
        (vec![0x30, 0x80, 0x00, 0x00], "indefinite"),
        (huge, "at most"),
    ] {
        let e = causeway_sync::ad::paged::parse_value(&val).expect_err(what);
        assert!(e.contains(what), "{what}: {e}");
    }
}

#[test]
fn vm_rss_is_read_from_its_line_in_kib() {
    let status = "Name:\tcauseway\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t4\n";
    assert_eq!(parse_vm_rss_kib(status), Some(51_234));
    // A zombie's status has no VmRSS; a unit other than kB is not guessed at.
    assert_eq!(parse_vm_rss_kib("Name:\tx\nState:\tZ (zombie)\n"), None);
    assert_eq!(parse_vm_rss_kib("VmRSS:\t 12 MB\n"), None);
}

#[test]
fn the_sampler_reads_a_live_child_and_refuses_a_gone_one() {
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let mut s = RssSampler::new(child.id());
    let kib = s.sample("running").expect("a live child has a VmRSS");
    assert!(kib > 0);
    child.kill().expect("kill our own child");
    child.wait().expect("reap it");
    assert!(s.sample("gone").is_err(), "a reaped child has no RSS");
    assert_eq!(s.samples(), &[("running".to_owned(), kib)]);
    assert_eq!(s.max_kib(), Some(kib));
}

/// Measurement, not a check of behaviour: the raw baseline over OU=Bench of the lab's
/// first forest as its svc-sync. Needs `sudo scripts/lab/provision-users.sh`; run with
/// `cargo nextest run --bin causeway --run-ignored only -E 'test(raw_baseline)' --no-capture`
/// (`CAUSEWAY_LAB_ENV` names another lab's lab.env; `BENCH_USERS` the count to expect).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the lab with the benchmark users (scripts/lab/provision-users.sh)"]
async fn raw_baseline_of_the_bench_ou() {
    let path = std::env::var("CAUSEWAY_LAB_ENV").unwrap_or("/tmp/causeway-lab/lab.env".into());
    let text = std::fs::read_to_string(&path).expect("lab.env readable");
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .unwrap_or_else(|| panic!("{path} has no {k}"))
            .to_owned()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(get("AD_CA_CERT")).expect("CA") {
        roots.add(c.expect("CA parses")).expect("CA accepted");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
        ldap3::LdapConnSettings::new().set_config(Arc::new(tls)),
        &get("AD_LDAPS_URL"),
    )
    .await
    .expect("connect");
    ldap3::drive!(conn);
    ldap.simple_bind(&get("AD_SVC_SYNC_DN"), &get("AD_SVC_SYNC_PASSWORD"))
        .await
        .expect("bind round trip")
        .success()
        .expect("svc-sync bind");
    let base = format!("OU=Bench,{}", get("AD_BASE_DN"));
    let attrs = sync_attributes();
    let r = raw_paged_search(
        &mut ldap,
        &base,
        &attrs,
        PAGE_SIZE,
        Duration::from_secs(120),
        Instant::now,
    )
    .await
    .expect("raw search");
    let rate = r.objects_per_second().expect("time passed");
    eprintln!(
        "raw paged search of {base}: {} objects, {} values, {} pages in {:.2} s = {rate:.0} objects/s",
        r.objects,
        r.values,
        r.pages,
        r.elapsed.as_secs_f64()
    );
    if let Ok(n) = std::env::var("BENCH_USERS") {
        let n: u64 = n.parse().expect("BENCH_USERS is a number");
        // the users and OU=Bench itself (organizationalUnit is in sync's filter)
        assert_eq!(r.objects, n + 1);
        assert!(
            r.pages >= (n + 1).div_ceil(u64::from(PAGE_SIZE)),
            "{} pages",
            r.pages
        );
    }
    let _ = ldap.unbind().await;
}
