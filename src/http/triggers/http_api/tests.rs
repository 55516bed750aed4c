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
    app_with(ops, &[])
}

/// [`app`] with more settings.
fn app_with(ops: &str, extra: &[(&str, &str)]) -> axum::Router {
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
    .into_iter()
    .chain(extra.iter().copied())
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
            r#"{"key":"a","expires_in":-5}"#,
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
        // Refused as an op before its body is read: a bad body too.
        request(Method::POST, "/v1/sync", &json, r#"{"bucket":"b"}"#),
        request(Method::POST, "/v1/sync", &json, "not json"),
    ] {
        let what = format!("{} {}", req.method(), req.uri());
        assert_eq!(
            code_of(&app, req).await,
            (StatusCode::FORBIDDEN, "op_not_allowed".into()),
            "{what}"
        );
    }
}

#[tokio::test]
async fn small_bodies_are_held_to_max_body_bytes_when_it_is_smaller() {
    let app = app_with(
        "put,copy,delete,replicate,sync",
        &[("MAX_BODY_BYTES", "1024")],
    );
    let big = format!(r#"{{"bucket":"b","prefix":"{}"}}"#, "p".repeat(2000));
    for path in ["/v1/sync", "/v1/copy", "/v1/presign"] {
        let req = request(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            &big,
        );
        assert_eq!(
            code_of(&app, req).await,
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into()),
            "{path}"
        );
    }
}

/// What an answer says: its status, code and message, and whether it
/// carries `Retry-After` and `WWW-Authenticate`.
async fn answer_of(app: &axum::Router, req: Request<Body>) -> (u16, String, String, bool, bool) {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().contains_key("retry-after");
    let challenge = resp.headers().contains_key("www-authenticate");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{what}: {status} {e}: {bytes:?}"));
    let text = |k: &str| v["error"][k].as_str().unwrap_or_default().to_owned();
    (status, text("code"), text("message"), retry, challenge)
}

/// The refusals the doors and the router decide on their own, through the
/// router: each answers its status, code and whole message, none with
/// `Retry-After` or `WWW-Authenticate`.
#[tokio::test]
async fn edge_refusals_answer_their_status_code_and_message() {
    let app = app("put,copy,delete,replicate,sync");
    let json = [("content-type", "application/json")];
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    let notification = |attrs: &str| format!(r#"{{"message":{{"attributes":{attrs}}}}}"#);
    let ce = |ty: &str| {
        vec![
            ("ce-specversion", "1.0".to_owned()),
            ("ce-id", "1".to_owned()),
            ("ce-type", ty.to_owned()),
            (
                "ce-source",
                "//storage.googleapis.com/projects/_/buckets/b".to_owned(),
            ),
        ]
    };
    let events = |headers: Vec<(&str, String)>, body: &str| {
        let mut b = Request::builder().method(Method::POST).uri("/events");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        b.body(Body::from(body.to_owned())).unwrap()
    };
    let finalized = "google.cloud.storage.object.v1.finalized";
    let cases: Vec<(Request<Body>, u16, &str, String)> = vec![
        (
            request(Method::GET, "/nowhere", &[], ""),
            404,
            "not_found",
            "no such route".into(),
        ),
        (
            request(Method::DELETE, "/healthz", &[], ""),
            405,
            "method_not_allowed",
            "method not allowed".into(),
        ),
        (
            request(Method::PUT, "/v1/objects/k", &[("content-length", "101")], "x"),
            413,
            "payload_too_large",
            "101 bytes is over the largest object of 100 bytes (MAX_OBJECT_BYTES)".into(),
        ),
        (
            request(Method::PUT, "/v1/objects/k", &[("if-none-match", "\"e\"")], "x"),
            400,
            "invalid_precondition",
            "only If-None-Match: * is supported".into(),
        ),
        (
            request(Method::PUT, "/v1/objects/k", &[("content-length", "one")], "x"),
            400,
            "invalid_content_length",
            "Content-Length is not a number".into(),
        ),
        (
            Request::builder()
                .method(Method::PUT)
                .uri("/v1/objects/k")
                .header(
                    "x-amz-meta-a",
                    axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
                )
                .body(Body::from("x"))
                .unwrap(),
            400,
            "invalid_metadata",
            "metadata values must be printable ASCII".into(),
        ),
        (
            request(Method::GET, "/v1/objects?limit=ten", &[], ""),
            400,
            "invalid_argument",
            "limit must be a number from 1 to 1000".into(),
        ),
        (
            request(Method::GET, "/v1/objects?prefix=a&prefix=b", &[], ""),
            400,
            "invalid_argument",
            "query string: Failed to deserialize query string: duplicate field `prefix`".into(),
        ),
        (
            request(Method::GET, "/v1/objects/a%FFb", &[], ""),
            400,
            "invalid_key",
            "the key in the path is not UTF-8 once percent-decoded".into(),
        ),
        (
            request(Method::PUT, "/v1/objects/%C3", &[], "x"),
            400,
            "invalid_key",
            "the key in the path is not UTF-8 once percent-decoded".into(),
        ),
        (
            request(
                Method::POST,
                "/v1/presign",
                &json,
                r#"{"key":"a","method":"post"}"#,
            ),
            400,
            "invalid_argument",
            r#"method "POST" is not GET or PUT"#.into(),
        ),
        (
            request(
                Method::POST,
                "/v1/presign",
                &json,
                r#"{"key":"a","expires_in":0}"#,
            ),
            400,
            "invalid_argument",
            "expires_in must be at least 1 second".into(),
        ),
        (
            request(Method::POST, "/v1/copy", &json, "not json"),
            400,
            "invalid_json",
            r#"expected {"source_key","key"}: expected ident at line 1 column 2"#.into(),
        ),
        (
            request(
                Method::POST,
                "/v1/copy",
                &[("content-length", "65537")],
                "",
            ),
            413,
            "payload_too_large",
            "the request body is over 65536 bytes".into(),
        ),
        (
            request(Method::POST, "/v1/sync", &json, r#"{"prefix":"a/"}"#),
            400,
            "invalid_json",
            r#"missing field `bucket`; expected {"bucket","prefix"?,"delete"?}"#.into(),
        ),
        (
            request(Method::POST, "/pubsub", &json, "[]"),
            400,
            "invalid_json",
            "not a Pub/Sub push envelope {message:{data,attributes,messageId,publishTime},subscription}: invalid length 0, expected struct PushEnvelope with 3 elements at line 1 column 2".into(),
        ),
        (
            request(Method::POST, "/pubsub", &json, r#"{"message":{}}"#),
            400,
            "invalid_message",
            "the message has no data: expected a JSON command or a Cloud Storage notification"
                .into(),
        ),
        (
            request(
                Method::POST,
                "/pubsub",
                &json,
                r#"{"message":{"data":"!!"}}"#,
            ),
            400,
            "invalid_base64",
            "message.data is not valid base64".into(),
        ),
        (
            request(
                Method::POST,
                "/pubsub",
                &json,
                &notification(r#"{"eventType":"OBJECT_FINALIZE"}"#),
            ),
            400,
            "invalid_notification",
            "a Cloud Storage notification names bucketId and objectId".into(),
        ),
        (
            request(
                Method::POST,
                "/pubsub",
                &json,
                &notification(r#"{"eventType":"OBJECT_X","bucketId":"b","objectId":"o"}"#),
            ),
            400,
            "unknown_event_type",
            r#"unknown Cloud Storage eventType "OBJECT_X"; accepted: OBJECT_FINALIZE, OBJECT_DELETE, OBJECT_ARCHIVE, OBJECT_METADATA_UPDATE"#.into(),
        ),
        (
            events(vec![], "{}"),
            400,
            "invalid_cloudevent",
            "not a CloudEvent: specversion is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)".into(),
        ),
        (
            events(
                vec![("ce-specversion", "1.0".into()), ("ce-id", "1".into())],
                "{}",
            ),
            400,
            "invalid_cloudevent",
            "not a CloudEvent: ce-type is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)".into(),
        ),
        (
            events(vec![("ce-specversion", "0.3".into())], "{}"),
            400,
            "invalid_cloudevent",
            r#"unsupported CloudEvents specversion "0.3"; 1.0 is supported"#.into(),
        ),
        (
            events(
                vec![("content-type", "application/cloudevents+json".into())],
                r#"{"specversion":"1.0","id":"1","type":"t","source":"s","data_base64":"!!"}"#,
            ),
            400,
            "invalid_base64",
            "data_base64 is not valid base64".into(),
        ),
        (
            events(
                vec![("content-type", "application/cloudevents+json".into())],
                &format!(
                    r#"{{"specversion":"1.0","id":"1","type":"t","source":"s","data_base64":"{}"}}"#,
                    b64("{not")
                ),
            ),
            400,
            "invalid_json",
            "the event data is not JSON: key must be a string at line 1 column 2".into(),
        ),
        (
            events(
                vec![("content-type", "application/cloudevents+json".into())],
                r#"{"specversion":"1.0","id":"1","type":"t"}"#,
            ),
            400,
            "invalid_cloudevent",
            "not a CloudEvent: source is missing (binary mode needs ce-specversion, ce-id, ce-type and ce-source headers; structured mode a application/cloudevents+json body)".into(),
        ),
        (
            events(
                vec![("content-type", "application/cloudevents+json".into())],
                "[1]",
            ),
            400,
            "invalid_json",
            "not a structured CloudEvent: invalid type: integer `1`, expected a string at line 1 column 2".into(),
        ),
        (
            events(ce(finalized), "{not"),
            400,
            "invalid_json",
            "the event data is not JSON: key must be a string at line 1 column 2".into(),
        ),
        (
            events(ce(finalized), r#"{"size":[]}"#),
            400,
            "invalid_event",
            "the event data is not a Cloud Storage object: data did not match any variant of untagged enum Raw at line 1 column 11".into(),
        ),
        (
            events(ce(finalized), "{}"),
            400,
            "invalid_event",
            "a Cloud Storage event names its bucket and object".into(),
        ),
        (
            events(ce("google.cloud.pubsub.topic.v1.messagePublished"), "1"),
            400,
            "invalid_event",
            "the event data is not a Pub/Sub message: invalid type: integer `1`, expected struct Published at line 1 column 1".into(),
        ),
        (
            events(ce("com.example.x"), "{}"),
            400,
            "unknown_event_type",
            r#"unknown CloudEvent type "com.example.x"; accepted: google.cloud.pubsub.topic.v1.messagePublished, google.cloud.storage.object.v1.finalized, google.cloud.storage.object.v1.deleted, google.cloud.storage.object.v1.archived, google.cloud.storage.object.v1.metadataUpdated"#.into(),
        ),
    ];
    let mut wrong = Vec::new();
    for (req, status, code, message) in cases {
        let what = format!("{} {} {:?}", req.method(), req.uri(), req.headers());
        let expected = (status, code.to_owned(), message, false, false);
        let got = answer_of(&app, req).await;
        if got != expected {
            wrong.push(format!(
                "{what}:\n  got      {got:?}\n  expected {expected:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The request middleware (`observe`) wraps each route (`Router::layer`)
/// and takes the request metric's route template from the request: a
/// layer in its place on this router sees the template routing matched,
/// and none on the fallback.
#[tokio::test]
async fn a_layer_around_the_routes_reads_the_route_template() {
    async fn look(
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map_or("unmatched".to_owned(), |m| m.as_str().to_owned());
        let mut resp = next.run(req).await;
        resp.headers_mut()
            .insert("x-route", route.parse().expect("a header value"));
        resp
    }
    let app = app("").layer(axum::middleware::from_fn(look));
    for (method, path, route) in [
        (Method::GET, "/healthz", "/healthz"),
        (Method::PATCH, "/v1/objects/a/b", "/v1/objects/{*key}"),
        (Method::GET, "/v1/objects/", "/v1/objects/"),
        (Method::POST, "/tasks", "/tasks"),
        (Method::GET, "/no/such/route", "unmatched"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(path)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(
            resp.headers().get("x-route").and_then(|v| v.to_str().ok()),
            Some(route),
            "{method} {path} ({})",
            resp.status()
        );
    }
}
