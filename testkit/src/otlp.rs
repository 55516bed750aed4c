//! [`OtlpReceiver`]: an OpenTelemetry collector's OTLP/HTTP metrics
//! endpoint. `POST /v1/metrics` with `Content-Type: application/x-protobuf`
//! is decoded as an `ExportMetricsServiceRequest` and kept; the answer is an
//! empty `ExportMetricsServiceResponse` (200). A body that does not decode
//! answers 400, another content type 415 (as a collector does).
//!
//! Not emulated: OTLP/JSON, gRPC, compressed bodies (`Content-Encoding`
//! answers 415), partial success, the other signals.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use prost::Message;

/// One data point as received: its metric, attributes and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Metric name.
    pub metric: String,
    /// Attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// A sum's or gauge's value, or a histogram's count.
    pub value: f64,
    /// A histogram's sum of values.
    pub sum: Option<f64>,
}

/// What one export request carried.
#[derive(Debug, Clone, Default)]
pub struct Export {
    /// Resource attributes, values as text.
    pub resource: BTreeMap<String, String>,
    /// Every data point.
    pub points: Vec<Point>,
}

#[derive(Default)]
struct Received {
    exports: Vec<Export>,
    /// Requests of any kind, refused ones included.
    requests: usize,
}

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(v: Option<&AnyValue>) -> String {
    match v {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(
    kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
            (kv.key.clone(), text(v))
        })
        .collect()
}

fn number(v: Option<Number>) -> f64 {
    match v {
        Some(Number::AsDouble(d)) => d,
        Some(Number::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

/// The data points of a request, flattened.
fn flatten(req: &ExportMetricsServiceRequest) -> Vec<Export> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        let resource = rm
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let mut points = Vec::new();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let point = |attrs: &[_], value: f64, sum: Option<f64>| Point {
                    metric: m.name.clone(),
                    attributes: attributes(attrs),
                    value,
                    sum,
                };
                match &m.data {
                    Some(Data::Sum(s)) => points.extend(
                        s.data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(p.value), None)),
                    ),
                    Some(Data::Gauge(g)) => points.extend(
                        g.data_points
                            .iter()
                            .map(|p| point(&p.attributes, number(p.value), None)),
                    ),
                    Some(Data::Histogram(h)) => points.extend(
                        h.data_points
                            .iter()
                            .map(|p| point(&p.attributes, p.count as f64, p.sum)),
                    ),
                    _ => {}
                }
            }
        }
        out.push(Export { resource, points });
    }
    out
}

async fn metrics(
    State(received): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let ct = [(header::CONTENT_TYPE, "application/x-protobuf")];
    received.lock().unwrap().requests += 1;
    let is_proto = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-protobuf"));
    if !is_proto || headers.contains_key(header::CONTENT_ENCODING) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, ct, Vec::new());
    }
    let Ok(req) = ExportMetricsServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, ct, Vec::new());
    };
    received.lock().unwrap().exports.extend(flatten(&req));
    (
        StatusCode::OK,
        ct,
        ExportMetricsServiceResponse::default().encode_to_vec(),
    )
}

impl OtlpReceiver {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        OtlpReceiver::serve(listener)
    }

    /// Listens on `127.0.0.1:port` (the OTLP default, 4318, to see what a
    /// service sends with no endpoint set); `None` when the port is taken.
    pub async fn start_on(port: u16) -> Option<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .ok()?;
        Some(OtlpReceiver::serve(listener))
    }

    fn serve(listener: tokio::net::TcpListener) -> OtlpReceiver {
        let received = Arc::new(Mutex::new(Received::default()));
        let app = Router::new()
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received, refused ones included.
    pub fn requests(&self) -> usize {
        self.received.lock().unwrap().requests
    }

    /// Every export received so far.
    pub fn exports(&self) -> Vec<Export> {
        self.received.lock().unwrap().exports.clone()
    }

    /// The points of `metric` in the latest export that has it (cumulative
    /// figures: the latest holds the totals) whose attributes include
    /// every one of `attrs`.
    pub fn points(&self, metric: &str, attrs: &[(&str, &str)]) -> Vec<Point> {
        let got = self.received.lock().unwrap();
        let Some(export) = got
            .exports
            .iter()
            .rev()
            .find(|e| e.points.iter().any(|p| p.metric == metric))
        else {
            return Vec::new();
        };
        export
            .points
            .iter()
            .filter(|p| p.metric == metric)
            .filter(|p| {
                attrs
                    .iter()
                    .all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v))
            })
            .cloned()
            .collect()
    }

    /// The sum of the values of [`OtlpReceiver::points`] (a counter's total,
    /// a histogram's count); 0 when there are none.
    pub fn total(&self, metric: &str, attrs: &[(&str, &str)]) -> f64 {
        self.points(metric, attrs).iter().map(|p| p.value).sum()
    }

    /// Polls every 50 ms until `ready` holds or `timeout` passes; whether
    /// it held.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        ready: impl Fn(&OtlpReceiver) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if ready(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
    use opentelemetry_proto::tonic::metrics::v1::{
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };

    fn request(value: i64) -> ExportMetricsServiceRequest {
        let point = NumberDataPoint {
            attributes: vec![KeyValue {
                key: "result".into(),
                value: Some(Any {
                    value: Some(AnyValue::StringValue("replicated".into())),
                }),
                ..Default::default()
            }],
            value: Some(Number::AsInt(value)),
            ..Default::default()
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "bridge.replication.objects".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![point],
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn keeps_the_points_of_the_latest_export() {
        let rx = OtlpReceiver::start().await;
        let http = reqwest::Client::new();
        let url = format!("{}/v1/metrics", rx.endpoint());
        for v in [2, 5] {
            let r = http
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(request(v).encode_to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let r = http
            .post(&url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415);
        let r = http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(vec![0xff, 0xff, 0xff])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(rx.requests(), 4);
        assert_eq!(rx.exports().len(), 2);
        assert_eq!(
            rx.total("bridge.replication.objects", &[("result", "replicated")]),
            5.0
        );
        assert_eq!(
            rx.total("bridge.replication.objects", &[("result", "failed")]),
            0.0
        );
    }
}
