//! [`AppError`]: the one place that knows status codes. Each domain error
//! (storage, keys, buffer budget, source buckets, Cloud Storage,
//! replication, commands, publishing, whoami) and each refusal of the HTTP
//! edge itself ([`crate::http::edge`]: bodies, push envelopes, CloudEvents,
//! `/v1` requests, routes, deadlines) has one `From` here that picks its
//! status and snake_case code; nothing else names a [`Code`] or builds an
//! [`AppError`] variant (`scripts/check-layers.py` checks it). Bodies are
//! `{"error":{"code":"snake_case","message":"…"}}`; 5xx bodies are generic
//! and the detail goes to the log; nothing here ever holds a token or key.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::aws::s3::{KeyError, StorageError};
use crate::aws::{StsError, WhoamiError};
use crate::budget::BudgetError;
use crate::google::caller_auth::CallerError;
use crate::google::gcs::GcsError;
use crate::google::publisher::PublishError;
use crate::http::auth_token::TokenRefusal;
use crate::http::edge::{
    ApiRequestError, BodyError, CloudEventError, Interrupted, MessageError, RouteError,
};
use crate::replication::command::CommandError;
use crate::replication::replicate::{PartsRefusal, ReplicateError};
use crate::source_buckets::BucketRefusal;
use crate::wire::WireError;

/// An error's body: `{"error":{"code":"snake_case","message":"…"}}`, with
/// `status` beside it for `/readyz`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    error: ErrorDetail,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    code: &'static str,
    message: String,
}

/// The body of `/healthz` and of a ready `/readyz`: `{"status":"ok"}`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusBody {
    pub(crate) status: &'static str,
}

/// How long a trigger should wait before redelivering after a transient fault.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Every error code the service answers with (`{"error":{"code":…}}`).
/// The status goes with the [`AppError`] variant that carries the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// `buffer_budget_exhausted`
    BufferBudgetExhausted,
    /// `certs_unavailable`
    CertsUnavailable,
    /// `conflict`
    Conflict,
    /// `credentials_unavailable`
    CredentialsUnavailable,
    /// `forbidden`
    Forbidden,
    /// `gcs_request_refused`
    GcsRequestRefused,
    /// `gcs_unavailable`
    GcsUnavailable,
    /// `identity_unavailable`
    IdentityUnavailable,
    /// `integrity_mismatch`
    IntegrityMismatch,
    /// `internal`
    Internal,
    /// `invalid_argument`
    InvalidArgument,
    /// `invalid_attributes`
    InvalidAttributes,
    /// `invalid_base64`
    InvalidBase64,
    /// `invalid_bucket`
    InvalidBucket,
    /// `invalid_cloudevent`
    InvalidCloudevent,
    /// `invalid_command`
    InvalidCommand,
    /// `invalid_content_length`
    InvalidContentLength,
    /// `invalid_content_type`
    InvalidContentType,
    /// `invalid_event`
    InvalidEvent,
    /// `invalid_json`
    InvalidJson,
    /// `invalid_key`
    InvalidKey,
    /// `invalid_message`
    InvalidMessage,
    /// `invalid_metadata`
    InvalidMetadata,
    /// `invalid_notification`
    InvalidNotification,
    /// `invalid_page_token`
    InvalidPageToken,
    /// `invalid_precondition`
    InvalidPrecondition,
    /// `metadata_too_large`
    MetadataTooLarge,
    /// `method_not_allowed`
    MethodNotAllowed,
    /// `not_found`
    NotFound,
    /// `not_ready`
    NotReady,
    /// `object_too_large`
    ObjectTooLarge,
    /// `op_not_allowed`
    OpNotAllowed,
    /// `part_too_large`
    PartTooLarge,
    /// `payload_too_large`
    PayloadTooLarge,
    /// `precondition_failed`
    PreconditionFailed,
    /// `publish_failed`
    PublishFailed,
    /// `range_not_satisfiable`
    RangeNotSatisfiable,
    /// `replica_changed`
    ReplicaChanged,
    /// `s3_access_denied`
    S3AccessDenied,
    /// `s3_unavailable`
    S3Unavailable,
    /// `shutting_down`
    ShuttingDown,
    /// `signature_removed`
    SignatureRemoved,
    /// `source_bucket_not_allowed`
    SourceBucketNotAllowed,
    /// `sts_unavailable`
    StsUnavailable,
    /// `sync_page_in_progress`
    SyncPageInProgress,
    /// `tasks_not_configured`
    TasksNotConfigured,
    /// `throttled`
    Throttled,
    /// `timeout`
    Timeout,
    /// `token_unavailable`
    TokenUnavailable,
    /// `too_many_restarts`
    TooManyRestarts,
    /// `unauthenticated`
    Unauthenticated,
    /// `unknown_event_type`
    UnknownEventType,
    /// `unknown_op`
    UnknownOp,
    /// `unreadable_body`
    UnreadableBody,
    /// `upload_starting`
    UploadStarting,
}

impl Code {
    /// The snake_case code of the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BufferBudgetExhausted => "buffer_budget_exhausted",
            Code::CertsUnavailable => "certs_unavailable",
            Code::Conflict => "conflict",
            Code::CredentialsUnavailable => "credentials_unavailable",
            Code::Forbidden => "forbidden",
            Code::GcsRequestRefused => "gcs_request_refused",
            Code::GcsUnavailable => "gcs_unavailable",
            Code::IdentityUnavailable => "identity_unavailable",
            Code::IntegrityMismatch => "integrity_mismatch",
            Code::Internal => "internal",
            Code::InvalidArgument => "invalid_argument",
            Code::InvalidAttributes => "invalid_attributes",
            Code::InvalidBase64 => "invalid_base64",
            Code::InvalidBucket => "invalid_bucket",
            Code::InvalidCloudevent => "invalid_cloudevent",
            Code::InvalidCommand => "invalid_command",
            Code::InvalidContentLength => "invalid_content_length",
            Code::InvalidContentType => "invalid_content_type",
            Code::InvalidEvent => "invalid_event",
            Code::InvalidJson => "invalid_json",
            Code::InvalidKey => "invalid_key",
            Code::InvalidMessage => "invalid_message",
            Code::InvalidMetadata => "invalid_metadata",
            Code::InvalidNotification => "invalid_notification",
            Code::InvalidPageToken => "invalid_page_token",
            Code::InvalidPrecondition => "invalid_precondition",
            Code::MetadataTooLarge => "metadata_too_large",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::NotFound => "not_found",
            Code::NotReady => "not_ready",
            Code::ObjectTooLarge => "object_too_large",
            Code::OpNotAllowed => "op_not_allowed",
            Code::PartTooLarge => "part_too_large",
            Code::PayloadTooLarge => "payload_too_large",
            Code::PreconditionFailed => "precondition_failed",
            Code::PublishFailed => "publish_failed",
            Code::RangeNotSatisfiable => "range_not_satisfiable",
            Code::ReplicaChanged => "replica_changed",
            Code::S3AccessDenied => "s3_access_denied",
            Code::S3Unavailable => "s3_unavailable",
            Code::ShuttingDown => "shutting_down",
            Code::SignatureRemoved => "signature_removed",
            Code::SourceBucketNotAllowed => "source_bucket_not_allowed",
            Code::StsUnavailable => "sts_unavailable",
            Code::SyncPageInProgress => "sync_page_in_progress",
            Code::TasksNotConfigured => "tasks_not_configured",
            Code::Throttled => "throttled",
            Code::Timeout => "timeout",
            Code::TokenUnavailable => "token_unavailable",
            Code::TooManyRestarts => "too_many_restarts",
            Code::Unauthenticated => "unauthenticated",
            Code::UnknownEventType => "unknown_event_type",
            Code::UnknownOp => "unknown_op",
            Code::UnreadableBody => "unreadable_body",
            Code::UploadStarting => "upload_starting",
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way a request can fail, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: can never succeed (bad envelope, base64, JSON, op, key, event type).
    #[error("{message}")]
    BadRequest {
        /// snake_case code.
        code: Code,
        /// For people.
        message: String,
    },
    /// 401: no usable credentials presented.
    #[error("{0}")]
    Unauthenticated(String),
    /// 401 `signature_removed`: in `AUTH_MODE=verify`, a token whose signature
    /// Cloud Run replaced (`SIGNATURE_REMOVED_BY_GOOGLE`); such a deployment
    /// can never work and must use `AUTH_MODE=cloud-run-iam`.
    #[error("the token's signature was removed by Cloud Run (SIGNATURE_REMOVED_BY_GOOGLE), so it cannot be verified: a service that Cloud Run guards with IAM must run with AUTH_MODE=cloud-run-iam")]
    SignatureRemoved,
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403 with its own code: the request names something this service
    /// may not touch (e.g. `source_bucket_not_allowed`).
    #[error("{message}")]
    Refused {
        /// snake_case code.
        code: Code,
        /// For people.
        message: String,
    },
    /// 404: no such object.
    #[error("{0}")]
    NotFound(String),
    /// 405: method not allowed on the route.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflicting concurrent change.
    #[error("{0}")]
    Conflict(String),
    /// 412: a precondition (If-None-Match, If-Match) failed.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 416: the Range cannot be satisfied.
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// 429 + Retry-After: throttled.
    #[error("{0}")]
    Throttled(String),
    /// 503 + Retry-After: transient (metadata server, STS or S3 unavailable,
    /// credentials refused until the trust policy is fixed, integrity
    /// mismatch). `message` is safe to show; `detail` goes to the log.
    #[error("{message}")]
    Unavailable {
        /// snake_case code.
        code: Code,
        /// Safe for the response.
        message: String,
        /// For the log only.
        detail: String,
    },
    /// 500: a bug. The response says nothing internal.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// 400 with a code.
    fn bad_request(code: Code, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 503 with a code; `detail` is logged, not answered.
    fn unavailable(code: Code, message: impl Into<String>, detail: impl Into<String>) -> Self {
        AppError::Unavailable {
            code,
            message: message.into(),
            detail: detail.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::SignatureRemoved => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Refused { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            AppError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The snake_case code of the body.
    pub fn code(&self) -> Code {
        match self {
            AppError::BadRequest { code, .. }
            | AppError::Unavailable { code, .. }
            | AppError::Refused { code, .. } => *code,
            AppError::Unauthenticated(_) => Code::Unauthenticated,
            AppError::SignatureRemoved => Code::SignatureRemoved,
            AppError::Forbidden(_) => Code::Forbidden,
            AppError::NotFound(_) => Code::NotFound,
            AppError::MethodNotAllowed => Code::MethodNotAllowed,
            AppError::Conflict(_) => Code::Conflict,
            AppError::PreconditionFailed(_) => Code::PreconditionFailed,
            AppError::PayloadTooLarge(_) => Code::PayloadTooLarge,
            AppError::RangeNotSatisfiable(_) => Code::RangeNotSatisfiable,
            AppError::Throttled(_) => Code::Throttled,
            AppError::Internal(_) => Code::Internal,
        }
    }

    /// True for 429 and 503: the trigger should redeliver.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, AppError::Throttled(_) | AppError::Unavailable { .. })
    }

    /// The message, and for a 503 the detail the log gets beside it: what
    /// a command line prints.
    pub(crate) fn message_with_detail(&self) -> String {
        match self {
            AppError::Unavailable {
                message, detail, ..
            } => format!("{message}: {detail}"),
            other => other.to_string(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            AppError::Internal(detail) => tracing::error!(code = self.code().as_str(), "{detail}"),
            AppError::Unavailable {
                detail, message, ..
            } => {
                tracing::warn!(code = self.code().as_str(), detail = %detail, "{message}")
            }
            AppError::Throttled(m) => tracing::warn!(code = self.code().as_str(), "{m}"),
            // A misconfiguration that refuses every caller: loud.
            AppError::SignatureRemoved => tracing::error!(code = self.code().as_str(), "{self}"),
            // Client rejections are not errors of this service.
            other => tracing::info!(code = other.code().as_str(), "request refused: {other}"),
        }
        let body = ErrorBody {
            status: None,
            error: ErrorDetail {
                code: self.code().as_str(),
                message: self.public_message(),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if self.is_transient() {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
        }
        if matches!(
            self,
            AppError::Unauthenticated(_) | AppError::SignatureRemoved
        ) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// `/readyz` when AWS credentials cannot be had: 503 with `Retry-After`,
/// a body that says only `not_ready` (the endpoint is open; the reason goes
/// to the log).
pub(crate) fn not_ready() -> Response {
    let body = ErrorBody {
        status: Some("not_ready"),
        error: ErrorDetail {
            code: Code::NotReady.as_str(),
            message: "not_ready".to_owned(),
        },
    };
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER.as_secs()),
    );
    r
}

impl From<KeyError> for AppError {
    fn from(e: KeyError) -> AppError {
        AppError::bad_request(Code::InvalidKey, e.to_string())
    }
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> AppError {
        match e {
            StorageError::InvalidKey(k) => k.into(),
            StorageError::InvalidArgument(m) => AppError::bad_request(Code::InvalidArgument, m),
            StorageError::InvalidMetadata(m) => AppError::bad_request(Code::InvalidMetadata, m),
            StorageError::InvalidContentType(m) => {
                AppError::bad_request(Code::InvalidContentType, m)
            }
            StorageError::NotFound(m) => AppError::NotFound(m),
            StorageError::PreconditionFailed(m) => AppError::PreconditionFailed(m),
            StorageError::Conflict(m) => AppError::Conflict(m),
            StorageError::InvalidRange(m) => AppError::RangeNotSatisfiable(m),
            StorageError::Throttled(m) => AppError::Throttled(format!("S3 is throttling: {m}")),
            StorageError::CredentialsUnavailable(sts) => AppError::unavailable(
                Code::CredentialsUnavailable,
                "AWS credentials are unavailable; the request can succeed once they are",
                sts.to_string(),
            ),
            StorageError::AccessDenied(m) => AppError::unavailable(
                Code::S3AccessDenied,
                "the AWS role may not do this; the request can succeed once its policy allows it",
                m,
            ),
            StorageError::Unavailable(m) => {
                AppError::unavailable(Code::S3Unavailable, "S3 is unavailable; retry later", m)
            }
            // An upload of this request's, aborted under it: a retry starts
            // another.
            StorageError::UploadGone(m) => {
                AppError::unavailable(Code::S3Unavailable, "S3 is unavailable; retry later", m)
            }
            StorageError::IntegrityMismatch(m) => AppError::unavailable(
                Code::IntegrityMismatch,
                "the bytes did not match their checksum; nothing was written",
                m,
            ),
            StorageError::Body(m) => AppError::bad_request(
                Code::UnreadableBody,
                format!("the request body could not be read: {m}"),
            ),
            StorageError::TooLarge(m) => AppError::PayloadTooLarge(m),
            StorageError::Busy(m) => busy(m),
            StorageError::Internal(m) => AppError::Internal(m),
        }
    }
}

/// 503 `buffer_budget_exhausted`: the buffers a request needs could not be
/// had within the wait (`BUFFER_BUDGET_BYTES` is spent by other requests).
fn busy(detail: String) -> AppError {
    AppError::unavailable(
        Code::BufferBudgetExhausted,
        "the service is busy with other requests' data; retry later",
        detail,
    )
}

impl From<BudgetError> for AppError {
    fn from(e: BudgetError) -> AppError {
        match e {
            BudgetError::Exhausted { .. } => busy(e.to_string()),
            BudgetError::OverBudget { .. } => AppError::PayloadTooLarge(format!(
                "the request needs more memory than the service's buffer budget: {e}"
            )),
        }
    }
}

impl From<BucketRefusal> for AppError {
    fn from(e: BucketRefusal) -> AppError {
        match e {
            BucketRefusal::Invalid(m) => AppError::bad_request(Code::InvalidBucket, m),
            BucketRefusal::NotAllowed(m) => AppError::Refused {
                code: Code::SourceBucketNotAllowed,
                message: m,
            },
        }
    }
}

impl From<GcsError> for AppError {
    fn from(e: GcsError) -> AppError {
        match e {
            GcsError::Failed {
                message,
                transient: false,
            } => AppError::bad_request(Code::GcsRequestRefused, message),
            other => AppError::unavailable(
                Code::GcsUnavailable,
                "Cloud Storage is unavailable; retry later",
                other.to_string(),
            ),
        }
    }
}

impl From<CallerError> for AppError {
    fn from(e: CallerError) -> AppError {
        match e {
            CallerError::Unauthenticated(m) => AppError::Unauthenticated(m),
            CallerError::SignatureRemoved => AppError::SignatureRemoved,
            CallerError::Forbidden(m) => AppError::Forbidden(m),
            CallerError::CertsUnavailable(detail) => AppError::unavailable(
                Code::CertsUnavailable,
                "Google's signing certificates are unavailable; retry later",
                detail,
            ),
        }
    }
}

impl From<ReplicateError> for AppError {
    fn from(e: ReplicateError) -> AppError {
        let message = e.to_string();
        match e {
            ReplicateError::InvalidEvent(m) => AppError::bad_request(Code::InvalidEvent, m),
            ReplicateError::SourceBucket(e) => e.into(),
            ReplicateError::Storage(e) => e.into(),
            ReplicateError::Gcs(e) => e.into(),
            ReplicateError::NoGeneration(source) => AppError::unavailable(
                Code::GcsUnavailable,
                "Cloud Storage answered without a generation",
                source,
            ),
            ReplicateError::UnreadableCrc(m) => AppError::unavailable(
                Code::IntegrityMismatch,
                "the object's CRC32C is unreadable",
                m,
            ),
            ReplicateError::CrcMismatch(m) => AppError::unavailable(
                Code::IntegrityMismatch,
                "the object's CRC32C values disagree; nothing was written",
                m,
            ),
            ReplicateError::SourceRead(m) => AppError::unavailable(
                Code::GcsUnavailable,
                "reading from Cloud Storage failed; retry later",
                m,
            ),
            // 503, so the redelivery decides again.
            ReplicateError::LostRace(m) => AppError::unavailable(
                Code::ReplicaChanged,
                "the replica changed while this event was handled; retry later",
                m,
            ),
            ReplicateError::MetadataTooLarge(m) => AppError::bad_request(Code::MetadataTooLarge, m),
            ReplicateError::InvalidPartTask => AppError::bad_request(Code::InvalidCommand, message),
            ReplicateError::InvalidPageToken => {
                AppError::bad_request(Code::InvalidPageToken, message)
            }
            ReplicateError::Publish(e) => e.into(),
            ReplicateError::Budget(e) => e.into(),
            ReplicateError::PageInProgress(m) => AppError::unavailable(
                Code::SyncPageInProgress,
                "another delivery of this sync page is at work; retry later",
                m,
            ),
            ReplicateError::UploadStarting(m) => AppError::unavailable(
                Code::UploadStarting,
                "another delivery is starting this object's upload; retry later",
                m,
            ),
            ReplicateError::PartsRefused { refusal, message } => AppError::bad_request(
                match refusal {
                    PartsRefusal::ObjectTooLarge => Code::ObjectTooLarge,
                    PartsRefusal::PartTooLarge => Code::PartTooLarge,
                    PartsRefusal::TooManyRestarts => Code::TooManyRestarts,
                },
                message,
            ),
            ReplicateError::Unexpected(_) => AppError::Internal(message),
        }
    }
}

impl From<WireError> for AppError {
    fn from(e: WireError) -> AppError {
        let message = e.to_string();
        match e {
            WireError::NotJson(_) => AppError::bad_request(Code::InvalidJson, message),
            WireError::Invalid(_) => AppError::bad_request(Code::InvalidCommand, message),
            WireError::UnknownOp(_) => AppError::bad_request(Code::UnknownOp, message),
            WireError::InvalidBase64 => AppError::bad_request(Code::InvalidBase64, message),
            WireError::InvalidMetadata(_) => AppError::bad_request(Code::InvalidMetadata, message),
            WireError::NotAllowed(_) => AppError::Refused {
                code: Code::OpNotAllowed,
                message,
            },
        }
    }
}

impl From<CommandError> for AppError {
    fn from(e: CommandError) -> AppError {
        match e {
            CommandError::Wire(e) => e.into(),
            CommandError::Storage(e) => e.into(),
            CommandError::Replicate(e) => e.into(),
            CommandError::SourceBucket(e) => e.into(),
        }
    }
}

impl From<PublishError> for AppError {
    fn from(e: PublishError) -> AppError {
        match e {
            PublishError::TooLarge(_) => AppError::Internal(e.to_string()),
            // Succeeds once the operator sets TASKS_TOPIC: redeliver.
            PublishError::NoTopic => AppError::unavailable(
                Code::TasksNotConfigured,
                "this work needs the service's tasks topic (TASKS_TOPIC); retry once it is set",
                e.to_string(),
            ),
            // A missing topic or a refused publish is fixable by configuration
            // or a role binding: keep the message for redelivery.
            other => AppError::unavailable(
                Code::PublishFailed,
                "publishing further commands failed; retry later",
                other.to_string(),
            ),
        }
    }
}

/// Credentials that cannot be had (the credential server's answer). The
/// provider has logged the error with its trust-policy diagnostic; the
/// answer carries only what to do.
impl From<StsError> for AppError {
    fn from(e: StsError) -> AppError {
        let message = match &e {
            StsError::Identity(_) => "the Google identity is unavailable; retry later",
            StsError::Rejected { .. } => {
                "STS refused the Google identity; the log names the claims and the trust-policy keys"
            }
            StsError::Transient(_) => "STS is unavailable; retry later",
            StsError::Failed(_) => "STS AssumeRoleWithWebIdentity failed; see the log",
        };
        AppError::unavailable(Code::CredentialsUnavailable, message, e.to_string())
    }
}

/// The credential server's own token, presented or not.
impl From<TokenRefusal> for AppError {
    fn from(e: TokenRefusal) -> AppError {
        match e {
            TokenRefusal::Missing => AppError::Unauthenticated(e.to_string()),
            TokenRefusal::Wrong => AppError::Forbidden(e.to_string()),
            TokenRefusal::Unavailable(detail) => AppError::unavailable(
                Code::TokenUnavailable,
                "the server's authorization token cannot be read; retry later",
                detail,
            ),
        }
    }
}

impl From<WhoamiError> for AppError {
    fn from(e: WhoamiError) -> AppError {
        match e {
            WhoamiError::Credentials(sts) => AppError::unavailable(
                Code::CredentialsUnavailable,
                "AWS credentials are unavailable",
                sts.to_string(),
            ),
            WhoamiError::Sts(detail) => AppError::unavailable(
                Code::StsUnavailable,
                "STS GetCallerIdentity failed; retry later",
                detail,
            ),
            WhoamiError::Identity(e) => AppError::unavailable(
                Code::IdentityUnavailable,
                "the Google identity is unavailable",
                e.to_string(),
            ),
        }
    }
}

impl From<BodyError> for AppError {
    fn from(e: BodyError) -> AppError {
        let message = e.to_string();
        match e {
            BodyError::Unreadable(_) => AppError::bad_request(Code::UnreadableBody, message),
            BodyError::OverLimit { .. } => AppError::PayloadTooLarge(message),
            BodyError::NotJson { .. } => AppError::bad_request(Code::InvalidJson, message),
        }
    }
}

impl From<MessageError> for AppError {
    fn from(e: MessageError) -> AppError {
        let message = e.to_string();
        let code = match e {
            MessageError::NotEnvelope(_) => Code::InvalidJson,
            MessageError::AttributesOverLimits(_) => Code::InvalidAttributes,
            MessageError::InvalidBase64 => Code::InvalidBase64,
            MessageError::NoData => Code::InvalidMessage,
            MessageError::UnnamedObject => Code::InvalidNotification,
            MessageError::UnknownEventType(_) => Code::UnknownEventType,
        };
        AppError::bad_request(code, message)
    }
}

impl From<CloudEventError> for AppError {
    fn from(e: CloudEventError) -> AppError {
        let message = e.to_string();
        let code = match e {
            CloudEventError::Missing(_) | CloudEventError::UnsupportedVersion(_) => {
                Code::InvalidCloudevent
            }
            CloudEventError::InvalidBase64 => Code::InvalidBase64,
            CloudEventError::DataNotJson(_) => Code::InvalidJson,
            CloudEventError::NotStorageObject(_)
            | CloudEventError::UnnamedObject
            | CloudEventError::NotMessage(_) => Code::InvalidEvent,
            CloudEventError::UnknownType(_) => Code::UnknownEventType,
        };
        AppError::bad_request(code, message)
    }
}

impl From<ApiRequestError> for AppError {
    fn from(e: ApiRequestError) -> AppError {
        let message = e.to_string();
        match e {
            ApiRequestError::OverMaxObject { .. } => AppError::PayloadTooLarge(message),
            ApiRequestError::UnsupportedIfNoneMatch => {
                AppError::bad_request(Code::InvalidPrecondition, message)
            }
            ApiRequestError::ContentLengthNotANumber => {
                AppError::bad_request(Code::InvalidContentLength, message)
            }
            ApiRequestError::MetadataNotAscii => {
                AppError::bad_request(Code::InvalidMetadata, message)
            }
            ApiRequestError::KeyNotUtf8 => AppError::bad_request(Code::InvalidKey, message),
            ApiRequestError::InvalidLimit
            | ApiRequestError::PresignMethod(_)
            | ApiRequestError::ExpiresInOutOfRange
            | ApiRequestError::BadQuery(_) => AppError::bad_request(Code::InvalidArgument, message),
            ApiRequestError::SyncWithoutBucket => AppError::bad_request(Code::InvalidJson, message),
        }
    }
}

impl From<RouteError> for AppError {
    fn from(e: RouteError) -> AppError {
        match e {
            RouteError::NoSuchRoute | RouteError::NoSuchRole(_) => {
                AppError::NotFound(e.to_string())
            }
            RouteError::MethodNotAllowed => AppError::MethodNotAllowed,
        }
    }
}

/// 503 with `Retry-After`: the deadline or the shutdown ended the request.
impl From<Interrupted> for AppError {
    fn from(e: Interrupted) -> AppError {
        let message = e.to_string();
        match e {
            Interrupted::Deadline(timeout) => AppError::unavailable(
                Code::Timeout,
                message,
                format!("deadline of {timeout:?} passed"),
            ),
            Interrupted::ShuttingDown => AppError::unavailable(
                Code::ShuttingDown,
                message,
                "the shutdown grace ended with the request in flight",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: AppError) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let r = e.into_response();
        let status = r.status();
        let retry = r.headers().get(header::RETRY_AFTER).cloned();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    /// Every refusal of the HTTP edge: its status, code and message, a
    /// `Retry-After` exactly when it is transient, and a 503's detail in
    /// the log line only.
    #[tokio::test]
    async fn edge_refusals_answer_their_status_code_and_message() {
        let cases: Vec<(AppError, u16, &str, &str)> = vec![
            (
                BodyError::Unreadable("connection reset".into()).into(),
                400,
                "unreadable_body",
                "the request body could not be read: connection reset",
            ),
            (
                BodyError::OverLimit { limit: 1024 }.into(),
                413,
                "payload_too_large",
                "the request body is over 1024 bytes",
            ),
            (
                BodyError::NotJson {
                    what: r#"expected {"source_key","key"}"#,
                    reason: "EOF while parsing a value at line 1 column 0".into(),
                }
                .into(),
                400,
                "invalid_json",
                r#"expected {"source_key","key"}: EOF while parsing a value at line 1 column 0"#,
            ),
            (
                MessageError::NotEnvelope("expected value at line 1 column 1".into()).into(),
                400,
                "invalid_json",
                "not a Pub/Sub push envelope {message:{data,attributes,messageId,publishTime},subscription}: expected value at line 1 column 1",
            ),
            (
                MessageError::AttributesOverLimits("over 100 attributes".into()).into(),
                400,
                "invalid_attributes",
                "over 100 attributes",
            ),
            (
                MessageError::InvalidBase64.into(),
                400,
                "invalid_base64",
                "message.data is not valid base64",
            ),
            (
                MessageError::NoData.into(),
                400,
                "invalid_message",
                "the message has no data: expected a JSON command or a Cloud Storage notification",
            ),
            (
                MessageError::UnnamedObject.into(),
                400,
                "invalid_notification",
                "a Cloud Storage notification names bucketId and objectId",
            ),
            (
                MessageError::UnknownEventType("OBJECT_X".into()).into(),
                400,
                "unknown_event_type",
                r#"unknown Cloud Storage eventType "OBJECT_X"; accepted: OBJECT_FINALIZE, OBJECT_DELETE, OBJECT_ARCHIVE, OBJECT_METADATA_UPDATE"#,
            ),
            (
                CloudEventError::Missing("ce-id").into(),
                400,
                "invalid_cloudevent",
                "not a CloudEvent: ce-id is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)",
            ),
            (
                CloudEventError::UnsupportedVersion("0.3".into()).into(),
                400,
                "invalid_cloudevent",
                r#"unsupported CloudEvents specversion "0.3"; 1.0 is supported"#,
            ),
            (
                CloudEventError::InvalidBase64.into(),
                400,
                "invalid_base64",
                "data_base64 is not valid base64",
            ),
            (
                CloudEventError::DataNotJson("expected value".into()).into(),
                400,
                "invalid_json",
                "the event data is not JSON: expected value",
            ),
            (
                CloudEventError::NotStorageObject("invalid type".into()).into(),
                400,
                "invalid_event",
                "the event data is not a Cloud Storage object: invalid type",
            ),
            (
                CloudEventError::UnnamedObject.into(),
                400,
                "invalid_event",
                "a Cloud Storage event names its bucket and object",
            ),
            (
                CloudEventError::NotMessage("invalid type".into()).into(),
                400,
                "invalid_event",
                "the event data is not a Pub/Sub message: invalid type",
            ),
            (
                CloudEventError::UnknownType("com.example.x".into()).into(),
                400,
                "unknown_event_type",
                r#"unknown CloudEvent type "com.example.x"; accepted: google.cloud.pubsub.topic.v1.messagePublished, google.cloud.storage.object.v1.finalized, google.cloud.storage.object.v1.deleted, google.cloud.storage.object.v1.archived, google.cloud.storage.object.v1.metadataUpdated"#,
            ),
            (
                ApiRequestError::OverMaxObject { len: 11, max: 10 }.into(),
                413,
                "payload_too_large",
                "11 bytes is over the largest object of 10 bytes (MAX_OBJECT_BYTES)",
            ),
            (
                ApiRequestError::UnsupportedIfNoneMatch.into(),
                400,
                "invalid_precondition",
                "only If-None-Match: * is supported",
            ),
            (
                ApiRequestError::ContentLengthNotANumber.into(),
                400,
                "invalid_content_length",
                "Content-Length is not a number",
            ),
            (
                ApiRequestError::MetadataNotAscii.into(),
                400,
                "invalid_metadata",
                "metadata values must be printable ASCII",
            ),
            (
                ApiRequestError::InvalidLimit.into(),
                400,
                "invalid_argument",
                "limit must be a number from 1 to 1000",
            ),
            (
                ApiRequestError::PresignMethod("POST".into()).into(),
                400,
                "invalid_argument",
                r#"method "POST" is not GET or PUT"#,
            ),
            (
                ApiRequestError::ExpiresInOutOfRange.into(),
                400,
                "invalid_argument",
                "expires_in must be at least 1 second",
            ),
            (
                ApiRequestError::SyncWithoutBucket.into(),
                400,
                "invalid_json",
                r#"missing field `bucket`; expected {"bucket","prefix"?,"delete"?}"#,
            ),
            (
                ApiRequestError::KeyNotUtf8.into(),
                400,
                "invalid_key",
                "the key in the path is not UTF-8 once percent-decoded",
            ),
            (
                ApiRequestError::BadQuery("duplicate field `prefix`".into()).into(),
                400,
                "invalid_argument",
                "query string: duplicate field `prefix`",
            ),
            (
                RouteError::NoSuchRoute.into(),
                404,
                "not_found",
                "no such route",
            ),
            (
                RouteError::MethodNotAllowed.into(),
                405,
                "method_not_allowed",
                "method not allowed",
            ),
            (
                RouteError::NoSuchRole("reader".into()).into(),
                404,
                "not_found",
                r#"no role named "reader" in AWS_ROLES"#,
            ),
            (
                Interrupted::Deadline(Duration::from_secs(2)).into(),
                503,
                "timeout",
                "the request took too long; retry later",
            ),
            (
                Interrupted::ShuttingDown.into(),
                503,
                "shutting_down",
                "the service is shutting down; retry later",
            ),
        ];
        for (e, status, code, message) in cases {
            let shown = format!("{e:?}");
            let (s, retry, b) = body(e).await;
            assert_eq!(s.as_u16(), status, "{shown}");
            assert_eq!(b["error"]["code"], code, "{shown}");
            assert_eq!(b["error"]["message"], message, "{shown}");
            assert_eq!(b.as_object().map(|o| o.len()), Some(1), "{shown}: {b}");
            assert_eq!(retry.is_some(), status == 503, "{shown}");
        }

        let deadline = AppError::from(Interrupted::Deadline(Duration::from_secs(2)));
        assert_eq!(
            deadline.message_with_detail(),
            "the request took too long; retry later: deadline of 2s passed"
        );
        let (_, retry, b) = body(deadline).await;
        assert_eq!(retry.unwrap(), "10");
        assert!(!b.to_string().contains("deadline of"), "{b}");
        assert_eq!(
            AppError::from(Interrupted::ShuttingDown).message_with_detail(),
            "the service is shutting down; retry later: the shutdown grace ended with the request in flight"
        );
        assert_eq!(
            AppError::from(RouteError::NoSuchRoute).message_with_detail(),
            "no such route"
        );
    }

    #[tokio::test]
    async fn status_table() {
        let (s, retry, b) = body(AppError::bad_request(Code::InvalidKey, "bad key")).await;
        assert_eq!(s, 400);
        assert!(retry.is_none());
        assert_eq!(b["error"]["code"], "invalid_key");
        assert_eq!(b["error"]["message"], "bad key");

        let (s, retry, b) = body(AppError::unavailable(
            Code::CredentialsUnavailable,
            "AWS credentials are unavailable",
            "token aud=x",
        ))
        .await;
        assert_eq!(s, 503);
        assert_eq!(retry.unwrap(), "10");
        assert!(!b.to_string().contains("aud=x"));

        let (s, retry, _) = body(AppError::Throttled("slow down".into())).await;
        assert_eq!(s, 429);
        assert!(retry.is_some());

        let (s, retry, b) =
            body(StorageError::Busy("budget of 64 bytes spent after 10s".into()).into()).await;
        assert_eq!(s, 503);
        assert_eq!(retry.unwrap(), "10");
        assert_eq!(b["error"]["code"], "buffer_budget_exhausted");
        assert!(!b.to_string().contains("64 bytes"));

        let (s, _, b) = body(AppError::Internal("secret detail at src/x.rs".into())).await;
        assert_eq!(s, 500);
        assert_eq!(b["error"]["message"], "internal error");
        assert!(!b.to_string().contains("secret"));
    }
}
