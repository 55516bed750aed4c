//! Tests of the fault proxy and its STS gate, against a small upstream started
//! in the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use bridge_testkit::keys::now_secs;
use bridge_testkit::{
    FaultPlan, FaultProxy, MetadataConfig, MetadataEmulator, ProxyFault, SigningKey, StsGate,
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, Notify};

/// What the upstream records about each request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    host: String,
    body: Vec<u8>,
    len: usize,
}

#[derive(Default)]
struct Upstream {
    seen: Mutex<Vec<Seen>>,
    aborted: AtomicUsize,
    release: Notify,
    first_chunk: Mutex<Option<oneshot::Sender<()>>>,
}

async fn upstream_handler(State(up): State<Arc<Upstream>>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if path == "/big" {
        let n: usize = query.strip_prefix("n=").unwrap().parse().unwrap();
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::iter((0..n).step_by(chunk.len()).map(move |off| {
            let len = (n - off).min(chunk.len());
            Ok::<_, std::io::Error>(chunk.slice(..len))
        }));
        return (
            [("content-length", n.to_string())],
            Body::from_stream(stream),
        )
            .into_response();
    }
    if let Some(code) = path.strip_prefix("/bkt/status-") {
        // Answers the status its key names.
        return http::StatusCode::from_u16(code.parse().unwrap())
            .unwrap()
            .into_response();
    }
    if path == "/slow" {
        let up2 = up.clone();
        let stream = futures_util::stream::once(async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"first;"))
        })
        .chain(futures_util::stream::once(async move {
            up2.release.notified().await;
            Ok(Bytes::from_static(b"second"))
        }));
        return Body::from_stream(stream).into_response();
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let host = req
        .headers()
        .get("host")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut len = 0usize;
    let mut first = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    len += d.len();
                    if kept.len() < 4096 {
                        kept.extend_from_slice(&d[..d.len().min(4096)]);
                    }
                    if first && !d.is_empty() {
                        first = false;
                        if let Some(tx) = up.first_chunk.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            Err(_) => {
                up.aborted.fetch_add(1, Ordering::SeqCst);
                return http::StatusCode::BAD_REQUEST.into_response();
            }
        }
    }
    let seen = Seen {
        method,
        uri,
        host,
        body: kept,
        len,
    };
    up.seen.lock().unwrap().push(seen.clone());
    axum::Json(json!({
        "method": seen.method, "uri": seen.uri, "host": seen.host, "len": seen.len,
    }))
    .into_response()
}

async fn start_upstream() -> (String, Arc<Upstream>) {
    let up = Arc::new(Upstream::default());
    let app = Router::new()
        .fallback(upstream_handler)
        .with_state(up.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, up)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn forwards_raw_requests_and_counts_operations() {
    let (upstream, up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();

    // Raw path and query, Host unchanged, body intact.
    let res = http
        .put(format!("{base}/bkt/dir%2Fa+b.txt?x-id=PutObject"))
        .header("host", "s3.example.test:9000")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["uri"], "/bkt/dir%2Fa+b.txt?x-id=PutObject");
    assert_eq!(echo["host"], "s3.example.test:9000");
    assert_eq!(echo["len"], 5);

    let res = http
        .get(format!("{base}/bkt?list-type=2&prefix=a%2F"))
        .send()
        .await
        .unwrap();
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["uri"], "/bkt?list-type=2&prefix=a%2F");
    assert_eq!(echo["host"], base.trim_start_matches("http://"));

    type Call<'a> = (reqwest::Method, &'a str, Option<(&'a str, &'a str)>);
    let requests: Vec<Call> = vec![
        (reqwest::Method::GET, "/", None),
        (reqwest::Method::GET, "/bkt/k", None),
        (reqwest::Method::HEAD, "/bkt/k", None),
        (reqwest::Method::DELETE, "/bkt/k", None),
        (
            reqwest::Method::PUT,
            "/bkt/k2",
            Some(("x-amz-copy-source", "bkt/k")),
        ),
        (reqwest::Method::POST, "/bkt/big?uploads", None),
        (
            reqwest::Method::PUT,
            "/bkt/big?partNumber=1&uploadId=u1",
            None,
        ),
        (reqwest::Method::POST, "/bkt/big?uploadId=u1", None),
        (reqwest::Method::DELETE, "/bkt/big?uploadId=u1", None),
        (reqwest::Method::GET, "/bkt?uploads", None),
    ];
    for (m, path, header) in requests {
        let mut rb = http.request(m, format!("{base}{path}"));
        if let Some((k, v)) = header {
            rb = rb.header(k, v);
        }
        assert_eq!(rb.send().await.unwrap().status(), 200, "{path}");
    }
    let res = http
        .post(format!("{base}/"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body("Action=GetCallerIdentity&Version=2011-06-15")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = http
        .get(format!(
            "{base}/?Action=GetCallerIdentity&Version=2011-06-15"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let last = up
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .nth(1)
        .cloned()
        .unwrap();
    assert_eq!(last.body, b"Action=GetCallerIdentity&Version=2011-06-15");

    for (op, n) in [
        ("PutObject", 1),
        ("ListObjectsV2", 1),
        ("ListBuckets", 1),
        ("GetObject", 1),
        ("HeadObject", 1),
        ("DeleteObject", 1),
        ("CopyObject", 1),
        ("CreateMultipartUpload", 1),
        ("UploadPart", 1),
        ("CompleteMultipartUpload", 1),
        ("AbortMultipartUpload", 1),
        ("ListMultipartUploads", 1),
        ("GetCallerIdentity", 2),
        ("S3:PUT", 3),
        ("S3:GET", 4),
        ("S3:POST", 2),
        ("S3:DELETE", 2),
        ("S3:HEAD", 1),
    ] {
        assert_eq!(proxy.count(op), n, "{op}: {:?}", proxy.counts());
    }
    assert_eq!(proxy.total(), 14);
    // The counts route answers the same figures and is not itself counted.
    let counts: Value = http
        .get(format!("{base}/__counts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["total"], 14);
    assert_eq!(counts["counts"]["GetCallerIdentity"], 2);
    assert_eq!(counts["counts"]["S3:GET"], 4);
    assert_eq!(proxy.total(), 14);
    proxy.reset_counts();
    assert_eq!(proxy.total(), 0);
    assert_eq!(proxy.count("PutObject"), 0);
}

#[tokio::test]
async fn streams_large_bodies_both_ways() {
    let (upstream, up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();

    // Upload: the first chunk reaches the upstream before the client sends the
    // rest, so the proxy does not buffer the body.
    let (first_tx, first_rx) = oneshot::channel();
    *up.first_chunk.lock().unwrap() = Some(first_tx);
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    const MIB: usize = 1024 * 1024;
    let total = 96 * MIB;
    let send = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/bkt/large");
        async move {
            http.put(url)
                .header("content-length", total.to_string())
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
        }
    });
    let chunk = Bytes::from(vec![7u8; MIB]);
    tx.send(chunk.clone()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), first_rx)
        .await
        .expect("first chunk forwarded before the body is complete")
        .unwrap();
    for _ in 1..total / MIB {
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let res = send.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["len"], total);

    // Download of a large body.
    let mut res = http
        .get(format!("{base}/big?n={total}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-length"], total.to_string().as_str());
    let mut got = 0;
    while let Some(c) = res.chunk().await.unwrap() {
        got += c.len();
    }
    assert_eq!(got, total);

    // Download: the first chunk arrives while the upstream still holds the rest.
    let mut res = http.get(format!("{base}/slow")).send().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("first chunk forwarded before the upstream finished")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    up.release.notify_one();
    let rest = res.bytes().await.unwrap();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn injects_one_shot_faults() {
    let (upstream, up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();
    let get = || http.get(format!("{base}/bkt/k")).send();

    proxy.push_fault("GetObject", ProxyFault::Status(503));
    proxy.push_fault("GetObject", ProxyFault::Status(500));
    // A HEAD is not a GetObject: the queued faults wait.
    let res = http.head(format!("{base}/bkt/k")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = get().await.unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("x-amz-request-id"));
    let body = res.text().await.unwrap();
    assert!(body.contains("<Code>SlowDown</Code>"), "{body}");
    let res = get().await.unwrap();
    assert_eq!(res.status(), 500);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("<Code>InternalError</Code>"));
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(
        up.seen.lock().unwrap().len(),
        2,
        "faulted requests are not forwarded"
    );

    proxy.push_fault("GetCallerIdentity", ProxyFault::Status(503));
    let res = http
        .post(format!("{base}/"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=GetCallerIdentity&Version=2011-06-15")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"),
        "{body}"
    );
    assert!(body.contains("<Code>ServiceUnavailable</Code>"), "{body}");

    proxy.push_fault("*", ProxyFault::AwsError {
        status: 400,
        code: "RequestTimeout".into(),
        message: "Your socket connection to the server was not read from or written to within the timeout period.".into(),
    });
    let res = get().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("<Code>RequestTimeout</Code>"));

    proxy.push_fault("GetObject", ProxyFault::Drop);
    let before = up.seen.lock().unwrap().len();
    let err = get().await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(up.seen.lock().unwrap().len(), before);

    proxy.push_fault("S3:GET", ProxyFault::Delay(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(get().await.unwrap().status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    // Cut a download halfway.
    proxy.push_fault("S3:GET", ProxyFault::DropMidBody);
    let mut res = http
        .get(format!("{base}/big?n=1048576"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut got = 0;
    let err = loop {
        match res.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => panic!("body completed although cut"),
            Err(e) => break e,
        }
    };
    assert!(got <= 524_288, "{got}");
    drop(err);

    // Cut an upload halfway: the upstream sees an aborted body.
    proxy.push_fault("PutObject", ProxyFault::DropMidBody);
    let body = vec![1u8; 4 * 1024 * 1024];
    assert!(http
        .put(format!("{base}/bkt/up"))
        .body(body)
        .send()
        .await
        .is_err());
    let t = Instant::now();
    while up.aborted.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.aborted.load(Ordering::SeqCst), 1);
    assert!(!up.seen.lock().unwrap().iter().any(|s| s.uri == "/bkt/up"));

    // A cut with no body to cut drops the answer after forwarding.
    proxy.push_fault("DeleteObject", ProxyFault::DropMidBody);
    let before = up.seen.lock().unwrap().len();
    assert!(http.delete(format!("{base}/bkt/k")).send().await.is_err());
    assert_eq!(up.seen.lock().unwrap().len(), before + 1);

    assert_eq!(proxy.faults_injected(), 9);
}

#[tokio::test]
async fn rewrites_one_upstream_status_into_another() {
    let (upstream, _up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();
    let rewrite = ProxyFault::RewriteStatus { from: 404, to: 403 };

    // Another status passes unchanged (the fault is used up all the same).
    proxy.push_fault("HeadObject", rewrite.clone());
    let res = http.head(format!("{base}/bkt/k")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // The 404 of a HEAD becomes S3's 403, without a body.
    proxy.push_fault("HeadObject", rewrite.clone());
    let res = http
        .head(format!("{base}/bkt/status-404"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().contains_key("x-amz-request-id"));

    // A GET's carries an AccessDenied body.
    proxy.push_fault("GetObject", rewrite);
    let res = http
        .get(format!("{base}/bkt/status-404"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body = res.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");

    // Without the fault the upstream's 404 passes.
    let res = http
        .head(format!("{base}/bkt/status-404"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(proxy.faults_injected(), 3);
}

#[tokio::test]
async fn fault_plan_is_deterministic_and_bounded() {
    let (upstream, _up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();
    let plan = FaultPlan {
        ops: Some(vec!["GetObject".into()]),
        rate: 0.5,
        kinds: vec![ProxyFault::Status(503), ProxyFault::Status(500)],
        max: Some(4),
        seed: 42,
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        proxy.set_faults(plan.clone());
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(
                http.get(format!("{base}/bkt/k"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
            // Not eligible: never faulted.
            assert_eq!(
                http.head(format!("{base}/bkt/k"))
                    .send()
                    .await
                    .unwrap()
                    .status(),
                200
            );
        }
        let faults = statuses.iter().filter(|s| **s != 200).count();
        assert!((1..=4).contains(&faults), "{statuses:?}");
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);

    proxy.set_faults(FaultPlan {
        rate: 1.0,
        kinds: vec![ProxyFault::Status(503)],
        max: Some(2),
        ..FaultPlan::default()
    });
    let s: Vec<u16> = futures_util::future::join_all((0..4).map(|_| async {
        http.get(format!("{base}/bkt/k"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }))
    .await;
    assert_eq!(s.iter().filter(|c| **c == 503).count(), 2);
    proxy.clear_faults();
    assert_eq!(
        http.get(format!("{base}/bkt/k"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn assume(http: &reqwest::Client, base: &str, token: &str) -> (u16, String) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "AssumeRoleWithWebIdentity")
        .append_pair("Version", "2011-06-15")
        .append_pair("RoleArn", "arn:aws:iam::123456789012:role/bridge")
        .append_pair("RoleSessionName", "test")
        .append_pair("WebIdentityToken", token)
        .finish();
    let res = http
        .post(format!("{base}/"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn sts_gate_checks_the_web_identity_token() {
    const AUD: &str = "https://bridge.example.com";
    let emu = MetadataEmulator::start(MetadataConfig::default()).await;
    let cfg = emu.config();
    let (upstream, up) = start_upstream().await;
    let proxy = FaultProxy::start(&upstream).await;
    let base = proxy.url();
    let http = client();
    proxy.set_sts_gate(Some(StsGate {
        jwks_url: emu.jwks_url(),
        oaud: AUD.into(),
        aud: cfg.unique_id.clone(),
        sub: cfg.unique_id.clone(),
    }));

    let (status, body) = assume(&http, &base, &emu.identity_token(AUD)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.seen.lock().unwrap().len(), 1);

    let other = SigningKey::generate();
    let rejected_400 = [
        (
            "unknown key",
            emu.mint_with_key(&other, emu.identity_claims(AUD)),
        ),
        (
            "bad signature",
            emu.mint_with_key(
                &other.with_kid(emu.signing_key().kid()),
                emu.identity_claims(AUD),
            ),
        ),
        ("expired", {
            let mut c = emu.identity_claims(AUD);
            c["exp"] = json!(now_secs() - 5);
            emu.mint(c)
        }),
        ("issuer", {
            let mut c = emu.identity_claims(AUD);
            c["iss"] = json!("https://evil.example.com");
            emu.mint(c)
        }),
        ("not a JWT", "not-a-jwt".to_string()),
    ];
    for (what, token) in rejected_400 {
        let (status, body) = assume(&http, &base, &token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body.contains("<Code>InvalidIdentityToken</Code>"),
            "{what}: {body}"
        );
        assert!(body.contains("<Type>Sender</Type>"), "{what}: {body}");
        assert!(
            body.contains("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">")
        );
    }

    let rejected_403 = [
        ("key-file token (email in azp)", {
            let mut c = emu.identity_claims(AUD);
            c["azp"] = json!(cfg.email);
            emu.mint(c)
        }),
        ("other sub", {
            let mut c = emu.identity_claims(AUD);
            c["sub"] = json!("999");
            emu.mint(c)
        }),
        (
            "other audience",
            emu.identity_token("https://other.example.com"),
        ),
    ];
    for (what, token) in rejected_403 {
        let (status, body) = assume(&http, &base, &token).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{what}: {body}");
        assert!(body.contains("Not authorized to perform sts:AssumeRoleWithWebIdentity"));
    }
    assert_eq!(
        up.seen.lock().unwrap().len(),
        1,
        "rejected calls never reach the upstream"
    );
    assert_eq!(proxy.count("AssumeRoleWithWebIdentity"), 9);

    // Query-style calls are gated as well.
    let res = http
        .get(format!(
            "{base}/?Action=AssumeRoleWithWebIdentity&Version=2011-06-15&WebIdentityToken={}",
            emu.mint_with_key(&other, emu.identity_claims(AUD))
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // The JWKS is fetched again when the signing key rotates.
    tokio::task::spawn_blocking({
        let emu = emu.clone();
        move || emu.rotate_signing_key()
    })
    .await
    .unwrap();
    let (status, body) = assume(&http, &base, &emu.identity_token(AUD)).await;
    assert_eq!(status, 200, "{body}");

    // With the gate off, anything goes through (as with plain moto).
    proxy.set_sts_gate(None);
    let (status, _) = assume(&http, &base, "not-a-jwt").await;
    assert_eq!(status, 200);
}
