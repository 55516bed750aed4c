//! The HTTP surface: Pub/Sub push ([`pubsub`]), Eventarc CloudEvents
//! ([`cloudevents`]) and the `/v1` API ([`http_api`], [`sync_http`]).
//! Pub/Sub push and CloudEvents decode a request into a
//! [`crate::wire::OutsideCommand`] or [`crate::wire::Task`] and hand it to
//! [`crate::command::execute`] or [`crate::command::execute_task`];
//! the `/v1` API calls [`crate::storage::Storage`] (and `/v1/sync` the sync)
//! directly, not through `Command`. Errors become statuses through
//! [`crate::error::AppError`]: 2xx acks, anything else redelivers.

pub mod cloudevents;
pub(crate) mod http_api;
pub mod pubsub;
pub(crate) mod sync_http;

/// Body limit of `POST /v1/copy` and `POST /v1/presign`: a few keys.
pub(crate) const SMALL_BODY_LIMIT: usize = 64 * 1024;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::budget::{BufferBudget, Reservation};
use crate::error::AppError;

/// Reads a whole body of at most `limit` bytes; over it answers 413.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, AppError> {
    let too_large = || too_large(limit);
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(AppError::bad_request(
            "unreadable_body",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Reads a whole body of at most `limit` bytes, first reserving from
/// `budget` the bytes it will hold (its `Content-Length`, else `limit`): 413
/// over the limit, 503 when the budget stays spent. The reservation is
/// returned with the bytes; hold it while they (or copies) are alive.
pub(crate) async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: &BufferBudget,
) -> Result<(Bytes, Reservation), AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    let held = budget.reserve(declared.unwrap_or(limit as u64)).await?;
    let bytes = read_body(headers, body, limit).await?;
    Ok((bytes, held))
}

fn too_large(limit: usize) -> AppError {
    AppError::PayloadTooLarge(format!("the request body is over {limit} bytes"))
}

/// Parses a JSON body into `T`, answering 400 `invalid_json` otherwise.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::bad_request("invalid_json", format!("{what}: {e}")))
}
