//! A bounded XML reader for documents from outside (AuthnRequests, logout messages, SP
//! metadata). It builds a small tree with every name resolved to its namespace, keeps
//! what exclusive canonicalisation needs (prefixes, in-scope namespaces), and refuses
//! what SAML never needs and attackers love: DTDs and entity declarations (so no entity
//! expansion), unknown entity references, processing instructions, deep nesting, and
//! documents larger than [`MAX_XML_BYTES`] or with too many elements or attributes.

use quick_xml::events::{BytesStart, Event};

/// The largest document accepted (SP metadata with a few certificates fits easily).
pub const MAX_XML_BYTES: usize = 256 * 1024;
const MAX_DEPTH: usize = 48;
const MAX_ELEMENTS: usize = 10_000;
const MAX_ATTRIBUTES: usize = 64;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Larger than [`MAX_XML_BYTES`].
    #[error("the XML document is larger than {MAX_XML_BYTES} bytes")]
    TooLarge,
    /// A DOCTYPE was present.
    #[error("the XML document has a DOCTYPE; DTDs and entity declarations are not accepted")]
    Dtd,
    /// A processing instruction was present.
    #[error("the XML document has a processing instruction, which is not accepted")]
    ProcessingInstruction,
    /// Nested too deeply, or too many elements or attributes.
    #[error("the XML document is too complex ({0})")]
    TooComplex(&'static str),
    /// Not well-formed.
    #[error("the XML document is not well-formed: {0}")]
    Malformed(String),
    /// A prefix without a declaration.
    #[error("the XML document uses the undeclared namespace prefix {0:?}")]
    UndeclaredPrefix(String),
}

/// An element, with names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The prefix as written ("" for none).
    pub prefix: String,
    /// The local name.
    pub local: String,
    /// The namespace URI ("" for none).
    pub ns: String,
    /// Namespaces in scope here, innermost last (prefix "" = default namespace).
    pub in_scope: Vec<(String, String)>,
    /// Attributes other than namespace declarations: (prefix, local, namespace, value).
    pub attrs: Vec<(String, String, String, String)>,
    /// Children in document order.
    pub children: Vec<Content>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// An element.
    Element(Node),
    /// Character data (entities resolved).
    Text(String),
}

impl Node {
    /// Whether this is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        self.ns == ns && self.local == local
    }

    /// An unqualified attribute's value.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.0.is_empty() && a.1 == local)
            .map(|a| a.3.as_str())
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Node> {
        self.children.iter().filter_map(|c| match c {
            Content::Element(e) => Some(e),
            Content::Text(_) => None,
        })
    }

    /// The first child element `{ns}local`.
    pub fn child(&self, ns: &str, local: &str) -> Option<&Node> {
        self.elements().find(|e| e.is(ns, local))
    }

    /// Every child element `{ns}local`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        local: &'a str,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.elements().filter(move |e| e.is(ns, local))
    }

    /// The element's text (its text children joined), trimmed.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            if let Content::Text(t) = c {
                s.push_str(t);
            }
        }
        s.trim().to_owned()
    }

    /// The namespace a prefix is bound to here.
    pub fn lookup(&self, prefix: &str) -> Option<&str> {
        self.in_scope
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, u)| u.as_str())
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Parses `xml` into its root element.
pub fn parse(xml: &str) -> Result<Node, XmlError> {
    if xml.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge);
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut elements = 0usize;
    loop {
        let ev = reader.read_event().map_err(malformed)?;
        match ev {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Start(s) | Event::Empty(s) if root.is_some() => {
                let _ = s;
                return Err(malformed("content after the root element"));
            }
            Event::Start(s) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(XmlError::TooComplex("too many elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooComplex("nested too deeply"));
                }
                let node = open(&s, stack.last())?;
                stack.push(node);
            }
            Event::Empty(s) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(XmlError::TooComplex("too many elements"));
                }
                let node = open(&s, stack.last())?;
                close(node, &mut stack, &mut root);
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| malformed("unexpected end tag"))?;
                close(node, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t.xml10_content().map_err(malformed)?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(c) => {
                let text = c.decode().map_err(malformed)?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(malformed)?
                        .ok_or_else(|| malformed("bad character reference"))?
                } else {
                    match &*r.decode().map_err(malformed)? {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => {
                            return Err(malformed(format!(
                                "unknown entity &{};",
                                other.chars().take(40).collect::<String>()
                            )))
                        }
                    }
                };
                push_text(&mut stack, c.encode_utf8(&mut [0; 4]))?;
            }
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("the document ends inside an element"));
    }
    root.ok_or_else(|| malformed("no root element"))
}

fn push_text(stack: &mut [Node], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(n) => {
            if let Some(Content::Text(t)) = n.children.last_mut() {
                t.push_str(text);
            } else {
                n.children.push(Content::Text(text.to_owned()));
            }
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(malformed("text outside the root element")),
    }
}

fn close(node: Node, stack: &mut [Node], root: &mut Option<Node>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(Content::Element(node)),
        None => *root = Some(node),
    }
}

fn split(q: &str) -> (&str, &str) {
    match q.split_once(':') {
        Some((p, l)) => (p, l),
        None => ("", q),
    }
}

/// Attribute-value normalisation (XML 1.0 §3.3.3 for CDATA attributes): literal tabs and
/// line breaks become spaces, then references are resolved.
fn attr_value(raw: &[u8]) -> Result<String, XmlError> {
    let s = std::str::from_utf8(raw).map_err(malformed)?;
    let s = s.replace("\r\n", " ").replace(['\t', '\n', '\r'], " ");
    quick_xml::escape::unescape(&s)
        .map(|c| c.into_owned())
        .map_err(malformed)
}

fn open(s: &BytesStart<'_>, parent: Option<&Node>) -> Result<Node, XmlError> {
    let name = std::str::from_utf8(s.name().as_ref())
        .map_err(malformed)?
        .to_owned();
    let mut in_scope = parent.map(|p| p.in_scope.clone()).unwrap_or_else(|| {
        vec![(
            "xml".to_owned(),
            "http://www.w3.org/XML/1998/namespace".to_owned(),
        )]
    });
    let mut raw_attrs = Vec::new();
    for (i, a) in s.attributes().with_checks(true).enumerate() {
        if i >= MAX_ATTRIBUTES {
            return Err(XmlError::TooComplex("too many attributes"));
        }
        let a = a.map_err(malformed)?;
        let key = std::str::from_utf8(a.key.as_ref())
            .map_err(malformed)?
            .to_owned();
        let value = attr_value(&a.value)?;
        if key == "xmlns" {
            in_scope.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            if value.is_empty() {
                return Err(malformed("a prefix may not be undeclared"));
            }
            in_scope.push((p.to_owned(), value));
        } else {
            raw_attrs.push((key, value));
        }
    }
    let lookup = |p: &str| {
        in_scope
            .iter()
            .rev()
            .find(|(q, _)| q == p)
            .map(|(_, u)| u.clone())
    };
    let (prefix, local) = split(&name);
    let ns = match lookup(prefix) {
        Some(u) => u,
        None if prefix.is_empty() => String::new(),
        None => return Err(XmlError::UndeclaredPrefix(prefix.to_owned())),
    };
    let mut attrs = Vec::with_capacity(raw_attrs.len());
    for (k, v) in raw_attrs {
        let (p, l) = split(&k);
        let ans = if p.is_empty() {
            String::new()
        } else {
            lookup(p).ok_or_else(|| XmlError::UndeclaredPrefix(p.to_owned()))?
        };
        if attrs
            .iter()
            .any(|(_, l2, n2, _): &(String, String, String, String)| *l2 == l && *n2 == ans)
        {
            return Err(malformed("an attribute appears twice"));
        }
        attrs.push((p.to_owned(), l.to_owned(), ans, v));
    }
    Ok(Node {
        prefix: prefix.to_owned(),
        local: local.to_owned(),
        ns,
        in_scope,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
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
        assert_eq!(parse(&big), Err(XmlError::TooLarge));
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
}
