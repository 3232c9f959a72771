use super::*;

#[test]
fn names_resolve_and_entities_decode() {
    let n = parse(
        "<?xml version=\"1.0\"?><a:R xmlns:a=\"urn:a\" x=\"1&amp;2\"><!-- c --><b:C xmlns:b=\"urn:b\">t&lt;&#65;</b:C></a:R>",
    )
    .expect("parses");
    assert!(n.is("urn:a", "R"));
    assert_eq!(n.attr("x"), Some("1&2"));
    let c = n.child("urn:b", "C").expect("child");
    assert_eq!(c.text(), "t<A");
    assert_eq!(c.lookup("a"), Some("urn:a"));
    assert_eq!(c.lookup("xml"), Some(XML_NS));
}

#[test]
fn hostile_documents_are_refused() {
    let bomb = "<!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]><r>&b;</r>";
    assert_eq!(parse(bomb), Err(XmlError::Dtd));
    assert!(matches!(
        parse("<r>&ext;</r>"),
        Err(XmlError::Malformed(m)) if m.contains("unknown entity")
    ));
    assert_eq!(
        parse("<?xml-stylesheet href=\"x\"?><r/>"),
        Err(XmlError::ProcessingInstruction)
    );
    let deep = "<a>".repeat(100) + &"</a>".repeat(100);
    assert!(matches!(parse(&deep), Err(XmlError::TooComplex(_))));
    let big = format!("<a>{}</a>", "x".repeat(MAX_XML_BYTES));
    assert_eq!(parse(&big), Err(XmlError::TooLarge(MAX_XML_BYTES)));
    let message = format!("<a>{}</a>", "x".repeat(MAX_MESSAGE_BYTES));
    assert_eq!(
        parse_message(&message),
        Err(XmlError::TooLarge(MAX_MESSAGE_BYTES))
    );
    let many = format!("<a>{}</a>", "<b/>".repeat(1_024));
    assert!(parse(&many).is_ok());
    assert_eq!(
        parse_message(&many),
        Err(XmlError::TooComplex("too many elements"))
    );
    assert!(matches!(parse("<a><b></a>"), Err(XmlError::Malformed(_))));
    assert!(matches!(
        parse("<p:a/>"),
        Err(XmlError::UndeclaredPrefix(_))
    ));
    assert!(matches!(
        parse("<a x='1' x='2'/>"),
        Err(XmlError::Malformed(_))
    ));
    assert!(matches!(parse("<a/><b/>"), Err(XmlError::Malformed(_))));
    assert!(matches!(parse(""), Err(XmlError::Malformed(_))));
}

/// The document that made the old reader allocate about 3.2 GB: every element
/// redeclares many prefixes, nested, with thousands of siblings. Each element copied
/// its parent's whole list of declarations.
fn redeclaration_bomb(per_element: usize, depth: usize, siblings: usize) -> String {
    let decls: String = (0..per_element)
        .map(|i| format!(" xmlns:p{i}=\"urn:x\""))
        .collect();
    let mut doc = String::from("<r>");
    let open = format!("<e{decls}>");
    let chain = open.repeat(depth) + &"</e>".repeat(depth);
    // Empty siblings that inherit the deepest scope.
    let leafs = "<f/>".repeat(siblings);
    doc.push_str(&chain.replacen("</e>", &format!("{leafs}</e>"), 1));
    doc.push_str("</r>");
    doc
}

#[test]
fn declarations_are_capped_per_element_and_in_scope() {
    let many = redeclaration_bomb(MAX_NS_PER_ELEMENT + 1, 1, 0);
    assert_eq!(
        parse(&many),
        Err(XmlError::TooComplex(
            "too many namespace declarations on one element"
        ))
    );
    let nested = redeclaration_bomb(16, 8, 0);
    assert_eq!(
        parse(&nested),
        Err(XmlError::TooComplex(
            "too many namespace declarations in scope"
        ))
    );
    let long = format!("<a xmlns:p=\"urn:{}\"/>", "x".repeat(MAX_NS_URI_BYTES));
    assert_eq!(
        parse(&long),
        Err(XmlError::TooComplex("a namespace URI is too long"))
    );
    assert!(matches!(
        parse("<a xmlns:p='urn:1' xmlns:p='urn:2'/>"),
        Err(XmlError::Malformed(_))
    ));
}

#[test]
fn scopes_are_shared_not_copied() {
    // The worst the caps allow: the deepest scope, inherited by thousands of leaves.
    let doc = redeclaration_bomb(16, 3, 9_000);
    assert!(doc.len() < MAX_XML_BYTES);
    let n = parse(&doc).expect("within the caps");
    let mut deepest = n.elements().next().expect("e");
    while let Some(e) = deepest.child("", "e") {
        deepest = e;
    }
    let leaves: Vec<&Node> = deepest.children_named("", "f").collect();
    assert_eq!(leaves.len(), 9_000);
    // Every leaf points at its parent's scope: no leaf holds a declaration.
    assert!(leaves.iter().all(|l| l.shares_scope_with(deepest)));
    assert_eq!(leaves[8_999].lookup("p15"), Some("urn:x"));
    // The namespace URI is stored once per declaration, not once per use.
    let n2 = parse("<p:a xmlns:p='urn:long'><p:b/><p:c/></p:a>").expect("parses");
    let b = n2.child("urn:long", "b").expect("b");
    assert!(Arc::ptr_eq(&n2.ns, &b.ns));
}

#[test]
fn reserved_prefixes_cannot_be_rebound() {
    assert!(parse(&format!("<a xmlns:xml=\"{XML_NS}\"/>")).is_ok());
    for doc in [
        "<a xmlns:xml=\"urn:other\"/>",
        "<a xmlns:xmlns=\"urn:other\"/>",
        "<a xmlns:x=\"http://www.w3.org/XML/1998/namespace\"/>",
        "<a xmlns=\"http://www.w3.org/XML/1998/namespace\"/>",
        "<a xmlns:x=\"http://www.w3.org/2000/xmlns/\"/>",
        "<xmlns:a/>",
    ] {
        assert!(
            matches!(parse(doc), Err(XmlError::ReservedNamespace(_))),
            "{doc}: {:?}",
            parse(doc)
        );
    }
}

#[test]
fn line_ends_are_normalised_in_text_and_cdata_but_not_in_references() {
    let n = parse("<a>1\r\n2\r3<![CDATA[4\r\n5\r6]]>&#13;</a>").expect("parses");
    assert_eq!(n.children, vec![Content::Text("1\n2\n34\n5\n6\r".into())]);
    let n = parse("<a x='1\r\n2&#13;'/>").expect("parses");
    assert_eq!(n.attr("x"), Some("1 2\r"));
}

#[test]
fn names_and_characters_must_be_xml() {
    for doc in [
        "<\u{0}~//>",
        "<a\u{1}/>",
        "<a>\u{0}</a>",
        "<a>&#0;</a>",
        "<a>&#x1;</a>",
        "<1a/>",
        "<a:b:c xmlns:a='urn:a'/>",
        "<a -x='1'/>",
        "<a x\u{7f}y='1'/>",
    ] {
        assert!(
            matches!(parse(doc), Err(XmlError::Malformed(_))),
            "{doc:?}: {:?}",
            parse(doc)
        );
    }
    for doc in [
        "<a\u{e9}t\u{e9}/>",
        "<_a.b-c x\u{b7}='1'/>",
        "<a>\t\n&#9;&#x10000;</a>",
    ] {
        assert!(parse(doc).is_ok(), "{doc:?}: {:?}", parse(doc));
    }
}

#[test]
fn attributes_are_capped_in_the_document() {
    let el = format!(
        "<e {}/>",
        (0..40)
            .map(|i| format!("a{i}='1'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let doc = format!("<r>{}</r>", el.repeat(MAX_TOTAL_ATTRIBUTES / 40 + 1));
    assert_eq!(
        parse(&doc),
        Err(XmlError::TooComplex("too many attributes"))
    );
}
