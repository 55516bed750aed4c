//! A small in-memory S3 for unit tests: path-style `/{bucket}/{key}`
//! PutObject (with `If-None-Match: *` and `If-Match`), GetObject (with
//! `Range`), HeadObject, DeleteObject (with `If-Match`), CopyObject (with
//! `x-amz-copy-source-if-match` and the metadata directive) and
//! ListObjectsV2, answering S3's XML errors. It checks no signature and
//! keeps no versions. Faults are scripted: [`S3Fake::fail_next`] makes the
//! next request answer an error of one's choosing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// An object the fake holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeObject {
    /// The bytes.
    pub body: Vec<u8>,
    /// The ETag, quoted as S3 gives it.
    pub etag: String,
    /// `Content-Type`, when one was given.
    pub content_type: Option<String>,
    /// User metadata, names lower-case without `x-amz-meta-`.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Default)]
struct State {
    objects: Mutex<BTreeMap<(String, String), FakeObject>>,
    faults: Mutex<VecDeque<(u16, String)>>,
    requests: Mutex<Vec<String>>,
    etags: AtomicU64,
}

/// The running fake; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct S3Fake {
    state: Arc<State>,
    url: String,
    _server: Arc<Stop>,
}

/// Aborts the server task when dropped.
struct Stop(tokio::task::JoinHandle<()>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl S3Fake {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start() -> S3Fake {
        let state = Arc::new(State::default());
        let s = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move { answer(&s, &method, &uri, &headers, body) }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        S3Fake {
            state,
            url: format!("http://{addr}"),
            _server: Arc::new(Stop(task)),
        }
    }

    /// The endpoint URL (path-style addressing).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The next request answers `status` with the S3 error `code` (an
    /// empty body when `code` is empty, as for HEAD).
    pub fn fail_next(&self, status: u16, code: &str) {
        lock(&self.state.faults).push_back((status, code.to_owned()));
    }

    /// The object at `bucket`/`key`, if any.
    pub fn object(&self, bucket: &str, key: &str) -> Option<FakeObject> {
        lock(&self.state.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Puts an object in place, as another writer would.
    pub fn insert(&self, bucket: &str, key: &str, body: &[u8], metadata: &[(&str, &str)]) {
        let etag = next_etag(&self.state);
        lock(&self.state.objects).insert(
            (bucket.to_owned(), key.to_owned()),
            FakeObject {
                body: body.to_vec(),
                etag,
                content_type: None,
                metadata: metadata
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            },
        );
    }

    /// Keys held in `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        lock(&self.state.objects)
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state.requests).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn next_etag(state: &State) -> String {
    format!(
        "\"etag-{}\"",
        state.etags.fetch_add(1, Ordering::SeqCst) + 1
    )
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code.is_empty() {
        return status.into_response();
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>fake</RequestId></Error>"
    );
    (status, [("content-type", "application/xml")], xml).into_response()
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    // Path segments: `+` is a plus there, not a space.
    decode(&s.replace('+', "%2B"))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn object_headers(headers: &HeaderMap) -> (Option<String>, BTreeMap<String, String>) {
    let metadata = headers
        .iter()
        .filter_map(|(n, v)| {
            let name = n.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_owned(), v.to_str().ok()?.to_owned()))
        })
        .collect();
    (header(headers, "content-type").map(str::to_owned), metadata)
}

fn answer(state: &State, method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    lock(&state.requests).push(format!("{method} {uri}"));
    if let Some((status, code)) = lock(&state.faults).pop_front() {
        let code = if *method == Method::HEAD { "" } else { &code };
        return error(status, code, "a scripted fault");
    }
    let path = uri.path().trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_owned(), percent_decode(k)),
        None => (path.to_owned(), String::new()),
    };
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    if key.is_empty() {
        return match *method {
            Method::GET if query.get("list-type").map(String::as_str) == Some("2") => {
                list(state, &bucket, &query)
            }
            _ => error(501, "NotImplemented", "only ListObjectsV2 on a bucket"),
        };
    }
    let id = (bucket.clone(), key.clone());
    let current = lock(&state.objects).get(&id).cloned();
    match *method {
        Method::PUT if headers.contains_key("x-amz-copy-source") => {
            copy(state, id, headers, current.as_ref())
        }
        Method::PUT => {
            if header(headers, "if-none-match") == Some("*") && current.is_some() {
                return error(412, "PreconditionFailed", "the object exists");
            }
            if let Some(want) = header(headers, "if-match") {
                match &current {
                    None => return error(404, "NoSuchKey", "no such key"),
                    Some(o) if o.etag != want => {
                        return error(412, "PreconditionFailed", "the ETag differs")
                    }
                    Some(_) => {}
                }
            }
            let (content_type, metadata) = object_headers(headers);
            let etag = next_etag(state);
            lock(&state.objects).insert(
                id,
                FakeObject {
                    body: body.to_vec(),
                    etag: etag.clone(),
                    content_type,
                    metadata,
                },
            );
            (StatusCode::OK, [("etag", etag)]).into_response()
        }
        Method::GET | Method::HEAD => {
            let Some(o) = current else {
                let code = if *method == Method::HEAD {
                    ""
                } else {
                    "NoSuchKey"
                };
                return error(404, code, "The specified key does not exist.");
            };
            read(method, headers, &o)
        }
        Method::DELETE => {
            if let (Some(want), Some(o)) = (header(headers, "if-match"), &current) {
                if o.etag != want {
                    return error(412, "PreconditionFailed", "the ETag differs");
                }
            }
            lock(&state.objects).remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => error(501, "NotImplemented", "not in the fake"),
    }
}

fn read(method: &Method, headers: &HeaderMap, o: &FakeObject) -> Response {
    let total = o.body.len();
    let mut status = StatusCode::OK;
    let mut bytes = &o.body[..];
    let mut content_range = None;
    if let Some(range) = header(headers, "range").and_then(|r| r.strip_prefix("bytes=")) {
        let (first, last) = range.split_once('-').unwrap_or((range, ""));
        let (start, end) = match (first.parse::<usize>().ok(), last.parse::<usize>().ok()) {
            (Some(s), Some(e)) => (s, e.min(total.saturating_sub(1))),
            (Some(s), None) => (s, total.saturating_sub(1)),
            (None, Some(n)) => (total.saturating_sub(n), total.saturating_sub(1)),
            (None, None) => return error(400, "InvalidArgument", "bad range"),
        };
        if start >= total || start > end {
            return error(
                416,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
        }
        bytes = &o.body[start..=end];
        status = StatusCode::PARTIAL_CONTENT;
        content_range = Some(format!("bytes {start}-{end}/{total}"));
    }
    let mut resp = if *method == Method::HEAD {
        status.into_response()
    } else {
        (status, bytes.to_vec()).into_response()
    };
    let h = resp.headers_mut();
    let mut set = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            h.insert(n, v);
        }
    };
    set("etag", &o.etag);
    set("content-length", &bytes.len().to_string());
    set("last-modified", "Wed, 01 Jan 2025 00:00:00 GMT");
    if let Some(ct) = &o.content_type {
        set("content-type", ct);
    }
    if let Some(cr) = &content_range {
        set("content-range", cr);
    }
    for (k, v) in &o.metadata {
        set(&format!("x-amz-meta-{k}"), v);
    }
    resp
}

fn copy(
    state: &State,
    dest: (String, String),
    headers: &HeaderMap,
    _current: Option<&FakeObject>,
) -> Response {
    let source = header(headers, "x-amz-copy-source").unwrap_or("");
    let source = percent_decode(source.trim_start_matches('/'));
    let Some((sb, sk)) = source.split_once('/') else {
        return error(400, "InvalidArgument", "bad copy source");
    };
    let Some(src) = lock(&state.objects)
        .get(&(sb.to_owned(), sk.to_owned()))
        .cloned()
    else {
        return error(404, "NoSuchKey", "no such source key");
    };
    if let Some(want) = header(headers, "x-amz-copy-source-if-match") {
        if src.etag != want {
            return error(412, "PreconditionFailed", "the source ETag differs");
        }
    }
    let (content_type, metadata) = if header(headers, "x-amz-metadata-directive") == Some("REPLACE")
    {
        object_headers(headers)
    } else {
        (src.content_type.clone(), src.metadata.clone())
    };
    let etag = next_etag(state);
    lock(&state.objects).insert(
        dest,
        FakeObject {
            body: src.body,
            etag: etag.clone(),
            content_type,
            metadata,
        },
    );
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CopyObjectResult><ETag>{}</ETag>\
         <LastModified>2025-01-01T00:00:00.000Z</LastModified></CopyObjectResult>",
        etag.replace('"', "&quot;")
    );
    (StatusCode::OK, [("content-type", "application/xml")], xml).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn list(state: &State, bucket: &str, query: &BTreeMap<String, String>) -> Response {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let max: usize = query
        .get("max-keys")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000);
    let after = query.get("continuation-token").cloned();
    if after.as_deref().is_some_and(|t| !t.starts_with("after:")) {
        return error(
            400,
            "InvalidArgument",
            "The continuation token provided is incorrect",
        );
    }
    let after = after.map(|t| t.trim_start_matches("after:").to_owned());
    let all: Vec<(String, FakeObject)> = lock(&state.objects)
        .iter()
        .filter(|((b, k), _)| b == bucket && k.starts_with(&prefix))
        .filter(|((_, k), _)| after.as_ref().is_none_or(|a| k > a))
        .map(|((_, k), o)| (k.clone(), o.clone()))
        .collect();
    let page = &all[..all.len().min(max)];
    let truncated = all.len() > page.len();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>{}</Name>\
         <Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys>\
         <IsTruncated>{truncated}</IsTruncated>",
        escape(bucket),
        escape(&prefix),
        page.len()
    );
    for (k, o) in page {
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>2025-01-01T00:00:00.000Z</LastModified>\
             <ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            escape(k),
            escape(&o.etag),
            o.body.len()
        ));
    }
    if truncated {
        if let Some((last, _)) = page.last() {
            xml.push_str(&format!(
                "<NextContinuationToken>after:{}</NextContinuationToken>",
                escape(last)
            ));
        }
    }
    xml.push_str("</ListBucketResult>");
    (StatusCode::OK, [("content-type", "application/xml")], xml).into_response()
}
