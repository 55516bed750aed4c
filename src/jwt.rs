//! JWT helpers shared by the identity sources and caller verification:
//! a token type that never prints, and claims decoding.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize};

/// A bearer credential (JWT, access token). `Debug` and `Display` write
/// `[redacted]`; the text is reachable only through [`SecretToken::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    /// Wraps a token.
    pub(crate) fn new(token: impl Into<String>) -> Self {
        SecretToken(token.into())
    }

    /// The token text, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `aud` is a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(untagged)]
pub enum Audience {
    /// No `aud` claim.
    #[default]
    None,
    /// `"aud": "x"`.
    One(String),
    /// `"aud": ["x", "y"]`.
    Many(Vec<String>),
}

impl Audience {
    /// Every audience value.
    pub fn values(&self) -> Vec<&str> {
        match self {
            Audience::None => vec![],
            Audience::One(a) => vec![a.as_str()],
            Audience::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }

    /// True when any value is in `allowed`.
    pub fn any_in(&self, allowed: &[String]) -> bool {
        self.values().iter().any(|a| allowed.iter().any(|x| x == a))
    }
}

impl<'de> Deserialize<'de> for Audience {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Option::<Raw>::deserialize(d)? {
            None => Audience::None,
            Some(Raw::One(a)) => Audience::One(a),
            Some(Raw::Many(v)) => Audience::Many(v),
        })
    }
}

/// `email_verified` is a boolean, or the string "true" in some tokens.
fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        B(bool),
        S(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => None,
        Some(Raw::B(b)) => Some(b),
        Some(Raw::S(s)) => Some(s.eq_ignore_ascii_case("true")),
    })
}

/// The non-secret claims of a Google ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Claims {
    /// Issuer.
    #[serde(default)]
    pub(crate) iss: Option<String>,
    /// Audience: the token's target audience.
    #[serde(default)]
    pub aud: Audience,
    /// Authorized party: the service account's unique id for metadata-server
    /// tokens, its email for tokens minted from a key file.
    #[serde(default)]
    pub azp: Option<String>,
    /// Subject: the service account's unique id.
    #[serde(default)]
    pub sub: Option<String>,
    /// Email of the identity.
    #[serde(default)]
    pub email: Option<String>,
    /// Whether Google verified the email.
    #[serde(
        default,
        deserialize_with = "bool_or_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) email_verified: Option<bool>,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iat: Option<i64>,
    /// Not before, seconds since the epoch (Google's tokens rarely carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<i64>,
}

/// Why a JWT could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedJwt {
    /// Not three dot-separated parts.
    #[error("not a JWT (expected three dot-separated parts)")]
    Shape,
    /// The payload is not base64url JSON claims.
    #[error("the JWT payload is not base64url-encoded JSON claims")]
    Payload,
}

/// Decodes the claims of a JWT **without** checking its signature. For
/// tokens this service received from Google itself, or whose signature a
/// trusted front (Cloud Run) already checked.
pub fn decode_unverified(token: &str) -> Result<Claims, MalformedJwt> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MalformedJwt::Shape);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| MalformedJwt::Payload)?;
    serde_json::from_slice(&bytes).map_err(|_| MalformedJwt::Payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn secret_never_prints() {
        let t = SecretToken::new("eyJhbGciOiJSUzI1NiJ9.secret.sig");
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(format!("{t}"), "[redacted]");
        assert_eq!(t.expose(), "eyJhbGciOiJSUzI1NiJ9.secret.sig");
    }

    #[test]
    fn audience_string_or_array() {
        let c = decode_unverified(&jwt(r#"{"aud":"a","exp":5}"#)).unwrap();
        assert_eq!(c.aud, Audience::One("a".into()));
        let c = decode_unverified(&jwt(r#"{"aud":["a","b"]}"#)).unwrap();
        assert!(c.aud.any_in(&["b".to_string()]));
        assert!(!c.aud.any_in(&["c".to_string()]));
    }

    #[test]
    fn email_verified_string() {
        let c = decode_unverified(&jwt(r#"{"email_verified":"true"}"#)).unwrap();
        assert_eq!(c.email_verified, Some(true));
    }

    #[test]
    fn malformed() {
        assert_eq!(decode_unverified("abc"), Err(MalformedJwt::Shape));
        assert_eq!(decode_unverified("a.b.c.d"), Err(MalformedJwt::Shape));
        assert_eq!(decode_unverified("a.!!.c"), Err(MalformedJwt::Payload));
    }
}
