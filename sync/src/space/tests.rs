use super::*;

use causeway_testkit::TempDir;

fn dir(tag: &str) -> TempDir {
    TempDir::new(&format!("space-{tag}"))
}

fn g(n: u8) -> Guid {
    Guid::from_bytes(&[n; 16]).expect("16 bytes")
}

fn vals(v: &[&str]) -> Values {
    Values {
        values: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
        ..Values::default()
    }
}

fn entry(n: u8, dn: &str, attrs: &[(&str, Values)], deleted: bool) -> Entry {
    Entry {
        guid: g(n),
        sid: None,
        dn: dn.into(),
        deleted,
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

fn cookie(b: &[u8]) -> Cookie {
    Cookie::new(b.to_vec()).expect("short")
}

#[test]
fn a_delta_merges_into_the_whole_object_with_its_cookie() {
    let d = dir("merge");
    let path = d.path().join("space.sqlite");
    let s = ConnectorSpace::open(&path).expect("open");
    assert!(s.cookie("corp").expect("cookie").is_empty());
    let full = [
        entry(
            1,
            "CN=alice,DC=corp",
            &[
                ("displayname", vals(&["Alice"])),
                ("description", vals(&["old"])),
            ],
            false,
        ),
        entry(
            2,
            "CN=g,DC=corp",
            &[("member", vals(&["CN=alice,DC=corp"]))],
            false,
        ),
    ];
    assert_eq!(
        s.merge_page("corp", &full, &cookie(b"c1")).expect("merge"),
        Merged {
            added: 2,
            changed: 0,
            deleted: 0
        }
    );
    // A delta: description changed, displayName untouched, a member added and one removed,
    // alice renamed.
    let member = Values {
        added: vec![b"CN=bob,DC=corp".to_vec()],
        removed: vec![b"CN=alice,DC=corp".to_vec()],
        ..Values::default()
    };
    let delta = [
        entry(
            1,
            "CN=alice2,DC=corp",
            &[("description", vals(&["new"]))],
            false,
        ),
        entry(2, "CN=g,DC=corp", &[("member", member)], false),
    ];
    assert_eq!(
        s.merge_page("corp", &delta, &cookie(b"c2")).expect("merge"),
        Merged {
            added: 0,
            changed: 2,
            deleted: 0
        }
    );
    drop(s);
    // What a restart sees is exactly what was committed.
    let s = ConnectorSpace::open(&path).expect("reopen");
    assert_eq!(s.cookie("corp").expect("cookie").as_bytes(), b"c2");
    let a = s.object("corp", &g(1)).expect("read").expect("held");
    assert_eq!(
        a.dn, "CN=alice2,DC=corp",
        "the anchor keeps the object across a rename"
    );
    assert_eq!(
        a.attrs["displayname"],
        vals(&["Alice"]),
        "untouched attributes stay"
    );
    assert_eq!(a.attrs["description"], vals(&["new"]));
    let grp = s.object("corp", &g(2)).expect("read").expect("held");
    assert_eq!(grp.attrs["member"], vals(&["CN=bob,DC=corp"]));
    assert_eq!(s.len("corp").expect("len"), 2);
    assert!(
        s.is_empty("other").expect("len"),
        "connectors are kept apart"
    );
}

#[test]
fn cleared_attributes_tombstones_and_reanimation() {
    let d = dir("tomb");
    let s = ConnectorSpace::open(&d.path().join("space.sqlite")).expect("open");
    s.merge_page(
        "c",
        &[entry(1, "CN=a,DC=x", &[("mail", vals(&["a@x"]))], false)],
        &cookie(b"1"),
    )
    .expect("merge");
    let m = s
        .merge_page(
            "c",
            &[entry(
                1,
                "CN=a\\0ADEL:x,CN=Deleted Objects,DC=x",
                &[("mail", Values::default())],
                true,
            )],
            &cookie(b"2"),
        )
        .expect("merge");
    assert_eq!(
        m,
        Merged {
            added: 0,
            changed: 0,
            deleted: 1
        }
    );
    let a = s.object("c", &g(1)).expect("read").expect("held");
    assert!(
        a.deleted && !a.attrs.contains_key("mail"),
        "a value-less attribute was cleared"
    );
    // The same anchor comes back (reanimated): the same object, changed.
    let m = s
        .merge_page("c", &[entry(1, "CN=a,DC=x", &[], false)], &cookie(b"3"))
        .expect("merge");
    assert_eq!(
        m,
        Merged {
            added: 0,
            changed: 1,
            deleted: 0
        }
    );
    // A tombstone of an object never held is not a deletion.
    let m = s
        .merge_page(
            "c",
            &[entry(9, "CN=z\\0ADEL:z,CN=Deleted Objects,DC=x", &[], true)],
            &cookie(b"4"),
        )
        .expect("merge");
    assert_eq!(m, Merged::default());
}

#[test]
fn the_file_is_private_and_a_loose_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir("perm");
    let path = d.path().join("space.sqlite");
    drop(ConnectorSpace::open(&path).expect("open"));
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = ConnectorSpace::open(&path).expect_err("loose");
    assert!(e.to_string().contains("mode 644"), "{e}");
}

#[test]
fn objects_stream_in_guid_order_a_page_at_a_time_and_exported_bodies_are_read_one_by_one() {
    let d = dir("stream");
    let s = ConnectorSpace::open(&d.path().join("space.sqlite")).expect("open");
    let page = [
        entry(3, "CN=Carol,DC=x", &[("mail", vals(&["c@x"]))], false),
        entry(1, "CN=alice,DC=x", &[], false),
        entry(2, "CN=gone\\0ADEL:2,DC=x", &[], true),
        entry(4, "CN=ALICE,DC=x", &[], false),
    ];
    s.merge_page("c", &page, &cookie(b"1")).expect("merge");
    s.merge_page("other", &page[..1], &cookie(b"1"))
        .expect("merge");

    let mut seen = Vec::new();
    s.for_each_object("c", |h| {
        seen.push((h.guid, h.deleted));
        Ok::<(), SpaceError>(())
    })
    .expect("stream");
    assert_eq!(
        seen,
        vec![(g(1), false), (g(2), true), (g(3), false), (g(4), false)],
        "GUID order, tombstones included, one connector only"
    );
    assert_eq!(
        s.objects("c").expect("all"),
        s.objects_after("c", None, 100).expect("page")
    );
    // The callback's error stops the walk and comes back as it is.
    let mut calls = 0;
    let e = s
        .for_each_object("c", |_| {
            calls += 1;
            Err(SpaceError {
                action: "stop",
                detail: "by the caller".into(),
            })
        })
        .expect_err("stopped");
    assert_eq!((calls, e.action), (1, "stop"));

    let first = s.objects_after("c", None, 2).expect("page");
    let rest = s.objects_after("c", Some(&g(2)), 2).expect("page");
    let guids = |v: &[Held]| v.iter().map(|h| h.guid).collect::<Vec<_>>();
    assert_eq!(
        (guids(&first), guids(&rest)),
        (vec![g(1), g(2)], vec![g(3), g(4)])
    );
    assert_eq!(rest[0].attrs["mail"], vals(&["c@x"]), "whole objects");
    assert!(s
        .objects_after("c", Some(&g(4)), 2)
        .expect("page")
        .is_empty());

    assert_eq!(
        s.guids_by_dn("c", "cn=alice,dc=X").expect("by dn"),
        vec![g(1), g(4)],
        "DNs compare ASCII case-insensitively"
    );
    assert!(s
        .guids_by_dn("c", "CN=nobody,DC=x")
        .expect("by dn")
        .is_empty());

    s.record_exported(
        "c",
        &[(g(3), Some("{\"b\":3}".into())), (g(1), Some("{}".into()))],
    )
    .expect("record");
    assert_eq!(
        s.exported_body("c", &g(3)).expect("body").as_deref(),
        Some("{\"b\":3}")
    );
    assert_eq!(s.exported_body("c", &g(2)).expect("body"), None);
    assert_eq!(s.exported_body("other", &g(3)).expect("body"), None);
    assert_eq!(s.exported_anchors("c").expect("anchors"), vec![g(1), g(3)]);
}

#[test]
fn a_linked_value_is_matched_by_its_guid_after_the_target_was_renamed() {
    let mut held = BTreeMap::from([(
        "member".to_string(),
        vals(&["<GUID=0a0b>;CN=alice,DC=corp", "<GUID=0c0d>;CN=bob,DC=corp"]),
    )]);
    // alice was renamed, then removed: AD sends her value with her new DN.
    let delta = BTreeMap::from([(
        "member".to_string(),
        Values {
            removed: vec![b"<GUID=0A0B>;CN=alice-renamed,DC=corp".to_vec()],
            added: vec![b"<GUID=0c0d>;CN=bob-moved,DC=corp".to_vec()],
            ..Values::default()
        },
    )]);
    merge(&mut held, &delta);
    assert_eq!(
        held["member"].values,
        vec![b"<GUID=0c0d>;CN=bob-moved,DC=corp".to_vec()],
        "alice's value went although its DN changed; bob's was replaced, not doubled"
    );
}

/// Password hashes a search returned (slapd gives `*` readers sambaNTPassword and
/// userPassword) never reach the file: not by a pass, not by an on-demand read.
#[test]
fn password_hashes_are_never_written_to_the_file() {
    let d = dir("secrets");
    let path = d.path().join("space.sqlite");
    let space = ConnectorSpace::open(&path).expect("open");
    let nt = "9172D29A2718FB749F12DEC01E082C92";
    let e = entry(
        1,
        "uid=alice,dc=x",
        &[
            ("mail", vals(&["alice@x"])),
            ("sambantpassword", vals(&[nt])),
            ("userpassword", vals(&["{SSHA}c2VjcmV0LXNhbHQ="])),
            ("userpassword;binary", vals(&["{SSHA}c2VjcmV0LXNhbHQ="])),
        ],
        false,
    );
    space
        .merge_page("c", std::slice::from_ref(&e), &cookie(b"1"))
        .expect("merge");
    space
        .put_object(
            "c",
            &entry(2, "uid=b,dc=x", &[("sambantpassword", vals(&[nt]))], false),
        )
        .expect("put");
    let held = space.object("c", &g(1)).expect("read").expect("held");
    assert_eq!(held.attrs.keys().collect::<Vec<_>>(), vec!["mail"]);
    drop(space);
    let mut bytes = std::fs::read(&path).expect("file");
    for extra in ["space.sqlite-wal", "space.sqlite-shm"] {
        bytes.extend(std::fs::read(d.path().join(extra)).unwrap_or_default());
    }
    // Values are kept in base64: look for both forms.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = String::from_utf8_lossy(&bytes);
    for needle in [
        nt.to_owned(),
        b64.encode(nt),
        b64.encode("{SSHA}c2VjcmV0LXNhbHQ="),
    ] {
        assert!(!text.contains(&needle), "{needle} is in the file");
    }
}
