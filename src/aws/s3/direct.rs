//! PutObject of a body held in memory, signed here ([`super::sigv4`]) and
//! sent through the SDK's own HTTP connector, without the SDK's operation
//! orchestration (its interceptors, layered configuration and serialisers
//! cost several times the HTTP exchange itself for a small object).
//!
//! What stays the SDK's: the endpoint (resolved once by `aws-sdk-s3`'s own
//! rules for the bucket), the credentials (the one lazy identity cache every
//! AWS client shares, so nothing is assumed twice), the connection pool and
//! its timeouts (the same connector, cached by the HTTP client for these
//! settings). What is done here as the SDK does it: the request's headers
//! (system and user metadata, `x-amz-checksum-crc32c`, the conditions), the
//! SigV4 signature (payload signed over plain HTTP, `UNSIGNED-PAYLOAD` over
//! TLS when the storage asks for it), the client's retry configuration
//! (standard mode: 3 attempts, exponential backoff with full jitter, for
//! connection failures, timeouts, 5xx and throttling; the connection of a
//! transient error is not used again; a signature refused while S3's `Date`
//! is minutes away from this clock is signed again at S3's time, which later
//! requests keep), the connector's timeouts (the SDK's default connect
//! timeout where none is set), and the error's classification
//! ([`super::error::classify_status`]).
//!
//! An endpoint this path does not sign for (SigV4a, S3 Express, endpoint
//! headers) leaves every PutObject to the SDK.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
use aws_smithy_async::rt::sleep::default_async_sleep;
use aws_smithy_runtime::client::auth::no_auth::NoAuthScheme;
use aws_smithy_runtime::client::retries::strategy::NeverRetryStrategy;
use aws_smithy_runtime_api::client::auth::static_resolver::StaticAuthSchemeOptionResolver;
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_runtime_api::client::connection::CaptureSmithyConnection;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::identity::{
    ResolveCachedIdentity, SharedIdentityCache, SharedIdentityResolver,
};
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::{DateTime, Format};
use aws_smithy_types::retry::{ReconnectMode, RetryConfig, RetrySpec};
use aws_smithy_types::timeout::TimeoutConfig;
use aws_smithy_types::Document;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use super::error::{classify_status, StorageError};
use super::key::ObjectKey;
use super::sigv4::{self, Signer};
use super::upload::crc32c_base64;
use super::{PutOptions, PutResult};
use crate::aws::find_sts_error;
use crate::util::error_chain;

/// Error bodies are read up to this many bytes.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An answer whose `Date` is this far from this clock makes a signature
/// refusal retryable, signed at S3's time (the SDK's clock skew
/// correction).
const SKEW_DETECTION_THRESHOLD: Duration = Duration::from_secs(4 * 60);

/// A round trip longer than this measures no skew.
const MAX_TRUSTED_REQUEST_DURATION: Duration = Duration::from_secs(15 * 60);

/// The error codes of a refusal that a skewed clock may cause.
const CLOCK_SKEW_ERROR_CODES: &[&str] = &[
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "RequestTimeTooSkewed",
    "AccessDeniedException",
];

/// Everything of a key but the unreserved characters and `/` is
/// percent-encoded in the path (S3's and the SDK's greedy label).
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Where S3 is, as the SDK's configuration says (`AWS_ENDPOINT_URL_S3` or
/// `AWS_ENDPOINT_URL`, `S3_FORCE_PATH_STYLE`).
#[derive(Debug, Clone, Default)]
pub(crate) struct S3Endpoint {
    pub(crate) url: Option<String>,
    pub(crate) force_path_style: bool,
}

/// The PutObject path for bodies in memory.
pub(crate) struct DirectPut {
    /// The bucket's endpoint, no trailing `/` (e.g.
    /// `https://b.s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000/b`).
    base: String,
    /// `Host` of the endpoint, without a default port (as signed and sent).
    host: String,
    /// The endpoint's path (`/b` path-style, empty virtual-hosted).
    base_path: String,
    region: String,
    signer: Signer,
    /// `UNSIGNED-PAYLOAD` instead of the body's SHA-256.
    unsigned_payload: bool,
    /// The client's retry configuration: attempts and backoff.
    retry: RetryConfig,
    connector: SharedHttpConnector,
    cache: SharedIdentityCache,
    resolver: SharedIdentityResolver,
    components: RuntimeComponents,
    /// How far S3's clock is ahead of this one, in milliseconds, as the
    /// `Date` of its last answer said: added to the signing time.
    skew_ms: AtomicI64,
    /// The `Date` of the last answer and the time it says: S3's `Date`
    /// changes once a second, so most answers repeat it.
    last_date: Mutex<Option<(String, SystemTime)>>,
}

impl fmt::Debug for DirectPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectPut")
            .field("base", &self.base)
            .field("region", &self.region)
            .field("unsigned_payload", &self.unsigned_payload)
            .finish_non_exhaustive()
    }
}

/// One attempt's failure: whether another attempt may do better.
enum Failure {
    Retry(StorageError),
    Final(StorageError),
}

impl DirectPut {
    /// The path for `bucket` through `client`'s configuration, with the
    /// credentials of `provider` (the shared configuration's, so that its
    /// cache entry is the one the SDK's calls use), or `None` when the
    /// endpoint needs a signature or header this path does not make (then
    /// the SDK does every PutObject).
    pub(crate) fn new(
        client: &aws_sdk_s3::Client,
        provider: SharedCredentialsProvider,
        bucket: &str,
        endpoint: &S3Endpoint,
        unsigned_payload: bool,
    ) -> Option<DirectPut> {
        match DirectPut::build(client, provider, bucket, endpoint, unsigned_payload) {
            Ok(direct) => Some(direct),
            Err(why) => {
                tracing::info!("PutObject goes through the AWS SDK only: {why}");
                None
            }
        }
    }

    fn build(
        client: &aws_sdk_s3::Client,
        provider: SharedCredentialsProvider,
        bucket: &str,
        endpoint: &S3Endpoint,
        unsigned_payload: bool,
    ) -> Result<DirectPut, String> {
        let conf = client.config();
        let region = conf.region().ok_or("no region")?.to_string();
        let params = Params::builder()
            .bucket(bucket)
            .region(region.clone())
            .force_path_style(endpoint.force_path_style)
            .set_endpoint(endpoint.url.clone())
            .build()
            .map_err(|e| e.to_string())?;
        // The SDK's own rules (the service sets no resolver of its own).
        let rules = DefaultResolver::new();
        let resolved = rules
            .resolve_endpoint(&params)
            .now_or_never()
            .ok_or("the endpoint rules did not answer at once")?
            .map_err(|e| format!("no endpoint: {e}"))?;
        if resolved.headers().next().is_some() {
            return Err("the endpoint adds headers".into());
        }
        let (signing_region, signing_name) = sigv4_scheme(resolved.properties().get("authSchemes"))
            .ok_or("the endpoint signs with another scheme than SigV4")?;
        let http = conf.http_client().ok_or("no HTTP client")?;
        let cache = conf.identity_cache().ok_or("no identity cache")?;
        let resolver = SharedIdentityResolver::new(provider);
        // Only what the identity cache and the HTTP client use is real here:
        // the time source, the sleep, the client itself. The rest completes
        // the set the builder requires; nothing here signs or retries
        // through it.
        let sigv4 = AuthSchemeId::new("sigv4");
        let components = RuntimeComponentsBuilder::new("direct_put")
            .with_http_client(Some(http.clone()))
            .with_endpoint_resolver(Some(rules.into_shared_resolver()))
            .with_auth_scheme_option_resolver(Some(StaticAuthSchemeOptionResolver::new(vec![
                sigv4.clone(),
            ])))
            .with_auth_scheme(NoAuthScheme::new())
            .with_identity_cache(Some(cache.clone()))
            .with_identity_resolver(sigv4, resolver.clone())
            .with_retry_strategy(Some(NeverRetryStrategy::new()))
            .with_time_source(Some(conf.time_source().unwrap_or_default()))
            .with_sleep_impl(conf.sleep_impl().or_else(default_async_sleep))
            .build()
            .map_err(|e| e.to_string())?;
        // The same settings as the SDK's (`TimeoutConfig` of the shared
        // configuration over the SDK's defaults): the HTTP client hands out
        // the same cached connector, so both share one connection pool.
        let mut timeouts = conf
            .timeout_config()
            .cloned()
            .unwrap_or_else(|| TimeoutConfig::builder().build());
        timeouts.take_defaults_from(&sdk_default_timeouts());
        let mut settings = HttpConnectorSettings::builder();
        if let Some(t) = timeouts.connect_timeout() {
            settings = settings.connect_timeout(t);
        }
        if let Some(t) = timeouts.read_timeout() {
            settings = settings.read_timeout(t);
        }
        let connector = http.http_connector(&settings.build(), &components);
        let base = resolved.url().trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .map_err(|e| format!("the endpoint {base:?}: {e}"))?;
        let authority = uri.authority().ok_or("the endpoint has no host")?;
        let default_port = match uri.scheme_str() {
            Some("http") => Some(80),
            Some("https") => Some(443),
            _ => return Err("the endpoint is neither http nor https".into()),
        };
        let host = if authority.port_u16().is_some() && authority.port_u16() == default_port {
            authority.host().to_owned()
        } else {
            authority.as_str().to_owned()
        };
        if uri.query().is_some() || authority.as_str().contains('@') {
            return Err("the endpoint has a query or user information".into());
        }
        let region = signing_region.unwrap_or(region);
        let signing_name = signing_name.unwrap_or_else(|| "s3".to_owned());
        Ok(DirectPut {
            base_path: uri.path().trim_end_matches('/').to_owned(),
            host,
            base,
            signer: Signer::new(&region, &signing_name),
            region,
            unsigned_payload,
            retry: conf
                .retry_config()
                .cloned()
                .unwrap_or_else(RetryConfig::standard),
            connector,
            cache,
            resolver,
            components,
            skew_ms: AtomicI64::new(0),
            last_date: Mutex::new(None),
        })
    }

    /// Whether a transient error closes its connection (the retry
    /// configuration's reconnect mode; retry behaviour 2.1 keeps them).
    fn reconnect_on_transient_error(&self) -> bool {
        let keeps = self
            .retry
            .retry_spec()
            .is_some_and(|s| s.is_at_least(RetrySpec::V2_1));
        !keeps && self.retry.reconnect_mode() == ReconnectMode::ReconnectOnTransientError
    }

    /// This clock (the client's time source).
    fn now(&self) -> SystemTime {
        self.components
            .time_source()
            .map_or_else(SystemTime::now, |t| t.now())
    }

    /// Records the skew of S3's clock that answer `resp` (sent at `sent`)
    /// shows, and returns it; `None` when it shows none (no `Date`, a
    /// cached answer, a round trip too long to measure).
    fn measure_skew(
        &self,
        resp: &aws_smithy_runtime_api::http::Response,
        sent: SystemTime,
    ) -> Option<i64> {
        let received = self.now();
        if resp.headers().get("age").is_some() {
            return None;
        }
        let server = self.server_time(resp.headers().get("date")?)?;
        let elapsed = received.duration_since(sent).unwrap_or_default();
        if elapsed > MAX_TRUSTED_REQUEST_DURATION {
            return None;
        }
        let midpoint = sent + elapsed / 2;
        let skew = match server.duration_since(midpoint) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.skew_ms.store(skew, Ordering::Relaxed);
        Some(skew)
    }

    /// The time an answer's `Date` says, `None` when it is not an HTTP date.
    fn server_time(&self, date: &str) -> Option<SystemTime> {
        let mut last = self
            .last_date
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, at)) = &*last {
            if seen == date {
                return Some(*at);
            }
        }
        let at = SystemTime::try_from(DateTime::from_str(date, Format::HttpDate).ok()?).ok()?;
        *last = Some((date.to_owned(), at));
        Some(at)
    }

    /// The time to sign at: this clock moved by the skew last seen.
    fn signing_time(&self) -> SystemTime {
        let now = self.now();
        let skew = self.skew_ms.load(Ordering::Relaxed);
        let by = Duration::from_millis(skew.unsigned_abs());
        if skew >= 0 {
            now.checked_add(by)
        } else {
            now.checked_sub(by)
        }
        .unwrap_or(now)
    }

    /// The SDK's standard backoff after attempt `attempt` (1-based): full
    /// jitter over `initial × 2^(attempt-1)`, capped at the maximum.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .initial_backoff()
            .saturating_mul(1 << (attempt - 1).min(16));
        exp.min(self.retry.max_backoff()).mul_f64(fastrand::f64())
    }

    /// The path of `key` (its full key, prefix included), as sent and
    /// signed.
    fn path(&self, key: &ObjectKey) -> String {
        let mut path = String::with_capacity(self.base_path.len() + 1 + key.full().len() * 3);
        path.push_str(&self.base_path);
        path.push('/');
        path.extend(utf8_percent_encode(key.full(), KEY_ENCODE));
        path
    }

    /// Writes `blocks` (in order, `len` bytes in all) as `key`, with their
    /// CRC32C `crc` for S3 to verify. `None` when the options carry a header
    /// value HTTP cannot send as text: the SDK then does this one.
    pub(crate) async fn put(
        &self,
        key: &ObjectKey,
        blocks: &[Bytes],
        len: u64,
        crc: u32,
        opts: &PutOptions,
    ) -> Option<Result<PutResult, StorageError>> {
        let headers = request_headers(len, crc, opts)?;
        let path = self.path(key);
        let url = [self.base.as_str(), &path[self.base_path.len()..]].concat();
        let payload_hash = if self.unsigned_payload {
            None
        } else {
            let mut h = Sha256::new();
            for b in blocks {
                h.update(b);
            }
            let mut hex = String::with_capacity(64);
            sigv4::push_hex(&mut hex, &h.finalize());
            Some(hex)
        };
        let mut attempt = 1;
        loop {
            let failure = match self
                .attempt(
                    key,
                    (&url, &path),
                    &headers,
                    payload_hash.as_deref(),
                    blocks,
                )
                .await
            {
                Ok(put) => return Some(Ok(put)),
                Err(f) => f,
            };
            match failure {
                Failure::Retry(e) if attempt < self.retry.max_attempts() => {
                    tracing::debug!(key = %key.relative(), attempt, "PutObject retried: {e}");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Failure::Retry(e) | Failure::Final(e) => return Some(Err(e)),
            }
        }
    }

    async fn attempt(
        &self,
        key: &ObjectKey,
        (url, path): (&str, &str),
        headers: &[Header<'_>],
        payload_hash: Option<&str>,
        blocks: &[Bytes],
    ) -> Result<PutResult, Failure> {
        let what = |e: String| format!("PutObject {}: {e}", key.relative());
        let identity = self
            .cache
            .resolve_cached_identity(self.resolver.clone(), &self.components, &ConfigBag::base())
            .await
            // Never retried here, as the SDK does not retry a failed
            // identity (the cache's own load timeout bounds the wait).
            .map_err(|e| match find_sts_error(e.as_ref()) {
                Some(sts) => Failure::Final(StorageError::CredentialsUnavailable(sts.clone())),
                None => Failure::Final(StorageError::Unavailable(what(error_chain(e.as_ref())))),
            })?;
        let creds = identity.data::<Credentials>().ok_or_else(|| {
            Failure::Final(StorageError::Internal(what(
                "the identity is not AWS credentials".into(),
            )))
        })?;
        let payload_hash = payload_hash.unwrap_or("UNSIGNED-PAYLOAD");
        let named: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_ref()))
            .collect();
        let signed = self.signer.sign(
            &sigv4::Request {
                method: "PUT",
                host: &self.host,
                path,
                headers: &named,
                payload_hash,
            },
            self.signing_time(),
            creds,
        );
        let internal = |e: String| Failure::Final(StorageError::Internal(what(e)));
        let value = |v: &str| HeaderValue::from_str(v).map_err(|e| internal(e.to_string()));
        let mut map = http::HeaderMap::with_capacity(headers.len() + 5);
        for (n, v) in headers {
            map.append(n.clone(), value(v)?);
        }
        map.append(http::header::HOST, value(&self.host)?);
        map.append(X_AMZ_CONTENT_SHA256, value(payload_hash)?);
        map.append(X_AMZ_DATE, value(&signed.amz_date)?);
        map.append(http::header::AUTHORIZATION, value(&signed.authorization)?);
        if let Some(token) = creds.session_token() {
            map.append(X_AMZ_SECURITY_TOKEN, value(token)?);
        }
        let mut req = http::Request::new(request_body(blocks));
        *req.method_mut() = http::Method::PUT;
        *req.uri_mut() = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| internal(e.to_string()))?;
        *req.headers_mut() = map;
        // (An `http` request converted, rather than the connector's own type
        // built: its header insertion checks each value twice.)
        let mut req: aws_smithy_runtime_api::http::Request =
            req.try_into()
                .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                    Failure::Final(StorageError::Internal(what(e.to_string())))
                })?;
        // The connection the answer came on, closed after a transient
        // error (the SDK's connection poisoning).
        let connection = CaptureSmithyConnection::new();
        req.add_extension(connection.clone());
        let sent = self.now();
        let resp = self.connector.call(req).await.map_err(|e| {
            let message = what(error_chain(&e));
            if e.is_timeout() {
                Failure::Retry(StorageError::Unavailable(what("timed out".into())))
            } else if e.is_io() || e.as_other().is_some() {
                // As the SDK's transient classifier: an I/O failure, or one
                // the connector names retryable (the connection closed
                // before the answer came, hyper's `IncompleteMessage`).
                Failure::Retry(StorageError::Unavailable(message))
            } else {
                Failure::Final(StorageError::Unavailable(message))
            }
        })?;
        let skew = self.measure_skew(&resp, sent);
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            let header = |n: &str| resp.headers().get(n).map(str::to_owned);
            return Ok(PutResult {
                key: key.relative().to_owned(),
                etag: header("etag"),
                version_id: header("x-amz-version-id"),
            });
        }
        let body = read_limited(resp.into_body()).await;
        let (code, message) = error_fields(&body);
        let e = classify_status("PutObject", key.relative(), status, code, message);
        // A signature refused while S3's clock is far from this one: the
        // next attempt signs at S3's time, as the SDK's does.
        let skewed = skew
            .is_some_and(|s| s.unsigned_abs() > SKEW_DETECTION_THRESHOLD.as_millis() as u64)
            && CLOCK_SKEW_ERROR_CODES.contains(&code);
        if !skewed && transient(status, code) && self.reconnect_on_transient_error() {
            if let Some(c) = connection.get() {
                c.poison();
            }
        }
        Err(if retryable(status, code) || skewed {
            Failure::Retry(e)
        } else {
            Failure::Final(e)
        })
    }
}

/// The timeouts the SDK sets where the configuration sets none: a connect
/// timeout of 3.1 s for behaviour versions from 2026-01-12 on (the service
/// uses the latest).
fn sdk_default_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(3100))
        .build()
}

/// The signing region and name of the endpoint's SigV4 scheme (`None`s when
/// it names none), or `None` when its first scheme is another (SigV4a, S3
/// Express).
#[allow(clippy::type_complexity)]
fn sigv4_scheme(schemes: Option<&Document>) -> Option<(Option<String>, Option<String>)> {
    let Some(Document::Array(schemes)) = schemes else {
        return Some((None, None));
    };
    let Some(Document::Object(first)) = schemes.first() else {
        return Some((None, None));
    };
    let text = |k: &str| match first.get(k) {
        Some(Document::String(s)) => Some(s.clone()),
        _ => None,
    };
    (text("name").as_deref() == Some("sigv4")).then(|| (text("signingRegion"), text("signingName")))
}

/// A header of the request: name (lower-case) and value.
type Header<'a> = (HeaderName, Cow<'a, str>);

const X_AMZ_CHECKSUM_CRC32C: HeaderName = HeaderName::from_static("x-amz-checksum-crc32c");
const X_AMZ_SDK_CHECKSUM_ALGORITHM: HeaderName =
    HeaderName::from_static("x-amz-sdk-checksum-algorithm");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");
const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");

/// The headers of the PutObject (all signed), or `None` when a value is
/// not text that goes into a header unchanged.
fn request_headers(len: u64, crc: u32, opts: &PutOptions) -> Option<Vec<Header<'_>>> {
    use http::header;
    let h = &opts.headers;
    let mut out: Vec<Header<'_>> = Vec::with_capacity(8 + h.metadata.len());
    out.push((header::CONTENT_LENGTH, len.to_string().into()));
    out.push((X_AMZ_CHECKSUM_CRC32C, crc32c_base64(crc).into()));
    out.push((X_AMZ_SDK_CHECKSUM_ALGORITHM, "CRC32C".into()));
    let system = [
        (header::CONTENT_TYPE, &h.content_type),
        (header::CONTENT_ENCODING, &h.content_encoding),
        (header::CONTENT_DISPOSITION, &h.content_disposition),
        (header::CACHE_CONTROL, &h.cache_control),
        (header::CONTENT_LANGUAGE, &h.content_language),
    ];
    for (name, value) in system {
        if let Some(v) = value {
            out.push((name, v.as_str().into()));
        }
    }
    if opts.if_none_match {
        out.push((header::IF_NONE_MATCH, "*".into()));
    }
    if let Some(etag) = &opts.if_match {
        out.push((header::IF_MATCH, etag.as_str().into()));
    }
    for (name, value) in &h.metadata {
        // Names arrive lower-case; one that is not could repeat another
        // once lowered, which SigV4 would sign as one header: the SDK then
        // writes it as it always did.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let name = format!("x-amz-meta-{name}");
        let parsed = HeaderName::from_bytes(name.as_bytes()).ok()?;
        if parsed.as_str() != name {
            return None;
        }
        out.push((parsed, value.as_str().into()));
    }
    out.iter().all(|(_, v)| sendable(v)).then_some(out)
}

/// True when `v` goes into a header as it is: visible ASCII and spaces,
/// no leading or trailing space (which signing would trim).
fn sendable(v: &str) -> bool {
    v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) && v.trim() == v && !v.contains("  ")
}

/// The body of one attempt: the blocks themselves, in order (no copy: a
/// body held in blocks, up to `SYNC_INLINE_BYTES` or a whole first part,
/// is reserved once from the buffer budget, and a joined copy would be
/// outside it).
pub(super) fn request_body(blocks: &[Bytes]) -> SdkBody {
    match blocks {
        [] => SdkBody::from(Bytes::new()),
        [one] => SdkBody::from(one.clone()),
        many => super::upload::blocks_body(many),
    }
}

/// The error codes the SDK's classifiers name throttling.
const THROTTLING_ERRORS: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// The error codes the SDK's classifiers name transient (PutObject's list
/// adds `InternalError`).
const TRANSIENT_ERRORS: &[&str] = &["RequestTimeout", "RequestTimeoutException", "InternalError"];

/// Whether the SDK's standard retry mode tries again after this answer:
/// 500, 502, 503, 504, and the throttling and transient error codes. A 429
/// is retried by its code, not by its status.
fn retryable(status: u16, code: &str) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
        || THROTTLING_ERRORS.contains(&code)
        || TRANSIENT_ERRORS.contains(&code)
}

/// Whether the SDK names this answer a transient error (not throttling),
/// after which it does not use the connection again.
fn transient(status: u16, code: &str) -> bool {
    !THROTTLING_ERRORS.contains(&code)
        && (matches!(status, 500 | 502 | 503 | 504) || TRANSIENT_ERRORS.contains(&code))
}

async fn read_limited(body: SdkBody) -> Bytes {
    let limited = http_body_util::Limited::new(body, MAX_ERROR_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

/// `Code` and `Message` of an S3 error document (empty when absent).
fn error_fields(body: &[u8]) -> (&str, &str) {
    let text = std::str::from_utf8(body).unwrap_or("");
    (element(text, "Code"), element(text, "Message"))
}

fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.find(&open)
        .map(|i| &xml[i + open.len()..])
        .and_then(|rest| rest.find(&close).map(|j| &rest[..j]))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_metadata(pairs: &[(&str, &str)]) -> PutOptions {
        let mut opts = PutOptions::default();
        for (k, v) in pairs {
            opts.headers.metadata.insert((*k).into(), (*v).into());
        }
        opts
    }

    #[test]
    fn headers_signing_would_change_are_left_to_the_sdk() {
        let sent = |opts: &PutOptions| request_headers(3, 0, opts).is_some();
        assert!(sent(&with_metadata(&[("team", "data eng")])));
        // Two names that lower to one; values SigV4 would trim or fold.
        assert!(!sent(&with_metadata(&[("Team", "a"), ("team", "b")])));
        assert!(!sent(&with_metadata(&[("team", " a")])));
        assert!(!sent(&with_metadata(&[("team", "a  b")])));
        assert!(!sent(&with_metadata(&[("team", "caf\u{e9}")])));
        assert!(!sent(&with_metadata(&[("team", "a\tb")])));
        assert!(!sent(&with_metadata(&[("bad name", "a")])));
        let etag = PutOptions {
            if_match: Some("\"e\"\r\nx-evil: 1".into()),
            ..PutOptions::default()
        };
        assert!(!sent(&etag));
    }
}
