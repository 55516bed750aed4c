//! Who may call: `AUTH_MODE` verify (RS256 against Google's certificates,
//! `GOOGLE_CERTS_URL`, cached by their `Cache-Control`), cloud-run-iam
//! (Cloud Run checked the signature), or none (local use only).
//!
//! Checked in `verify`: signature, `iss` (`accounts.google.com` or
//! `https://accounts.google.com`), `aud` in `AUTH_AUDIENCES` (string or
//! array), `exp`/`iat` with 60 s skew, `email_verified`, and `email` in
//! `AUTH_ALLOWED_EMAILS`. Missing, malformed, forged or expired → 401; a
//! valid token whose email is not allowed → 403.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{AuthMode, Config};
use crate::error::AppError;
use crate::jwt::{decode_unverified, Claims};

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 60;
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
const DEFAULT_CERT_TTL: Duration = Duration::from_secs(300);
const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The caller's email, when authenticated.
    pub email: Option<String>,
}

struct Certs {
    keys: HashMap<String, DecodingKey>,
    fresh_until: Instant,
    fetched_at: Instant,
}

/// Google's signing keys, cached by their `Cache-Control: max-age`, fetched
/// again on an unknown `kid` (at most every 10 s).
pub struct CertCache {
    url: String,
    http: reqwest::Client,
    certs: RwLock<Option<Certs>>,
    refresh: tokio::sync::Mutex<()>,
}

fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CERT_TTL)
}

impl CertCache {
    /// Keys from `url`.
    pub fn new(url: String) -> CertCache {
        CertCache {
            url,
            http: crate::identity::http_client(),
            certs: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn lookup(&self, kid: &str, need_fresh: bool) -> Option<DecodingKey> {
        let guard = self.certs.read().unwrap_or_else(|p| p.into_inner());
        let certs = guard.as_ref()?;
        if need_fresh && certs.fresh_until <= Instant::now() {
            return None;
        }
        certs.keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<Certs, AppError> {
        let unavailable = |detail: String| {
            AppError::unavailable(
                "certs_unavailable",
                "Google's signing certificates are unavailable; retry later",
                detail,
            )
        };
        let resp = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {}: {e}", self.url)))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!(
                "GET {}: HTTP {}",
                self.url,
                resp.status()
            )));
        }
        let ttl = max_age(resp.headers());
        let set: JwkSet = resp
            .json()
            .await
            .map_err(|e| unavailable(format!("GET {}: not a JWKS: {e}", self.url)))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|k| Some((k.common.key_id.clone()?, DecodingKey::from_jwk(k).ok()?)))
            .collect();
        let now = Instant::now();
        Ok(Certs {
            keys,
            fresh_until: now + ttl,
            fetched_at: now,
        })
    }

    /// The key with id `kid`: cached while fresh, else fetched (one fetch
    /// for all concurrent callers).
    pub async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, AppError> {
        if let Some(k) = self.lookup(kid, true) {
            return Ok(Some(k));
        }
        let _gate = self.refresh.lock().await;
        if let Some(k) = self.lookup(kid, true) {
            return Ok(Some(k));
        }
        let recently = {
            let guard = self.certs.read().unwrap_or_else(|p| p.into_inner());
            guard.as_ref().is_some_and(|c| {
                c.fresh_until > Instant::now() && c.fetched_at.elapsed() < MIN_FORCED_REFRESH
            })
        };
        if recently {
            // Fresh keys were fetched moments ago and do not know this kid.
            return Ok(None);
        }
        let certs = self.fetch().await?;
        let key = certs.keys.get(kid).cloned();
        *self.certs.write().unwrap_or_else(|p| p.into_inner()) = Some(certs);
        Ok(key)
    }
}

/// Checks callers per `AUTH_MODE`.
pub struct CallerAuth {
    mode: AuthMode,
    audiences: Vec<String>,
    emails: Vec<String>,
    certs: CertCache,
}

fn unauthenticated(m: impl Into<String>) -> AppError {
    AppError::Unauthenticated(m.into())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The bearer token of a request: `X-Serverless-Authorization` (set by
/// callers whose own `Authorization` is taken), else `Authorization`.
fn bearer(headers: &HeaderMap) -> Result<&str, AppError> {
    let value = headers
        .get("x-serverless-authorization")
        .or_else(|| headers.get(axum::http::header::AUTHORIZATION))
        .ok_or_else(|| unauthenticated("missing Authorization: Bearer token"))?;
    let value = value
        .to_str()
        .map_err(|_| unauthenticated("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| unauthenticated("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthenticated("Authorization must be a Bearer token"));
    }
    Ok(token.trim())
}

impl CallerAuth {
    /// From the configuration.
    pub fn from_config(config: &Config) -> CallerAuth {
        CallerAuth {
            mode: config.auth_mode,
            audiences: config.auth_audiences.clone(),
            emails: config.auth_allowed_emails.clone(),
            certs: CertCache::new(config.google_certs_url.clone()),
        }
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    fn allowed(&self, claims: &Claims) -> Result<Caller, AppError> {
        let email = claims
            .email
            .as_deref()
            .ok_or_else(|| AppError::Forbidden("the token carries no email".into()))?;
        if !self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return Err(AppError::Forbidden(format!(
                "{email} may not call this service"
            )));
        }
        Ok(Caller {
            email: Some(email.to_owned()),
        })
    }

    /// Authenticates and authorizes a request's caller.
    pub async fn check(&self, headers: &HeaderMap) -> Result<Caller, AppError> {
        match self.mode {
            AuthMode::None => Ok(Caller { email: None }),
            AuthMode::CloudRunIam => {
                let token = bearer(headers)?;
                let claims = decode_unverified(token)
                    .map_err(|e| unauthenticated(format!("malformed token: {e}")))?;
                if !claims.aud.any_in(&self.audiences) {
                    return Err(unauthenticated("the token's audience is not accepted"));
                }
                let exp = claims
                    .exp
                    .ok_or_else(|| unauthenticated("the token has no exp"))?;
                if exp.saturating_add(LEEWAY_SECS as i64) < now_secs() as i64 {
                    return Err(unauthenticated("the token has expired"));
                }
                self.allowed(&claims)
            }
            AuthMode::Verify => self.verify(bearer(headers)?).await,
        }
    }

    async fn verify(&self, token: &str) -> Result<Caller, AppError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthenticated("the token is not signed with RS256"));
        }
        let kid = header
            .kid
            .ok_or_else(|| unauthenticated("the token names no signing key"))?;
        let key = self
            .certs
            .key(&kid)
            .await?
            .ok_or_else(|| unauthenticated("the token is signed with an unknown key"))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&self.audiences);
        v.set_issuer(&ISSUERS);
        v.leeway = LEEWAY_SECS;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &v).map_err(|e| {
            unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidAudience => "the token's audience is not accepted",
                ErrorKind::InvalidIssuer => "the token's issuer is not Google",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is invalid",
            })
        })?;
        let claims = data.claims;
        match claims.iat {
            Some(iat) if iat <= (now_secs() + LEEWAY_SECS) as i64 => {}
            Some(_) => return Err(unauthenticated("the token was issued in the future")),
            None => return Err(unauthenticated("the token lacks iat")),
        }
        if claims.email_verified != Some(true) {
            return Err(AppError::Forbidden(
                "the token's email is not verified".into(),
            ));
        }
        self.allowed(&claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap_err().status(), 401);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap_err().status(), 401);
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "abc");
    }

    #[test]
    fn cache_control_max_age() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(max_age(&h), DEFAULT_CERT_TTL);
        h.insert(
            "cache-control",
            "public, max-age=19800, must-revalidate".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Duration::from_secs(19800));
    }
}
