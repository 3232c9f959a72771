//! Token-signing keys (RSA 2048, self-signed certificates, as SAML and WS-Federation
//! relying parties expect) and their rollover without outage, as AD FS does it: a new key
//! is created and published in metadata [`RolloverPolicy::publish_before_expiry`] before the
//! active one expires, and becomes the one that signs [`RolloverPolicy::activate_after_publish`]
//! later; during the overlap both are announced, so a relying party that refreshes its
//! metadata on any schedule shorter than that sees the new key before it is used.
//!
//! Files, one set per key in the key directory (0700): `<id>.key.pem` (PKCS#8, 0600),
//! `<id>.cert.pem`, `<id>.activate` (the Unix second at which it starts signing). The
//! endpoint reloads the directory, so `causeway certs rollover` from the command line
//! takes effect in a running endpoint.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509NameBuilder, X509};

use crate::error::CertsError;
use crate::util::{
    ensure_private_dir, fingerprint_of_der, from_unix_secs, random_bytes, read_bounded, sync_dir,
    unix_secs, write_temp,
};

/// When keys are replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloverPolicy {
    /// How long a new key's certificate is valid.
    pub key_lifetime: Duration,
    /// How long before the active key expires its successor is created and published.
    pub publish_before_expiry: Duration,
    /// How long after publication the successor starts signing.
    pub activate_after_publish: Duration,
}

const DAY: u64 = 86_400;

impl Default for RolloverPolicy {
    /// AD FS's defaults: one-year certificates, the next one published 20 days before
    /// expiry and made primary 5 days after that.
    fn default() -> Self {
        Self {
            key_lifetime: Duration::from_secs(365 * DAY),
            publish_before_expiry: Duration::from_secs(20 * DAY),
            activate_after_publish: Duration::from_secs(5 * DAY),
        }
    }
}

impl RolloverPolicy {
    /// Checks that the times make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_lifetime < Duration::from_secs(DAY) {
            return Err("key_lifetime must be at least one day".into());
        }
        if self.publish_before_expiry >= self.key_lifetime {
            return Err("publish_before_expiry must be shorter than key_lifetime".into());
        }
        if self.activate_after_publish >= self.publish_before_expiry {
            return Err(
                "activate_after_publish must be shorter than publish_before_expiry, or the old key expires before the new one signs".into(),
            );
        }
        Ok(())
    }
}

/// One token-signing key.
pub struct TokenSigningKey {
    /// First 16 hex digits of the certificate's SHA-256.
    pub id: String,
    /// The certificate's full SHA-256, hex.
    pub fingerprint: String,
    /// The certificate (DER).
    pub cert_der: Vec<u8>,
    /// When the certificate became valid (= when the key was published).
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
    /// When it starts (or started) signing.
    pub activate_at: SystemTime,
    key: PKey<Private>,
}

impl std::fmt::Debug for TokenSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigningKey")
            .field("id", &self.id)
            .field("not_after", &self.not_after)
            .field("activate_at", &self.activate_at)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl TokenSigningKey {
    /// The private key (to sign tokens with).
    pub fn private_key(&self) -> &PKey<Private> {
        &self.key
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        X509::from_der(&self.cert_der)
            .and_then(|c| c.to_pem())
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default()
    }
}

/// The token-signing keys in a directory.
#[derive(Debug)]
pub struct KeySet {
    dir: PathBuf,
    keys: Vec<TokenSigningKey>,
}

fn signing_err(path: &Path, problem: impl Into<String>) -> CertsError {
    CertsError::SigningKey {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn asn1_time(t: SystemTime) -> Result<Asn1Time, openssl::error::ErrorStack> {
    Asn1Time::from_unix(unix_secs(t))
}

fn asn1_to_system(t: &openssl::asn1::Asn1TimeRef) -> Option<SystemTime> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    Some(from_unix_secs(
        i64::from(d.days) * 86_400 + i64::from(d.secs),
    ))
}

impl KeySet {
    /// Loads the keys in `dir`, creating the directory and a first key (active at once)
    /// when there is none, then applies `policy` (see [`KeySet::maintain`]).
    pub fn load_or_create(
        dir: &Path,
        policy: &RolloverPolicy,
        now: SystemTime,
    ) -> Result<Self, CertsError> {
        ensure_private_dir(dir)?;
        let mut set = Self::load(dir)?;
        if set.keys.is_empty() {
            set.create_key(policy, now, now)?;
        }
        set.maintain(policy, now)?;
        Ok(set)
    }

    /// Loads the keys in `dir` as they are.
    pub fn load(dir: &Path) -> Result<Self, CertsError> {
        let mut keys = Vec::new();
        let entries = fs::read_dir(dir).map_err(|e| CertsError::io("list", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| CertsError::io("list", dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".cert.pem") else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            keys.push(Self::load_one(dir, id)?);
        }
        keys.sort_by_key(|k| (k.activate_at, k.not_before));
        Ok(Self {
            dir: dir.to_owned(),
            keys,
        })
    }

    fn load_one(dir: &Path, id: &str) -> Result<TokenSigningKey, CertsError> {
        let cert_path = dir.join(format!("{id}.cert.pem"));
        let key_path = dir.join(format!("{id}.key.pem"));
        let act_path = dir.join(format!("{id}.activate"));
        let cert = X509::from_pem(&read_bounded(&cert_path, 16 * 1024, false)?)
            .map_err(|e| signing_err(&cert_path, format!("not a PEM certificate: {e}")))?;
        let key_pem = zeroize::Zeroizing::new(read_bounded(&key_path, 16 * 1024, true)?);
        let key = PKey::private_key_from_pem(&key_pem)
            .map_err(|_| signing_err(&key_path, "not a PEM private key"))?;
        let cert_key = cert
            .public_key()
            .map_err(|e| signing_err(&cert_path, e.to_string()))?;
        if !key.public_eq(&cert_key) {
            return Err(signing_err(
                &key_path,
                "the key does not belong to its certificate; restore the pair from a backup or delete both files",
            ));
        }
        let act = String::from_utf8_lossy(&read_bounded(&act_path, 64, false)?)
            .trim()
            .parse::<i64>()
            .map_err(|_| signing_err(&act_path, "not a Unix time"))?;
        let cert_der = cert
            .to_der()
            .map_err(|e| signing_err(&cert_path, e.to_string()))?;
        let fingerprint = fingerprint_of_der(&cert_der);
        let bad_time = || signing_err(&cert_path, "unreadable validity dates");
        Ok(TokenSigningKey {
            id: id.to_owned(),
            not_before: asn1_to_system(cert.not_before()).ok_or_else(bad_time)?,
            not_after: asn1_to_system(cert.not_after()).ok_or_else(bad_time)?,
            activate_at: from_unix_secs(act),
            fingerprint,
            cert_der,
            key,
        })
    }

    fn create_key(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
        activate_at: SystemTime,
    ) -> Result<&TokenSigningKey, CertsError> {
        let dir = self.dir.clone();
        let e = |err: openssl::error::ErrorStack| signing_err(&dir, err.to_string());
        let rsa = openssl::rsa::Rsa::generate(2048).map_err(e)?;
        let key = PKey::from_rsa(rsa).map_err(e)?;
        let mut name = X509NameBuilder::new().map_err(e)?;
        let stamp = unix_secs(now);
        name.append_entry_by_text("CN", &format!("Causeway token signing {stamp}"))
            .map_err(e)?;
        let name = name.build();
        let mut b = X509::builder().map_err(e)?;
        b.set_version(2).map_err(e)?;
        let serial: [u8; 16] = random_bytes()?;
        let serial = BigNum::from_slice(&serial).map_err(e)?;
        let serial = Asn1Integer::from_bn(&serial).map_err(e)?;
        b.set_serial_number(&serial).map_err(e)?;
        b.set_subject_name(&name).map_err(e)?;
        b.set_issuer_name(&name).map_err(e)?;
        // A minute of slack for relying parties whose clocks run slightly behind.
        let nb = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        let (nb, na) = (
            asn1_time(nb).map_err(e)?,
            asn1_time(now + policy.key_lifetime).map_err(e)?,
        );
        b.set_not_before(&nb).map_err(e)?;
        b.set_not_after(&na).map_err(e)?;
        b.set_pubkey(&key).map_err(e)?;
        b.sign(&key, MessageDigest::sha256()).map_err(e)?;
        let cert = b.build();
        let cert_der = cert.to_der().map_err(e)?;
        let id = fingerprint_of_der(&cert_der)[..16].to_owned();
        let key_pem = zeroize::Zeroizing::new(key.private_key_to_pem_pkcs8().map_err(e)?);
        let cert_pem = cert.to_pem().map_err(e)?;
        // Key first, activation time next, certificate last: a key set is only seen once
        // its certificate is in place, so a crash never leaves a half-made key in use.
        for (suffix, data, mode) in [
            ("key.pem", &key_pem[..], 0o600),
            (
                "activate",
                format!("{}\n", unix_secs(activate_at)).as_bytes(),
                0o600,
            ),
            ("cert.pem", &cert_pem[..], 0o644),
        ] {
            let final_name = format!("{id}.{suffix}");
            let tmp = write_temp(&self.dir, &final_name, data, mode)?;
            let dest = self.dir.join(&final_name);
            fs::rename(&tmp, &dest).map_err(|err| CertsError::io("rename", &dest, err))?;
        }
        sync_dir(&self.dir)?;
        let loaded = Self::load_one(&self.dir, &id)?;
        tracing::info!(
            key_id = %loaded.id,
            activates_in_s = activate_at.duration_since(now).map_or(0, |d| d.as_secs()),
            "new token-signing key created and published in metadata"
        );
        self.keys.push(loaded);
        self.keys.sort_by_key(|k| (k.activate_at, k.not_before));
        self.keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| signing_err(&self.dir, "the new key vanished"))
    }

    /// Automatic rollover: when the active key is within `publish_before_expiry` of its
    /// end and no successor exists, creates one that signs `activate_after_publish`
    /// later. Returns whether a key was created.
    pub fn maintain(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
    ) -> Result<bool, CertsError> {
        let active = self.active(now);
        let successor = self
            .keys
            .iter()
            .any(|k| k.activate_at > active.map_or(now, |a| a.activate_at) && k.not_after > now);
        let due = match active {
            None => true,
            Some(a) => now + policy.publish_before_expiry >= a.not_after,
        };
        if due && !successor {
            let activate_at = if active.is_some_and(|a| a.not_after > now) {
                now + policy.activate_after_publish
            } else {
                now
            };
            self.create_key(policy, now, activate_at)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Forced rollover (`causeway certs rollover`): creates a successor now that signs
    /// `activate_after_publish` later, or at once with `activate_now` (for a key that
    /// must not sign any more). With a successor already published, `activate_now`
    /// makes it the signing key at once instead of creating another.
    pub fn rollover(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
        activate_now: bool,
    ) -> Result<String, CertsError> {
        if let Some(pending) = self
            .keys
            .iter()
            .rev()
            .find(|k| k.activate_at > now && k.not_after > now)
        {
            if !activate_now {
                return Ok(pending.id.clone());
            }
            let id = pending.id.clone();
            let final_name = format!("{id}.activate");
            let tmp = write_temp(
                &self.dir,
                &final_name,
                format!("{}\n", unix_secs(now)).as_bytes(),
                0o600,
            )?;
            let dest = self.dir.join(&final_name);
            fs::rename(&tmp, &dest).map_err(|err| CertsError::io("rename", &dest, err))?;
            sync_dir(&self.dir)?;
            *self = Self::load(&self.dir)?;
            return Ok(id);
        }
        let at = if activate_now {
            now
        } else {
            now + policy.activate_after_publish
        };
        Ok(self.create_key(policy, now, at)?.id.clone())
    }

    /// The key that signs now: the most recently activated one that has not expired.
    pub fn active(&self, now: SystemTime) -> Option<&TokenSigningKey> {
        self.keys.iter().rev().find(|k| {
            k.activate_at <= now
                && k.not_after > now
                && k.not_before <= now + Duration::from_secs(120)
        })
    }

    /// Every key to publish in metadata now: all that have not expired, signing key first.
    pub fn published(&self, now: SystemTime) -> Vec<&TokenSigningKey> {
        let active = self.active(now).map(|k| k.id.clone());
        let mut v: Vec<_> = self.keys.iter().filter(|k| k.not_after > now).collect();
        v.sort_by_key(|k| Some(&k.id) != active.as_ref());
        v
    }

    /// Every key, oldest activation first.
    pub fn all(&self) -> &[TokenSigningKey] {
        &self.keys
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_testkit::TempDir as TestDir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_key_signs_at_once_and_is_private() {
        let d = TestDir::new("signing-first");
        let dir = d.path().join("keys");
        let now = SystemTime::now();
        let p = RolloverPolicy::default();
        let set = KeySet::load_or_create(&dir, &p, now).expect("created");
        let k = set.active(now).expect("active");
        assert_eq!(set.published(now).len(), 1);
        let mode = fs::metadata(dir.join(format!("{}.key.pem", k.id)))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{k:?}").contains("PRIVATE"));
        // Loading again finds the same key; nothing new is made.
        let again = KeySet::load_or_create(&dir, &p, now).expect("loaded");
        assert_eq!(again.all().len(), 1);
    }

    #[test]
    fn rollover_publishes_first_and_switches_later() {
        let d = TestDir::new("signing-roll");
        let dir = d.path().join("keys");
        let p = RolloverPolicy::default();
        let t0 = SystemTime::now();
        let mut set = KeySet::load_or_create(&dir, &p, t0).expect("created");
        let first = set.active(t0).expect("active").id.clone();
        // 344 days on: not yet 20 days before expiry.
        let t1 = t0 + Duration::from_secs(344 * DAY);
        assert!(!set.maintain(&p, t1).expect("maintain"));
        // 346 days on: the successor is published but the old key still signs.
        let t2 = t0 + Duration::from_secs(346 * DAY);
        assert!(set.maintain(&p, t2).expect("maintain"));
        assert_eq!(set.active(t2).expect("active").id, first);
        assert_eq!(set.published(t2).len(), 2);
        assert_eq!(set.published(t2)[0].id, first);
        assert!(
            !set.maintain(&p, t2).expect("maintain"),
            "one successor only"
        );
        // Five days after publication the new key signs; both stay published until the
        // old one expires.
        let t3 = t2 + Duration::from_secs(5 * DAY);
        let second = set.active(t3).expect("active").id.clone();
        assert_ne!(second, first);
        assert_eq!(set.published(t3).len(), 2);
        assert_eq!(set.published(t3)[0].id, second);
        let t4 = t0 + Duration::from_secs(366 * DAY);
        assert_eq!(set.published(t4).len(), 1);
        // Another process sees the same state.
        let other = KeySet::load(&dir).expect("load");
        assert_eq!(other.active(t3).expect("active").id, second);
    }

    #[test]
    fn forced_rollover_and_activate_now() {
        let d = TestDir::new("signing-force");
        let dir = d.path().join("keys");
        let p = RolloverPolicy::default();
        let now = SystemTime::now();
        let mut set = KeySet::load_or_create(&dir, &p, now).expect("created");
        let first = set.active(now).expect("active").id.clone();
        let next = set.rollover(&p, now, false).expect("rollover");
        assert_ne!(next, first);
        assert_eq!(set.active(now).expect("active").id, first);
        // Asking again does not pile up keys.
        assert_eq!(set.rollover(&p, now, false).expect("again"), next);
        let later = now + Duration::from_secs(1);
        assert_eq!(set.rollover(&p, later, true).expect("now"), next);
        assert_eq!(set.active(later).expect("active").id, next);
    }

    #[test]
    fn policy_is_checked() {
        assert!(RolloverPolicy::default().validate().is_ok());
        let bad = RolloverPolicy {
            activate_after_publish: Duration::from_secs(30 * DAY),
            ..RolloverPolicy::default()
        };
        assert!(bad.validate().is_err());
    }
}
