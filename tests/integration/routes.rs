//! The routes in this process (`tower::ServiceExt::oneshot` on the router),
//! with no rig: status classes, the three caller-check modes, body limits,
//! unknown routes and methods, bad keys, the error body, and no token or
//! secret in any body. AWS is at a closed port, or at a stand-in that hands
//! out credentials and refuses every S3 request.

use crate::common;
use crate::common::answer::Answer;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use bridge_testkit::SigningKey;
use common::in_process::{
    FakeAws, InProcess, FAKE_ACCESS_KEY_ID, FAKE_SECRET_ACCESS_KEY, FAKE_SESSION_TOKEN,
};
use serde_json::{json, Value};

/// Sends one request and checks what every answer must hold: an error
/// answer but to HEAD has the error body (`{"error":{"code","message"}}`,
/// nothing else, code in snake_case), and no answer carries the caller's
/// token.
async fn send(router: &Router, req: Request<Body>) -> Answer {
    let token = req
        .headers()
        .iter()
        .filter(|(n, _)| *n == header::AUTHORIZATION || n.as_str() == "x-serverless-authorization")
        .filter_map(|(_, v)| v.to_str().ok())
        .filter_map(|v| v.split_once(' ').map(|(_, t)| t.trim().to_owned()))
        .collect::<Vec<_>>();
    let what = format!("{} {}", req.method(), req.uri());
    let head = req.method() == Method::HEAD;
    let a = common::answer::send(router, req).await;
    let text = a.text();
    for t in token.iter().filter(|t| t.len() > 8) {
        assert!(
            !text.contains(t.as_str()),
            "{what}: the caller's token in {text}"
        );
        // Any of its three parts: the claims or the signature alone would
        // say too much.
        // (Cloud Run's stand-in for a signature is no secret.)
        for part in t
            .split('.')
            .filter(|p| p.len() > 16 && *p != "SIGNATURE_REMOVED_BY_GOOGLE")
        {
            assert!(!text.contains(part), "{what}: part of the token in {text}");
        }
    }
    if head {
        assert!(a.body.is_empty(), "{what}: a body: {text}");
    } else if !a.status.is_success() {
        let json: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        assert_error_body(&what, a.status, &a.headers, &json, &text);
    }
    a
}

fn assert_error_body(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    json: &Value,
    text: &str,
) {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ctype.starts_with("application/json"),
        "{what}: {status} answered {ctype:?}: {text}"
    );
    let body = json
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {status} body is not an object: {text}"));
    // /readyz adds its "status" beside the error.
    let keys: Vec<&str> = body.keys().map(String::as_str).collect();
    assert!(
        keys == ["error"] || keys == ["error", "status"],
        "{what}: {status} body has {keys:?}: {text}"
    );
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error is not an object: {text}"));
    let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["code", "message"], "{what}: {text}");
    let code = error["code"].as_str().expect("code is a string");
    assert!(
        !code.is_empty()
            && code.starts_with(|c: char| c.is_ascii_lowercase())
            && code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "{what}: code {code:?} is not snake_case"
    );
    let message = error["message"].as_str().expect("message is a string");
    assert!(!message.trim().is_empty(), "{what}: empty message");
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // Transient answers tell the caller when to come back; a 500 is a bug.
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{what}: {text}");
        assert!(
            headers.contains_key(header::RETRY_AFTER),
            "{what}: 503 without Retry-After"
        );
        // 5xx bodies say nothing internal: no address, no URL.
        assert!(
            !text.contains("127.0.0.1") && !text.contains("http://"),
            "{what}: {text}"
        );
    }
}

fn get(path: &str) -> Request<Body> {
    request(Method::GET, path, None, Body::empty())
}

fn request(method: Method, path: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(body).expect("a request")
}

fn json_request(path: &str, token: Option<&str>, body: Value) -> Request<Body> {
    let mut req = request(Method::POST, path, token, Body::from(body.to_string()));
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("a header value"),
    );
    req
}

/// The Pub/Sub push envelope of `data`.
fn envelope(data: &[u8]) -> Value {
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": {},
            "messageId": "1",
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": "projects/p/subscriptions/s",
    })
}

/// A Pub/Sub push delivery of `data`.
fn push(token: Option<&str>, data: &[u8]) -> Request<Body> {
    json_request("/pubsub", token, envelope(data))
}

/// `GET /v1/objects/` asks for the empty key: 400 `invalid_key` once the
/// caller has passed the check, without a call to AWS.
const PAST_THE_CALLER_CHECK: &str = "/v1/objects/";

async fn assert_passes(router: &Router, req: Request<Body>, what: &str) {
    send(router, req)
        .await
        .assert_code(400, "invalid_key", what);
}

async fn assert_refused(router: &Router, req: Request<Body>, status: u16, code: &str, what: &str) {
    send(router, req).await.assert_code(status, code, what);
}

#[tokio::test]
async fn health_is_open_and_readiness_without_sts_says_not_ready_and_nothing_more() {
    let s = InProcess::new("verify").await;
    let router = s.router();
    let a = send(&router, get("/healthz")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ok"}));

    let a = send(&router, get("/readyz")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(
        a.json(),
        json!({"status": "not_ready", "error": {"code": "not_ready", "message": "not_ready"}})
    );
    assert!(a.headers.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn unknown_routes_answer_404_and_wrong_methods_405() {
    let s = InProcess::new("verify").await;
    let router = s.router();
    let token = s.caller_token();
    for path in ["/", "/nope", "/v1", "/v1/object/x", "/healthz/x"] {
        assert_refused(&router, get(path), 404, "not_found", path).await;
    }
    for (method, path) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/readyz"),
        (Method::GET, "/pubsub"),
        (Method::PUT, "/events"),
        (Method::POST, "/v1/objects"),
        (Method::POST, "/v1/objects/a"),
        (Method::PATCH, "/v1/objects/a"),
        (Method::GET, "/v1/copy"),
        (Method::GET, "/v1/presign"),
        (Method::DELETE, "/v1/buckets"),
        (Method::POST, "/v1/whoami"),
    ] {
        let what = format!("{method} {path}");
        let req = request(method, path, Some(&token), Body::empty());
        assert_refused(&router, req, 405, "method_not_allowed", &what).await;
    }
}

#[tokio::test]
async fn verify_mode_checks_signature_claims_and_allow_list() {
    let s = InProcess::new("verify").await;
    let router = s.router();
    let protected = PAST_THE_CALLER_CHECK;
    let with = |t: &str| request(Method::GET, protected, Some(t), Body::empty());

    assert_passes(&router, with(&s.caller_token()), "a valid token").await;
    // The audience may be an array.
    let t = s.caller_token_with(json!({"aud": ["other", common::SERVICE_AUDIENCE]}));
    assert_passes(&router, with(&t), "aud as an array").await;
    // Cloud Run's header is read first.
    let mut req = with("not-a-token");
    req.headers_mut().insert(
        "x-serverless-authorization",
        format!("Bearer {}", s.caller_token()).parse().unwrap(),
    );
    assert_passes(&router, req, "X-Serverless-Authorization").await;

    let now = bridge_testkit::keys::now_secs();
    let forged = SigningKey::generate();
    let signed_elsewhere = common::caller_claims(json!({}));
    let unauthenticated = [
        (
            "no token",
            request(Method::GET, protected, None, Body::empty()),
        ),
        ("not bearer", {
            let mut r = get(protected);
            r.headers_mut()
                .insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
            r
        }),
        ("empty bearer", {
            let mut r = get(protected);
            r.headers_mut()
                .insert(header::AUTHORIZATION, "Bearer  ".parse().unwrap());
            r
        }),
        ("garbage", with("not.a.jwt")),
        (
            "another key",
            with(&s.metadata.mint_with_key(&forged, signed_elsewhere)),
        ),
        (
            "expired",
            with(&s.caller_token_with(json!({"iat": now - 7200, "exp": now - 3600}))),
        ),
        (
            "wrong audience",
            with(&s.caller_token_with(json!({"aud": "https://other.test"}))),
        ),
        (
            "wrong issuer",
            with(&s.caller_token_with(json!({"iss": "https://evil.test"}))),
        ),
        ("no exp", with(&s.caller_token_with(json!({"exp": null})))),
        (
            "issued in the future",
            with(&s.caller_token_with(json!({"iat": now + 3600, "exp": now + 7200}))),
        ),
        (
            "not valid yet",
            with(&s.caller_token_with(json!({"nbf": now + 3600}))),
        ),
    ];
    for (what, req) in unauthenticated {
        assert_refused(&router, req, 401, "unauthenticated", what).await;
    }

    // Cloud Run forwarded the token: this deployment can never work, and the
    // answer says which mode it needs.
    let t = s.caller_token();
    let (rest, _) = t.rsplit_once('.').unwrap();
    let stripped = format!("{rest}.SIGNATURE_REMOVED_BY_GOOGLE");
    let a = send(&router, with(&stripped)).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (StatusCode::UNAUTHORIZED, "signature_removed")
    );
    assert!(a.text().contains("AUTH_MODE=cloud-run-iam"), "{}", a.text());

    let forbidden = [
        (
            "another email",
            s.caller_token_with(json!({"email": "other@example.com"})),
        ),
        ("no email", s.caller_token_with(json!({"email": null}))),
        (
            "email not verified",
            s.caller_token_with(json!({"email_verified": false})),
        ),
    ];
    for (what, t) in forbidden {
        assert_refused(&router, with(&t), 403, "forbidden", what).await;
    }
}

#[tokio::test]
async fn cloud_run_iam_mode_checks_the_claims_of_the_forwarded_token() {
    let s = InProcess::new("cloud-run-iam").await;
    let router = s.router();
    let protected = PAST_THE_CALLER_CHECK;
    let stripped = |t: String| {
        let (rest, _) = t.rsplit_once('.').unwrap();
        format!("{rest}.SIGNATURE_REMOVED_BY_GOOGLE")
    };
    let with = |t: &str| request(Method::GET, protected, Some(t), Body::empty());
    let serverless = |t: &str, authorization: &str| {
        let mut r = request(Method::GET, protected, Some(authorization), Body::empty());
        r.headers_mut().insert(
            "x-serverless-authorization",
            format!("Bearer {t}").parse().unwrap(),
        );
        r
    };

    let good = stripped(s.caller_token());
    assert_passes(&router, with(&good), "a forwarded token").await;
    // X-Serverless-Authorization wins over Authorization, which the app
    // keeps for itself.
    assert_passes(&router, serverless(&good, "app-token"), "forwarded header").await;
    assert_refused(
        &router,
        serverless("app-token", &good),
        401,
        "unauthenticated",
        "a bad forwarded header",
    )
    .await;

    let now = bridge_testkit::keys::now_secs();
    let unauthenticated = [
        (
            "no token",
            request(Method::GET, protected, None, Body::empty()),
        ),
        ("garbage", with("not.a.jwt")),
        (
            "expired",
            with(&stripped(s.caller_token_with(
                json!({"iat": now - 7200, "exp": now - 3600}),
            ))),
        ),
        (
            "wrong audience",
            with(&stripped(
                s.caller_token_with(json!({"aud": "https://other.test"})),
            )),
        ),
        (
            "wrong issuer",
            with(&stripped(
                s.caller_token_with(json!({"iss": "https://evil.test"})),
            )),
        ),
        (
            "no exp",
            with(&stripped(s.caller_token_with(json!({"exp": null})))),
        ),
        (
            "not valid yet",
            with(&stripped(s.caller_token_with(json!({"nbf": now + 3600})))),
        ),
    ];
    for (what, req) in unauthenticated {
        assert_refused(&router, req, 401, "unauthenticated", what).await;
    }
    let t = stripped(s.caller_token_with(json!({"email": "other@example.com"})));
    assert_refused(&router, with(&t), 403, "forbidden", "another email").await;
    let t = stripped(s.caller_token_with(json!({"email_verified": false})));
    assert_refused(&router, with(&t), 403, "forbidden", "email not verified").await;

    // A signature Cloud Run did not remove: verified as in verify mode.
    let signed = s.caller_token();
    assert_passes(&router, with(&signed), "signed by Google, not stripped").await;
    let parts: Vec<&str> = signed.split('.').collect();
    let (head, body, sig) = (parts[0], parts[1], parts[2]);
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = b64(json!({"alg": "none", "typ": "JWT"}));
    let other = s.caller_token_with(json!({"exp": now + 7000}));
    let other_body = other.split('.').nth(1).unwrap();
    let refused = [
        ("alg none, unsigned", format!("{none}.{body}.")),
        (
            "alg none, stripped",
            format!("{none}.{body}.SIGNATURE_REMOVED_BY_GOOGLE"),
        ),
        (
            "HS256, stripped",
            format!(
                "{}.{body}.SIGNATURE_REMOVED_BY_GOOGLE",
                b64(json!({"alg": "HS256", "typ": "JWT"}))
            ),
        ),
        ("a made-up signature", format!("{head}.{body}.c2lnbmF0dXJl")),
        (
            "another token's signature",
            format!("{head}.{other_body}.{sig}"),
        ),
        (
            "iat in the future",
            stripped(s.caller_token_with(json!({"iat": now + 3600}))),
        ),
        (
            "iat in the future, signed",
            s.caller_token_with(json!({"iat": now + 3600})),
        ),
        (
            "no iat",
            stripped(s.caller_token_with(json!({"iat": null}))),
        ),
    ];
    for (what, t) in refused {
        assert_refused(&router, with(&t), 401, "unauthenticated", what).await;
    }
}

#[tokio::test]
async fn none_mode_lets_anyone_in_and_the_routes_still_check_their_input() {
    let s = InProcess::new("none").await;
    let router = s.router();
    assert_passes(&router, get(PAST_THE_CALLER_CHECK), "no token").await;
    assert_passes(
        &router,
        request(
            Method::GET,
            PAST_THE_CALLER_CHECK,
            Some("anything"),
            Body::empty(),
        ),
        "any token",
    )
    .await;
}

#[tokio::test]
async fn bad_keys_answer_400_before_any_call_to_aws() {
    let s = InProcess::new("none").await;
    let router = s.router();
    let too_long = format!(
        "/v1/objects/{}",
        "k".repeat(1024 - common::in_process::PREFIX.len() + 1)
    );
    let longest = "k".repeat(1024 - common::in_process::PREFIX.len());
    for path in [
        "/v1/objects/",
        "/v1/objects//leading-slash",
        "/v1/objects/a/../b",
        "/v1/objects/..",
        "/v1/objects/a/./b",
        "/v1/objects/.",
        "/v1/objects/ctl%01char",
        "/v1/objects/tab%09char",
        "/v1/objects/del%7Fchar",
        too_long.as_str(),
    ] {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            let what = format!("{method} {path}");
            let a = send(&router, request(method.clone(), path, None, Body::empty())).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{what}: {}", a.text());
            if method != Method::HEAD {
                assert_eq!(a.code(), "invalid_key", "{what}: {}", a.text());
            }
        }
    }
    // The same rules hold for keys in bodies.
    for key in [
        "",
        "/x",
        "a/../b",
        "a\u{1}b",
        too_long.trim_start_matches("/v1/objects/"),
    ] {
        let what = format!("copy to {key:?}");
        let req = json_request("/v1/copy", None, json!({"source_key": "ok", "key": key}));
        assert_refused(&router, req, 400, "invalid_key", &what).await;
        let req = json_request("/v1/presign", None, json!({"key": key, "method": "GET"}));
        assert_refused(
            &router,
            req,
            400,
            "invalid_key",
            &format!("presign {key:?}"),
        )
        .await;
        let cmd = json!({"op": "delete", "key": key}).to_string();
        let req = push(None, cmd.as_bytes());
        assert_refused(&router, req, 400, "invalid_key", &format!("pubsub {key:?}")).await;
    }
    // The longest key allowed gets past the key check (to the closed AWS
    // port: 503).
    let a = send(
        &router,
        request(
            Method::DELETE,
            &format!("/v1/objects/{longest}"),
            None,
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
}

#[tokio::test]
async fn bodies_over_their_limits_answer_413() {
    let mut s = InProcess::new("none").await;
    s.set("MAX_BODY_BYTES", "1024");
    s.set("MAX_OBJECT_BYTES", "4096");
    let router = s.router();
    let big = vec![b'x'; 2048];

    // Declared lengths are refused before a byte is read.
    let mut req = push(None, &big);
    let len = envelope(&big).to_string().len();
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, len.to_string().parse().unwrap());
    assert_refused(&router, req, 413, "payload_too_large", "pubsub, declared").await;
    // Undeclared ones when they pass the limit.
    assert_refused(
        &router,
        push(None, &big),
        413,
        "payload_too_large",
        "pubsub, streamed",
    )
    .await;
    let mut req = request(Method::POST, "/events", None, Body::from(big.clone()));
    let h = req.headers_mut();
    h.insert("ce-specversion", "1.0".parse().unwrap());
    h.insert(
        "ce-type",
        "google.cloud.storage.object.v1.finalized".parse().unwrap(),
    );
    h.insert(
        "ce-source",
        "//storage.googleapis.com/projects/_/buckets/b"
            .parse()
            .unwrap(),
    );
    h.insert("ce-id", "1".parse().unwrap());
    h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    assert_refused(&router, req, 413, "payload_too_large", "events").await;
    let req = json_request(
        "/v1/copy",
        None,
        json!({"source_key": "a", "key": "b", "pad": "x".repeat(2048)}),
    );
    assert_refused(&router, req, 413, "payload_too_large", "copy").await;

    // /v1/copy and /v1/presign stop at 64 KiB even when MAX_BODY_BYTES allows more.
    s.set("MAX_BODY_BYTES", &(1024 * 1024).to_string());
    let router = s.router();
    let pad = "x".repeat(64 * 1024);
    let req = json_request(
        "/v1/copy",
        None,
        json!({"source_key": "a", "key": "b", "pad": pad}),
    );
    assert_refused(&router, req, 413, "payload_too_large", "copy, 64 KiB").await;
    let req = json_request(
        "/v1/presign",
        None,
        json!({"key": "b", "method": "GET", "pad": pad}),
    );
    assert_refused(&router, req, 413, "payload_too_large", "presign, 64 KiB").await;

    // A PUT declaring more than MAX_OBJECT_BYTES is refused before its body.
    let mut req = request(
        Method::PUT,
        "/v1/objects/big",
        None,
        Body::from(vec![0u8; 16]),
    );
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, "4097".parse().unwrap());
    assert_refused(
        &router,
        req,
        413,
        "payload_too_large",
        "PUT over MAX_OBJECT_BYTES",
    )
    .await;
}

#[tokio::test]
async fn deliveries_that_can_never_succeed_answer_400_and_others_403() {
    let s = InProcess::new("none").await;
    let router = s.router();
    let bad_envelope = json_request("/pubsub", None, json!({"nope": 1}));
    assert_eq!(
        send(&router, bad_envelope).await.status,
        StatusCode::BAD_REQUEST
    );
    let mut not_json = request(Method::POST, "/pubsub", None, Body::from("{"));
    not_json.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("a header value"),
    );
    assert_eq!(
        send(&router, not_json).await.status,
        StatusCode::BAD_REQUEST
    );
    let bad_base64 = json_request(
        "/pubsub",
        None,
        json!({"message": {"data": "!!!", "messageId": "1"}, "subscription": "s"}),
    );
    assert_eq!(
        send(&router, bad_base64).await.status,
        StatusCode::BAD_REQUEST
    );
    for data in [
        &b"not json"[..],
        br#"{"op":"explode","key":"a"}"#,
        br#"{"op":"put","key":"a","body_base64":"!!!"}"#,
        br#"{"op":"put","key":"a","body":"x","metadata":{"goog-generation":"1"}}"#,
    ] {
        let a = send(&router, push(None, data)).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{}: {}",
            String::from_utf8_lossy(data),
            a.text()
        );
    }
    // Metadata names under goog- are replication's.
    let mut req = request(Method::PUT, "/v1/objects/a", None, Body::from("x"));
    req.headers_mut()
        .insert("x-amz-meta-goog-generation", "1".parse().unwrap());
    assert_refused(&router, req, 400, "invalid_metadata", "PUT goog- metadata").await;
    // Replication is off: no bucket may be read.
    let cmd = json!({"op": "replicate", "bucket": "some-bucket", "name": "a"}).to_string();
    assert_refused(
        &router,
        push(None, cmd.as_bytes()),
        403,
        "source_bucket_not_allowed",
        "replicate",
    )
    .await;
    // An event type nobody handles.
    let mut req = request(Method::POST, "/events", None, Body::from("{}"));
    let h = req.headers_mut();
    h.insert("ce-specversion", "1.0".parse().unwrap());
    h.insert("ce-type", "com.example.unknown".parse().unwrap());
    h.insert("ce-source", "//example".parse().unwrap());
    h.insert("ce-id", "1".parse().unwrap());
    h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    assert_eq!(send(&router, req).await.status, StatusCode::BAD_REQUEST);
    let req = json_request("/v1/presign", None, json!({"key": "a", "method": "POST"}));
    assert_eq!(send(&router, req).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn aws_out_of_reach_answers_503_with_retry_after() {
    let s = InProcess::new("none").await;
    let router = s.router();
    for req in [
        request(Method::GET, "/v1/objects/a", None, Body::empty()),
        request(Method::PUT, "/v1/objects/a", None, Body::from("x")),
        push(None, br#"{"op":"put","key":"a","body":"x"}"#),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        let a = send(&router, req).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            a.text()
        );
    }
}

#[tokio::test]
async fn no_token_or_secret_in_any_body() {
    let aws = FakeAws::start().await;
    let mut s = InProcess::new("verify").await;
    s.set("AWS_ENDPOINT_URL", &aws.url);
    let router = s.router();
    let token = s.caller_token();
    let t = Some(token.as_str());
    let a = send(&router, get("/readyz")).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "credentials from the stand-in: {}",
        a.text()
    );
    let a = send(
        &router,
        request(Method::GET, "/v1/whoami", t, Body::empty()),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["aws"]["account"], "123456789012", "{}", a.text());

    let requests = vec![
        request(Method::GET, "/v1/whoami", t, Body::empty()),
        request(Method::GET, "/v1/objects/a", t, Body::empty()),
        request(Method::HEAD, "/v1/objects/a", t, Body::empty()),
        request(Method::PUT, "/v1/objects/a", t, Body::from("x")),
        request(Method::DELETE, "/v1/objects/a", t, Body::empty()),
        request(Method::GET, "/v1/objects?prefix=a", t, Body::empty()),
        request(Method::GET, "/v1/buckets", t, Body::empty()),
        json_request("/v1/copy", t, json!({"source_key": "a", "key": "b"})),
        json_request(
            "/v1/presign",
            t,
            json!({"key": "a", "method": "GET", "expires_in": 60}),
        ),
        push(t, br#"{"op":"put","key":"a","body":"x"}"#),
        push(t, br#"{"op":"delete","key":"a"}"#),
        request(Method::GET, "/v1/objects/", t, Body::empty()),
        request(Method::GET, "/v1/whoami", Some("x.y.z"), Body::empty()),
    ];
    let mut statuses = Vec::new();
    for req in requests {
        let presign = req.uri().path() == "/v1/presign";
        let what = format!("{} {}", req.method(), req.uri());
        let a = send(&router, req).await;
        statuses.push(a.status.as_u16() / 100);
        assert!(
            !a.text().contains(FAKE_SECRET_ACCESS_KEY),
            "{what}: the AWS secret in {}",
            a.text()
        );
        // The service's own ID token (a JWT: base64url of `{"`).
        assert!(!a.text().contains("eyJ"), "{what}: a JWT in {}", a.text());
        // A presigned URL carries the session token by design, and nothing
        // else does.
        if !presign {
            assert!(
                !a.text().contains(FAKE_SESSION_TOKEN),
                "{what}: {}",
                a.text()
            );
            assert!(
                !a.text().contains(FAKE_ACCESS_KEY_ID),
                "{what}: {}",
                a.text()
            );
        }
        let logged = a
            .headers
            .values()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(FAKE_SECRET_ACCESS_KEY) || v.contains(FAKE_SESSION_TOKEN));
        assert!(!logged, "{what}: a secret in the headers");
    }
    // Each status class was met: 2xx (whoami, presign), 4xx (bad key, bad
    // token) and S3's refusals.
    assert!(
        statuses.contains(&2) && statuses.contains(&4),
        "{statuses:?}"
    );
}
