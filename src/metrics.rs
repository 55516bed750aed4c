//! The service's metrics (SPEC §11), exported over OTLP/HTTP protobuf by
//! the OpenTelemetry SDK when an endpoint is set, and the handles that the
//! rest of the service records through.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318    # /v1/metrics is appended
//! OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://host:4318/v1/metrics   # used as is
//! OTEL_EXPORTER_OTLP_HEADERS=x-api-key=...             # extra request headers
//! OTEL_METRIC_EXPORT_INTERVAL=60000                    # ms between exports
//! OTEL_SERVICE_NAME=gcp-aws-bridge                     # the default here
//! OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod
//! ```
//!
//! Without either endpoint variable no exporter is built and nothing is
//! sent: the instruments come from OpenTelemetry's global no-op meter, and
//! the recording functions below cost an atomic load or a no-op call.
//!
//! | instrument | kind | attributes |
//! |---|---|---|
//! | `bridge.replication.objects` | counter | `result` (replicated, up_to_date, deleted, not_a_replica, failed), `reason` on failure |
//! | `bridge.replication.bytes` | counter, By | |
//! | `bridge.replication.lag` | histogram, s | |
//! | `bridge.requests` | counter | `route`, `status_class` |
//! | `bridge.sts.assume_duration` | histogram, s | |
//! | `bridge.credentials.expires_in` | gauge, s | |
//! | `bridge.budget.in_use` | gauge, By | |
//! | `bridge.sync.objects` | counter | `action` (copied, deleted, in_sync) |
//!
//! The SDK's periodic reader exports from a thread of its own; its HTTP
//! requests are sent by the service's reqwest client on the tokio runtime
//! that [`init`] was called on. [`Exporting::shutdown`] exports once more.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::KeyValue;

use crate::budget::BufferBudget;

/// The name of the meter and the default `service.name`.
const SERVICE: &str = "gcp-aws-bridge";

/// Whether an exporter was installed: request attributes are built only
/// then.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// When the credentials last issued expire (Unix seconds; 0: none yet).
static CREDENTIALS_EXPIRE_AT: AtomicI64 = AtomicI64::new(0);
/// The buffer budget watched by `bridge.budget.in_use`.
static BUDGET: OnceLock<BufferBudget> = OnceLock::new();
static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();

/// The synchronous instruments; the gauges are observed by callbacks.
struct Instruments {
    objects: Counter<u64>,
    bytes: Counter<u64>,
    lag: Histogram<f64>,
    requests: Counter<u64>,
    sts: Histogram<f64>,
    sync_objects: Counter<u64>,
}

impl Instruments {
    fn new(meter: &Meter) -> Instruments {
        meter
            .f64_observable_gauge("bridge.credentials.expires_in")
            .with_unit("s")
            .with_description("Seconds until the AWS credentials last issued expire")
            .with_callback(|o| {
                let at = CREDENTIALS_EXPIRE_AT.load(Ordering::Relaxed);
                if at > 0 {
                    o.observe(at as f64 - unix_now(SystemTime::now()), &[]);
                }
            })
            .build();
        meter
            .u64_observable_gauge("bridge.budget.in_use")
            .with_unit("By")
            .with_description("Bytes reserved in the buffer budget")
            .with_callback(|o| {
                if let Some(b) = BUDGET.get() {
                    o.observe(b.total().saturating_sub(b.available()), &[]);
                }
            })
            .build();
        Instruments {
            objects: meter
                .u64_counter("bridge.replication.objects")
                .with_description("Replication outcomes, by result")
                .build(),
            bytes: meter
                .u64_counter("bridge.replication.bytes")
                .with_unit("By")
                .with_description("Bytes written to S3 by replication")
                .build(),
            lag: meter
                .f64_histogram("bridge.replication.lag")
                .with_unit("s")
                .with_description("Seconds from an object's update to its replica's commit")
                .with_boundaries(vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                    3600.0, 21600.0, 86400.0,
                ])
                .build(),
            requests: meter
                .u64_counter("bridge.requests")
                .with_description("Requests served, by route and status class")
                .build(),
            sts: meter
                .f64_histogram("bridge.sts.assume_duration")
                .with_unit("s")
                .with_description("Duration of STS AssumeRoleWithWebIdentity calls")
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
            sync_objects: meter
                .u64_counter("bridge.sync.objects")
                .with_description("Objects a sync page found, by action")
                .build(),
        }
    }
}

/// The instruments, made from the global meter on first use: no-op unless
/// [`init`] installed an exporter before.
fn instruments() -> &'static Instruments {
    INSTRUMENTS.get_or_init(|| Instruments::new(&opentelemetry::global::meter(SERVICE)))
}

fn unix_now(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Counts a replication outcome: `result` is one of replicated,
/// up_to_date, deleted, not_a_replica.
pub(crate) fn replication(result: &'static str) {
    instruments()
        .objects
        .add(1, &[KeyValue::new("result", result)]);
}

/// Counts a failed replication; `reason` is the error code answered.
pub(crate) fn replication_failed(reason: &'static str) {
    instruments().objects.add(
        1,
        &[
            KeyValue::new("result", "failed"),
            KeyValue::new("reason", reason),
        ],
    );
}

/// Bytes written to S3 by replication.
pub(crate) fn replication_bytes(bytes: u64) {
    instruments().bytes.add(bytes, &[]);
}

/// A replica committed: its bytes, and the lag from the object's `updated`
/// time (RFC 3339), when known.
pub(crate) fn replica_committed(bytes: u64, updated: Option<&str>) {
    replication_bytes(bytes);
    if let Some(lag) = updated.and_then(|u| lag_since(u, SystemTime::now())) {
        instruments().lag.record(lag, &[]);
    }
}

/// Seconds from `updated` (RFC 3339) to `now`; never negative.
fn lag_since(updated: &str, now: SystemTime) -> Option<f64> {
    let t = time::OffsetDateTime::parse(updated, &time::format_description::well_known::Rfc3339)
        .ok()?;
    let at = t.unix_timestamp_nanos() as f64 / 1e9;
    Some((unix_now(now) - at).max(0.0))
}

/// Whether request attributes are worth building.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Counts a request answered with `status` on the route template `route`.
pub(crate) fn request(route: &str, status: u16) {
    if !enabled() {
        return;
    }
    const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let class = CLASSES[usize::from(status / 100).min(5)];
    instruments().requests.add(
        1,
        &[
            KeyValue::new("route", route.to_owned()),
            KeyValue::new("status_class", class),
        ],
    );
}

/// One STS AssumeRoleWithWebIdentity call and how long it took.
pub(crate) fn sts_assumed(took: Duration) {
    instruments().sts.record(took.as_secs_f64(), &[]);
}

/// Credentials were issued that expire at `at`.
pub(crate) fn credentials_expire_at(at: SystemTime) {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    CREDENTIALS_EXPIRE_AT.store(secs, Ordering::Relaxed);
}

/// What a sync page found: objects to copy, replicas to delete, objects in
/// sync.
pub(crate) fn sync_page(copied: u64, deleted: u64, in_sync: u64) {
    let c = &instruments().sync_objects;
    for (n, action) in [
        (copied, "copied"),
        (deleted, "deleted"),
        (in_sync, "in_sync"),
    ] {
        if n > 0 {
            c.add(n, &[KeyValue::new("action", action)]);
        }
    }
}

/// Has `bridge.budget.in_use` observe `budget` (the first one given).
pub fn watch_budget(budget: &BufferBudget) {
    let _ = BUDGET.set(budget.clone());
}

/// The exporter installed by [`init`], if any.
#[must_use = "shutting down exports the last figures"]
pub struct Exporting(Option<opentelemetry_sdk::metrics::SdkMeterProvider>);

impl Exporting {
    /// Whether metrics are exported.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Exports once more and stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.0 else { return };
        // The SDK blocks this thread until its reader thread has exported,
        // which needs the runtime's workers: not on one of them.
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => tracing::debug!("metrics exported at shutdown"),
            Ok(Err(e)) => tracing::warn!("the last export of metrics failed: {e}"),
            Err(e) => tracing::warn!("the last export of metrics failed: {e}"),
        }
    }
}

/// Whether `env` names an OTLP metrics endpoint.
fn endpoint_set(env: &dyn Fn(&str) -> Option<String>) -> bool {
    [
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| env(k).is_some_and(|v| !v.trim().is_empty()))
}

/// Installs the OTLP exporter as the global meter provider when an
/// endpoint variable is set; else does nothing. Call it on the tokio
/// runtime, before anything records.
pub fn init() -> Result<Exporting, String> {
    let env = |k: &str| std::env::var(k).ok();
    if !endpoint_set(&env) {
        return Ok(Exporting(None));
    }
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let client = ReqwestClient {
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("gcp-aws-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("metrics: HTTP client: {e}"))?,
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|e| format!("metrics: no tokio runtime: {e}"))?,
    };
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(client)
        .build()
        .map_err(|e| format!("metrics: OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name(SERVICE);
    }
    let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_periodic_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    ENABLED.store(true, Ordering::Relaxed);
    // Made now, so that the gauges are observed from the first export.
    let _ = instruments();
    Ok(Exporting(Some(provider)))
}

/// The exporter's HTTP client: the service's reqwest, its requests run on
/// the service's runtime (the SDK's reader thread has none).
#[derive(Debug)]
struct ReqwestClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// The most of an OTLP answer read (a partial-success message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ReqwestClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let sent = self.runtime.spawn(async move {
            let req = reqwest::Request::try_from(request)?;
            let resp = http.execute(req).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = crate::util::read_limited(resp, MAX_ANSWER_BYTES).await?;
            let mut out = http::Response::new(body);
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            Ok::<_, opentelemetry_http::HttpError>(out)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_variable_turns_export_on() {
        let none = |_: &str| None;
        assert!(!endpoint_set(&none));
        let blank = |_: &str| Some(" ".to_owned());
        assert!(!endpoint_set(&blank));
        let general = |k: &str| (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://x".into());
        assert!(endpoint_set(&general));
        let metrics =
            |k: &str| (k == "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").then(|| "http://x".into());
        assert!(endpoint_set(&metrics));
    }

    #[test]
    fn lag_is_counted_from_the_update_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_010);
        let lag = lag_since("2023-11-14T22:13:20.500Z", now).unwrap();
        assert!((lag - 9.5).abs() < 1e-6, "{lag}");
        assert_eq!(lag_since("2999-01-01T00:00:00Z", now), Some(0.0));
        assert_eq!(lag_since("yesterday", now), None);
    }
}
