//! An element tree that serialises straight to exclusive canonical XML (no comments):
//! namespace declarations appear on the first element that visibly uses them, sorted by
//! prefix; attributes are sorted by namespace URI then local name; empty elements are
//! written as start and end tags; text and attribute values are escaped as c14n does.
//! Every element and attribute name carries a prefix (no default namespace), which keeps
//! the rules simple and the output identical to what a verifier computes.

/// An attribute: (prefix and namespace, or none for an unqualified one; local name; value).
type Attr = (Option<(&'static str, &'static str)>, &'static str, String);

/// An element under construction.
#[derive(Debug, Clone)]
pub struct El {
    prefix: &'static str,
    ns: &'static str,
    local: &'static str,
    /// (prefix and namespace, or none for an unqualified attribute; local name; value)
    attrs: Vec<Attr>,
    children: Vec<Child>,
    /// Declarations wanted although no name uses them (QNames in attribute values, as
    /// in `xsi:type`). Never use on anything signed: exclusive c14n drops them.
    extra_ns: Vec<(&'static str, &'static str)>,
}

#[derive(Debug, Clone)]
enum Child {
    El(El),
    Text(String),
}

impl El {
    /// `<prefix:local>` in namespace `ns`.
    pub fn new(prefix: &'static str, ns: &'static str, local: &'static str) -> Self {
        Self {
            prefix,
            ns,
            local,
            attrs: Vec::new(),
            children: Vec::new(),
            extra_ns: Vec::new(),
        }
    }

    /// Declares a namespace prefix here although no element or attribute name uses it
    /// (for QNames in attribute values such as `xsi:type`). The document carries it; the
    /// canonical form ([`El::to_canonical`]) does not, as exclusive c14n drops it (the
    /// prefix is declared again where a name first uses it), so a signature over an
    /// element with such declarations still verifies.
    pub fn declare(mut self, prefix: &'static str, ns: &'static str) -> Self {
        self.extra_ns.push((prefix, ns));
        self
    }

    /// Adds an unqualified attribute.
    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.push_attr((None, name, value.into()));
        self
    }

    /// Keeps attributes in canonical order (namespace URI, then local name; unqualified
    /// first) as they are added, so that each of the several writes of a signed element
    /// does not sort them again.
    fn push_attr(&mut self, a: Attr) {
        let key = |a: &Attr| (a.0.map_or("", |x| x.1), a.1);
        let at = self.attrs.partition_point(|x| key(x) <= key(&a));
        self.attrs.insert(at, a);
    }

    /// Adds an unqualified attribute when `value` is some.
    pub fn attr_opt(self, name: &'static str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    /// Adds a namespace-qualified attribute.
    pub fn attr_ns(
        mut self,
        prefix: &'static str,
        ns: &'static str,
        name: &'static str,
        value: impl Into<String>,
    ) -> Self {
        self.push_attr((Some((prefix, ns)), name, value.into()));
        self
    }

    /// Appends a child element.
    pub fn child(mut self, c: El) -> Self {
        self.children.push(Child::El(c));
        self
    }

    /// Appends child elements.
    pub fn children(mut self, cs: impl IntoIterator<Item = El>) -> Self {
        self.children.extend(cs.into_iter().map(Child::El));
        self
    }

    /// Appends text.
    pub fn text(mut self, t: impl Into<String>) -> Self {
        self.children.push(Child::Text(t.into()));
        self
    }

    /// Inserts a child element at position `index` among the children.
    pub fn insert_child(&mut self, index: usize, c: El) {
        let i = index.min(self.children.len());
        self.children.insert(i, Child::El(c));
    }

    /// The canonical form of this element as a document apex (what a signature covers):
    /// without the declarations of [`El::declare`].
    pub fn to_canonical(&self) -> String {
        let mut out = String::with_capacity(self.size_hint());
        self.write(&mut out, &mut Vec::new(), false);
        out
    }

    /// The element as a document, with an XML declaration.
    pub fn to_document(&self) -> String {
        const DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
        let mut out = String::with_capacity(DECL.len() + self.size_hint());
        out.push_str(DECL);
        self.write(&mut out, &mut Vec::new(), true);
        out
    }

    /// About the length of the serialised form (a little more when declarations are few
    /// and nothing needs escaping), so that writing allocates once.
    fn size_hint(&self) -> usize {
        let name = self.prefix.len() + 1 + self.local.len();
        let decls = 10 + self.prefix.len() + self.ns.len();
        let attrs: usize = self
            .attrs
            .iter()
            .map(|(q, n, v)| 4 + q.map_or(0, |(p, _)| p.len() + 1) + n.len() + v.len())
            .sum();
        let children: usize = self
            .children
            .iter()
            .map(|c| match c {
                Child::El(e) => e.size_hint(),
                Child::Text(t) => t.len() + t.len() / 16,
            })
            .sum();
        2 * name + 5 + decls + attrs + children
    }

    /// Writes the element; `extra` adds the declarations of [`El::declare`].
    fn write(
        &self,
        out: &mut String,
        rendered: &mut Vec<(&'static str, &'static str)>,
        extra: bool,
    ) {
        let mark = rendered.len();
        let mut decls: Vec<(&'static str, &'static str)> = Vec::new();
        let mut want = |p: &'static str, u: &'static str, rendered: &Vec<(&str, &str)>| {
            let current = rendered.iter().rev().find(|(rp, _)| *rp == p).map(|x| x.1);
            if current != Some(u) && !decls.iter().any(|(dp, _)| *dp == p) {
                decls.push((p, u));
            }
        };
        want(self.prefix, self.ns, rendered);
        for (q, _, _) in &self.attrs {
            if let Some((p, u)) = q {
                want(p, u, rendered);
            }
        }
        for (p, u) in self.extra_ns.iter().filter(|_| extra) {
            want(p, u, rendered);
        }
        decls.sort_by(|a, b| a.0.cmp(b.0));
        out.push('<');
        out.push_str(self.prefix);
        out.push(':');
        out.push_str(self.local);
        for (p, u) in &decls {
            out.push_str(" xmlns:");
            out.push_str(p);
            out.push_str("=\"");
            escape_attr(u, out);
            out.push('"');
        }
        for (q, name, value) in &self.attrs {
            out.push(' ');
            if let Some((p, _)) = q {
                out.push_str(p);
                out.push(':');
            }
            out.push_str(name);
            out.push_str("=\"");
            escape_attr(value, out);
            out.push('"');
        }
        out.push('>');
        rendered.extend(decls);
        for c in &self.children {
            match c {
                Child::El(e) => e.write(out, rendered, extra),
                Child::Text(t) => escape_text(t, out),
            }
        }
        rendered.truncate(mark);
        out.push_str("</");
        out.push_str(self.prefix);
        out.push(':');
        out.push_str(self.local);
        out.push('>');
    }
}

/// Escapes text as canonical XML does.
pub(crate) fn escape_text(s: &str, out: &mut String) {
    super::escape_into(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'>' => Some("&gt;"),
        b'\r' => Some("&#xD;"),
        _ => None,
    });
}

/// Escapes an attribute value as canonical XML does.
pub(crate) fn escape_attr(s: &str, out: &mut String) {
    super::escape_into(s, out, |b| match b {
        b'&' => Some("&amp;"),
        b'<' => Some("&lt;"),
        b'"' => Some("&quot;"),
        b'\t' => Some("&#x9;"),
        b'\n' => Some("&#xA;"),
        b'\r' => Some("&#xD;"),
        _ => None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_go_where_they_are_used_and_attributes_are_sorted() {
        let e = El::new("samlp", "urn:p", "Response")
            .attr("Version", "2.0")
            .attr("ID", "_1")
            .child(El::new("saml", "urn:a", "Issuer").text("a&b<c>\r"))
            .child(
                El::new("saml", "urn:a", "Assertion")
                    .attr("ID", "x\"\n")
                    .child(El::new("saml", "urn:a", "Subject")),
            );
        assert_eq!(
            e.to_canonical(),
            "<samlp:Response xmlns:samlp=\"urn:p\" ID=\"_1\" Version=\"2.0\">\
             <saml:Issuer xmlns:saml=\"urn:a\">a&amp;b&lt;c&gt;&#xD;</saml:Issuer>\
             <saml:Assertion xmlns:saml=\"urn:a\" ID=\"x&quot;&#xA;\"><saml:Subject></saml:Subject></saml:Assertion>\
             </samlp:Response>"
        );
    }

    #[test]
    fn qualified_attributes_sort_after_unqualified_ones_and_declare_their_prefix() {
        let e = El::new("a", "urn:a", "E")
            .attr_ns("x", "urn:x", "type", "t")
            .attr("Z", "z");
        assert_eq!(
            e.to_canonical(),
            "<a:E xmlns:a=\"urn:a\" xmlns:x=\"urn:x\" Z=\"z\" x:type=\"t\"></a:E>"
        );
    }
}
