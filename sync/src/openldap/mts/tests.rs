use super::*;

fn stamp(s: &str) -> Stamp {
    Stamp::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn generalized_times_compare_as_times() {
    assert!(stamp("20261202013500Z") < stamp("20261202013501Z"));
    assert!(stamp("20261202013500Z") < stamp("20261202013500.000001Z"));
    assert!(stamp("20261202013500.05Z") < stamp("20261202013500.5Z"));
    // Trailing zeros of a fraction say nothing.
    assert_eq!(stamp("20261202013500.500Z"), stamp("20261202013500.5Z"));
    assert_eq!(stamp("20261202013500.0Z"), stamp("20261202013500Z"));
    // A later year beats any later month, day or second.
    assert!(stamp("20251231235959.9Z") < stamp("20260101000000Z"));
}

#[test]
fn times_that_cannot_be_compared_are_refused() {
    for bad in [
        "",
        "Z",
        "20261202013500",
        "20261202013500+0100",
        "202612020135Z",
        "202612020135001Z",
        "2026120201350aZ",
        "20261202013500.Z",
        "20261202013500.1234567890Z",
        "２0261202013500Z",
    ] {
        assert!(Stamp::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_delta_asks_for_the_whole_second_of_the_watermark() {
    let w = Watermark(Some(stamp("20261202013500.75Z")));
    assert_eq!(w.filter(), "(modifyTimestamp>=20261202013500Z)");
    assert_eq!(Watermark(None).filter(), "(objectClass=*)");
}

#[test]
fn the_watermark_round_trips_through_its_cookie_and_is_told_apart_from_content_sync() {
    for w in [
        Watermark(None),
        Watermark(Some(stamp("20261202013500Z"))),
        Watermark(Some(stamp("20261202013500.25Z"))),
    ] {
        let c = w.cookie();
        assert!(c.as_bytes().starts_with(b"mts1:"), "{c:?}");
        assert_eq!(Watermark::from_cookie(&c), Some(w));
    }
    assert_eq!(
        Watermark(Some(stamp("20261202013500Z")))
            .cookie()
            .as_bytes(),
        b"mts1:20261202013500Z"
    );
    // No cookie, slapd's content-sync cookie, a damaged one: each means a full import.
    for other in [
        &b""[..],
        b"rid=000,csn=20261202013500.123456Z#000000#000#000000",
        b"mts1:yesterday",
        b"mts2:20261202013500Z",
        b"mts1:\xff",
    ] {
        let c = Cookie::new(other.to_vec()).expect("short");
        assert_eq!(Watermark::from_cookie(&c), None, "{other:?}");
    }
}

#[test]
fn the_watermark_only_moves_forward() {
    let w = Watermark(Some(stamp("20261202013500Z")));
    assert_eq!(
        w.clone().advance(Some(stamp("20261202013400Z"))),
        w,
        "an older entry re-read does not move it back"
    );
    assert_eq!(w.clone().advance(None), w);
    assert_eq!(
        w.advance(Some(stamp("20261202013501Z"))),
        Watermark(Some(stamp("20261202013501Z")))
    );
    assert_eq!(
        Watermark(None).advance(Some(stamp("20261202013500Z"))),
        Watermark(Some(stamp("20261202013500Z")))
    );
}
