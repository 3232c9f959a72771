use super::*;

fn obj(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Values> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                Values {
                    values: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    ..Values::default()
                },
            )
        })
        .collect()
}

fn m(filter: &str, o: &BTreeMap<String, Values>) -> bool {
    Filter::parse(filter)
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
        .matches(o)
}

#[test]
fn the_usual_ad_filters_evaluate_as_ad_does() {
    let alice = obj(&[
        ("objectClass", &["top", "person", "user"]),
        ("department", &["Sales"]),
        ("userAccountControl", &["514"]),
        ("description", &["Field sales, north region"]),
        ("employeeID", &["1042"]),
    ]);
    assert!(m("(department=sales)", &alice), "case-insensitive");
    assert!(!m("(department=Sale)", &alice));
    assert!(m("(department=*)", &alice));
    assert!(!m("(mail=*)", &alice));
    assert!(m("(objectClass=*)", &alice));
    assert!(m("(&(objectClass=user)(department=Sales))", &alice));
    assert!(m("(|(department=HR)(department=Sales))", &alice));
    assert!(!m("(!(department=Sales))", &alice));
    assert!(
        m("(userAccountControl:1.2.840.113556.1.4.803:=2)", &alice),
        "514 has ACCOUNTDISABLE"
    );
    assert!(
        !m("(userAccountControl:1.2.840.113556.1.4.803:=18)", &alice),
        "803 needs every bit"
    );
    assert!(
        m("(userAccountControl:1.2.840.113556.1.4.804:=18)", &alice),
        "804 needs any bit"
    );
    assert!(m("(description=field*north*)", &alice));
    assert!(m("(description=*region)", &alice));
    assert!(m("(description=*sales*)", &alice));
    assert!(!m("(description=*south*)", &alice));
    assert!(!m("(description=north*)", &alice));
    assert!(
        m("(employeeID>=999)", &alice),
        "numbers compare as numbers: 1042 >= 999"
    );
    assert!(!m("(employeeID<=999)", &alice));
    assert!(m("(department~=SALES)", &alice));
    assert!(m("(&)", &alice) && !m("(|)", &alice));
}

#[test]
fn escapes_are_decoded() {
    let o = obj(&[("cn", &["a*b (c)"])]);
    assert!(m("(cn=a\\2ab \\28c\\29)", &o));
    assert!(
        !m("(cn=a\\2a)", &o),
        "an escaped star is a star, not a wildcard"
    );
}

#[test]
fn malformed_filters_say_where() {
    for (text, offset, want) in [
        ("department=Sales", 0, "expected '('"),
        ("(department=Sales", 17, "the filter ends inside a value"),
        (
            "(department=Sales))",
            18,
            "text after the filter's closing parenthesis",
        ),
        ("(=x)", 1, "expected an attribute name"),
        ("(a!x)", 2, "expected =, >=, <= or ~="),
        ("(cn=a(b)", 5, "must be written \\28"),
        ("(cn=\\zz)", 4, "two hexadecimal digits"),
        ("(uac:1.2.3:=2)", 12, "matching rule 1.2.3 is not evaluated"),
        (
            "(uac:1.2.840.113556.1.4.803:=x)",
            30,
            "a bitwise match takes a whole number",
        ),
        ("(", 1, "the filter ends after '('"),
    ] {
        let e = Filter::parse(text).expect_err(text);
        assert!(e.message.contains(want), "{text}: {e}");
        assert_eq!(e.offset, offset, "{text}: {e}");
    }
}

#[test]
fn hostile_filters_are_bounded() {
    let deep = format!(
        "{}(a=b){}",
        "(!".repeat(MAX_DEPTH + 2),
        ")".repeat(MAX_DEPTH + 2)
    );
    assert!(Filter::parse(&deep)
        .expect_err("deep")
        .message
        .contains("nested deeper"));
    let ok = format!("{}(a=b){}", "(!".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    Filter::parse(&ok).expect("exactly the depth limit");
    let long = format!("(a={})", "x".repeat(MAX_LEN));
    assert!(Filter::parse(&long)
        .expect_err("long")
        .message
        .contains("at most"));
}
