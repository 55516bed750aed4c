//! What an S3 operation can fail with, classified for the triggers.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{find_sts_error, StsError};
use crate::util::error_chain;

use super::key::KeyError;

/// A failed storage operation. Never carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key or prefix is refused.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// A request argument is refused (limit, range syntax).
    #[error("{0}")]
    InvalidArgument(String),
    /// User metadata is refused (name, value or size).
    #[error("{0}")]
    InvalidMetadata(String),
    /// The Content-Type is refused.
    #[error("{0}")]
    InvalidContentType(String),
    /// No such object.
    #[error("{0}")]
    NotFound(String),
    /// A precondition failed (If-None-Match).
    #[error("{0}")]
    PreconditionFailed(String),
    /// A conflicting concurrent operation.
    #[error("{0}")]
    Conflict(String),
    /// The Range cannot be satisfied.
    #[error("{0}")]
    InvalidRange(String),
    /// S3 throttled the call (429).
    #[error("{0}")]
    Throttled(String),
    /// No AWS credentials could be had (STS rejected or unavailable).
    #[error("AWS credentials are unavailable: {0}")]
    CredentialsUnavailable(StsError),
    /// The role may not do this (IAM policy).
    #[error("S3 denied access: {0}")]
    AccessDenied(String),
    /// S3 5xx, a timeout or a connection failure.
    #[error("S3 is unavailable: {0}")]
    Unavailable(String),
    /// The bytes did not match their checksum.
    #[error("integrity check failed: {0}")]
    IntegrityMismatch(String),
    /// The incoming body could not be read.
    #[error("the request body could not be read: {0}")]
    Body(String),
    /// The object is too large.
    #[error("{0}")]
    TooLarge(String),
    /// The buffers the operation needs could not be had in time (the
    /// service's buffer budget is spent): transient.
    #[error("{0}")]
    Busy(String),
    /// The multipart upload named is gone (completed or aborted).
    #[error("{0}")]
    UploadGone(String),
    /// Anything else: a bug or an unexpected answer.
    #[error("{0}")]
    Internal(String),
}

/// Classifies an SDK error of operation `what` on `key`.
pub(crate) fn classify<E>(
    what: &str,
    key: &str,
    e: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(sts) = find_sts_error(&e) {
        return StorageError::CredentialsUnavailable(sts.clone());
    }
    match &e {
        SdkError::ServiceError(se) => classify_status(
            what,
            key,
            se.raw().status().as_u16(),
            se.err().code().unwrap_or(""),
            se.err().message().unwrap_or(""),
        ),
        SdkError::TimeoutError(_) => StorageError::Unavailable(format!("{what} {key}: timed out")),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageError::Unavailable(format!("{what} {key}: {}", error_chain(&e)))
        }
        _ => StorageError::Internal(format!("{what} {key}: {}", error_chain(&e))),
    }
}

/// Classifies S3's answer `status` with error `code` and `msg` to operation
/// `what` on `key`.
pub(crate) fn classify_status(
    what: &str,
    key: &str,
    status: u16,
    code: &str,
    msg: &str,
) -> StorageError {
    let detail = format!("{what} {key}: HTTP {status} {code} {msg}");
    match (status, code) {
        (_, "NoSuchUpload") => {
            StorageError::UploadGone(format!("{what} {key}: the upload is gone"))
        }
        (_, "NoSuchKey") | (404, "NotFound") | (404, "") => {
            StorageError::NotFound(format!("no such object: {key}"))
        }
        (_, "PreconditionFailed") | (412, _) => {
            StorageError::PreconditionFailed(format!("precondition failed for {key}"))
        }
        (_, "ConditionalRequestConflict") | (_, "OperationAborted") | (409, _) => {
            StorageError::Conflict(format!(
                "a concurrent change to {key} conflicted; try again"
            ))
        }
        (_, "InvalidRange") | (416, _) => {
            StorageError::InvalidRange(format!("the range cannot be satisfied for {key}"))
        }
        (_, "BadDigest") | (_, "InvalidDigest") | (_, "XAmzContentChecksumMismatch") => {
            StorageError::IntegrityMismatch(detail)
        }
        (_, "AccessDenied") | (403, _) => StorageError::AccessDenied(detail),
        (_, "ExpiredToken") | (_, "InvalidToken") | (_, "TokenRefreshRequired") => {
            StorageError::Unavailable(detail)
        }
        (_, "NoSuchBucket") => StorageError::Unavailable(detail),
        (_, "EntityTooLarge") => StorageError::TooLarge(format!("{key} is too large for S3")),
        (429, _) | (_, "TooManyRequests") => StorageError::Throttled(detail),
        (s, _) if s >= 500 => StorageError::Unavailable(detail),
        // S3 waited too long for the body: the next attempt may pass.
        (_, "RequestTimeout") => StorageError::Unavailable(detail),
        (_, "MetadataTooLarge") => {
            StorageError::InvalidArgument(format!("the metadata of {key} is over S3's 2 KB limit"))
        }
        // Any other 400 (InvalidArgument, KeyTooLongError, ...): the
        // request can never succeed as it is.
        (400, _) => StorageError::InvalidArgument(format!("S3 refused {what} {key}: {code} {msg}")),
        _ => StorageError::Internal(detail),
    }
}
