//! Any bytes as a replicated `unicodePwd` or `ntPwdHistory` value, under a fixed session
//! key and a RID taken from the input: never a panic, and a value the length checks let
//! through is decrypted only when its checksum holds. A leading 0 byte XORs the rest onto
//! a valid value, so the fuzzer also explores values that are nearly right (past the
//! length checks, into RC4 and the CRC).
#![no_main]

use causeway_drsr::secret::{
    decrypt_nt_hash, decrypt_nt_history, EncryptedValue, SecretError, SessionKey,
    MAX_HISTORY_VALUE_LEN, MIN_VALUE_LEN,
};
use libfuzzer_sys::fuzz_target;

/// A `unicodePwd` of RID 1104 under the key 0x10..0x1f (the unit tests' known answer).
const VALID: [u8; 36] = [
    0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f,
    0x90, 0x35, 0x8d, 0x96, 0x7b, 0x9e, 0x6e, 0x5c, 0x44, 0x1d, 0x54, 0x2a, 0x76, 0xde, 0xe8,
    0xb4, 0xeb, 0x83, 0xe8, 0x24, 0x91,
];

fuzz_target!(|data: &[u8]| {
    let key = SessionKey::new((0x10..0x20).collect());
    let (rid, bytes) = match data.split_first() {
        Some((0, rest)) => {
            let mut b = VALID.to_vec();
            for (i, x) in rest.iter().enumerate() {
                match b.get_mut(i) {
                    Some(v) => *v ^= x,
                    None => b.push(*x),
                }
            }
            (1104, b)
        }
        Some((r, rest)) => (u32::from(*r) * 4099, rest.to_vec()),
        None => (0, Vec::new()),
    };
    let len = bytes.len();
    let value = EncryptedValue::new(bytes);
    match decrypt_nt_hash(&key, rid, &value) {
        Ok(_) => assert_eq!(len, MIN_VALUE_LEN),
        Err(SecretError::TooShort { len: l, .. } | SecretError::TooLong { len: l, .. }) => {
            assert_eq!(l, len)
        }
        Err(_) => {}
    }
    match decrypt_nt_history(&key, rid, &value) {
        Ok(h) => {
            assert!((MIN_VALUE_LEN..=MAX_HISTORY_VALUE_LEN).contains(&len));
            assert_eq!(h.len() * 16 + 20, len);
        }
        Err(_) => {}
    }
});
