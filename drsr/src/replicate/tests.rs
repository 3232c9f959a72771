//! The driver over a scripted [`Call`] that answers with the lab captures (and, where a
//! capture cannot show a case, with replies built by the test encoder in `msg::tests`).

// In tests a panic is the failure report, and every fixture is fixed data.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;

use super::*;
use crate::msg::tests::support::{
    decode_request, encode_reply, fixture, impacket, samba_like_table,
};
use crate::msg::{guid_to_string, Attr, GetNcReply, ReplObject};
use crate::ndr::Writer;

/// Answers each call with the next scripted reply and records the requests.
#[derive(Debug)]
struct Script {
    replies: VecDeque<(u16, Vec<u8>)>,
    requests: Vec<(u16, Vec<u8>)>,
}

impl Script {
    fn new(replies: Vec<(u16, Vec<u8>)>) -> Self {
        Self {
            replies: replies.into(),
            requests: Vec::new(),
        }
    }
}

impl Call for Script {
    fn call(
        &mut self,
        op: u16,
        stub: &[u8],
    ) -> impl std::future::Future<Output = Result<Vec<u8>, CallError>> + Send {
        self.requests.push((op, stub.to_vec()));
        let next = self.replies.pop_front();
        async move {
            let (expected, reply) = next.expect("a call the script did not expect");
            assert_eq!(op, expected, "opnum");
            Ok(reply)
        }
    }
}

/// The lab domain NC's GUID (as the captured page names it).
const NC_GUID: &str = "df3c8d8c577a2e43bf0a1d3848c7eefc";

fn nc_guid() -> [u8; 16] {
    hex::decode(NC_GUID).unwrap().try_into().unwrap()
}

/// An `IDL_DRSCrackNames` reply with one item.
fn crack_reply(status: u32, name: &str) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(1);
    w.u32(1);
    w.pointer(true);
    w.u32(1);
    w.pointer(true);
    w.conformance(1);
    w.u32(status);
    w.pointer(true);
    w.pointer(true);
    w.wstring("lab.causeway.test");
    w.wstring(name);
    w.u32(0);
    w.into_bytes()
}

fn opening() -> Vec<(u16, Vec<u8>)> {
    vec![
        (opnum::BIND, fixture("bind.rsp")),
        (opnum::DC_INFO, fixture("dcinfo.rsp")),
        (
            opnum::CRACK_NAMES,
            crack_reply(0, &format!("{{{}}}", guid_to_string(&nc_guid()))),
        ),
    ]
}

async fn open(more: Vec<(u16, Vec<u8>)>) -> Session<Script> {
    let mut replies = opening();
    replies.extend(more);
    Session::open(
        Script::new(replies),
        "lab.causeway.test",
        Options::default(),
    )
    .await
    .unwrap()
}

fn sid(rid: u32) -> Vec<u8> {
    let mut s = vec![
        1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0,
    ];
    s.extend(rid.to_le_bytes());
    s
}

fn object(i: u8, sid: Vec<u8>, attrs: Vec<(&str, Vec<u8>)>) -> ReplObject {
    let t = samba_like_table();
    ReplObject {
        name: DsName {
            guid: [i; 16],
            sid,
            dn: format!("CN=o{i},DC=lab,DC=causeway,DC=test"),
        },
        flags: 1,
        attrs: attrs
            .into_iter()
            .map(|(oid, v)| Attr {
                attid: t.attid_of(oid).unwrap(),
                values: vec![v],
            })
            .collect(),
        is_nc_prefix: false,
        parent_guid: None,
    }
}

fn page(objects: Vec<ReplObject>, more: bool, to: i64) -> Vec<u8> {
    encode_reply(&GetNcReply {
        dsa_src: [1; 16],
        invocation_src: [7; 16],
        nc: None,
        from: UsnVector::default(),
        to: UsnVector {
            high_obj_update: to,
            reserved: 0,
            high_prop_update: if more { 0 } else { to },
        },
        utd: (!more).then(|| {
            vec![Cursor {
                dsa: [7; 16],
                usn: to,
            }]
        }),
        prefix: samba_like_table(),
        extended_ret: 0,
        num_objects: objects.len() as u32,
        objects,
        more_data: more,
        num_values: 0,
        drs_error: 0,
        status: 0,
    })
}

const SAM_TYPE: &str = "1.2.840.113556.1.4.302";
const PWD_LAST_SET: &str = "1.2.840.113556.1.4.96";
const IS_DELETED: &str = "1.2.840.113556.1.2.48";

#[tokio::test]
async fn open_binds_finds_the_dsa_and_resolves_the_nc() {
    let s = open(vec![]).await;
    assert_eq!(s.naming_context().guid, nc_guid());
    assert_eq!(s.naming_context().dn, "DC=lab,DC=causeway,DC=test");
    let first_getnc = decode_request(&fixture("getnc_full_first.req")).unwrap();
    assert_eq!(s.dsa_guid(), first_getnc.dsa_dest);
    // It asked the DC to crack the NC's DN into a GUID.
    let (op, crack) = &s.call.requests[2];
    assert_eq!(*op, opnum::CRACK_NAMES);
    let dn: Vec<u8> = "DC=lab,DC=causeway,DC=test"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(crack.windows(dn.len()).any(|w| w == dn));
}

#[tokio::test]
async fn a_full_pass_passes_the_watermark_back_and_yields_the_captured_users() {
    let mut s = open(vec![
        (
            opnum::GET_NC_CHANGES,
            page(
                vec![object(
                    1,
                    sid(1500),
                    vec![(SAM_TYPE, 0x3000_0000u32.to_le_bytes().to_vec())],
                )],
                true,
                100,
            ),
        ),
        (opnum::GET_NC_CHANGES, fixture("getnc_full_last.rsp")),
    ])
    .await;
    let mut pass = s.full();
    let first = pass.next_page().await.unwrap().unwrap();
    assert!(!first.last);
    assert_eq!(first.users.len(), 1);
    assert_eq!(first.users[0].rid, 1500);
    assert!(pass.watermark().is_none());
    let last = pass.next_page().await.unwrap().unwrap();
    assert!(last.last);
    assert!(pass.next_page().await.unwrap().is_none());
    let wm = pass.watermark().unwrap().clone();

    // What impacket's decoder sees in the same page: objects with a SID that carry a
    // password or account attribute are the users (the capture's partial attribute set
    // has no sAMAccountType).
    let expected = impacket("getnc_full_last");
    let want: Vec<&serde_json::Value> = expected["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            !o["dsname_sid_hex"].as_str().unwrap().is_empty()
                && [
                    "unicodePwd",
                    "ntPwdHistory",
                    "pwdLastSet",
                    "userAccountControl",
                    "accountExpires",
                ]
                .iter()
                .any(|k| o.get(*k).is_some())
        })
        .collect();
    assert_eq!(last.users.len(), want.len());
    assert_eq!(last.users.len() + last.skipped, 147);
    for (u, e) in last.users.iter().zip(want) {
        assert_eq!(u.dn, e["dn"].as_str().unwrap());
        assert_eq!(hex::encode(u.guid), e["guid_hex"].as_str().unwrap());
        let sid_hex = e["dsname_sid_hex"].as_str().unwrap();
        assert_eq!(hex::encode(&u.sid), sid_hex);
        let sid = hex::decode(sid_hex).unwrap();
        assert_eq!(
            u.rid,
            u32::from_le_bytes(sid[sid.len() - 4..].try_into().unwrap())
        );
        assert_eq!(
            u.unicode_pwd.as_ref().map(|v| hex::encode(v.as_bytes())),
            e.get("unicodePwd").map(|v| v.as_str().unwrap().to_owned())
        );
        assert_eq!(
            u.nt_pwd_history.as_ref().map(|v| hex::encode(v.as_bytes())),
            e.get("ntPwdHistory")
                .map(|v| v.as_str().unwrap().to_owned())
        );
        let sam = e.get("sAMAccountName").map(|v| {
            let b = hex::decode(v.as_str().unwrap()).unwrap();
            String::from_utf16(
                &b.chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>(),
            )
            .unwrap()
        });
        assert_eq!(u.sam, sam);
    }
    let kim = last
        .users
        .iter()
        .find(|u| u.sam.as_deref() == Some("kim-domainlock"))
        .unwrap();
    assert!(kim.unicode_pwd.is_some() && kim.user_account_control == Some(512));

    // Requests: the first names no invocation id and starts from USN 0; the second
    // carries the first reply's watermark and invocation id.
    let reqs: Vec<_> = s.call.requests[3..]
        .iter()
        .map(|(_, b)| decode_request(b).unwrap())
        .collect();
    assert_eq!(reqs[0].invocation_src, [0; 16]);
    assert_eq!(reqs[0].from, UsnVector::default());
    assert_eq!(
        reqs[0].flags,
        DRS_INIT_SYNC | DRS_WRIT_REP | DRS_NEVER_SYNCED
    );
    assert_eq!(reqs[0].nc.guid, nc_guid());
    assert_eq!(reqs[0].utd, None);
    assert_eq!(reqs[1].from.high_obj_update, 100);
    assert_eq!(reqs[1].invocation_src, [7; 16]);
    assert_eq!(reqs[1].prefix.entries.last().unwrap().prefix[0], 0xff);

    // The watermark is the last reply's.
    let reply = crate::msg::decode_getnc_reply(&fixture("getnc_full_last.rsp")).unwrap();
    assert_eq!(wm.highwater, reply.to);
    assert_eq!(wm.invocation_id, reply.invocation_src);
    assert_eq!(Some(wm.utd.clone()), reply.utd);

    // And an incremental pass starts from it.
    s.call.replies.push_back((
        opnum::GET_NC_CHANGES,
        fixture("getnc_incremental_nochange.rsp"),
    ));
    let mut inc = s.incremental(&wm);
    let p = inc.next_page().await.unwrap().unwrap();
    assert!(p.last && p.users.is_empty());
    let req = decode_request(&s.call.requests.last().unwrap().1).unwrap();
    assert_eq!(req.from, wm.highwater);
    assert_eq!(req.utd.as_ref(), Some(&wm.utd));
    assert_eq!(req.invocation_src, wm.invocation_id);
    assert_eq!(req.flags, DRS_WRIT_REP);
}

#[tokio::test]
async fn a_dc_that_does_not_advance_is_stopped() {
    let mut s = open(vec![(opnum::GET_NC_CHANGES, page(vec![], true, 0))]).await;
    let mut pass = s.full();
    assert!(matches!(
        pass.next_page().await,
        Err(ReplicateError::NoProgress { pages: 1 })
    ));
}

#[tokio::test]
async fn a_dc_that_restarts_every_page_is_stopped() {
    // What the capture showed when impacket named the DSA GUID as the source invocation
    // id: every page the same objects and the same watermark, fMoreData forever.
    let stuck = || {
        (
            opnum::GET_NC_CHANGES,
            page(vec![object(1, sid(1500), vec![])], true, 0),
        )
    };
    let mut s = open((0..=MAX_STALLED_PAGES).map(|_| stuck()).collect()).await;
    let mut pass = s.full();
    for _ in 0..MAX_STALLED_PAGES {
        assert!(pass.next_page().await.unwrap().is_some());
    }
    assert!(matches!(
        pass.next_page().await,
        Err(ReplicateError::NoProgress { pages }) if pages == MAX_STALLED_PAGES + 1
    ));
}

/// The driver's futures can move between threads when the transport's can.
#[allow(dead_code)]
fn futures_are_send(s: &'static mut Session<Script>) {
    fn is_send<T: Send>(_: T) {}
    is_send(async move {
        let mut p = s.full();
        let _ = p.next_page().await;
    });
}

#[tokio::test]
async fn access_denied_names_the_two_rights() {
    // The captured refusal (ERROR_DS_DRA_ACCESS_DENIED), as an answer to a full pass.
    let mut s = open(vec![(
        opnum::GET_NC_CHANGES,
        fixture("getnc_exop_secrets_alice.rsp"),
    )])
    .await;
    let err = s.full().next_page().await.unwrap_err();
    assert!(matches!(err, ReplicateError::Refused { code: 0x2105, .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("Replicating Directory Changes\"")
            && msg.contains("Replicating Directory Changes All"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unknown_nc_says_so() {
    // The captured answer to a GetNCChanges for an NC DN that does not exist.
    let mut s = open(vec![(opnum::GET_NC_CHANGES, fixture("getnc_bad_dn.rsp"))]).await;
    let err = s.full().next_page().await.unwrap_err();
    assert!(matches!(
        err,
        ReplicateError::Refused {
            code: ERROR_DS_DRA_BAD_NC,
            ..
        }
    ));
    assert!(err.to_string().contains("no such naming context"), "{err}");
}

#[tokio::test]
async fn refresh_one_replicates_alice_with_exop_repl_obj() {
    let alice_guid: [u8; 16] = hex::decode("fbc30186cabf834882762fe1bbc8b566")
        .unwrap()
        .try_into()
        .unwrap();
    let mut s = open(vec![(
        opnum::GET_NC_CHANGES,
        fixture("getnc_exop_obj_alice.rsp"),
    )])
    .await;
    let u = s.refresh_one(alice_guid).await.unwrap().unwrap();
    assert_eq!(u.sam.as_deref(), Some("alice"));
    assert_eq!(u.upn.as_deref(), Some("alice@lab.causeway.test"));
    assert_eq!(u.rid, 1102);
    assert_eq!(u.guid, alice_guid);
    let e = &impacket("getnc_exop_obj_alice")["objects"][0];
    assert_eq!(
        hex::encode(u.unicode_pwd.unwrap().as_bytes()),
        e["unicodePwd"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(u.nt_pwd_history.unwrap().as_bytes()),
        e["ntPwdHistory"].as_str().unwrap()
    );
    assert_eq!(u.user_account_control, Some(512));
    assert_eq!(u.account_expires, Some(i64::MAX));
    let req = decode_request(&s.call.requests.last().unwrap().1).unwrap();
    assert_eq!(req.extended_op, 6);
    assert_eq!(req.nc.guid, alice_guid);
    assert_eq!(req.max_objects, 1);
}

#[tokio::test]
async fn only_users_with_a_sid_come_out() {
    let objects = vec![
        // A user (full pass): kept.
        object(
            1,
            sid(1101),
            vec![(SAM_TYPE, 0x3000_0000u32.to_le_bytes().to_vec())],
        ),
        // A group and a computer: skipped.
        object(
            2,
            sid(1102),
            vec![(SAM_TYPE, 0x1000_0000u32.to_le_bytes().to_vec())],
        ),
        object(
            3,
            sid(1103),
            vec![
                (SAM_TYPE, 0x3000_0001u32.to_le_bytes().to_vec()),
                (PWD_LAST_SET, 5i64.to_le_bytes().to_vec()),
            ],
        ),
        // An OU (no SID): skipped.
        object(4, vec![], vec![(PWD_LAST_SET, 5i64.to_le_bytes().to_vec())]),
        // An incremental change with only pwdLastSet: kept.
        object(
            5,
            sid(1105),
            vec![(PWD_LAST_SET, 0i64.to_le_bytes().to_vec())],
        ),
        // A tombstone: kept, deleted.
        object(
            6,
            sid(1106),
            vec![(IS_DELETED, 1u32.to_le_bytes().to_vec())],
        ),
        // A SID and nothing else (a group's unrelated change): skipped.
        object(7, sid(1107), vec![]),
    ];
    let mut s = open(vec![(opnum::GET_NC_CHANGES, page(objects, false, 9))]).await;
    let p = s.full().next_page().await.unwrap().unwrap();
    let rids: Vec<u32> = p.users.iter().map(|u| u.rid).collect();
    assert_eq!(rids, [1101, 1105, 1106]);
    assert_eq!(p.skipped, 4);
    assert_eq!(p.users[1].pwd_last_set, Some(0));
    assert!(p.users[2].deleted && !p.users[0].deleted);
}

#[tokio::test]
async fn a_malformed_value_is_an_error_naming_the_attribute() {
    let objects = vec![object(1, sid(1101), vec![(PWD_LAST_SET, vec![1, 2, 3])])];
    let mut s = open(vec![(opnum::GET_NC_CHANGES, page(objects, false, 9))]).await;
    let err = s.full().next_page().await.unwrap_err();
    assert!(
        matches!(
            err,
            ReplicateError::BadValue {
                attr: KnownAttr::PwdLastSet,
                len: 3,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_different_replication_epoch_binds_again_with_it() {
    let mut bind = fixture("bind.rsp");
    // ppextServer: [ptr][max][cb][rgb…]; dwReplEpoch is rgb[24..28].
    bind[36..40].copy_from_slice(&5u32.to_le_bytes());
    let mut unbind = vec![0u8; 20];
    unbind.extend(0u32.to_le_bytes());
    let mut replies = vec![(opnum::BIND, bind), (opnum::UNBIND, unbind)];
    replies.extend(opening());
    let s = Session::open(
        Script::new(replies),
        "lab.causeway.test",
        Options::default(),
    )
    .await
    .unwrap();
    let (op, second_bind) = &s.call.requests[2];
    assert_eq!(*op, opnum::BIND);
    // Request: [ptr][guid][ptr][max][cb][rgb…]; the epoch sits at rgb[24..28].
    assert_eq!(second_bind[56..60], 5u32.to_le_bytes());
    assert_eq!(s.server_extensions().repl_epoch, 0);
}

#[tokio::test]
async fn an_unresolvable_nc_is_named() {
    let replies = vec![
        (opnum::BIND, fixture("bind.rsp")),
        (opnum::DC_INFO, fixture("dcinfo.rsp")),
        (opnum::CRACK_NAMES, crack_reply(2, "")),
    ];
    let err = Session::open(
        Script::new(replies),
        "lab.causeway.test",
        Options::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ReplicateError::NameNotResolved { status: 2, .. }),
        "{err:?}"
    );
    let err = Session::open(Script::new(vec![]), "lab causeway", Options::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ReplicateError::BadDomain(_)));
}

#[test]
fn watermark_serialises_and_reads_back() {
    let wm = Watermark {
        invocation_id: [7; 16],
        highwater: UsnVector {
            high_obj_update: 15646,
            reserved: 0,
            high_prop_update: 15646,
        },
        utd: vec![Cursor {
            dsa: [7; 16],
            usn: 15646,
        }],
    };
    let text = serde_json::to_string(&wm).unwrap();
    assert_eq!(serde_json::from_str::<Watermark>(&text).unwrap(), wm);
}

#[test]
fn replicated_user_debug_hides_the_encrypted_values() {
    let u = ReplicatedUser {
        guid: [0; 16],
        sid: sid(1),
        rid: 1,
        dn: String::new(),
        sam: None,
        upn: None,
        pwd_last_set: None,
        user_account_control: None,
        account_expires: None,
        unicode_pwd: Some(EncryptedValue::new(vec![0xcd; 36])),
        nt_pwd_history: None,
        deleted: false,
    };
    let d = format!("{u:?}");
    assert!(
        d.contains("EncryptedValue(36 bytes)") && !d.contains("205"),
        "{d}"
    );
}
