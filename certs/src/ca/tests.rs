use std::os::unix::fs::PermissionsExt;
use std::time::UNIX_EPOCH;

use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::UnixTime;
use x509_parser::prelude::X509Certificate;

use super::*;
use causeway_testkit::TempDir as TestDir;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// 2026-11-25T00:00:00Z, a fixed "now" for repeatable certificates.
const NOW: u64 = 1_795_564_800;

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, c) = x509_parser::parse_x509_certificate(der).expect("parses");
    assert!(rest.is_empty());
    c
}

fn cn<'a>(c: &'a X509Certificate<'_>) -> &'a str {
    c.subject()
        .iter_common_name()
        .next()
        .expect("has a CN")
        .as_str()
        .expect("CN is text")
}

/// A CSR that asks for everything an attacker would like.
fn greedy_csr() -> String {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut p = CertificateParams::new(vec!["evil.example".to_owned(), "10.0.0.1".to_owned()])
        .expect("params");
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "admin");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::CodeSigning,
    ];
    p.serialize_request(&key).expect("csr").pem().expect("pem")
}

fn new_ca(d: &TestDir) -> Ca {
    Ca::load_or_create(&d.path().join("ca"), t(NOW)).expect("CA")
}

#[test]
fn ca_is_created_once_and_reloaded_identically() {
    let d = TestDir::new("ca-once");
    let dir = d.path().join("nested").join("ca");
    let ca = Ca::load_or_create(&dir, t(NOW)).expect("create");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);
    let key_before = fs::read(dir.join(CA_KEY_FILE)).expect("key");

    let again = Ca::load_or_create(&dir, t(NOW + 3600)).expect("reload");
    assert_eq!(again.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!(again.cert_der(), ca.cert_der());
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(fs::read(dir.join(CA_KEY_FILE)).expect("key"), key_before);
    assert_eq!(ca.fingerprint_sha256(), fingerprint_of_der(ca.cert_der()));
    assert_eq!(ca.fingerprint_sha256().len(), 64);
    // The PEM we hand out is the file's certificate.
    assert_eq!(
        CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("pem"),
        *ca.cert_der()
    );
    // No temporary files are left behind.
    let names: Vec<_> = fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn ca_certificate_has_the_promised_shape() {
    let d = TestDir::new("ca-shape");
    let ca = new_ca(&d);
    let c = parse(ca.cert_der());
    assert_eq!(cn(&c), CA_COMMON_NAME);
    assert_eq!(c.subject(), c.issuer());
    let bc = c.basic_constraints().expect("ok").expect("present").value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = c.key_usage().expect("ok").expect("present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());
    let v = c.validity();
    assert_eq!(v.not_before.timestamp(), NOW as i64 - 300);
    assert_eq!(v.not_after.timestamp(), NOW as i64 + 3650 * 86_400);
    assert_eq!(unix_secs(ca.not_after()), v.not_after.timestamp());
    assert_eq!(c.raw_serial().len(), 16);
    // It is really self-signed with its own key.
    c.verify_signature(None).expect("self-signature verifies");
}

#[test]
fn a_key_readable_by_others_is_refused_with_the_fix() {
    let d = TestDir::new("ca-perm");
    let dir = d.path().join("ca");
    new_ca(&d);
    let key = dir.join(CA_KEY_FILE);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = Ca::load_or_create(&dir, t(NOW)).expect_err("refused");
    match &err {
        CertsError::InsecureFile { path, mode } => {
            assert_eq!(path, &key);
            assert_eq!(*mode, 0o644);
        }
        other => panic!("unexpected error {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("chmod 600 {}", key.display())),
        "{msg}"
    );
    assert!(msg.contains("0644"), "{msg}");

    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert!(matches!(
        Ca::load(&dir, t(NOW)),
        Err(CertsError::InsecureFile { .. })
    ));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    Ca::load(&dir, t(NOW)).expect("loads again");
}

#[test]
fn a_directory_writable_by_others_is_refused() {
    let d = TestDir::new("ca-dirperm");
    let dir = d.path().join("ca");
    fs::create_dir(&dir).expect("mkdir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = Ca::load_or_create(&dir, t(NOW)).expect_err("refused");
    assert!(
        matches!(err, CertsError::InsecureDirectory { mode: 0o777, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 700"), "{err}");
}

#[test]
fn racing_first_creations_agree_on_one_ca() {
    let d = TestDir::new("ca-race");
    let dir = d.path().join("ca");
    let fps: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    Ca::load_or_create(&dir, t(NOW))
                        .expect("CA")
                        .fingerprint_sha256()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(fps.windows(2).all(|w| w[0] == w[1]), "{fps:?}");
    assert_eq!(fs::read_dir(&dir).expect("list").count(), 2);
}

#[test]
fn broken_ca_directories_get_precise_errors() {
    let d = TestDir::new("ca-broken");
    let dir = d.path().join("ca");
    new_ca(&d);
    let key_path = dir.join(CA_KEY_FILE);
    let cert_path = dir.join(CA_CERT_FILE);

    // A certificate from another CA next to our key.
    let other = TestDir::new("ca-other");
    new_ca(&other);
    let saved = fs::read(&cert_path).expect("read");
    fs::copy(other.path().join("ca").join(CA_CERT_FILE), &cert_path).expect("copy");
    assert!(matches!(
        Ca::load_or_create(&dir, t(NOW)),
        Err(CertsError::CaKeyMismatch { .. })
    ));
    fs::write(&cert_path, &saved).expect("restore");

    // Expired (and not yet valid).
    let later = t(NOW + 3651 * 86_400);
    let err = Ca::load(&dir, later).expect_err("expired");
    assert!(matches!(err, CertsError::CaNotValidNow { .. }), "{err:?}");
    assert!(Ca::load(&dir, t(NOW - 86_400)).is_err());

    // A key file that is not a key: the message does not quote it.
    let saved_key = fs::read(&key_path).expect("read");
    fs::write(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNhdWNl\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let err = Ca::load(&dir, t(NOW)).expect_err("corrupt");
    assert!(matches!(err, CertsError::CorruptCaFile { .. }), "{err:?}");
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    fs::write(&key_path, &saved_key).expect("restore");

    // The key is gone but the certificate is there.
    fs::remove_file(&key_path).expect("rm");
    let err = Ca::load_or_create(&dir, t(NOW)).expect_err("incomplete");
    assert!(matches!(err, CertsError::IncompleteCa { .. }), "{err:?}");
}

#[test]
fn debug_of_the_ca_hides_the_key() {
    let d = TestDir::new("ca-debug");
    let ca = new_ca(&d);
    let key_pem = fs::read_to_string(d.path().join("ca").join(CA_KEY_FILE)).expect("key");
    let body: String = key_pem.lines().nth(1).expect("a base64 line").to_owned();
    let shown = format!("{ca:?}");
    assert!(!shown.contains(&body), "{shown}");
    assert!(!shown.contains("PRIVATE"), "{shown}");
    assert!(shown.contains(&ca.fingerprint_sha256()));
}

#[test]
fn agent_certificates_ignore_what_the_csr_asks_for() {
    let d = TestDir::new("ca-csr");
    let ca = new_ca(&d);
    let id = AgentId::generate().expect("id");
    let now = t(NOW + 1000);
    let issued = ca
        .sign_agent_csr(&greedy_csr(), &id, now, DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    assert_eq!(issued.fingerprint(), fingerprint_of_der(issued.der()));
    assert_eq!(
        CertificateDer::from_pem_slice(issued.pem().as_bytes())
            .expect("pem")
            .as_ref(),
        issued.der()
    );

    let c = parse(issued.der());
    assert_eq!(cn(&c), id.as_str());
    assert_eq!(c.subject().iter().count(), 1, "only the CN");
    assert_eq!(c.issuer(), parse(ca.cert_der()).subject());
    assert!(
        c.subject_alternative_name().expect("ok").is_none(),
        "no SAN at all"
    );
    let eku = c.extended_key_usage().expect("ok").expect("present").value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth && !eku.code_signing && !eku.any && eku.other.is_empty());
    let ku = c.key_usage().expect("ok").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let bc = c.basic_constraints().expect("ok").expect("present").value;
    assert!(!bc.ca);
    assert_eq!(c.raw_serial().len(), 16);
    assert_eq!(c.validity().not_before.timestamp(), NOW as i64 + 1000 - 300);
    assert_eq!(
        c.validity().not_after.timestamp(),
        NOW as i64 + 1000 + 30 * 86_400
    );
    assert_eq!(
        unix_secs(issued.not_after()),
        c.validity().not_after.timestamp()
    );
    assert_eq!(
        unix_secs(issued.not_before()),
        c.validity().not_before.timestamp()
    );
    c.verify_signature(Some(parse(ca.cert_der()).public_key()))
        .expect("signed by the CA");

    // It chains to the CA for client authentication (webpki, as the hub checks it).
    let at = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 2000));
    ca.client_verifier()
        .expect("verifier")
        .verify_client_cert(&issued.cert_der(), &[], at)
        .expect("accepted by the CA's client verifier");
    // ... and not after it expires.
    let late = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 31 * 86_400 + 1000));
    assert!(ca
        .client_verifier()
        .expect("verifier")
        .verify_client_cert(&issued.cert_der(), &[], late)
        .is_err());
    // Two signatures of the same CSR get different serials.
    let again = ca
        .sign_agent_csr(&greedy_csr(), &id, now, DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    assert_ne!(parse(again.der()).raw_serial(), c.raw_serial());
}

#[test]
fn bad_csrs_are_refused() {
    let d = TestDir::new("ca-badcsr");
    let ca = new_ca(&d);
    let id = AgentId::generate().expect("id");
    let sign = |pem: &str| ca.sign_agent_csr(pem, &id, t(NOW), DEFAULT_AGENT_CERT_VALIDITY);

    // Tampered: the CN changes after signing.
    let pem = greedy_csr();
    let mut der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec();
    let at = der
        .windows(5)
        .position(|w| w == b"admin")
        .expect("CN in DER");
    der[at + 4] = b'm';
    let tampered = pem_encode("CERTIFICATE REQUEST", &der);
    assert!(matches!(
        sign(&tampered),
        Err(CertsError::Csr(CsrError::BadSignature))
    ));

    // Oversized, even if it would otherwise be fine.
    let big = format!("{pem}{}", " ".repeat(MAX_CSR_PEM_LEN));
    let err = sign(&big).expect_err("too large");
    assert!(
        matches!(
            err,
            CertsError::Csr(CsrError::TooLarge {
                max: MAX_CSR_PEM_LEN,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("16384"), "{err}");

    assert!(matches!(
        ca.check_agent_csr(&tampered),
        Err(CertsError::Csr(CsrError::BadSignature))
    ));
    ca.check_agent_csr(&pem)
        .expect("the untampered CSR is fine");
    assert!(matches!(
        sign("hello"),
        Err(CertsError::Csr(CsrError::NotPem))
    ));
    assert!(matches!(
        sign(&pem_encode("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00")),
        Err(CertsError::Csr(CsrError::Unparsable))
    ));
    // A certificate is not a CSR.
    assert!(matches!(
        sign(ca.cert_pem()),
        Err(CertsError::Csr(CsrError::NotPem))
    ));
    // Trailing bytes inside the DER.
    let mut long = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec();
    long.push(0);
    assert!(matches!(
        sign(&pem_encode("CERTIFICATE REQUEST", &long)),
        Err(CertsError::Csr(CsrError::Unparsable))
    ));
}

#[test]
fn other_accepted_key_types_sign() {
    let d = TestDir::new("ca-keytypes");
    let ca = new_ca(&d);
    let id = AgentId::generate().expect("id");
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = KeyPair::generate_for(alg).expect("key");
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem");
        ca.sign_agent_csr(&csr, &id, t(NOW), DEFAULT_AGENT_CERT_VALIDITY)
            .expect("signed");
    }
}

#[test]
fn validity_is_bounded_and_capped_by_the_ca() {
    let d = TestDir::new("ca-validity");
    let ca = new_ca(&d);
    let id = AgentId::generate().expect("id");
    let csr = greedy_csr();
    for bad in [
        Duration::ZERO,
        Duration::from_secs(59),
        MAX_AGENT_CERT_VALIDITY + Duration::from_secs(1),
    ] {
        assert!(matches!(
            ca.sign_agent_csr(&csr, &id, t(NOW), bad),
            Err(CertsError::InvalidLifetime { .. })
        ));
    }
    // Ten days before the CA expires, a 30-day certificate ends with the CA.
    let near_end = ca.not_after() - Duration::from_secs(10 * 86_400);
    let issued = ca
        .sign_agent_csr(&csr, &id, near_end, DEFAULT_AGENT_CERT_VALIDITY)
        .expect("signed");
    assert_eq!(issued.not_after(), ca.not_after());
}

#[test]
fn server_certificates_carry_the_names_and_serve_auth() {
    let d = TestDir::new("ca-server");
    let ca = new_ca(&d);
    let names = vec![
        "hub.example.test".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let issued = ca.issue_server_cert(&names, t(NOW)).expect("issued");
    let c = parse(issued.cert().der());
    let san = c
        .subject_alternative_name()
        .expect("ok")
        .expect("present")
        .value;
    use x509_parser::extensions::GeneralName;
    assert_eq!(
        san.general_names,
        vec![
            GeneralName::DNSName("hub.example.test"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
            GeneralName::IPAddress(&std::net::Ipv6Addr::LOCALHOST.octets()),
        ]
    );
    let eku = c.extended_key_usage().expect("ok").expect("present").value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(
        !c.basic_constraints()
            .expect("ok")
            .expect("present")
            .value
            .ca
    );
    assert_eq!(
        c.validity().not_after.timestamp(),
        NOW as i64 + 365 * 86_400
    );
    let chain = issued.chain_der();
    assert_eq!(chain.len(), 2);
    assert_eq!(&chain[1], ca.cert_der());
    assert!(issued.chain_pem().ends_with(ca.cert_pem()));
    issued.private_key_der().expect("key parses");

    // webpki accepts it for each name, with only our CA as root.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).expect("root");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let at = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 60));
    for name in ["hub.example.test", "127.0.0.1", "::1"] {
        let sn = rustls::pki_types::ServerName::try_from(name).expect("name");
        verifier
            .verify_server_cert(&chain[0], &[], &sn, &[], at)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let wrong = rustls::pki_types::ServerName::try_from("other.example.test").expect("name");
    assert!(verifier
        .verify_server_cert(&chain[0], &[], &wrong, &[], at)
        .is_err());

    assert!(matches!(
        ca.issue_server_cert(&[], t(NOW)),
        Err(CertsError::NoServerNames)
    ));
    for bad in ["", "not a name", "a..b", "x\u{0}y"] {
        assert!(
            matches!(
                ca.issue_server_cert(&[bad.to_owned()], t(NOW)),
                Err(CertsError::InvalidServerName { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn issued_keys_never_print() {
    let d = TestDir::new("ca-keyprint");
    let ca = new_ca(&d);
    let issued = ca
        .issue_server_cert(&["hub.example.test".to_owned()], t(NOW))
        .expect("issued");
    let key_pem = issued.key_pem().expose_secret().clone();
    assert!(key_pem.contains("PRIVATE KEY"));
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(der.secret_der());
    for shown in [
        format!("{issued:?}"),
        format!("{issued:#?}"),
        format!("{issued}"),
        format!("{:?}", issued.key_pem()),
        format!("{}", issued.key_pem()),
        format!("{:?}", issued.private_key_der().expect("key")),
    ] {
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(!shown.contains(&key_b64[..24]), "{shown}");
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "{shown}");
        }
    }
    assert!(format!("{issued}").contains(issued.cert().fingerprint()));
}

#[test]
fn renewal_is_due_at_seventy_percent() {
    let nb = t(1_000);
    let na = t(1_000 + 1_000);
    assert!(!renewal_due(nb, na, t(500)));
    assert!(!renewal_due(nb, na, t(1_000)));
    assert!(!renewal_due(nb, na, t(1_699)));
    assert!(renewal_due(nb, na, t(1_700)));
    assert!(renewal_due(nb, na, t(2_500)));
    assert!(renewal_due(na, nb, t(1_500)), "inverted window");
    assert!(renewal_due(nb, nb, t(1_000)), "empty window");
    // A 30-day agent certificate renews after 21 days.
    let day = 86_400;
    assert!(!renewal_due(t(0), t(30 * day), t(21 * day - 1)));
    assert!(renewal_due(t(0), t(30 * day), t(21 * day)));
}
