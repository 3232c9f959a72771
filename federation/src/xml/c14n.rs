//! Exclusive XML canonicalisation (without comments) of a parsed element, as XML-DSig
//! verification needs it: namespace declarations rendered where visibly used (or named in
//! an `InclusiveNamespaces PrefixList`) and not already rendered by an output ancestor,
//! sorted; attributes sorted by namespace URI and local name; one element (the enveloped
//! signature) optionally left out.

use super::reader::{Content, Node};
use super::writer::{escape_attr, escape_text};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The exclusive canonical form of `node` as a document apex, without `exclude`.
pub(crate) fn canonicalize(node: &Node, inclusive: &[String], exclude: Option<&Node>) -> String {
    let mut out = String::with_capacity(4096);
    write(node, &mut out, &mut Vec::new(), inclusive, exclude);
    out
}

fn write(
    node: &Node,
    out: &mut String,
    rendered: &mut Vec<(String, String)>,
    inclusive: &[String],
    exclude: Option<&Node>,
) {
    let mark = rendered.len();
    let current = |p: &str, rendered: &Vec<(String, String)>| {
        rendered
            .iter()
            .rev()
            .find(|(q, _)| q == p)
            .map(|(_, u)| u.clone())
    };
    let mut used: Vec<&str> = vec![node.prefix.as_str()];
    for a in &node.attrs {
        if !a.0.is_empty() {
            used.push(a.0.as_str());
        }
    }
    for p in inclusive {
        let p = if p == "#default" { "" } else { p.as_str() };
        if node.lookup(p).is_some() {
            used.push(p);
        }
    }
    let mut decls: Vec<(String, String)> = Vec::new();
    for p in used {
        if p == "xml" || decls.iter().any(|(q, _)| q == p) {
            continue;
        }
        let value = node.lookup(p).unwrap_or("").to_owned();
        let have = current(p, rendered);
        let needed = if p.is_empty() && value.is_empty() {
            // xmlns="" only undoes a default namespace an output ancestor rendered.
            have.is_some_and(|h| !h.is_empty())
        } else {
            have.as_deref() != Some(value.as_str())
        };
        if needed {
            decls.push((p.to_owned(), value));
        }
    }
    decls.sort();
    out.push('<');
    push_qname(out, &node.prefix, &node.local);
    for (p, u) in &decls {
        if p.is_empty() {
            out.push_str(" xmlns=\"");
        } else {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
        }
        escape_attr(u, out);
        out.push('"');
    }
    let mut attrs: Vec<_> = node.attrs.iter().collect();
    attrs.sort_by(|a, b| (a.2.as_str(), a.1.as_str()).cmp(&(b.2.as_str(), b.1.as_str())));
    for (p, l, ns, v) in attrs {
        out.push(' ');
        if ns == XML_NS {
            out.push_str("xml:");
            out.push_str(l);
        } else {
            push_qname(out, p, l);
        }
        out.push_str("=\"");
        escape_attr(v, out);
        out.push('"');
    }
    out.push('>');
    rendered.extend(decls);
    for c in &node.children {
        match c {
            Content::Element(e) => {
                if exclude.is_some_and(|x| std::ptr::eq(x, e)) {
                    continue;
                }
                write(e, out, rendered, inclusive, exclude);
            }
            Content::Text(t) => escape_text(t, out),
        }
    }
    rendered.truncate(mark);
    out.push_str("</");
    push_qname(out, &node.prefix, &node.local);
    out.push('>');
}

fn push_qname(out: &mut String, prefix: &str, local: &str) {
    if !prefix.is_empty() {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(local);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::reader::parse;

    #[test]
    fn matches_the_writer_and_drops_unused_declarations() {
        let doc = "<p:R xmlns:p=\"urn:p\" xmlns:a=\"urn:a\" xmlns:unused=\"urn:u\" Z=\"1\" B='x&#9;y'>\r\n<a:I>t&amp;</a:I><!--c--><x/></p:R>";
        let n = parse(doc).expect("parses");
        assert_eq!(
            canonicalize(&n, &[], None),
            "<p:R xmlns:p=\"urn:p\" B=\"x&#x9;y\" Z=\"1\">\n<a:I xmlns:a=\"urn:a\">t&amp;</a:I><x></x></p:R>"
        );
        // A subtree as apex declares what it uses.
        let i = n.child("urn:a", "I").expect("child");
        assert_eq!(
            canonicalize(i, &[], None),
            "<a:I xmlns:a=\"urn:a\">t&amp;</a:I>"
        );
        // Inclusive prefixes are rendered even when unused.
        assert_eq!(
            canonicalize(i, &["unused".into()], None),
            "<a:I xmlns:a=\"urn:a\" xmlns:unused=\"urn:u\">t&amp;</a:I>"
        );
    }

    #[test]
    fn default_namespaces() {
        let n = parse("<R xmlns=\"urn:d\"><C xmlns=\"\"/><D/></R>").expect("parses");
        assert_eq!(
            canonicalize(&n, &[], None),
            "<R xmlns=\"urn:d\"><C xmlns=\"\"></C><D></D></R>"
        );
    }
}
