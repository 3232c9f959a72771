use super::*;
use crate::ad::dirsync::Cookie;
use crate::ad::entry::Values;
use crate::config::{DeleteThreshold, SyncConfig};
use crate::plan::{plan, Change};
use std::path::Path;

use causeway_testkit::TempDir;

fn setup(tag: &str) -> (TempDir, ConnectorSpace, Connector) {
    let d = TempDir::new(&format!("early-{tag}"));
    let space = ConnectorSpace::open(&d.path().join("space.sqlite")).expect("open");
    let text = "[sync]\nstate_dir = \"s\"\nendpoints = [\"https://idp\"]\n[[connector]]\nname = \"c\"\nkind = \"ad\"\nservers = [\"ldaps://dc\"]\nca_file = \"ca.pem\"\nbind_dn = \"CN=s,DC=corp\"\nbind_password_env = \"X\"\nbase_dn = \"DC=corp\"\n";
    let c = SyncConfig::parse(text, Path::new("s.toml"))
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

fn entry(n: u8, dn: &str, attrs: &[(&str, Values)]) -> Entry {
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

fn user(n: u8, upn: &str, extra: &[(&str, Values)]) -> Entry {
    let mut attrs = vec![
        ("objectclass", v(&["top", "person", "user"])),
        ("userprincipalname", v(&[upn])),
        ("useraccountcontrol", v(&["512"])),
    ];
    attrs.extend(extra.iter().cloned());
    entry(n, &format!("CN=u{n},DC=corp"), &attrs)
}

fn picker(c: &Connector) -> Picker<'_> {
    Picker {
        c,
        mapping: None,
        claims: HashSet::new(),
        anchors: HashSet::new(),
        early: HashMap::new(),
        queue: VecDeque::new(),
        left: 0,
    }
}

const NO_LIMIT: DeleteThreshold = DeleteThreshold {
    count: 0,
    percent: 0,
};

/// Merges `page` as the import does, offers it, and records the queued users as the
/// endpoint's acknowledgement would: what the plan after the import then starts from.
fn import_page(space: &ConnectorSpace, p: &mut Picker<'_>, page: &[Entry], cap: usize) {
    space
        .merge_page("c", page, &Cookie::default())
        .expect("merge");
    p.offer(space, page, cap).expect("offer");
    let acked: Vec<(Guid, Option<String>)> =
        p.queue.drain(..).map(|o| (o.anchor, o.recorded)).collect();
    space.record_exported("c", &acked).expect("record");
}

#[test]
fn users_go_early_in_the_form_the_plan_exports_and_the_rest_is_left_to_it() {
    let (_d, space, c) = setup("form");
    let mut p = picker(&c);
    let boss = user(1, "boss@corp", &[]);
    // Her manager was read before her, so it is sent with her.
    let alice = user(
        2,
        "alice@corp",
        &[("manager", v(&[&format!("<GUID={}>;CN=u1,DC=corp", g(1))]))],
    );
    let group = entry(
        3,
        "CN=g,DC=corp",
        &[
            ("objectclass", v(&["group"])),
            ("member", v(&[&format!("<GUID={}>;CN=u2,DC=corp", g(2))])),
            ("mail", v(&["team@corp"])),
        ],
    );
    // Carol's manager (dave) is read after her: she goes without, and the plan adds it.
    let carol = user(
        4,
        "carol@corp",
        &[("manager", v(&[&format!("<GUID={}>;CN=u5,DC=corp", g(5))]))],
    );
    let dave = user(5, "dave@corp", &[]);
    // Claims the group's mail, read before him: left to the plan's quarantine.
    let erin = user(6, "erin@corp", &[("mail", v(&["TEAM@corp"]))]);
    import_page(&space, &mut p, &[boss, alice, group], 100);
    import_page(&space, &mut p, &[carol, dave, erin], 100);
    let sent: HashSet<Guid> = p.early.keys().copied().collect();
    assert_eq!(sent, HashSet::from([g(1), g(2), g(4), g(5)]));

    let after = plan(&space, &c, NO_LIMIT).expect("plan");
    let mut changed: Vec<(Guid, &str)> = after
        .changes
        .iter()
        .map(|ch| match ch {
            Change::Add { anchor, .. } => (*anchor, "add"),
            Change::Update { anchor, .. } => (*anchor, "update"),
            Change::Delete { anchor, .. } => (*anchor, "delete"),
        })
        .collect();
    changed.sort();
    // Boss, alice and dave are exactly as the plan would export them: nothing resent.
    assert_eq!(changed, vec![(g(3), "add"), (g(4), "update")]);
    assert_eq!(after.quarantined.len(), 1, "{:?}", after.quarantined);
    assert_eq!(after.quarantined[0].anchor, g(6));
    let Some(Change::Update { diff, .. }) = after
        .changes
        .iter()
        .find(|ch| matches!(ch, Change::Update { anchor, .. } if *anchor == g(4)))
    else {
        panic!("carol updated");
    };
    assert!(format!("{diff:?}").contains("manager"), "{diff:?}");
}

#[test]
fn the_queue_is_bounded_and_what_has_no_room_waits_for_the_plan() {
    let (_d, space, c) = setup("cap");
    let mut p = picker(&c);
    let page: Vec<Entry> = (1..=5)
        .map(|n| user(n, &format!("u{n}@corp"), &[]))
        .collect();
    space
        .merge_page("c", &page, &Cookie::default())
        .expect("merge");
    p.offer(&space, &page, 2).expect("offer");
    assert_eq!(p.queue.len(), 2);
    assert_eq!(p.left, 3);
    let acked: Vec<(Guid, Option<String>)> =
        p.queue.drain(..).map(|o| (o.anchor, o.recorded)).collect();
    space.record_exported("c", &acked).expect("record");
    let after = plan(&space, &c, NO_LIMIT).expect("plan");
    let added: Vec<Guid> = after
        .changes
        .iter()
        .filter_map(|ch| match ch {
            Change::Add { anchor, .. } => Some(*anchor),
            _ => None,
        })
        .collect();
    assert_eq!(added, vec![g(3), g(4), g(5)]);
}

#[test]
fn only_a_first_import_of_an_empty_space_without_member_of_exports_early() {
    let (_d, space, c) = setup("applies");
    assert!(applies(&c, &space).expect("read"));
    let mut scoped = c.clone();
    scoped.member_of = Some("CN=g,DC=corp".into());
    assert!(!applies(&scoped, &space).expect("read"), "member_of");
    space
        .merge_page("c", &[user(1, "a@corp", &[])], &Cookie::default())
        .expect("merge");
    assert!(
        !applies(&c, &space).expect("read"),
        "the space holds objects"
    );
}
