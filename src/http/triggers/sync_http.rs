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
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::http::edge::ApiRequestError;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::wire::{Delivery, Op, SyncCommand, WireError};

use super::{json_body, read_body_within, SMALL_BODY_COST, SMALL_BODY_LIMIT};

/// The body of `POST /v1/sync`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncBody {
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    delete: bool,
    #[serde(default, rename = "op")]
    _op: Option<IgnoredAny>,
    #[serde(default)]
    page_token: Option<IgnoredAny>,
}

/// `POST /v1/sync`.
pub(crate) async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, AppError> {
    state.doors.allow(Op::Sync)?;
    let limit = SMALL_BODY_LIMIT.min(state.config.limits.max_body_bytes);
    let (bytes, _held) =
        read_body_within(&headers, body, limit, SMALL_BODY_COST, &state.budget).await?;
    // The body is the command without its op, read straight into its
    // fields; an `op` in it is ignored, a `page_token` refused as at every
    // outside door.
    let b: SyncBody = json_body(&bytes, r#"expected {"bucket","prefix"?,"delete"?}"#)?;
    if b.page_token.is_some() {
        return Err(WireError::NotAllowed(
            "op \"sync\" with a page_token is a task of the service's own, accepted only from its tasks subscription at /tasks".into(),
        )
        .into());
    }
    let bucket = b.bucket.ok_or(ApiRequestError::SyncWithoutBucket)?;
    let cmd = SyncCommand {
        bucket,
        prefix: b.prefix,
        delete: b.delete,
        ..SyncCommand::default()
    };
    state.doors.allow_sync_delete(cmd.delete)?;
    let out =
        crate::replication::sync::start(&state.replicator, &cmd, &Delivery::default()).await?;
    Ok((StatusCode::ACCEPTED, Json(out.to_json())))
}
