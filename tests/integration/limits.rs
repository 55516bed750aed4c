//! Bounded resources and nothing left behind: `MAX_OBJECT_BYTES` (413
//! before the body is read, no allocation from a declared length), the
//! buffer budget (requests over it wait, then answer 503 with
//! `Retry-After`), 64 KiB bodies for `/v1/copy` and `/v1/presign`, and the
//! abort of a multipart upload whose request ends early (client gone,
//! deadline, end of the shutdown grace); a streamed answer ends at the
//! deadline. Against the rig's moto through the
//! fault proxy, with the real binary or the router served in process.

use crate::common;
use crate::common::require_rig;

use std::time::{Duration, Instant};

use bridge_testkit::ProxyFault;
use common::*;
use gcp_aws_bridge::aws::AwsOptions;
use gcp_aws_bridge::http::app::{router, AppState};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Head of a raw HTTP/1.1 PUT of `/v1/objects/{key}`.
fn put_head(url: &str, key: &str, tok: Option<&str>, content_length: Option<&str>) -> String {
    let mut h = format!(
        "PUT /v1/objects/{key} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\n",
        host_port(url)
    );
    if let Some(t) = tok {
        h.push_str(&format!("authorization: Bearer {t}\r\n"));
    }
    match content_length {
        Some(l) => h.push_str(&format!("content-length: {l}\r\n")),
        None => h.push_str("transfer-encoding: chunked\r\n"),
    }
    h.push_str("\r\n");
    h
}

/// Reads an HTTP/1.1 answer until its body is complete (or the
/// connection closes); returns the status and the body.
async fn read_answer(conn: &mut TcpStream, limit: Duration) -> (u16, String, String) {
    let mut buf = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let mut chunk = [0u8; 8192];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no complete answer in {limit:?}: {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, head.to_owned(), body.to_owned())
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Waits until no multipart upload is open under the prefix; the time it
/// took from `since`.
async fn until_no_upload(w: &World, since: Instant, limit: Duration) -> Duration {
    eventually(
        limit.saturating_sub(since.elapsed()),
        || {
            format!(
                "a multipart upload is still open after {limit:?}; S3 calls {:?}",
                w.proxy.counts()
            )
        },
        || async { w.uploads_left().await.is_empty().then(|| since.elapsed()) },
    )
    .await
}

async fn until_created(w: &World, limit: Duration) {
    eventually(
        limit,
        || "no multipart upload was created".to_owned(),
        || async { (w.proxy.count("CreateMultipartUpload") > 0).then_some(()) },
    )
    .await;
}

/// Starts a PUT of `declared` bytes, sends `sent` of them and leaves the
/// connection open; returns it once the multipart upload exists.
async fn stalled_put(
    w: &World,
    server_url: &str,
    key: &str,
    declared: usize,
    sent: usize,
) -> TcpStream {
    let mut conn = TcpStream::connect(host_port(server_url)).await.unwrap();
    let head = put_head(
        server_url,
        key,
        Some(&w.caller_token()),
        Some(&declared.to_string()),
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let block = vec![0x5a_u8; MIB];
    for _ in 0..sent / MIB {
        conn.write_all(&block).await.unwrap();
    }
    until_created(w, Duration::from_secs(60)).await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_content_length_answers_413_and_nothing_panics() {
    require_rig!();
    let mut w = World::new("hugelen").await;
    w.set("MAX_OBJECT_BYTES", &(2 * MIB).to_string());
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    for (key, declared) in [
        // The largest Content-Length the HTTP server accepts.
        ("huge.bin", "18446744073709551613"),
        ("big.bin", "5497558138880"),
        ("over.bin", "2097153"),
    ] {
        let mut conn = TcpStream::connect(host_port(&server.url)).await.unwrap();
        let head = put_head(&server.url, key, Some(&tok), Some(declared));
        conn.write_all(head.as_bytes()).await.unwrap();
        // Fewer bytes than declared, then nothing.
        conn.write_all(b"a body much shorter than declared")
            .await
            .unwrap();
        let (status, _, body) = read_answer(&mut conn, Duration::from_secs(10)).await;
        assert_eq!(status, 413, "{key}: {body}");
        assert_eq!(error_code(&body), "payload_too_large");
    }
    // A chunked body (no length declared) is cut at the limit too.
    let mut conn = TcpStream::connect(host_port(&server.url)).await.unwrap();
    conn.write_all(put_head(&server.url, "chunked.bin", Some(&tok), None).as_bytes())
        .await
        .unwrap();
    let block = vec![1u8; MIB];
    for _ in 0..3 {
        let chunk = [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat();
        if conn.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let (status, _, body) = read_answer(&mut conn, Duration::from_secs(20)).await;
    assert_eq!(status, 413, "{body}");
    // A body within the limit but shorter than declared is refused as such.
    let mut conn = TcpStream::connect(host_port(&server.url)).await.unwrap();
    let head = put_head(&server.url, "short.bin", Some(&tok), Some("2000000"));
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(b"short").await.unwrap();
    conn.shutdown().await.unwrap();
    let (status, _, body) = read_answer(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(status, 400, "{body}");
    // The process is alive and well, and nothing was written.
    let r = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
    assert_eq!(w.proxy.count("CreateMultipartUpload"), 0);
    assert!(
        !server.stderr.text().contains("panicked"),
        "{}",
        server.stderr.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_presign_bodies_are_at_most_64_kib() {
    require_rig!();
    let w = World::new("smallbodies").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let client = reqwest::Client::new();
    for route in ["/v1/copy", "/v1/presign"] {
        // Over 64 KiB declared: refused before the body is read (a few
        // bytes sent, so that no unread data resets the connection).
        let mut conn = TcpStream::connect(host_port(&server.url)).await.unwrap();
        let head = format!(
            "POST {route} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {tok}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{\"key\":",
            host_port(&server.url),
            64 * 1024 + 1
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let (status, _, body) = read_answer(&mut conn, Duration::from_secs(10)).await;
        assert_eq!(status, 413, "{route}: {body}");
        assert_eq!(error_code(&body), "payload_too_large");
    }
    // Just under the limit is read (and answered on its merits).
    let body = format!(
        "{{\"key\":\"a.txt\",{}\"method\":\"GET\"}}",
        " ".repeat(60_000)
    );
    let r = client
        .post(format!("{}/v1/presign", server.url))
        .bearer_auth(&tok)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_that_is_not_one_byte_range_answers_400() {
    require_rig!();
    let w = World::new("ranges").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let client = reqwest::Client::new();
    // A Range that is not one byte range is refused before S3 is asked.
    for bad in ["bytes=5-2", "bytes=0-1,4-5", "bytes=-0", "items=0-1"] {
        let r = client
            .get(format!("{}/v1/objects/a.txt", server.url))
            .bearer_auth(&tok)
            .header("range", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_argument", "{bad}");
    }
    assert_eq!(w.proxy.count("GetObject"), 0);
}

/// The router served in process, so that the budget's wait can be short.
async fn serve_in_process(w: &World, budget: usize, wait: Duration) -> (String, AppState) {
    let mut config = w.config();
    config.limits.buffer_budget_bytes = budget as u64;
    config.limits.buffer_wait = wait;
    let state = AppState::new(config, AwsOptions::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_budget_wait_then_answer_503() {
    require_rig!();
    let mut w = World::new("budget").await;
    w.set("AUTH_MODE", "none");
    let wait = Duration::from_millis(1500);
    // Room for one 8 MiB part and a little more.
    let (url, state) = serve_in_process(&w, 8 * MIB + 256 * 1024, wait).await;
    let client = reqwest::Client::new();

    // An upload of unknown length holds its first part's buffers while the
    // client is slow to send.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let slow = {
        let body = reqwest::Body::wrap_stream(tokio_stream_rx(rx));
        let req = client.put(format!("{url}/v1/objects/slow.bin")).body(body);
        tokio::spawn(async move { req.send().await })
    };
    tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    let t = Instant::now();
    while state.budget.available() > MIB as u64 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the upload reserved nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A Pub/Sub put of 400 KiB: its body and data do not fit beside it.
    let data = base64_of(&json!({"op": "put", "key": "p.bin", "body": "x".repeat(400 * 1024)}));
    let push = json!({"message": {"data": data, "messageId": "1"}, "subscription": "s"});
    let t = Instant::now();
    let r = client
        .post(format!("{url}/pubsub"))
        .json(&push)
        .send()
        .await
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "10");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "buffer_budget_exhausted");
    assert!(waited >= wait, "answered after {waited:?}, before the wait");
    assert!(waited < wait + Duration::from_secs(5), "waited {waited:?}");

    // A second upload cannot get its part buffers either.
    let r = client
        .put(format!("{url}/v1/objects/second.bin"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![Ok::<_, std::io::Error>(vec![2u8; 1024])],
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));

    // Once the first upload ends, the budget serves the others again.
    for _ in 0..8 {
        tx.send(Ok(vec![1u8; MIB])).await.unwrap();
    }
    drop(tx);
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = client
        .post(format!("{url}/pubsub"))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(w.stored("slow.bin").await.unwrap().len(), 9 * MIB);
    w.assert_no_upload_left().await;
}

fn base64_of(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

fn tokio_stream_rx(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_at_half_an_upload_leaves_no_upload() {
    require_rig!();
    let w = World::new("clientgone").await;
    let server = Server::start(&w.env).await;
    let total = 96 * MIB;
    let conn = stalled_put(&w, &server.url, "gone.bin", total, total / 2).await;
    let gone = Instant::now();
    drop(conn);
    let took = until_no_upload(&w, gone, Duration::from_secs(30)).await;
    eprintln!(
        "client gone at 50% of {} MiB: no multipart upload left after {took:?}",
        total / MIB
    );
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 0);
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_the_upload_leaves_no_upload() {
    require_rig!();
    let mut w = World::new("deadline").await;
    w.set("REQUEST_TIMEOUT_SECONDS", "5");
    let server = Server::start(&w.env).await;
    let mut conn = stalled_put(&w, &server.url, "late.bin", 96 * MIB, 10 * MIB).await;
    // The client stays, silent: the deadline ends the request.
    let (status, _, body) = read_answer(&mut conn, Duration::from_secs(20)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "timeout");
    let answered = Instant::now();
    let took = until_no_upload(&w, answered, Duration::from_secs(30)).await;
    eprintln!("deadline passed: no multipart upload left {took:?} after the 503");
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    drop(conn);
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_in_parts_cut_short_by_the_deadline_leaves_no_upload() {
    require_rig!();
    let mut w = World::new("copydeadline").await;
    w.set("REQUEST_TIMEOUT_SECONDS", "3");
    w.set(
        "TEST_COPY_MULTIPART_THRESHOLD_BYTES",
        &(5 * MIB).to_string(),
    );
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let put = server
        .put("/v1/objects/big.bin")
        .bearer_auth(&tok)
        .body(vec![7u8; 12 * MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    // The copy's first part is held at S3 past the request's deadline.
    let mut hold = w.proxy.hold_next("UploadPartCopy");
    let copy = server
        .post("/v1/copy")
        .bearer_auth(&tok)
        .json(&json!({"source_key": "big.bin", "key": "copies/big.bin"}))
        .send();
    let copy = tokio::spawn(copy);
    tokio::time::timeout(Duration::from_secs(20), hold.arrived())
        .await
        .expect("the copy reached S3");
    let answer = copy.await.unwrap().unwrap();
    assert_eq!(answer.status(), 503);
    let answered = Instant::now();
    hold.release();
    let took = until_no_upload(&w, answered, Duration::from_secs(30)).await;
    eprintln!("copy cut short: no multipart upload left {took:?} after the 503");
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    assert_eq!(w.stored("copies/big.bin").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_shutdown_grace_leaves_no_upload() {
    require_rig!();
    let w = World::new("gracend").await;
    let mut server = Server::start(&w.env).await;
    let conn = stalled_put(&w, &server.url, "cut.bin", 96 * MIB, 16 * MIB).await;
    server.terminate();
    let status = server.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}");
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    assert_eq!(
        w.uploads_left().await,
        Vec::<String>::new(),
        "{}",
        server.stdout.text()
    );
    drop(conn);
}

#[tokio::test]
async fn an_s3_prefix_without_a_slash_stops_the_service() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
        .env_clear()
        .envs([
            ("TARGET_AUDIENCE", "sts.amazonaws.com"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bridge"),
            ("AWS_REGION", "us-east-1"),
            ("S3_BUCKET", "b"),
            ("S3_PREFIX", "data"),
            ("AUTH_MODE", "none"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("S3_PREFIX") && err.contains("'/'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_body_outlasts_the_deadline_is_cut() {
    require_rig!();
    let mut w = World::new("getdeadline").await;
    w.set("REQUEST_TIMEOUT_SECONDS", "3");
    let size = 4 * MIB;
    admin_s3()
        .put_object()
        .bucket(&w.bucket)
        .key(w.full("slow.bin"))
        .body(vec![7u8; size].into())
        .send()
        .await
        .unwrap();
    let server = Server::start(&w.env).await;
    // S3 sends the body a frame every 200 ms: far slower than the deadline.
    w.proxy.push_fault(
        "GetObject",
        ProxyFault::SlowBody(Duration::from_millis(200)),
    );
    let started = Instant::now();
    let r = server
        .get("/v1/objects/slow.bin")
        .bearer_auth(w.caller_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut r = r;
    let mut received = 0;
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), r.chunk()).await {
            Err(_) => panic!("the body still streams after 30 s"),
            Ok(Ok(Some(c))) => received += c.len(),
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) => break Err(e),
        }
    };
    let took = started.elapsed();
    assert!(ended.is_err(), "a body cut short ends with an error");
    assert!(received < size, "{received} bytes of {size}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(10),
        "cut after {took:?}"
    );
    server.stdout.wait_for("the response body was cut").await;
}
