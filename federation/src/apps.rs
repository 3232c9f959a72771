//! Registered applications: SAML service providers (from their metadata) and
//! WS-Federation relying parties (a realm and the reply URLs it may use). They live as
//! files in the endpoint's `apps/` directory — `causeway apps add` writes them, the
//! endpoint reloads them — so an operator can read, back up and review them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;

use causeway_saml::saml2::ServiceProvider;

/// A WS-Federation relying party.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsFedRealm {
    /// The realm (`wtrealm`), e.g. `urn:federation:MicrosoftOnline`.
    pub realm: String,
    /// Reply URLs the token may be posted to (`wreply` must be one of them); the first is
    /// the default.
    pub reply_urls: Vec<String>,
    /// A name to show.
    #[serde(default)]
    pub name: Option<String>,
}

impl WsFedRealm {
    /// Checks the realm and URLs.
    pub fn validate(&self) -> Result<(), String> {
        if self.realm.is_empty()
            || self.realm.len() > 1024
            || self.realm.chars().any(char::is_control)
        {
            return Err("the realm must be 1 to 1024 characters without control characters".into());
        }
        if self.reply_urls.is_empty() {
            return Err(format!("realm {}: give at least one reply URL", self.realm));
        }
        for u in &self.reply_urls {
            if !causeway_saml::url::is_safe_http_url(u) {
                return Err(format!(
                    "realm {}: {u:?} is not an absolute http(s) URL",
                    self.realm
                ));
            }
        }
        Ok(())
    }

    /// The reply URL for a request: `wreply` if registered, else the default.
    pub fn reply_for(&self, wreply: Option<&str>) -> Result<&str, String> {
        match wreply {
            Some(w) => self
                .reply_urls
                .iter()
                .find(|u| *u == w)
                .map(String::as_str)
                .ok_or_else(|| w.to_owned()),
            None => self
                .reply_urls
                .first()
                .map(String::as_str)
                .ok_or_else(String::new),
        }
    }
}

/// Every registered application.
#[derive(Debug, Clone, Default)]
pub struct Apps {
    /// SAML SPs by entity id.
    pub saml: BTreeMap<String, ServiceProvider>,
    /// WS-Fed realms by realm.
    pub wsfed: BTreeMap<String, WsFedRealm>,
    /// OpenID Connect clients by client id.
    pub oidc: BTreeMap<String, causeway_oidc::Client>,
}

/// Why an application could not be registered or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppsError {
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not acceptable.
    #[error("{}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

pub(crate) fn file_stem(kind: &str, key: &str) -> String {
    let h = sha2::Sha256::digest(key.as_bytes());
    let mut s = format!("{kind}-");
    for b in &h[..8] {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Apps {
    /// Loads `dir` (`saml-*.xml`, `wsfed-*.toml`, `oidc-*.toml`); a missing directory is empty.
    pub fn load(dir: &Path) -> Result<Self, AppsError> {
        let mut apps = Self::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(apps),
            Err(source) => {
                return Err(AppsError::Io {
                    path: dir.to_owned(),
                    source,
                })
            }
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let read = || {
                std::fs::read_to_string(&path).map_err(|source| AppsError::Io {
                    path: path.clone(),
                    source,
                })
            };
            let bad = |problem: String| AppsError::Invalid {
                path: path.clone(),
                problem,
            };
            if name.starts_with("saml-") && name.ends_with(".xml") {
                let sp =
                    ServiceProvider::from_metadata(&read()?).map_err(|e| bad(e.to_string()))?;
                apps.saml.insert(sp.entity_id.clone(), sp);
            } else if name.starts_with("wsfed-") && name.ends_with(".toml") {
                let r: WsFedRealm = toml::from_str(&read()?).map_err(|e| bad(e.to_string()))?;
                r.validate().map_err(bad)?;
                apps.wsfed.insert(r.realm.clone(), r);
            } else if name.starts_with("oidc-") && name.ends_with(".toml") {
                let c = crate::oidc_clients::parse(&read()?).map_err(bad)?;
                apps.oidc.insert(c.client_id.clone(), c);
            }
        }
        Ok(apps)
    }

    /// Registers an SP from its metadata (replacing an earlier registration of the same
    /// entity id). Returns it.
    pub fn add_saml(dir: &Path, metadata: &str) -> Result<ServiceProvider, AppsError> {
        let sp = ServiceProvider::from_metadata(metadata).map_err(|e| AppsError::Invalid {
            path: PathBuf::from("metadata"),
            problem: e.to_string(),
        })?;
        let path = dir.join(format!("{}.xml", file_stem("saml", &sp.entity_id)));
        write_file(dir, &path, metadata.as_bytes())?;
        Ok(sp)
    }

    /// Registers a WS-Federation relying party.
    pub fn add_wsfed(dir: &Path, realm: &WsFedRealm) -> Result<(), AppsError> {
        let path = dir.join(format!("{}.toml", file_stem("wsfed", &realm.realm)));
        realm.validate().map_err(|problem| AppsError::Invalid {
            path: path.clone(),
            problem,
        })?;
        let text = toml::to_string(realm).map_err(|e| AppsError::Invalid {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        write_file(dir, &path, text.as_bytes())
    }

    /// Removes an application by entity id, realm or client id. Returns whether one was removed.
    pub fn remove(dir: &Path, key: &str) -> Result<bool, AppsError> {
        let mut removed = false;
        for path in [
            dir.join(format!("{}.xml", file_stem("saml", key))),
            dir.join(format!("{}.toml", file_stem("wsfed", key))),
            crate::oidc_clients::path_of(dir, key),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(AppsError::Io { path, source }),
            }
        }
        Ok(removed)
    }
}

pub(crate) fn write_file(dir: &Path, path: &Path, data: &[u8]) -> Result<(), AppsError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| AppsError::Io {
        path: path.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
