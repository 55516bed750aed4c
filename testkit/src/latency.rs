//! Fast in-memory S3 and Cloud Storage stand-ins that answer every request
//! after a fixed delay, for scaling benchmarks: the delay plays the
//! distance to the real services, and each request costs the stand-in a few
//! microseconds, so the stand-ins are never the limit (moto and
//! fake-gcs-server answer a few hundred requests per second).
//!
//! [`LatencyS3`] speaks S3's REST API, path-style (`/{bucket}/{key}`):
//! ListObjectsV2, HeadObject, GetObject, PutObject (with `If-None-Match: *`
//! and `If-Match: ETag`, 412 on a lost condition) and DeleteObject. It checks
//! no signature; a sent `x-amz-checksum-crc32c` is verified (400 `BadDigest`
//! on a mismatch), stored and echoed, like the other system headers and
//! `x-amz-meta-*`. Any other request answers 501 `NotImplemented`.
//!
//! [`LatencyGcs`] speaks the Cloud Storage JSON API: bucket insert, media
//! and multipart uploads, objects list (`prefix`, `startOffset`,
//! `maxResults`, `pageToken`, and `fields` naming the items' fields), object
//! get (the resource, or the bytes with `alt=media`; `generation` and
//! `ifGenerationMatch` honoured, 404 and 412 as Cloud Storage answers them)
//! and delete. One generation per object is kept.
//!
//! Both count requests per operation ([`LatencyS3::counts`],
//! [`LatencyGcs::counts`]), so a benchmark can report requests per object.
//! The delay is [`latency_from_env`] (`BENCH_LATENCY_MS`, 20 ms by default)
//! or any given one; it runs on a timer after the request has been read,
//! without holding a thread.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;

use crate::server::{self, BoxFuture, DropConnection, Handler, ServerGuard};

/// The delay named by `BENCH_LATENCY_MS`, 20 ms when unset or unreadable.
pub fn latency_from_env() -> Duration {
    let ms = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    Duration::from_millis(ms)
}

/// Requests counted per operation name.
#[derive(Debug, Default)]
struct Counts(Mutex<BTreeMap<&'static str, u64>>);

impl Counts {
    fn add(&self, op: &'static str) {
        *self.0.lock().unwrap().entry(op).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect()
    }
}

fn now_secs_millis() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_millis())
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic
/// Gregorian).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-12-07T02:45:00.123Z`.
fn rfc3339(secs: i64, millis: u32) -> String {
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `Mon, 07 Dec 2026 02:45:00 GMT`.
fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn crc32c_b64(data: &[u8]) -> String {
    STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// A quoted 32-hex-digit ETag from the bytes (FNV-1a, not an MD5).
fn etag_of(data: &[u8], salt: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}{:016x}\"", h.rotate_left(29) ^ data.len() as u64)
}

fn query(req_query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(req_query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Binds 127.0.0.1:0 and serves `handle` after reading each request whole,
/// answering after `latency`.
async fn serve<S, F>(state: Arc<S>, latency: Duration, handle: F) -> (String, ServerGuard)
where
    S: Send + Sync + 'static,
    F: Fn(&S, Method, &str, Option<&str>, &HeaderMap, Bytes) -> Response<Body>
        + Send
        + Sync
        + 'static,
{
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    let handle = Arc::new(handle);
    let handler: Handler = Arc::new(move |req: Request<Incoming>| {
        let state = state.clone();
        let handle = handle.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Err(DropConnection),
            };
            let resp = handle(
                &state,
                parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &parts.headers,
                body,
            );
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            Ok(resp)
        }) as BoxFuture<_>
    });
    (url, server::spawn(listener, handler))
}

// --- S3 -------------------------------------------------------------------------------

/// The system headers stored with an S3 object and answered on reads.
const S3_STORED: [&str; 5] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "cache-control",
    "content-language",
];

#[derive(Debug, Clone)]
struct S3Object {
    data: Bytes,
    etag: String,
    modified: i64,
    /// Stored headers: system ones, `x-amz-meta-*`, `x-amz-checksum-*`.
    headers: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct S3State {
    objects: Mutex<BTreeMap<(String, String), S3Object>>,
    counts: Counts,
    puts: AtomicI64,
}

/// The in-memory S3 stand-in; stops when dropped.
#[derive(Debug)]
pub struct LatencyS3 {
    url: String,
    state: Arc<S3State>,
    _guard: ServerGuard,
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message><RequestId>latency-s3</RequestId></Error>",
        xml_escape(message)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from(body))
        .expect("a valid response")
}

fn no_body(status: StatusCode) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("a valid response")
}

impl LatencyS3 {
    /// Listens on 127.0.0.1 and answers every request after `latency`.
    pub async fn start(latency: Duration) -> LatencyS3 {
        let state = Arc::new(S3State::default());
        let (url, guard) = serve(state.clone(), latency, s3_handle).await;
        LatencyS3 {
            url,
            state,
            _guard: guard,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL_S3` (path-style).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Requests so far per operation (`ListObjectsV2`, `HeadObject`,
    /// `GetObject`, `PutObject`, `DeleteObject`, `Unsupported`), and
    /// `PutObject412` for writes refused by their condition.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.counts.snapshot()
    }

    /// Keys of `bucket` under `prefix`.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let objects = self.state.objects.lock().unwrap();
        objects
            .range((bucket.to_owned(), prefix.to_owned())..)
            .take_while(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), _)| k.clone())
            .collect()
    }

    /// The bytes of an object.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let objects = self.state.objects.lock().unwrap();
        objects
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|o| o.data.clone())
    }
}

fn s3_handle(
    st: &S3State,
    method: Method,
    path: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let path = path.trim_start_matches('/');
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (percent_decode(b), percent_decode(k)),
        None => (percent_decode(path), String::new()),
    };
    let mut q = query(raw_query);
    // The SDK names the operation in the query (`?x-id=PutObject`).
    q.remove("x-id");
    if bucket.is_empty() {
        st.counts.add("Unsupported");
        return s3_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "path-style requests only",
        );
    }
    if key.is_empty() {
        if method == Method::GET && q.get("list-type").map(String::as_str) == Some("2") {
            st.counts.add("ListObjectsV2");
            return s3_list(st, &bucket, &q);
        }
        st.counts.add("Unsupported");
        return s3_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "bucket operations other than ListObjectsV2 are not supported",
        );
    }
    let id = (bucket, key);
    let hv = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    match method {
        Method::PUT if hv("x-amz-copy-source").is_none() && q.is_empty() => {
            st.counts.add("PutObject");
            if hv("content-encoding").is_some_and(|v| v.contains("aws-chunked")) {
                return s3_error(
                    StatusCode::NOT_IMPLEMENTED,
                    "NotImplemented",
                    "aws-chunked bodies are not supported",
                );
            }
            if let Some(sent) = hv("x-amz-checksum-crc32c") {
                if sent != crc32c_b64(&body) {
                    return s3_error(
                        StatusCode::BAD_REQUEST,
                        "BadDigest",
                        "The CRC32C you specified did not match the calculated checksum.",
                    );
                }
            }
            let mut objects = st.objects.lock().unwrap();
            let existing = objects.get(&id);
            if hv("if-none-match") == Some("*") && existing.is_some() {
                drop(objects);
                st.counts.add("PutObject412");
                return s3_error(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold",
                );
            }
            if let Some(want) = hv("if-match") {
                match existing {
                    None => {
                        drop(objects);
                        st.counts.add("PutObject412");
                        return s3_error(
                            StatusCode::NOT_FOUND,
                            "NoSuchKey",
                            "The specified key does not exist.",
                        );
                    }
                    Some(o) if o.etag != want => {
                        drop(objects);
                        st.counts.add("PutObject412");
                        return s3_error(
                            StatusCode::PRECONDITION_FAILED,
                            "PreconditionFailed",
                            "At least one of the pre-conditions you specified did not hold",
                        );
                    }
                    Some(_) => {}
                }
            }
            let n = st.puts.fetch_add(1, Ordering::Relaxed);
            let stored: Vec<(String, String)> = headers
                .iter()
                .filter(|(name, _)| {
                    let n = name.as_str();
                    S3_STORED.contains(&n)
                        || n.starts_with("x-amz-meta-")
                        || n.starts_with("x-amz-checksum-")
                })
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let etag = etag_of(&body, n as u64);
            let mut resp = no_body(StatusCode::OK);
            let h = resp.headers_mut();
            h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
            for (n, v) in stored
                .iter()
                .filter(|(n, _)| n.starts_with("x-amz-checksum-"))
            {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    h.insert(n, v);
                }
            }
            objects.insert(
                id,
                S3Object {
                    data: body,
                    etag,
                    modified: now_secs_millis().0,
                    headers: stored,
                },
            );
            resp
        }
        Method::HEAD | Method::GET if q.is_empty() || q.contains_key("versionId") => {
            let head = method == Method::HEAD;
            st.counts.add(if head { "HeadObject" } else { "GetObject" });
            let objects = st.objects.lock().unwrap();
            let Some(o) = objects.get(&id) else {
                drop(objects);
                return if head {
                    no_body(StatusCode::NOT_FOUND)
                } else {
                    s3_error(
                        StatusCode::NOT_FOUND,
                        "NoSuchKey",
                        "The specified key does not exist.",
                    )
                };
            };
            let o = o.clone();
            drop(objects);
            let mut b = Response::builder()
                .status(StatusCode::OK)
                .header(header::ETAG, &o.etag)
                .header(header::LAST_MODIFIED, http_date(o.modified))
                .header(header::CONTENT_LENGTH, o.data.len())
                .header(header::ACCEPT_RANGES, "bytes");
            if !o.headers.iter().any(|(n, _)| n == "content-type") {
                b = b.header(header::CONTENT_TYPE, "binary/octet-stream");
            }
            for (n, v) in &o.headers {
                b = b.header(n.as_str(), v.as_str());
            }
            let body = if head {
                Body::empty()
            } else {
                Body::from(o.data)
            };
            b.body(body).expect("a valid response")
        }
        Method::DELETE if q.is_empty() => {
            st.counts.add("DeleteObject");
            st.objects.lock().unwrap().remove(&id);
            no_body(StatusCode::NO_CONTENT)
        }
        _ => {
            st.counts.add("Unsupported");
            s3_error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "only ListObjectsV2, HeadObject, GetObject, PutObject and DeleteObject are supported",
            )
        }
    }
}

fn s3_list(st: &S3State, bucket: &str, q: &HashMap<String, String>) -> Response<Body> {
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let max = q
        .get("max-keys")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(1000);
    // The continuation token is the last key of the previous page.
    let after = q
        .get("continuation-token")
        .or_else(|| q.get("start-after"))
        .cloned()
        .unwrap_or_default();
    let url_encoded = q.get("encoding-type").map(String::as_str) == Some("url");
    let objects = st.objects.lock().unwrap();
    let start = (bucket.to_owned(), prefix.clone().max(after.clone()));
    let mut page: Vec<(String, String, usize, i64)> = Vec::new();
    let mut truncated = false;
    for ((b, k), o) in objects.range(start..) {
        if b != bucket || !k.starts_with(&prefix) {
            break;
        }
        if *k <= after {
            continue;
        }
        if page.len() == max {
            truncated = true;
            break;
        }
        page.push((k.clone(), o.etag.clone(), o.data.len(), o.modified));
    }
    drop(objects);
    let enc = |k: &str| {
        if url_encoded {
            url::form_urlencoded::byte_serialize(k.as_bytes())
                .collect::<String>()
                .replace("%2F", "/")
        } else {
            xml_escape(k)
        }
    };
    let mut xml = String::with_capacity(256 + page.len() * 256);
    xml.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    xml.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        xml_escape(bucket),
        enc(&prefix),
        page.len()
    ));
    if url_encoded {
        xml.push_str("<EncodingType>url</EncodingType>");
    }
    for (k, etag, size, modified) in &page {
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            enc(k),
            rfc3339(*modified, 0),
            xml_escape(etag)
        ));
    }
    if truncated {
        if let Some((last, ..)) = page.last() {
            xml.push_str(&format!(
                "<NextContinuationToken>{}</NextContinuationToken>",
                xml_escape(last)
            ));
        }
    }
    xml.push_str("</ListBucketResult>");
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/xml")
        .body(Body::from(xml))
        .expect("a valid response")
}

// --- Cloud Storage ----------------------------------------------------------------------

#[derive(Debug, Clone)]
struct GcsObject {
    data: Bytes,
    generation: i64,
    created: (i64, u32),
    content_type: String,
    /// Other fields of the resource given at upload (contentEncoding,
    /// cacheControl, metadata, ...).
    extra: Map<String, Value>,
}

#[derive(Debug)]
struct GcsState {
    buckets: Mutex<BTreeSet<String>>,
    objects: Mutex<BTreeMap<(String, String), GcsObject>>,
    counts: Counts,
    generation: AtomicI64,
    base: Mutex<String>,
}

/// The in-memory Cloud Storage stand-in; stops when dropped.
#[derive(Debug)]
pub struct LatencyGcs {
    url: String,
    state: Arc<GcsState>,
    _guard: ServerGuard,
}

impl LatencyGcs {
    /// Listens on 127.0.0.1 and answers every request after `latency`.
    pub async fn start(latency: Duration) -> LatencyGcs {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let state = Arc::new(GcsState {
            buckets: Mutex::default(),
            objects: Mutex::default(),
            counts: Counts::default(),
            generation: AtomicI64::new(micros),
            base: Mutex::default(),
        });
        let (url, guard) = serve(state.clone(), latency, gcs_handle).await;
        *state.base.lock().unwrap() = url.clone();
        LatencyGcs {
            url,
            state,
            _guard: guard,
        }
    }

    /// `http://127.0.0.1:PORT`, for `STORAGE_EMULATOR_HOST`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Requests so far per operation (`buckets.insert`, `buckets.get`,
    /// `objects.insert`, `objects.list`, `objects.get`, `objects.media`,
    /// `objects.delete`, `unsupported`), and `objects.media412` for reads
    /// refused by `ifGenerationMatch`.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.counts.snapshot()
    }

    /// Creates a bucket (without a request).
    pub fn create_bucket(&self, bucket: &str) {
        self.state.buckets.lock().unwrap().insert(bucket.to_owned());
    }

    /// Stores an object (without a request, creating its bucket); returns
    /// its generation.
    pub fn insert(&self, bucket: &str, name: &str, data: Bytes, content_type: &str) -> i64 {
        self.create_bucket(bucket);
        gcs_store(&self.state, bucket, name, data, content_type, Map::new())
    }
}

fn gcs_store(
    st: &GcsState,
    bucket: &str,
    name: &str,
    data: Bytes,
    content_type: &str,
    extra: Map<String, Value>,
) -> i64 {
    let generation = st.generation.fetch_add(1, Ordering::Relaxed);
    st.objects.lock().unwrap().insert(
        (bucket.to_owned(), name.to_owned()),
        GcsObject {
            data,
            generation,
            created: now_secs_millis(),
            content_type: content_type.to_owned(),
            extra,
        },
    );
    generation
}

fn gcs_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": {"code": status.as_u16(), "message": message,
            "errors": [{"message": message, "reason": status.canonical_reason().unwrap_or("")}]}}),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(Body::from(v.to_string()))
        .expect("a valid response")
}

fn gcs_resource(base: &str, bucket: &str, name: &str, o: &GcsObject) -> Map<String, Value> {
    let created = rfc3339(o.created.0, o.created.1);
    let mut m = Map::new();
    m.insert("kind".into(), json!("storage#object"));
    m.insert(
        "id".into(),
        json!(format!("{bucket}/{name}/{}", o.generation)),
    );
    m.insert(
        "selfLink".into(),
        json!(format!(
            "{base}/storage/v1/b/{bucket}/o/{}",
            enc_segment(name)
        )),
    );
    m.insert("name".into(), json!(name));
    m.insert("bucket".into(), json!(bucket));
    m.insert("generation".into(), json!(o.generation.to_string()));
    m.insert("metageneration".into(), json!("1"));
    m.insert("contentType".into(), json!(o.content_type));
    m.insert("storageClass".into(), json!("STANDARD"));
    m.insert("size".into(), json!(o.data.len().to_string()));
    m.insert("crc32c".into(), json!(crc32c_b64(&o.data)));
    m.insert("etag".into(), json!(format!("C{}", o.generation)));
    m.insert("timeCreated".into(), json!(created));
    m.insert("updated".into(), json!(created));
    for (k, v) in &o.extra {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    m
}

fn enc_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
}

/// The item fields named by `fields=items(a,b,...),nextPageToken`; `None`
/// for all.
fn item_fields(fields: Option<&String>) -> Option<BTreeSet<String>> {
    let f = fields?;
    let start = f.find("items(")? + "items(".len();
    let end = start + f[start..].find(')')?;
    Some(
        f[start..end]
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect(),
    )
}

fn gcs_handle(
    st: &GcsState,
    method: Method,
    path: &str,
    raw_query: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let q = query(raw_query);
    let base = st.base.lock().unwrap().clone();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.clone(), segs.as_slice()) {
        (Method::POST, ["storage", "v1", "b"]) => {
            st.counts.add("buckets.insert");
            let name = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_owned));
            let Some(name) = name else {
                return gcs_error(StatusCode::BAD_REQUEST, "a bucket needs a name");
            };
            st.buckets.lock().unwrap().insert(name.clone());
            json_response(
                StatusCode::OK,
                &json!({"kind": "storage#bucket", "name": name, "id": name}),
            )
        }
        (Method::GET, ["storage", "v1", "b", bucket]) => {
            st.counts.add("buckets.get");
            let bucket = percent_decode(bucket);
            if st.buckets.lock().unwrap().contains(&bucket) {
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "storage#bucket", "name": bucket, "id": bucket}),
                )
            } else {
                gcs_error(
                    StatusCode::NOT_FOUND,
                    "The specified bucket does not exist.",
                )
            }
        }
        (Method::POST, ["upload", "storage", "v1", "b", bucket, "o"]) => {
            st.counts.add("objects.insert");
            gcs_upload(st, &base, &percent_decode(bucket), &q, headers, body)
        }
        (Method::GET, ["storage", "v1", "b", bucket, "o"]) => {
            st.counts.add("objects.list");
            gcs_list(st, &base, &percent_decode(bucket), &q)
        }
        (Method::GET, ["storage", "v1", "b", bucket, "o", name @ ..]) if !name.is_empty() => {
            let media = q.get("alt").map(String::as_str) == Some("media");
            st.counts.add(if media {
                "objects.media"
            } else {
                "objects.get"
            });
            let (bucket, name) = (percent_decode(bucket), percent_decode(&name.join("/")));
            let o = st
                .objects
                .lock()
                .unwrap()
                .get(&(bucket.clone(), name.clone()))
                .cloned();
            let Some(o) = o else {
                return gcs_error(StatusCode::NOT_FOUND, "No such object.");
            };
            if let Some(g) = q.get("generation") {
                if g.parse::<i64>().ok() != Some(o.generation) {
                    return gcs_error(StatusCode::NOT_FOUND, "No such object.");
                }
            }
            if let Some(g) = q.get("ifGenerationMatch") {
                if g.parse::<i64>().ok() != Some(o.generation) {
                    if media {
                        st.counts.add("objects.media412");
                    }
                    return gcs_error(
                        StatusCode::PRECONDITION_FAILED,
                        "At least one of the pre-conditions you specified did not hold.",
                    );
                }
            }
            if !media {
                return json_response(
                    StatusCode::OK,
                    &Value::Object(gcs_resource(&base, &bucket, &name, &o)),
                );
            }
            let mut b = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &o.content_type)
                .header(header::CONTENT_LENGTH, o.data.len())
                .header("x-goog-generation", o.generation)
                .header("x-goog-metageneration", 1)
                .header("x-goog-hash", format!("crc32c={}", crc32c_b64(&o.data)))
                .header("x-goog-stored-content-length", o.data.len());
            if let Some(enc) = o.extra.get("contentEncoding").and_then(Value::as_str) {
                b = b
                    .header(header::CONTENT_ENCODING, enc)
                    .header("x-goog-stored-content-encoding", enc);
            } else {
                b = b.header("x-goog-stored-content-encoding", "identity");
            }
            b.body(Body::from(o.data)).expect("a valid response")
        }
        (Method::DELETE, ["storage", "v1", "b", bucket, "o", name @ ..]) if !name.is_empty() => {
            st.counts.add("objects.delete");
            let id = (percent_decode(bucket), percent_decode(&name.join("/")));
            match st.objects.lock().unwrap().remove(&id) {
                Some(_) => no_body(StatusCode::NO_CONTENT),
                None => gcs_error(StatusCode::NOT_FOUND, "No such object."),
            }
        }
        _ => {
            st.counts.add("unsupported");
            gcs_error(
                StatusCode::NOT_IMPLEMENTED,
                &format!("{method} {path} is not supported by this stand-in"),
            )
        }
    }
}

fn gcs_upload(
    st: &GcsState,
    base: &str,
    bucket: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let (resource, data, media_type) = match q.get("uploadType").map(String::as_str) {
        Some("media") => (Map::new(), body, content_type),
        Some("multipart") => match split_multipart(&content_type, &body) {
            Some(parts) => parts,
            None => return gcs_error(StatusCode::BAD_REQUEST, "unreadable multipart body"),
        },
        _ => {
            return gcs_error(
                StatusCode::NOT_IMPLEMENTED,
                "uploadType media or multipart only",
            )
        }
    };
    let name = q.get("name").cloned().or_else(|| {
        resource
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return gcs_error(StatusCode::BAD_REQUEST, "an object needs a name");
    };
    let content_type = resource
        .get("contentType")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or(media_type);
    let mut extra = resource;
    for k in [
        "name",
        "bucket",
        "contentType",
        "size",
        "generation",
        "crc32c",
    ] {
        extra.remove(k);
    }
    st.buckets.lock().unwrap().insert(bucket.to_owned());
    gcs_store(st, bucket, &name, data, &content_type, extra);
    let o = st
        .objects
        .lock()
        .unwrap()
        .get(&(bucket.to_owned(), name.clone()))
        .cloned()
        .expect("just stored");
    json_response(
        StatusCode::OK,
        &Value::Object(gcs_resource(base, bucket, &name, &o)),
    )
}

/// The JSON resource, the media bytes and their type from a
/// `multipart/related` upload body.
fn split_multipart(
    content_type: &str,
    body: &Bytes,
) -> Option<(Map<String, Value>, Bytes, String)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let delim = format!("--{boundary}");
    let find = |from: usize, needle: &[u8]| {
        body[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut pos = find(0, delim.as_bytes())? + delim.len();
    loop {
        if body[pos..].starts_with(b"--") {
            break;
        }
        let head_end = find(pos, b"\r\n\r\n")? + 4;
        let head = std::str::from_utf8(&body[pos..head_end]).ok()?.to_owned();
        let next = find(head_end, format!("\r\n{delim}").as_bytes())?;
        parts.push((head, body.slice(head_end..next)));
        pos = next + 2 + delim.len();
    }
    let [(_, meta), (media_head, media)] = <[_; 2]>::try_from(parts).ok()?;
    let meta: Map<String, Value> = serde_json::from_slice(&meta).ok()?;
    let media_type = media_head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    Some((meta, media, media_type))
}

fn gcs_list(
    st: &GcsState,
    base: &str,
    bucket: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    if !st.buckets.lock().unwrap().contains(bucket) {
        return gcs_error(
            StatusCode::NOT_FOUND,
            "The specified bucket does not exist.",
        );
    }
    let prefix = q.get("prefix").cloned().unwrap_or_default();
    let max = q
        .get("maxResults")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000)
        .clamp(1, 1000);
    // Names from startOffset (inclusive); the page token is the last name
    // of the previous page (exclusive).
    let offset = q.get("startOffset").cloned().unwrap_or_default();
    let token = q.get("pageToken").cloned();
    let fields = item_fields(q.get("fields"));
    let objects = st.objects.lock().unwrap();
    let from = prefix.clone().max(offset.clone());
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    for ((b, name), o) in objects.range((bucket.to_owned(), from)..) {
        if b != bucket || !name.starts_with(&prefix) {
            break;
        }
        if token.as_ref().is_some_and(|t| name <= t) {
            continue;
        }
        if items.len() == max {
            next = items
                .last()
                .and_then(|i: &Value| i["name"].as_str().map(str::to_owned))
                .or_else(|| Some(name.clone()));
            break;
        }
        let mut r = gcs_resource(base, bucket, name, o);
        if let Some(f) = &fields {
            r.retain(|k, _| f.contains(k));
            // The page token needs the name.
            r.entry("name").or_insert_with(|| json!(name));
        }
        items.push(Value::Object(r));
    }
    drop(objects);
    let mut out = json!({"kind": "storage#objects", "items": items});
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    json_response(StatusCode::OK, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_611_500, 123), "2026-12-07T02:45:00.123Z");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    fn crc_header(data: &[u8]) -> String {
        crc32c_b64(data)
    }

    #[tokio::test]
    async fn s3_conditional_writes_reads_and_listing() {
        let latency = Duration::from_millis(30);
        let s3 = LatencyS3::start(latency).await;
        let http = reqwest::Client::new();
        let url = |k: &str| format!("{}/b/{k}", s3.url());
        let put = |k: &str, body: &'static [u8]| {
            http.put(format!("{}?x-id=PutObject", url(k)))
                .header("x-amz-checksum-crc32c", crc_header(body))
                .header("x-amz-meta-generation", "7")
                .header("content-type", "text/plain")
                .body(body)
        };
        let t = std::time::Instant::now();
        let r = put("p/a", b"one")
            .header("if-none-match", "*")
            .send()
            .await
            .unwrap();
        assert!(t.elapsed() >= latency, "answered before the delay");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-amz-checksum-crc32c"],
            crc_header(b"one").as_str()
        );
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let r = put("p/a", b"two")
            .header("if-none-match", "*")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("<Code>PreconditionFailed</Code>"));
        let r = put("p/a", b"two")
            .header("if-match", "\"other\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let r = put("p/missing", b"two")
            .header("if-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = put("p/a", b"two")
            .header("if-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A checksum that does not match the body is refused and stores nothing.
        let r = http
            .put(url("p/bad"))
            .header("x-amz-checksum-crc32c", crc_header(b"else"))
            .body("body")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(s3.get("b", "p/bad"), None);
        assert_eq!(s3.get("b", "p/a").as_deref(), Some(&b"two"[..]));

        let r = http.head(url("p/a")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-amz-meta-generation"], "7");
        assert_eq!(r.headers()["content-type"], "text/plain");
        assert_eq!(r.headers()["content-length"], "3");
        assert_eq!(http.head(url("p/none")).send().await.unwrap().status(), 404);
        let r = http.get(url("p/a")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "two");

        put("p/b", b"b").send().await.unwrap();
        put("q/c", b"c").send().await.unwrap();
        let list = |extra: &str| {
            http.get(format!(
                "{}/b?list-type=2&prefix=p%2F&max-keys=1{extra}",
                s3.url()
            ))
            .send()
        };
        let page = list("").await.unwrap().text().await.unwrap();
        assert!(
            page.contains("<Key>p/a</Key>") && !page.contains("p/b"),
            "{page}"
        );
        assert!(page.contains("<IsTruncated>true</IsTruncated>"), "{page}");
        assert!(
            page.contains("<NextContinuationToken>p/a</NextContinuationToken>"),
            "{page}"
        );
        let page = list("&continuation-token=p%2Fa")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("<Key>p/b</Key>"), "{page}");
        assert!(page.contains("<IsTruncated>false</IsTruncated>"), "{page}");
        assert_eq!(s3.keys("b", "p/"), ["p/a", "p/b"]);

        let r = http.delete(url("p/a")).send().await.unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(s3.keys("b", "p/"), ["p/b"]);
        let r = http
            .post(format!("{}/b?delete", s3.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501);
        let counts = s3.counts();
        assert_eq!(counts["PutObject"], 8, "{counts:?}");
        assert_eq!(counts["PutObject412"], 3, "{counts:?}");
        assert_eq!(counts["HeadObject"], 2, "{counts:?}");
        assert_eq!(counts["ListObjectsV2"], 2, "{counts:?}");
        assert_eq!(counts["Unsupported"], 1, "{counts:?}");
    }

    #[tokio::test]
    async fn gcs_uploads_reads_with_generations_and_lists() {
        let gcs = LatencyGcs::start(Duration::from_millis(1)).await;
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{}/storage/v1/b", gcs.url()))
            .json(&json!({"name": "src"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = b"--XX\r\nContent-Type: application/json\r\n\r\n{\"name\":\"d/one\",\"metadata\":{\"k\":\"v\"}}\r\n--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XX--\r\n";
        let r = http
            .post(format!(
                "{}/upload/storage/v1/b/src/o?uploadType=multipart",
                gcs.url()
            ))
            .header("content-type", "multipart/related; boundary=XX")
            .body(&body[..])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let obj: Value = r.json().await.unwrap();
        assert_eq!(obj["size"], "5");
        assert_eq!(obj["contentType"], "text/plain");
        assert_eq!(obj["metadata"]["k"], "v");
        assert_eq!(obj["crc32c"], crc_header(b"hello"));
        let generation = obj["generation"].as_str().unwrap().to_owned();
        let r = http
            .post(format!(
                "{}/upload/storage/v1/b/src/o?uploadType=media&name=d%2Ftwo",
                gcs.url()
            ))
            .body("second")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        let object = format!("{}/storage/v1/b/src/o/d%2Fone", gcs.url());
        let r: Value = http
            .get(&object)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["generation"], generation.as_str());
        let r = http
            .get(&object)
            .query(&[("alt", "media"), ("ifGenerationMatch", generation.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-goog-hash"],
            format!("crc32c={}", crc_header(b"hello")).as_str()
        );
        assert_eq!(r.text().await.unwrap(), "hello");
        let r = http
            .get(&object)
            .query(&[("alt", "media"), ("ifGenerationMatch", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 412);
        let r = http
            .get(&object)
            .query(&[("generation", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        let list = |token: Option<&str>| {
            let mut q = vec![
                ("maxResults", "1"),
                ("prefix", "d/"),
                (
                    "fields",
                    "items(name,size,generation,crc32c,updated),nextPageToken",
                ),
            ];
            if let Some(t) = token {
                q.push(("pageToken", t));
            }
            http.get(format!("{}/storage/v1/b/src/o", gcs.url()))
                .query(&q)
                .send()
        };
        let page: Value = list(None).await.unwrap().json().await.unwrap();
        assert_eq!(page["items"][0]["name"], "d/one");
        assert_eq!(page["items"][0]["size"], "5");
        assert!(page["items"][0].get("contentType").is_none(), "{page}");
        let token = page["nextPageToken"].as_str().unwrap().to_owned();
        let page: Value = list(Some(&token)).await.unwrap().json().await.unwrap();
        assert_eq!(page["items"][0]["name"], "d/two");
        assert!(page.get("nextPageToken").is_none(), "{page}");
        let r = http
            .get(format!("{}/storage/v1/b/src/o", gcs.url()))
            .query(&[("startOffset", "d/one\u{0}")])
            .send()
            .await
            .unwrap();
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        let counts = gcs.counts();
        assert_eq!(counts["objects.insert"], 2, "{counts:?}");
        assert_eq!(counts["objects.media"], 2, "{counts:?}");
        assert_eq!(counts["objects.media412"], 1, "{counts:?}");
        assert_eq!(counts["objects.list"], 3, "{counts:?}");
    }

    #[test]
    fn fields() {
        let f = item_fields(Some(&"items(name,size),nextPageToken".to_owned())).unwrap();
        assert!(f.contains("name") && f.contains("size") && f.len() == 2);
        assert!(item_fields(None).is_none());
    }
}
