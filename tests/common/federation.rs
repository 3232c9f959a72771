//! Helpers the federation test files share: the test tools, a user with a unique
//! password, signing in from a start URL, and checking signatures with `xmlsec1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::endpoint::{alert, Browser, Endpoint};

pub const USER: &str = "carla@cloud.causeway.test";

pub fn tools() -> PathBuf {
    let d = PathBuf::from(
        std::env::var("CAUSEWAY_TOOLS_DIR").unwrap_or_else(|_| "/opt/causeway-test-tools".into()),
    );
    assert!(
        d.join("venv/bin/python").exists(),
        "test tools missing in {}: run scripts/install-test-tools.sh (scripts/test.sh does)",
        d.display()
    );
    d
}

/// A unique password per test run, so a leak check can search for it.
pub fn unique_password(tag: &str) -> String {
    let mut b = [0u8; 8];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("urandom");
    format!(
        "Pw-{tag}-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

pub fn endpoint_with_user(name: &str, config: &str) -> (Endpoint, String) {
    let ep = Endpoint::start(name, config, &["--demo-apps"]);
    let pw = add_user(&ep, name);
    (ep, pw)
}

/// Adds the cloud-only test user [`USER`] ("Carla Cloud") with a unique password tagged
/// `tag`, and returns the password.
pub fn add_user(ep: &Endpoint, tag: &str) -> String {
    let pw = unique_password(tag);
    ep.cli(
        &[
            "users",
            "add",
            "--upn",
            USER,
            "--display-name",
            "Carla Cloud",
            "--mail",
            USER,
            "--password-stdin",
        ],
        Some(&format!("{pw}\n")),
    );
    pw
}

/// Signs in through the page from an application's start URL; returns the auto-post page.
pub fn sign_in_from(ep: &Endpoint, b: &Browser, start: &str, user: &str, pw: &str) -> String {
    let (s, _, page, _) = b.follow(&ep.url, start);
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("id=\"password\""),
        "expected the sign-in page: {page}"
    );
    let (s, _, page) = b.sign_in(&ep.url, &page, user, pw);
    assert_eq!(s, 200, "{page}");
    assert!(
        page.contains("id=\"autopost\""),
        "expected the auto-post form: {}",
        alert(&page).unwrap_or(page.clone())
    );
    page
}

pub fn metadata_certs(xml: &str) -> Vec<String> {
    xml.split("<ds:X509Certificate>")
        .skip(1)
        .filter_map(|p| {
            p.split_once("</ds:X509Certificate>")
                .map(|x| x.0.to_owned())
        })
        .collect()
}

pub fn write_pem(dir: &Path, name: &str, b64: &str) -> PathBuf {
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let p = dir.join(name);
    std::fs::write(&p, pem).expect("pem");
    p
}

pub fn xmlsec_verify(
    file: &Path,
    cert: &Path,
    id_attrs: &[&str],
    node: Option<&str>,
) -> (bool, String) {
    let mut c = Command::new("xmlsec1");
    c.arg("--verify");
    for a in id_attrs {
        c.arg("--id-attr:".to_string() + a.split('|').next().unwrap_or(a))
            .arg(a.split('|').nth(1).unwrap_or(""));
    }
    c.arg("--pubkey-cert-pem")
        .arg(cert)
        .args(["--enabled-key-data", "raw-x509-cert"]);
    if let Some(n) = node {
        c.arg("--node-xpath").arg(n);
    }
    let out = c
        .arg(file)
        .output()
        .expect("xmlsec1 (installed by the test scripts)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub const SAML2_IDS: [&str; 2] = [
    "ID|urn:oasis:names:tc:SAML:2.0:protocol:Response",
    "ID|urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
];
pub const ASSERTION_SIG: &str = "//*[local-name()='Assertion']/*[local-name()='Signature']";

pub fn python(tools: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tools.join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/saml_sp.py"))
        .args(args)
        .output()
        .expect("python");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn json_field(json: &str, key: &str) -> Option<String> {
    let k = format!("\"{key}\":");
    let i = json.find(&k)? + k.len();
    let rest = json[i..].trim_start();
    if let Some(r) = rest.strip_prefix('"') {
        return r.split_once('"').map(|x| x.0.to_owned());
    }
    Some(rest.split([',', '}']).next()?.trim().to_owned())
}

/// `now + offset` as xs:dateTime (UTC, whole seconds), by `date`.
pub fn xs_time(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let t = i64::try_from(now).expect("secs") + offset_secs;
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// Whether `b` holds a live SSO session (the start page greets the user).
pub fn signed_in(ep: &Endpoint, b: &Browser) -> bool {
    let (s, _, page) = b.get(&format!("{}/", ep.url));
    s == 200 && page.contains("id=\"who\"")
}

/// Runs a `causeway …` command line as printed by a guide or a command (quotes and all,
/// through `sh`), in the endpoint's folder and against its data directory; panics, with
/// its stderr, when it fails.
pub fn run_printed(ep: &Endpoint, line: &str) {
    let line = line.trim().trim_start_matches("causeway ");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && {} {line} --data-dir '{}'",
            ep.dir.display(),
            super::endpoint::bin(),
            ep.data().display()
        ))
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Follows `start` until it reaches the sign-in page and returns it: an application just
/// registered is known to the endpoint once it reloads its apps (within seconds), so the
/// start is retried for at most 30 s. `why` is added to the failure message (e.g. an SP's
/// logs).
pub fn until_sign_in_page(
    ep: &Endpoint,
    b: &Browser,
    start: &str,
    why: &dyn Fn() -> String,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, _, page, _) = b.follow(&ep.url, start);
        if s == 200 && page.contains("id=\"password\"") {
            return page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never reached the sign-in page from {start}: {s} {page}\n{}",
            why()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}
