//! The command line: `serve` (the default), `credentials` (JSON for an AWS
//! `credential_process`) and `whoami`.
//!
//! ```text
//! [profile gcp]
//! credential_process = gcp-aws-bridge credentials
//! ```

use std::time::SystemTime;

use crate::aws::AwsClients;
use crate::error::AppError;
use crate::storage::find_sts_error;
use crate::telemetry::rfc3339;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The HTTP service.
    Serve,
    /// Print credentials for `credential_process`.
    Credentials,
    /// Print who this is, on both clouds.
    Whoami,
    /// Sync a Cloud Storage bucket (see [`crate::sync_cli`]).
    Sync,
    /// Print usage.
    Help,
    /// Print the version.
    Version,
}

/// Usage text.
pub const USAGE: &str = "\
usage: gcp-aws-bridge [serve|credentials|whoami|sync|--help|--version]

  serve        run the HTTP service on 0.0.0.0:$PORT (the default)
  credentials  print AWS credentials for credential_process:
               {\"Version\":1,\"AccessKeyId\",\"SecretAccessKey\",\"SessionToken\",\"Expiration\"}
  whoami       print the Google token's claims, the AWS caller identity and
               when the credentials expire
  sync gs://BUCKET[/PREFIX] [--delete] [--dry-run]
               publish the first page of a sync to PUBSUB_TOPIC (the service
               works through the pages); --dry-run lists every page here,
               prints what would be copied and deleted with totals, and
               publishes nothing

Configuration is read from the environment (TARGET_AUDIENCE, AWS_ROLE_ARN,
AWS_REGION, ...); see the README.";

/// Parses the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Mode, String> {
    match args.first().map(String::as_str) {
        None | Some("serve") => Ok(Mode::Serve),
        Some("credentials") => Ok(Mode::Credentials),
        Some("whoami") => Ok(Mode::Whoami),
        Some("sync") => Ok(Mode::Sync),
        Some("-h" | "--help" | "help") => Ok(Mode::Help),
        Some("-V" | "--version") => Ok(Mode::Version),
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

/// The credential_process document. The SDK's cache is bypassed on purpose:
/// the process lives for one call.
pub async fn credentials_json(aws: &AwsClients) -> Result<serde_json::Value, String> {
    let creds = aws
        .provider
        .credentials()
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "Version": 1,
        "AccessKeyId": creds.access_key_id(),
        "SecretAccessKey": creds.secret_access_key(),
        "SessionToken": creds.session_token(),
        "Expiration": creds.expiry().map(rfc3339),
    }))
}

/// The token's non-secret claims, the AWS caller identity and the
/// credentials' expiry.
pub async fn whoami_json(aws: &AwsClients) -> Result<serde_json::Value, AppError> {
    let out = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| match find_sts_error(&e) {
            Some(sts) => AppError::unavailable(
                "credentials_unavailable",
                "AWS credentials are unavailable",
                sts.to_string(),
            ),
            None => AppError::unavailable(
                "sts_unavailable",
                "STS GetCallerIdentity failed; retry later",
                crate::identity::error_chain(&e),
            ),
        })?;
    // The token that bought the credentials is cached; this does not fetch again.
    let token = aws.provider.identity().token().await.map_err(|e| {
        AppError::unavailable(
            "identity_unavailable",
            "the Google identity is unavailable",
            e.to_string(),
        )
    })?;
    let c = token.claims();
    Ok(serde_json::json!({
        "google": {
            "iss": c.iss, "aud": c.aud, "azp": c.azp, "sub": c.sub, "email": c.email,
            "exp": c.exp,
        },
        "aws": { "account": out.account, "arn": out.arn, "user_id": out.user_id },
        "credentials_expire_at": aws.provider.expiry().get().map(rfc3339),
        "credentials_remaining_seconds": aws.provider.expiry().get()
            .and_then(|e| e.duration_since(SystemTime::now()).ok()).map(|d| d.as_secs()),
    }))
}
