//! [`router`]: routes, caller verification, body limits, request deadlines
//! and request logs with trace correlation, over the shared [`AppState`].

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use tracing::Instrument;

use crate::config::Config;
use crate::http::edge::{Interrupted, RouteError};
use crate::http::error::{AppError, StatusBody};
use crate::http::triggers::{cloudevents, http_api, pubsub};

pub use crate::http::state::AppState;

async fn healthz() -> impl IntoResponse {
    Json(StatusBody { status: "ok" })
}

/// 200 when AWS credentials can be had: resolving them for a presigned
/// request goes through the identity cache and calls nothing but STS. A
/// failure answers 503 `not_ready` and nothing more (the endpoint is open);
/// the reason goes to the log.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.storage.credentials_ready().await {
        Ok(()) => Json(StatusBody { status: "ready" }).into_response(),
        Err(reason) => {
            // The reason names the metadata URL, the audience and, after a
            // trust-policy refusal, the service account: for the log only.
            tracing::warn!(reason = %reason, "not ready");
            crate::http::error::not_ready()
        }
    }
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    admit(&state.caller_auth, req, next).await
}

/// The inside door's check: the tasks subscription's push identity only.
async fn authenticate_tasks(State(state): State<AppState>, req: Request, next: Next) -> Response {
    admit(&state.tasks_auth, req, next).await
}

async fn admit(
    auth: &crate::google::caller_auth::CallerAuth,
    req: Request,
    next: Next,
) -> Response {
    match auth.check(req.headers()).await {
        Ok(caller) => {
            if let Some(email) = &caller.email {
                tracing::Span::current().record("caller", email.as_str());
            }
            next.run(req).await
        }
        Err(e) => AppError::from(e).into_response(),
    }
}

/// Request span (trace correlation), deadline and the request log line.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let h = req.headers();
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let trace =
        crate::telemetry::parse_trace_context(get("traceparent"), get("x-cloud-trace-context"));
    // Kept as they are (shared, not copied) for the log line, which the
    // log level may filter out.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let user_agent = h.get(header::USER_AGENT).cloned();
    // The trace may be replaced by a delivered task's (see
    // `telemetry::continue_trace`) and the operation named by the work.
    let empty = tracing::field::Empty;
    let span = tracing::info_span!(
        "request",
        trace_id = empty,
        span_id = empty,
        trace_sampled = empty,
        caller = empty,
        operation = empty,
        operation_first = empty,
        operation_last = empty
    );
    if let Some((t, s, sampled)) = &trace {
        span.record("trace_id", t.as_str());
        if let Some(s) = s {
            span.record("span_id", s.as_str());
        }
        span.record("trace_sampled", *sampled);
    }
    // The route template, for the request count: this middleware wraps
    // each route (`Router::layer`), so routing has already named it; the
    // fallback has none.
    let route = if crate::metrics::enabled() {
        req.extensions().get::<MatchedPath>().cloned()
    } else {
        None
    };
    let timeout = state.config.server.request_timeout;
    let deadline = tokio::time::Instant::from_std(started) + timeout;
    // One timer for the whole request: it bounds the handler, then the body.
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));
    let mut cancel = state.cancel.subscribe();
    let resp = async {
        tokio::select! {
            // An answer ready at the deadline is the answer.
            biased;
            r = next.run(req) => r,
            () = timer.as_mut() => AppError::from(Interrupted::Deadline(timeout)).into_response(),
            _ = async {
                if cancel.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
            } => AppError::from(Interrupted::ShuttingDown).into_response(),
        }
    }
    .instrument(span.clone())
    .await;
    // The deadline bounds the body too: a streamed answer (an object read
    // from S3) ends with an error, which aborts it, when the deadline passes.
    // An answer made at the deadline (the timeout's own 503) is sent whole.
    let resp = if tokio::time::Instant::now() < deadline {
        resp.map(|body| {
            axum::body::Body::new(Deadline {
                body,
                deadline: timer,
                timeout,
                passed: false,
            })
        })
    } else {
        resp
    };
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if crate::metrics::enabled() {
        crate::metrics::request(route.as_ref().map_or("unmatched", |m| m.as_str()), status);
    }
    span.in_scope(|| {
        let agent = user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if status >= 500 && status != 503 {
            tracing::error!(http.method = %method, http.url = %uri.path(), http.status = status, http.latency_ms = latency_ms, http.user_agent = %agent, http.response_size = size, "request served");
        } else if status == 503 || status == 429 {
            tracing::warn!(http.method = %method, http.url = %uri.path(), http.status = status, http.latency_ms = latency_ms, http.user_agent = %agent, http.response_size = size, "request served");
        } else {
            tracing::info!(http.method = %method, http.url = %uri.path(), http.status = status, http.latency_ms = latency_ms, http.user_agent = %agent, http.response_size = size, "request served");
        }
    });
    resp
}

/// A response body cut at the request's deadline: past it, the body ends
/// with an error (the connection or HTTP/2 stream is reset, so the client
/// sees an incomplete answer, never a short one taken for whole).
struct Deadline {
    body: axum::body::Body,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    passed: bool,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        use std::task::Poll;
        if self.passed {
            return Poll::Ready(None);
        }
        if std::future::Future::poll(self.deadline.as_mut(), cx).is_ready() {
            self.passed = true;
            tracing::warn!(
                "the response body was cut: the deadline of {:?} passed",
                self.timeout
            );
            return Poll::Ready(Some(Err(axum::Error::new(format!(
                "deadline of {:?} passed while the body was sent",
                self.timeout
            )))));
        }
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.passed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// `/v1/objects/` names the empty key, refused (400) like any bad key.
async fn empty_key() -> AppError {
    crate::aws::s3::KeyError::Empty.into()
}

async fn not_found() -> AppError {
    RouteError::NoSuchRoute.into()
}

async fn method_not_allowed() -> AppError {
    RouteError::MethodNotAllowed.into()
}

/// The service's routes. A door whose callers are not checked
/// (`AUTH_MODE=none`) has no check in its way.
pub fn router(state: AppState) -> Router {
    let mut protected = Router::new()
        .route("/pubsub", post(pubsub::handle))
        .route("/events", post(cloudevents::handle))
        .route(
            "/v1/objects/{*key}",
            put(http_api::put_object)
                .get(http_api::get_object)
                .head(http_api::head_object)
                .delete(http_api::delete_object),
        )
        .route("/v1/objects/", any(empty_key))
        .route("/v1/objects", get(http_api::list_objects))
        .route("/v1/copy", post(http_api::copy))
        .route("/v1/presign", post(http_api::presign))
        .route("/v1/sync", post(crate::http::triggers::sync_http::sync))
        .route("/v1/buckets", get(http_api::buckets))
        .route("/v1/whoami", get(http_api::whoami));
    if state.caller_auth.checks_callers() {
        protected =
            protected.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    }
    let mut inside = Router::new().route("/tasks", post(pubsub::handle_task));
    if state.tasks_auth.checks_callers() {
        inside = inside.route_layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate_tasks,
        ));
    }
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .merge(inside)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read with explicit limits; PUT /v1/objects streams.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Says at start how callers are checked: a warning when they are not, and
/// in `cloud-run-iam` mode that the service relies on Cloud Run's IAM check.
pub fn warn_if_open(config: &Config) {
    crate::google::caller_auth::log_mode(&config.caller_auth);
    let auth = &config.caller_auth;
    if auth.mode == crate::google::caller_auth::AuthMode::None {
        return;
    }
    match &auth.tasks_push_email {
        None if config.publisher.tasks_topic.is_some() => tracing::warn!(
            "TASKS_TOPIC is set but TASKS_PUSH_EMAIL is not: /tasks refuses every caller, so the \
             service's own tasks (sync pages, part tasks) go to the dead-letter topic"
        ),
        Some(email) if auth.allowed_emails.contains(email) => tracing::warn!(
            email = %email,
            "TASKS_PUSH_EMAIL is also in AUTH_ALLOWED_EMAILS: the tasks subscription's account may \
             call the outside doors too; give it no other role"
        ),
        _ => {}
    }
}
