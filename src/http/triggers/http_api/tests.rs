//! The `/v1` routes through the router in this process, for what is
//! refused before S3 is asked: bad keys, ranges, preconditions, lengths,
//! content types, metadata, listing arguments, copy and presign bodies,
//! and ops the doors do not allow. AWS is at a closed port, so an answer
//! that needed S3 would be a 503, never the 4xx asserted.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::aws::AwsOptions;
use crate::config::Config;
use crate::http::app::router;
use crate::http::state::AppState;

/// The router of a service with no caller check, `MAX_OBJECT_BYTES=100`,
/// the doors open to `ops`, and AWS at a closed port.
fn app(ops: &str) -> axum::Router {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let env = [
        ("TARGET_AUDIENCE", "sts.amazonaws.com"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/bridge"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", closed.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("S3_BUCKET", "b"),
        ("S3_PREFIX", "p/"),
        ("AUTH_MODE", "none"),
        ("GCE_METADATA_HOST", closed.trim_start_matches("http://")),
        ("ID_TOKEN_SOURCE", "metadata"),
        ("MAX_OBJECT_BYTES", "100"),
        ("COMMAND_OPS", ops),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let config = Config::from_iter(env).expect("test configuration");
    router(AppState::new(config, AwsOptions::default()).expect("the state"))
}

/// Sends `req` and answers its status and error code.
async fn code_of(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{what}: {status} {e}: {bytes:?}"));
    let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
    (status, code)
}

/// Asserts that `req` answers 400 with `code`.
async fn assert_bad(app: &axum::Router, req: Request<Body>, code: &str, what: &str) {
    assert_eq!(
        code_of(app, req).await,
        (StatusCode::BAD_REQUEST, code.into()),
        "{what}"
    );
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn bad_keys_are_invalid_key_on_every_object_route() {
    let app = app("put,copy,delete");
    for key in ["%2Fabs", "a/../b", "./a", ".gcp-aws-bridge/run", "a%07b"] {
        for method in [Method::PUT, Method::GET, Method::DELETE] {
            let req = request(method.clone(), &format!("/v1/objects/{key}"), &[], "x");
            assert_bad(&app, req, "invalid_key", &format!("{method} {key}")).await;
        }
    }
    let req = request(Method::GET, "/v1/objects/", &[], "");
    assert_eq!(code_of(&app, req).await.1, "invalid_key");
    let long = "k".repeat(1024);
    let req = request(Method::PUT, &format!("/v1/objects/{long}"), &[], "x");
    assert_eq!(code_of(&app, req).await.1, "invalid_key");
}

#[tokio::test]
async fn put_headers_are_checked_before_the_body() {
    let app = app("put");
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let long_value = "v".repeat(2100);
    let long_type = "t".repeat(300);
    let cases: [(Headers<'_>, StatusCode, &str); 6] = [
        (
            &[("if-none-match", "\"etag\"")],
            StatusCode::BAD_REQUEST,
            "invalid_precondition",
        ),
        (
            &[("content-length", "101")],
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            &[("x-amz-meta-goog-generation", "1")],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            &[("x-amz-meta-Goog-Bucket", "b")],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            &[("x-amz-meta-big", &long_value)],
            StatusCode::BAD_REQUEST,
            "invalid_metadata",
        ),
        (
            &[("content-type", &long_type)],
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
    ];
    for (headers, status, code) in cases {
        let req = request(Method::PUT, "/v1/objects/k", headers, "x");
        assert_eq!(
            code_of(&app, req).await,
            (status, code.into()),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn a_range_that_is_no_byte_range_is_refused() {
    let app = app("put");
    for range in ["lines=1-2", "bytes=5-1", "bytes=x-"] {
        let req = request(Method::GET, "/v1/objects/k", &[("range", range)], "");
        let (status, code) = code_of(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{range}: {code}");
    }
}

#[tokio::test]
async fn listing_arguments_are_checked() {
    let app = app("put");
    for (query, code) in [
        ("limit=abc", "invalid_argument"),
        ("limit=0", "invalid_argument"),
        ("limit=1001", "invalid_argument"),
        ("cursor=has%20space", "invalid_argument"),
        ("prefix=..%2F", "invalid_key"),
        ("prefix=.gcp-aws-bridge%2F", "invalid_key"),
    ] {
        let req = request(Method::GET, &format!("/v1/objects?{query}"), &[], "");
        assert_bad(&app, req, code, query).await;
    }
}

#[tokio::test]
async fn copy_and_presign_bodies_are_checked() {
    let app = app("put,copy");
    let json = [("content-type", "application/json")];
    for (path, body, code) in [
        ("/v1/copy", "not json", "invalid_json"),
        ("/v1/copy", r#"{"source_key":"a"}"#, "invalid_json"),
        (
            "/v1/copy",
            r#"{"source_key":"a","key":"b","x":1}"#,
            "invalid_json",
        ),
        (
            "/v1/copy",
            r#"{"source_key":"../a","key":"b"}"#,
            "invalid_key",
        ),
        (
            "/v1/copy",
            r#"{"source_key":"a","key":"/b"}"#,
            "invalid_key",
        ),
        (
            "/v1/presign",
            r#"{"key":"a","method":"DELETE"}"#,
            "invalid_argument",
        ),
        (
            "/v1/presign",
            r#"{"key":"a","expires_in":0}"#,
            "invalid_argument",
        ),
        (
            "/v1/presign",
            r#"{"key":"a","expires_in":604801}"#,
            "invalid_argument",
        ),
        ("/v1/presign", r#"{"key":"a/./b"}"#, "invalid_key"),
    ] {
        let req = request(Method::POST, path, &json, body);
        assert_bad(&app, req, code, &format!("{path} {body}")).await;
    }
}

#[tokio::test]
async fn ops_the_doors_do_not_allow_are_forbidden() {
    let app = app("replicate");
    let json = [("content-type", "application/json")];
    for req in [
        request(Method::PUT, "/v1/objects/k", &[], "x"),
        request(Method::DELETE, "/v1/objects/k", &[], ""),
        request(
            Method::POST,
            "/v1/copy",
            &json,
            r#"{"source_key":"a","key":"b"}"#,
        ),
        request(
            Method::POST,
            "/v1/presign",
            &json,
            r#"{"key":"a","method":"PUT"}"#,
        ),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        assert_eq!(
            code_of(&app, req).await,
            (StatusCode::FORBIDDEN, "op_not_allowed".into()),
            "{what}"
        );
    }
}
