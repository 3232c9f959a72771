//! Round trips, the lab captures (impacket 0.13.1 against Samba 4.17 as `svc-sync`, see
//! `drsr/testdata/README.md`) and hostile inputs.

// In tests a panic is the failure report, and every fixture is fixed data.
#![allow(clippy::unwrap_used)]

use super::getnc::DRS_NEVER_SYNCED;
use super::*;
use crate::ndr::{Limits, NdrError, Reader, Writer};

pub(crate) mod support;
use support::{decode_request, encode_reply, fixture, impacket, samba_like_table};

#[test]
fn oids_map_both_ways_and_match_the_well_known_attids() {
    for (oid, ber) in [
        ("1.2.840.113556.1.4.90", "2a864886f71401045a"),
        ("1.2.840.113556.1.4.656", "2a864886f71401048510"),
        ("2.5.4.0", "550400"),
        ("2.999.3", "883703"),
    ] {
        assert_eq!(hex::encode(oid_to_ber(oid).unwrap()), ber);
        assert_eq!(oid_from_ber(&hex::decode(ber).unwrap()).unwrap(), oid);
    }
    assert_eq!(oid_from_ber(&[0x2a, 0x86]), None, "unterminated arc");
    let t = samba_like_table();
    // [MS-ADA3]: unicodePwd 0x0009005A, userPrincipalName 0x00090290, isDeleted 0x00020030.
    assert_eq!(t.attid_of("1.2.840.113556.1.4.90"), Some(0x0009_005a));
    assert_eq!(t.attid_of("1.2.840.113556.1.4.656"), Some(0x0009_0290));
    assert_eq!(t.attid_of("1.2.840.113556.1.2.48"), Some(0x0002_0030));
    assert_eq!(
        oid_from_ber(&t.oid_of(0x0009_0290).unwrap()).unwrap(),
        "1.2.840.113556.1.4.656"
    );
    // An arc of 16384 or more keeps its high byte in the prefix and sets bit 15.
    let (tbl, ids) = PrefixTable::for_request(&["1.2.840.113556.1.4.20000"]).unwrap();
    assert_eq!(ids[0] & 0x8000, 0x8000);
    assert_eq!(
        oid_from_ber(&tbl.oid_of(ids[0]).unwrap()).unwrap(),
        "1.2.840.113556.1.4.20000"
    );
}

#[test]
fn request_prefix_table_ends_with_the_schema_info_entry() {
    let oids: Vec<&str> = KNOWN_ATTRS.iter().map(|(_, o)| *o).collect();
    let (t, ids) = PrefixTable::for_request(&oids).unwrap();
    let last = t.entries.last().unwrap();
    assert_eq!(last.ndx, 0);
    assert_eq!(last.prefix.len(), 21);
    assert_eq!(last.prefix[0], 0xff);
    assert!(last.prefix[1..].iter().all(|b| *b == 0));
    for (id, oid) in ids.iter().zip(&oids) {
        assert_eq!(oid_from_ber(&t.oid_of(*id).unwrap()).unwrap(), *oid);
    }
}

#[test]
fn guid_text_form_round_trips_in_wire_order() {
    // NTDSAPI_CLIENT_GUID as [MS-DRSR] 5.138 writes it.
    let g = guid_from_string("{e24d201a-4fd6-11d1-a3da-0000f875ae0d}").unwrap();
    assert_eq!(g, NTDSAPI_CLIENT_GUID);
    assert_eq!(guid_to_string(&g), "e24d201a-4fd6-11d1-a3da-0000f875ae0d");
    assert_eq!(
        guid_from_string("e24d201a-4fd6-11d1-a3da-0000f875ae0"),
        None
    );
    assert_eq!(
        guid_from_string("g24d201a-4fd6-11d1-a3da-0000f875ae0d"),
        None
    );
}

#[test]
fn dsname_round_trips() {
    let n = DsName {
        guid: [3; 16],
        sid: vec![1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0],
        dn: "CN=Ærø,DC=x".into(),
    };
    let mut w = Writer::new();
    n.write(&mut w);
    let b = w.into_bytes();
    assert_eq!(
        DsName::read(&mut Reader::new(&b, Limits::default())).unwrap(),
        n
    );
}

#[test]
fn bind_request_matches_impacket_and_reply_decodes() {
    let ours = encode_bind_request(&NTDSAPI_CLIENT_GUID, &Extensions::client(0));
    let theirs = fixture("bind.req");
    // Identical but for the referent ids (impacket picks its own).
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours[4..20], theirs[4..20]);
    assert_eq!(ours[24..], theirs[24..]);
    let reply = decode_bind_reply(&fixture("bind.rsp")).unwrap();
    assert_eq!(reply.status, 0);
    let server = reply.server.unwrap();
    assert_ne!(server.flags & bind::DRS_EXT_GETCHGREPLY_V6, 0);
    assert_eq!(server.repl_epoch, 0);
    // The handle is what the next captured request carries.
    assert_eq!(reply.handle.0, fixture("dcinfo.req")[..20]);
}

#[test]
fn dcinfo_request_matches_impacket_and_reply_gives_the_dsa_guid() {
    let handle = DrsHandle(fixture("dcinfo.req")[..20].try_into().unwrap());
    let ours = encode_dcinfo_request(&handle, "LAB");
    let theirs = fixture("dcinfo.req");
    assert_eq!(ours[..28], theirs[..28]);
    assert_eq!(ours[32..], theirs[32..]);
    let (dcs, status) = decode_dcinfo_reply(&fixture("dcinfo.rsp")).unwrap();
    assert_eq!(status, 0);
    assert_eq!(dcs.len(), 1);
    assert_eq!(
        dcs[0].dns_host_name.as_deref(),
        Some("dc1.lab.causeway.test")
    );
    assert!(dcs[0]
        .ntds_dsa_name
        .as_deref()
        .unwrap()
        .starts_with("CN=NTDS Settings,CN=DC1,"));
    // impacket sent that GUID as uuidDsaObjDest.
    let req = decode_request(&fixture("getnc_full_first.req")).unwrap();
    assert_eq!(dcs[0].ntds_dsa_guid, req.dsa_dest);
}

#[test]
fn crack_names_request_matches_impacket_and_reply_decodes() {
    let handle = DrsHandle(fixture("crack_nt4_alice.req")[..20].try_into().unwrap());
    let ours = encode_crack_request(
        &handle,
        NameFormat::Nt4Account,
        NameFormat::Fqdn1779,
        &["LAB\\alice"],
    );
    let theirs = fixture("crack_nt4_alice.req");
    assert_eq!(ours.len(), theirs.len());
    // Same bytes outside the two referent ids (offsets 52 and 60).
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if !(52..56).contains(&i) && !(60..64).contains(&i) {
            assert_eq!(a, b, "byte {i}");
        }
    }
    let (items, status) = decode_crack_reply(&fixture("crack_nt4_alice.rsp")).unwrap();
    assert_eq!(status, 0);
    assert_eq!(items[0].status, 0);
    assert_eq!(
        items[0].name.as_deref(),
        Some("CN=alice,CN=Users,DC=lab,DC=causeway,DC=test")
    );
}

#[test]
fn getnc_request_decodes_with_the_meaning_of_impacket_s() {
    let theirs = decode_request(&fixture("getnc_full_first.req")).unwrap();
    let oids: Vec<&str> = KNOWN_ATTRS.iter().map(|(_, o)| *o).collect();
    let (prefix, pas) = PrefixTable::for_request(&oids).unwrap();
    let handle = DrsHandle(fixture("getnc_full_first.req")[..20].try_into().unwrap());
    let ours = encode_getnc_request(
        &handle,
        &GetNcRequest {
            dsa_dest: theirs.dsa_dest,
            invocation_src: [0; 16],
            nc: DsName {
                guid: [0; 16],
                sid: vec![],
                dn: "DC=lab,DC=causeway,DC=test".into(),
            },
            from: UsnVector::default(),
            utd: None,
            flags: DRS_INIT_SYNC | DRS_WRIT_REP | DRS_NEVER_SYNCED,
            max_objects: 200,
            max_bytes: 0,
            extended_op: ExtendedOp::None,
            partial_attrs: pas,
            prefix,
        },
    );
    let ours = decode_request(&ours).unwrap();
    assert_eq!(ours.dsa_dest, theirs.dsa_dest);
    assert_eq!(ours.invocation_src, theirs.invocation_src);
    assert_eq!(ours.nc.dn, theirs.nc.dn);
    assert_eq!(ours.from, theirs.from);
    assert_eq!(ours.flags, theirs.flags);
    assert_eq!(ours.max_objects, theirs.max_objects);
    assert_eq!(ours.extended_op, theirs.extended_op);
    assert_eq!(ours.prefix.entries.last(), theirs.prefix.entries.last());
    // The attributes both ask for mean the same OIDs; ours drops what a hash sync does
    // not need (LM hashes, supplementalCredentials) and adds sAMAccountType and isDeleted.
    let (o, t) = (ours.pas_oids(), theirs.pas_oids());
    for oid in [
        "1.2.840.113556.1.4.90",
        "1.2.840.113556.1.4.94",
        "1.2.840.113556.1.4.96",
        "1.2.840.113556.1.4.8",
        "1.2.840.113556.1.4.159",
        "1.2.840.113556.1.4.146",
        "1.2.840.113556.1.4.221",
        "1.2.840.113556.1.4.656",
    ] {
        assert!(o.contains(oid) && t.contains(oid), "{oid}");
    }
    assert_eq!(o.len(), KNOWN_ATTRS.len());
    // Sorted ascending on the wire.
    assert!(ours.pas.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn getnc_request_with_utd_round_trips() {
    let (prefix, pas) = PrefixTable::for_request(&["1.2.840.113556.1.4.90"]).unwrap();
    let req = GetNcRequest {
        dsa_dest: [1; 16],
        invocation_src: [2; 16],
        nc: DsName {
            guid: [3; 16],
            sid: vec![],
            dn: "DC=x".into(),
        },
        from: UsnVector {
            high_obj_update: 10,
            reserved: 0,
            high_prop_update: 11,
        },
        utd: Some(vec![
            Cursor {
                dsa: [4; 16],
                usn: 12,
            },
            Cursor {
                dsa: [5; 16],
                usn: 13,
            },
        ]),
        flags: DRS_WRIT_REP,
        max_objects: 1000,
        max_bytes: 1 << 20,
        extended_op: ExtendedOp::ReplObj,
        partial_attrs: pas.clone(),
        prefix: prefix.clone(),
    };
    let d = decode_request(&encode_getnc_request(&DrsHandle([0; 20]), &req)).unwrap();
    assert_eq!(d.nc, req.nc);
    assert_eq!(d.from, req.from);
    assert_eq!(d.utd, req.utd);
    assert_eq!(d.extended_op, 6);
    assert_eq!(d.pas, pas);
    assert_eq!(d.prefix, prefix);
}

/// The attribute values of one decoded object, by name, as the impacket JSON has them.
fn values_by_name(o: &ReplObject, t: &PrefixTable) -> serde_json::Map<String, serde_json::Value> {
    let names = [
        ("1.2.840.113556.1.4.90", "unicodePwd"),
        ("1.2.840.113556.1.4.94", "ntPwdHistory"),
        ("1.2.840.113556.1.4.96", "pwdLastSet"),
        ("1.2.840.113556.1.4.8", "userAccountControl"),
        ("1.2.840.113556.1.4.159", "accountExpires"),
        ("1.2.840.113556.1.4.146", "objectSid"),
        ("1.2.840.113556.1.4.221", "sAMAccountName"),
        ("1.2.840.113556.1.4.656", "userPrincipalName"),
        ("1.2.840.113556.1.4.125", "supplementalCredentials"),
        ("1.2.840.113556.1.4.55", "dBCSPwd"),
        ("1.2.840.113556.1.4.160", "lmPwdHistory"),
    ];
    let mut m = serde_json::Map::new();
    for a in &o.attrs {
        let oid = oid_from_ber(&t.oid_of(a.attid).unwrap()).unwrap();
        if let (Some((_, n)), Some(v)) = (names.iter().find(|(x, _)| *x == oid), a.values.first()) {
            m.insert((*n).into(), hex::encode(v).into());
        }
    }
    m
}

fn assert_matches_impacket(reply: &GetNcReply, expected: &serde_json::Value) {
    let objs = expected["objects"].as_array().unwrap();
    assert_eq!(reply.objects.len(), objs.len());
    assert_eq!(
        u64::from(reply.num_objects),
        expected["num_objects"].as_u64().unwrap()
    );
    assert_eq!(
        reply.more_data,
        expected["more_data"].as_i64().unwrap() != 0
    );
    let to = &expected["usnvecTo"];
    assert_eq!(reply.to.high_obj_update, to[0].as_i64().unwrap());
    assert_eq!(reply.to.high_prop_update, to[2].as_i64().unwrap());
    for (o, e) in reply.objects.iter().zip(objs) {
        assert_eq!(o.name.dn, e["dn"].as_str().unwrap());
        assert_eq!(hex::encode(o.name.guid), e["guid_hex"].as_str().unwrap());
        assert_eq!(
            hex::encode(&o.name.sid),
            e["dsname_sid_hex"].as_str().unwrap()
        );
        let mut e = e.as_object().unwrap().clone();
        for k in ["dn", "guid_hex", "dsname_sid_hex"] {
            e.remove(k);
        }
        assert_eq!(values_by_name(o, &reply.prefix), e, "{}", o.name.dn);
    }
}

#[test]
fn captured_exop_repl_obj_reply_gives_alice_and_her_encrypted_values() {
    let reply = decode_getnc_reply(&fixture("getnc_exop_obj_alice.rsp")).unwrap();
    assert_eq!(reply.status, 0);
    assert_eq!(reply.extended_ret, 1, "EXOP_ERR_SUCCESS");
    assert_matches_impacket(&reply, &impacket("getnc_exop_obj_alice"));
    assert_eq!(
        reply.objects[0].name.dn,
        "CN=alice,CN=Users,DC=lab,DC=causeway,DC=test"
    );
}

#[test]
fn captured_last_full_page_decodes_like_impacket() {
    let reply = decode_getnc_reply(&fixture("getnc_full_last.rsp")).unwrap();
    assert_eq!(reply.status, 0);
    assert!(!reply.more_data);
    assert_matches_impacket(&reply, &impacket("getnc_full_last"));
    // The last page carries the up-to-dateness vector, with the DC's own cursor at the
    // highwater USN.
    let utd = reply.utd.as_ref().unwrap();
    assert!(utd
        .iter()
        .any(|c| c.dsa == reply.invocation_src && c.usn == reply.to.high_prop_update));
    // Samba sent linked values although none was asked for; they were read and dropped.
    assert_eq!(reply.num_values, 53);
    // Re-encoding the real page (without metadata and linked values) reads back the same.
    let again = decode_getnc_reply(&encode_reply(&reply)).unwrap();
    assert!(
        again
            == GetNcReply {
                num_values: 0,
                ..reply.clone()
            },
        "round trip differs"
    );
}

#[test]
fn captured_refusals_decode_to_their_codes() {
    // EXOP_REPL_SECRETS as a non-RODC: ERROR_DS_DRA_ACCESS_DENIED.
    let r = decode_getnc_reply(&fixture("getnc_exop_secrets_alice.rsp")).unwrap();
    assert_eq!(r.status, 0x2105);
    assert!(r.objects.is_empty());
    // An NC DN that does not exist: ERROR_DS_DRA_BAD_NC (0x20f8).
    let r = decode_getnc_reply(&fixture("getnc_bad_dn.rsp")).unwrap();
    assert_eq!(r.status, 0x20f8);
    // An incremental pass with nothing new: no objects, same watermark.
    let r = decode_getnc_reply(&fixture("getnc_incremental_nochange.rsp")).unwrap();
    assert_eq!(r.status, 0);
    assert!(r.objects.is_empty() && !r.more_data);
}

fn sample_reply(n: usize) -> GetNcReply {
    let t = samba_like_table();
    GetNcReply {
        dsa_src: [1; 16],
        invocation_src: [2; 16],
        nc: Some(DsName {
            guid: [3; 16],
            sid: vec![],
            dn: "DC=x".into(),
        }),
        from: UsnVector::default(),
        to: UsnVector {
            high_obj_update: 5,
            reserved: 0,
            high_prop_update: 5,
        },
        utd: Some(vec![Cursor {
            dsa: [2; 16],
            usn: 5,
        }]),
        prefix: t.clone(),
        extended_ret: 0,
        num_objects: n as u32,
        objects: (0..n)
            .map(|i| ReplObject {
                name: DsName {
                    guid: [i as u8; 16],
                    sid: vec![1, 1, 0, 0, 0, 0, 0, 5, i as u8, 0, 0, 0],
                    dn: format!("CN=u{i},DC=x"),
                },
                flags: 0,
                attrs: vec![
                    Attr {
                        attid: t.attid_of("1.2.840.113556.1.4.90").unwrap(),
                        values: vec![vec![i as u8; 36]],
                    },
                    Attr {
                        attid: t.attid_of("1.2.840.113556.1.4.221").unwrap(),
                        values: vec![b"u\0".to_vec(), vec![]],
                    },
                ],
                is_nc_prefix: i == 0,
                parent_guid: Some([9; 16]),
            })
            .collect(),
        more_data: true,
        num_values: 0,
        drs_error: 0,
        status: 0,
    }
}

#[test]
fn getnc_reply_round_trips() {
    let reply = sample_reply(5);
    assert_eq!(decode_getnc_reply(&encode_reply(&reply)).unwrap(), reply);
    let empty = GetNcReply {
        objects: vec![],
        num_objects: 0,
        nc: None,
        utd: None,
        ..sample_reply(0)
    };
    assert_eq!(decode_getnc_reply(&encode_reply(&empty)).unwrap(), empty);
}

#[test]
fn unsupported_reply_versions_are_named() {
    let mut b = encode_reply(&sample_reply(1));
    b[0] = 7; // a compressed reply
    assert_eq!(
        decode_getnc_reply(&b),
        Err(MsgError::UnexpectedVersion {
            call: "IDL_DRSGetNCChanges",
            version: 7,
            expected: 6
        })
    );
}

#[test]
fn every_truncation_of_captured_replies_is_an_error_not_a_panic() {
    for name in [
        "bind.rsp",
        "dcinfo.rsp",
        "crack_nt4_alice.rsp",
        "getnc_exop_obj_alice.rsp",
        "getnc_incremental_nochange.rsp",
    ] {
        let b = fixture(name);
        for len in 0..b.len() {
            let cut = &b[..len];
            let failed = match name {
                "bind.rsp" => decode_bind_reply(cut).is_err(),
                "dcinfo.rsp" => decode_dcinfo_reply(cut).is_err(),
                "crack_nt4_alice.rsp" => decode_crack_reply(cut).is_err(),
                _ => decode_getnc_reply(cut).is_err(),
            };
            assert!(failed, "{name} cut at {len} decoded");
        }
    }
    let b = fixture("getnc_full_last.rsp");
    for len in (0..b.len()).step_by(997) {
        assert!(decode_getnc_reply(&b[..len]).is_err());
    }
}

/// Offset of the first aligned `v` at or after `from`.
fn find_u32(b: &[u8], v: u32, from: usize) -> usize {
    (from..b.len() - 4)
        .find(|&i| i % 4 == 0 && b[i..i + 4] == v.to_le_bytes())
        .unwrap()
}

#[test]
fn huge_counts_are_refused_with_a_precise_error() {
    let reply = sample_reply(1);
    let b = encode_reply(&reply);
    // unicodePwd: the ATTRVAL scalars [valLen 36][ptr], later its bytes [max 36][36
    // bytes]; make the array's count huge.
    let at = find_u32(&b, 36, find_u32(&b, 36, 300) + 4);
    let mut bad = b.clone();
    bad[at..at + 4].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
    match decode_getnc_reply(&bad) {
        Err(MsgError::Ndr {
            source: NdrError::CountExceedsMessage { count, .. },
            ..
        }) => assert_eq!(count, 0xffff_fff0),
        other => panic!("{other:?}"),
    }
    // A count that fits the bytes but disagrees with its declared size.
    let mut bad = b;
    bad[at..at + 4].copy_from_slice(&35u32.to_le_bytes());
    assert!(matches!(
        decode_getnc_reply(&bad),
        Err(MsgError::Ndr {
            source: NdrError::Invalid { .. },
            ..
        })
    ));
}

#[test]
fn a_long_object_chain_hits_the_depth_cap() {
    let b = encode_reply(&sample_reply(50));
    let err = decode_getnc_reply_with(
        &b,
        Limits {
            max_depth: 10,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        MsgError::Ndr {
            call: "IDL_DRSGetNCChanges",
            source: NdrError::TooDeep {
                what: "REPLENTINFLIST chain",
                limit: 10
            }
        }
    );
    // Under the default caps the same chain decodes.
    assert_eq!(decode_getnc_reply(&b).unwrap().objects.len(), 50);
}

#[test]
fn an_endless_chain_of_nodes_costs_only_the_bytes_it_has() {
    // A reply whose object list is nothing but nodes that each point to a next one (a
    // "loop" in a unique-pointer world): the reader runs out of bytes, bounded by them.
    let mut b = encode_reply(&GetNcReply {
        objects: vec![],
        num_objects: 0,
        ..sample_reply(0)
    });
    b.truncate(b.len() - 4); // drop the return value
                             // Set pObjects (the pointer after cNumBytes): offset of fMoreData minus 4.
    let mut w = Writer::new();
    for _ in 0..10_000 {
        for v in [0x0002_0000u32, 0x0002_0000, 0, 0, 0, 0, 0, 0] {
            w.u32(v);
        }
    }
    let mut with_list = b.clone();
    // pObjects sits at byte 8 + 16 + 16 + 4 + 4(pad) + 24 + 24 + 4 + 8 + 4 + 4 + 4 = 120.
    with_list[120..124].copy_from_slice(&0x0002_0000u32.to_le_bytes());
    with_list.extend(w.into_bytes());
    let err = decode_getnc_reply(&with_list).unwrap_err();
    assert!(
        matches!(
            err,
            MsgError::Ndr {
                source: NdrError::CountExceedsMessage {
                    what: "REPLENTINFLIST",
                    ..
                } | NdrError::Truncated { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn element_budget_bounds_a_reply_with_many_empty_values() {
    let b = encode_reply(&sample_reply(20));
    let err = decode_getnc_reply_with(
        &b,
        Limits {
            max_elements: 50,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        MsgError::Ndr {
            source: NdrError::TooManyElements { limit: 50, .. },
            ..
        }
    ));
}

#[test]
fn a_decoded_reply_s_debug_shows_no_attribute_value() {
    let reply = decode_getnc_reply(&fixture("getnc_exop_obj_alice.rsp")).unwrap();
    let pwd = impacket("getnc_exop_obj_alice")["objects"][0]["unicodePwd"]
        .as_str()
        .unwrap()
        .to_owned();
    let raw = hex::decode(&pwd).unwrap();
    let d = format!("{reply:?}");
    assert!(d.contains("value_lengths: [36]"), "{d}");
    // Neither as hex nor as Rust's list of decimal bytes.
    let decimal = format!("{:?}", &raw[..8]);
    assert!(!d.contains(&pwd[..16]) && !d.contains(decimal.trim_end_matches(']')));
}

#[test]
fn encrypted_value_debug_shows_only_its_length() {
    let v = EncryptedValue::new(vec![0xab; 36]);
    assert_eq!(format!("{v:?}"), "EncryptedValue(36 bytes)");
    assert!(!format!("{v:?}").contains("ab"));
}
