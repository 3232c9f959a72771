use super::*;
use crate::ad::dirsync::Cookie;
use crate::ad::entry::{Entry, Values};
use crate::config::SyncConfig;
use std::path::Path;

use causeway_testkit::TempDir;

fn setup(tag: &str, extra: &str) -> (TempDir, ConnectorSpace, Connector) {
    let d = TempDir::new(&format!("plan-{tag}"));
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

fn g(n: u8) -> Guid {
    Guid::from_bytes(&[n; 16]).expect("16 bytes")
}

fn v(s: &[&str]) -> Values {
    Values {
        values: s.iter().map(|x| x.as_bytes().to_vec()).collect(),
        ..Values::default()
    }
}

fn user(n: u8, dn: &str, upn: &str, dept: &str) -> Entry {
    Entry {
        guid: g(n),
        sid: None,
        dn: dn.into(),
        deleted: false,
        attrs: [
            ("objectclass", v(&["top", "person", "user"])),
            ("userprincipalname", v(&[upn])),
            ("department", v(&[dept])),
            ("useraccountcontrol", v(&["512"])),
        ]
        .into_iter()
        .map(|(k, x)| (k.to_owned(), x))
        .collect(),
    }
}

fn group(n: u8, dn: &str, members: &[&str]) -> Entry {
    Entry {
        guid: g(n),
        sid: None,
        dn: dn.into(),
        deleted: false,
        attrs: [("objectclass", v(&["group"])), ("member", v(members))]
            .into_iter()
            .map(|(k, x)| (k.to_owned(), x))
            .collect(),
    }
}

/// Records a plan's changes as the endpoint acknowledged them (the streaming planner's
/// tests use it too).
pub(super) fn acknowledge(space: &ConnectorSpace, p: &Plan) {
    let acks: Vec<(Guid, Option<String>)> = p
        .changes
        .iter()
        .map(|c| match c {
            Change::Add { anchor, object } | Change::Update { anchor, object, .. } => {
                (*anchor, Some(body(object)))
            }
            Change::Delete { anchor, .. } => (*anchor, None),
        })
        .collect();
    space.record_exported("c", &acks).expect("record");
}

pub(super) const NO_LIMIT: DeleteThreshold = DeleteThreshold {
    count: 0,
    percent: 0,
};

#[test]
fn adds_then_attribute_level_updates_then_nothing() {
    let (_d, space, c) = setup("flow", "");
    space
        .merge_page(
            "c",
            &[
                user(1, "CN=a,OU=Staff,DC=corp", "a@corp", "Sales"),
                user(2, "CN=b,OU=Staff,DC=corp", "b@corp", "HR"),
                group(
                    3,
                    "CN=g,DC=corp",
                    &[
                        "<GUID=01010101-0101-0101-0101-010101010101>;CN=a,OU=Staff,DC=corp",
                        "CN=b,OU=Staff,DC=corp",
                        "CN=outside,DC=other",
                    ],
                ),
            ],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert_eq!(p.counts(), (3, 0, 0), "{p}");
    let Some(Change::Add { object, .. }) = p
        .changes
        .iter()
        .find(|c| matches!(c, Change::Add { anchor, .. } if *anchor == g(3)))
    else {
        panic!("the group is added: {p}");
    };
    assert_eq!(
        object.attrs["members"],
        vec![g(1).to_string(), g(2).to_string()],
        "members by anchor (extended form by GUID, plain form by DN); unknown ones left out"
    );
    acknowledge(&space, &p);

    space
        .merge_page(
            "c",
            &[user(1, "CN=a2,OU=Staff,DC=corp", "a@corp", "Marketing")],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert_eq!(
        p.counts(),
        (0, 1, 0),
        "a member named by GUID survives its rename (AD does not re-send the group): {p}"
    );
    let Change::Update { diff, .. } = &p.changes[0] else {
        panic!("{p}")
    };
    assert_eq!(
        diff,
        &vec![
            (
                "dn".to_owned(),
                vec!["CN=a,OU=Staff,DC=corp".to_owned()],
                vec!["CN=a2,OU=Staff,DC=corp".to_owned()]
            ),
            (
                "department".to_owned(),
                vec!["Sales".to_owned()],
                vec!["Marketing".to_owned()]
            ),
        ],
        "a rename is an update of the same anchor, with before and after"
    );
    acknowledge(&space, &p);
    assert_eq!(
        plan(&space, &c, NO_LIMIT).expect("plan").counts(),
        (0, 0, 0)
    );
}

#[test]
fn leaving_scope_and_tombstones_are_deletions_and_the_threshold_stops_them() {
    let (_d, space, c) = setup(
        "scope",
        "include_ous = [\"OU=Staff,DC=corp\"]\nfilter = \"(!(department=Contractors))\"",
    );
    let staff: Vec<Entry> = (1..=10)
        .map(|n| {
            user(
                n,
                &format!("CN=u{n},OU=Staff,DC=corp"),
                &format!("u{n}@corp"),
                "Sales",
            )
        })
        .collect();
    space
        .merge_page("c", &staff, &Cookie::default())
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert_eq!(p.counts(), (10, 0, 0));
    acknowledge(&space, &p);

    let mut tomb = user(
        1,
        "CN=u1\\0ADEL:x,CN=Deleted Objects,DC=corp",
        "u1@corp",
        "Sales",
    );
    tomb.deleted = true;
    space
        .merge_page(
            "c",
            &[
                tomb,
                user(2, "CN=u2,OU=Elsewhere,DC=corp", "u2@corp", "Sales"),
                user(3, "CN=u3,OU=Staff,DC=corp", "u3@corp", "Contractors"),
            ],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert_eq!(p.counts(), (0, 0, 3), "{p}");
    let why: Vec<&str> = p
        .changes
        .iter()
        .map(|c| match c {
            Change::Delete { why, .. } => why.as_str(),
            _ => "",
        })
        .collect();
    assert_eq!(
        why,
        vec![
            "deleted in the source",
            "out of scope: under none of include_ous",
            "out of scope: does not match filter"
        ]
    );
    // The same plan under a threshold of 2 deletions, and of 20 %: stopped, listing them.
    let stopped = plan(
        &space,
        &c,
        DeleteThreshold {
            count: 2,
            percent: 0,
        },
    )
    .expect("plan");
    assert_eq!(
        stopped.verdict,
        Verdict::Stop {
            deletes: 3,
            limit: "delete_threshold = 2".into()
        }
    );
    assert!(
        stopped.to_string().contains("STOPPED: 3 deletions exceed"),
        "{stopped}"
    );
    assert!(
        stopped
            .to_string()
            .contains("- user CN=u2,OU=Staff,DC=corp"),
        "a deletion names the object as it was exported: {stopped}"
    );
    let pct = plan(
        &space,
        &c,
        DeleteThreshold {
            count: 0,
            percent: 20,
        },
    )
    .expect("plan");
    assert_eq!(
        pct.verdict,
        Verdict::Stop {
            deletes: 3,
            limit: "delete_threshold_percent = 20 of 10".into()
        },
        "3 of 10 is 30 %"
    );
    let pct = plan(
        &space,
        &c,
        DeleteThreshold {
            count: 0,
            percent: 30,
        },
    )
    .expect("plan");
    assert_eq!(pct.verdict, Verdict::Go, "exactly 30 % is allowed");
}

#[test]
fn member_of_scoping_follows_nested_groups_and_survives_a_cycle() {
    let (_d, space, c) = setup("memberof", "member_of = \"CN=cloud,DC=corp\"");
    let r = |n: u8| format!("<GUID={}>;CN=x{n},DC=corp", g(n));
    space
        .merge_page(
            "c",
            &[
                user(1, "CN=direct,DC=corp", "d@corp", "Sales"),
                user(2, "CN=nested,DC=corp", "n@corp", "Sales"),
                user(3, "CN=outsider,DC=corp", "o@corp", "Sales"),
                group(10, "CN=cloud,DC=corp", &[&r(1), "CN=inner,DC=corp"]),
                // inner contains nested and, in a cycle, cloud itself.
                group(11, "CN=inner,DC=corp", &[&r(2), &r(10)]),
            ],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    let added: Vec<String> = p
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Add { object, .. } => Some(object.dn.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        vec![
            "CN=direct,DC=corp",
            "CN=nested,DC=corp",
            "CN=cloud,DC=corp",
            "CN=inner,DC=corp"
        ],
        "{p}"
    );
}

#[test]
fn a_duplicate_upn_is_quarantined_naming_both_and_clears_by_itself() {
    let (_d, space, c) = setup("dup", "");
    space
        .merge_page(
            "c",
            &[user(1, "CN=first,DC=corp", "same@corp", "Sales")],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    acknowledge(&space, &p);
    // A second object claims the same UPN (a different case): the exported one keeps it,
    // even though the newcomer's anchor sorts first.
    let mut second = user(0, "CN=second,DC=corp", "SAME@corp", "HR");
    second.guid = g(0);
    space
        .merge_page("c", &[second], &Cookie::default())
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert_eq!(
        p.counts(),
        (0, 0, 0),
        "nothing exported for the newcomer, nothing deleted: {p}"
    );
    assert_eq!(p.quarantined.len(), 1, "{p}");
    let q = &p.quarantined[0];
    assert_eq!(
        (q.dn.as_str(), q.holder_dn.as_str(), q.attribute),
        ("CN=second,DC=corp", "CN=first,DC=corp", "upn")
    );
    assert!(
        p.to_string().contains("! quarantined CN=second,DC=corp (00000000-0000-0000-0000-000000000000): upn \"same@corp\" is already claimed by CN=first,DC=corp"),
        "{p}"
    );
    // Fixed in the source: the newcomer gets its own UPN and is exported by itself.
    space
        .merge_page(
            "c",
            &[user(0, "CN=second,DC=corp", "second@corp", "HR")],
            &Cookie::default(),
        )
        .expect("merge");
    let p = plan(&space, &c, NO_LIMIT).expect("plan");
    assert!(p.quarantined.is_empty(), "{p}");
    assert_eq!(p.counts(), (1, 0, 0), "{p}");
}
