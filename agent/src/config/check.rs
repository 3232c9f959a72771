//! `causeway agent check`: the files a valid configuration names, checked as `agent run`
//! will use them — they exist, private keys are not readable by group or others, and every
//! PEM file parses (a truncated one is called that, not a list of the bytes it lacked).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::AgentConfig;
use crate::state::{CA, HPKE, ID, TLS_CERT, TLS_KEY};

/// No CA bundle or key file of ours is larger; a bigger one is the wrong file.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// One thing `agent check` found wrong, with the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong and what to do.
    pub problem: String,
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// PEM errors in words: rustls's own message lists the bytes of the marker it wanted.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "truncated PEM: a BEGIN line has no matching END line (the file was cut short or copied in part)".into()
        }
        pem::Error::IllegalSectionStart { .. } => {
            "malformed PEM: a BEGIN line is not of the form -----BEGIN LABEL-----".into()
        }
        pem::Error::Base64Decode(_) => {
            "malformed PEM: the text between BEGIN and END is not valid base64".into()
        }
        pem::Error::NoItemsFound => "no PEM section of the expected kind in it".into(),
        pem::Error::SectionTooLarge => "a PEM section is too large".into(),
        pem::Error::Io(e) => format!("cannot read it: {e}"),
        _ => "not valid PEM".into(),
    }
}

/// The certificates in PEM text, each parsed as X.509; an error in words otherwise.
pub fn pem_certificates(text: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(text)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err("no certificate in it (expected -----BEGIN CERTIFICATE-----)".into());
    }
    for (i, c) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(c)
            .map_err(|_| format!("certificate {} is not a valid X.509 certificate", i + 1))?;
    }
    Ok(certs)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_owned(),
        _ => format!("cannot read it: {e}"),
    })?;
    if !meta.is_file() {
        return Err("is not a file".into());
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(format!("is {} bytes, too large for a PEM file", meta.len()));
    }
    std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))
}

/// A file holding a secret: present, and no access for group or others.
fn private_file(path: &Path) -> Result<Vec<u8>, String> {
    let data = read_bounded(path)?;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read it: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "holds a secret but is readable by group or others (mode {:o}); run: chmod 600 {}",
            mode & 0o777,
            path.display()
        ));
    }
    Ok(data)
}

fn expired(certs: &[CertificateDer<'_>], now: SystemTime) -> Option<String> {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    certs.iter().enumerate().find_map(|(i, c)| {
        let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
        let end = cert.validity().not_after;
        (end.timestamp() < now).then(|| format!("certificate {} expired on {end}", i + 1))
    })
}

impl AgentConfig {
    /// Checks the files this configuration names, as `agent run` will read them, at `now`
    /// (certificate expiry); returns every problem found, none when the agent can start.
    pub fn check_files(&self, now: SystemTime) -> Vec<FileProblem> {
        let mut out = Vec::new();
        let mut problem = |path: &Path, problem: String| {
            out.push(FileProblem {
                path: path.to_owned(),
                problem,
            });
        };
        match read_bounded(&self.ca_file).and_then(|t| pem_certificates(&t)) {
            Err(m) => problem(
                &self.ca_file,
                format!("{m} ([directory] ca_file: the PEM file of the CA that issued the domain controllers' certificates)"),
            ),
            Ok(certs) => {
                if let Some(m) = expired(&certs, now) {
                    problem(&self.ca_file, m);
                }
            }
        }
        self.check_state(now, &mut problem);
        if let Some(l) = &self.login {
            if let Err(m) = private_file(&l.service_password_file) {
                problem(
                    &l.service_password_file,
                    format!("{m} ([directory.login] service_password_file)"),
                );
            }
        }
        out
    }

    fn check_state(&self, now: SystemTime, problem: &mut impl FnMut(&Path, String)) {
        let dir = &self.state_dir;
        let meta = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => m,
            Ok(_) => return problem(dir, "[agent] state_dir is not a directory".into()),
            Err(_) => {
                return problem(
                    dir,
                    "[agent] state_dir does not exist: run `causeway agent register --endpoint URL --token TOKEN --state-dir DIR` first".into(),
                )
            }
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            problem(
                dir,
                format!(
                    "holds the agent's private keys but is open to group or others (mode {:o}); run: chmod 700 {}",
                    mode & 0o777,
                    dir.display()
                ),
            );
        }
        if !dir.join(ID).exists() {
            return problem(
                dir,
                "holds no registered agent: run `causeway agent register --endpoint URL --token TOKEN --state-dir DIR` first".into(),
            );
        }
        for name in [HPKE, TLS_KEY] {
            let path = dir.join(name);
            match private_file(&path) {
                Err(m) => problem(&path, m),
                Ok(data) if name == TLS_KEY => {
                    if let Err(e) = PrivateKeyDer::from_pem_slice(&data) {
                        problem(&path, pem_error(&e));
                    }
                }
                Ok(_) => {}
            }
        }
        for name in [TLS_CERT, CA] {
            let path = dir.join(name);
            match read_bounded(&path).and_then(|t| pem_certificates(&t)) {
                Err(m) => problem(&path, m),
                // The agent's own certificate renews over the channel; an expired one
                // means it was off for longer than its life and must register again.
                Ok(certs) if name == TLS_CERT => {
                    if let Some(m) = expired(&certs, now) {
                        problem(&path, format!("{m}: register the agent again"));
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("causeway-check-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("dir");
        d
    }

    fn cert_pem() -> (String, String) {
        let k = rcgen::KeyPair::generate().expect("key");
        let c = rcgen::CertificateParams::new(vec!["dc1.example".into()])
            .expect("params")
            .self_signed(&k)
            .expect("cert");
        (c.pem(), k.serialize_pem())
    }

    fn write(path: &Path, data: &[u8], mode: u32) {
        fs::write(path, data).expect("write");
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn config(dir: &Path) -> AgentConfig {
        let text = "[agent]\nstate_dir = \"state\"\nendpoints = [\"https://idp.example:8443\"]\n[directory]\ndomain_controllers = [\"ldaps://dc1.example\"]\nca_file = \"ca.pem\"\n";
        AgentConfig::parse(text, &dir.join("agent.toml")).expect("valid")
    }

    /// A registered state directory as `agent register` leaves it.
    fn registered(dir: &Path) {
        let state = dir.join("state");
        fs::create_dir(&state).expect("state");
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).expect("chmod");
        let (cert, key) = cert_pem();
        write(&state.join(ID), b"agt-0123456789abcdef\n", 0o644);
        write(&state.join(HPKE), &[7; 32], 0o600);
        write(&state.join(TLS_KEY), key.as_bytes(), 0o600);
        write(&state.join(TLS_CERT), cert.as_bytes(), 0o644);
        write(&state.join(CA), cert.as_bytes(), 0o644);
        write(&dir.join("ca.pem"), cert.as_bytes(), 0o644);
    }

    #[test]
    fn a_registered_agent_with_its_files_passes() {
        let d = tmp("good");
        registered(&d);
        assert_eq!(config(&d).check_files(SystemTime::now()), vec![]);
    }

    #[test]
    fn missing_files_are_named() {
        let d = tmp("missing");
        let p = config(&d).check_files(SystemTime::now());
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].path.ends_with("ca.pem") && p[0].problem.contains("does not exist"));
        assert!(p[1].path.ends_with("state") && p[1].problem.contains("agent register"));
    }

    #[test]
    fn a_truncated_pem_is_called_truncated() {
        let d = tmp("truncated");
        registered(&d);
        let (cert, _) = cert_pem();
        write(&d.join("ca.pem"), &cert.as_bytes()[..cert.len() / 2], 0o644);
        let p = config(&d).check_files(SystemTime::now());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].problem.starts_with("truncated PEM"), "{}", p[0]);
        assert!(!p[0].problem.contains("[45"), "a byte list: {}", p[0]);
    }

    #[test]
    fn a_private_key_readable_by_others_is_refused() {
        let d = tmp("perms");
        registered(&d);
        fs::set_permissions(
            d.join("state").join(TLS_KEY),
            fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let p = config(&d).check_files(SystemTime::now());
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].path.ends_with(TLS_KEY) && p[0].problem.contains("chmod 600"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn an_expired_ca_is_reported() {
        let d = tmp("expired");
        registered(&d);
        let later = SystemTime::now() + std::time::Duration::from_secs(10_000 * 86_400 * 365);
        let p = config(&d).check_files(later);
        assert!(
            p.iter()
                .any(|x| x.path.ends_with("ca.pem") && x.problem.contains("expired")),
            "{p:?}"
        );
    }
}
