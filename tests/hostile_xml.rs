//! The cost of hostile XML at a real `causeway serve`, measured from outside: the
//! process's own CPU time and peak resident memory (from /proc) before and after a
//! volley of the messages that once cost gigabytes or minutes. Each message is sent
//! without an account; the endpoint must refuse it with a 400 and stay cheap.
//!
//! The bounds asserted are generous for a debug build on a shared 2-core machine (the
//! guide for a release build is ≤ 100 ms of CPU and ≤ 32 MB per request); what they
//! catch is the old behaviour, which was three orders of magnitude above them.

mod common;

use std::process::Command;

use common::endpoint::{alert, deflate_b64, pct, Browser, Endpoint};

const SP: &str = "https://sp.hostile.test";

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // The command name may contain spaces: fields are counted after its closing ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    ticks / hz
}

/// Peak resident set size in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

/// A self-signed certificate (base64 DER) for the SP's signing key in its metadata.
fn sp_certificate() -> String {
    use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509};
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = x509::X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "sp.hostile.test")
        .expect("cn");
    let name = name.build();
    let mut b = x509::X509Builder::new().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("t"))
        .expect("na");
    b.set_pubkey(&key).expect("pubkey");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b.build().to_der().expect("der"))
}

fn authn_request(inner: &str, extra_ns: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\"{extra_ns} ID=\"_r1\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\" AssertionConsumerServiceURL=\"{SP}/acs\"><saml:Issuer>{SP}</saml:Issuer>{inner}</samlp:AuthnRequest>"
    )
}

/// The 818-byte attack on the old reader: every element redeclares many prefixes,
/// nested, with thousands of siblings under the deepest one.
fn redeclaration_bomb(per_element: usize, depth: usize, leaves: usize) -> String {
    let decls: String = (0..per_element)
        .map(|i| format!(" xmlns:p{i}=\"urn:x\""))
        .collect();
    let open = format!("<samlp:Extensions><e{decls}>") + &format!("<e{decls}>").repeat(depth - 1);
    let close = "</e>".repeat(depth) + "</samlp:Extensions>";
    authn_request(&format!("{open}{}{close}", "<f/>".repeat(leaves)), "")
}

/// The 1.7 KB attack on the old verifier: a signature the SP never made, whose reference
/// names a huge InclusiveNamespaces PrefixList over content with thousands of elements.
fn prefix_list_bomb(prefixes: &str, leaves: usize) -> String {
    let sig = format!(
        "<ds:Signature><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/><ds:Reference URI=\"#_r1\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"><ec:InclusiveNamespaces xmlns:ec=\"http://www.w3.org/2001/10/xml-exc-c14n#\" PrefixList=\"{prefixes}\"/></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</ds:DigestValue></ds:Reference></ds:SignedInfo><ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>"
    );
    let body = format!(
        "<samlp:Extensions>{}</samlp:Extensions>",
        "<saml:Attribute/>".repeat(leaves)
    );
    authn_request(
        &format!("{sig}{body}"),
        " xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"",
    )
}

#[test]
fn hostile_xml_costs_the_endpoint_little_cpu_and_memory() {
    let ep = Endpoint::start("hostile-xml", "", &[]);
    let metadata = format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{SP}\"><md:SPSSODescriptor AuthnRequestsSigned=\"true\" protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{SP}/acs\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>",
        sp_certificate()
    );
    let md_file = ep.dir.join("sp.xml");
    std::fs::write(&md_file, metadata).expect("metadata");
    ep.cli(
        &[
            "apps",
            "add",
            "--saml-metadata",
            md_file.to_str().expect("path"),
        ],
        None,
    );
    // The endpoint reloads its applications: wait until the SP is known.
    let b = Browser::new(&ep.dir);
    let probe = deflate_b64(&authn_request("", ""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, _, body) = b.get(&format!("{}/saml/sso?SAMLRequest={}", ep.url, pct(&probe)));
        if body.contains("signs its requests") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SP not loaded: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "the 1.1 KB request that cost 3.7 s and 5.4 GB: 64 prefixes per element, 44 deep, 9,000 leaves",
            redeclaration_bomb(64, 44, 9_000),
            "inflates to more than",
        ),
        (
            "the same within the message size: 64 prefixes per element, 44 deep, 1,000 leaves",
            redeclaration_bomb(64, 44, 1_000),
            "too many namespace declarations on one element",
        ),
        (
            "redeclared prefixes within every cap, 1,000 leaves in the deepest scope",
            redeclaration_bomb(16, 3, 1_000),
            "",
        ),
        (
            "a PrefixList of 3,000 distinct prefixes",
            prefix_list_bomb(
                &(0..3_000)
                    .map(|i| format!("p{i}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                1_000,
            ),
            "prefixlist",
        ),
        (
            "a PrefixList of one prefix 8,000 times over 1,000 elements",
            prefix_list_bomb(&"saml ".repeat(8_000), 1_000),
            "does not verify with any trusted key",
        ),
    ];
    use base64::Engine;
    let b64 = |xml: &str| base64::engine::general_purpose::STANDARD.encode(xml);
    // The same bombs over HTTP-POST and at the logout endpoint: one reader behind all.
    let post_bomb = redeclaration_bomb(64, 44, 1_000);
    let requests: Vec<(String, &str, Option<String>, &str)> = cases
        .iter()
        .map(|(what, xml, words)| (what.to_string(), *words, None, xml.as_str()))
        .chain([(
            "redeclared prefixes over HTTP-POST".to_string(),
            "too many namespace declarations on one element",
            Some(format!("SAMLRequest={}", pct(&b64(&post_bomb)))),
            "",
        )])
        .collect();
    for (what, words, post, xml) in &requests {
        let (method, url, req_body) = match post {
            Some(form) => (
                "POST",
                format!("{}/saml/sso", ep.url),
                Some(form.as_bytes()),
            ),
            None => (
                "GET",
                format!("{}/saml/sso?SAMLRequest={}", ep.url, pct(&deflate_b64(xml))),
                None,
            ),
        };
        let slo = format!(
            "{}/saml/slo?SAMLRequest={}",
            ep.url,
            pct(&deflate_b64(&redeclaration_bomb(64, 44, 1_000)))
        );
        let (pid, cpu0, rss0) = (ep.pid(), cpu_seconds(ep.pid()), peak_rss_mib(ep.pid()));
        const VOLLEY: usize = 8;
        let mut answers = Vec::new();
        for _ in 0..VOLLEY {
            answers.push(b.request(method, &url, None, req_body));
        }
        // And one logout message with the same shape, refused by the same reader.
        let slo_answer = b.get(&slo);
        let cpu = (cpu_seconds(pid) - cpu0) / (VOLLEY + 1) as f64;
        let rss = peak_rss_mib(pid) - rss0;
        eprintln!(
            "{what}: {} bytes on the wire, {} bytes of XML; {:.1} ms CPU per request, peak RSS +{rss:.1} MiB",
            url.len() + req_body.map_or(0, <[u8]>::len),
            if xml.is_empty() { post_bomb.len() } else { xml.len() },
            cpu * 1000.0
        );
        // Cost first: it is what this test is about.
        assert!(
            cpu < 0.5,
            "{what}: {:.0} ms of CPU per request",
            cpu * 1000.0
        );
        assert!(rss < 64.0, "{what}: peak memory grew by {rss:.0} MiB");
        for (s, h, body) in answers {
            assert_eq!(s, 400, "{what}: {h}{body}");
            let text = alert(&body).unwrap_or(body.clone()).to_lowercase();
            assert!(text.contains(words), "{what}: {text}");
        }
        assert_eq!(
            slo_answer.0, 400,
            "logout bomb: {}{}",
            slo_answer.1, slo_answer.2
        );
    }
    let (s, _, body) = b.get(&format!("{}/healthz", ep.url));
    assert_eq!(s, 200, "{body}");
}
