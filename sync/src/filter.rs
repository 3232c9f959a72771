//! A connector's `filter` (RFC 4515 text), parsed once and evaluated by sync itself against
//! each object it holds.
//!
//! The filter cannot be left to the DC: a DirSync delta returns the objects that changed
//! *and still match*, so an object edited out of the filter would never be seen to leave
//! scope. Evaluating locally on the object's whole attribute set turns that edit into a
//! deletion at the endpoint, as Entra Connect's scoping filters do. No crate parses RFC 4515
//! into a tree that can be evaluated (ldap3 turns it straight into BER), hence this module.
//!
//! Comparisons follow AD's defaults for the attributes people filter on: case-insensitive
//! strings, whole numbers compared as numbers, and the bitwise matching rules
//! `1.2.840.113556.1.4.803` (AND) and `…804` (OR). The text is bounded (length, depth,
//! nodes) so a filter costs linear time to read and evaluate.

use std::collections::BTreeMap;
use std::fmt;

use crate::ad::entry::Values;

/// The longest filter text accepted.
pub const MAX_LEN: usize = 4096;
/// The deepest nesting of `&`, `|` and `!`.
pub const MAX_DEPTH: usize = 32;

const BIT_AND: &str = "1.2.840.113556.1.4.803";
const BIT_OR: &str = "1.2.840.113556.1.4.804";

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `(&…)`: all of them (an empty list is true).
    And(Vec<Filter>),
    /// `(|…)`: any of them (an empty list is false).
    Or(Vec<Filter>),
    /// `(!…)`.
    Not(Box<Filter>),
    /// `(attr=value)`.
    Equal(String, Vec<u8>),
    /// `(attr=*)`.
    Present(String),
    /// `(attr=ini*any*fin)`.
    Substrings {
        /// The attribute.
        attr: String,
        /// The part before the first `*`.
        initial: Option<Vec<u8>>,
        /// The parts between stars.
        any: Vec<Vec<u8>>,
        /// The part after the last `*`.
        last: Option<Vec<u8>>,
    },
    /// `(attr>=value)`.
    GreaterOrEqual(String, Vec<u8>),
    /// `(attr<=value)`.
    LessOrEqual(String, Vec<u8>),
    /// `(attr~=value)`: approximate, evaluated as case-insensitive equality (as AD does).
    Approx(String, Vec<u8>),
    /// `(attr:1.2.840.113556.1.4.803:=n)` or `…804`: every bit / any bit of `n`.
    Bits {
        /// The attribute.
        attr: String,
        /// The bits.
        mask: u64,
        /// All bits (803) rather than any (804).
        all: bool,
    },
}

/// Why a filter's text was refused, with the byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Where in the text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    /// Parses RFC 4515 text.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        if text.len() > MAX_LEN {
            return Err(FilterError {
                offset: MAX_LEN,
                message: format!("a filter is at most {MAX_LEN} bytes"),
            });
        }
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let f = p.filter(0)?;
        if p.i != p.s.len() {
            return Err(p.err("text after the filter's closing parenthesis"));
        }
        Ok(f)
    }

    /// Every attribute the filter reads (lower-cased), so that an import asks for them.
    pub fn attributes(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut stack = vec![self];
        while let Some(f) = stack.pop() {
            match f {
                Filter::And(v) | Filter::Or(v) => stack.extend(v.iter()),
                Filter::Not(f) => stack.push(f),
                Filter::Equal(a, _)
                | Filter::Present(a)
                | Filter::GreaterOrEqual(a, _)
                | Filter::LessOrEqual(a, _)
                | Filter::Approx(a, _)
                | Filter::Substrings { attr: a, .. }
                | Filter::Bits { attr: a, .. } => {
                    out.insert(a.to_ascii_lowercase());
                }
            }
        }
        out
    }

    /// Whether an object with these attributes (lower-case names) matches.
    pub fn matches(&self, attrs: &BTreeMap<String, Values>) -> bool {
        let vals = |a: &str| attrs.get(a).map_or(&[][..], |v| v.values.as_slice());
        match self {
            Self::And(fs) => fs.iter().all(|f| f.matches(attrs)),
            Self::Or(fs) => fs.iter().any(|f| f.matches(attrs)),
            Self::Not(f) => !f.matches(attrs),
            Self::Present(a) => a == "objectclass" || !vals(a).is_empty(),
            Self::Equal(a, v) | Self::Approx(a, v) => vals(a).iter().any(|x| equal(x, v)),
            Self::GreaterOrEqual(a, v) => vals(a).iter().any(|x| order(x, v).is_ge()),
            Self::LessOrEqual(a, v) => vals(a).iter().any(|x| order(x, v).is_le()),
            Self::Substrings {
                attr,
                initial,
                any,
                last,
            } => vals(attr)
                .iter()
                .any(|x| substrings(x, initial.as_deref(), any, last.as_deref())),
            Self::Bits { attr, mask, all } => vals(attr).iter().any(|x| {
                std::str::from_utf8(x)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .is_some_and(|n| {
                        let n = n as u64;
                        if *all {
                            n & mask == *mask
                        } else {
                            n & mask != 0
                        }
                    })
            }),
        }
    }
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

fn equal(x: &[u8], v: &[u8]) -> bool {
    x.eq_ignore_ascii_case(v)
}

fn as_int(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

fn order(x: &[u8], v: &[u8]) -> std::cmp::Ordering {
    match (as_int(x), as_int(v)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => lower(x).cmp(&lower(v)),
    }
}

fn substrings(x: &[u8], initial: Option<&[u8]>, any: &[Vec<u8>], last: Option<&[u8]>) -> bool {
    let x = lower(x);
    let mut rest: &[u8] = &x;
    if let Some(i) = initial {
        let i = lower(i);
        match rest.strip_prefix(i.as_slice()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    let last = last.map(lower);
    let end = last.as_ref().map_or(0, Vec::len);
    if rest.len() < end {
        return false;
    }
    let (mut middle, tail) = rest.split_at(rest.len() - end);
    if let Some(l) = &last {
        if tail != l.as_slice() {
            return false;
        }
    }
    for a in any.iter().filter(|a| !a.is_empty()) {
        let a = lower(a);
        match middle.windows(a.len()).position(|w| w == a.as_slice()) {
            Some(p) => middle = &middle[p + a.len()..],
            None => return false,
        }
    }
    true
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, message: &str) -> FilterError {
        FilterError {
            offset: self.i,
            message: message.to_owned(),
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), FilterError> {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn filter(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(self.err(&format!("nested deeper than {MAX_DEPTH}")));
        }
        self.expect(b'(')?;
        let f = match self.s.get(self.i) {
            Some(b'&') => {
                self.i += 1;
                Filter::And(self.list(depth)?)
            }
            Some(b'|') => {
                self.i += 1;
                Filter::Or(self.list(depth)?)
            }
            Some(b'!') => {
                self.i += 1;
                Filter::Not(Box::new(self.filter(depth + 1)?))
            }
            Some(_) => self.item()?,
            None => return Err(self.err("the filter ends after '('")),
        };
        self.expect(b')')?;
        Ok(f)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<Filter>, FilterError> {
        let mut out = Vec::new();
        while self.s.get(self.i) == Some(&b'(') {
            out.push(self.filter(depth + 1)?);
        }
        Ok(out)
    }

    fn item(&mut self) -> Result<Filter, FilterError> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b';' | b':'))
        {
            self.i += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.i])
            .map_err(|_| self.err("an attribute name that is not ASCII"))?
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(self.err("expected an attribute name"));
        }
        let op = match (self.s.get(self.i), self.s.get(self.i + 1)) {
            (Some(b'>'), Some(b'=')) => ">=",
            (Some(b'<'), Some(b'=')) => "<=",
            (Some(b'~'), Some(b'=')) => "~=",
            (Some(b'='), _) => "=",
            _ => return Err(self.err("expected =, >=, <= or ~= after the attribute name")),
        };
        self.i += op.len();
        if let Some(rule) = name.strip_suffix(':') {
            // Extensible match: attr:rule:=value. Only AD's bitwise rules are evaluated.
            if op != "=" {
                return Err(self.err("an extensible match takes :="));
            }
            let (attr, rule) = rule
                .split_once(':')
                .ok_or_else(|| self.err("expected attribute:rule:=value"))?;
            let all = match rule {
                BIT_AND => true,
                BIT_OR => false,
                r => {
                    return Err(self.err(&format!(
                        "matching rule {r} is not evaluated here (only {BIT_AND} and {BIT_OR})"
                    )))
                }
            };
            let v = self.value()?;
            let mask = std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| self.err("a bitwise match takes a whole number"))?;
            return Ok(Filter::Bits {
                attr: attr.to_owned(),
                mask,
                all,
            });
        }
        if name.contains(':') {
            return Err(self.err("':' in an attribute name outside an extensible match"));
        }
        if op != "=" {
            let v = self.value()?;
            return Ok(match op {
                ">=" => Filter::GreaterOrEqual(name, v),
                "<=" => Filter::LessOrEqual(name, v),
                _ => Filter::Approx(name, v),
            });
        }
        // `=`: equality, presence or substrings, told apart by unescaped stars.
        let mut parts = vec![self.value()?];
        while self.s.get(self.i) == Some(&b'*') {
            self.i += 1;
            parts.push(self.value()?);
        }
        Ok(match parts.len() {
            1 => Filter::Equal(name, parts.remove(0)),
            2 if parts.iter().all(Vec::is_empty) => Filter::Present(name),
            _ => {
                let last = parts.pop().filter(|p| !p.is_empty());
                let initial = Some(parts.remove(0)).filter(|p| !p.is_empty());
                Filter::Substrings {
                    attr: name,
                    initial,
                    any: parts.into_iter().filter(|p| !p.is_empty()).collect(),
                    last,
                }
            }
        })
    }

    /// A value up to `*` or `)`, with `\XX` escapes decoded.
    fn value(&mut self) -> Result<Vec<u8>, FilterError> {
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err(self.err("the filter ends inside a value")),
                Some(b')' | b'*') => return Ok(out),
                Some(b'(') => return Err(self.err("'(' inside a value must be written \\28")),
                Some(b'\\') => {
                    let hex = self
                        .s
                        .get(self.i + 1..self.i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            self.err("'\\' must be followed by two hexadecimal digits")
                        })?;
                    out.push(hex);
                    self.i += 3;
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
