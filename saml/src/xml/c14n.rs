//! Exclusive XML canonicalisation (without comments) of a parsed element, as XML-DSig
//! verification needs it: namespace declarations rendered where visibly used (or named in
//! an `InclusiveNamespaces PrefixList`) and not already rendered by an output ancestor,
//! sorted; attributes sorted by namespace URI and local name; one element (the enveloped
//! signature) optionally left out.
//!
//! Cost: exclusive c14n re-renders a declaration at every element that uses it without an
//! output ancestor having rendered it, so the output can be far larger than the input
//! (a long namespace URI used by thousands of siblings). The output is therefore capped
//! at [`MAX_CANONICAL_BYTES`], the prefix list at [`MAX_INCLUSIVE_PREFIXES`], and every
//! lookup is bounded by the reader's cap on declarations in scope.

use super::reader::{Content, Node, MAX_XML_BYTES, XML_NS};
use super::writer::{escape_attr, escape_text};

/// The largest canonical form produced (four times the largest document accepted: an
/// empty element `<a/>` canonicalises to `<a></a>`, and `>` in text to `&gt;`).
pub(crate) const MAX_CANONICAL_BYTES: usize = 4 * MAX_XML_BYTES;
/// The most prefixes an `InclusiveNamespaces PrefixList` may name.
pub(crate) const MAX_INCLUSIVE_PREFIXES: usize = 16;
/// The longest prefix a `PrefixList` may name.
const MAX_PREFIX_BYTES: usize = 64;

/// Why a canonical form was not produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum C14nError {
    /// The output would exceed [`MAX_CANONICAL_BYTES`].
    TooLarge,
    /// The `PrefixList` names too many prefixes, or too long a one.
    PrefixList,
}

/// The prefixes of an `InclusiveNamespaces PrefixList` ("#default" = the default
/// namespace, as ""), deduplicated and bounded.
pub(crate) fn prefix_list(list: &str) -> Result<Vec<&str>, C14nError> {
    let mut out: Vec<&str> = Vec::new();
    for p in list.split_ascii_whitespace() {
        if p.len() > MAX_PREFIX_BYTES {
            return Err(C14nError::PrefixList);
        }
        let p = if p == "#default" { "" } else { p };
        if !out.contains(&p) {
            if out.len() == MAX_INCLUSIVE_PREFIXES {
                return Err(C14nError::PrefixList);
            }
            out.push(p);
        }
    }
    Ok(out)
}

/// The exclusive canonical form of `node` as a document apex, without `exclude`.
pub(crate) fn canonicalize(
    node: &Node,
    inclusive: &[&str],
    exclude: Option<&Node>,
) -> Result<String, C14nError> {
    let mut out = String::with_capacity(4096);
    let mut w = Writer {
        out: &mut out,
        rendered: Vec::new(),
        inclusive,
        exclude,
    };
    w.write(node)?;
    Ok(out)
}

struct Writer<'n, 'o> {
    out: &'o mut String,
    /// Declarations rendered by output ancestors, innermost last.
    rendered: Vec<(&'n str, &'n str)>,
    inclusive: &'n [&'n str],
    exclude: Option<&'n Node>,
}

impl<'n> Writer<'n, '_> {
    fn check(&self) -> Result<(), C14nError> {
        if self.out.len() > MAX_CANONICAL_BYTES {
            Err(C14nError::TooLarge)
        } else {
            Ok(())
        }
    }

    fn current(&self, prefix: &str) -> Option<&'n str> {
        self.rendered
            .iter()
            .rev()
            .find(|(q, _)| *q == prefix)
            .map(|(_, u)| *u)
    }

    fn write(&mut self, node: &'n Node) -> Result<(), C14nError> {
        let mark = self.rendered.len();
        // Visibly used prefixes: the element's, its attributes', and the inclusive ones
        // that are in scope. At most 1 + 64 + 16, each found in a bounded scope.
        let mut used: Vec<&'n str> = Vec::with_capacity(4);
        let mut note = |p: &'n str| {
            if p != "xml" && !used.contains(&p) {
                used.push(p);
            }
        };
        note(node.prefix.as_str());
        for a in &node.attrs {
            if !a.prefix.is_empty() {
                note(a.prefix.as_str());
            }
        }
        for &p in self.inclusive {
            if node.lookup(p).is_some() {
                note(p);
            }
        }
        let mut decls: Vec<(&'n str, &'n str)> = Vec::with_capacity(used.len());
        for p in used {
            let value = node.lookup(p).unwrap_or("");
            let have = self.current(p);
            let needed = if p.is_empty() && value.is_empty() {
                // xmlns="" only undoes a default namespace an output ancestor rendered.
                have.is_some_and(|h| !h.is_empty())
            } else {
                have != Some(value)
            };
            if needed {
                decls.push((p, value));
            }
        }
        decls.sort_unstable();
        let out = &mut *self.out;
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
        attrs.sort_unstable_by(|a, b| (&*a.ns, &a.local).cmp(&(&*b.ns, &b.local)));
        for a in attrs {
            out.push(' ');
            if &*a.ns == XML_NS {
                out.push_str("xml:");
                out.push_str(&a.local);
            } else {
                push_qname(out, &a.prefix, &a.local);
            }
            out.push_str("=\"");
            escape_attr(&a.value, out);
            out.push('"');
        }
        out.push('>');
        self.rendered.extend(decls);
        self.check()?;
        for c in &node.children {
            match c {
                Content::Element(e) => {
                    if self.exclude.is_some_and(|x| std::ptr::eq(x, e)) {
                        continue;
                    }
                    self.write(e)?;
                }
                Content::Text(t) => {
                    escape_text(t, self.out);
                    self.check()?;
                }
            }
        }
        self.rendered.truncate(mark);
        self.out.push_str("</");
        push_qname(self.out, &node.prefix, &node.local);
        self.out.push('>');
        Ok(())
    }
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
            canonicalize(&n, &[], None).expect("c14n"),
            "<p:R xmlns:p=\"urn:p\" B=\"x&#x9;y\" Z=\"1\">\n<a:I xmlns:a=\"urn:a\">t&amp;</a:I><x></x></p:R>"
        );
        // A subtree as apex declares what it uses.
        let i = n.child("urn:a", "I").expect("child");
        assert_eq!(
            canonicalize(i, &[], None).expect("c14n"),
            "<a:I xmlns:a=\"urn:a\">t&amp;</a:I>"
        );
        // Inclusive prefixes are rendered even when unused.
        assert_eq!(
            canonicalize(i, &["unused"], None).expect("c14n"),
            "<a:I xmlns:a=\"urn:a\" xmlns:unused=\"urn:u\">t&amp;</a:I>"
        );
    }

    #[test]
    fn default_namespaces() {
        let n = parse("<R xmlns=\"urn:d\"><C xmlns=\"\"/><D/></R>").expect("parses");
        assert_eq!(
            canonicalize(&n, &[], None).expect("c14n"),
            "<R xmlns=\"urn:d\"><C xmlns=\"\"></C><D></D></R>"
        );
        let n = parse("<R xmlns=\"urn:d\"><x:C xmlns:x='urn:x'/></R>").expect("parses");
        let c = n.child("urn:x", "C").expect("C");
        assert_eq!(
            canonicalize(c, &[""], None).expect("c14n"),
            "<x:C xmlns=\"urn:d\" xmlns:x=\"urn:x\"></x:C>"
        );
    }

    #[test]
    fn prefix_lists_are_bounded_and_deduplicated() {
        assert_eq!(
            prefix_list("ds  saml #default ds").expect("fine"),
            vec!["ds", "saml", ""]
        );
        let many: String = (0..=MAX_INCLUSIVE_PREFIXES)
            .map(|i| format!("p{i} "))
            .collect();
        assert_eq!(prefix_list(&many), Err(C14nError::PrefixList));
        // Repeating one prefix a hundred thousand times is one prefix, but still read
        // once: linear in the list's length.
        assert_eq!(prefix_list(&"a ".repeat(100_000)).expect("one"), vec!["a"]);
        assert_eq!(
            prefix_list(&"x".repeat(MAX_PREFIX_BYTES + 1)),
            Err(C14nError::PrefixList)
        );
    }

    #[test]
    fn the_output_is_capped() {
        // A long namespace URI re-rendered at each of thousands of siblings: 9,000 × 1 KB
        // of declarations from a 250 KB document.
        let uri = format!("urn:{}", "u".repeat(1000));
        let doc = format!("<r xmlns:p=\"{uri}\">{}</r>", "<p:a/>".repeat(9_000));
        assert!(doc.len() < MAX_XML_BYTES);
        let n = parse(&doc).expect("parses");
        assert_eq!(canonicalize(&n, &[], None), Err(C14nError::TooLarge));
        // The same with the declaration used at the apex is small.
        let doc = format!("<p:r xmlns:p=\"{uri}\">{}</p:r>", "<p:a/>".repeat(9_000));
        let n = parse(&doc).expect("parses");
        let c = canonicalize(&n, &[], None).expect("fits");
        assert!(c.len() < 2 * doc.len());
    }
}
