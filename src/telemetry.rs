//! Logging: JSON lines on stdout in Cloud Logging's structured form
//! (`severity`, `message`, `time`, `logging.googleapis.com/trace`,
//! `logging.googleapis.com/spanId`, `httpRequest`), or plain text for people
//! (`LOG_FORMAT=text`). `RUST_LOG` filters (default `info`).
//!
//! Spans may carry `trace_id`, `span_id` and `trace_sampled`; every event
//! inside such a span is correlated with the trace. An event with
//! `http.method` and `http.status` fields becomes an `httpRequest` entry.
//!
//! A span with an `operation` field (see [`operation`]) groups its lines:
//! each carries `logging.googleapis.com/operation` `{id, producer}`, the
//! first one with `first: true`, the last one with `last: true` (the
//! request line of a request span, else a closing line written when the
//! span ends). `operation_first = false` / `operation_last = false` say that
//! the span neither opens nor closes its operation (a sync page after the
//! first, a part task).
//!
//! Trace context travels with the service's own tasks: [`current_traceparent`]
//! is the W3C `traceparent` of the current request, which the publisher
//! sets as a message attribute, and [`continue_trace`] makes a delivered
//! message's `traceparent` the trace of the request that handles it.

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
            .with(SpanFields)
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

/// The fields recorded on a span (in its extensions).
#[derive(Default)]
struct Fields(Map<String, Value>);

/// Which lines of an operation span were written.
#[derive(Default)]
struct OperationLines {
    /// One line at least.
    written: bool,
    /// The line marked `last`.
    closed: bool,
}

/// The producer of every operation.
const PRODUCER: &str = "gcp-aws-bridge";

/// Records the fields of each span, for [`current_traceparent`], when the
/// lines are plain text (the JSON layer records them itself).
struct SpanFields;

fn capture_new<S>(
    attrs: &tracing::span::Attributes<'_>,
    id: &tracing::span::Id,
    ctx: &Context<'_, S>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if let Some(span) = ctx.span(id) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }
}

fn capture_record<S>(
    id: &tracing::span::Id,
    values: &tracing::span::Record<'_>,
    ctx: &Context<'_, S>,
) where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    if let Some(span) = ctx.span(id) {
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<Fields>() {
            values.record(fields);
        }
    }
}

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        capture_new(attrs, id, &ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        capture_record(id, values, &ctx);
    }
}

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

impl<W> CloudLogging<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    /// Writes one line: `fields` of the event, `span_fields` of its spans
    /// (root first), `operation` when it belongs to one.
    fn write(
        &self,
        level: &Level,
        target: &str,
        mut fields: Map<String, Value>,
        mut span_fields: Map<String, Value>,
        operation: Option<Value>,
    ) {
        let mut out = Map::new();
        out.insert("severity".into(), severity(level).into());
        out.insert(
            "message".into(),
            fields.remove("message").unwrap_or(Value::from("")),
        );
        out.insert("time".into(), rfc3339(SystemTime::now()).into());
        out.insert("target".into(), target.into());
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
        for k in ["operation", "operation_first", "operation_last"] {
            span_fields.remove(k);
        }
        if let Some(op) = operation {
            out.insert("logging.googleapis.com/operation".into(), op);
        }

        if fields.contains_key("http.method") && fields.contains_key("http.status") {
            let mut http = Map::new();
            for (from, to) in HTTP_FIELDS {
                if let Some(v) = fields.remove(from) {
                    http.insert(to.into(), v);
                }
            }
            if let Some(ms) = fields.remove("http.latency_ms").and_then(|v| v.as_f64()) {
                http.insert("latency".into(), format!("{:.6}s", ms / 1000.0).into());
            }
            out.insert("httpRequest".into(), Value::Object(http));
        }
        for (k, v) in span_fields.into_iter().chain(fields) {
            out.entry(k).or_insert(v);
        }

        let mut line = serde_json::to_vec(&Value::Object(out)).unwrap_or_default();
        line.push(b'\n');
        let _ = self.writer.make_writer().write_all(&line);
    }
}

/// The `logging.googleapis.com/operation` value.
fn operation_value(id: Value, first: bool, last: bool) -> Value {
    let mut op = Map::new();
    op.insert("id".into(), id);
    op.insert("producer".into(), PRODUCER.into());
    if first {
        op.insert("first".into(), true.into());
    }
    if last {
        op.insert("last".into(), true.into());
    }
    Value::Object(op)
}

/// The operation id of a span and whether it opens and closes it.
fn operation_of(fields: &Fields) -> Option<(Value, bool, bool)> {
    let id = fields.0.get("operation")?.clone();
    let opens = fields.0.get("operation_first") != Some(&Value::Bool(false));
    let closes = fields.0.get("operation_last") != Some(&Value::Bool(false));
    Some((id, opens, closes))
}

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
        capture_new(attrs, id, &ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        capture_record(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut span_fields = Map::new();
        let mut operation = None;
        if let Some(scope) = ctx.event_scope(event) {
            let spans: Vec<_> = scope.from_root().collect();
            for span in &spans {
                if let Some(f) = span.extensions().get::<Fields>() {
                    span_fields.extend(f.0.clone());
                }
            }
            // The innermost span of an operation holds its lines' state.
            for span in spans.iter().rev() {
                let found = span.extensions().get::<Fields>().and_then(operation_of);
                if let Some((id, opens, closes)) = found {
                    let request_line = fields.0.contains_key("http.status");
                    let mut ext = span.extensions_mut();
                    if ext.get_mut::<OperationLines>().is_none() {
                        ext.insert(OperationLines::default());
                    }
                    let lines = ext.get_mut::<OperationLines>().expect("inserted above");
                    let first = opens && !lines.written;
                    let last = closes && request_line && !lines.closed;
                    lines.written = true;
                    lines.closed |= last;
                    operation = Some(operation_value(id, first, last));
                    break;
                }
            }
        }
        let meta = event.metadata();
        self.write(
            meta.level(),
            meta.target(),
            fields.0,
            span_fields,
            operation,
        );
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let (op, written) = {
            let ext = span.extensions();
            let Some((op_id, opens, closes)) = ext.get::<Fields>().and_then(operation_of) else {
                return;
            };
            let (written, closed) = ext
                .get::<OperationLines>()
                .map_or((false, false), |l| (l.written, l.closed));
            if !closes || closed {
                return;
            }
            (operation_value(op_id, opens && !written, true), written)
        };
        let mut span_fields = Map::new();
        for s in span.scope().from_root() {
            if let Some(f) = s.extensions().get::<Fields>() {
                span_fields.extend(f.0.clone());
            }
        }
        let mut fields = Map::new();
        fields.insert("message".into(), "operation finished".into());
        if !written {
            fields.insert("lines".into(), 0.into());
        }
        self.write(
            &Level::INFO,
            span.metadata().target(),
            fields,
            span_fields,
            Some(op),
        );
    }
}

/// Names the operation that the lines of the current span belong to
/// (`replicate/{bucket}/{name}#{generation}`, `sync/{run}`); `first` is
/// false when an earlier request opened it. Needs a span that declares
/// the `operation` fields (the request span does).
pub(crate) fn operation(id: &str, first: bool) {
    let span = tracing::Span::current();
    span.record("operation", id);
    if !first {
        span.record("operation_first", false);
    }
}

/// Says that the current span's operation goes on in a later request (a
/// next sync page, the other parts of an upload).
pub(crate) fn operation_continues() {
    tracing::Span::current().record("operation_last", false);
}

/// The W3C `traceparent` of the current span's trace, with a new span id
/// (the work that publishes), when the span has a trace.
pub(crate) fn current_traceparent() -> Option<String> {
    use tracing_subscriber::registry::Registry;
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            for s in span.scope() {
                let ext = s.extensions();
                let Some(Value::String(trace)) =
                    ext.get::<Fields>().and_then(|f| f.0.get("trace_id"))
                else {
                    continue;
                };
                let sampled = ext.get::<Fields>().and_then(|f| f.0.get("trace_sampled"))
                    == Some(&Value::Bool(true));
                let mut span_id = 0u64;
                while span_id == 0 {
                    span_id = fastrand::u64(..);
                }
                return Some(format!(
                    "00-{trace}-{span_id:016x}-{:02x}",
                    u8::from(sampled)
                ));
            }
            None
        })
        .flatten()
}

/// Makes `traceparent` (a delivered message's attribute) the trace of the
/// current span; an unreadable one changes nothing.
pub(crate) fn continue_trace(traceparent: &str) {
    if let Some((trace, span_id, sampled)) = parse_trace_context(Some(traceparent), None) {
        let span = tracing::Span::current();
        span.record("trace_id", trace.as_str());
        if let Some(s) = &span_id {
            span.record("span_id", s.as_str());
        }
        span.record("trace_sampled", sampled);
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
        // W3C: version 00 has exactly four fields; a later version may add
        // fields after them; ff is invalid. Zero ids are invalid.
        let version_ok = parts[0].len() == 2
            && parts[0].bytes().all(|b| b.is_ascii_hexdigit())
            && !parts[0].eq_ignore_ascii_case("ff")
            && (parts.len() == 4 || (parts.len() > 4 && parts[0] != "00"));
        if version_ok
            && parts[3].len() == 2
            && parts[2] != "0000000000000000"
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

    fn lines(buf: &Buf) -> Vec<Value> {
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn request_span() -> tracing::Span {
        let empty = tracing::field::Empty;
        tracing::info_span!(
            "request",
            trace_id = empty,
            span_id = empty,
            trace_sampled = empty,
            operation = empty,
            operation_first = empty,
            operation_last = empty
        )
    }

    #[test]
    fn lines_of_an_operation_are_grouped_first_to_last() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(CloudLogging::new(None, buf.clone()));
        tracing::subscriber::with_default(sub, || {
            // A request whose operation ends with it: its request line is
            // the last.
            request_span().in_scope(|| {
                tracing::info!("before the operation is known");
                operation("replicate/b/o#1", true);
                tracing::info!("one");
                tracing::info!("two");
                tracing::info!(http.method = "POST", http.status = 200u64, "request served");
            });
            // A span that is no request: closed by a line of its own.
            let span = request_span();
            span.in_scope(|| {
                operation("replicate/b/p#2", true);
                tracing::info!("only");
            });
            drop(span);
            // A later page of a run that goes on: neither first nor last.
            request_span().in_scope(|| {
                operation("sync/r", false);
                operation_continues();
                tracing::info!(http.method = "POST", http.status = 200u64, "request served");
            });
        });
        let lines = lines(&buf);
        let op = |i: usize| lines[i]["logging.googleapis.com/operation"].clone();
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(lines[0].get("logging.googleapis.com/operation").is_none());
        assert_eq!(
            op(1),
            serde_json::json!({"id": "replicate/b/o#1", "producer": "gcp-aws-bridge", "first": true})
        );
        assert_eq!(
            op(2),
            serde_json::json!({"id": "replicate/b/o#1", "producer": "gcp-aws-bridge"})
        );
        assert_eq!(
            op(3),
            serde_json::json!({"id": "replicate/b/o#1", "producer": "gcp-aws-bridge", "last": true})
        );
        assert!(lines[3].get("operation").is_none());
        assert_eq!(op(4)["first"], true);
        assert!(op(4).get("last").is_none());
        assert_eq!(lines[5]["message"], "operation finished");
        assert_eq!(
            op(5),
            serde_json::json!({"id": "replicate/b/p#2", "producer": "gcp-aws-bridge", "last": true})
        );
        // The first request's span closed after its last line, and the
        // page's does not close its run: no closing line for either.
        assert_eq!(lines[6]["message"], "request served");
        assert_eq!(
            op(6),
            serde_json::json!({"id": "sync/r", "producer": "gcp-aws-bridge"})
        );
    }

    #[test]
    fn a_delivered_traceparent_continues_its_trace() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(CloudLogging::new(None, buf.clone()));
        let published = tracing::subscriber::with_default(sub, || {
            let span = request_span();
            span.in_scope(|| {
                assert_eq!(current_traceparent(), None);
                continue_trace("garbage");
                assert_eq!(current_traceparent(), None);
                // Not W3C: an invalid version, a zero span id, extra fields
                // after version 00, a long flags field.
                for forged in [
                    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0101",
                ] {
                    continue_trace(forged);
                    assert_eq!(current_traceparent(), None, "{forged}");
                }
                continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
                tracing::info!("continued");
                let inner = tracing::info_span!("inner");
                inner.in_scope(current_traceparent)
            })
        })
        .expect("a traceparent");
        let parts: Vec<&str> = published.split('-').collect();
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parts[2].len() == 16 && parts[2] != "0000000000000000");
        assert_eq!(parts[3], "01");
        let lines = lines(&buf);
        assert_eq!(
            lines[0]["logging.googleapis.com/trace"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            lines[0]["logging.googleapis.com/spanId"],
            "00f067aa0ba902b7"
        );
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
