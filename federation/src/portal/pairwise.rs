//! The secret that makes persistent NameIDs pairwise: HMAC-SHA256 of the user's immutable
//! id and the application's entity id under a key of this endpoint, kept in the
//! token-signing key directory (mode 0600). The same user gets the same NameID from one
//! application every time and a different one at every other application. It must never
//! be printed, and never be replaced once made (every application's NameIDs would change).

use std::path::Path;

use base64::Engine;
use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The file, beside the token-signing keys, that holds the key.
pub(crate) const PAIRWISE_KEY_FILE: &str = "pairwise-nameid.key";
const KEY_LEN: usize = 32;
/// Domain separation: this key derives nothing else.
const LABEL: &[u8] = b"causeway pairwise NameID v1";

/// The key of pairwise NameIDs. Printed as `[redacted]`.
pub(crate) struct PairwiseKey(zeroize::Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for PairwiseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairwiseKey([redacted])")
    }
}

impl PairwiseKey {
    /// A key of the given bytes.
    pub(crate) fn from_bytes(k: [u8; KEY_LEN]) -> Self {
        Self(zeroize::Zeroizing::new(k))
    }

    /// The persistent NameID of `immutable_id` at the application `sp`: 43 characters
    /// of base64url (256 bits), which say nothing about the user.
    pub(crate) fn name_id(&self, immutable_id: &str, sp: &str) -> String {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&*self.0)
            .expect("HMAC takes any key length");
        mac.update(LABEL);
        // Length-prefixed, so that no (id, sp) pair can be shifted into another.
        for part in [immutable_id.as_bytes(), sp.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Loads the key from `path`, or makes it there (mode 0600) when there is none. A
    /// key other users may read, or of the wrong size, is refused: the error says how to
    /// fix it (and that removing it changes every pairwise NameID).
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, String> {
        let k = crate::key_file::load_or_create(
            path,
            "the pairwise NameID key",
            "restore it from a backup (a new key changes every application's persistent NameIDs)",
        )?;
        Ok(Self::from_bytes(*k))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_ids_are_stable_per_app_different_across_apps_and_opaque() {
        let k = PairwiseKey::from_bytes([7; KEY_LEN]);
        let a = k.name_id("AAECAwQFBgcICQoLDA0ODw==", "https://a.example/meta");
        assert_eq!(
            a,
            k.name_id("AAECAwQFBgcICQoLDA0ODw==", "https://a.example/meta")
        );
        assert_ne!(
            a,
            k.name_id("AAECAwQFBgcICQoLDA0ODw==", "https://b.example/meta")
        );
        assert_ne!(
            a,
            k.name_id("AAECAwQFBgcICQoLDA0ODg==", "https://a.example/meta")
        );
        assert_eq!(a.len(), 43);
        assert!(!a.contains("AAECAwQF"));
        // Another endpoint's key gives other ids.
        let other = PairwiseKey::from_bytes([8; KEY_LEN]);
        assert_ne!(
            a,
            other.name_id("AAECAwQFBgcICQoLDA0ODw==", "https://a.example/meta")
        );
        // No shifting between the parts.
        assert_ne!(k.name_id("ab", "c"), k.name_id("a", "bc"));
        assert_eq!(format!("{k:?}"), "PairwiseKey([redacted])");
    }

    #[test]
    fn the_key_file_is_made_private_once_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).expect("random");
        let dir = std::env::temp_dir().join(format!("causeway-pairwise-{}", u64::from_le_bytes(r)));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join(PAIRWISE_KEY_FILE);
        let k1 = PairwiseKey::load_or_create(&path).expect("made");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let k2 = PairwiseKey::load_or_create(&path).expect("read");
        assert_eq!(
            k1.name_id("u", "sp"),
            k2.name_id("u", "sp"),
            "the same key is read back"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = PairwiseKey::load_or_create(&path).expect_err("readable by others");
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let e = PairwiseKey::load_or_create(&path).expect_err("wrong size");
        assert!(e.contains("5 bytes"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
