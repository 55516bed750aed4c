//! RSA signing keys generated at run time, JWT signing and verification helpers.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

/// An RSA 2048 key with a key id, able to sign RS256 JWTs.
///
/// Generated fresh at run time; test keys are never stored on disk by this crate
/// unless a caller writes [`SigningKey::private_key_pem`] somewhere itself.
/// Cloning is cheap (the key is shared). `Debug` shows only the key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    kid: String,
    pem: String,
    n: String,
    e: String,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new RSA 2048 key with a random 40-hex-digit key id.
    ///
    /// CPU-bound (tens to hundreds of milliseconds); call it from
    /// `tokio::task::spawn_blocking` inside a runtime if that matters.
    pub fn generate() -> SigningKey {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("RSA key generation");
        SigningKey::from_rsa(key, random_hex(20))
    }

    fn from_rsa(key: RsaPrivateKey, kid: String) -> SigningKey {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding")
            .to_string();
        let n = URL_SAFE_NO_PAD.encode(key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(key.e().to_bytes_be());
        let encoding =
            EncodingKey::from_rsa_pem(pem.as_bytes()).expect("PEM accepted by jsonwebtoken");
        SigningKey {
            inner: Arc::new(KeyInner {
                kid,
                pem,
                n,
                e,
                encoding,
            }),
        }
    }

    /// The same key material under another key id.
    ///
    /// Useful to forge a token that names a trusted `kid` but is signed by an
    /// untrusted key (a bad signature rather than an unknown key).
    pub fn with_kid(&self, kid: impl Into<String>) -> SigningKey {
        SigningKey {
            inner: Arc::new(KeyInner {
                kid: kid.into(),
                pem: self.inner.pem.clone(),
                n: self.inner.n.clone(),
                e: self.inner.e.clone(),
                encoding: self.inner.encoding.clone(),
            }),
        }
    }

    /// The key id put in the `kid` header of every token this key signs.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The private key, PKCS#8 PEM (a `PRIVATE KEY` block).
    pub fn private_key_pem(&self) -> &str {
        &self.inner.pem
    }

    /// Signs `claims` as an RS256 JWT with header `{alg: RS256, kid, typ: JWT}`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.inner.kid.clone());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &self.inner.encoding).expect("JWT signing")
    }

    /// The public key as a JWK: `{kty: RSA, alg: RS256, use: sig, kid, n, e}`
    /// (base64url without padding).
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.inner.kid,
            "n": self.inner.n,
            "e": self.inner.e,
        })
    }

    /// The public key, SPKI PEM (a `PUBLIC KEY` block): what an attacker
    /// knows, e.g. to try it as an HS256 secret.
    pub fn public_key_pem(&self) -> String {
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let key = RsaPrivateKey::from_pkcs8_pem(&self.inner.pem).expect("own PEM");
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI encoding")
    }

    /// The public key, for `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_components(&self.inner.n, &self.inner.e).expect("RSA components")
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes the claims of a JWT without checking anything (for assertions in
/// tests and for diagnostics). `None` when the text is not a JWT.
pub fn decode_claims_unverified(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why [`verify_with_jwks`] rejected a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a JWT, or a header without a usable algorithm.
    Malformed(String),
    /// No key in the JWKS has the token's `kid`.
    UnknownKey(String),
    /// `exp` is past.
    Expired,
    /// The signature does not verify, or a claim is unusable.
    Invalid(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed(m) => write!(f, "malformed token: {m}"),
            VerifyError::UnknownKey(k) => write!(f, "no key with kid {k:?}"),
            VerifyError::Expired => f.write_str("token expired"),
            VerifyError::Invalid(m) => write!(f, "invalid token: {m}"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// Verifies an RS256 JWT against a JWKS document (`{"keys":[...]}`) and checks
/// `exp` (no leeway); returns the claims. Audience and issuer are left to the
/// caller.
pub fn verify_with_jwks(token: &str, jwks: &Value) -> Result<Value, VerifyError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if header.alg != Algorithm::RS256 {
        return Err(VerifyError::Malformed(format!(
            "algorithm {:?} is not RS256",
            header.alg
        )));
    }
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let candidates: Vec<&Value> = keys
        .iter()
        .filter(|k| match &header.kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid.as_str()),
            None => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::UnknownKey(header.kid.unwrap_or_default()));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.required_spec_claims = ["exp".to_string()].into_iter().collect();
    let mut last = String::new();
    for k in candidates {
        let (Some(n), Some(e)) = (
            k.get("n").and_then(Value::as_str),
            k.get("e").and_then(Value::as_str),
        ) else {
            continue;
        };
        let Ok(dk) = DecodingKey::from_rsa_components(n, e) else {
            continue;
        };
        match jsonwebtoken::decode::<Value>(token, &dk, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                return Err(VerifyError::Expired)
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(VerifyError::Invalid(last))
}
