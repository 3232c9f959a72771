//! `private_key_jwt` client authentication (OIDC Core §9, RFC 7523 §3): a JWT the client
//! signs with a key from the JWKS it registered. Only RS256 and ES256 are accepted —
//! `alg=none` and every HMAC algorithm are refused before any key is looked at, so a
//! public key can never be used as an HMAC secret — and the key comes from the
//! registration, never from the token. The caller records `jti` until `exp` (one use).

use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::sign::Verifier;
use serde_json::Value;

use crate::error::{ErrorCode, OAuthError};
use crate::{b64url_decode, jwt::MAX_JWT};

/// The `client_assertion_type` of a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// The longest an assertion may live (exp − now), so the used-`jti` record stays small.
pub const MAX_LIFETIME_SECS: u64 = 600;

fn refused(d: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, d)
}

/// One usable key of a registered JWKS.
struct Key {
    kid: Option<String>,
    alg: &'static str,
    key: PKey<Public>,
}

fn b64_bn(v: &Value) -> Option<BigNum> {
    BigNum::from_slice(&b64url_decode(v.as_str()?)?).ok()
}

fn key_of(jwk: &Value) -> Option<Key> {
    let kid = jwk["kid"].as_str().map(str::to_owned);
    if jwk.get("d").is_some() {
        return None; // a private key has no place in a registration
    }
    match jwk["kty"].as_str()? {
        "RSA" => {
            let rsa = Rsa::from_public_components(b64_bn(&jwk["n"])?, b64_bn(&jwk["e"])?).ok()?;
            if rsa.size() < 256 {
                return None; // under 2048 bits
            }
            Some(Key {
                kid,
                alg: "RS256",
                key: PKey::from_rsa(rsa).ok()?,
            })
        }
        "EC" if jwk["crv"] == "P-256" => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok()?;
            let (x, y) = (b64_bn(&jwk["x"])?, b64_bn(&jwk["y"])?);
            let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y).ok()?;
            ec.check_key().ok()?;
            Some(Key {
                kid,
                alg: "ES256",
                key: PKey::from_ec_key(ec).ok()?,
            })
        }
        _ => None,
    }
}

/// The usable keys of a JWKS document; an error if it has none.
pub fn check_jwks(text: &str) -> Result<usize, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    let keys = v["keys"]
        .as_array()
        .ok_or("the JWKS has no \"keys\" array")?;
    if keys.iter().any(|k| k.get("d").is_some()) {
        return Err("the JWKS holds a private key: register the public keys only".into());
    }
    let n = keys.iter().filter_map(key_of).count();
    if n == 0 {
        return Err("the JWKS has no RSA (2048 bits or more) or EC P-256 public key".into());
    }
    Ok(n)
}

/// The client id an assertion names (its `iss`), read before it is verified, only to
/// find the registration whose keys verify it.
pub fn claimed_client(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let c: Value = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    let iss = c["iss"].as_str()?;
    (iss.len() <= crate::client::MAX_CLIENT_ID).then(|| iss.to_owned())
}

/// A verified assertion's `jti` and `exp` (for the one-use record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its id.
    pub jti: String,
    /// When it expires (Unix seconds).
    pub exp: u64,
}

/// Verifies `assertion` for `client_id` with the registered `jwks`: algorithm, key,
/// signature, `iss` = `sub` = the client, `aud` naming one of `audiences`, `exp` in the
/// future and at most [`MAX_LIFETIME_SECS`] away, a `jti`.
pub fn verify(
    assertion: &str,
    client_id: &str,
    jwks: &str,
    audiences: &[&str],
    now: u64,
) -> Result<Verified, OAuthError> {
    if assertion.len() > MAX_JWT {
        return Err(refused("the client assertion is too long"));
    }
    let mut parts = assertion.split('.');
    let (h, c, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => (h, c, s),
        _ => return Err(refused("the client assertion is not a compact JWS")),
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused("the client assertion's header is not base64url JSON"))?;
    let alg = header["alg"].as_str().unwrap_or("");
    if alg != "RS256" && alg != "ES256" {
        return Err(refused(
            "the client assertion must be signed with RS256 or ES256 (none and HMAC algorithms are refused)",
        ));
    }
    let doc: Value =
        serde_json::from_str(jwks).map_err(|_| refused("client authentication failed"))?;
    let kid = header["kid"].as_str();
    let keys: Vec<Key> = doc["keys"]
        .as_array()
        .map(|a| a.iter().filter_map(key_of).collect())
        .unwrap_or_default();
    let sig = b64url_decode(s)
        .ok_or_else(|| refused("the client assertion's signature is not base64url"))?;
    let input = format!("{h}.{c}");
    let ok = keys
        .iter()
        .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
        .any(|k| verifies(k, input.as_bytes(), &sig));
    if !ok {
        return Err(refused(
            "the client assertion's signature does not verify with a registered key",
        ));
    }
    let claims: Value = b64url_decode(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused("the client assertion's claims are not base64url JSON"))?;
    if claims["iss"] != client_id || claims["sub"] != client_id {
        return Err(refused(
            "the client assertion's iss and sub must be the client id",
        ));
    }
    let aud_ok = match &claims["aud"] {
        Value::String(a) => audiences.contains(&a.as_str()),
        Value::Array(a) => a
            .iter()
            .any(|x| x.as_str().is_some_and(|x| audiences.contains(&x))),
        _ => false,
    };
    if !aud_ok {
        return Err(refused(
            "the client assertion's aud must be the token endpoint or the issuer",
        ));
    }
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| refused("the client assertion has no exp"))?;
    if exp <= now {
        return Err(refused("the client assertion has expired"));
    }
    if exp > now + MAX_LIFETIME_SECS {
        return Err(refused("the client assertion lives longer than 10 minutes"));
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| refused("the client assertion has no jti"))?;
    Ok(Verified {
        jti: jti.to_owned(),
        exp,
    })
}

fn verifies(k: &Key, data: &[u8], sig: &[u8]) -> bool {
    let der;
    let sig = if k.alg == "ES256" {
        // JWS carries r || s (RFC 7518 §3.4); openssl wants DER.
        if sig.len() != 64 {
            return false;
        }
        let (Ok(r), Ok(s)) = (
            BigNum::from_slice(&sig[..32]),
            BigNum::from_slice(&sig[32..]),
        ) else {
            return false;
        };
        match EcdsaSig::from_private_components(r, s).and_then(|e| e.to_der()) {
            Ok(d) => {
                der = d;
                der.as_slice()
            }
            Err(_) => return false,
        }
    } else {
        sig
    };
    Verifier::new(MessageDigest::sha256(), &k.key)
        .and_then(|mut v| {
            v.update(data)?;
            v.verify(sig)
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64url;
    use hmac::{KeyInit, Mac};
    use openssl::sign::Signer;
    use serde_json::json;

    fn rsa() -> (PKey<openssl::pkey::Private>, String) {
        let k = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
        let r = k.rsa().expect("rsa");
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "c1", "n": b64url(&r.n().to_vec()), "e": b64url(&r.e().to_vec())}]});
        (k, jwks.to_string())
    }

    fn claims(now: u64) -> Value {
        json!({"iss": "app", "sub": "app", "aud": "https://idp.test/oidc/token", "exp": now + 60, "jti": "j1"})
    }

    fn signed(k: &PKey<openssl::pkey::Private>, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut s = Signer::new(MessageDigest::sha256(), k).expect("signer");
        s.update(input.as_bytes()).expect("update");
        format!("{input}.{}", b64url(&s.sign_to_vec().expect("sign")))
    }

    const AUD: &[&str] = &["https://idp.test/oidc/token", "https://idp.test"];

    #[test]
    fn an_rs256_assertion_from_a_registered_key_verifies_with_its_claims_checked() {
        let (k, jwks) = rsa();
        assert_eq!(check_jwks(&jwks), Ok(1));
        let now = 1_900_000_000;
        let a = signed(&k, json!({"alg": "RS256", "kid": "c1"}), &claims(now));
        assert_eq!(claimed_client(&a).as_deref(), Some("app"));
        assert_eq!(
            verify(&a, "app", &jwks, AUD, now),
            Ok(Verified {
                jti: "j1".into(),
                exp: now + 60
            })
        );
        assert!(
            verify(&a, "other", &jwks, AUD, now).is_err(),
            "another client"
        );
        assert!(
            verify(&a, "app", &jwks, &["https://elsewhere.test"], now).is_err(),
            "audience"
        );
        assert!(verify(&a, "app", &jwks, AUD, now + 60).is_err(), "expired");
        let long = signed(
            &k,
            json!({"alg": "RS256"}),
            &json!({"iss": "app", "sub": "app", "aud": AUD[1], "exp": now + 3600, "jti": "x"}),
        );
        assert!(
            verify(&long, "app", &jwks, AUD, now).is_err(),
            "lives too long"
        );
        let (other, _) = rsa();
        let forged = signed(&other, json!({"alg": "RS256", "kid": "c1"}), &claims(now));
        assert!(
            verify(&forged, "app", &jwks, AUD, now).is_err(),
            "an unregistered key"
        );
    }

    #[test]
    fn alg_none_and_hs256_keyed_with_the_public_key_are_refused() {
        let (k, jwks) = rsa();
        let now = 1_900_000_000;
        let c = b64url(claims(now).to_string().as_bytes());
        let none = format!("{}.{c}.", b64url(br#"{"alg":"none"}"#));
        let e = verify(&none, "app", &jwks, AUD, now).expect_err("none");
        assert!(e.description.contains("RS256 or ES256"), "{e}");
        // The classic confusion: HMAC with the registered public key as the secret.
        let pem = k.public_key_to_pem().expect("pem");
        let h = b64url(br#"{"alg":"HS256","kid":"c1"}"#);
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&pem).expect("hmac");
        mac.update(format!("{h}.{c}").as_bytes());
        let hs = format!("{h}.{c}.{}", b64url(&mac.finalize().into_bytes()));
        let e = verify(&hs, "app", &jwks, AUD, now).expect_err("hs256");
        assert_eq!(e.code, ErrorCode::InvalidClient);
    }

    #[test]
    fn an_es256_assertion_verifies_and_a_jwks_with_a_private_key_is_refused() {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
        let ec = EcKey::generate(&group).expect("ec");
        let mut ctx = openssl::bn::BigNumContext::new().expect("ctx");
        let (mut x, mut y) = (BigNum::new().expect("x"), BigNum::new().expect("y"));
        ec.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .expect("coords");
        let pad = |b: &openssl::bn::BigNumRef| b.to_vec_padded(32).expect("pad");
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64url(&pad(&x)), "y": b64url(&pad(&y))}]}).to_string();
        let now = 1_900_000_000;
        let input = format!(
            "{}.{}",
            b64url(br#"{"alg":"ES256"}"#),
            b64url(claims(now).to_string().as_bytes())
        );
        let digest = openssl::sha::sha256(input.as_bytes());
        let sig = EcdsaSig::sign(&digest, &ec).expect("sign");
        let raw = [pad(sig.r()), pad(sig.s())].concat();
        let a = format!("{input}.{}", b64url(&raw));
        assert!(verify(&a, "app", &jwks, AUD, now).is_ok());
        let private =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"}]})
                .to_string();
        assert!(check_jwks(&private).is_err());
    }
}
