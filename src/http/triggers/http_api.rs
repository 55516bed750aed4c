//! The `/v1` API: one object (`PUT·GET·HEAD·DELETE /v1/objects/{key}`),
//! listing, copy, presign, the account's buckets and who this service is.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::aws::s3::{validate_content_type, validate_metadata};
use crate::aws::s3::{BucketInfo, GetResult, ObjectHeaders, ObjectInfo, PresignMethod, PutOptions};
use crate::http::edge::ApiRequestError;
use crate::http::error::AppError;
use crate::http::state::AppState;
use crate::wire::Op;

use super::{json_body, read_body_within, SMALL_BODY_COST, SMALL_BODY_LIMIT};

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|v| !v.is_empty())
}

/// HTTP-date (RFC 7231) from RFC 3339.
fn http_date(rfc3339: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&fmt).ok()
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: Option<&str>) {
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(name, v);
    }
}

fn object_headers(info: &ObjectInfo, out: &mut HeaderMap) {
    let h = &info.headers;
    set(
        out,
        header::CONTENT_TYPE,
        h.content_type
            .as_deref()
            .or(Some("application/octet-stream")),
    );
    set(out, header::CONTENT_ENCODING, h.content_encoding.as_deref());
    set(
        out,
        header::CONTENT_DISPOSITION,
        h.content_disposition.as_deref(),
    );
    set(out, header::CACHE_CONTROL, h.cache_control.as_deref());
    set(out, header::CONTENT_LANGUAGE, h.content_language.as_deref());
    set(out, header::ETAG, info.etag.as_deref());
    set(
        out,
        header::LAST_MODIFIED,
        info.last_modified.as_deref().and_then(http_date).as_deref(),
    );
    set(
        out,
        HeaderName::from_static("x-amz-version-id"),
        info.version_id.as_deref(),
    );
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    for (k, v) in &h.metadata {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            out.insert(name, value);
        }
    }
}

/// The `{key}` of `/v1/objects/{key}`, percent-decoded; a key that is not
/// UTF-8 once decoded is refused as a bad key (400 `invalid_key`), in the
/// service's error body rather than axum's plain text.
pub(crate) struct KeyPath(String);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(key)) => Ok(KeyPath(key)),
            Err(_) => Err(ApiRequestError::KeyNotUtf8.into()),
        }
    }
}

/// `PUT /v1/objects/{key}`: the body streams to S3 (multipart past 64 MiB).
pub(crate) async fn put_object(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    req: axum::extract::Request,
) -> Result<Response, AppError> {
    // The request's own headers, not a copy (the `HeaderMap` extractor
    // clones them).
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    state.doors.allow(Op::Put)?;
    let key = state.storage.key(&key)?;
    // Refused before a byte of the body is read.
    if let Some(len) = header_str(&headers, header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&len| len > state.config.limits.max_object_bytes)
    {
        return Err(ApiRequestError::OverMaxObject {
            len,
            max: state.config.limits.max_object_bytes,
        }
        .into());
    }
    let if_none_match = match header_str(&headers, header::IF_NONE_MATCH).as_deref() {
        None => false,
        Some("*") => true,
        Some(_) => return Err(ApiRequestError::UnsupportedIfNoneMatch.into()),
    };
    let content_length = match header_str(&headers, header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiRequestError::ContentLengthNotANumber)?,
        ),
    };
    let mut metadata = HashMap::new();
    for (name, value) in &headers {
        if let Some(k) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = value
                .to_str()
                .map_err(|_| ApiRequestError::MetadataNotAscii)?;
            metadata.insert(k.to_owned(), v.to_owned());
        }
    }
    let opts = PutOptions {
        headers: ObjectHeaders {
            content_type: validate_content_type(header_str(&headers, header::CONTENT_TYPE))?,
            content_encoding: header_str(&headers, header::CONTENT_ENCODING),
            content_disposition: header_str(&headers, header::CONTENT_DISPOSITION),
            cache_control: header_str(&headers, header::CACHE_CONTROL),
            content_language: header_str(&headers, header::CONTENT_LANGUAGE),
            metadata: validate_metadata(&metadata)?,
        },
        if_none_match,
        if_match: None,
        expected_crc32c: None,
        content_length,
    };
    let source = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
    let result = state.storage.put_stream(&key, source, opts).await?;
    let mut resp = (StatusCode::CREATED, Json(&result)).into_response();
    set(resp.headers_mut(), header::ETAG, result.etag.as_deref());
    Ok(resp)
}

/// `GET /v1/objects/{key}`: streamed, `Range` honoured (206).
pub(crate) async fn get_object(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let key = state.storage.key(&key)?;
    let range = header_str(&headers, header::RANGE);
    let GetResult {
        info,
        content_length,
        content_range,
        body,
    } = state.storage.get(&key, range.as_deref()).await?;
    let status = if content_range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = Response::new(Body::new(body.into_inner()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    object_headers(&info, h);
    set(h, header::CONTENT_RANGE, content_range.as_deref());
    if let Some(len) = content_length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(resp)
}

/// `HEAD /v1/objects/{key}`.
pub(crate) async fn head_object(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
) -> Result<Response, AppError> {
    let key = state.storage.key(&key)?;
    let info = state.storage.head(&key).await?;
    let mut resp = Response::new(Body::empty());
    object_headers(&info, resp.headers_mut());
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    Ok(resp)
}

/// `DELETE /v1/objects/{key}`: 204, also for a missing key.
pub(crate) async fn delete_object(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
) -> Result<StatusCode, AppError> {
    state.doors.allow(Op::Delete)?;
    let key = state.storage.key(&key)?;
    state.storage.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /v1/objects`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/objects?prefix=&limit=&cursor=`.
pub(crate) async fn list_objects(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(q) = q.map_err(|e| ApiRequestError::BadQuery(e.body_text()))?;
    let limit = match q.limit.as_deref().filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(
            l.parse::<i32>()
                .map_err(|_| ApiRequestError::InvalidLimit)?,
        ),
    };
    let page = state
        .storage
        .list(q.prefix.as_deref().unwrap_or(""), limit, q.cursor)
        .await?;
    Ok(Json(page).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyRequest {
    source_key: String,
    key: String,
}

/// `POST /v1/copy` `{source_key,key}` → 201 `{key,etag,version_id}`.
pub(crate) async fn copy(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    state.doors.allow(Op::Copy)?;
    let limit = SMALL_BODY_LIMIT.min(state.config.limits.max_body_bytes);
    let (bytes, _held) =
        read_body_within(&headers, body, limit, SMALL_BODY_COST, &state.budget).await?;
    let req: CopyRequest = json_body(&bytes, "expected {\"source_key\",\"key\"}")?;
    let source = state.storage.key(&req.source_key)?;
    let dest = state.storage.key(&req.key)?;
    let result = state.storage.copy(&source, &dest).await?;
    Ok((StatusCode::CREATED, Json(result)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresignRequest {
    key: String,
    method: Option<String>,
    expires_in: Option<i64>,
}

/// `POST /v1/presign` `{key,method,expires_in}` → `{url,method,expires_at}`.
pub(crate) async fn presign(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let limit = SMALL_BODY_LIMIT.min(state.config.limits.max_body_bytes);
    let (bytes, _held) =
        read_body_within(&headers, body, limit, SMALL_BODY_COST, &state.budget).await?;
    let req: PresignRequest = json_body(
        &bytes,
        "expected {\"key\",\"method\":\"GET\"|\"PUT\",\"expires_in\"}",
    )?;
    let method = match req
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("GET") => PresignMethod::Get,
        Some("PUT") => PresignMethod::Put,
        Some(other) => return Err(ApiRequestError::PresignMethod(other.to_owned()).into()),
    };
    // A URL to upload with is a put by other means.
    if method == PresignMethod::Put {
        state.doors.allow(Op::Put)?;
    }
    let expires_in = match req.expires_in {
        None => 3600,
        // S3's week and the credentials' remaining life cap it (Storage::presign).
        Some(s) if s >= 1 => s as u64,
        Some(_) => return Err(ApiRequestError::ExpiresInOutOfRange.into()),
    };
    let key = state.storage.key(&req.key)?;
    let signed = state
        .storage
        .presign(
            &key,
            method,
            Duration::from_secs(expires_in),
            SystemTime::now(),
        )
        .await?;
    Ok(Json(signed).into_response())
}

/// `GET /v1/buckets`: STS-credentialed ListBuckets.
pub(crate) async fn buckets(State(state): State<AppState>) -> Result<Response, AppError> {
    let buckets = state.storage.list_buckets().await?;
    #[derive(serde::Serialize)]
    struct Buckets {
        buckets: Vec<BucketInfo>,
    }
    Ok(Json(Buckets { buckets }).into_response())
}

/// `GET /v1/whoami`.
pub(crate) async fn whoami(State(state): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(crate::aws::whoami(&state.aws).await?).into_response())
}

#[cfg(test)]
mod tests;
