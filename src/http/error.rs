//! [`AppError`]: the one place that knows status codes. Each domain error
//! (storage, keys, buffer budget, source buckets, Cloud Storage,
//! replication, commands, publishing, whoami) has one `From` here that picks
//! its status and snake_case code. Bodies are
//! `{"error":{"code":"snake_case","message":"…"}}`; 5xx bodies are generic
//! and the detail goes to the log; nothing here ever holds a token or key.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::aws::s3::{KeyError, StorageError};
use crate::aws::{StsError, WhoamiError};
use crate::budget::BudgetError;
use crate::google::caller_auth::CallerError;
use crate::google::gcs::GcsError;
use crate::google::publisher::PublishError;
use crate::replication::command::CommandError;
use crate::replication::replicate::ReplicateError;
use crate::source_buckets::BucketRefusal;
use crate::wire::WireError;

/// How long a trigger should wait before redelivering after a transient fault.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Every way a request can fail, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: can never succeed (bad envelope, base64, JSON, op, key, event type).
    #[error("{message}")]
    BadRequest {
        /// snake_case code.
        code: &'static str,
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
        code: &'static str,
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
        code: &'static str,
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
    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        AppError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// 503 with a code; `detail` is logged, not answered.
    pub(crate) fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
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
    pub(crate) fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest { code, .. }
            | AppError::Unavailable { code, .. }
            | AppError::Refused { code, .. } => code,
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::SignatureRemoved => "signature_removed",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::Conflict(_) => "conflict",
            AppError::PreconditionFailed(_) => "precondition_failed",
            AppError::PayloadTooLarge(_) => "payload_too_large",
            AppError::RangeNotSatisfiable(_) => "range_not_satisfiable",
            AppError::Throttled(_) => "throttled",
            AppError::Internal(_) => "internal",
        }
    }

    /// True for 429 and 503: the trigger should redeliver.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, AppError::Throttled(_) | AppError::Unavailable { .. })
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
            AppError::Internal(detail) => tracing::error!(code = self.code(), "{detail}"),
            AppError::Unavailable {
                detail, message, ..
            } => {
                tracing::warn!(code = self.code(), detail = %detail, "{message}")
            }
            AppError::Throttled(m) => tracing::warn!(code = self.code(), "{m}"),
            // A misconfiguration that refuses every caller: loud.
            AppError::SignatureRemoved => tracing::error!(code = self.code(), "{self}"),
            // Client rejections are not errors of this service.
            other => tracing::info!(code = other.code(), "request refused: {other}"),
        }
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.public_message() }
        });
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
    let body = serde_json::json!({
        "status": "not_ready",
        "error": { "code": "not_ready", "message": "not_ready" }
    });
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(RETRY_AFTER.as_secs()),
    );
    r
}

impl From<KeyError> for AppError {
    fn from(e: KeyError) -> AppError {
        AppError::bad_request("invalid_key", e.to_string())
    }
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> AppError {
        match e {
            StorageError::InvalidKey(k) => k.into(),
            StorageError::InvalidArgument(m) => AppError::bad_request("invalid_argument", m),
            StorageError::InvalidMetadata(m) => AppError::bad_request("invalid_metadata", m),
            StorageError::InvalidContentType(m) => AppError::bad_request("invalid_content_type", m),
            StorageError::NotFound(m) => AppError::NotFound(m),
            StorageError::PreconditionFailed(m) => AppError::PreconditionFailed(m),
            StorageError::Conflict(m) => AppError::Conflict(m),
            StorageError::InvalidRange(m) => AppError::RangeNotSatisfiable(m),
            StorageError::Throttled(m) => AppError::Throttled(format!("S3 is throttling: {m}")),
            StorageError::CredentialsUnavailable(sts) => AppError::unavailable(
                "credentials_unavailable",
                "AWS credentials are unavailable; the request can succeed once they are",
                sts.to_string(),
            ),
            StorageError::AccessDenied(m) => AppError::unavailable(
                "s3_access_denied",
                "the AWS role may not do this; the request can succeed once its policy allows it",
                m,
            ),
            StorageError::Unavailable(m) => {
                AppError::unavailable("s3_unavailable", "S3 is unavailable; retry later", m)
            }
            StorageError::IntegrityMismatch(m) => AppError::unavailable(
                "integrity_mismatch",
                "the bytes did not match their checksum; nothing was written",
                m,
            ),
            StorageError::Body(m) => AppError::bad_request(
                "unreadable_body",
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
        "buffer_budget_exhausted",
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
            BucketRefusal::Invalid(m) => AppError::bad_request("invalid_bucket", m),
            BucketRefusal::NotAllowed(m) => AppError::Refused {
                code: "source_bucket_not_allowed",
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
            } => AppError::bad_request("gcs_request_refused", message),
            other => AppError::unavailable(
                "gcs_unavailable",
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
                "certs_unavailable",
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
            ReplicateError::InvalidEvent(m) => AppError::bad_request("invalid_event", m),
            ReplicateError::SourceBucket(e) => e.into(),
            ReplicateError::Storage(e) => e.into(),
            ReplicateError::Gcs(e) => e.into(),
            ReplicateError::NoGeneration(source) => AppError::unavailable(
                "gcs_unavailable",
                "Cloud Storage answered without a generation",
                source,
            ),
            ReplicateError::NotYetVisible(m) => AppError::unavailable(
                "gcs_not_yet_visible",
                "the object generation is not visible in Cloud Storage yet",
                m,
            ),
            ReplicateError::UnreadableCrc(m) => {
                AppError::unavailable("integrity_mismatch", "the object's CRC32C is unreadable", m)
            }
            ReplicateError::CrcMismatch(m) => AppError::unavailable(
                "integrity_mismatch",
                "the object's CRC32C values disagree; nothing was written",
                m,
            ),
            ReplicateError::SourceRead(m) => AppError::unavailable(
                "gcs_unavailable",
                "reading from Cloud Storage failed; retry later",
                m,
            ),
            // 503, so the redelivery decides again.
            ReplicateError::LostRace(m) => AppError::unavailable(
                "replica_changed",
                "the replica changed while this event was handled; retry later",
                m,
            ),
            ReplicateError::MetadataTooLarge(m) => AppError::bad_request("metadata_too_large", m),
            ReplicateError::InvalidPartTask => AppError::bad_request("invalid_command", message),
            ReplicateError::InvalidPageToken => {
                AppError::bad_request("invalid_page_token", message)
            }
            ReplicateError::Publish(e) => e.into(),
            ReplicateError::Budget(e) => e.into(),
            ReplicateError::PageInProgress(m) => AppError::unavailable(
                "sync_page_in_progress",
                "another delivery of this sync page is at work; retry later",
                m,
            ),
            ReplicateError::UploadStarting(m) => AppError::unavailable(
                "upload_starting",
                "another delivery is starting this object's upload; retry later",
                m,
            ),
            ReplicateError::PartsRefused { code, message } => AppError::bad_request(code, message),
            ReplicateError::Unexpected(_) => AppError::Internal(message),
        }
    }
}

impl From<WireError> for AppError {
    fn from(e: WireError) -> AppError {
        let message = e.to_string();
        match e {
            WireError::NotJson(_) => AppError::bad_request("invalid_json", message),
            WireError::Invalid(_) => AppError::bad_request("invalid_command", message),
            WireError::UnknownOp(_) => AppError::bad_request("unknown_op", message),
            WireError::InvalidBase64 => AppError::bad_request("invalid_base64", message),
            WireError::InvalidMetadata(_) => AppError::bad_request("invalid_metadata", message),
            WireError::NotAllowed(_) => AppError::Refused {
                code: "op_not_allowed",
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
                "tasks_not_configured",
                "this work needs the service's tasks topic (TASKS_TOPIC); retry once it is set",
                e.to_string(),
            ),
            // A missing topic or a refused publish is fixable by configuration
            // or a role binding: keep the message for redelivery.
            other => AppError::unavailable(
                "publish_failed",
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
        AppError::unavailable("credentials_unavailable", message, e.to_string())
    }
}

impl From<WhoamiError> for AppError {
    fn from(e: WhoamiError) -> AppError {
        match e {
            WhoamiError::Credentials(sts) => AppError::unavailable(
                "credentials_unavailable",
                "AWS credentials are unavailable",
                sts.to_string(),
            ),
            WhoamiError::Sts(detail) => AppError::unavailable(
                "sts_unavailable",
                "STS GetCallerIdentity failed; retry later",
                detail,
            ),
            WhoamiError::Identity(e) => AppError::unavailable(
                "identity_unavailable",
                "the Google identity is unavailable",
                e.to_string(),
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

    #[tokio::test]
    async fn status_table() {
        let (s, retry, b) = body(AppError::bad_request("invalid_key", "bad key")).await;
        assert_eq!(s, 400);
        assert!(retry.is_none());
        assert_eq!(b["error"]["code"], "invalid_key");
        assert_eq!(b["error"]["message"], "bad key");

        let (s, retry, b) = body(AppError::unavailable(
            "credentials_unavailable",
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
