//! OpenID Connect client registrations: one `oidc-<hash of the client id>.toml` per client
//! in the endpoint's `apps/` directory, beside the SAML and WS-Federation files. A
//! confidential client's secret is never written, only its SHA-256
//! ([`causeway_oidc::client`] says why that hash suffices).

use std::path::{Path, PathBuf};

use causeway_oidc::Client;

use crate::apps::{file_stem, write_file, AppsError};

/// The file a client's registration lives in.
pub fn path_of(dir: &Path, client_id: &str) -> PathBuf {
    dir.join(format!("{}.toml", file_stem("oidc", client_id)))
}

/// Reads and checks one registration file's text.
pub fn parse(text: &str) -> Result<Client, String> {
    let c: Client = toml::from_str(text).map_err(|e| e.to_string())?;
    c.validate()?;
    Ok(c)
}

/// Registers a client; one registered already with the same id only with `replace`.
pub fn add(dir: &Path, client: &Client, replace: bool) -> Result<(), AppsError> {
    let path = path_of(dir, &client.client_id);
    let bad = |problem| AppsError::Invalid {
        path: path.clone(),
        problem,
    };
    client.validate().map_err(bad)?;
    if !replace && path.exists() {
        return Err(bad(format!(
            "client {} is registered already: give --replace to replace it (its secret changes)",
            client.client_id
        )));
    }
    let text = toml::to_string(client).map_err(|e| bad(e.to_string()))?;
    write_file(dir, &path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Apps;
    use causeway_oidc::SubjectType;

    #[test]
    fn a_registered_client_loads_back_with_its_secret_hash_only() {
        let dir =
            std::env::temp_dir().join(format!("causeway-oidc-clients-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (secret, hash) = causeway_oidc::client::new_secret();
        let c = Client {
            client_id: "wiki".into(),
            name: Some("Wiki".into()),
            redirect_uris: vec!["https://wiki.test/cb".into()],
            post_logout_redirect_uris: vec![],
            public: false,
            secret_sha256: Some(hash),
            subject_type: SubjectType::Pairwise,
            jwks: None,
            frontchannel_logout_uri: None,
        };
        add(&dir, &c, false).expect("add");
        assert!(add(&dir, &c, false).is_err(), "no silent replacement");
        add(&dir, &c, true).expect("replace");
        let text = std::fs::read_to_string(path_of(&dir, "wiki")).expect("file");
        assert!(!text.contains(secret.as_str()), "the secret is not stored");
        let apps = Apps::load(&dir).expect("load");
        assert_eq!(apps.oidc.get("wiki"), Some(&c));
        assert!(apps.oidc["wiki"].secret_matches(&secret));
        // An http:// redirect URI off loopback is refused at registration.
        let mut bad = c.clone();
        bad.redirect_uris = vec!["http://wiki.test/cb".into()];
        assert!(add(&dir, &bad, true).is_err());
        assert!(Apps::remove(&dir, "wiki").expect("remove"));
        assert!(Apps::load(&dir).expect("load").oidc.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
