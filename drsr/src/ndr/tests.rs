// In tests a panic is the failure report, and every fixture is fixed data.
#![allow(clippy::unwrap_used)]

use super::*;

fn small(max_elements: usize, max_depth: usize) -> Limits {
    Limits {
        max_elements,
        max_depth,
    }
}

#[test]
fn primitives_round_trip_with_alignment() {
    let mut w = Writer::new();
    w.u8(7);
    w.u32(0xdead_beef); // 3 bytes of padding first
    w.u16(0x1234);
    w.u64(u64::MAX - 1); // 2 + 4 bytes of padding
    w.guid(&[9; 16]);
    w.wstring("héllo");
    let b = w.into_bytes();
    assert_eq!(&b[..4], &[7, 0, 0, 0]);
    let mut r = Reader::new(&b, Limits::default());
    assert_eq!(r.u8("a").unwrap(), 7);
    assert_eq!(r.u32("b").unwrap(), 0xdead_beef);
    assert_eq!(r.u16("c").unwrap(), 0x1234);
    assert_eq!(r.position(), 10);
    assert_eq!(r.u64("d").unwrap(), u64::MAX - 1);
    assert_eq!(r.position(), 24);
    assert_eq!(r.guid("e").unwrap(), [9; 16]);
    assert_eq!(r.wstring("f").unwrap(), "héllo");
    assert_eq!(r.remaining(), 0);
}

#[test]
fn pointers_get_distinct_nonzero_referent_ids() {
    let mut w = Writer::new();
    w.pointer(true);
    w.pointer(false);
    w.pointer(true);
    let b = w.into_bytes();
    assert_eq!(&b[0..4], &0x0002_0000u32.to_le_bytes());
    assert_eq!(&b[4..8], &[0; 4]);
    assert_eq!(&b[8..12], &0x0002_0004u32.to_le_bytes());
    let mut r = Reader::new(&b, Limits::default());
    assert!(r.unique_ptr("p").unwrap());
    assert!(!r.unique_ptr("p").unwrap());
    assert!(r.ref_ptr("p").is_ok());
}

#[test]
fn null_embedded_ref_pointer_is_refused() {
    let b = [0u8; 4];
    let mut r = Reader::new(&b, Limits::default());
    assert_eq!(
        r.ref_ptr("pNC"),
        Err(NdrError::NullPointer { what: "pNC", at: 0 })
    );
}

#[test]
fn truncation_names_what_and_where() {
    let b = [1u8, 0, 0];
    let mut r = Reader::new(&b, Limits::default());
    assert_eq!(
        r.u32("cNumObjects"),
        Err(NdrError::Truncated {
            what: "cNumObjects",
            at: 0,
            need: 4,
            len: 3
        })
    );
    // Padding that runs past the end is a truncation too, not a panic.
    let mut r = Reader::new(&b, Limits::default());
    r.u8("x").unwrap();
    assert!(matches!(r.u64("y"), Err(NdrError::Truncated { .. })));
}

#[test]
fn huge_conformance_is_refused_before_allocating() {
    let mut w = Writer::new();
    w.u32(u32::MAX);
    w.bytes(&[0; 16]);
    let b = w.into_bytes();
    let mut r = Reader::new(&b, Limits::default());
    assert_eq!(
        r.conformance("ATTR array", 12),
        Err(NdrError::CountExceedsMessage {
            what: "ATTR array",
            count: u64::from(u32::MAX),
            at: 4,
            left: 16,
            min_size: 12
        })
    );
}

#[test]
fn element_budget_caps_many_small_arrays() {
    // 10 arrays of 1 byte each fit the message, but not a budget of 5 elements.
    let mut w = Writer::new();
    for _ in 0..10 {
        w.byte_array(&[1]);
    }
    let b = w.into_bytes();
    let mut r = Reader::new(&b, small(5, 8));
    let mut ok = 0;
    let err = loop {
        match r.byte_array("v", None) {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(ok, 5);
    assert_eq!(
        err,
        NdrError::TooManyElements {
            what: "v",
            limit: 5
        }
    );
}

#[test]
fn variance_outside_maximum_is_refused() {
    // max 2, offset 0, actual 3.
    let mut w = Writer::new();
    w.u32(2);
    w.u32(0);
    w.u32(3);
    w.bytes(&[0; 6]);
    let b = w.into_bytes();
    let mut r = Reader::new(&b, Limits::default());
    assert!(matches!(
        r.wstring("pName"),
        Err(NdrError::BadVariance {
            actual: 3,
            max: 2,
            ..
        })
    ));
    // A non-zero offset is refused as well.
    let mut w = Writer::new();
    w.u32(2);
    w.u32(1);
    w.u32(1);
    w.bytes(&[0; 2]);
    let b = w.into_bytes();
    assert!(matches!(
        Reader::new(&b, Limits::default()).wstring("pName"),
        Err(NdrError::BadVariance { offset: 1, .. })
    ));
}

#[test]
fn strings_need_their_terminator_and_valid_utf16() {
    let mut w = Writer::new();
    w.u32(1);
    w.u32(0);
    w.u32(1);
    w.bytes(&0x41u16.to_le_bytes()); // "A" without NUL
    let b = w.into_bytes();
    assert!(matches!(
        Reader::new(&b, Limits::default()).wstring("s"),
        Err(NdrError::BadString { what: "s", .. })
    ));
    let mut w = Writer::new();
    w.u32(2);
    w.u32(0);
    w.u32(2);
    w.bytes(&0xd800u16.to_le_bytes()); // lone surrogate
    w.bytes(&[0, 0]);
    let b = w.into_bytes();
    assert!(matches!(
        Reader::new(&b, Limits::default()).wstring("s"),
        Err(NdrError::BadString { .. })
    ));
}

#[test]
fn full_pointer_loop_is_detected_and_alias_is_allowed() {
    // A node whose embedded full pointer names the node itself (id 0x20000) while it is
    // still being read is a loop; the same id after the referent is complete is an alias.
    let mut w = Writer::new();
    w.u32(0x0002_0000);
    w.u32(0x0002_0000);
    w.u32(0x0002_0000);
    let b = w.into_bytes();
    let mut r = Reader::new(&b, Limits::default());
    assert_eq!(r.full_ptr("next").unwrap(), FullPtr::New(0x0002_0000));
    assert_eq!(
        r.full_ptr("next"),
        Err(NdrError::PointerLoop {
            what: "next",
            id: 0x0002_0000
        })
    );
    r.full_ptr_done(0x0002_0000);
    assert_eq!(r.full_ptr("next").unwrap(), FullPtr::Seen(0x0002_0000));
}

#[test]
fn depth_cap_is_enforced() {
    let mut r = Reader::new(&[], small(10, 3));
    for _ in 0..3 {
        r.enter("chain").unwrap();
    }
    assert_eq!(
        r.enter("chain"),
        Err(NdrError::TooDeep {
            what: "chain",
            limit: 3
        })
    );
    r.leave();
    assert!(r.enter("chain").is_ok());
}
