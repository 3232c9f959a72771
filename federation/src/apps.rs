//! Registered applications: SAML service providers (from their metadata) and
//! WS-Federation relying parties (a realm and the reply URLs it may use). They live as
//! files in the endpoint's `apps/` directory — `causeway apps add` writes them, the
//! endpoint reloads them — so an operator can read, back up and review them. A SAML
//! SP's settings (NameID, attributes, signing, encryption) sit beside its metadata as
//! `saml-<hash>.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::Digest;

use causeway_saml::saml2::ServiceProvider;

mod saml_settings;
pub use saml_settings::{
    is_https_or_loopback, AttributeNames, Claim, NameIdFormat, PersistentId, SamlSettings, Sign,
};

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
    /// Settings of the SAML SPs that have them, by entity id (the others use defaults).
    pub saml_settings: BTreeMap<String, SamlSettings>,
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
    /// The application is registered already, and replacing it was not asked for.
    #[error("{key} is registered already ({}); add --replace to replace it", path.display())]
    Exists {
        /// The entity id or realm.
        key: String,
        /// Its file.
        path: PathBuf,
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
                let sidecar = path.with_extension("toml");
                if let Some(settings) = SamlSettings::load(&sidecar, &sp)? {
                    apps.saml_settings.insert(sp.entity_id.clone(), settings);
                }
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

    /// The settings of the SAML SP `entity_id` (defaults when it has none).
    pub fn saml_settings_of(&self, entity_id: &str) -> SamlSettings {
        self.saml_settings
            .get(entity_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Registers an SP from its metadata with `settings` (written beside it). An SP
    /// registered already is replaced only with `replace`; an ACS or logout URL over
    /// plain `http://` is refused unless it is on this host (loopback), since the
    /// assertion would cross the network in the clear. Returns the SP.
    ///
    /// Metadata whose `validUntil` is before `now` is refused: it is stale (get a fresh
    /// copy from the application).
    pub fn add_saml(
        dir: &Path,
        metadata: &str,
        settings: &SamlSettings,
        replace: bool,
        now: std::time::SystemTime,
    ) -> Result<ServiceProvider, AppsError> {
        let invalid = |problem: String| AppsError::Invalid {
            path: PathBuf::from("metadata"),
            problem,
        };
        let sp = ServiceProvider::from_metadata(metadata).map_err(|e| invalid(e.to_string()))?;
        if let Some(u) = plain_http_url(&sp) {
            return Err(invalid(plain_http_problem(&sp.entity_id, u)));
        }
        if let Some(t) = sp.valid_until.filter(|t| *t < now) {
            return Err(invalid(format!(
                "{}: the metadata expired at {} (validUntil); fetch a fresh copy from the application",
                sp.entity_id,
                causeway_saml::saml2::fmt_time(t)
            )));
        }
        settings
            .validate(&sp)
            .map_err(|(problem, key)| invalid(format!("{key}: {problem}")))?;
        let path = dir.join(format!("{}.xml", file_stem("saml", &sp.entity_id)));
        if !replace && path.exists() {
            return Err(AppsError::Exists {
                key: sp.entity_id.clone(),
                path,
            });
        }
        let sidecar = path.with_extension("toml");
        let text = toml::to_string(settings).map_err(|e| AppsError::Invalid {
            path: sidecar.clone(),
            problem: e.to_string(),
        })?;
        write_file(dir, &sidecar, text.as_bytes())?;
        write_file(dir, &path, metadata.as_bytes())?;
        Ok(sp)
    }

    /// Registers a WS-Federation relying party; one registered already is replaced
    /// only with `replace`.
    pub fn add_wsfed(dir: &Path, realm: &WsFedRealm, replace: bool) -> Result<(), AppsError> {
        let path = dir.join(format!("{}.toml", file_stem("wsfed", &realm.realm)));
        realm.validate().map_err(|problem| AppsError::Invalid {
            path: path.clone(),
            problem,
        })?;
        if let Some(u) = realm.reply_urls.iter().find(|u| !is_https_or_loopback(u)) {
            return Err(AppsError::Invalid {
                path,
                problem: plain_http_problem(&realm.realm, u),
            });
        }
        if !replace && path.exists() {
            return Err(AppsError::Exists {
                key: realm.realm.clone(),
                path,
            });
        }
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
            dir.join(format!("{}.toml", file_stem("saml", key))),
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

/// The first ACS or logout URL of `sp` that is plain http:// to another host, if any:
/// an assertion sent there would cross the network in the clear.
pub fn plain_http_url(sp: &ServiceProvider) -> Option<&str> {
    sp.acs
        .iter()
        .chain(&sp.slo)
        .flat_map(|e| std::iter::once(&e.location).chain(&e.response_location))
        .map(String::as_str)
        .find(|u| !is_https_or_loopback(u))
}

/// The message for [`plain_http_url`] (and a realm's reply URL).
pub fn plain_http_problem(app: &str, url: &str) -> String {
    format!(
        "{app}: {url:?} is plain http:// to another host; the application must use https:// (http:// is accepted on loopback only)"
    )
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn metadata(entity: &str, acs: &str, valid_until: Option<&str>) -> String {
        format!(
            "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{entity}\"{}><md:SPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"><md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{acs}\" index=\"0\"/></md:SPSSODescriptor></md:EntityDescriptor>",
            valid_until.map(|v| format!(" validUntil=\"{v}\"")).unwrap_or_default()
        )
    }

    #[test]
    fn registration_refuses_stale_metadata_plain_http_and_a_second_add_and_keeps_settings() {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("random");
        let dir = std::env::temp_dir().join(format!("causeway-apps-{}", u64::from_le_bytes(r)));
        // 2027-01-15T08:00:00Z, fixed: the test does not read the clock.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let e = "https://sp.example/meta";
        let def = SamlSettings::default();
        let stale = metadata(e, "https://sp.example/acs", Some("2026-01-01T00:00:00Z"));
        let err = Apps::add_saml(&dir, &stale, &def, false, now).expect_err("stale");
        assert!(
            err.to_string().contains("expired at 2026-01-01T00:00:00Z"),
            "{err}"
        );
        let plain = metadata(e, "http://sp.example/acs", None);
        let err = Apps::add_saml(&dir, &plain, &def, false, now).expect_err("plain http");
        assert!(err.to_string().contains("loopback only"), "{err}");
        assert!(!dir.exists() || Apps::load(&dir).expect("loads").saml.is_empty());

        let good = metadata(e, "https://sp.example/acs", Some("2030-01-01T00:00:00Z"));
        let named = SamlSettings {
            name: Some("Wiki".into()),
            ..SamlSettings::default()
        };
        let sp = Apps::add_saml(&dir, &good, &named, false, now).expect("registers");
        assert_eq!(
            sp.valid_until,
            causeway_saml::saml2::parse_time("2030-01-01T00:00:00Z")
        );
        let err = Apps::add_saml(&dir, &good, &def, false, now).expect_err("again");
        assert!(matches!(err, AppsError::Exists { .. }), "{err}");
        assert_eq!(Apps::load(&dir).expect("loads").saml_settings_of(e), named);
        Apps::add_saml(&dir, &good, &def, true, now).expect("replaced");
        assert_eq!(Apps::load(&dir).expect("loads").saml_settings_of(e), def);
        // Removing takes the settings file too.
        assert!(Apps::remove(&dir, e).expect("removes"));
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
