//! Google identity: [`IdTokenSource`] yields a Google-signed ID token whose
//! `aud` is `TARGET_AUDIENCE`, from one of four sources:
//!
//! | source | environment |
//! |---|---|
//! | metadata server (default) | `GCE_METADATA_HOST` (default `metadata.google.internal`) |
//! | service-account key file | `GOOGLE_APPLICATION_CREDENTIALS` naming a `service_account` key |
//! | impersonation | `IMPERSONATE_SERVICE_ACCOUNT`, `IAM_CREDENTIALS_ENDPOINT` |
//! | file | `GOOGLE_ID_TOKEN_FILE`, read again at every refresh |
//!
//! Tokens are cached until five minutes before their `exp`, concurrent
//! callers share one fetch, and transient failures are retried with bounded
//! backoff. This module talks to Google only. Token text never reaches a log,
//! an error or a `Debug` output.

mod file;
mod impersonate;
mod key_file;
mod metadata;

use std::fmt;
use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};

use crate::jwt::{decode_unverified, Claims, SecretToken};
use crate::retry::{is_transient_status, Backoff, Transient};
use crate::settings::url;
use crate::util::error_chain;
use serde::Deserialize;

pub use key_file::ServiceAccountKey;

/// How long before `exp` a cached token is replaced.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A Google ID token and its non-secret claims.
#[derive(Clone)]
pub struct IdToken {
    token: SecretToken,
    claims: Claims,
    expires_at: SystemTime,
}

impl IdToken {
    /// Reads the claims of a token received from Google.
    pub(crate) fn parse(
        token: SecretToken,
        source: &'static str,
    ) -> Result<IdToken, IdentityError> {
        let claims = decode_unverified(token.expose()).map_err(|e| {
            IdentityError::permanent(source, format!("the token received is unusable: {e}"))
        })?;
        let exp = claims.exp.ok_or_else(|| {
            IdentityError::permanent(source, "the token received has no exp claim")
        })?;
        let expires_at = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap_or(0));
        Ok(IdToken {
            token,
            claims,
            expires_at,
        })
    }

    /// The JWT, for the one call that presents it.
    pub fn secret(&self) -> &SecretToken {
        &self.token
    }

    /// The token's claims (`iss aud azp sub email exp`).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
}

impl fmt::Debug for IdToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdToken")
            .field("token", &self.token)
            .field("claims", &self.claims)
            .finish()
    }
}

/// A failure to obtain an ID token. Never carries token text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Google ID token from {source_name}: {message}")]
pub struct IdentityError {
    /// Which source failed (`metadata`, `service-account-key`, `impersonate`, `file`).
    pub(crate) source_name: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Whether trying again may help.
    pub transient: bool,
}

impl IdentityError {
    pub(crate) fn permanent(source_name: &'static str, message: impl Into<String>) -> Self {
        IdentityError {
            source_name,
            message: message.into(),
            transient: false,
        }
    }

    pub(crate) fn transient(source_name: &'static str, message: impl Into<String>) -> Self {
        IdentityError {
            source_name,
            message: message.into(),
            transient: true,
        }
    }

    /// Classifies a transport error: connect failures and timeouts are transient.
    pub(crate) fn from_reqwest(source_name: &'static str, e: &reqwest::Error) -> Self {
        // reqwest's Display may carry the URL, which holds no secret here.
        let transient = e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
        IdentityError {
            source_name,
            message: format!("request failed: {}", error_chain(e)),
            transient,
        }
    }

    /// Classifies an HTTP answer that was not a success.
    pub(crate) fn from_status(source_name: &'static str, status: u16, detail: &str) -> Self {
        let detail: String = detail
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect();
        IdentityError {
            source_name,
            message: format!("HTTP {status}: {detail}"),
            transient: is_transient_status(status),
        }
    }
}

impl Transient for IdentityError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// The largest answer of a token endpoint or the metadata server, and the
/// largest token or key file: an ID token is about 1 KiB, a key file 2–3 KiB.
pub(crate) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Sends `req` and returns the body of a 200 answer (at most
/// [`MAX_ANSWER_BYTES`]; a larger one is a transient failure); transport failures
/// and other answers become classified errors.
pub(crate) async fn send_for_body(
    source_name: &'static str,
    req: reqwest::RequestBuilder,
) -> Result<bytes::Bytes, IdentityError> {
    let resp = req
        .send()
        .await
        .map_err(|e| IdentityError::from_reqwest(source_name, &e))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let detail = crate::util::error_text(resp).await;
        return Err(IdentityError::from_status(source_name, status, &detail));
    }
    crate::util::read_limited(resp, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| match e {
            crate::util::LimitedReadError::Transport(e) => {
                IdentityError::from_reqwest(source_name, &e)
            }
            too_large => IdentityError::transient(source_name, too_large.to_string()),
        })
}

enum Source {
    Metadata(metadata::MetadataSource),
    KeyFile(key_file::KeyFileSource),
    Impersonate(impersonate::ImpersonateSource),
    File(file::FileSource),
}

impl Source {
    fn name(&self) -> &'static str {
        match self {
            Source::Metadata(_) => metadata::NAME,
            Source::KeyFile(_) => key_file::NAME,
            Source::Impersonate(_) => impersonate::NAME,
            Source::File(_) => file::NAME,
        }
    }

    async fn fetch(&self, audience: &str, now: SystemTime) -> Result<IdToken, IdentityError> {
        let (token, name) = match self {
            Source::Metadata(s) => (s.fetch(audience).await?, metadata::NAME),
            Source::KeyFile(s) => (s.fetch(audience, now).await?, key_file::NAME),
            Source::Impersonate(s) => (s.fetch(audience).await?, impersonate::NAME),
            Source::File(s) => (s.fetch().await?, file::NAME),
        };
        IdToken::parse(token, name)
    }
}

/// Yields Google ID tokens for one audience, cached and single-flight.
pub struct IdTokenSource {
    source: Source,
    audience: String,
    backoff: Backoff,
    attempt_timeout: Option<Duration>,
    time: SharedTimeSource,
    cached: RwLock<Option<IdToken>>,
    refresh: tokio::sync::Mutex<()>,
}

impl fmt::Debug for IdTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenSource")
            .field("source", &self.source.name())
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The HTTP client the identity sources share: rustls, bounded timeouts.
pub(crate) fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("gcp-aws-bridge/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a TLS client with the built-in roots")
}

impl IdTokenSource {
    /// Builds the source `ID_TOKEN_SOURCE` names, choosing in `auto` mode:
    /// `GOOGLE_ID_TOKEN_FILE`, then `IMPERSONATE_SERVICE_ACCOUNT`, then a
    /// `service_account` key in `GOOGLE_APPLICATION_CREDENTIALS`, else the
    /// metadata server. Reads a key file, makes no network call.
    pub fn from_settings(config: &IdentitySettings) -> Result<IdTokenSource, IdentityError> {
        let client = reqwest_client();
        let kind = match config.source {
            IdTokenSourceKind::Auto => {
                if config.google_id_token_file.is_some() {
                    IdTokenSourceKind::File
                } else if config.impersonate_service_account.is_some() {
                    IdTokenSourceKind::Impersonate
                } else if config
                    .google_application_credentials
                    .as_deref()
                    .is_some_and(key_file::is_service_account_key)
                {
                    IdTokenSourceKind::ServiceAccountKey
                } else {
                    IdTokenSourceKind::Metadata
                }
            }
            k => k,
        };
        let source = match kind {
            IdTokenSourceKind::File => Source::File(file::FileSource::new(
                config.google_id_token_file.clone().unwrap_or_default(),
            )),
            IdTokenSourceKind::Impersonate => {
                Source::Impersonate(impersonate::ImpersonateSource::new(
                    client,
                    &config.iam_credentials_endpoint,
                    config
                        .impersonate_service_account
                        .clone()
                        .unwrap_or_default(),
                ))
            }
            IdTokenSourceKind::ServiceAccountKey => {
                let path = config
                    .google_application_credentials
                    .clone()
                    .unwrap_or_default();
                Source::KeyFile(key_file::KeyFileSource::from_path(client, &path)?)
            }
            IdTokenSourceKind::Metadata | IdTokenSourceKind::Auto => {
                Source::Metadata(metadata::MetadataSource::new(client, &config.metadata_host))
            }
        };
        Ok(IdTokenSource::new(source, &config.target_audience))
    }

    fn new(source: Source, audience: &str) -> IdTokenSource {
        IdTokenSource {
            source,
            audience: audience.to_owned(),
            backoff: Backoff::default(),
            attempt_timeout: None,
            time: SharedTimeSource::new(SystemTimeSource::new()),
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// Replaces the retry policy (tests shorten it).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Bounds each attempt to fetch a token; an attempt that takes longer
    /// fails as transient and is retried. Without it, only the HTTP client's
    /// own limits apply (3 s to connect, 10 s per request). Tests shorten it.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Replaces the clock that decides freshness (tests move it).
    pub fn with_time_source(mut self, time: SharedTimeSource) -> Self {
        self.time = time;
        self
    }

    /// The source in use: `metadata`, `service-account-key`, `impersonate` or `file`.
    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    fn fresh(&self, now: SystemTime) -> Option<IdToken> {
        let guard = self.cached.read().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|t| t.expires_at > now + REFRESH_MARGIN)
            .cloned()
    }

    /// A token valid for at least five more minutes when one can be had:
    /// from the cache, else from one fetch shared by all concurrent callers.
    pub async fn token(&self) -> Result<IdToken, IdentityError> {
        if let Some(t) = self.fresh(self.time.now()) {
            return Ok(t);
        }
        let _gate = self.refresh.lock().await;
        // Another caller may have refreshed while this one waited.
        let now = self.time.now();
        if let Some(t) = self.fresh(now) {
            return Ok(t);
        }
        let token = self.backoff.retry(|| self.fetch_once(now)).await?;
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(token)
    }

    async fn fetch_once(&self, now: SystemTime) -> Result<IdToken, IdentityError> {
        let fetch = self.source.fetch(&self.audience, now);
        match self.attempt_timeout {
            None => fetch.await,
            Some(limit) => tokio::time::timeout(limit, fetch)
                .await
                .unwrap_or_else(|_| {
                    Err(IdentityError::transient(
                        self.source.name(),
                        format!("no answer within {limit:?}"),
                    ))
                }),
        }
    }
}

/// Where the Google ID token comes from (`ID_TOKEN_SOURCE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdTokenSourceKind {
    /// Pick from the environment: file, impersonate, key file, metadata.
    #[default]
    Auto,
    /// The GCE / Cloud Run metadata server.
    Metadata,
    /// A service-account key file in `GOOGLE_APPLICATION_CREDENTIALS`.
    ServiceAccountKey,
    /// IAM Credentials `generateIdToken` for `IMPERSONATE_SERVICE_ACCOUNT`.
    Impersonate,
    /// A JWT in `GOOGLE_ID_TOKEN_FILE`, read again at every refresh.
    File,
}

/// Our own Google ID token (`identity`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdentitySettings {
    /// `TARGET_AUDIENCE`: the `aud` of the Google ID token presented to STS.
    #[serde(default)]
    pub(crate) target_audience: String,
    /// `ID_TOKEN_SOURCE`: auto | metadata | service-account-key | impersonate | file.
    #[serde(rename = "id_token_source", default)]
    pub(crate) source: IdTokenSourceKind,
    /// `GCE_METADATA_HOST`: metadata server `host:port` (default metadata.google.internal).
    #[serde(rename = "gce_metadata_host", default = "default_metadata_host")]
    pub(crate) metadata_host: String,
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a key file path.
    pub(crate) google_application_credentials: Option<String>,
    /// `IMPERSONATE_SERVICE_ACCOUNT`: service account email to mint ID tokens for.
    pub(crate) impersonate_service_account: Option<String>,
    /// `IAM_CREDENTIALS_ENDPOINT`: IAM Credentials API base URL (default
    /// https://iamcredentials.googleapis.com).
    #[serde(default = "default_iam_credentials_endpoint", deserialize_with = "url")]
    pub(crate) iam_credentials_endpoint: String,
    /// `GOOGLE_ID_TOKEN_FILE`: a file holding a JWT.
    pub(crate) google_id_token_file: Option<String>,
}

fn default_metadata_host() -> String {
    "metadata.google.internal".to_owned()
}

fn default_iam_credentials_endpoint() -> String {
    "https://iamcredentials.googleapis.com".to_owned()
}

impl IdentitySettings {
    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        if self.target_audience.is_empty() {
            errors.push("TARGET_AUDIENCE: required".into());
        }
        match self.source {
            IdTokenSourceKind::ServiceAccountKey if self.google_application_credentials.is_none() => {
                errors.push(
                    "GOOGLE_APPLICATION_CREDENTIALS: required when ID_TOKEN_SOURCE=service-account-key"
                        .into(),
                )
            }
            IdTokenSourceKind::Impersonate if self.impersonate_service_account.is_none() => errors
                .push(
                    "IMPERSONATE_SERVICE_ACCOUNT: required when ID_TOKEN_SOURCE=impersonate".into(),
                ),
            IdTokenSourceKind::File if self.google_id_token_file.is_none() => {
                errors.push("GOOGLE_ID_TOKEN_FILE: required when ID_TOKEN_SOURCE=file".into())
            }
            _ => {}
        }
        if let Some(sa) = &self.impersonate_service_account {
            if !sa.contains('@') {
                errors.push(format!(
                    "IMPERSONATE_SERVICE_ACCOUNT: {sa:?} is not a service account email"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_says_transient_from_status() {
        assert!(IdentityError::from_status("metadata", 503, "x").transient);
        assert!(IdentityError::from_status("metadata", 429, "x").transient);
        assert!(!IdentityError::from_status("metadata", 403, "x").transient);
        assert!(!IdentityError::from_status("metadata", 404, "x").transient);
    }
}
