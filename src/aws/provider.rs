//! Google ID token → STS `AssumeRoleWithWebIdentity` → AWS credentials.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::operation::assume_role_with_web_identity::{
    AssumeRoleWithWebIdentityError, AssumeRoleWithWebIdentityOutput,
};

use crate::google::identity::{IdToken, IdTokenSource, IdentityError};
use crate::jwt::Claims;
use crate::retry::{Backoff, Transient};

/// The provider name carried by the credentials it issues.
pub const PROVIDER_NAME: &str = "GoogleWebIdentity";

/// Expiry of the credentials most recently issued (the ones the cache holds).
#[derive(Clone, Default, Debug)]
pub struct CredentialsExpiry(Arc<Mutex<Option<SystemTime>>>);

impl CredentialsExpiry {
    /// When the current credentials expire, once some were issued.
    pub fn get(&self) -> Option<SystemTime> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    }
}

/// Why no credentials could be had. Never carries the token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StsError {
    /// The Google ID token could not be obtained.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// STS refused the token: permanent until the trust policy or the
    /// identity changes. `diagnostic` names the claims presented and the
    /// trust-policy keys they must meet.
    #[error("STS rejected the Google ID token ({code}: {message}). {diagnostic}")]
    Rejected {
        /// STS error code (InvalidIdentityToken, AccessDenied, IDPRejectedClaim, ExpiredToken).
        code: String,
        /// STS error message.
        message: String,
        /// Claims presented and the trust-policy keys they meet.
        diagnostic: String,
    },
    /// STS was unreachable, throttled, failing, or could not reach Google.
    #[error("STS AssumeRoleWithWebIdentity is unavailable: {0}")]
    Transient(String),
    /// Any other refusal (bad role ARN, duration above the role's maximum...).
    #[error("STS AssumeRoleWithWebIdentity failed: {0}")]
    Failed(String),
}

impl StsError {
    /// True when a rejection or a misconfiguration, not a passing fault.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

impl Transient for StsError {
    fn is_transient(&self) -> bool {
        match self {
            StsError::Identity(e) => e.transient,
            StsError::Transient(_) => true,
            StsError::Rejected { .. } | StsError::Failed(_) => false,
        }
    }
}

/// Names the claims presented and the trust-policy keys they meet.
pub fn trust_policy_diagnostic(claims: &Claims) -> String {
    let show = |v: Option<&str>| {
        v.map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "(absent)".into())
    };
    let aud = claims.aud.values().join(",");
    format!(
        "Claims presented: aud={}, azp={}, sub={}, email={}, iss={}. \
         The role's trust policy must allow Principal {{\"Federated\": \"accounts.google.com\"}} \
         with StringEquals on accounts.google.com:oaud = {} (the token's aud), \
         accounts.google.com:aud = {} (the token's azp) and accounts.google.com:sub = {} (the token's sub). \
         Metadata-server tokens carry the service account's numeric unique id in azp and sub; \
         tokens minted from a key file carry its email in azp.",
        show((!aud.is_empty()).then_some(aud.as_str())),
        show(claims.azp.as_deref()),
        show(claims.sub.as_deref()),
        show(claims.email.as_deref()),
        show(claims.iss.as_deref()),
        show((!aud.is_empty()).then_some(aud.as_str())),
        show(claims.azp.as_deref()),
        show(claims.sub.as_deref()),
    )
}

/// Issues AWS credentials for a Google identity. Give it to the SDK through
/// a shared `SdkConfig`; calling [`WebIdentityProvider::credentials`]
/// directly bypasses the identity cache.
pub struct WebIdentityProvider {
    sts: aws_sdk_sts::Client,
    ids: Arc<IdTokenSource>,
    role_arn: String,
    session_name: String,
    duration: Duration,
    backoff: Backoff,
    expiry: CredentialsExpiry,
}

impl fmt::Debug for WebIdentityProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebIdentityProvider")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("duration", &self.duration)
            .field("identity", &self.ids)
            .finish_non_exhaustive()
    }
}

fn remove_secret(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "[redacted]")
    }
}

fn classify(
    e: &SdkError<AssumeRoleWithWebIdentityError>,
    claims: &Claims,
    token: &str,
) -> StsError {
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let status = se.raw().status().as_u16();
            let code = err.code().unwrap_or("Unknown").to_owned();
            let message = remove_secret(err.message().unwrap_or(""), token);
            match err {
                AssumeRoleWithWebIdentityError::InvalidIdentityTokenException(_)
                | AssumeRoleWithWebIdentityError::IdpRejectedClaimException(_)
                | AssumeRoleWithWebIdentityError::ExpiredTokenException(_) => StsError::Rejected {
                    code,
                    message,
                    diagnostic: trust_policy_diagnostic(claims),
                },
                AssumeRoleWithWebIdentityError::IdpCommunicationErrorException(_) => {
                    StsError::Transient(format!("{code}: {message}"))
                }
                _ if code == "AccessDenied" || code == "AccessDeniedException" => {
                    StsError::Rejected {
                        code,
                        message,
                        diagnostic: trust_policy_diagnostic(claims),
                    }
                }
                _ if code.contains("Throttl")
                    || code == "RequestLimitExceeded"
                    || status == 429
                    || status >= 500 =>
                {
                    StsError::Transient(format!("HTTP {status} {code}: {message}"))
                }
                _ => StsError::Failed(format!("HTTP {status} {code}: {message}")),
            }
        }
        SdkError::TimeoutError(_) => StsError::Transient("timed out".into()),
        SdkError::DispatchFailure(_) => StsError::Transient(format!(
            "could not reach STS: {}",
            remove_secret(&crate::util::error_chain(e), token)
        )),
        SdkError::ResponseError(_) => StsError::Transient("unreadable answer from STS".into()),
        _ => StsError::Failed(remove_secret(&crate::util::error_chain(e), token)),
    }
}

/// The one conversion of STS output: sets the expiry and provider name.
fn into_credentials(out: AssumeRoleWithWebIdentityOutput) -> Result<Credentials, StsError> {
    let c = out
        .credentials
        .ok_or_else(|| StsError::Failed("STS answered without credentials".into()))?;
    let expiration = SystemTime::try_from(c.expiration)
        .map_err(|_| StsError::Failed("STS answered an unusable expiration".into()))?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        Some(c.session_token),
        Some(expiration),
        PROVIDER_NAME,
    ))
}

impl WebIdentityProvider {
    /// A provider assuming `role_arn` with tokens from `ids`, through an
    /// STS client that has no credentials.
    pub(crate) fn new(
        sts: aws_sdk_sts::Client,
        ids: Arc<IdTokenSource>,
        role_arn: String,
        session_name: String,
        duration: Duration,
    ) -> Self {
        WebIdentityProvider {
            sts,
            ids,
            role_arn,
            session_name,
            duration,
            backoff: Backoff::default(),
            expiry: CredentialsExpiry::default(),
        }
    }

    /// The same provider retrying STS with `backoff`.
    #[cfg(test)]
    fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The identity source behind this provider.
    pub fn identity(&self) -> &Arc<IdTokenSource> {
        &self.ids
    }

    /// Expiry of the credentials most recently issued.
    pub fn expiry(&self) -> CredentialsExpiry {
        self.expiry.clone()
    }

    /// The role assumed.
    pub(crate) fn role_arn(&self) -> &str {
        &self.role_arn
    }

    async fn assume_once(&self, token: &IdToken) -> Result<Credentials, StsError> {
        let started = std::time::Instant::now();
        let result = self
            .sts
            .assume_role_with_web_identity()
            .role_arn(&self.role_arn)
            .role_session_name(&self.session_name)
            .web_identity_token(token.secret().expose())
            .duration_seconds(i32::try_from(self.duration.as_secs()).unwrap_or(3600))
            .send()
            .await;
        crate::metrics::sts_assumed(started.elapsed());
        match result {
            Ok(out) => into_credentials(out),
            Err(e) => Err(classify(&e, token.claims(), token.secret().expose())),
        }
    }

    /// The Google token (the identity source retries on its own), then STS,
    /// retried here: one retry layer per dependency.
    async fn assume(&self) -> Result<Credentials, StsError> {
        let token = self.ids.token().await?;
        self.backoff.retry(|| self.assume_once(&token)).await
    }

    /// Assumes the role now, retrying transient STS failures with bounded
    /// backoff. Rejections are logged with the trust-policy diagnostic.
    pub async fn credentials(&self) -> Result<Credentials, StsError> {
        match self.assume().await {
            Ok(c) => {
                if let Some(t) = c.expiry() {
                    self.expiry.set(t);
                    crate::metrics::credentials_expire_at(t);
                }
                tracing::info!(
                    role_arn = %self.role_arn,
                    session_name = %self.session_name,
                    expires_at = %c.expiry().map(crate::util::rfc3339).unwrap_or_default(),
                    "assumed AWS role with the Google identity"
                );
                Ok(c)
            }
            Err(e) => {
                tracing::error!(role_arn = %self.role_arn, transient = e.is_transient(), "{e}");
                Err(e)
            }
        }
    }
}

/// The provider's error in a chain of sources: how a failed AWS call tells
/// that it had no credentials.
pub(crate) fn find_sts_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a StsError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(s) = c.downcast_ref::<StsError>() {
            return Some(s);
        }
        cur = c.source();
    }
    None
}

/// The provider as the SDK's credentials chain holds it, shared with the
/// rest of the service.
#[derive(Debug)]
pub(crate) struct SdkCredentialsProvider(pub(crate) Arc<WebIdentityProvider>);

impl ProvideCredentials for SdkCredentialsProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.0.credentials().await.map_err(|e| {
                if e.is_transient() {
                    CredentialsError::provider_error(e)
                } else {
                    CredentialsError::invalid_configuration(e)
                }
            })
        })
    }
}

#[cfg(test)]
mod tests;
