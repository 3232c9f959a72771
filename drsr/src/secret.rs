//! Decryption of secret attributes (`unicodePwd`, `ntPwdHistory`) as a replication client
//! receives them: [MS-DRSR] 4.1.10.6.17 `DecryptValuesIfNecessary` (numbered 4.1.10.6.11
//! in older revisions) removes the session layer, then [MS-SAMR] 2.2.11.1 the RID layer.
//! The NT hash leaves this module only as a [`NtHash`]; every buffer in between that holds
//! key or hash material is zeroized, and no error or `Debug` shows any of it.
//!
//! [MS-DRSR]: https://learn.microsoft.com/openspecs/windows_protocols/ms-drsr
//! [MS-SAMR]: https://learn.microsoft.com/openspecs/windows_protocols/ms-samr

use std::fmt;

use causeway_credential::NtHash;
use des::cipher::{Block, BlockCipherDecrypt as _, KeyInit as _};
use des::Des;
use md5::{Digest as _, Md5};
use rc4::{Rc4, StreamCipher as _};
use zeroize::Zeroizing;

pub use crate::msg::EncryptedValue;

/// The security context's session key of one DRSUAPI association (the NTLM exported
/// session key or the Kerberos subkey): the key every secret attribute on that connection
/// is encrypted under. Zeroized on drop, redacted in `Debug`.
pub struct SessionKey(Zeroizing<Vec<u8>>);

impl SessionKey {
    /// Takes ownership of the key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads the key bytes: every call site is a place where the key leaves its box.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// Which secret attribute a value came from (errors name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretAttribute {
    /// `unicodePwd`: the current NT hash.
    UnicodePwd,
    /// `ntPwdHistory`: the NT hashes of the current and earlier passwords.
    NtPwdHistory,
}

impl fmt::Display for SecretAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretAttribute::UnicodePwd => "unicodePwd",
            SecretAttribute::NtPwdHistory => "ntPwdHistory",
        })
    }
}

/// Why a secret attribute could not be decrypted. No variant carries key, value or hash
/// bytes: only lengths and the attribute's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The association has no session key (a local fault: the RPC layer handed over none).
    #[error("the DRSUAPI connection has no session key, so its secret attributes cannot be decrypted: the RPC layer must export the security context's key")]
    NoSessionKey,
    /// The domain controller sent a value too short to hold salt, checksum and one hash.
    #[error("the domain controller sent a {attribute} value of {len} bytes, shorter than the {min} bytes of salt, checksum and one NT hash")]
    TooShort {
        /// The attribute.
        attribute: SecretAttribute,
        /// Its length.
        len: usize,
        /// The least a value can be.
        min: usize,
    },
    /// The domain controller sent a value longer than the attribute can be.
    #[error("the domain controller sent a {attribute} value of {len} bytes, longer than the {max} bytes it can hold ({what})")]
    TooLong {
        /// The attribute.
        attribute: SecretAttribute,
        /// Its length.
        len: usize,
        /// The most a value can be.
        max: usize,
        /// Why that is the most.
        what: &'static str,
    },
    /// The encrypted data is not a whole number of 16-byte hashes.
    #[error("the domain controller sent a {attribute} value whose {len} bytes of encrypted data are not a whole number of 16-byte NT hashes")]
    NotWholeHashes {
        /// The attribute.
        attribute: SecretAttribute,
        /// The length of the encrypted data (after salt and checksum).
        len: usize,
    },
    /// The CRC32 of the decrypted data does not match: the session key is not this
    /// connection's, or the value was damaged on the way.
    #[error("a {attribute} value failed its checksum after decryption: the session key is not the one this value was encrypted under (another connection's, or a wrong one), or the value was damaged")]
    Checksum {
        /// The attribute.
        attribute: SecretAttribute,
    },
}

/// [MS-DRSR] 4.1.10.2.20 `ENCRYPTED_PAYLOAD`: `Salt[16]`, then `CheckSum` (4 bytes) and
/// `EncryptedData`, both under the RC4 stream.
const SALT_LEN: usize = 16;
const CHECKSUM_LEN: usize = 4;
const HASH_LEN: usize = 16;
/// Salt, checksum and one hash: the shortest value either attribute can have.
pub const MIN_VALUE_LEN: usize = SALT_LEN + CHECKSUM_LEN + HASH_LEN;
/// The most history entries a value may carry: AD and Samba cap "Enforce password
/// history" (`pwdHistoryLength`) at 24; anything longer is refused before any work.
pub const MAX_HISTORY: usize = 24;
/// The longest `ntPwdHistory` value accepted.
pub const MAX_HISTORY_VALUE_LEN: usize = SALT_LEN + CHECKSUM_LEN + MAX_HISTORY * HASH_LEN;

/// Decrypts one `unicodePwd` value of the user with relative id `rid` into its NT hash.
pub fn decrypt_nt_hash(
    key: &SessionKey,
    rid: u32,
    value: &EncryptedValue,
) -> Result<NtHash, SecretError> {
    let attribute = SecretAttribute::UnicodePwd;
    check_length(
        attribute,
        value.as_bytes().len(),
        MIN_VALUE_LEN,
        "one NT hash",
    )?;
    let plain = remove_session_layer(key, attribute, value.as_bytes())?;
    Ok(remove_rid_layer(rid, &plain))
}

/// Decrypts one `ntPwdHistory` value of the user with relative id `rid` into its NT
/// hashes, newest first (as the directory keeps them: the first is the current password's).
pub fn decrypt_nt_history(
    key: &SessionKey,
    rid: u32,
    value: &EncryptedValue,
) -> Result<Vec<NtHash>, SecretError> {
    let attribute = SecretAttribute::NtPwdHistory;
    check_length(
        attribute,
        value.as_bytes().len(),
        MAX_HISTORY_VALUE_LEN,
        "24 history entries",
    )?;
    let plain = remove_session_layer(key, attribute, value.as_bytes())?;
    Ok(plain
        .chunks_exact(HASH_LEN)
        .map(|h| remove_rid_layer(rid, h))
        .collect())
}

/// Every length check comes before any cryptography, so a hostile value costs nothing
/// beyond its length: at least [`MIN_VALUE_LEN`], at most `max`, and whole hashes.
fn check_length(
    attribute: SecretAttribute,
    len: usize,
    max: usize,
    what: &'static str,
) -> Result<(), SecretError> {
    if len < MIN_VALUE_LEN {
        return Err(SecretError::TooShort {
            attribute,
            len,
            min: MIN_VALUE_LEN,
        });
    }
    if len > max {
        return Err(SecretError::TooLong {
            attribute,
            len,
            max,
            what,
        });
    }
    let data = len - SALT_LEN - CHECKSUM_LEN;
    if !data.is_multiple_of(HASH_LEN) {
        return Err(SecretError::NotWholeHashes {
            attribute,
            len: data,
        });
    }
    Ok(())
}

/// [MS-DRSR] 4.1.10.6.17 `DecryptValuesIfNecessary`: the RC4 key is MD5(session key ‖
/// salt); RC4 over `CheckSum ‖ EncryptedData` gives the CRC32 ([ISO/IEC 13239], as zlib
/// computes it, little-endian) of the data that follows it. Returns that data, still under
/// the RID layer. `value` has passed [`check_length`].
fn remove_session_layer(
    key: &SessionKey,
    attribute: SecretAttribute,
    value: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    if key.expose_secret().is_empty() {
        return Err(SecretError::NoSessionKey);
    }
    let (salt, sealed) = value.split_at(SALT_LEN);
    // The RC4 key: MD5 over the session key, then the salt.
    let mut md5 = Md5::new();
    md5.update(key.expose_secret());
    md5.update(salt);
    let rc4_key = Zeroizing::new(md5.finalize());
    // One RC4 stream over the checksum and the data together.
    let mut rc4 = Rc4::new_from_slice(&rc4_key).expect("a 16-byte RC4 key is always valid");
    let mut plain = Zeroizing::new(sealed.to_vec());
    rc4.apply_keystream(&mut plain);
    // The CRC32 of the decrypted data must equal the decrypted checksum; otherwise the key
    // is wrong (RC4 itself cannot tell).
    let (checksum, data) = plain.split_at(CHECKSUM_LEN);
    let received = u32::from_le_bytes([checksum[0], checksum[1], checksum[2], checksum[3]]);
    if crc32fast::hash(data) != received {
        return Err(SecretError::Checksum { attribute });
    }
    // In place: the spare capacity the checksum leaves is zeroized with the rest on drop.
    plain.drain(..CHECKSUM_LEN);
    Ok(plain)
}

/// [MS-SAMR] 2.2.11.1.1 "Encrypting an NT or LM Hash Value with a Specified Key", undone:
/// the first 8 bytes are DES-decrypted under Key1, the last 8 under Key2, both derived
/// from the RID ([`rid_keys`]). `hash` is exactly 16 bytes (its caller chunks by 16).
fn remove_rid_layer(rid: u32, hash: &[u8]) -> NtHash {
    let keys = rid_keys(rid);
    let mut out = Zeroizing::new([0u8; HASH_LEN]);
    out.copy_from_slice(hash);
    for (half, key) in out.chunks_exact_mut(8).zip(keys.iter()) {
        // ECB, one block each: DES with an 8-byte key cannot be refused.
        let des = Des::new(key.into());
        let block: &mut Block<Des> = half.try_into().expect("chunks of 8");
        des.decrypt_block(block);
    }
    NtHash::from_bytes(*out)
}

/// [MS-SAMR] 2.2.11.1.3 "Deriving Key1 and Key2 from a Little-Endian, Unsigned Integer
/// Key": with I the RID's little-endian bytes, Key1 = I0 I1 I2 I3 I0 I1 I2 and
/// Key2 = I3 I0 I1 I2 I3 I0 I1, each spread to a DES key by [`des_key`]. These keys come
/// from the RID, which is public (the last part of the SID): they hide nothing, so they
/// are not treated as secrets.
fn rid_keys(rid: u32) -> [[u8; 8]; 2] {
    let i = rid.to_le_bytes();
    [
        des_key([i[0], i[1], i[2], i[3], i[0], i[1], i[2]]),
        des_key([i[3], i[0], i[1], i[2], i[3], i[0], i[1]]),
    ]
}

/// [MS-SAMR] 2.2.11.1.2 "Encrypting a 64-Bit Block with a 7-Byte Key": the 56 key bits,
/// seven to a byte, each byte shifted left by one (DES ignores the low parity bit).
fn des_key(k: [u8; 7]) -> [u8; 8] {
    let seven = [
        k[0] >> 1,
        ((k[0] & 0x01) << 6) | (k[1] >> 2),
        ((k[1] & 0x03) << 5) | (k[2] >> 3),
        ((k[2] & 0x07) << 4) | (k[3] >> 4),
        ((k[3] & 0x0f) << 3) | (k[4] >> 5),
        ((k[4] & 0x1f) << 2) | (k[5] >> 6),
        ((k[5] & 0x3f) << 1) | (k[6] >> 7),
        k[6] & 0x7f,
    ];
    seven.map(|b| b << 1)
}

#[cfg(test)]
mod tests;
