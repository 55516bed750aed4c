//! Logging: JSON lines on stdout in Cloud Logging's structured form
//! (`severity`, `message`, `time`, `logging.googleapis.com/trace`,
//! `logging.googleapis.com/spanId`, `httpRequest`), or plain text for people
//! (`LOG_FORMAT=text`). `RUST_LOG` filters (default `info`).
//!
//! Spans may carry `trace_id`, `span_id` and `trace_sampled`; every event
//! inside such a span is correlated with the trace. An event with
//! `http.method` and `http.status` fields becomes an `httpRequest` entry.

use std::io::Write;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::util::rfc3339;
use serde::Deserialize;

/// Installs the global subscriber writing to stdout.
pub fn init(format: LogFormat, project: Option<String>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(CloudLogging::new(project, std::io::stdout))
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(std::io::stdout),
            )
            .init(),
    }
}

/// A layer writing Cloud Logging structured JSON lines.
pub(crate) struct CloudLogging<W> {
    project: Option<String>,
    writer: W,
}

impl<W> CloudLogging<W> {
    /// Lines go to `writer`; `project` completes trace names.
    pub(crate) fn new(project: Option<String>, writer: W) -> Self {
        CloudLogging { project, writer }
    }
}

#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

const HTTP_FIELDS: [(&str, &str); 7] = [
    ("http.method", "requestMethod"),
    ("http.url", "requestUrl"),
    ("http.status", "status"),
    ("http.user_agent", "userAgent"),
    ("http.remote_ip", "remoteIp"),
    ("http.protocol", "protocol"),
    ("http.response_size", "responseSize"),
];

impl<S, W> Layer<S> for CloudLogging<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut out = Map::new();
        out.insert("severity".into(), severity(event.metadata().level()).into());
        out.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or(Value::from("")),
        );
        out.insert("time".into(), rfc3339(SystemTime::now()).into());
        out.insert("target".into(), event.metadata().target().into());

        let mut span_fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    span_fields.extend(f.0.clone());
                }
            }
        }
        if let Some(Value::String(trace)) = span_fields.remove("trace_id") {
            let name = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            out.insert("logging.googleapis.com/trace".into(), name.into());
        }
        if let Some(span_id) = span_fields.remove("span_id") {
            out.insert("logging.googleapis.com/spanId".into(), span_id);
        }
        if let Some(sampled) = span_fields.remove("trace_sampled") {
            out.insert("logging.googleapis.com/trace_sampled".into(), sampled);
        }

        if fields.0.contains_key("http.method") && fields.0.contains_key("http.status") {
            let mut http = Map::new();
            for (from, to) in HTTP_FIELDS {
                if let Some(v) = fields.0.remove(from) {
                    http.insert(to.into(), v);
                }
            }
            if let Some(ms) = fields.0.remove("http.latency_ms").and_then(|v| v.as_f64()) {
                http.insert("latency".into(), format!("{:.6}s", ms / 1000.0).into());
            }
            out.insert("httpRequest".into(), Value::Object(http));
        }
        for (k, v) in span_fields.into_iter().chain(fields.0) {
            out.entry(k).or_insert(v);
        }

        let mut line = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
        line.push(b'\n');
        let _ = self.writer.make_writer().write_all(&line);
    }
}

/// Parses `traceparent` (W3C) or `X-Cloud-Trace-Context` into
/// `(trace_id, span_id, sampled)`.
pub(crate) fn parse_trace_context(
    traceparent: Option<&str>,
    cloud: Option<&str>,
) -> Option<(String, Option<String>, bool)> {
    if let Some(tp) = traceparent {
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if parts.len() >= 4
            && parts[1].len() == 32
            && parts[1].bytes().all(|b| b.is_ascii_hexdigit())
            && parts[1] != "00000000000000000000000000000000"
            && parts[2].len() == 16
            && parts[2].bytes().all(|b| b.is_ascii_hexdigit())
        {
            let sampled = u8::from_str_radix(parts[3], 16)
                .map(|f| f & 1 == 1)
                .unwrap_or(false);
            return Some((
                parts[1].to_ascii_lowercase(),
                Some(parts[2].to_ascii_lowercase()),
                sampled,
            ));
        }
    }
    if let Some(c) = cloud {
        // TRACE_ID/SPAN_ID;o=OPTIONS, span id in decimal.
        let (ids, opts) = c.trim().split_once(';').unwrap_or((c.trim(), ""));
        let (trace, span) = ids
            .split_once('/')
            .map(|(t, s)| (t, Some(s)))
            .unwrap_or((ids, None));
        if trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) {
            let span = span
                .and_then(|s| s.parse::<u64>().ok())
                .map(|s| format!("{s:016x}"));
            return Some((trace.to_ascii_lowercase(), span, opts.contains("o=1")));
        }
    }
    None
}

/// Log line format (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Cloud Logging structured JSON, one object a line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Log lines (`telemetry`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TelemetrySettings {
    /// `LOG_FORMAT`: json (default) | text.
    #[serde(default)]
    pub log_format: LogFormat,
    /// `GOOGLE_CLOUD_PROJECT`: project id for trace correlation.
    pub google_cloud_project: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn json_lines_have_severity_trace_and_http_request() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry()
            .with(CloudLogging::new(Some("proj".into()), buf.clone()));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!(
                "request",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                trace_sampled = true
            );
            let _g = span.enter();
            tracing::warn!(key = "k", "something odd");
            tracing::info!(
                http.method = "PUT",
                http.url = "/v1/objects/a",
                http.status = 201u64,
                http.latency_ms = 1.5f64,
                "request served"
            );
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["severity"], "WARNING");
        assert_eq!(lines[0]["message"], "something odd");
        assert_eq!(lines[0]["key"], "k");
        assert_eq!(
            lines[0]["logging.googleapis.com/trace"],
            "projects/proj/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            lines[0]["logging.googleapis.com/spanId"],
            "00f067aa0ba902b7"
        );
        assert_eq!(lines[1]["httpRequest"]["requestMethod"], "PUT");
        assert_eq!(lines[1]["httpRequest"]["status"], 201);
        assert_eq!(lines[1]["httpRequest"]["latency"], "0.001500s");
    }

    #[test]
    fn trace_headers() {
        let (t, s, sampled) = parse_trace_context(
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None,
        )
        .unwrap();
        assert_eq!(t, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.as_deref(), Some("00f067aa0ba902b7"));
        assert!(sampled);
        let (t, s, sampled) =
            parse_trace_context(None, Some("105445aa7843bc8bf206b12000100000/1;o=1")).unwrap();
        assert_eq!(t, "105445aa7843bc8bf206b12000100000");
        assert_eq!(s.as_deref(), Some("0000000000000001"));
        assert!(sampled);
        assert!(parse_trace_context(Some("garbage"), Some("also/garbage")).is_none());
    }
}
