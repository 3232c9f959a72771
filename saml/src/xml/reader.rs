//! A bounded XML reader for documents from outside (AuthnRequests, logout messages, SP
//! metadata). It builds a small tree with every name resolved to its namespace, keeps
//! what exclusive canonicalisation needs (prefixes, in-scope namespaces), and refuses
//! what SAML never needs and attackers love: DTDs and entity declarations (so no entity
//! expansion), unknown entity references, processing instructions, deep nesting, and
//! documents larger than [`MAX_XML_BYTES`] or with too many elements or attributes.
//!
//! Cost: memory and time are linear in the document's size with a small constant.
//! Namespace scopes are shared, not copied: an element that declares nothing points at
//! its parent's scope, and one that declares something adds a link holding only its own
//! declarations. Declarations per element and in scope are capped, so a lookup walks at
//! most [`MAX_NS_IN_SCOPE`] entries; namespace URIs are reference-counted, so a long URI
//! used by many elements is stored once.

use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};

/// The largest document accepted (SP metadata with a few certificates fits easily).
pub const MAX_XML_BYTES: usize = 256 * 1024;
/// The largest protocol message accepted (AuthnRequest, LogoutRequest/Response, Response):
/// what an unauthenticated client can make the endpoint parse. A signed AuthnRequest
/// with its certificate is under 8 KiB; the bound leaves room for extensions.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
const MAX_DEPTH: usize = 48;
const MAX_ATTRIBUTES: usize = 64;
/// Attributes in the whole document (each costs a lookup and, in c14n, a sort slot).
const MAX_TOTAL_ATTRIBUTES: usize = 20_000;
/// Namespace declarations on one element (real SAML and metadata documents use ≤ 15).
pub const MAX_NS_PER_ELEMENT: usize = 32;
/// Namespace declarations in scope at one element, shadowed ones included: this bounds
/// the cost of every prefix lookup.
pub const MAX_NS_IN_SCOPE: usize = 64;
/// The longest namespace URI accepted.
pub const MAX_NS_URI_BYTES: usize = 1024;

pub(crate) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Larger than the limit in force (the number of bytes).
    #[error("the XML document is larger than {0} bytes")]
    TooLarge(usize),
    /// A DOCTYPE was present.
    #[error("the XML document has a DOCTYPE; DTDs and entity declarations are not accepted")]
    Dtd,
    /// A processing instruction was present.
    #[error("the XML document has a processing instruction, which is not accepted")]
    ProcessingInstruction,
    /// Nested too deeply, or too many elements, attributes or namespace declarations.
    #[error("the XML document is too complex ({0})")]
    TooComplex(&'static str),
    /// Not well-formed.
    #[error("the XML document is not well-formed: {0}")]
    Malformed(String),
    /// A prefix without a declaration.
    #[error("the XML document uses the undeclared namespace prefix {0:?}")]
    UndeclaredPrefix(String),
    /// The reserved `xml` or `xmlns` prefix or namespace was rebound.
    #[error("the XML document rebinds a reserved namespace ({0})")]
    ReservedNamespace(&'static str),
}

/// The namespace declarations in scope at an element: its own, then its ancestors'.
/// Shared between an element and every descendant that declares nothing.
#[derive(Clone, PartialEq, Eq)]
struct Scope {
    /// This element's declarations (prefix "" = default namespace; URI "" = undeclared).
    decls: Vec<(String, Arc<str>)>,
    parent: Option<Arc<Scope>>,
    /// Declarations on the whole chain, shadowed ones included.
    total: usize,
}

impl std::fmt::Debug for Scope {
    // Printing every ancestor's declarations at every node would make a tree's Debug
    // output quadratic: print this link only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("decls", &self.decls)
            .field("in_scope", &self.total)
            .finish()
    }
}

impl Scope {
    fn root() -> Arc<Self> {
        Arc::new(Self {
            decls: vec![("xml".to_owned(), Arc::from(XML_NS))],
            parent: None,
            total: 1,
        })
    }

    fn lookup(&self, prefix: &str) -> Option<&Arc<str>> {
        let mut s = Some(self);
        while let Some(scope) = s {
            if let Some((_, u)) = scope.decls.iter().rev().find(|(p, _)| p == prefix) {
                return Some(u);
            }
            s = scope.parent.as_deref();
        }
        None
    }
}

/// An attribute other than a namespace declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// The prefix as written ("" for none).
    pub prefix: String,
    /// The local name.
    pub local: String,
    /// The namespace URI ("" for none).
    pub ns: Arc<str>,
    /// The normalised value, references resolved.
    pub value: String,
}

/// An element, with names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The prefix as written ("" for none).
    pub prefix: String,
    /// The local name.
    pub local: String,
    /// The namespace URI ("" for none).
    pub ns: Arc<str>,
    scope: Arc<Scope>,
    /// Attributes other than namespace declarations.
    pub attrs: Vec<Attr>,
    /// Children in document order.
    pub children: Vec<Content>,
}

/// A child of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// An element.
    Element(Node),
    /// Character data (entities resolved, line ends normalised).
    Text(String),
}

impl Node {
    /// Whether this is `{ns}local`.
    pub fn is(&self, ns: &str, local: &str) -> bool {
        &*self.ns == ns && self.local == local
    }

    /// An unqualified attribute's value.
    pub fn attr(&self, local: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.prefix.is_empty() && a.local == local)
            .map(|a| a.value.as_str())
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

    /// The namespace a prefix is bound to here ("" for an undeclared default namespace).
    pub fn lookup(&self, prefix: &str) -> Option<&str> {
        self.scope.lookup(prefix).map(|u| &**u)
    }

    /// Whether this element shares its parent's namespace scope (declares nothing).
    #[cfg(test)]
    pub(crate) fn shares_scope_with(&self, other: &Node) -> bool {
        Arc::ptr_eq(&self.scope, &other.scope)
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Counts that bound the whole document.
struct Budget {
    elements: usize,
    max_elements: usize,
    attributes: usize,
    /// One shared "no namespace", so unqualified names allocate nothing for it.
    empty: Arc<str>,
}

impl Budget {
    fn element(&mut self) -> Result<(), XmlError> {
        self.elements += 1;
        if self.elements > self.max_elements {
            return Err(XmlError::TooComplex("too many elements"));
        }
        Ok(())
    }
}

/// How large a document one parse accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of XML.
    pub max_bytes: usize,
    /// Elements.
    pub max_elements: usize,
}

impl Limits {
    /// Documents an administrator supplies (SP metadata): [`MAX_XML_BYTES`], 10,000
    /// elements.
    pub const DOCUMENT: Limits = Limits {
        max_bytes: MAX_XML_BYTES,
        max_elements: 10_000,
    };
    /// Protocol messages from anyone: [`MAX_MESSAGE_BYTES`], 1,024 elements (an
    /// AuthnRequest has about ten). Parsing the largest costs well under a millisecond.
    pub const MESSAGE: Limits = Limits {
        max_bytes: MAX_MESSAGE_BYTES,
        max_elements: 1_024,
    };
}

/// Parses a document (metadata) into its root element, within [`Limits::DOCUMENT`].
pub fn parse(xml: &str) -> Result<Node, XmlError> {
    parse_with(xml, Limits::DOCUMENT)
}

/// Parses a protocol message into its root element, within [`Limits::MESSAGE`].
pub fn parse_message(xml: &str) -> Result<Node, XmlError> {
    parse_with(xml, Limits::MESSAGE)
}

/// Parses `xml` into its root element within `limits`.
pub fn parse_with(xml: &str, limits: Limits) -> Result<Node, XmlError> {
    if xml.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(limits.max_bytes));
    }
    // XML 1.0 §2.2: no C0 control character but tab, line feed and carriage return may
    // appear anywhere, literally (references to them are checked where they resolve).
    if let Some(b) = xml
        .bytes()
        .find(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Err(malformed(format!("control character 0x{b:02x}")));
    }
    let mut reader = quick_xml::Reader::from_str(xml);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut budget = Budget {
        elements: 0,
        max_elements: limits.max_elements,
        attributes: 0,
        empty: Arc::from(""),
    };
    let root_scope = Scope::root();
    loop {
        let ev = reader.read_event().map_err(malformed)?;
        match ev {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed("content after the root element"));
            }
            Event::Start(s) => {
                budget.element()?;
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooComplex("nested too deeply"));
                }
                let scope = stack.last().map_or(&root_scope, |p| &p.scope);
                let node = open(&s, scope, &mut budget)?;
                stack.push(node);
            }
            Event::Empty(s) => {
                budget.element()?;
                let scope = stack.last().map_or(&root_scope, |p| &p.scope);
                let node = open(&s, scope, &mut budget)?;
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
                // XML 1.0 §2.11: line ends are normalised everywhere, CDATA included.
                let text = c.xml10_content().map_err(malformed)?;
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
                if !is_xml_char(c) {
                    return Err(malformed(format!(
                        "a reference to a character XML does not allow (U+{:04X})",
                        u32::from(c)
                    )));
                }
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

/// XML 1.0 §2.2 `Char`.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Namespaces in XML §3 `NCName` (XML 1.0 §2.3 `Name` without the colon), checked so
/// that what we canonicalise is XML that any parser reads back.
fn is_ncname(s: &str) -> bool {
    let start = |c: char| {
        c.is_ascii_alphabetic()
            || c == '_'
            || matches!(c, '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}' | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}' | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}' | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}' | '\u{10000}'..='\u{EFFFF}')
    };
    let mut chars = s.chars();
    chars.next().is_some_and(start) && chars.all(|c| {
        start(c)
            || c.is_ascii_digit()
            || matches!(c, '-' | '.' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
    })
}

/// A qualified name: `NCName` or `NCName:NCName`.
fn check_qname(q: &str) -> Result<(), XmlError> {
    let ok = match q.split_once(':') {
        Some((p, l)) => is_ncname(p) && is_ncname(l),
        None => is_ncname(q),
    };
    if ok {
        Ok(())
    } else {
        Err(malformed(format!(
            "{:?} is not a valid XML name",
            q.chars().take(40).collect::<String>()
        )))
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

/// Checks one namespace declaration against the reserved names (Namespaces in XML 1.0
/// §3): `xml` may only be bound to its own URI, `xmlns` never, and neither URI to any
/// other prefix or as the default namespace.
fn check_declaration(prefix: &str, uri: &str) -> Result<(), XmlError> {
    match prefix {
        "xmlns" => Err(XmlError::ReservedNamespace(
            "the xmlns prefix is never declared",
        )),
        "xml" if uri != XML_NS => Err(XmlError::ReservedNamespace(
            "the xml prefix may only be bound to its own namespace",
        )),
        "xml" => Ok(()),
        _ if uri == XML_NS => Err(XmlError::ReservedNamespace(
            "the XML namespace may only be bound to the xml prefix",
        )),
        _ if uri == XMLNS_NS => Err(XmlError::ReservedNamespace(
            "the xmlns namespace may not be declared",
        )),
        _ => Ok(()),
    }
}

fn open(s: &BytesStart<'_>, parent: &Arc<Scope>, budget: &mut Budget) -> Result<Node, XmlError> {
    let name = std::str::from_utf8(s.name().as_ref())
        .map_err(malformed)?
        .to_owned();
    check_qname(&name)?;
    let mut decls: Vec<(String, Arc<str>)> = Vec::new();
    let mut raw_attrs = Vec::new();
    for (i, a) in s.attributes().with_checks(true).enumerate() {
        if i >= MAX_ATTRIBUTES {
            return Err(XmlError::TooComplex("too many attributes on one element"));
        }
        let a = a.map_err(malformed)?;
        let key = std::str::from_utf8(a.key.as_ref()).map_err(malformed)?;
        check_qname(key)?;
        let value = attr_value(&a.value)?;
        let declared = if key == "xmlns" {
            Some("")
        } else {
            key.strip_prefix("xmlns:")
        };
        let Some(prefix) = declared else {
            budget.attributes += 1;
            if budget.attributes > MAX_TOTAL_ATTRIBUTES {
                return Err(XmlError::TooComplex("too many attributes"));
            }
            raw_attrs.push((key.to_owned(), value));
            continue;
        };
        if !prefix.is_empty() && value.is_empty() {
            return Err(malformed("a prefix may not be undeclared"));
        }
        if value.len() > MAX_NS_URI_BYTES {
            return Err(XmlError::TooComplex("a namespace URI is too long"));
        }
        check_declaration(prefix, &value)?;
        if decls.iter().any(|(p, _)| p == prefix) {
            return Err(malformed(
                "a namespace prefix is declared twice on one element",
            ));
        }
        decls.push((prefix.to_owned(), Arc::from(value)));
        if decls.len() > MAX_NS_PER_ELEMENT {
            return Err(XmlError::TooComplex(
                "too many namespace declarations on one element",
            ));
        }
    }
    let scope = if decls.is_empty() {
        parent.clone()
    } else {
        let total = parent.total + decls.len();
        if total > MAX_NS_IN_SCOPE {
            return Err(XmlError::TooComplex(
                "too many namespace declarations in scope",
            ));
        }
        Arc::new(Scope {
            decls,
            parent: Some(parent.clone()),
            total,
        })
    };
    let (prefix, local) = split(&name);
    if prefix == "xmlns" {
        return Err(XmlError::ReservedNamespace(
            "the xmlns prefix may not name an element",
        ));
    }
    let ns = match scope.lookup(prefix) {
        Some(u) => u.clone(),
        None if prefix.is_empty() => budget.empty.clone(),
        None => return Err(XmlError::UndeclaredPrefix(prefix.to_owned())),
    };
    let mut attrs: Vec<Attr> = Vec::with_capacity(raw_attrs.len());
    for (k, value) in raw_attrs {
        let (p, l) = split(&k);
        let ans = if p.is_empty() {
            budget.empty.clone()
        } else {
            scope
                .lookup(p)
                .cloned()
                .ok_or_else(|| XmlError::UndeclaredPrefix(p.to_owned()))?
        };
        if attrs.iter().any(|a| a.local == l && a.ns == ans) {
            return Err(malformed("an attribute appears twice"));
        }
        attrs.push(Attr {
            prefix: p.to_owned(),
            local: l.to_owned(),
            ns: ans,
            value,
        });
    }
    Ok(Node {
        prefix: prefix.to_owned(),
        local: local.to_owned(),
        ns,
        scope,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests;
