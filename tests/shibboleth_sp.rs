//! A real Shibboleth SP 3 (Apache httpd with mod_shib and shibd, Debian's packages) on
//! loopback, configured as `docs/guides/shibboleth-sp.md` says, trusts a real
//! `causeway serve`: the SP reads Causeway's metadata by URL, Causeway registers the SP
//! from the SP's own metadata handler with `causeway apps add`, and a browser that opens
//! the SP's protected page is sent to Causeway, signs in, and comes back with a Shibboleth
//! session holding the user's attributes. shibd checks the signature, audience,
//! destination and InResponseTo; its verdict is what this test reads.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::endpoint::{alert, form_action, hidden, Browser};
use common::federation::{endpoint_with_user, until_sign_in_page, USER};

fn free_port() -> u16 {
    // Apache takes a port number, not a listener: ask the OS for a free one.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// shibd and httpd for one test, stopped on drop.
struct ShibbolethSp {
    dir: PathBuf,
    url: String,
    shibd: Child,
}

impl ShibbolethSp {
    fn start(dir: &Path, idp_entity: &str, idp_url: &str, idp_ca: &Path) -> Self {
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        std::fs::create_dir_all(dir.join("run")).expect("run dir");
        std::fs::create_dir_all(dir.join("www/secure")).expect("www");
        std::fs::write(
            dir.join("www/secure/index.html"),
            "<p>the protected page</p>\n",
        )
        .expect("page");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(dir.join("sp-key.pem"))
            .arg("-out")
            .arg(dir.join("sp-cert.pem"))
            .stderr(Stdio::null())
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "openssl req");
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/shibboleth");
        let fill = |name: &str| {
            let t = std::fs::read_to_string(templates.join(name)).expect("template");
            let text = t
                .replace("@DIR@", &dir.display().to_string())
                .replace("@SP_URL@", &url)
                .replace("@SP_PORT@", &port.to_string())
                .replace("@IDP_ENTITY@", idp_entity)
                .replace("@IDP_METADATA_URL@", &format!("{idp_url}/saml/metadata"));
            let text = text.replace("@IDP_CA@", &idp_ca.display().to_string());
            std::fs::write(dir.join(name), text).expect("write config");
        };
        for f in ["shibboleth2.xml", "attribute-map.xml", "httpd.conf"] {
            fill(f);
        }
        // shibd logs into this folder, not /var/log.
        let logger = std::fs::read_to_string("/etc/shibboleth/shibd.logger")
            .expect("shibd.logger (package shibboleth-sp-utils)")
            .replace("/var/log/shibboleth/", &format!("{}/", dir.display()));
        std::fs::write(dir.join("shibd.logger"), logger).expect("logger");
        // Apache's children (www-data) read the pages and reach shibd's socket.
        let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status();
        let _ = Command::new("chmod")
            .arg("777")
            .arg(dir.join("run"))
            .status();
        let shibd = Command::new("/usr/sbin/shibd")
            .args(["-F", "-f", "-c"])
            .arg(dir.join("shibboleth2.xml"))
            .arg("-p")
            .arg(dir.join("run/shibd.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("shibd.stderr")).expect("log"))
            .spawn()
            .expect("shibd (package shibboleth-sp-utils)");
        let sp = Self {
            dir: dir.to_owned(),
            url,
            shibd,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join("run/shibd.sock").exists() {
            assert!(
                Instant::now() < deadline,
                "shibd did not start: {}",
                sp.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = Command::new("/usr/sbin/apache2")
            .arg("-f")
            .arg(dir.join("httpd.conf"))
            .args(["-k", "start"])
            .output()
            .expect("apache2 (package apache2)");
        assert!(
            out.status.success(),
            "apache2: {}{}",
            String::from_utf8_lossy(&out.stderr),
            sp.logs()
        );
        sp
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["shibd.stderr", "shibd.log", "httpd-error.log"] {
            s.push_str(&format!(
                "--- {f}\n{}\n",
                std::fs::read_to_string(self.dir.join(f)).unwrap_or_default()
            ));
        }
        s
    }
}

impl Drop for ShibbolethSp {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/apache2")
            .arg("-f")
            .arg(self.dir.join("httpd.conf"))
            .args(["-k", "stop"])
            .output();
        let _ = self.shibd.kill();
        let _ = self.shibd.wait();
    }
}

#[test]
fn a_shibboleth_sp_configured_as_the_guide_says_accepts_causeway_sign_ins() {
    let (ep, pw) = endpoint_with_user("shibboleth-sp", "");
    let b = Browser::new(&ep.dir.join("browser"));
    let (_, _, md) = b.get(&format!("{}/saml/metadata", ep.url));
    let entity = md
        .split("entityID=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("our entity id")
        .to_owned();
    let sp = ShibbolethSp::start(
        &ep.dir.join("shibboleth"),
        &entity,
        &ep.url,
        &ep.data().join("ca/ca.pem"),
    );

    // The guide's registration step: the SP's own metadata, fetched over TLS.
    let add = Command::new(common::endpoint::bin())
        .args([
            "apps",
            "add",
            "--name",
            "Shibboleth test SP",
            "--saml-metadata",
        ])
        .arg(format!("{}/Shibboleth.sso/Metadata", sp.url))
        .arg("--ca-file")
        .arg(sp.dir.join("sp-cert.pem"))
        .arg("--data-dir")
        .arg(ep.data())
        .output()
        .expect("causeway apps add");
    assert!(
        add.status.success(),
        "apps add: {}{}",
        String::from_utf8_lossy(&add.stderr),
        sp.logs()
    );

    // The SP sends the browser to Causeway (once the endpoint has reloaded its apps).
    let protected = format!("{}/secure/", sp.url);
    let page = until_sign_in_page(&ep, &b, &protected, &|| sp.logs());
    let (s, _, page) = b.sign_in(&ep.url, &page, USER, &pw);
    assert_eq!(s, 200, "{page}");
    let action = form_action(&page).unwrap_or_else(|| {
        panic!(
            "an auto-post form: {}",
            alert(&page).unwrap_or(page.clone())
        )
    });
    assert_eq!(action, format!("{}/Shibboleth.sso/SAML2/POST", sp.url));
    let mut form = vec![(
        "SAMLResponse",
        hidden(&page, "SAMLResponse").expect("SAMLResponse"),
    )];
    if let Some(r) = hidden(&page, "RelayState") {
        form.push(("RelayState", r));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, h, body) = b.post(&action, &form);
    assert_eq!(
        s,
        302,
        "shibd accepted the response: {h}{body}\n{}",
        sp.logs()
    );
    let (s, _, body, _) = b.follow(&sp.url, &protected);
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("the protected page"), "{body}");

    // The session shibd made holds Causeway's attributes under the guide's ids.
    let (s, _, session) = b.get(&format!("{}/Shibboleth.sso/Session", sp.url));
    assert_eq!(s, 200, "{session}");
    for want in [
        format!("<strong>upn</strong>: {USER}"),
        format!("<strong>mail</strong>: {USER}"),
        "<strong>displayName</strong>: Carla Cloud".to_owned(),
        "<strong>immutableID</strong>: ".to_owned(),
        format!("<strong>Identity Provider:</strong> {entity}"),
    ] {
        assert!(
            session.contains(&want),
            "{want} in the SP's session: {session}"
        );
    }
}
