//! The HTTP surface: Pub/Sub push ([`pubsub`]), Eventarc CloudEvents
//! ([`cloudevents`]) and the `/v1` API ([`http_api`], [`sync_http`]).
//! Pub/Sub push and CloudEvents decode a request into a
//! [`crate::wire::OutsideCommand`] or [`crate::wire::Task`] and hand it to
//! [`crate::replication::command::execute`] or [`crate::replication::command::execute_task`];
//! the `/v1` API calls [`crate::aws::s3::Storage`] (and `/v1/sync` the sync)
//! directly, not through `Command`. Errors become statuses through
//! [`crate::http::error::AppError`]: 2xx acks, anything else redelivers.

pub mod cloudevents;
pub(crate) mod http_api;
pub mod pubsub;
pub(crate) mod sync_http;

/// Body limit of `POST /v1/copy`, `POST /v1/presign` and `POST /v1/sync`
/// (below `MAX_BODY_BYTES` when that is smaller): a few keys.
pub(crate) const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// What a `/v1/copy`, `/v1/presign` or `/v1/sync` request costs, in bodies: the body
/// and its contiguous copy while it is read (the keys parsed from it are
/// smaller than it).
pub(crate) const SMALL_BODY_COST: u64 = 2;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::budget::{BudgetError, BufferBudget, Reservation};
use crate::http::edge::BodyError;
use crate::http::error::AppError;
use crate::replication::command::{CommandError, Outcome};

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
        Err(e) => Err(BodyError::Unreadable(e.to_string()).into()),
    }
}

/// How much of a body of unknown length one step of its reservation
/// covers (see [`read_body_within`]).
const CHUNKED_STEP: u64 = 1024 * 1024;

/// Reads a whole body of at most `limit` bytes within `budget`, reserving
/// the request's whole cost: `cost` times the body (the body, what is
/// decoded from it and what is built from that, as the caller counts it).
/// 413 over the limit, 503 when the budget stays spent. The reservation is
/// returned with the bytes; hold it while they (or what is built from them)
/// are alive.
///
/// One reservation, taken before anything is held: a request never waits
/// for the budget while it holds part of it, so requests that each hold
/// some cannot all wait for the rest (hold-and-wait) and time out together.
///
/// - With a `Content-Length`, `cost` times that length is reserved at once
///   (waiting at most the budget's wait).
/// - Without one (a chunked HTTP/1.1 body, an HTTP/2 body without the
///   header), the reservation grows as the body arrives: the first
///   [`CHUNKED_STEP`] of body is reserved by waiting, as above, holding
///   nothing; each further step only if the budget has it now
///   (`try_reserve`), else the request answers 503 at once and gives back
///   all it held. Reserving the most the limit allows instead would make
///   every small chunked body wait for `cost` times the limit.
pub(crate) async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    cost: u64,
    budget: &BufferBudget,
) -> Result<(Bytes, Reservation), AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit as u64 {
            return Err(too_large(limit));
        }
        let held = budget.reserve(len.saturating_mul(cost)).await?;
        let bytes = read_body(headers, body, limit).await?;
        return Ok((bytes, held));
    }
    let step = CHUNKED_STEP.min(limit as u64);
    let mut held = budget.reserve(step.saturating_mul(cost)).await?;
    let mut covered = step;
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0u64;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Unreadable(e.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len() as u64;
        if len > limit as u64 {
            return Err(too_large(limit));
        }
        while len > covered {
            let wanted = (covered + step).saturating_mul(cost);
            if wanted > budget.total() {
                // More than the whole budget: never, on this instance.
                return Err(BudgetError::OverBudget {
                    wanted,
                    total: budget.total(),
                }
                .into());
            }
            let more = budget
                .try_reserve(step.saturating_mul(cost))
                .ok_or_else(|| {
                    AppError::from(BudgetError::Exhausted {
                        wanted,
                        total: budget.total(),
                        waited: Duration::ZERO,
                    })
                })?;
            held.merge(more);
            covered += step;
        }
        chunks.push(data);
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(len as usize);
            for c in chunks.drain(..) {
                all.extend_from_slice(&c);
            }
            all.freeze()
        }
    };
    Ok((bytes, held))
}

fn too_large(limit: usize) -> AppError {
    BodyError::OverLimit { limit }.into()
}

/// Parses a JSON body into `T`; else [`BodyError::NotJson`] saying `what`
/// was expected.
pub(crate) fn json_body<'a, T: serde::Deserialize<'a>>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|e| BodyError::NotJson {
        what,
        reason: e.to_string(),
    })
}

/// Counts what a replication did in `bridge.replication.objects` (a failure
/// by the error code it answers; `replication` says whether the command was
/// one) and turns a failure into its answer.
pub(crate) fn counted(
    replication: bool,
    result: Result<Outcome, CommandError>,
) -> Result<Outcome, AppError> {
    match result {
        Ok(outcome) => {
            if let Some(r) = outcome.replication_result() {
                crate::metrics::replication(r);
            }
            Ok(outcome)
        }
        Err(e) => {
            let e = AppError::from(e);
            if replication {
                crate::metrics::replication_failed(e.code().as_str());
            }
            Err(e)
        }
    }
}
