use causeway_credential::Password;

use super::*;

// Small enough not to need the hex crate (one dev-dependency fewer for the crate).
fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "hex of odd length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Test code compares hashes by value (the production code never compares them).
fn same(a: &NtHash, b: &NtHash) -> bool {
    a.expose_secret() == b.expose_secret()
}

fn hash_hex(h: &NtHash) -> String {
    to_hex(h.expose_secret())
}

fn nt(password: &str) -> NtHash {
    NtHash::from_password(&Password::new(password.into()).expect("valid"))
}

/// The session key of the independent vectors below (bytes 0x10..0x1f).
fn vector_key() -> SessionKey {
    SessionKey::new((0x10..0x20).collect())
}

/// Made with pycryptodome (MD5, ARC4, DES) and impacket's `drsuapi.deriveKey`, and read
/// back with impacket's `DecryptAttributeValue` + `removeDESLayer`: alice's NT hash
/// (MD4 of "Blue-Harbor-41") as a `unicodePwd` of RID 1104 under `vector_key()`, salt
/// a1b2…8f90.
const ALICE_UNICODE_PWD: &str =
    "a1b2c3d4e5f60718293a4b5c6d7e8f90358d967b9e6e5c441d542a76dee8b4eb83e82491";
const ALICE_NT: &str = "9172d29a2718fb749f12dec01e082c92";
/// The same way: an `ntPwdHistory` of RID 1104 with three entries (Blue-Harbor-41,
/// Old-Pw-1, Older-Pw-2), zero salt.
const ALICE_HISTORY: &str = "000000000000000000000000000000001deb84c4f3b9604086136e80181dbce0b6817b523b0c19ce79c06b16866f46baa2c611ce15dac621fbd075e564b7c920d6eae983";

/// The inverse of `decrypt_*`, from the same primitives: builds values the vectors do not
/// cover (other lengths, many entries) for the bound and damage tests.
fn encrypt(key: &SessionKey, salt: [u8; 16], rid: u32, hashes: &[[u8; 16]]) -> EncryptedValue {
    use des::cipher::BlockCipherEncrypt as _;
    let keys = rid_keys(rid);
    let mut data = Vec::new();
    for h in hashes {
        let mut h = *h;
        for (half, k) in h.chunks_exact_mut(8).zip(keys.iter()) {
            Des::new(k.into()).encrypt_block(half.try_into().expect("8"));
        }
        data.extend_from_slice(&h);
    }
    let mut sealed = crc32fast::hash(&data).to_le_bytes().to_vec();
    sealed.extend_from_slice(&data);
    let mut md5 = Md5::new();
    md5.update(key.expose_secret());
    md5.update(salt);
    Rc4::new_from_slice(&md5.finalize())
        .expect("key")
        .apply_keystream(&mut sealed);
    let mut v = salt.to_vec();
    v.extend_from_slice(&sealed);
    EncryptedValue::new(v)
}

/// The lab DC's own values (`testdata/lab1_secrets.txt`): its session key, and per named
/// user the RID, the encrypted `unicodePwd` and `ntPwdHistory`, impacket's decryption and
/// the lab password.
struct LabUser<'a> {
    sam: &'a str,
    rid: u32,
    unicode_pwd: Vec<u8>,
    history: Vec<u8>,
    impacket: &'a str,
    password: &'a str,
}

fn lab_capture() -> (SessionKey, Vec<LabUser<'static>>) {
    let text = include_str!("../../testdata/lab1_secrets.txt");
    let mut key = None;
    let mut users = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["session-key", k] => key = Some(SessionKey::new(hex(k))),
            ["user", sam, rid, pwd, history, impacket, password] => users.push(LabUser {
                sam,
                rid: rid.parse().expect("rid"),
                unicode_pwd: hex(pwd),
                history: hex(history),
                impacket,
                password,
            }),
            other => panic!("unexpected fixture line {other:?}"),
        }
    }
    (key.expect("a session key"), users)
}

/// Samba's values decrypt, pass the CRC32 (which impacket does not check) and give, for
/// every named lab user, the hash impacket read and the MD4 of the lab password: the
/// truth. The history's first entry is the current password.
#[test]
fn the_lab_dcs_values_decrypt_to_the_lab_passwords() {
    let (key, users) = lab_capture();
    assert!(users.len() >= 15, "every named lab user is in the fixture");
    for u in &users {
        let h = decrypt_nt_hash(&key, u.rid, &EncryptedValue::new(u.unicode_pwd.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", u.sam));
        assert_eq!(hash_hex(&h), u.impacket, "{} agrees with impacket", u.sam);
        assert!(
            same(&h, &nt(u.password)),
            "{} is MD4 of the lab password",
            u.sam
        );
        let history = decrypt_nt_history(&key, u.rid, &EncryptedValue::new(u.history.clone()))
            .unwrap_or_else(|e| panic!("{}: {e}", u.sam));
        assert!(!history.is_empty(), "{}", u.sam);
        assert!(
            same(&history[0], &h),
            "{}: history starts with the current hash",
            u.sam
        );
    }
    let alice = users.iter().find(|u| u.sam == "alice").expect("alice");
    assert_eq!(alice.impacket, ALICE_NT);
}

/// Another connection's session key (here: the independent vectors' key) fails every lab
/// value's checksum: it never yields a hash.
#[test]
fn the_lab_values_refuse_another_connections_key() {
    let (_, users) = lab_capture();
    for u in &users {
        assert_eq!(
            decrypt_nt_hash(
                &vector_key(),
                u.rid,
                &EncryptedValue::new(u.unicode_pwd.clone())
            )
            .err(),
            Some(SecretError::Checksum {
                attribute: SecretAttribute::UnicodePwd
            }),
            "{}",
            u.sam
        );
    }
}

/// [MS-SAMR] 2.2.11.1.3 and 2.2.11.1.2, against impacket's `deriveKey` (with its
/// `transformKey`) for an administrator, a user and a RID using all four bytes.
#[test]
fn rid_keys_match_an_independent_implementation() {
    let cases = [
        (500, "f40040000ea00400", "007a00200006d002"),
        (1104, "5002000004801000", "0028008000024008"),
        (0x1234_5678, "782a8c8226c25868", "123c14c64092e0ac"),
    ];
    for (rid, k1, k2) in cases {
        let keys = rid_keys(rid);
        assert_eq!(to_hex(&keys[0]), k1, "Key1 of RID {rid}");
        assert_eq!(to_hex(&keys[1]), k2, "Key2 of RID {rid}");
    }
}

#[test]
fn unicode_pwd_known_answer() {
    let h = decrypt_nt_hash(
        &vector_key(),
        1104,
        &EncryptedValue::new(hex(ALICE_UNICODE_PWD)),
    )
    .expect("decrypts");
    assert_eq!(hash_hex(&h), ALICE_NT);
    // And it is the MD4 of the lab password, the truth every source must agree with.
    assert!(same(&h, &nt("Blue-Harbor-41")));
}

#[test]
fn history_known_answer_keeps_the_order() {
    let hs = decrypt_nt_history(
        &vector_key(),
        1104,
        &EncryptedValue::new(hex(ALICE_HISTORY)),
    )
    .expect("decrypts");
    let want: Vec<String> = ["Blue-Harbor-41", "Old-Pw-1", "Older-Pw-2"]
        .iter()
        .map(|p| hash_hex(&nt(p)))
        .collect();
    assert_eq!(hs.iter().map(hash_hex).collect::<Vec<_>>(), want);
}

/// A wrong session key is caught by the checksum, never turned into a wrong hash.
#[test]
fn wrong_session_key_is_a_checksum_error() {
    let value = EncryptedValue::new(hex(ALICE_UNICODE_PWD));
    let mut k = (0x10..0x20).collect::<Vec<u8>>();
    k[15] ^= 1;
    assert_eq!(
        decrypt_nt_hash(&SessionKey::new(k.clone()), 1104, &value).err(),
        Some(SecretError::Checksum {
            attribute: SecretAttribute::UnicodePwd
        })
    );
    assert_eq!(
        decrypt_nt_history(
            &SessionKey::new(k),
            1104,
            &EncryptedValue::new(hex(ALICE_HISTORY))
        )
        .err(),
        Some(SecretError::Checksum {
            attribute: SecretAttribute::NtPwdHistory
        })
    );
}

/// Any flipped bit of salt, checksum or data fails the checksum.
#[test]
fn every_damaged_byte_is_a_checksum_error() {
    let good = hex(ALICE_UNICODE_PWD);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x80;
        assert_eq!(
            decrypt_nt_hash(&vector_key(), 1104, &EncryptedValue::new(bad)).err(),
            Some(SecretError::Checksum {
                attribute: SecretAttribute::UnicodePwd
            }),
            "byte {i} flipped"
        );
    }
}

/// The RID is the second key: the right session key with another RID gives another hash
/// (the checksum covers only the session layer, so nothing can catch this but the caller
/// passing the object's own RID).
#[test]
fn the_rid_keys_the_inner_layer() {
    let other = decrypt_nt_hash(
        &vector_key(),
        1105,
        &EncryptedValue::new(hex(ALICE_UNICODE_PWD)),
    )
    .expect("the session layer is intact");
    assert_ne!(hash_hex(&other), ALICE_NT);
}

#[test]
fn lengths_are_checked_before_any_decryption() {
    let k = vector_key();
    // Even with no session key the length is what is refused: nothing is decrypted.
    assert!(matches!(
        decrypt_nt_hash(
            &SessionKey::new(Vec::new()),
            1104,
            &EncryptedValue::new(vec![0; 8])
        )
        .err(),
        Some(SecretError::TooShort { len: 8, .. })
    ));
    for len in [0, 1, 19, 20, 35] {
        assert_eq!(
            decrypt_nt_hash(&k, 1104, &EncryptedValue::new(vec![0; len])).err(),
            Some(SecretError::TooShort {
                attribute: SecretAttribute::UnicodePwd,
                len,
                min: 36
            }),
            "{len} bytes"
        );
        assert!(matches!(
            decrypt_nt_history(&k, 1104, &EncryptedValue::new(vec![0; len])).err(),
            Some(SecretError::TooShort { len: l, .. }) if l == len
        ));
    }
    // unicodePwd holds exactly one hash.
    let two = encrypt(&k, [1; 16], 1104, &[[2; 16], [3; 16]]);
    assert_eq!(
        decrypt_nt_hash(&k, 1104, &two).err(),
        Some(SecretError::TooLong {
            attribute: SecretAttribute::UnicodePwd,
            len: 52,
            max: 36,
            what: "one NT hash"
        })
    );
    // Partial hashes.
    for len in [37, 51, 53] {
        assert_eq!(
            decrypt_nt_history(&k, 1104, &EncryptedValue::new(vec![0; len])).err(),
            Some(SecretError::NotWholeHashes {
                attribute: SecretAttribute::NtPwdHistory,
                len: len - 20
            })
        );
    }
}

/// 24 history entries are read, 25 (or a megabyte) refused by length alone.
#[test]
fn history_is_bounded_at_24_entries() {
    let k = vector_key();
    let hashes: Vec<[u8; 16]> = (0..25u8).map(|i| [i; 16]).collect();
    let full = decrypt_nt_history(&k, 1104, &encrypt(&k, [9; 16], 1104, &hashes[..24]))
        .expect("24 entries");
    assert_eq!(full.len(), 24);
    for (h, want) in full.iter().zip(&hashes) {
        assert_eq!(h.expose_secret(), want);
    }
    assert_eq!(
        decrypt_nt_history(&k, 1104, &encrypt(&k, [9; 16], 1104, &hashes)).err(),
        Some(SecretError::TooLong {
            attribute: SecretAttribute::NtPwdHistory,
            len: 20 + 25 * 16,
            max: MAX_HISTORY_VALUE_LEN,
            what: "24 history entries"
        })
    );
    assert!(matches!(
        decrypt_nt_history(&k, 1104, &EncryptedValue::new(vec![0; 1 << 20])).err(),
        Some(SecretError::TooLong { .. })
    ));
}

#[test]
fn an_empty_session_key_is_named() {
    assert_eq!(
        decrypt_nt_hash(
            &SessionKey::new(Vec::new()),
            1104,
            &EncryptedValue::new(hex(ALICE_UNICODE_PWD))
        )
        .err(),
        Some(SecretError::NoSessionKey)
    );
}

/// Keys of other lengths (a Kerberos subkey is 16 or 32 bytes) work the same way.
#[test]
fn session_keys_of_any_length_round_trip() {
    for len in [1usize, 16, 32, 64] {
        let k = SessionKey::new(vec![0x5a; len]);
        let h = nt("Blue-Harbor-41");
        let v = encrypt(&k, [7; 16], 500, &[*h.expose_secret()]);
        let back = decrypt_nt_hash(&k, 500, &v).expect("decrypts");
        assert!(same(&back, &h), "{len}-byte key");
    }
}

#[test]
fn nothing_secret_is_formatted() {
    let k = vector_key();
    assert_eq!(format!("{k:?}"), "SessionKey([redacted])");
    let v = EncryptedValue::new(hex(ALICE_UNICODE_PWD));
    assert_eq!(format!("{v:?}"), "EncryptedValue(36 bytes)");
    let h = decrypt_nt_hash(&k, 1104, &v).expect("decrypts");
    assert_eq!(format!("{h:?}"), "NtHash([redacted])");
    // Errors carry lengths and names only: no byte of key, value or hash in any form.
    let errors = [
        SecretError::NoSessionKey,
        SecretError::Checksum {
            attribute: SecretAttribute::UnicodePwd,
        },
        decrypt_nt_hash(&k, 1104, &EncryptedValue::new(vec![0x91; 12])).expect_err("short"),
    ];
    for e in errors {
        for text in [e.to_string(), format!("{e:?}")] {
            for needle in ["9172", "a1b2", "1011121314", "145, 145"] {
                assert!(!text.to_lowercase().contains(needle), "{text}");
            }
        }
    }
}
