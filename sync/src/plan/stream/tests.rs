use super::*;
use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, Values};
use crate::config::SyncConfig;
use crate::plan::tests::{acknowledge, NO_LIMIT};
use crate::plan::{plan, Plan};
use std::path::Path;

use causeway_testkit::TempDir;

fn setup(tag: &str, extra: &str) -> (TempDir, ConnectorSpace, Connector) {
    let d = TempDir::new(&format!("stream-{tag}"));
    let space = ConnectorSpace::open(&d.path().join("space.sqlite")).expect("open");
    let text = format!(
        "[sync]\nstate_dir = \"s\"\nendpoints = [\"https://idp\"]\n[[connector]]\nname = \"c\"\nkind = \"ad\"\nservers = [\"ldaps://dc\"]\nca_file = \"ca.pem\"\nbind_dn = \"CN=s,DC=corp\"\nbind_password_env = \"X\"\nbase_dn = \"DC=corp\"\n{extra}\n"
    );
    let c = SyncConfig::parse(&text, Path::new("s.toml"))
        .expect("valid")
        .connectors
        .remove(0);
    (d, space, c)
}

fn g(n: u32) -> Guid {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[4..8].copy_from_slice(&n.to_be_bytes());
    Guid::from_bytes(&b).expect("16 bytes")
}

fn v(s: &[&[u8]]) -> Values {
    Values {
        values: s.iter().map(|x| x.to_vec()).collect(),
        ..Values::default()
    }
}

fn obj(n: u32, dn: &str, attrs: &[(&str, Values)]) -> Entry {
    Entry {
        guid: g(n),
        sid: None,
        dn: dn.into(),
        deleted: false,
        attrs: attrs
            .iter()
            .map(|(k, x)| ((*k).to_owned(), x.clone()))
            .collect(),
    }
}

fn user(n: u32, dn: &str, upn: &str, dept: &str) -> Entry {
    obj(
        n,
        dn,
        &[
            ("objectclass", v(&[b"top", b"person", b"user"])),
            ("userprincipalname", v(&[upn.as_bytes()])),
            ("department", v(&[dept.as_bytes()])),
            ("useraccountcontrol", v(&[b"512"])),
        ],
    )
}

fn with(mut e: Entry, attr: &str, values: &[&[u8]]) -> Entry {
    e.attrs.insert(attr.into(), v(values));
    e
}

fn group(n: u32, dn: &str, members: &[&str]) -> Entry {
    let m: Vec<&[u8]> = members.iter().map(|m| m.as_bytes()).collect();
    obj(n, dn, &[("objectclass", v(&[b"group"])), ("member", v(&m))])
}

fn r(n: u32) -> String {
    format!("<GUID={}>;CN=x{n},DC=corp", g(n))
}

/// Every change the streaming path hands its sink, as one list (additions and updates in
/// GUID order, then deletions).
fn streamed(
    space: &ConnectorSpace,
    c: &Connector,
    t: DeleteThreshold,
    approved: &BTreeSet<Guid>,
) -> (Vec<Change>, Summary) {
    let mut out = Vec::new();
    let summary = plan_streaming(space, c, t, approved, |ch| {
        out.push(ch);
        Ok::<(), String>(())
    })
    .expect("plan");
    (out, summary)
}

fn step_one() -> Vec<Entry> {
    vec![
        user(1, "CN=u1,OU=Staff,DC=corp", "u1@corp", "Sales"),
        user(2, "CN=u2,OU=Staff,DC=corp", "u2@corp", "Sales"),
        with(
            user(3, "CN=u3,OU=Staff,DC=corp", "u3@corp", "Sales"),
            "manager",
            &[b"cn=U1,ou=staff,DC=corp"],
        ),
        with(
            user(4, "CN=u4,OU=Staff,DC=corp", "u4@corp", "Sales"),
            "manager",
            &[r(2).as_bytes()],
        ),
        user(5, "CN=u5,OU=Staff,DC=corp", "u5@corp", "Sales"),
        user(6, "CN=u6,OU=Staff,DC=corp", "u6@corp", "HR"),
        // Its anchor is its consistency GUID, which sorts apart from its objectGUID.
        with(
            user(7, "CN=u7,OU=Staff,DC=corp", "u7@corp", "HR"),
            "ms-ds-consistencyguid",
            &[g(0x7000_0000).as_bytes()],
        ),
        with(
            user(8, "CN=u8,OU=Staff,DC=corp", "dup@corp", "HR"),
            "mail",
            &[b"m8@corp"],
        ),
        with(
            user(9, "CN=u9,OU=Staff,DC=corp", "DUP@corp", "HR"),
            "mail",
            &[b"shared@corp"],
        ),
        with(
            user(10, "CN=u10,OU=Staff,DC=corp", "u10@corp", "HR"),
            "mail",
            &[b"Shared@corp"],
        ),
        user(11, "CN=u11,OU=Staff,DC=corp", "u11@corp", "HR"),
        user(16, "CN=t16,OU=Temps,OU=Staff,DC=corp", "t16@corp", "Sales"),
        obj(
            17,
            "CN=contact,OU=Staff,DC=corp",
            &[
                ("objectclass", v(&[b"contact"])),
                ("mail", v(&[b"contact@else"])),
            ],
        ),
        obj(
            18,
            "CN=box,OU=Staff,DC=corp",
            &[("objectclass", v(&[b"container"]))],
        ),
        group(
            20,
            "CN=cloud,OU=Staff,DC=corp",
            &[&r(1), "cn=U2,ou=staff,dc=corp", &r(21), "CN=nobody,DC=corp"],
        ),
        group(
            21,
            "CN=inner,OU=Staff,DC=corp",
            &[
                &r(7),
                &r(20),
                "CN=u8,OU=Staff,DC=corp",
                "CN=u9,OU=Staff,DC=corp",
            ],
        ),
    ]
}

fn step_two() -> Vec<Entry> {
    let mut tomb = user(
        1,
        "CN=u1\\0ADEL:x,CN=Deleted Objects,DC=corp",
        "u1@corp",
        "Sales",
    );
    tomb.deleted = true;
    vec![
        tomb,
        // Moved into the excluded OU; a newcomer takes its old DN, which cloud names.
        user(2, "CN=u2,OU=Temps,OU=Staff,DC=corp", "u2@corp", "Sales"),
        user(14, "CN=u2,OU=Staff,DC=corp", "u14@corp", "Sales"),
        user(3, "CN=u3-renamed,OU=Staff,DC=corp", "u3@corp", "Sales"),
        obj(
            4,
            "CN=u4,OU=Staff,DC=corp",
            &[("objectclass", v(&[b"top", b"container"]))],
        ),
        user(5, "CN=u5,OU=Staff,DC=corp", "u5@corp", "Contractors"),
        // Exported before, unmappable now: kept, not deleted.
        with(
            user(6, "CN=u6,OU=Staff,DC=corp", "u6@corp", "HR"),
            "userprincipalname",
            &[b"\xff\xfe"],
        ),
        // A newcomer claims an exported UPN; one shares u9's DN but leaves the filter.
        user(12, "CN=u12,OU=Staff,DC=corp", "Dup@Corp", "HR"),
        user(15, "CN=u9,OU=Staff,DC=corp", "u15@corp", "Contractors"),
        group(
            21,
            "CN=inner,OU=Staff,DC=corp",
            &[&r(20), "CN=u8,OU=Staff,DC=corp", "CN=u9,OU=Staff,DC=corp"],
        ),
        // Not UTF-8 from the start: never exported.
        with(
            user(19, "CN=u19,OU=Staff,DC=corp", "u19@corp", "HR"),
            "displayname",
            &[b"\xc3"],
        ),
    ]
}

fn sorted(mut v: Vec<Change>) -> Vec<Change> {
    v.sort_by_key(|c| match c {
        Change::Add { anchor, .. } | Change::Update { anchor, .. } => (0, *anchor),
        Change::Delete { anchor, .. } => (1, *anchor),
    });
    v
}

#[test]
fn streaming_agrees_with_the_old_planner_on_scope_member_of_quarantine_and_tombstones() {
    let configs = [
        ("plain", ""),
        (
            "scoped",
            "exclude_ous = [\"OU=Temps,OU=Staff,DC=corp\"]\nfilter = \"(!(department=Contractors))\"",
        ),
        ("memberof", "member_of = \"CN=cloud,OU=Staff,DC=corp\""),
        (
            "both",
            "member_of = \"cn=Cloud,OU=Staff,DC=corp\"\ninclude_ous = [\"OU=Staff,DC=corp\"]\nfilter = \"(!(department=Contractors))\"",
        ),
    ];
    let thresholds = [
        NO_LIMIT,
        DeleteThreshold {
            count: 1,
            percent: 0,
        },
        DeleteThreshold {
            count: 0,
            percent: 10,
        },
    ];
    for (tag, extra) in configs {
        let (_d, space, c) = setup(tag, extra);
        for (step, page) in [step_one(), step_two(), Vec::new()].into_iter().enumerate() {
            space
                .merge_page("c", &page, &Cookie::default())
                .expect("merge");
            for t in thresholds {
                let old = oracle::old_plan(&space, &c, t).expect("old plan");
                let new = plan(&space, &c, t).expect("plan");
                assert_eq!(
                    new, old,
                    "{tag}, step {step}, {t:?}:\nnew:\n{new}\nold:\n{old}"
                );
                let (changes, summary) = streamed(&space, &c, t, &BTreeSet::new());
                assert_eq!(summary.verdict, old.verdict, "{tag}, step {step}");
                assert_eq!(
                    (summary.errors, summary.quarantined, summary.exported_before),
                    (
                        old.errors.clone(),
                        old.quarantined.clone(),
                        old.exported_before
                    )
                );
                if old.verdict == Verdict::Go {
                    assert_eq!(
                        sorted(changes),
                        sorted(old.changes.clone()),
                        "{tag}, step {step}"
                    );
                    let (a, u, d) = old.counts();
                    assert_eq!((summary.adds, summary.updates, summary.deletes), (a, u, d));
                } else {
                    assert!(changes.is_empty(), "a stopped plan emits nothing");
                }
            }
            let done = plan(&space, &c, NO_LIMIT).expect("plan");
            if step == 1 {
                // The fixture exercises what it claims to.
                let (_, _, d) = done.counts();
                assert!(d >= 2, "{tag}: {done}");
                assert!(!done.errors.is_empty(), "{tag}: {done}");
                if !extra.contains("member_of") {
                    assert!(!done.quarantined.is_empty(), "{tag}: {done}");
                }
            }
            acknowledge(&space, &done);
        }
    }
}

#[test]
fn a_stopped_plan_emits_nothing_until_every_deletion_is_approved() {
    let (_d, space, c) = setup("stop", "");
    let users: Vec<Entry> = (1..=5)
        .map(|n| user(n, &format!("CN=u{n},DC=corp"), &format!("u{n}@corp"), "S"))
        .collect();
    space
        .merge_page("c", &users, &Cookie::default())
        .expect("merge");
    acknowledge(&space, &plan(&space, &c, NO_LIMIT).expect("plan"));
    let tombs: Vec<Entry> = (1..=3)
        .map(|n| {
            let mut u = user(n, &format!("CN=u{n}\\0ADEL:x,DC=corp"), "x@corp", "S");
            u.deleted = true;
            u
        })
        .chain([user(9, "CN=new,DC=corp", "new@corp", "S")])
        .collect();
    space
        .merge_page("c", &tombs, &Cookie::default())
        .expect("merge");
    let two = DeleteThreshold {
        count: 2,
        percent: 0,
    };
    let stop = Verdict::Stop {
        deletes: 3,
        limit: "delete_threshold = 2".into(),
    };
    let (emitted, s) = streamed(&space, &c, two, &BTreeSet::new());
    assert_eq!(
        (emitted.len(), &s.verdict),
        (0, &stop),
        "not even the addition"
    );
    let some: BTreeSet<Guid> = [g(1), g(2)].into();
    let (emitted, s) = streamed(&space, &c, two, &some);
    assert_eq!(
        (emitted.len(), &s.verdict),
        (0, &stop),
        "one is not approved"
    );
    let all: BTreeSet<Guid> = [g(1), g(2), g(3), g(4)].into();
    let (emitted, s) = streamed(&space, &c, two, &all);
    assert_eq!(s.verdict, Verdict::Go);
    assert_eq!(
        emitted
            .iter()
            .map(|c| match c {
                Change::Add { anchor, .. } => ('+', *anchor),
                Change::Update { anchor, .. } => ('~', *anchor),
                Change::Delete { anchor, .. } => ('-', *anchor),
            })
            .collect::<Vec<_>>(),
        vec![('+', g(9)), ('-', g(1)), ('-', g(2)), ('-', g(3))]
    );
    // A stopped planner still lists what it would delete, and refuses its changes.
    let stopped = Planner::new(&space, &c, two, &BTreeSet::new())
        .expect("plan")
        .into_changes()
        .expect_err("stopped");
    assert_eq!(
        (stopped.deletes, stopped.limit.as_str()),
        (3, "delete_threshold = 2")
    );
    assert_eq!(stopped.planner.deletions(), [g(1), g(2), g(3)].into());
    let listed = stopped.planner.listed_deletions(2).expect("list");
    assert!(
        matches!(&listed[..], [Change::Delete { was, why, .. }, Change::Delete { .. }]
            if was.dn == "CN=u1,DC=corp" && why == "deleted in the source"),
        "{listed:?}"
    );
}

#[test]
fn batches_hold_at_most_n_and_resume_where_the_last_one_stopped() {
    let (_d, space, c) = setup("batches", "");
    let users: Vec<Entry> = (1..=300)
        .map(|n| user(n, &format!("CN=u{n},DC=corp"), &format!("u{n}@corp"), "S"))
        .collect();
    space
        .merge_page("c", &users, &Cookie::default())
        .expect("merge");
    let first = plan(&space, &c, NO_LIMIT).expect("plan");
    // Half of them exported already (one of those changed since), a few gone.
    let half = Plan {
        changes: first.changes[..150].to_vec(),
        ..first
    };
    acknowledge(&space, &half);
    let gone: Vec<Entry> = (1..=4)
        .map(|n| {
            let mut u = user(n, &format!("CN=u{n}\\0ADEL:x,DC=corp"), "x@corp", "S");
            u.deleted = true;
            u
        })
        .chain([user(50, "CN=u50,DC=corp", "u50@corp", "Other")])
        .collect();
    space
        .merge_page("c", &gone, &Cookie::default())
        .expect("merge");
    let mut whole = Planner::new(&space, &c, NO_LIMIT, &BTreeSet::new())
        .expect("plan")
        .review();
    let all = whole.next_batch(10_000).expect("batch");
    assert_eq!(all.len(), 150 + 1 + 4);
    assert!(whole.next_batch(10).expect("batch").is_empty());
    let mut stream = Planner::new(&space, &c, NO_LIMIT, &BTreeSet::new())
        .expect("plan")
        .into_changes()
        .expect("go");
    let mut seen = Vec::new();
    loop {
        let b = stream.next_batch(7).expect("batch");
        if b.is_empty() {
            break;
        }
        assert!(b.len() <= 7);
        let full = b.len() == 7;
        seen.extend(b);
        if !full {
            assert_eq!(seen.len(), all.len(), "only the last batch is short");
        }
    }
    assert_eq!(seen, all, "batches resume exactly where the last stopped");
    assert_eq!(stream.progress(), (296 + 4, 296 + 4));
    let s = stream.into_summary();
    assert_eq!((s.adds, s.updates, s.deletes), (150, 1, 4));
}

/// Peak RSS of planning N synthetic users through the streaming path (no-op sink), for the
/// issue's flat-memory check. Not part of the suite: run one size per process, e.g.
/// `CAUSEWAY_PLAN_RSS_N=20000 cargo test --release -p causeway-sync --lib plan_rss -- --ignored --nocapture`
/// (`CAUSEWAY_PLAN_RSS_OLD=1` measures the old, all-in-memory planner instead).
#[test]
#[ignore = "a measurement, not a test: run by hand with --release"]
#[allow(clippy::print_stdout)] // the figures are its output
fn plan_rss() {
    let n: u32 = std::env::var("CAUSEWAY_PLAN_RSS_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let old = std::env::var_os("CAUSEWAY_PLAN_RSS_OLD").is_some();
    let (_d, space, c) = setup(&format!("rss-{n}"), "");
    for start in (0..n).step_by(500) {
        let page: Vec<Entry> = (start..(start + 500).min(n))
            .map(|i| {
                let name = format!("User {i:06}");
                let mut u = user(
                    i + 1,
                    &format!("CN={name},OU=Staff,DC=corp"),
                    &format!("user{i:06}@corp.example"),
                    "Engineering",
                );
                for (a, val) in [
                    ("mail", format!("user{i:06}@corp.example")),
                    ("displayname", name.clone()),
                    ("givenname", "User".into()),
                    ("sn", format!("{i:06}")),
                    ("employeeid", format!("E{i:08}")),
                    ("proxyaddresses", format!("SMTP:user{i:06}@corp.example")),
                    ("manager", format!("<GUID={}>;CN=boss,DC=corp", g(1))),
                ] {
                    u.attrs.insert(a.into(), v(&[val.as_bytes()]));
                }
                u
            })
            .collect();
        space
            .merge_page("c", &page, &Cookie::default())
            .expect("merge");
    }
    // Peak RSS from here on: reset the high-water mark to the current RSS.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let status = || {
        std::fs::read_to_string("/proc/self/status")
            .expect("status")
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let before = status();
    let planned = if old {
        oracle::old_plan(&space, &c, NO_LIMIT)
            .expect("plan")
            .counts()
            .0
    } else {
        let mut adds = 0u64;
        plan_streaming(&space, &c, NO_LIMIT, &BTreeSet::new(), |_| {
            adds += 1;
            Ok::<(), String>(())
        })
        .expect("plan");
        adds
    };
    assert_eq!(planned, u64::from(n));
    println!(
        "plan_rss n={n} old={old}: before [{before}] after [{}]",
        status()
    );
}
