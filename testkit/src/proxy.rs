//! A streaming HTTP proxy in front of an AWS stand-in (moto): counts requests per
//! operation, injects faults, and optionally checks `AssumeRoleWithWebIdentity`
//! tokens as real STS does.
//!
//! Requests are forwarded with their method, raw path and query, headers (the
//! `Host` header unchanged, since SigV4 signs it) and body; bodies stream both
//! ways. Only STS requests (`POST /` with a form body, or `Action=` in the query)
//! are read whole, to find their `Action`.
//!
//! Operation names, for [`FaultProxy::count`] and fault matching: the STS
//! `Action` (e.g. `AssumeRoleWithWebIdentity`, `GetCallerIdentity`); for S3 both
//! `S3:<METHOD>` and, when recognised, the operation (`PutObject`, `UploadPart`,
//! `UploadPartCopy`, `CreateMultipartUpload`, `CompleteMultipartUpload`,
//! `AbortMultipartUpload`, `ListParts`, `GetObject`, `HeadObject`, `DeleteObject`,
//! `DeleteObjects`, `CopyObject`, `ListObjectsV2`, `ListObjects`,
//! `ListObjectVersions`, `ListBuckets`, `ListMultipartUploads`, `HeadBucket`,
//! `CreateBucket`, `DeleteBucket`, `GetBucketLocation`, `GetObjectTagging`,
//! `PutObjectTagging`). `"*"` in a fault's op list matches every request.
//! In front of fake-gcs-server, Cloud Storage JSON API paths are named
//! `GCS:<METHOD>` and `GcsListObjects`, `GcsGetObject`, `GcsGetMedia` (plus
//! `GcsRangedRead` for a ranged read), `GcsInsert`, `GcsDelete` or `GcsOther`.
//!
//! [`FaultProxy::hold_next`] holds the next request of an operation before it
//! is forwarded until the test releases it: a race between two requests is
//! then played in the order the test chooses.
//!
//! `GET /__counts` is answered by the proxy itself, never forwarded nor counted:
//! `{"total":N,"counts":{"AssumeRoleWithWebIdentity":1,...}}`, the same figures
//! as [`FaultProxy::total`] and [`FaultProxy::counts`], for processes outside the
//! test (no S3 bucket name can contain `_`, so the path is never an S3 request).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::keys::{random_hex, verify_with_jwks, VerifyError};
use crate::server::{self, DropConnection, ServerGuard};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type UpBody = UnsyncBoxBody<Bytes, BoxError>;

/// Largest STS request body the proxy reads whole.
const STS_BODY_LIMIT: usize = 1 << 20;

/// The proxy's own route: its counters as JSON.
const COUNTS_PATH: &str = "/__counts";

/// A fault the proxy can inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// Answer this status without forwarding, with an AWS-style XML error body
    /// (S3 `<Error>` or STS `<ErrorResponse>`); the code follows the status:
    /// S3 500 `InternalError`, 503 `SlowDown`, 429 `SlowDown`; STS 500
    /// `InternalFailure`, 503 `ServiceUnavailable`, 400 and 429 `Throttling`.
    Status(u16),
    /// Answer an AWS error with an explicit status, code and message.
    AwsError {
        /// HTTP status.
        status: u16,
        /// AWS error code, e.g. `SlowDown`.
        code: String,
        /// Error message.
        message: String,
    },
    /// Wait, then forward normally.
    Delay(Duration),
    /// Close the client connection before forwarding anything.
    Drop,
    /// Forward, then cut the response body halfway and close the connection. For
    /// uploads (PUT/POST with a body, other than STS) the request body is cut
    /// halfway on its way to the upstream instead, and the client connection is
    /// closed. When there is no body to cut (HEAD, empty answers) the request is
    /// forwarded and the connection closed without an answer.
    DropMidBody,
    /// Forward, then pass each frame of the response body only after this
    /// pause: an upstream that sends its body slowly.
    SlowBody(Duration),
    /// Forward, then flip the bits of one byte in the middle of the response
    /// body (length and headers unchanged): bytes that no longer match the
    /// checksums the answer declares.
    CorruptBody,
    /// Forward; when the upstream answers status `from`, answer status `to`
    /// instead, with the AWS-style error of [`ProxyFault::Status`] (e.g. a
    /// HEAD's 404 turned into the 403 S3 answers for a missing key when
    /// the caller lacks `s3:ListBucket`). Other answers pass unchanged.
    RewriteStatus {
        /// The upstream status to replace.
        from: u16,
        /// The status answered instead.
        to: u16,
    },
}

/// A random fault plan: each eligible request draws from a deterministic PRNG.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Operation names eligible for faults; `None` means every request.
    pub ops: Option<Vec<String>>,
    /// Probability (0..=1) that an eligible request gets a fault.
    pub rate: f64,
    /// The faults to choose from (uniformly, by the same PRNG).
    pub kinds: Vec<ProxyFault>,
    /// Stop after this many faults.
    pub max: Option<usize>,
    /// PRNG seed: the same seed and request sequence give the same faults.
    pub seed: u64,
}

impl Default for FaultPlan {
    /// No faults: `ops: None, rate: 0.0, kinds: [], max: None, seed: 1`.
    fn default() -> Self {
        FaultPlan {
            ops: None,
            rate: 0.0,
            kinds: Vec::new(),
            max: None,
            seed: 1,
        }
    }
}

/// What the STS gate checks on `AssumeRoleWithWebIdentity`, as the role's trust
/// policy would (`Federated: accounts.google.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsGate {
    /// JWKS to verify the token's RS256 signature against (fetched on first use,
    /// again when a `kid` is not found).
    pub jwks_url: String,
    /// `accounts.google.com:oaud`: the token's `aud` must equal it.
    pub oaud: String,
    /// `accounts.google.com:aud`: the token's `azp` must equal it.
    pub aud: String,
    /// `accounts.google.com:sub`: the token's `sub` must equal it.
    pub sub: String,
}

struct PlanState {
    plan: FaultPlan,
    rng: u64,
    injected: usize,
}

struct Shared {
    scheme: Scheme,
    authority: Authority,
    client: Client<HttpConnector, UpBody>,
    http: reqwest::Client,
    counts: Mutex<HashMap<String, usize>>,
    total: AtomicUsize,
    plan: Mutex<Option<PlanState>>,
    oneshots: Mutex<VecDeque<(String, ProxyFault)>>,
    holds: Mutex<VecDeque<(String, Arc<HoldState>)>>,
    gate: Mutex<Option<StsGate>>,
    /// The JWKS last fetched for the gate: (url, document).
    jwks_cache: Mutex<Option<(String, Value)>>,
    faults_injected: AtomicUsize,
}

/// Handle to a running proxy. Clones share it; it stops when the last clone is
/// dropped or on [`FaultProxy::shutdown`].
#[derive(Clone)]
pub struct FaultProxy {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    guard: Arc<ServerGuard>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field(
                "upstream",
                &format!("{}://{}", self.shared.scheme, self.shared.authority),
            )
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `upstream`
    /// (`http://host:port`, plain HTTP).
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_on(upstream, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("start proxy")
    }

    /// Starts a proxy on a given address.
    pub async fn start_on(
        upstream: &str,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<FaultProxy> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let uri: Uri = upstream
            .parse()
            .map_err(|e| invalid(format!("upstream {upstream:?}: {e}")))?;
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        if scheme != Scheme::HTTP {
            return Err(invalid(format!(
                "upstream {upstream:?}: only http is supported"
            )));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid(format!("upstream {upstream:?} has no host")))?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let shared = Arc::new(Shared {
            scheme,
            authority,
            client,
            http: reqwest::Client::new(),
            counts: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
            plan: Mutex::new(None),
            oneshots: Mutex::new(VecDeque::new()),
            holds: Mutex::new(VecDeque::new()),
            gate: Mutex::new(None),
            jwks_cache: Mutex::new(None),
            faults_injected: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let handler: server::Handler = Arc::new(move |req| Box::pin(handle(s.clone(), req)));
        let guard = Arc::new(server::spawn(listener, handler));
        Ok(FaultProxy {
            shared,
            addr,
            guard,
        })
    }

    /// Stops accepting and closes open connections.
    pub fn shutdown(&self) {
        self.guard.shutdown();
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give the AWS SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen for an operation name (see the module docs), faulted or not.
    pub fn count(&self, op: &str) -> usize {
        *self.shared.counts.lock().unwrap().get(op).unwrap_or(&0)
    }

    /// All requests seen.
    pub fn total(&self) -> usize {
        self.shared.total.load(Ordering::SeqCst)
    }

    /// Every operation name seen with its count.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.shared.counts.lock().unwrap().clone()
    }

    /// Sets all counters to zero.
    pub fn reset_counts(&self) {
        self.shared.counts.lock().unwrap().clear();
        self.shared.total.store(0, Ordering::SeqCst);
        self.shared.faults_injected.store(0, Ordering::SeqCst);
    }

    /// Faults injected (plan and one-shot) since start or [`reset_counts`].
    ///
    /// [`reset_counts`]: FaultProxy::reset_counts
    pub fn faults_injected(&self) -> usize {
        self.shared.faults_injected.load(Ordering::SeqCst)
    }

    /// Installs a random fault plan (replacing any previous one).
    pub fn set_faults(&self, plan: FaultPlan) {
        let rng = plan.seed ^ 0x9E37_79B9_7F4A_7C15;
        *self.shared.plan.lock().unwrap() = Some(PlanState {
            plan,
            rng,
            injected: 0,
        });
    }

    /// Removes the fault plan and any queued one-shot faults.
    pub fn clear_faults(&self) {
        *self.shared.plan.lock().unwrap() = None;
        self.shared.oneshots.lock().unwrap().clear();
    }

    /// Queues a one-shot fault for the next request matching `op` (`"*"` for
    /// any). One-shot faults are consumed in order and take precedence over the
    /// plan.
    pub fn push_fault(&self, op: &str, fault: ProxyFault) {
        self.shared
            .oneshots
            .lock()
            .unwrap()
            .push_back((op.to_string(), fault));
    }

    /// Holds the next request matching `op` (`"*"` for any) before it is
    /// forwarded, until [`Hold::release`] (or the [`Hold`] is dropped).
    /// Holds are consumed in order, before faults are drawn.
    pub fn hold_next(&self, op: &str) -> Hold {
        let (arrived_tx, arrived_rx) = tokio::sync::watch::channel(false);
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(HoldState {
            arrived: arrived_tx,
            release: release_rx,
        });
        self.shared
            .holds
            .lock()
            .unwrap()
            .push_back((op.to_string(), state));
        Hold {
            arrived: arrived_rx,
            release: release_tx,
        }
    }

    /// Turns the STS gate on (`Some`) or off (`None`).
    pub fn set_sts_gate(&self, gate: Option<StsGate>) {
        *self.shared.gate.lock().unwrap() = gate;
        *self.shared.jwks_cache.lock().unwrap() = None;
    }
}

struct HoldState {
    arrived: tokio::sync::watch::Sender<bool>,
    release: tokio::sync::watch::Receiver<bool>,
}

/// A request held by [`FaultProxy::hold_next`]; dropping it releases it.
#[derive(Debug)]
pub struct Hold {
    arrived: tokio::sync::watch::Receiver<bool>,
    release: tokio::sync::watch::Sender<bool>,
}

impl Hold {
    /// Waits until the matching request has reached the proxy and is held.
    pub async fn arrived(&mut self) {
        // The sender lives in the proxy's queue or in the held request.
        let _ = self.arrived.wait_for(|a| *a).await;
    }

    /// Whether the matching request has arrived.
    pub fn has_arrived(&self) -> bool {
        *self.arrived.borrow()
    }

    /// Lets the held request (or the next matching one) go on.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release.send_replace(true);
    }
}

/// What kind of service a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Sts,
    S3,
}

fn query_params(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn is_form(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// Whether the Host names a bucket (virtual-hosted style) rather than the
/// endpoint itself.
fn virtual_host_bucket(host: &str) -> Option<String> {
    let name = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if name.parse::<std::net::IpAddr>().is_ok()
        || name.starts_with('[')
        || name == "localhost"
        || !name.contains('.')
    {
        return None;
    }
    let first = name.split('.').next()?;
    if first == "s3" || first.starts_with("s3-") || first == "sts" || first == "localhost" {
        return None;
    }
    Some(first.to_string())
}

/// Operation names of a Cloud Storage JSON API request (the proxy in front of
/// fake-gcs-server): `GCS:<METHOD>` and one of `GcsListObjects`,
/// `GcsGetObject` (the object resource), `GcsGetMedia` (`alt=media`, with
/// `GcsRangedRead` too when a `Range` is asked), `GcsInsert`, `GcsDelete`,
/// `GcsOther`; `None` for a path outside the JSON API.
fn gcs_operation(
    method: &Method,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
) -> Option<Vec<&'static str>> {
    let m: &'static str = match method.as_str() {
        "GET" => "GCS:GET",
        "POST" => "GCS:POST",
        "PUT" => "GCS:PUT",
        "DELETE" => "GCS:DELETE",
        "PATCH" => "GCS:PATCH",
        _ => "GCS:OTHER",
    };
    let rest = path
        .strip_prefix("/storage/v1/")
        .or_else(|| path.strip_prefix("/download/storage/v1/"))
        .or_else(|| path.strip_prefix("/upload/storage/v1/"))?;
    let segments: Vec<&str> = rest.split('/').collect();
    let media = query_params(query)
        .iter()
        .any(|(k, v)| k == "alt" && v == "media");
    let op = match (method.as_str(), segments.as_slice()) {
        ("POST", ["b", _, "o"]) => "GcsInsert",
        ("GET", ["b", _, "o"]) => "GcsListObjects",
        ("GET", ["b", _, "o", ..]) if media => "GcsGetMedia",
        ("GET", ["b", _, "o", ..]) => "GcsGetObject",
        ("DELETE", ["b", _, "o", ..]) => "GcsDelete",
        _ => "GcsOther",
    };
    let mut ops = vec![m, op];
    if op == "GcsGetMedia" && headers.contains_key(header::RANGE) {
        ops.push("GcsRangedRead");
    }
    Some(ops)
}

/// The S3 operation name for a request, when recognised.
fn s3_operation(
    method: &Method,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
) -> Option<&'static str> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let trimmed = path.trim_start_matches('/');
    let (has_bucket, has_key) = if virtual_host_bucket(host).is_some() {
        (true, !trimmed.is_empty())
    } else {
        match trimmed.split_once('/') {
            None => (!trimmed.is_empty(), false),
            Some((_, key)) => (true, !key.is_empty()),
        }
    };
    let params = query_params(query);
    let has = |k: &str| params.iter().any(|(n, _)| n == k);
    let get_param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let copy = headers.contains_key("x-amz-copy-source");
    let op = match (method.as_str(), has_bucket, has_key) {
        ("GET", false, _) => "ListBuckets",
        ("GET", true, false) => {
            if get_param("list-type") == Some("2") {
                "ListObjectsV2"
            } else if has("uploads") {
                "ListMultipartUploads"
            } else if has("versions") {
                "ListObjectVersions"
            } else if has("location") {
                "GetBucketLocation"
            } else if params.iter().all(|(n, _)| {
                matches!(
                    n.as_str(),
                    "prefix" | "delimiter" | "marker" | "max-keys" | "encoding-type"
                )
            }) {
                "ListObjects"
            } else {
                return None;
            }
        }
        ("GET", true, true) => {
            if has("uploadId") {
                "ListParts"
            } else if has("tagging") {
                "GetObjectTagging"
            } else if has("acl") || has("attributes") || has("retention") || has("legal-hold") {
                return None;
            } else {
                "GetObject"
            }
        }
        ("HEAD", true, true) => "HeadObject",
        ("HEAD", true, false) => "HeadBucket",
        ("PUT", true, true) => {
            if has("partNumber") && has("uploadId") {
                if copy {
                    "UploadPartCopy"
                } else {
                    "UploadPart"
                }
            } else if has("tagging") {
                "PutObjectTagging"
            } else if has("acl") || has("retention") || has("legal-hold") {
                return None;
            } else if copy {
                "CopyObject"
            } else {
                "PutObject"
            }
        }
        ("PUT", true, false) if params.is_empty() => "CreateBucket",
        ("POST", true, true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true, true) if has("uploadId") => "CompleteMultipartUpload",
        ("POST", true, false) if has("delete") => "DeleteObjects",
        ("DELETE", true, true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true, true) if !has("tagging") => "DeleteObject",
        ("DELETE", true, false) if params.is_empty() => "DeleteBucket",
        _ => return None,
    };
    Some(op)
}

/// The XML error body and headers of an injected AWS error.
fn aws_error_response(
    service: Service,
    method: &Method,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (default_code, default_message) = match (service, status.as_u16()) {
        (Service::S3, 503) | (Service::S3, 429) => ("SlowDown", "Please reduce your request rate."),
        (Service::S3, 500) => (
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
        (Service::S3, 403) => ("AccessDenied", "Access Denied"),
        (Service::S3, 404) => ("NoSuchKey", "The specified key does not exist."),
        (Service::S3, 400) => ("InvalidRequest", "Invalid request."),
        (Service::S3, _) => ("ServiceUnavailable", "Service is unable to handle request."),
        (Service::Sts, 400) | (Service::Sts, 429) => ("Throttling", "Rate exceeded"),
        (Service::Sts, 503) => ("ServiceUnavailable", "Service unavailable"),
        (Service::Sts, 403) => ("AccessDenied", "Access denied"),
        (Service::Sts, _) => ("InternalFailure", "An internal error occurred."),
    };
    let code = code.unwrap_or(default_code);
    let message = message.unwrap_or(default_message);
    let request_id = random_hex(8).to_uppercase();
    match service {
        Service::S3 => {
            let body = if *method == Method::HEAD {
                String::new()
            } else {
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{request_id}</RequestId><HostId>{}</HostId></Error>",
                    xml_escape(code),
                    xml_escape(message),
                    random_hex(16)
                )
            };
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "application/xml")
                .header("x-amz-request-id", &request_id)
                .body(Body::from(body))
                .expect("response")
        }
        Service::Sts => sts_error(
            status,
            if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            },
            code,
            message,
        ),
    }
}

fn sts_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response<Body> {
    let request_id = uuid_like();
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        xml_escape(code),
        xml_escape(message)
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml")
        .header("x-amzn-requestid", &request_id)
        .body(Body::from(body))
        .expect("response")
}

fn uuid_like() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Shared {
    fn record(&self, names: &[String]) {
        self.total.fetch_add(1, Ordering::SeqCst);
        let mut counts = self.counts.lock().unwrap();
        for n in names {
            *counts.entry(n.clone()).or_default() += 1;
        }
    }

    fn pick_fault(&self, names: &[String]) -> Option<ProxyFault> {
        {
            let mut q = self.oneshots.lock().unwrap();
            if let Some(i) = q
                .iter()
                .position(|(op, _)| op == "*" || names.iter().any(|n| n == op))
            {
                return q.remove(i).map(|(_, f)| f);
            }
        }
        let mut guard = self.plan.lock().unwrap();
        let st = guard.as_mut()?;
        if st.plan.kinds.is_empty() || st.plan.max.is_some_and(|m| st.injected >= m) {
            return None;
        }
        if let Some(ops) = &st.plan.ops {
            if !ops.iter().any(|op| op == "*" || names.contains(op)) {
                return None;
            }
        }
        let draw = (splitmix(&mut st.rng) >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= st.plan.rate {
            return None;
        }
        let i = (splitmix(&mut st.rng) % st.plan.kinds.len() as u64) as usize;
        st.injected += 1;
        Some(st.plan.kinds[i].clone())
    }
}

/// Removes the hop-by-hop headers, which a proxy does not pass on.
pub(crate) fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    let hop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for n in hop {
        headers.remove(n);
    }
}

/// Headers that concern one connection only (RFC 9110 §7.6.1).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if method == Method::GET && path == COUNTS_PATH {
        return Ok(counts_response(&shared));
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let query_action = query_params(&query)
        .into_iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v);
    let sts_form = method == Method::POST && path == "/" && is_form(&req);
    let service = if query_action.is_some() || sts_form {
        Service::Sts
    } else {
        Service::S3
    };

    let (parts, incoming) = req.into_parts();
    let mut incoming = Some(incoming);
    let mut sts_body: Option<Bytes> = None;
    let mut params: Vec<(String, String)> = Vec::new();
    let names: Vec<String> = match service {
        Service::Sts => {
            let limited = http_body_util::Limited::new(
                incoming.take().expect("body not yet taken"),
                STS_BODY_LIMIT,
            );
            let bytes = match limited.collect().await {
                Ok(c) => c.to_bytes(),
                Err(_) => return Err(DropConnection),
            };
            params = query_params(&query);
            if sts_form {
                params.extend(url::form_urlencoded::parse(&bytes).into_owned());
            }
            sts_body = Some(bytes);
            let action = params
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "STS:UnknownAction".into());
            vec![action]
        }
        Service::S3 => match gcs_operation(&method, &path, &query, &parts.headers) {
            Some(ops) => ops.iter().map(|o| o.to_string()).collect(),
            None => {
                let mut n = vec![format!("S3:{}", method)];
                if let Some(op) = s3_operation(&method, &path, &query, &parts.headers) {
                    n.push(op.to_string());
                }
                n
            }
        },
    };
    shared.record(&names);

    let hold = {
        let mut q = shared.holds.lock().unwrap();
        q.iter()
            .position(|(op, _)| op == "*" || names.iter().any(|n| n == op))
            .and_then(|i| q.remove(i))
    };
    if let Some((_, h)) = hold {
        h.arrived.send_replace(true);
        let mut release = h.release.clone();
        let _ = release.wait_for(|r| *r).await;
    }

    let fault = shared.pick_fault(&names);
    if fault.is_some() {
        shared.faults_injected.fetch_add(1, Ordering::SeqCst);
    }
    let mut cut = false;
    let mut corrupt = false;
    let mut rewrite: Option<(u16, u16)> = None;
    let mut slow: Option<Duration> = None;
    match &fault {
        None => {}
        Some(ProxyFault::Status(code)) => {
            return Ok(aws_error_response(service, &method, *code, None, None))
        }
        Some(ProxyFault::AwsError {
            status,
            code,
            message,
        }) => {
            return Ok(aws_error_response(
                service,
                &method,
                *status,
                Some(code),
                Some(message),
            ))
        }
        Some(ProxyFault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(ProxyFault::Drop) => return Err(DropConnection),
        Some(ProxyFault::DropMidBody) => cut = true,
        Some(ProxyFault::CorruptBody) => corrupt = true,
        Some(ProxyFault::SlowBody(d)) => slow = Some(*d),
        Some(ProxyFault::RewriteStatus { from, to }) => rewrite = Some((*from, *to)),
    }

    if service == Service::Sts
        && params
            .iter()
            .any(|(k, v)| k == "Action" && v == "AssumeRoleWithWebIdentity")
    {
        let token = params
            .iter()
            .find(|(k, _)| k == "WebIdentityToken")
            .map(|(_, v)| v.clone());
        if let Some(rejection) = gate_check(&shared, token.as_deref()).await {
            return Ok(rejection);
        }
    }

    // Build the upstream request: same method, raw path and query, headers.
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let uri = Uri::builder()
        .scheme(shared.scheme.clone())
        .authority(shared.authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| DropConnection)?;
    let req_len = content_length(&parts.headers);
    let upload = cut
        && service == Service::S3
        && (method == Method::PUT || method == Method::POST)
        && req_len != Some(0);
    let body: UpBody = match (sts_body, incoming) {
        (Some(b), _) => Full::new(b).map_err(|e| match e {}).boxed_unsync(),
        (None, Some(incoming)) if upload => CutBody::new(incoming, req_len.map(|l| l / 2))
            .map_err(Into::into)
            .boxed_unsync(),
        (None, Some(incoming)) => incoming.map_err(Into::into).boxed_unsync(),
        (None, None) => Full::new(Bytes::new())
            .map_err(|e| match e {})
            .boxed_unsync(),
    };
    let mut up = Request::builder()
        .method(method.clone())
        .uri(uri)
        .version(http::Version::HTTP_11)
        .body(body)
        .map_err(|_| DropConnection)?;
    for (name, value) in parts.headers.iter() {
        if !is_hop_by_hop(name) {
            up.headers_mut().append(name.clone(), value.clone());
        }
    }
    if !up.headers().contains_key(header::HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                up.headers_mut().insert(header::HOST, v);
            }
        }
    }

    let res = match shared.client.request(up).await {
        Ok(r) => r,
        Err(_) if upload => return Err(DropConnection),
        Err(e) => {
            return Ok(Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(format!(
                    "fault proxy: upstream request failed: {e}\n"
                )))
                .expect("response"))
        }
    };
    if upload {
        // The upstream answered although the body was cut short: still drop.
        return Err(DropConnection);
    }
    if let Some((from, to)) = rewrite {
        if res.status().as_u16() == from {
            return Ok(aws_error_response(service, &method, to, None, None));
        }
    }
    let (mut rparts, rbody) = res.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    if cut {
        let len = content_length(&rparts.headers);
        let bodyless = method == Method::HEAD
            || rparts.status == StatusCode::NO_CONTENT
            || rparts.status == StatusCode::NOT_MODIFIED
            || len == Some(0)
            || rbody.is_end_stream();
        if bodyless {
            return Err(DropConnection);
        }
        let cut_body = CutBody::new(rbody, len.map(|l| l / 2));
        return Ok(Response::from_parts(rparts, Body::new(cut_body)));
    }
    if let Some(pause) = slow {
        let body = SlowBody {
            inner: rbody,
            pause,
            sleep: None,
        };
        return Ok(Response::from_parts(rparts, Body::new(body)));
    }
    if corrupt {
        let len = content_length(&rparts.headers);
        let body = CorruptBody {
            inner: rbody,
            at: len.map_or(0, |l| l / 2),
            seen: 0,
        };
        return Ok(Response::from_parts(rparts, Body::new(body)));
    }
    Ok(Response::from_parts(rparts, Body::new(rbody)))
}

/// `{"total":N,"counts":{op:N,...}}`.
fn counts_response(shared: &Shared) -> Response<Body> {
    let counts = shared.counts.lock().unwrap().clone();
    let body = serde_json::json!({
        "total": shared.total.load(Ordering::SeqCst),
        "counts": counts,
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

/// Runs the STS gate on a web-identity token; `Some` is the rejection to send.
async fn gate_check(shared: &Shared, token: Option<&str>) -> Option<Response<Body>> {
    let gate = shared.gate.lock().unwrap().clone()?;
    let invalid = |m: &str| {
        Some(sts_error(
            StatusCode::BAD_REQUEST,
            "Sender",
            "InvalidIdentityToken",
            m,
        ))
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Some(sts_error(
            StatusCode::BAD_REQUEST,
            "Sender",
            "MissingParameter",
            "The request must contain the parameter WebIdentityToken",
        ));
    };
    let mut verified = None;
    for attempt in 0..2 {
        let cached = shared
            .jwks_cache
            .lock()
            .unwrap()
            .as_ref()
            .filter(|(url, _)| *url == gate.jwks_url)
            .map(|(_, j)| j.clone());
        let jwks = match cached {
            Some(j) if attempt == 0 => j,
            _ => match fetch_jwks(&shared.http, &gate.jwks_url).await {
                Ok(j) => {
                    *shared.jwks_cache.lock().unwrap() = Some((gate.jwks_url.clone(), j.clone()));
                    j
                }
                Err(e) => {
                    return Some(sts_error(
                        StatusCode::BAD_REQUEST,
                        "Sender",
                        "IDPCommunicationError",
                        &format!(
                            "Couldn't retrieve verification key from your identity provider: {e}"
                        ),
                    ))
                }
            },
        };
        match verify_with_jwks(token, &jwks) {
            Ok(c) => {
                verified = Some(c);
                break;
            }
            Err(VerifyError::UnknownKey(_)) if attempt == 0 => continue,
            Err(VerifyError::Expired) => {
                return invalid(
                    "Token expired: the current date/time must be before the expiration date/time",
                )
            }
            Err(e) => return invalid(&format!("Couldn't verify the token: {e}")),
        }
    }
    let claims = verified?;
    let s = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let iss = s("iss");
    if iss != "accounts.google.com" && iss != "https://accounts.google.com" {
        return invalid(&format!("Issuer {iss:?} is not accounts.google.com"));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == gate.oaud,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&gate.oaud)),
        _ => false,
    };
    if !aud_ok || s("azp") != gate.aud || s("sub") != gate.sub {
        return Some(sts_error(
            StatusCode::FORBIDDEN,
            "Sender",
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ));
    }
    None
}

async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let res = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("JWKS answered {}", res.status()));
    }
    res.json::<Value>().await.map_err(|e| e.to_string())
}

/// Passes a body through, each frame after a pause.
struct SlowBody<B> {
    inner: B,
    pause: Duration,
    /// The pause before the next frame; `None` before it starts.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> HttpBody for SlowBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let pause = this.pause;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
            return Poll::Pending;
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Passes a body through with the bits of the byte at offset `at` flipped.
struct CorruptBody<B> {
    inner: B,
    at: u64,
    seen: u64,
}

impl<B> HttpBody for CorruptBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let start = this.seen;
                    this.seen += data.len() as u64;
                    if (start..this.seen).contains(&this.at) {
                        let mut d = data.to_vec();
                        d[(this.at - start) as usize] ^= 0xff;
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(d)))));
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a [`CutBody`] ends with.
#[derive(Debug)]
struct BodyCut;

impl fmt::Display for BodyCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("body cut by fault injection")
    }
}

impl std::error::Error for BodyCut {}

/// Passes through `limit` bytes of a body, then fails. With no known limit it
/// cuts the first data frame in half.
struct CutBody<B> {
    inner: B,
    remaining: Option<u64>,
    done: bool,
}

impl<B> CutBody<B> {
    fn new(inner: B, limit: Option<u64>) -> Self {
        CutBody {
            inner,
            remaining: limit,
            done: false,
        }
    }
}

impl<B> HttpBody for CutBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done || this.remaining == Some(0) {
            this.done = true;
            return Poll::Ready(Some(Err(Box::new(BodyCut))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(Some(Err(Box::new(BodyCut))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    let limit = *this.remaining.get_or_insert(data.len() as u64 / 2);
                    if data.len() as u64 >= limit {
                        data.truncate(limit as usize);
                        this.remaining = Some(0);
                    } else {
                        this.remaining = Some(limit - data.len() as u64);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
