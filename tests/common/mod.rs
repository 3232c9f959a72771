//! What every lab-backed test binary shares: the running lab's facts and TLS settings.
#![allow(dead_code, unreachable_pub)]

pub mod agent_hub;
pub mod endpoint;
pub mod federation;
pub mod ingest;
pub mod oidc;
pub mod samba;
pub mod saml;
pub mod slapd;
pub mod sync_host;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub struct Lab(pub HashMap<String, String>);

impl Lab {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("lab.env has no {key}"))
    }

    /// `AD_<KEY>_<FIELD>` of the lab user whose `AD_<KEY>_SAM` is `sam` (e.g. `bob-disabled`
    /// is keyed `AD_BOB_*`): looked up, not guessed, so the lab may key users as it likes.
    pub fn user(&self, sam: &str, field: &str) -> &str {
        let key = self
            .0
            .iter()
            .find(|(k, v)| k.starts_with("AD_") && k.ends_with("_SAM") && v.as_str() == sam)
            .map(|(k, _)| k.trim_end_matches("_SAM").to_owned())
            .unwrap_or_else(|| panic!("lab.env has no user {sam}"));
        self.get(&format!("{key}_{field}"))
    }

    /// [`Lab::user`] in the forest whose facts carry `prefix` (`AD` for the first forest,
    /// `AD2` for the second): `<prefix>_<KEY>_<FIELD>` of the user whose
    /// `<prefix>_<KEY>_SAM` is `sam`.
    pub fn user_in(&self, prefix: &str, sam: &str, field: &str) -> &str {
        let head = format!("{prefix}_");
        let key = self
            .0
            .iter()
            .find(|(k, v)| k.starts_with(&head) && k.ends_with("_SAM") && v.as_str() == sam)
            .map(|(k, _)| k.trim_end_matches("_SAM").to_owned())
            .unwrap_or_else(|| panic!("lab.env has no {prefix} user {sam}"));
        self.get(&format!("{key}_{field}"))
    }
}

pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // A lab described by a file (e.g. one started by hand elsewhere) takes precedence.
        if let Ok(file) = std::env::var("CAUSEWAY_LAB_ENV") {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("CAUSEWAY_LAB_ENV={file}: {e}"));
            return Lab(parse_env(&text));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("scripts/lab.sh");
        // `start` is idempotent: on a running lab it only prints the facts.
        let out = Command::new(&script)
            .arg("start")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/lab.sh start failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let env = parse_env(&String::from_utf8_lossy(&out.stdout));
        assert!(
            env.contains_key("AD_LDAPS_URL"),
            "lab.sh printed no AD_LDAPS_URL"
        );
        Lab(env)
    })
}

pub fn tls_config(ca: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        for cert in CertificateDer::pem_file_iter(ca).expect("lab CA readable") {
            roots
                .add(cert.expect("lab CA parses"))
                .expect("lab CA accepted");
        }
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A client config that trusts exactly the CA in `ca_pem` and offers `alpn` (ring, the
/// provider the endpoint uses).
pub fn client_tls(ca_pem: &[u8], alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).expect("pem"))
        .expect("root");
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// Sends the code under test's logs to the test's captured output (shown on failure).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// An LDAPS connection bound as the lab's domain admin.
pub async fn admin(lab: &Lab) -> ldap3::Ldap {
    let (conn, mut ldap) = ldap3::LdapConnAsync::with_settings(
        ldap3::LdapConnSettings::new()
            .set_config(tls_config(Some(Path::new(lab.get("AD_CA_CERT"))))),
        lab.get("AD_LDAPS_URL"),
    )
    .await
    .expect("connect as admin");
    ldap3::drive!(conn);
    ldap.simple_bind(lab.get("AD_ADMIN_DN"), lab.get("AD_ADMIN_PASSWORD"))
        .await
        .expect("admin bind")
        .success()
        .expect("admin bind accepted");
    ldap
}

/// Unlocks an AD account (what an administrator does: `lockoutTime: 0`).
pub async fn set_lockout_time_zero(lab: &Lab, dn: &str) {
    let mut ldap = admin(lab).await;
    ldap.modify(
        dn,
        vec![ldap3::Mod::Replace(
            "lockoutTime",
            std::collections::HashSet::from(["0"]),
        )],
    )
    .await
    .expect("modify round trip")
    .success()
    .expect("admin may unlock");
    let _ = ldap.unbind().await;
}

/// One attribute of an AD object, read as the domain admin ("0" when absent).
pub async fn read_attr(lab: &Lab, dn: &str, attr: &str) -> String {
    let mut ldap = admin(lab).await;
    let (entries, _) = ldap
        .search(dn, ldap3::Scope::Base, "(objectClass=*)", vec![attr])
        .await
        .expect("search round trip")
        .success()
        .expect("search accepted");
    let _ = ldap.unbind().await;
    let entry = ldap3::SearchEntry::construct(entries.into_iter().next().expect("object exists"));
    entry
        .attrs
        .get(attr)
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| "0".into())
}

/// Deletes `dn` and everything under it (deepest first), if it exists.
pub async fn delete_tree(adm: &mut ldap3::Ldap, dn: &str) {
    let Ok(r) = adm
        .search(dn, ldap3::Scope::Subtree, "(objectClass=*)", vec!["1.1"])
        .await
    else {
        return;
    };
    let Ok((entries, _)) = r.success() else {
        return;
    };
    let mut dns: Vec<String> = entries
        .into_iter()
        .map(|e| ldap3::SearchEntry::construct(e).dn)
        .collect();
    dns.sort_by_key(|d| std::cmp::Reverse(d.len()));
    for d in dns {
        let _ = adm.delete(&d).await;
    }
}
