//! Caller authentication end to end (the real binary): every protected route
//! refuses a missing token; tokens that must never pass (HS256 signed with
//! the public key as the secret, an unknown `kid`, a stripped signature in
//! `verify` mode); Google's certificates unavailable, with and without keys
//! in the cache; `cloud-run-iam` reading `X-Serverless-Authorization` first;
//! a failing `/readyz` that says `not_ready` and nothing internal; the
//! header-read timeout and h2c of the server.

use crate::common;
use crate::common::answer::send_http;
use crate::common::{eventually, require_rig};

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::{Endpoint, Fault, SigningKey};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn now() -> i64 {
    bridge_testkit::keys::now_secs()
}

/// Status, body text and headers of an answer, for destructuring.
async fn send(rb: reqwest::RequestBuilder) -> (u16, String, reqwest::header::HeaderMap) {
    let a = send_http(rb).await;
    (a.status.as_u16(), a.text(), a.headers)
}

fn code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

fn strip(token: &str) -> String {
    let (head, _) = token.rsplit_once('.').unwrap();
    format!("{head}.SIGNATURE_REMOVED_BY_GOOGLE")
}

/// Every protected route, with a body that would be accepted.
fn protected_routes(base: &str) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    let c = client();
    let push = json!({"message": {"data": STANDARD.encode(r#"{"op":"put","key":"p.txt","body":"x"}"#), "messageId": "1"}, "subscription": "projects/p/subscriptions/s"});
    vec![
        ("POST /pubsub", c.post(format!("{base}/pubsub")).json(&push)),
        (
            "POST /events",
            storage_event(
                c.post(format!("{base}/events")),
                "1",
                "finalized",
                &json!({"bucket": "b", "name": "o", "generation": "1"}),
            ),
        ),
        (
            "PUT /v1/objects/k",
            c.put(format!("{base}/v1/objects/k")).body("x"),
        ),
        ("GET /v1/objects/k", c.get(format!("{base}/v1/objects/k"))),
        ("HEAD /v1/objects/k", c.head(format!("{base}/v1/objects/k"))),
        (
            "DELETE /v1/objects/k",
            c.delete(format!("{base}/v1/objects/k")),
        ),
        (
            "GET /v1/objects",
            c.get(format!("{base}/v1/objects?prefix=")),
        ),
        (
            "POST /v1/copy",
            c.post(format!("{base}/v1/copy"))
                .json(&json!({"source_key": "k", "key": "k2"})),
        ),
        (
            "POST /v1/presign",
            c.post(format!("{base}/v1/presign"))
                .json(&json!({"key": "k", "method": "GET", "expires_in": 60})),
        ),
        ("GET /v1/buckets", c.get(format!("{base}/v1/buckets"))),
        ("GET /v1/whoami", c.get(format!("{base}/v1/whoami"))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protected_route_refuses_a_missing_or_stripped_token() {
    require_rig!();
    let w = World::new("routes401").await;
    let server = Server::start(&w.env).await;
    for (what, rb) in protected_routes(&server.url) {
        let (status, body, headers) = send(rb).await;
        assert_eq!(status, 401, "{what} without a token: {body}");
        if what.starts_with("HEAD") {
            continue;
        }
        assert_eq!(code(&body), "unauthenticated", "{what}");
        assert_eq!(headers["www-authenticate"], "Bearer", "{what}");
    }
    // A token as Cloud Run forwards it, to a service in verify mode: the
    // deployment can never work, and the answer says why.
    let stripped = strip(&w.caller_token());
    for (what, rb) in protected_routes(&server.url) {
        let (status, body, _) = send(rb.bearer_auth(&stripped)).await;
        assert_eq!(status, 401, "{what} with a stripped signature: {body}");
        if what.starts_with("HEAD") {
            continue;
        }
        assert_eq!(code(&body), "signature_removed", "{what}");
        assert!(body.contains("AUTH_MODE=cloud-run-iam"), "{what}: {body}");
        assert!(!body.contains("eyJ"), "no token text: {body}");
    }
    // Nothing reached AWS.
    assert_eq!(w.proxy.total(), 0, "{:?}", w.proxy.counts());
    // The operator sees it in the log.
    server.stdout.wait_for("signature_removed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_that_must_never_pass() {
    require_rig!();
    let w = World::new("neverpass").await;
    let server = Server::start(&w.env).await;
    let google = w.metadata.signing_key();
    let claims = caller_claims(json!({"sub": "1", "azp": "1"}));
    // HS256 with Google's public key (PEM, and the JWK's modulus) as the
    // HMAC secret: the algorithm confusion attack.
    let mut hs_tokens = Vec::new();
    for secret in [
        google.public_key_pem().into_bytes(),
        google.jwk()["n"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(google.kid().to_owned());
        hs_tokens.push(
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap(),
        );
    }
    // A kid Google does not publish (signed by a key of its own).
    let stranger = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .unwrap();
    let unknown_kid = stranger.sign(&claims);
    // A token not valid before an hour from now.
    let not_yet = w.caller_token_with(json!({"nbf": now() + 3600}));
    let cases = [
        ("HS256 with the public key PEM", hs_tokens[0].clone()),
        ("HS256 with the modulus", hs_tokens[1].clone()),
        ("unknown kid", unknown_kid),
        ("nbf in the future", not_yet),
    ];
    for (what, token) in cases {
        let (status, body, _) = send(
            client()
                .put(format!("{}/v1/objects/never.txt", server.url))
                .bearer_auth(&token)
                .body("must not land"),
        )
        .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), "unauthenticated", "{what}");
    }
    assert_eq!(w.proxy.count("PutObject"), 0);
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
    // The unknown kid made the service look for rotated keys once, not once
    // per request.
    assert!(
        w.metadata.calls(Endpoint::Jwks) <= 2,
        "{}",
        w.metadata.calls(Endpoint::Jwks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_certificates_unavailable() {
    require_rig!();
    let w = World::new("jwksdown").await;
    let server = Server::start(&w.env).await;
    let put = |key: &str, token: &str| {
        client()
            .put(format!("{}/v1/objects/{key}", server.url))
            .bearer_auth(token)
            .body("x")
    };
    // No keys cached yet and the endpoint fails: 503 + Retry-After, so that
    // Pub/Sub redelivers; the body names no URL.
    for _ in 0..3 {
        w.metadata.push_fault(Endpoint::Jwks, Fault::Status(503));
    }
    let (status, body, headers) = send(put("a.txt", &w.caller_token())).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(code(&body), "certs_unavailable");
    assert!(headers.contains_key("retry-after"));
    assert!(
        !body.contains("127.0.0.1") && !body.contains("oauth2"),
        "{body}"
    );
    // Within the failure backoff the next request does not fetch again.
    let before = w.metadata.calls(Endpoint::Jwks);
    let (status, _, _) = send(put("b.txt", &w.caller_token())).await;
    assert_eq!(status, 503);
    assert_eq!(w.metadata.calls(Endpoint::Jwks), before, "failure cached");
    w.metadata.clear_faults();

    // Wait out the failure backoff (5 s) with a probe, then the keys load.
    eventually(
        Duration::from_secs(20),
        || "the keys never loaded".into(),
        || async {
            let (status, body, _) = send(put("c.txt", &w.caller_token())).await;
            assert!(status == 201 || status == 503, "{status} {body}");
            (status == 201).then_some(())
        },
    )
    .await;

    // Keys cached, the endpoint goes down: the cached keys keep serving, and
    // a token with a kid they do not know is refused (401), not held up.
    for _ in 0..20 {
        w.metadata.push_fault(Endpoint::Jwks, Fault::Status(500));
    }
    let (status, body, _) = send(put("d.txt", &w.caller_token())).await;
    assert_eq!(status, 201, "{body}");
    let rotated = tokio::task::spawn_blocking(SigningKey::generate)
        .await
        .unwrap();
    let t = w
        .metadata
        .mint_with_key(&rotated, w.metadata.identity_claims("x"));
    let (status, _, _) = send(put("e.txt", &t)).await;
    assert_eq!(status, 401);
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await.len(),
        2,
        "c.txt and d.txt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_run_iam_reads_x_serverless_authorization_first() {
    require_rig!();
    let mut w = World::new("xsa").await;
    w.set("AUTH_MODE", "cloud-run-iam");
    let server = Server::start(&w.env).await;
    let base = server.url.clone();
    // Cloud Run checked X-Serverless-Authorization and forwards the app's
    // own Authorization untouched (here a credential meant for something else).
    let (status, body, _) = send(
        client()
            .put(format!("{base}/v1/objects/xsa.txt"))
            .header(
                "x-serverless-authorization",
                format!("Bearer {}", strip(&w.caller_token())),
            )
            .header("authorization", "Bearer app-level-credential")
            .body("via X-Serverless-Authorization"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let cases = [
        (
            "wrong iss",
            w.caller_token_with(json!({"iss": "https://evil.example"})),
            401,
        ),
        ("no iss", w.caller_token_with(json!({"iss": null})), 401),
        (
            "nbf in the future",
            w.caller_token_with(json!({"nbf": now() + 3600})),
            401,
        ),
        (
            "wrong aud",
            w.caller_token_with(json!({"aud": "https://elsewhere.test"})),
            401,
        ),
    ];
    for (what, token, want) in cases {
        let (status, body, _) = send(
            client()
                .put(format!("{base}/v1/objects/bad.txt"))
                .header(
                    "x-serverless-authorization",
                    format!("Bearer {}", strip(&token)),
                )
                .body("x"),
        )
        .await;
        assert_eq!(status, want, "{what}: {body}");
    }
    // What Cloud Run did not strip is verified: Google's signature passes,
    // an unsigned or forged token does not.
    let signed = w.caller_token();
    let (head, rest) = signed.split_once('.').unwrap();
    let (body, _) = rest.split_once('.').unwrap();
    let none = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
    for (what, token, want) in [
        ("signed by Google", signed.clone(), 201),
        ("alg none", format!("{none}.{body}."), 401),
        ("forged", format!("{head}.{body}.c2lnbmF0dXJl"), 401),
    ] {
        let (status, body, _) = send(
            client()
                .put(format!("{base}/v1/objects/signed.txt"))
                .header("x-serverless-authorization", format!("Bearer {token}"))
                .body("x"),
        )
        .await;
        assert_eq!(status, want, "{what}: {body}");
    }
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await,
        vec![w.full("signed.txt"), w.full("xsa.txt")]
    );
    let log = server.stdout.text();
    assert!(
        log.contains("AUTH_MODE=cloud-run-iam") && log.contains("relying on Cloud Run's IAM check"),
        "start-up line: {log}"
    );
}

/// The reasons a `/readyz` may fail carry the metadata URL, the audience and,
/// after an STS refusal, the service account's email and unique id.
fn assert_leaks_nothing(body: &str, w: &World) {
    let mc = w.metadata.config();
    for secret in [
        w.metadata.host(),
        "127.0.0.1".to_owned(),
        STS_AUDIENCE.to_owned(),
        SERVICE_AUDIENCE.to_owned(),
        mc.email.clone(),
        mc.unique_id.clone(),
        w.rig["RIG_ROLE_ARN"].clone(),
        "http".to_owned(),
    ] {
        assert!(!body.contains(&secret), "/readyz leaks {secret:?}: {body}");
    }
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["error"]["code"], "not_ready", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_readyz_says_not_ready_and_nothing_else() {
    require_rig!();
    // The metadata server refuses.
    let w = World::new("readyleak").await;
    for _ in 0..10 {
        w.metadata
            .push_fault(Endpoint::Identity, Fault::Status(403));
    }
    let server = Server::start(&w.env).await;
    let (status, body, headers) = send(client().get(format!("{}/readyz", server.url))).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_leaks_nothing(&body, &w);
    // The reason goes to the log.
    server.stdout.wait_for("not ready").await;
    drop(server);

    // STS refuses the token (the trust policy names another account): the
    // reason names the claims presented, for the log only.
    let w = World::new("readyleak2").await;
    w.trust_someone_else();
    let server = Server::start(&w.env).await;
    let (status, body, _) = send(client().get(format!("{}/readyz", server.url))).await;
    assert_eq!(status, 503, "{body}");
    assert_leaks_nothing(&body, &w);
    // The log carries the diagnostic.
    server.stdout.wait_for(&w.metadata.config().unique_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_headers_is_cut_off() {
    require_rig!();
    use gcp_aws_bridge::http::server::{serve, ServeOptions, HEADER_READ_TIMEOUT};
    assert_eq!(HEADER_READ_TIMEOUT, Duration::from_secs(30));
    let mut w = World::new("slowloris").await;
    w.set("AUTH_MODE", "none");
    let state = gcp_aws_bridge::http::app::AppState::new(w.config(), Default::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        header_read_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let served = tokio::spawn(serve(
        listener,
        gcp_aws_bridge::http::app::router(state),
        opts,
        async move {
            let _ = stopped.await;
        },
    ));

    // Half a request head, then nothing.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: slow")
        .await
        .unwrap();
    let t = Instant::now();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the server closes the stalled connection")
        .unwrap_or(0);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
    let _ = n;
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "no answer to a request never finished"
    );

    // A whole request head is served as usual, over HTTP/1.1 and h2c.
    let r = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = h2
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("graceful stop")
        .unwrap();
}
