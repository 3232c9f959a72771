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

/// When a successor starts signing at the latest: this long before the signing key
/// expires (or half its remaining life, when less is left), so that clock skew between
/// replicas and relying parties never meets an expired key.
pub const SWITCH_MARGIN: Duration = Duration::from_secs(3600);

/// When a successor published at `now` should start: `lead` later, capped at the signing
/// key's end (`expires`) minus [`SWITCH_MARGIN`] (or half the remaining life, if shorter).
/// Returns the start and whether `lead` could be honoured.
pub fn successor_start(lead: Duration, now: SystemTime, expires: SystemTime) -> (SystemTime, bool) {
    let latest = latest_start(now, expires);
    let wanted = now + lead;
    if wanted <= latest {
        (wanted, true)
    } else {
        (latest, false)
    }
}

/// The latest start for a successor of a key that expires at `expires`.
fn latest_start(now: SystemTime, expires: SystemTime) -> SystemTime {
    let remaining = expires.duration_since(now).unwrap_or(Duration::ZERO);
    expires - SWITCH_MARGIN.min(remaining / 2)
}

fn secs_between(a: SystemTime, b: SystemTime) -> u64 {
    b.duration_since(a).map_or(0, |d| d.as_secs())
}

fn warn_lead_time_cut(lead: Duration, now: SystemTime, at: SystemTime, expires: SystemTime) {
    tracing::warn!(
        wanted_lead_s = lead.as_secs(),
        lead_s = secs_between(now, at),
        signing_key_expires_in_s = secs_between(now, expires),
        "TOKEN-SIGNING KEY ROLLOVER CANNOT HONOUR ITS PUBLICATION LEAD TIME: the next key signs before the current one expires, sooner than relying parties were promised; those that refresh metadata less often will reject tokens until they do. Lengthen key_lifetime or publish_before_expiry, or run `causeway certs rollover` earlier"
    );
}

/// When `causeway certs rollover` makes the next key sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// At once.
    Now,
    /// This long after now (a published successor is moved to that time).
    After(Duration),
    /// `activate_after_publish` after publication; a published successor keeps its time.
    Scheduled,
}

/// What a forced rollover did to the next key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloverChange {
    /// A new key was created and published.
    Created,
    /// The published successor's start was moved.
    Rescheduled,
    /// The published successor was left as it was.
    Unchanged,
}

/// The outcome of [`KeySet::rollover`], read back from the key set (so what is printed is
/// what was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollover {
    /// The next key.
    pub id: String,
    /// When it signs.
    pub activate_at: SystemTime,
    /// When the key signing now expires (none signed).
    pub signing_key_expires: Option<SystemTime>,
    /// What was done.
    pub change: RolloverChange,
    /// The lead time asked for could not be honoured: the start was brought forward to
    /// before the signing key's end.
    pub lead_time_cut: bool,
}

/// The signing key's remaining life and its successor (see [`KeySet::health`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyHealth {
    /// The key that signs now.
    pub active_id: Option<String>,
    /// When it expires.
    pub active_expires: Option<SystemTime>,
    /// The published successor.
    pub next_id: Option<String>,
    /// When the successor starts signing.
    pub next_activates: Option<SystemTime>,
}

impl KeyHealth {
    /// Whole seconds the signing key has left at `now` (0 when none signs).
    pub fn seconds_left(&self, now: SystemTime) -> u64 {
        self.active_expires.map_or(0, |e| secs_between(now, e))
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
    /// later, but always before the active key expires (see [`successor_start`]). It
    /// also repairs what would otherwise be an outage: a successor scheduled to start
    /// after the active key's end is brought forward, and when no key signs at all
    /// (after a long downtime) the published successor, or else a new key, signs at
    /// once. Returns whether anything was written.
    pub fn maintain(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
    ) -> Result<bool, CertsError> {
        let Some(active) = self.active(now) else {
            return self.activate_something(policy, now).map(|_| true);
        };
        let (active_id, active_start, expires) =
            (active.id.clone(), active.activate_at, active.not_after);
        if let Some(next) = self.pending_after(active_start, now) {
            let (next_id, next_start) = (next.id.clone(), next.activate_at);
            let latest = latest_start(now, expires);
            if next_start > latest {
                tracing::warn!(
                    key_id = %next_id,
                    active_key_id = %active_id,
                    active_expires_in_s = secs_between(now, expires),
                    "the next token-signing key was scheduled to start after the signing key expires; it starts before then instead"
                );
                self.write_activation(&next_id, latest)?;
                return Ok(true);
            }
            return Ok(false);
        }
        if now + policy.publish_before_expiry < expires {
            return Ok(false);
        }
        let (at, honoured) = successor_start(policy.activate_after_publish, now, expires);
        if !honoured {
            warn_lead_time_cut(policy.activate_after_publish, now, at, expires);
        }
        self.create_key(policy, now, at)?;
        Ok(true)
    }

    /// No key signs now: makes the earliest published successor sign at once (relying
    /// parties may have seen it), or creates a key that does.
    fn activate_something(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
    ) -> Result<String, CertsError> {
        let pending = self
            .keys
            .iter()
            .find(|k| k.activate_at > now && k.not_after > now)
            .map(|k| k.id.clone());
        if let Some(id) = pending {
            tracing::warn!(
                key_id = %id,
                "no token-signing key was signing (the endpoint was down past the old key's end, or its successor was scheduled too late): the published successor signs now"
            );
            self.write_activation(&id, now)?;
            return Ok(id);
        }
        if !self.keys.is_empty() {
            tracing::warn!(
                "every token-signing key has expired (the endpoint was down past their end): a new key signs now; relying parties must fetch the metadata again before they accept its tokens"
            );
        }
        Ok(self.create_key(policy, now, now)?.id.clone())
    }

    /// The earliest key that starts after `after` and has not expired.
    fn pending_after(&self, after: SystemTime, now: SystemTime) -> Option<&TokenSigningKey> {
        self.keys
            .iter()
            .find(|k| k.activate_at > after && k.activate_at > now && k.not_after > now)
    }

    /// Rewrites `id`'s activation time (atomically) and reloads the set.
    fn write_activation(&mut self, id: &str, at: SystemTime) -> Result<(), CertsError> {
        let final_name = format!("{id}.activate");
        let tmp = write_temp(
            &self.dir,
            &final_name,
            format!("{}\n", unix_secs(at)).as_bytes(),
            0o600,
        )?;
        let dest = self.dir.join(&final_name);
        fs::rename(&tmp, &dest).map_err(|err| CertsError::io("rename", &dest, err))?;
        sync_dir(&self.dir)?;
        *self = Self::load(&self.dir)?;
        Ok(())
    }

    /// Forced rollover (`causeway certs rollover`). Without a published successor, creates
    /// one that signs as `when` says. With one, [`Activation::Now`] makes it sign at once,
    /// [`Activation::After`] moves its start to that long from now, and
    /// [`Activation::Scheduled`] leaves it as it is. A start is never later than the
    /// signing key's end (see [`successor_start`]); the outcome says what was done.
    pub fn rollover(
        &mut self,
        policy: &RolloverPolicy,
        now: SystemTime,
        when: Activation,
    ) -> Result<Rollover, CertsError> {
        let expires = self.active(now).map(|a| a.not_after);
        let wanted = match when {
            Activation::Now => Duration::ZERO,
            Activation::After(d) => d,
            Activation::Scheduled => policy.activate_after_publish,
        };
        let (at, honoured) = match expires {
            Some(e) => successor_start(wanted, now, e),
            None => (now, wanted.is_zero()),
        };
        let pending = self
            .keys
            .iter()
            .rev()
            .find(|k| k.activate_at > now && k.not_after > now)
            .map(|k| (k.id.clone(), k.activate_at));
        let (id, change) = match pending {
            Some((id, _)) if when == Activation::Scheduled => (id, RolloverChange::Unchanged),
            Some((id, _)) => {
                self.write_activation(&id, at)?;
                (id, RolloverChange::Rescheduled)
            }
            None => {
                let id = self.create_key(policy, now, at)?.id.clone();
                (id, RolloverChange::Created)
            }
        };
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| signing_err(&self.dir, "the key vanished"))?;
        if !honoured && change != RolloverChange::Unchanged {
            warn_lead_time_cut(wanted, now, key.activate_at, key.not_after);
        }
        Ok(Rollover {
            id,
            activate_at: key.activate_at,
            signing_key_expires: expires,
            change,
            lead_time_cut: !honoured && change != RolloverChange::Unchanged,
        })
    }

    /// The signing key's remaining life and whether its successor is published, for
    /// `/healthz` and the metrics (monitoring alerts before an outage).
    pub fn health(&self, now: SystemTime) -> KeyHealth {
        let active = self.active(now);
        let next = active.and_then(|a| self.pending_after(a.activate_at, now));
        KeyHealth {
            active_id: active.map(|a| a.id.clone()),
            active_expires: active.map(|a| a.not_after),
            next_id: next.map(|n| n.id.clone()),
            next_activates: next.map(|n| n.activate_at),
        }
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
mod tests;
