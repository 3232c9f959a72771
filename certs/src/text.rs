//! Quoting outside text in messages: never more than a bounded excerpt.

/// At most `max` characters of `s`, with `…` when it was cut.
pub(crate) fn excerpt(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}
