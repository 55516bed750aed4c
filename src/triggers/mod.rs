//! The HTTP surface: Pub/Sub push ([`pubsub`]), Eventarc CloudEvents
//! ([`cloudevents`]) and the `/v1` API ([`http_api`]). Each decodes a
//! request into a [`crate::command::Command`], hands it on and maps the
//! result to a status: 2xx acks, anything else redelivers.

pub mod cloudevents;
pub mod http_api;
pub mod pubsub;
pub mod sync_http;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::error::AppError;

/// Reads a whole body of at most `limit` bytes; over it answers 413.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, AppError> {
    let too_large = || AppError::PayloadTooLarge(format!("the request body is over {limit} bytes"));
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

/// Parses a JSON body into `T`, answering 400 `invalid_json` otherwise.
pub fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, AppError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AppError::bad_request("invalid_json", format!("{what}: {e}")))
}
