//! The key that seals sign-in state handed to browsers, and the length-prefixed codec of
//! what it seals. It must never let a value spill into the next field, nor accept state
//! it did not seal.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::{AeadInOut, KeyInit, XChaCha20Poly1305, XNonce};

use super::FlowError;

/// Largest sealed state accepted, checked before any decoding. A SAML target is at most
/// about 3.5 KiB of text (entity id 1 KiB, ACS 2 KiB, request id, RelayState and format),
/// a WS-Federation one a little more with a 2 KiB `wctx`; base64 adds a third.
pub const MAX_FLOW_BLOB: usize = 12 * 1024;
/// The file, in the token-signing key directory, that holds the key of the sealed state.
pub const FLOW_KEY_FILE: &str = "flow-state.key";
const BLOB_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The key that seals sign-in state handed to browsers (XChaCha20-Poly1305: a random
/// 192-bit nonce per seal, so nonces never repeat in practice). Printed as `[redacted]`.
pub struct FlowKey(XChaCha20Poly1305);

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey([redacted])")
    }
}

impl FlowKey {
    /// A key of the given bytes.
    pub fn from_bytes(k: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*k)))
    }

    /// A fresh random key (state sealed under it does not survive the process).
    pub fn random() -> Self {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *k).expect("OS random generator");
        Self::from_bytes(&k)
    }

    /// Loads the key from `path`, or creates it there (mode 0600) when it does not exist.
    /// Kept on disk so that a restart does not turn every pending sign-in into an error,
    /// and so that processes sharing the data directory accept each other's state.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let k = crate::key_file::load_or_create(
            path,
            "the sign-in state key",
            "remove it to have a new one made (pending sign-ins then start again)",
        )?;
        Ok(Self::from_bytes(&k))
    }

    /// `version ‖ nonce ‖ ciphertext ‖ tag`, base64url.
    pub(super) fn seal(&self, aad: &[u8], plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("OS random generator");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(BLOB_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .encrypt_inout_detached(
                &XNonce::from(nonce),
                aad,
                out[1 + NONCE_LEN..].as_mut().into(),
            )
            // Only messages beyond 256 GiB are refused.
            .expect("XChaCha20-Poly1305 seals a small message");
        out.extend_from_slice(&tag);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
    }

    pub(super) fn open(
        &self,
        aad: &[u8],
        blob: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, FlowError> {
        if blob.len() > MAX_FLOW_BLOB {
            return Err(FlowError::Malformed);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(blob.as_bytes())
            .map_err(|_| FlowError::Malformed)?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != BLOB_VERSION {
            return Err(FlowError::Malformed);
        }
        let nonce: [u8; NONCE_LEN] = raw[1..=NONCE_LEN]
            .try_into()
            .map_err(|_| FlowError::Malformed)?;
        let tag: [u8; TAG_LEN] = raw[raw.len() - TAG_LEN..]
            .try_into()
            .map_err(|_| FlowError::Malformed)?;
        let mut body = zeroize::Zeroizing::new(raw[1 + NONCE_LEN..raw.len() - TAG_LEN].to_vec());
        self.0
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                aad,
                body.as_mut_slice().into(),
                &chacha20poly1305::Tag::from(tag),
            )
            .map_err(|_| FlowError::Tampered)?;
        Ok(body)
    }
}

/// Writes the fields of sealed state (length-prefixed, so no value can spill into another).
#[derive(Default)]
pub(super) struct Writer(pub(super) Vec<u8>);

impl Writer {
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn str(&mut self, v: &str) {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v.as_bytes());
    }
    pub(super) fn opt(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
}

/// Reads what [`Writer`] wrote. The data was authenticated already, so a failure here means
/// a version mismatch, reported as damage.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], FlowError> {
        if self.0.len() < n {
            return Err(FlowError::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(super) fn u8(&mut self) -> Result<u8, FlowError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn arr<const N: usize>(&mut self) -> Result<[u8; N], FlowError> {
        self.take(N)?.try_into().map_err(|_| FlowError::Malformed)
    }
    pub(super) fn u64(&mut self) -> Result<u64, FlowError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    pub(super) fn str(&mut self) -> Result<String, FlowError> {
        let n = usize::try_from(self.u64()?).map_err(|_| FlowError::Malformed)?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| FlowError::Malformed)
    }
    pub(super) fn opt(&mut self) -> Result<Option<String>, FlowError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(FlowError::Malformed),
        }
    }
    pub(super) fn done(&self) -> Result<(), FlowError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FlowError::Malformed)
        }
    }
}
