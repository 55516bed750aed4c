//! A service-account key file signs a JWT (`iss` = client_email, `aud` =
//! the key's `token_uri`, `target_audience`, `iat`, `exp` ≤ 1 h) which the
//! token endpoint exchanges for an ID token. Tokens minted this way carry
//! the service account's email in `azp`.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

use crate::jwt::SecretToken;

use super::{send_for_body, IdentityError, MAX_ANSWER_BYTES};

pub(super) const NAME: &str = "service-account-key";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The fields of a Google service-account key file this source uses.
#[derive(Clone, Deserialize)]
pub struct ServiceAccountKey {
    /// `service_account`.
    #[serde(rename = "type")]
    pub(crate) key_type: String,
    /// The service account's email.
    pub(crate) client_email: String,
    /// Id of the key, sent as `kid`.
    #[serde(default)]
    pub(crate) private_key_id: Option<String>,
    /// PEM private key.
    private_key: String,
    /// OAuth token endpoint.
    pub(crate) token_uri: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"[redacted]")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

/// True when the file at `path` is a `service_account` key.
pub(super) fn is_service_account_key(path: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    crate::util::read_file_limited(std::path::Path::new(path), MAX_ANSWER_BYTES)
        .ok()
        .and_then(|b| serde_json::from_slice::<Kind>(&b).ok())
        .is_some_and(|k| k.kind == "service_account")
}

pub(super) struct KeyFileSource {
    client: reqwest::Client,
    key: ServiceAccountKey,
    signing_key: EncodingKey,
}

#[derive(serde::Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    aud: &'a str,
    target_audience: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

impl KeyFileSource {
    pub(super) fn from_path(client: reqwest::Client, path: &str) -> Result<Self, IdentityError> {
        let bytes = crate::util::read_file_limited(std::path::Path::new(path), MAX_ANSWER_BYTES)
            .map_err(|e| {
                IdentityError::permanent(NAME, format!("cannot read key file {path}: {e}"))
            })?;
        let key: ServiceAccountKey = serde_json::from_slice(&bytes).map_err(|_| {
            IdentityError::permanent(
                NAME,
                format!("{path} is not a service-account key file (type, client_email, private_key, token_uri)"),
            )
        })?;
        if key.key_type != "service_account" {
            return Err(IdentityError::permanent(
                NAME,
                format!(
                    "{path} holds a {:?} credential, not a service_account key",
                    key.key_type
                ),
            ));
        }
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
            IdentityError::permanent(NAME, format!("{path}: private_key is not an RSA PEM key"))
        })?;
        Ok(KeyFileSource {
            client,
            key,
            signing_key,
        })
    }

    fn assertion(&self, audience: &str, now: SystemTime) -> Result<String, IdentityError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key.private_key_id.clone();
        let claims = Assertion {
            iss: &self.key.client_email,
            aud: &self.key.token_uri,
            target_audience: audience,
            iat,
            exp: iat + 3600,
        };
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| IdentityError::permanent(NAME, format!("cannot sign the assertion: {e}")))
    }

    pub(super) async fn fetch(
        &self,
        audience: &str,
        now: SystemTime,
    ) -> Result<SecretToken, IdentityError> {
        let assertion = SecretToken::new(self.assertion(audience, now)?);
        let body = send_for_body(
            NAME,
            self.client.post(&self.key.token_uri).form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.expose()),
            ]),
        )
        .await?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(|r| r.id_token)
            .map(SecretToken::new)
            .ok_or_else(|| {
                IdentityError::permanent(NAME, "the token endpoint answered without an id_token")
            })
    }
}
