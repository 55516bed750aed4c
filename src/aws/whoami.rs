//! Who this service is on both clouds: the Google token's non-secret
//! claims, the AWS caller identity and when the credentials expire.

use std::time::SystemTime;

use serde::Serialize;

use crate::google::identity::IdentityError;
use crate::jwt::Audience;
use crate::util::{error_chain, rfc3339};

use super::{find_sts_error, AwsClients, StsError};

/// The answer of `whoami` (fields in name order, as printed).
#[derive(Debug, Clone, Serialize)]
pub struct Whoami {
    pub(crate) aws: AwsIdentity,
    /// RFC 3339, once credentials were issued.
    pub(crate) credentials_expire_at: Option<String>,
    pub(crate) credentials_remaining_seconds: Option<u64>,
    pub(crate) google: GoogleIdentity,
}

/// The AWS side: `sts:GetCallerIdentity` with the role's credentials.
#[derive(Debug, Clone, Serialize)]
pub struct AwsIdentity {
    pub(crate) account: Option<String>,
    pub(crate) arn: Option<String>,
    pub(crate) user_id: Option<String>,
}

/// The Google side: the claims of the ID token that bought the
/// credentials (never the token).
#[derive(Debug, Clone, Serialize)]
pub struct GoogleIdentity {
    pub(crate) aud: Audience,
    pub(crate) azp: Option<String>,
    pub(crate) email: Option<String>,
    /// Expiry of the token, seconds since the epoch.
    pub(crate) exp: Option<i64>,
    pub(crate) iss: Option<String>,
    pub(crate) sub: Option<String>,
}

/// Why `whoami` has no answer.
#[derive(Debug, thiserror::Error)]
pub enum WhoamiError {
    /// No AWS credentials could be had.
    #[error("AWS credentials are unavailable: {0}")]
    Credentials(StsError),
    /// GetCallerIdentity itself failed.
    #[error("STS GetCallerIdentity failed; retry later: {0}")]
    Sts(String),
    /// The Google ID token could not be had.
    #[error("the Google identity is unavailable: {0}")]
    Identity(IdentityError),
}

/// Asks STS who the credentials are, and the identity source for the
/// claims of its (cached) token.
pub async fn whoami(aws: &AwsClients) -> Result<Whoami, WhoamiError> {
    let out = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| match find_sts_error(&e) {
            Some(sts) => WhoamiError::Credentials(sts.clone()),
            None => WhoamiError::Sts(error_chain(&e)),
        })?;
    // The token that bought the credentials is cached; this does not fetch again.
    let token = aws
        .provider
        .identity()
        .token()
        .await
        .map_err(WhoamiError::Identity)?;
    let c = token.claims();
    let expiry = aws.provider.expiry().get();
    Ok(Whoami {
        aws: AwsIdentity {
            account: out.account,
            arn: out.arn,
            user_id: out.user_id,
        },
        credentials_expire_at: expiry.map(rfc3339),
        credentials_remaining_seconds: expiry
            .and_then(|e| e.duration_since(SystemTime::now()).ok())
            .map(|d| d.as_secs()),
        google: GoogleIdentity {
            aud: c.aud.clone(),
            azp: c.azp.clone(),
            email: c.email.clone(),
            exp: c.exp,
            iss: c.iss.clone(),
            sub: c.sub.clone(),
        },
    })
}
