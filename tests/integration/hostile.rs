//! Hostile bodies and the buffer budget, in this process (no rig): bodies
//! built to make the service build far more than they weigh answer 4xx
//! and leave the service answering; a request reserves its whole cost
//! once, so that requests do not each hold part of the budget while they
//! wait for the rest. Memory itself is measured by
//! `scripts/measure-hostile.sh`, not here.

use crate::common;
use crate::common::answer::send;

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::in_process::InProcess;
use gcp_aws_bridge::aws::AwsOptions;
use gcp_aws_bridge::config::Config;
use gcp_aws_bridge::http::app::{router, AppState};

const MIB: u64 = 1024 * 1024;

/// The router with a budget of `budget` bytes and a wait of `wait`, and its
/// state (to look at the budget).
async fn service(budget: u64, wait: Duration) -> (Router, AppState, InProcess) {
    let mut p = InProcess::new("none").await;
    p.set("MAX_BODY_BYTES", &(32 * MIB).to_string());
    let mut config = Config::from_iter(p.env.iter().cloned()).expect("test configuration");
    config.limits.buffer_budget_bytes = budget;
    config.limits.buffer_wait = wait;
    let state = AppState::new(config, AwsOptions::default()).expect("the service's state");
    (router(state.clone()), state, p)
}

/// A POST of `body` to `path` with `Content-Length` (as Pub/Sub and
/// Eventarc send it) and `headers`.
fn post(path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Request<Body> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_LENGTH, body.len().to_string());
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body)).expect("a request")
}

/// A Pub/Sub push of the envelope `push`.
fn pubsub(push: String) -> Request<Body> {
    post(
        "/pubsub",
        &[("content-type", "application/json")],
        push.into_bytes(),
    )
}

const BINARY_FINALIZED: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("ce-specversion", "1.0"),
    ("ce-id", "1"),
    ("ce-type", "google.cloud.storage.object.v1.finalized"),
    (
        "ce-source",
        "//storage.googleapis.com/projects/_/buckets/in-process-bucket",
    ),
    ("ce-subject", "objects/o"),
];

const STRUCTURED: &[(&str, &str)] = &[("content-type", "application/cloudevents+json")];

/// `[0,0,…]` of `len` bytes.
fn zeros(len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.push(b'[');
    while v.len() < len - 2 {
        v.extend_from_slice(b"0,");
    }
    v.extend_from_slice(b"0]");
    v
}

async fn still_alive(router: &Router) {
    let req = Request::builder()
        .uri("/healthz")
        .body(Body::empty())
        .expect("a request");
    assert_eq!(send(router, req).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_mb_array_as_event_data_answers_400() {
    let (router, state, _p) = service(128 * MIB, Duration::from_secs(10)).await;
    let array = zeros(32_000_000);
    let a = send(&router, post("/events", BINARY_FINALIZED, array.clone())).await;
    a.assert_code(400, "invalid_event", "binary event");
    let mut structured = br#"{"specversion":"1.0","id":"1","type":"google.cloud.storage.object.v1.finalized","source":"//storage.googleapis.com/projects/_/buckets/in-process-bucket","subject":"objects/o","data":"#.to_vec();
    structured.extend_from_slice(&zeros(32_000_000 - structured.len() - 1));
    structured.push(b'}');
    let a = send(&router, post("/events", STRUCTURED, structured)).await;
    a.assert_code(400, "invalid_event", "structured event");
    // A messagePublished event whose data is the array: not a message.
    let mut published: Vec<(&str, &str)> = BINARY_FINALIZED.to_vec();
    published[3] = ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished");
    let a = send(&router, post("/events", &published, array)).await;
    a.assert_code(400, "invalid_event", "messagePublished event");
    assert_eq!(state.budget.available(), 128 * MIB, "all given back");
    still_alive(&router).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_720000_metadata_entries_answers_400() {
    let (router, _state, _p) = service(128 * MIB, Duration::from_secs(10)).await;
    let mut command = String::from(r#"{"op":"put","key":"k","body":"","metadata":{"#);
    for i in 0..720_000 {
        command.push_str(&format!(r#""{i:06}":"","#));
    }
    command.push_str(r#""z":""}}"#);
    let push = format!(
        r#"{{"message":{{"data":"{}","messageId":"1"}},"subscription":"s"}}"#,
        STANDARD.encode(&command)
    );
    assert!(push.len() > 11_000_000, "{}", push.len());
    let a = send(&router, pubsub(push)).await;
    a.assert_code(400, "invalid_metadata", "720000 metadata entries");
    still_alive(&router).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_with_100000_attributes_answers_400() {
    let (router, _state, _p) = service(128 * MIB, Duration::from_secs(10)).await;
    let mut attrs = String::new();
    for i in 0..100_000 {
        attrs.push_str(&format!(r#""a{i}":"v","#));
    }
    let push = format!(
        r#"{{"message":{{"data":"e30=","attributes":{{{attrs}"eventType":"OBJECT_FINALIZE"}},"messageId":"1"}},"subscription":"s"}}"#
    );
    let a = send(&router, pubsub(push)).await;
    a.assert_code(400, "invalid_attributes", "100000 attributes");
    still_alive(&router).await;
}

/// A binary event of an unknown type with a body of `len` bytes: answered
/// 400 `unknown_event_type` once its whole body is read.
fn unknown_event(len: usize) -> (Vec<(&'static str, &'static str)>, Vec<u8>) {
    let mut headers = BINARY_FINALIZED.to_vec();
    headers[3] = ("ce-type", "com.example.unknown");
    let mut body = br#"{"a":""#.to_vec();
    body.resize(len - 2, b'x');
    body.extend_from_slice(b"\"}");
    (headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reservation_per_request_no_hold_and_wait() {
    // Room for exactly one event of 1 MiB (three times its body).
    let budget = 3 * MIB;
    let wait = Duration::from_secs(2);
    let (router, state, _p) = service(budget, wait).await;
    let (headers, body) = unknown_event(MIB as usize);

    // Two at once: one has the whole budget, the other waits holding
    // nothing and goes once it is given back. Neither answers 503 (two
    // reservations each would leave both holding a body and waiting for
    // the rest until both time out).
    let (a, b) = tokio::join!(
        send(&router, post("/events", &headers, body.clone())),
        send(&router, post("/events", &headers, body.clone())),
    );
    assert_eq!(a.code(), "unknown_event_type", "{a:?}");
    assert_eq!(b.code(), "unknown_event_type", "{b:?}");
    assert_eq!(state.budget.available(), budget);

    // One holds the whole budget while its body is slow to come: a second
    // waits, holding nothing, then answers 503 with Retry-After.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let slow_body = Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let mut slow = Request::builder()
        .method(Method::POST)
        .uri("/events")
        .header(header::CONTENT_LENGTH, body.len().to_string());
    for (k, v) in &headers {
        slow = slow.header(*k, *v);
    }
    let slow = slow.body(slow_body).expect("a request");
    let slow = {
        let router = router.clone();
        tokio::spawn(async move { send(&router, slow).await })
    };
    tx.send(Ok(Bytes::copy_from_slice(&body[..1000])))
        .await
        .unwrap();
    let t = Instant::now();
    while state.budget.available() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "nothing reserved");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    let second = send(&router, post("/events", &headers, body.clone())).await;
    let waited = t.elapsed();
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{second:?}");
    assert_eq!(second.header("retry-after"), Some("10"));
    assert_eq!(second.code(), "buffer_budget_exhausted");
    assert!(waited >= wait, "answered after {waited:?}");
    // A body without Content-Length waits for its first step the same way.
    let (ctx, mut crx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    ctx.send(Ok(Bytes::from_static(b"{}"))).await.unwrap();
    drop(ctx);
    let mut chunked = Request::builder().method(Method::POST).uri("/events");
    for (k, v) in &headers {
        chunked = chunked.header(*k, *v);
    }
    let chunked = chunked
        .body(Body::from_stream(futures_util::stream::poll_fn(
            move |cx| crx.poll_recv(cx),
        )))
        .expect("a request");
    let c = send(&router, chunked).await;
    assert_eq!(c.status, StatusCode::SERVICE_UNAVAILABLE, "{c:?}");

    // The first goes on once its body is complete.
    tx.send(Ok(Bytes::copy_from_slice(&body[1000..])))
        .await
        .unwrap();
    drop(tx);
    let first = slow.await.unwrap();
    assert_eq!(first.code(), "unknown_event_type", "{first:?}");
    assert_eq!(state.budget.available(), budget);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_content_length_reserves_as_it_arrives() {
    let budget = 8 * MIB;
    let (router, state, _p) = service(budget, Duration::from_secs(2)).await;
    let chunked = |body: Vec<u8>| {
        let mut b = Request::builder().method(Method::POST).uri("/events");
        for (k, v) in unknown_event(16).0 {
            b = b.header(k, v);
        }
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        b.body(Body::from_stream(futures_util::stream::iter(chunks)))
            .expect("a request")
    };
    // 2 MiB: three times that fits.
    let a = send(&router, chunked(unknown_event(2 * MIB as usize).1)).await;
    assert_eq!(a.code(), "unknown_event_type", "{a:?}");
    // 3 MiB: three times that never fits this budget: 413, not 503.
    let a = send(&router, chunked(unknown_event(3 * MIB as usize).1)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{a:?}");
    assert_eq!(state.budget.available(), budget);
}
