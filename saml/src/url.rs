//! The one check every URL a browser may be sent to passes when it is registered (SAML
//! endpoints from metadata, WS-Fed replies from the configuration).

/// Whether `u` is an absolute http(s) URL of at most 2048 characters with nothing that
/// could break out of an HTML attribute or a header (whitespace, controls, `"`, `<`, `>`).
/// Every URL a browser may be sent to passes this when it is registered.
pub fn is_safe_http_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2048
        && !u
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '<' || c == '>')
}

#[cfg(test)]
mod tests {
    use super::is_safe_http_url;

    #[test]
    fn only_plain_absolute_http_urls_are_safe() {
        assert!(is_safe_http_url("https://sp.example/acs?x=1"));
        assert!(is_safe_http_url("http://localhost:8080/acs"));
        for bad in [
            "javascript:alert(1)",
            "//sp.example/acs",
            "/acs",
            "https://sp.example/a b",
            "https://sp.example/\"onload=x",
            "https://sp.example/<script>",
            "https://sp.example/\r\nSet-Cookie: x",
        ] {
            assert!(!is_safe_http_url(bad), "{bad:?}");
        }
        let long = format!("https://sp.example/{}", "a".repeat(2048));
        assert!(!is_safe_http_url(&long));
    }
}
