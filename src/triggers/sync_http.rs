//! `POST /v1/sync`: starts a sync run and handles its first page (the JSON
//! of the `sync` command without `op`), answered 202
//! `{"published":N,"run":…,…}` once the page's tasks are published. A
//! `page_token` (a page of the service's own) answers 403 `op_not_allowed`,
//! as at every outside door.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::error::AppError;
use crate::state::AppState;
use crate::wire::{decode_outside, Delivery, OutsideCommand, WireError};

use super::{json_body, read_body};

/// The largest sync request body.
const SYNC_BODY_LIMIT: usize = 64 * 1024;

/// `POST /v1/sync`.
pub(crate) async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    let bytes = read_body(&headers, body, SYNC_BODY_LIMIT).await?;
    // The body is the command without its op: checked as the command.
    let mut with_op: serde_json::Map<String, serde_json::Value> =
        json_body(&bytes, r#"expected {"bucket","prefix"?,"delete"?}"#)?;
    with_op.insert("op".into(), "sync".into());
    let data = serde_json::to_vec(&with_op).map_err(|e| AppError::Internal(e.to_string()))?;
    let decoded = decode_outside(&data, &state.doors).map_err(|e| match e {
        // The body's fields, as before the op was added.
        WireError::Invalid(m) => AppError::bad_request("invalid_json", m),
        other => other.into(),
    })?;
    let OutsideCommand::Sync(cmd) = decoded else {
        return Err(AppError::Internal(
            "a sync body decoded as another op".into(),
        ));
    };
    let out = crate::sync::start(&state.replicator, &cmd, &Delivery::default()).await?;
    Ok((StatusCode::ACCEPTED, Json(out.to_json())))
}
