//! Who may call: `AUTH_MODE` verify (RS256 against Google's certificates,
//! `GOOGLE_CERTS_URL`), cloud-run-iam (Cloud Run checked the signature and
//! the caller's `roles/run.invoker`), or none (local use only).
//!
//! Checked in `verify`: signature, `iss` (`accounts.google.com` or
//! `https://accounts.google.com`), `aud` in `AUTH_AUDIENCES` (string or
//! array), `exp`/`iat` (and `nbf` when present) with 60 s skew,
//! `email_verified`, and `email` in `AUTH_ALLOWED_EMAILS`. A token whose
//! signature is `SIGNATURE_REMOVED_BY_GOOGLE` (Cloud Run forwarded it) answers
//! 401 `signature_removed`, naming `AUTH_MODE=cloud-run-iam`.
//!
//! Checked in `cloud-run-iam`: a token whose signature Cloud Run replaced by
//! `SIGNATURE_REMOVED_BY_GOOGLE` must say `alg` `RS256` and carry `iss`,
//! `aud`, `exp` (and `nbf`), `iat` (not over 60 s in the future),
//! `email_verified` and an allowed `email`; the signature was Cloud Run's to
//! check. Any other signature did not pass Cloud Run's check (an unsigned
//! `alg: none` token, a forged one, a request that did not come through
//! Cloud Run): it is verified exactly as in `verify`.
//!
//! Both read `X-Serverless-Authorization` when present (Cloud Run checks that
//! header first and leaves `Authorization` to the app), else `Authorization`.
//! Missing, malformed, forged or expired → 401; a valid token whose email is
//! not allowed → 403.
//!
//! Google's certificates ([`CertCache`]) are cached by their `Cache-Control`
//! (clamped to 1 min–24 h), fetched again on an unknown `kid` at most every
//! 10 s; when a refresh fails the cached keys stay in use up to 24 h past their
//! expiry, and the failure itself is remembered for a few seconds so that
//! requests do not queue behind one slow fetch after another.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use crate::util::now_secs;

use axum::http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::time::Instant;

use crate::jwt::{decode_unverified, Claims};
use crate::settings::{comma_list, email, emails, url};
use serde::Deserialize;

/// Clock skew tolerated on `exp`, `iat` and `nbf`.
pub(crate) const LEEWAY_SECS: u64 = 60;
/// What Cloud Run puts in place of the signature of a token it checked.
pub(crate) const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
const ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];
/// Without `Cache-Control: max-age`.
const DEFAULT_CERT_TTL: Duration = Duration::from_secs(300);
/// `max-age` is clamped to this range.
const MIN_CERT_TTL: Duration = Duration::from_secs(60);
const MAX_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// An unknown `kid` fetches the keys again at most this often.
const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);
/// The largest answer of `GOOGLE_CERTS_URL` read: Google's holds two or
/// three keys in about 2 KiB.
const MAX_CERTS_BYTES: usize = 256 * 1024;
/// Keys stay in use this long past their expiry while refreshes fail.
const STALE_GRACE: Duration = Duration::from_secs(24 * 3600);
/// A failed fetch is not repeated for this long.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

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

#[derive(Default)]
struct CacheState {
    certs: Option<Certs>,
    /// When the last fetch failed, and why (for the log), until a fetch
    /// succeeds.
    failed: Option<(Instant, String)>,
}

/// Where the keys come from: Google's JWKS over HTTP, or (in unit tests) a
/// scripted source.
#[derive(Clone)]
enum Source {
    Http {
        url: String,
        http: reqwest::Client,
    },
    #[cfg(test)]
    Fake(std::sync::Arc<tests::FakeSource>),
}

impl Source {
    /// The key set and its time to live (`max-age`, not yet clamped).
    async fn fetch(&self) -> Result<(JwkSet, Duration), String> {
        match self {
            Source::Http { url, http } => {
                let resp = http
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("GET {url}: HTTP {}", resp.status()));
                }
                let ttl = max_age(resp.headers());
                let body = crate::util::read_limited(resp, MAX_CERTS_BYTES)
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let set: JwkSet = serde_json::from_slice(&body)
                    .map_err(|e| format!("GET {url}: not a JWKS: {e}"))?;
                Ok((set, ttl))
            }
            #[cfg(test)]
            Source::Fake(f) => f.fetch().await,
        }
    }
}

/// Google's signing keys (see the module documentation for the caching
/// rules). One fetch at a time, shared by every waiting caller.
pub(crate) struct CertCache {
    source: Source,
    state: RwLock<CacheState>,
    refresh: tokio::sync::Mutex<()>,
}

/// `Cache-Control: max-age` (a number too large to parse counts as the
/// largest), else [`DEFAULT_CERT_TTL`].
fn max_age(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age="))
                .and_then(|n| {
                    let n = n.trim().trim_matches('"');
                    match n.parse::<u64>() {
                        Ok(n) => Some(n),
                        Err(_) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                            Some(u64::MAX)
                        }
                        Err(_) => None,
                    }
                })
        })
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_CERT_TTL)
}

/// What the cache can answer without a fetch.
enum Decision {
    /// The answer, from the cache.
    Answer(Option<DecodingKey>),
    /// No usable keys and a recent failure: refuse at once.
    Fail(String),
    /// Fetch.
    Fetch,
}

impl CertCache {
    /// Keys from `url`.
    pub(crate) fn new(url: String) -> CertCache {
        CertCache::with_source(Source::Http {
            url,
            http: crate::google::identity::reqwest_client(),
        })
    }

    fn with_source(source: Source) -> CertCache {
        CertCache {
            source,
            state: RwLock::new(CacheState::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    fn decide(&self, kid: &str, now: Instant) -> Decision {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let failed_recently = state
            .failed
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < FAILURE_BACKOFF);
        match &state.certs {
            Some(c) if now < c.fresh_until => match c.keys.get(kid) {
                Some(k) => Decision::Answer(Some(k.clone())),
                None if now.saturating_duration_since(c.fetched_at) < MIN_FORCED_REFRESH
                    || failed_recently =>
                {
                    Decision::Answer(None)
                }
                None => Decision::Fetch,
            },
            stale if failed_recently => match stale {
                Some(c) if now < c.fresh_until + STALE_GRACE => {
                    Decision::Answer(c.keys.get(kid).cloned())
                }
                _ => Decision::Fail(
                    state
                        .failed
                        .as_ref()
                        .map(|(_, why)| why.clone())
                        .unwrap_or_default(),
                ),
            },
            _ => Decision::Fetch,
        }
    }

    /// The key with id `kid`, `None` when Google does not publish it; `Err`
    /// (503) when the keys cannot be had.
    pub(crate) async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, CallerError> {
        let unavailable = CallerError::CertsUnavailable;
        match self.decide(kid, Instant::now()) {
            Decision::Answer(k) => return Ok(k),
            Decision::Fail(why) => return Err(unavailable(why)),
            Decision::Fetch => {}
        }
        let _gate = self.refresh.lock().await;
        // Another caller may have fetched (or failed) while this one waited.
        match self.decide(kid, Instant::now()) {
            Decision::Answer(k) => return Ok(k),
            Decision::Fail(why) => return Err(unavailable(why)),
            Decision::Fetch => {}
        }
        let fetched = self.source.fetch().await;
        let now = Instant::now();
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok((set, ttl)) => {
                let keys: HashMap<String, DecodingKey> = set
                    .keys
                    .iter()
                    .filter_map(|k| {
                        Some((k.common.key_id.clone()?, DecodingKey::from_jwk(k).ok()?))
                    })
                    .collect();
                let key = keys.get(kid).cloned();
                state.certs = Some(Certs {
                    keys,
                    fresh_until: now + ttl.clamp(MIN_CERT_TTL, MAX_CERT_TTL),
                    fetched_at: now,
                });
                state.failed = None;
                Ok(key)
            }
            Err(why) => {
                state.failed = Some((now, why.clone()));
                match &state.certs {
                    Some(c) if now < c.fresh_until + STALE_GRACE => {
                        tracing::warn!(
                            detail = %why,
                            "Google's certificates could not be refreshed; using the cached ones"
                        );
                        Ok(c.keys.get(kid).cloned())
                    }
                    _ => Err(unavailable(why)),
                }
            }
        }
    }
}

/// Checks callers per `AUTH_MODE`.
pub struct CallerAuth {
    mode: AuthMode,
    audiences: Vec<String>,
    emails: Vec<String>,
    certs: CertCache,
}

/// Why a caller is refused, or cannot be checked now.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallerError {
    /// No token, or one that does not prove who sent it.
    #[error("{0}")]
    Unauthenticated(String),
    /// A token whose signature Cloud Run removed (`AUTH_MODE=verify` behind
    /// Cloud Run's IAM check).
    #[error("the token's signature was removed")]
    SignatureRemoved,
    /// A valid token of a caller that is not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Google's signing certificates cannot be had now.
    #[error("{0}")]
    CertsUnavailable(String),
}

fn unauthenticated(m: impl Into<String>) -> CallerError {
    CallerError::Unauthenticated(m.into())
}

/// The bearer token of a request: `X-Serverless-Authorization` (Cloud Run
/// checks it first and leaves `Authorization` to the app), else
/// `Authorization`.
fn bearer(headers: &HeaderMap) -> Result<&str, CallerError> {
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

/// True when Cloud Run replaced the token's signature.
fn signature_removed(token: &str) -> bool {
    token.rsplit_once('.').map(|(_, sig)| sig) == Some(SIGNATURE_REMOVED)
}

/// The `kid` of a token `verify` can check: RS256 with a key id, its
/// signature not removed by Cloud Run (401 `signature_removed` then).
pub fn signing_key_id(token: &str) -> Result<String, CallerError> {
    if signature_removed(token) {
        return Err(CallerError::SignatureRemoved);
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed token"))?;
    if header.alg != Algorithm::RS256 {
        return Err(unauthenticated("the token is not signed with RS256"));
    }
    header
        .kid
        .ok_or_else(|| unauthenticated("the token names no signing key"))
}

impl CallerAuth {
    /// From the configuration.
    pub fn from_config(config: &CallerAuthSettings) -> CallerAuth {
        CallerAuth {
            mode: config.mode,
            audiences: config.audiences.clone(),
            emails: config.allowed_emails.clone(),
            certs: CertCache::new(config.google_certs_url.clone()),
        }
    }

    /// The check of `POST /tasks`: as [`CallerAuth::from_config`], but the
    /// only email allowed is `TASKS_PUSH_EMAIL` (none when unset: every
    /// token is refused, 403).
    pub fn for_tasks(config: &CallerAuthSettings) -> CallerAuth {
        CallerAuth {
            emails: config.tasks_push_email.iter().cloned().collect(),
            ..CallerAuth::from_config(config)
        }
    }

    /// Whether [`CallerAuth::check`] refuses anybody (`AUTH_MODE` is not
    /// `none`).
    pub(crate) fn checks_callers(&self) -> bool {
        self.mode != AuthMode::None
    }

    fn allowed(&self, claims: &Claims) -> Result<Caller, CallerError> {
        let email = claims
            .email
            .as_deref()
            .ok_or_else(|| CallerError::Forbidden("the token carries no email".into()))?;
        if !self.emails.iter().any(|e| e.eq_ignore_ascii_case(email)) {
            return Err(CallerError::Forbidden(format!(
                "{email} may not call this service"
            )));
        }
        Ok(Caller {
            email: Some(email.to_owned()),
        })
    }

    /// Authenticates and authorizes a request's caller.
    pub(crate) async fn check(&self, headers: &HeaderMap) -> Result<Caller, CallerError> {
        match self.mode {
            AuthMode::None => Ok(Caller { email: None }),
            AuthMode::CloudRunIam => {
                let token = bearer(headers)?;
                if signature_removed(token) {
                    self.check_forwarded(token)
                } else {
                    // Not a token Cloud Run checked: its signature must hold.
                    self.verify(token).await
                }
            }
            AuthMode::Verify => self.verify(bearer(headers)?).await,
        }
    }

    /// `cloud-run-iam`, a token whose signature Cloud Run replaced by
    /// `SIGNATURE_REMOVED_BY_GOOGLE` after checking it: the header and the
    /// claims are still this service's to check. Any other token is refused
    /// here ([`CallerAuth::check`] verifies its signature instead). Public
    /// for the fuzz target.
    pub fn check_forwarded(&self, token: &str) -> Result<Caller, CallerError> {
        if !signature_removed(token) {
            return Err(unauthenticated(
                "the token's signature was not replaced by Cloud Run",
            ));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(unauthenticated("the token is not signed with RS256"));
        }
        let claims = decode_unverified(token)
            .map_err(|e| unauthenticated(format!("malformed token: {e}")))?;
        if !claims
            .iss
            .as_deref()
            .is_some_and(|iss| ISSUERS.contains(&iss))
        {
            return Err(unauthenticated("the token's issuer is not Google"));
        }
        if !claims.aud.any_in(&self.audiences) {
            return Err(unauthenticated("the token's audience is not accepted"));
        }
        let now = now_secs() as i64;
        let exp = claims
            .exp
            .ok_or_else(|| unauthenticated("the token has no exp"))?;
        if exp.saturating_add(LEEWAY_SECS as i64) < now {
            return Err(unauthenticated("the token has expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS as i64))
        {
            return Err(unauthenticated("the token is not valid yet"));
        }
        self.issued_verified_allowed(&claims)
    }

    /// What both modes check beyond the signature, `iss`, `aud`, `exp` and
    /// `nbf`: `iat` present and not over [`LEEWAY_SECS`] in the future,
    /// `email_verified` (403 when not), and the email allow-list.
    fn issued_verified_allowed(&self, claims: &Claims) -> Result<Caller, CallerError> {
        match claims.iat {
            Some(iat) if iat <= now_secs().saturating_add(LEEWAY_SECS) as i64 => {}
            Some(_) => return Err(unauthenticated("the token was issued in the future")),
            None => return Err(unauthenticated("the token lacks iat")),
        }
        if claims.email_verified != Some(true) {
            return Err(CallerError::Forbidden(
                "the token's email is not verified".into(),
            ));
        }
        self.allowed(claims)
    }

    async fn verify(&self, token: &str) -> Result<Caller, CallerError> {
        let kid = signing_key_id(token)?;
        let key = self
            .certs
            .key(&kid)
            .await?
            .ok_or_else(|| unauthenticated("the token is signed with an unknown key"))?;
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&self.audiences);
        v.set_issuer(&ISSUERS);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
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
        self.issued_verified_allowed(&data.claims)
    }
}

/// Logs at start how callers are checked: a warning for `none`, and for
/// `cloud-run-iam` that the service relies on Cloud Run's IAM check.
pub(crate) fn log_mode(config: &CallerAuthSettings) {
    match config.mode {
        AuthMode::None => {
            tracing::warn!("AUTH_MODE=none: callers are not authenticated; use this only locally")
        }
        AuthMode::CloudRunIam => tracing::info!(
            audiences = %config.audiences.join(","),
            "AUTH_MODE=cloud-run-iam: relying on Cloud Run's IAM check (roles/run.invoker) for \
             the signatures of the tokens it forwards (SIGNATURE_REMOVED_BY_GOOGLE); the service \
             checks alg, iss, aud, exp, iat, email_verified and the email allow-list, and verifies \
             any other signature against Google's certificates. Safe only while the Cloud Run \
             service is private (no allUsers invoker)"
        ),
        AuthMode::Verify => tracing::info!(
            audiences = %config.audiences.join(","),
            "AUTH_MODE=verify: callers' token signatures are checked against Google's certificates"
        ),
    }
}

/// How callers of the HTTP surface are checked (`AUTH_MODE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Verify the RS256 signature against Google's certificates, and the claims.
    #[default]
    Verify,
    /// Cloud Run checked the signature it replaced by `SIGNATURE_REMOVED_BY_GOOGLE`;
    /// check the header and the claims (any other signature is verified).
    CloudRunIam,
    /// No check: local use only.
    None,
}

/// How callers of the HTTP surface are checked (`auth`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallerAuthSettings {
    /// `AUTH_MODE`: verify (default) | cloud-run-iam | none.
    #[serde(rename = "auth_mode", default)]
    pub(crate) mode: AuthMode,
    /// `AUTH_AUDIENCES`: comma-separated accepted `aud` values of callers' tokens.
    #[serde(rename = "auth_audiences", default, deserialize_with = "comma_list")]
    pub(crate) audiences: Vec<String>,
    /// `AUTH_ALLOWED_EMAILS`: comma-separated caller emails allowed, kept in
    /// lower case.
    #[serde(rename = "auth_allowed_emails", default, deserialize_with = "emails")]
    pub(crate) allowed_emails: Vec<String>,
    /// `GOOGLE_CERTS_URL`: Google's JWKS (default [`GOOGLE_CERTS_URL`]).
    #[serde(default = "default_certs_url", deserialize_with = "url")]
    pub(crate) google_certs_url: String,
    /// `TASKS_PUSH_EMAIL`: the push identity of the tasks subscription, the
    /// only caller `POST /tasks` accepts (in lower case).
    #[serde(rename = "tasks_push_email", default, deserialize_with = "email")]
    pub(crate) tasks_push_email: Option<String>,
}

/// Default Google certificate (JWKS) URL.
pub(crate) const GOOGLE_CERTS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

fn default_certs_url() -> String {
    GOOGLE_CERTS_URL.to_owned()
}

impl CallerAuthSettings {
    pub(crate) fn validate(&self, service: bool, errors: &mut Vec<String>) {
        if !service || self.mode == AuthMode::None {
            return;
        }
        if self.audiences.is_empty() {
            errors.push(
                "AUTH_AUDIENCES: required unless AUTH_MODE=none (comma-separated audiences of callers' tokens, e.g. the service URL)".into(),
            );
        }
        if self.allowed_emails.is_empty() {
            errors.push(
                "AUTH_ALLOWED_EMAILS: required unless AUTH_MODE=none (comma-separated caller emails)"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::AppError;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// The answer a refusal becomes.
    trait Answer {
        fn status(&self) -> axum::http::StatusCode;
        fn code(&self) -> &'static str;
    }

    impl Answer for CallerError {
        fn status(&self) -> axum::http::StatusCode {
            AppError::from(self.clone()).status()
        }
        fn code(&self) -> &'static str {
            AppError::from(self.clone()).code().as_str()
        }
    }
    use std::sync::Mutex;

    /// A scripted JWKS: each fetch takes the next answer (the last one
    /// repeats) after `delay`.
    pub(super) struct FakeSource {
        answers: Mutex<VecDeque<Result<(JwkSet, Duration), String>>>,
        pub(super) fetches: AtomicUsize,
        delay: Duration,
    }

    impl FakeSource {
        pub(super) async fn fetch(&self) -> Result<(JwkSet, Duration), String> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let mut a = self.answers.lock().unwrap();
            if a.len() > 1 {
                a.pop_front().unwrap()
            } else {
                a.front().cloned().unwrap()
            }
        }
    }

    fn jwks(kids: &[&str]) -> JwkSet {
        // A small RSA public key is enough: only the kid is looked at here.
        let n = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|k| serde_json::json!({"kty":"RSA","alg":"RS256","use":"sig","kid":k,"n":n,"e":"AQAB"}))
            .collect();
        serde_json::from_value(serde_json::json!({ "keys": keys })).unwrap()
    }

    fn cache(
        answers: Vec<Result<(JwkSet, Duration), String>>,
        delay: Duration,
    ) -> (CertCache, Arc<FakeSource>) {
        let fake = Arc::new(FakeSource {
            answers: Mutex::new(answers.into()),
            fetches: AtomicUsize::new(0),
            delay,
        });
        (CertCache::with_source(Source::Fake(fake.clone())), fake)
    }

    fn fetches(f: &FakeSource) -> usize {
        f.fetches.load(Ordering::SeqCst)
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h).unwrap_err().status(), 401);
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap_err().status(), 401);
        h.insert("authorization", "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "abc");
        // Cloud Run checks X-Serverless-Authorization first and leaves the
        // app's own Authorization alone.
        h.insert("x-serverless-authorization", "Bearer xyz".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), "xyz");
    }

    #[test]
    fn stripped_signature_is_recognised() {
        assert!(signature_removed("a.b.SIGNATURE_REMOVED_BY_GOOGLE"));
        assert!(!signature_removed("a.b.c"));
        assert!(!signature_removed("SIGNATURE_REMOVED_BY_GOOGLE"));
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
        h.insert(
            "cache-control",
            "max-age=999999999999999999999999999".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Duration::from_secs(u64::MAX));
        h.insert("cache-control", "max-age=abc".parse().unwrap());
        assert_eq!(max_age(&h), DEFAULT_CERT_TTL);
    }

    #[tokio::test(start_paused = true)]
    async fn ttl_is_clamped_and_an_absurd_max_age_does_not_overflow() {
        let (c, f) = cache(
            vec![Ok((jwks(&["a"]), Duration::from_secs(u64::MAX)))],
            Duration::ZERO,
        );
        assert!(c.key("a").await.unwrap().is_some());
        tokio::time::advance(MAX_CERT_TTL - Duration::from_secs(1)).await;
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 1, "fresh for up to 24 h");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 2, "fetched again after 24 h");

        let (c, f) = cache(vec![Ok((jwks(&["a"]), Duration::ZERO))], Duration::ZERO);
        c.key("a").await.unwrap();
        tokio::time::advance(Duration::from_secs(59)).await;
        c.key("a").await.unwrap();
        assert_eq!(fetches(&f), 1, "max-age=0 is kept for a minute");
        tokio::time::advance(Duration::from_secs(2)).await;
        c.key("a").await.unwrap();
        assert_eq!(fetches(&f), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_kid_fetches_again_at_most_every_10_s() {
        let (c, f) = cache(
            vec![
                Ok((jwks(&["a"]), Duration::from_secs(3600))),
                Ok((jwks(&["a", "b"]), Duration::from_secs(3600))),
            ],
            Duration::ZERO,
        );
        assert!(c.key("b").await.unwrap().is_none());
        assert_eq!(fetches(&f), 1);
        for _ in 0..5 {
            assert!(c.key("b").await.unwrap().is_none());
        }
        assert_eq!(fetches(&f), 1, "no refetch within 10 s");
        tokio::time::advance(MIN_FORCED_REFRESH).await;
        assert!(c.key("b").await.unwrap().is_some(), "rotated key found");
        assert_eq!(fetches(&f), 2);
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_keys_serve_while_refreshes_fail_for_up_to_24_h() {
        let (c, f) = cache(
            vec![
                Ok((jwks(&["a"]), Duration::from_secs(300))),
                Err("GET certs: HTTP 503".into()),
            ],
            Duration::from_secs(1),
        );
        assert!(c.key("a").await.unwrap().is_some());
        tokio::time::advance(Duration::from_secs(301)).await;
        // Expired, the refresh fails: the cached key is used.
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 2);
        // The failure is remembered: no fetch, no wait for a few seconds.
        let t = Instant::now();
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 2);
        assert_eq!(t.elapsed(), Duration::ZERO, "no wait behind a fetch");
        // An unknown kid during the outage: 401 material, not 503.
        assert!(c.key("zz").await.unwrap().is_none());
        // After the backoff a request tries again (and still serves).
        tokio::time::advance(FAILURE_BACKOFF).await;
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 3);
        // 24 h past expiry the cached keys are no longer trusted.
        tokio::time::advance(STALE_GRACE).await;
        let Err(e) = c.key("a").await else {
            panic!("keys expected to be unavailable")
        };
        assert_eq!(e.status(), 503);
        assert_eq!(e.code(), "certs_unavailable");
        assert!(
            !AppError::from(e).to_string().contains("GET"),
            "the detail is for the log"
        );
    }

    /// A JWKS stand-in: the first `good` answers are `jwks(["a"])`, the
    /// others an endless body without a Content-Length.
    async fn jwks_stand_in(good: usize) -> (String, Arc<AtomicUsize>) {
        use futures_util::StreamExt;
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < good {
                        return axum::body::Body::from(serde_json::to_vec(&jwks(&["a"])).unwrap());
                    }
                    let head = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(br#"{"keys":[{"kid":""#))
                    });
                    let endless = futures_util::stream::repeat_with(|| {
                        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'k'; 16 * 1024]))
                    });
                    axum::body::Body::from_stream(head.chain(endless))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, calls)
    }

    #[tokio::test]
    async fn a_jwks_larger_than_its_bound_is_refused_unread() {
        // No keys cached: 503 certs_unavailable, without reading it whole.
        let (url, calls) = jwks_stand_in(0).await;
        let c = CertCache::new(url);
        let Err(e) = tokio::time::timeout(Duration::from_secs(30), c.key("a"))
            .await
            .expect("the read stops at the bound")
        else {
            panic!("keys expected to be unavailable")
        };
        assert_eq!((e.status().as_u16(), e.code()), (503, "certs_unavailable"));
        assert!(e.to_string().contains("larger than"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Keys cached: a refresh that answers too much keeps them in use.
        let (url, calls) = jwks_stand_in(1).await;
        let c = CertCache::new(url);
        assert!(c.key("a").await.unwrap().is_some());
        {
            let mut state = c.state.write().unwrap();
            let certs = state.certs.as_mut().unwrap();
            certs.fresh_until = Instant::now();
            certs.fetched_at = Instant::now() - MIN_FORCED_REFRESH;
        }
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(c
            .state
            .read()
            .unwrap()
            .failed
            .as_ref()
            .is_some_and(|(_, why)| why.contains("larger than")));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_without_cached_keys_is_503_and_cached_briefly() {
        let (c, f) = cache(
            vec![
                Err("GET certs: connection refused".into()),
                Ok((jwks(&["a"]), Duration::from_secs(3600))),
            ],
            Duration::from_secs(10),
        );
        let Err(e) = c.key("a").await else {
            panic!("keys expected to be unavailable")
        };
        assert_eq!(e.status(), 503);
        // Concurrent waiters do not each pay another 10 s fetch.
        let t = Instant::now();
        let (a, b) = tokio::join!(c.key("a"), c.key("a"));
        assert!(a.is_err() && b.is_err());
        assert_eq!(t.elapsed(), Duration::ZERO);
        assert_eq!(fetches(&f), 1);
        tokio::time::advance(FAILURE_BACKOFF).await;
        assert!(c.key("a").await.unwrap().is_some());
        assert_eq!(fetches(&f), 2);
    }

    const AUD: &str = "https://bridge.test";
    const EMAIL: &str = "caller@p.iam.gserviceaccount.com";

    /// Google's signing key in these tests (generated once: RSA is slow).
    fn google() -> bridge_testkit::SigningKey {
        static KEY: std::sync::OnceLock<bridge_testkit::SigningKey> = std::sync::OnceLock::new();
        KEY.get_or_init(bridge_testkit::SigningKey::generate)
            .clone()
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let now = now_secs() as i64;
        let mut c = serde_json::json!({
            "iss": "https://accounts.google.com",
            "aud": AUD,
            "sub": "1",
            "email": EMAIL,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        });
        for (k, v) in overrides.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    fn b64(v: &serde_json::Value) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    /// A token with any header and signature text.
    fn assemble(header: serde_json::Value, claims: &serde_json::Value, sig: &str) -> String {
        format!("{}.{}.{sig}", b64(&header), b64(claims))
    }

    fn strip(token: &str) -> String {
        format!("{}.{SIGNATURE_REMOVED}", token.rsplit_once('.').unwrap().0)
    }

    /// A checker in `mode` whose Google certificates are [`google`]'s.
    fn auth(mode: AuthMode) -> (CallerAuth, Arc<FakeSource>) {
        let set: JwkSet =
            serde_json::from_value(serde_json::json!({ "keys": [google().jwk()] })).unwrap();
        let (certs, fake) = cache(vec![Ok((set, Duration::from_secs(3600)))], Duration::ZERO);
        let auth = CallerAuth {
            mode,
            audiences: vec![AUD.into()],
            emails: vec![EMAIL.into()],
            certs,
        };
        (auth, fake)
    }

    async fn status(auth: &CallerAuth, token: &str) -> u16 {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        match auth.check(&h).await {
            Ok(c) => {
                assert_eq!(c.email.as_deref(), Some(EMAIL));
                200
            }
            Err(e) => {
                let shown = format!("{e} {e:?} {}", AppError::from(e.clone()));
                assert!(!shown.contains(token), "the token shows: {shown}");
                e.status().as_u16()
            }
        }
    }

    #[tokio::test]
    async fn cloud_run_iam_trusts_only_the_signatures_cloud_run_removed() {
        let key = tokio::task::spawn_blocking(google).await.unwrap();
        let signed = |over: serde_json::Value| key.sign(&claims(over));
        let rs256 = serde_json::json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
        let good = signed(serde_json::json!({}));
        let (_, good_sig) = good.rsplit_once('.').unwrap();
        let now = now_secs() as i64;
        // (what, token, answer in cloud-run-iam, answer in verify)
        let cases: Vec<(&str, String, u16, u16)> = vec![
            ("signed by Google", good.clone(), 200, 200),
            ("as Cloud Run forwards it", strip(&good), 200, 401),
            (
                "alg none, unsigned",
                assemble(
                    serde_json::json!({"alg": "none"}),
                    &claims(serde_json::json!({})),
                    "",
                ),
                401,
                401,
            ),
            (
                "alg none with the marker",
                assemble(
                    serde_json::json!({"alg": "none"}),
                    &claims(serde_json::json!({})),
                    SIGNATURE_REMOVED,
                ),
                401,
                401,
            ),
            (
                "HS256 with the marker",
                assemble(
                    serde_json::json!({"alg": "HS256", "typ": "JWT"}),
                    &claims(serde_json::json!({})),
                    SIGNATURE_REMOVED,
                ),
                401,
                401,
            ),
            (
                "a made-up signature",
                assemble(
                    rs256.clone(),
                    &claims(serde_json::json!({})),
                    "c2lnbmF0dXJl",
                ),
                401,
                401,
            ),
            (
                "another token's signature",
                assemble(
                    rs256.clone(),
                    &claims(serde_json::json!({"exp": now + 7200})),
                    good_sig,
                ),
                401,
                401,
            ),
            (
                "iat an hour ahead",
                strip(&signed(serde_json::json!({"iat": now + 3600}))),
                401,
                401,
            ),
            (
                "iat an hour ahead, signed",
                signed(serde_json::json!({"iat": now + 3600})),
                401,
                401,
            ),
            (
                "iat 30 s ahead (clock skew)",
                strip(&signed(serde_json::json!({"iat": now + 30}))),
                200,
                401,
            ),
            (
                "no iat",
                strip(&signed(serde_json::json!({"iat": null}))),
                401,
                401,
            ),
            (
                "email not verified",
                strip(&signed(serde_json::json!({"email_verified": false}))),
                403,
                401,
            ),
            (
                "email not verified, signed",
                signed(serde_json::json!({"email_verified": false})),
                403,
                403,
            ),
            (
                "no email_verified",
                strip(&signed(serde_json::json!({"email_verified": null}))),
                403,
                401,
            ),
            (
                "expired",
                strip(&signed(serde_json::json!({"exp": now - 3600}))),
                401,
                401,
            ),
            (
                "another email",
                strip(&signed(serde_json::json!({"email": "x@example.com"}))),
                403,
                401,
            ),
        ];
        let (iam, iam_certs) = auth(AuthMode::CloudRunIam);
        let (verify, _) = auth(AuthMode::Verify);
        for (what, token, want_iam, want_verify) in &cases {
            assert_eq!(
                status(&iam, token).await,
                *want_iam,
                "cloud-run-iam: {what}"
            );
            assert_eq!(status(&verify, token).await, *want_verify, "verify: {what}");
        }
        assert_eq!(fetches(&iam_certs), 1, "the certificates are cached");
        // The stripped tokens alone never need the certificates.
        let (iam, iam_certs) = auth(AuthMode::CloudRunIam);
        assert_eq!(status(&iam, &strip(&good)).await, 200);
        assert_eq!(fetches(&iam_certs), 0);
        // The public check refuses what Cloud Run did not strip.
        assert_eq!(iam.check_forwarded(&good).unwrap_err().status(), 401);
        assert!(iam.check_forwarded(&strip(&good)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let (c, f) = cache(
            vec![Ok((jwks(&["a"]), Duration::from_secs(3600)))],
            Duration::from_secs(1),
        );
        let c = Arc::new(c);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.key("a").await.unwrap().is_some() })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(fetches(&f), 1);
    }
}
