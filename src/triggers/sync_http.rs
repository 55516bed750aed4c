//! `POST /v1/sync`: one page of a sync (the JSON of the `sync` command
//! without `op`), answered 202 `{"published":N,…}` once the page's commands
//! are published.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::error::AppError;
use crate::state::AppState;
use crate::sync::SyncRequest;

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
    let req: SyncRequest = json_body(
        &bytes,
        r#"expected {"bucket","prefix"?,"delete"?,"page_token"?}"#,
    )?;
    let out = crate::sync::run_page(&state.replicator, &req).await?;
    Ok((StatusCode::ACCEPTED, Json(out.to_json())))
}
