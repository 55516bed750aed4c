//! The service end to end: the real binary against the metadata emulator,
//! the STS-gated fault proxy and moto with IAM authentication on. Covers
//! every route of the HTTP surface, the status of every class of bad input
//! (and that it changes nothing in S3), caller verification in each
//! `AUTH_MODE`, graceful shutdown with a request in flight, and the logs.

use crate::common;
use crate::common::answer::{send_http, Answer};
use crate::common::{eventually, require_rig};

use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bridge_testkit::{Endpoint, Fault, ProxyFault, SigningKey};
use common::*;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `PUT /v1/objects/{key}` with a caller token.
async fn put_object(
    server: &Server,
    tok: &str,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> Answer {
    send_http(
        server
            .put(&format!("/v1/objects/{key}"))
            .bearer_auth(tok)
            .body(body),
    )
    .await
}

/// `POST` of a JSON body with a caller token.
async fn post_json(server: &Server, path: &str, tok: &str, body: &Value) -> Answer {
    send_http(server.post(path).bearer_auth(tok).json(body)).await
}

/// A key as one URL path segment (every `/` and `.` encoded).
fn enc(key: &str) -> String {
    utf8_percent_encode(key, NON_ALPHANUMERIC).to_string()
}

/// A Pub/Sub push body as a live subscription sends it (twin fields).
fn push_body(data_b64: &str) -> Value {
    json!({
        "message": {
            "data": data_b64,
            "attributes": {"origin": "test"},
            "messageId": "4242",
            "message_id": "4242",
            "publishTime": "2026-01-02T03:04:05.678Z",
            "publish_time": "2026-01-02T03:04:05.678Z"
        },
        "subscription": "projects/bridge-test/subscriptions/bridge-push"
    })
}

fn push_command(cmd: &Value) -> Value {
    push_body(&STANDARD.encode(cmd.to_string()))
}

fn parse_time(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"));
    SystemTime::UNIX_EPOCH + Duration::from_secs(t.unix_timestamp() as u64)
}

/// A token for `claims` signed by `key`; generating an RSA key is CPU work.
async fn forged_key(kid: &str) -> SigningKey {
    let kid = kid.to_owned();
    tokio::task::spawn_blocking(move || SigningKey::generate().with_kid(kid))
        .await
        .unwrap()
}

fn now() -> i64 {
    bridge_testkit::keys::now_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    require_rig!();
    let w = World::new("health").await;
    let server = Server::start(&w.env).await;
    // Server::start polled /healthz already: nothing went out for it.
    for _ in 0..3 {
        let a = send_http(server.get("/healthz")).await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(w.proxy.total(), 0, "{:?}", w.proxy.counts());
    assert_eq!(w.metadata.calls(Endpoint::Identity), 0);
    assert_eq!(w.metadata.calls(Endpoint::Token), 0);

    // /readyz needs no token and resolves credentials through STS once.
    let a = send_http(server.get("/readyz")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1);
    let a = send_http(server.get("/readyz")).await;
    assert_eq!(a.status, 200);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 1, "cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_when_the_metadata_server_refuses() {
    require_rig!();
    let w = World::new("notready").await;
    for _ in 0..10 {
        w.metadata
            .push_fault(Endpoint::Identity, Fault::Status(403));
    }
    let server = Server::start(&w.env).await;
    let a = send_http(server.get("/readyz")).await;
    assert_eq!(a.status, 503, "{}", a.text());
    let v = a.json();
    let reason = v["error"]["message"].as_str().expect("a reason");
    assert!(!reason.is_empty());
    assert!(a.header("retry-after").is_some(), "Retry-After on 503");
    assert!(w.metadata.calls(Endpoint::Identity) >= 1);
    assert_eq!(w.proxy.count("AssumeRoleWithWebIdentity"), 0);
}

/// A service holding `docs/hello.txt` (`0123456789`, text/plain,
/// `x-amz-meta-color: blue`, `cache-control: max-age=60`) written by a PUT
/// whose answer is checked; the caller token and the object's URL.
async fn with_hello(name: &str) -> (World, Server, String, String) {
    let w = World::new(name).await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let url = format!("{}/v1/objects/docs/hello.txt", server.url);
    let a = send_http(
        client()
            .put(&url)
            .bearer_auth(&tok)
            .header("content-type", "text/plain")
            .header("x-amz-meta-color", "blue")
            .header("cache-control", "max-age=60")
            .body("0123456789"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let v = a.json();
    assert_eq!(v["key"], "docs/hello.txt");
    assert!(v["etag"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    assert!(v.as_object().unwrap().contains_key("version_id"), "{v}");
    assert_eq!(w.stored("docs/hello.txt").await.unwrap(), b"0123456789");
    (w, server, tok, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_answer_the_bytes_and_headers_put() {
    require_rig!();
    let (_w, _server, tok, url) = with_hello("objects").await;
    let a = send_http(client().get(&url).bearer_auth(&tok)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"0123456789");
    assert_eq!(a.header("content-type"), Some("text/plain"));
    assert_eq!(a.header("x-amz-meta-color"), Some("blue"));
    assert_eq!(a.header("cache-control"), Some("max-age=60"));

    let a = send_http(client().head(&url).bearer_auth(&tok)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-length"), Some("10"));
    assert_eq!(a.header("content-type"), Some("text/plain"));
    assert_eq!(a.header("x-amz-meta-color"), Some("blue"));
    assert!(a.header("etag").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_refuses_an_overwrite_and_writes_a_new_key() {
    require_rig!();
    let (w, server, tok, url) = with_hello("ifnonematch").await;
    // If-None-Match: * on an existing key: 412, and the object is unchanged.
    let a = send_http(
        client()
            .put(&url)
            .bearer_auth(&tok)
            .header("if-none-match", "*")
            .body("overwritten"),
    )
    .await;
    a.error(412);
    assert_eq!(w.stored("docs/hello.txt").await.unwrap(), b"0123456789");
    // ...and on a new key it writes.
    let a = send_http(
        server
            .put("/v1/objects/docs/new.txt")
            .bearer_auth(&tok)
            .header("if-none-match", "*")
            .body("new"),
    )
    .await;
    assert_eq!(a.status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_get_answers_206_with_the_range() {
    require_rig!();
    let (_w, _server, tok, url) = with_hello("range").await;
    let a = send_http(
        client()
            .get(&url)
            .bearer_auth(&tok)
            .header("range", "bytes=2-5"),
    )
    .await;
    assert_eq!(a.status, 206);
    assert_eq!(a.body, b"2345");
    assert_eq!(a.header("content-range"), Some("bytes 2-5/10"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_object_and_a_missing_key_is_204_then_404() {
    require_rig!();
    let (w, _server, tok, url) = with_hello("delete").await;
    let a = send_http(client().delete(&url).bearer_auth(&tok)).await;
    assert_eq!(a.status, 204);
    assert_eq!(w.stored("docs/hello.txt").await, None);
    let a = send_http(client().delete(&url).bearer_auth(&tok)).await;
    assert_eq!(a.status, 204, "DELETE of a missing key");

    send_http(client().get(&url).bearer_auth(&tok))
        .await
        .error(404);
    let a = send_http(client().head(&url).bearer_auth(&tok)).await;
    assert_eq!(a.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_with_a_cursor() {
    require_rig!();
    let w = World::new("list").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let mut expected = Vec::new();
    for i in 0..5 {
        let key = format!("dir/f{i}.txt");
        let a = put_object(&server, &tok, &key, format!("file {i}")).await;
        assert_eq!(a.status, 201);
        expected.push(key);
    }
    let a = put_object(&server, &tok, "other.txt", "x").await;
    assert_eq!(a.status, 201);

    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("prefix", "dir/".to_owned()), ("limit", "2".to_owned())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let a = send_http(server.get("/v1/objects").query(&q).bearer_auth(&tok)).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let v = a.json();
        let objs = v["objects"].as_array().expect("objects");
        assert!(objs.len() <= 2, "{v}");
        for o in objs {
            keys.push(o["key"].as_str().unwrap().to_owned());
            assert!(o["size"].as_i64().unwrap() > 0);
            assert!(o["etag"].is_string());
            assert!(o["last_modified"].is_string());
        }
        pages += 1;
        assert!(pages <= 5, "paging does not end");
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(keys, expected, "relative keys, in order, each once");
    assert_eq!(pages, 3);

    // Without a prefix: everything under the service's prefix, still relative.
    let a = send_http(server.get("/v1/objects").bearer_auth(&tok)).await;
    let listed: Vec<String> = a.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 6);
    assert!(listed.contains(&"other.txt".to_owned()));
}

/// A service with the object `src.bin` (`source bytes`), and a caller token.
async fn with_source(name: &str) -> (World, Server, String) {
    let w = World::new(name).await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let a = put_object(&server, &tok, "src.bin", "source bytes").await;
    assert_eq!(a.status, 201);
    (w, server, tok)
}

/// `GET /v1/whoami`, answered 200.
async fn whoami(server: &Server, tok: &str) -> Value {
    let a = send_http(server.get("/v1/whoami").bearer_auth(tok)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_writes_the_bytes_and_a_missing_source_is_404() {
    require_rig!();
    let (w, server, tok) = with_source("copy").await;
    let a = post_json(
        &server,
        "/v1/copy",
        &tok,
        &json!({"source_key": "src.bin", "key": "copies/dst.bin"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let copied = a.json();
    assert_eq!(copied["key"], "copies/dst.bin");
    assert!(copied["etag"].is_string(), "{copied}");
    assert!(copied.get("version_id").is_some(), "{copied}");
    assert_eq!(w.stored("copies/dst.bin").await.unwrap(), b"source bytes");
    post_json(
        &server,
        "/v1/copy",
        &tok,
        &json!({"source_key": "missing.bin", "key": "copies/none.bin"}),
    )
    .await
    .error(404);
    assert_eq!(w.stored("copies/none.bin").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_google_and_aws_identities() {
    require_rig!();
    let w = World::new("whoami").await;
    let server = Server::start(&w.env).await;
    let who = whoami(&server, &w.caller_token()).await;
    let unique_id = w.metadata.config().unique_id;
    assert_eq!(who["google"]["azp"], unique_id.as_str());
    assert_eq!(who["google"]["sub"], unique_id.as_str());
    assert_eq!(who["google"]["aud"], STS_AUDIENCE);
    let arn = who["aws"]["arn"].as_str().expect("arn");
    assert!(arn.contains("bridge-test-role"), "{arn}");
    let creds_expiry = parse_time(who["credentials_expire_at"].as_str().expect("expiry"));
    assert!(creds_expiry > SystemTime::now());
    assert!(!who.to_string().contains("eyJ"), "no token in whoami");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_put_stores_the_object() {
    require_rig!();
    let w = World::new("presignput").await;
    let server = Server::start(&w.env).await;
    let a = post_json(
        &server,
        "/v1/presign",
        &w.caller_token(),
        &json!({"key": "signed/up.txt", "method": "PUT", "expires_in": 600}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let p = a.json();
    assert_eq!(p["method"], "PUT");
    let expires_at = parse_time(p["expires_at"].as_str().unwrap());
    assert!(expires_at > SystemTime::now());
    assert!(expires_at <= SystemTime::now() + Duration::from_secs(601));
    let r = client()
        .put(p["url"].as_str().unwrap())
        .body("via presigned PUT")
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert!(status.is_success(), "{status}: {}", r.text().await.unwrap());
    assert_eq!(
        w.stored("signed/up.txt").await.unwrap(),
        b"via presigned PUT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_get_lives_no_longer_than_the_credentials() {
    require_rig!();
    let (_w, server, tok) = with_source("presignget").await;
    let creds_expiry = parse_time(
        whoami(&server, &tok).await["credentials_expire_at"]
            .as_str()
            .expect("expiry"),
    );
    // Asking for more than the credentials' life (and S3's week): capped.
    let a = post_json(
        &server,
        "/v1/presign",
        &tok,
        &json!({"key": "src.bin", "method": "GET", "expires_in": 10_000_000}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let p = a.json();
    assert_eq!(p["method"], "GET");
    let expires_at = parse_time(p["expires_at"].as_str().unwrap());
    assert!(expires_at > SystemTime::now());
    assert!(
        expires_at <= creds_expiry,
        "expires_at {expires_at:?} after the credentials' expiry {creds_expiry:?}"
    );
    let r = client()
        .get(p["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"source bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_lists_the_bucket() {
    require_rig!();
    let w = World::new("buckets").await;
    let server = Server::start(&w.env).await;
    let a = send_http(server.get("/v1/buckets").bearer_auth(w.caller_token())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let names: Vec<String> = a.json()["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&w.bucket), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_commands() {
    require_rig!();
    let mut w = World::new("pubsub").await;
    // The bucket of the Storage notification fixture.
    w.set("GCS_SOURCE_BUCKETS", "sample-bucket");
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let post = |body: Value| server.post("/pubsub").bearer_auth(&tok).json(&body);

    let a = send_http(post(push_command(&json!({
        "op": "put", "key": "ps/a.json", "body": "{\"n\":1}",
        "content_type": "application/json", "metadata": {"source": "pubsub"}
    }))))
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(w.stored("ps/a.json").await.unwrap(), b"{\"n\":1}");
    let head = admin_head(&w.bucket, &w.full("ps/a.json")).await;
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("source"))
            .map(String::as_str),
        Some("pubsub")
    );

    let a = send_http(post(push_command(&json!({
        "op": "put", "key": "ps/b.bin", "body_base64": STANDARD.encode([0u8, 1, 2, 255])
    }))))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(w.stored("ps/b.bin").await.unwrap(), [0u8, 1, 2, 255]);

    let a = send_http(post(push_command(&json!({
        "op": "copy", "source_key": "ps/a.json", "key": "ps/c.json"
    }))))
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(w.stored("ps/c.json").await.unwrap(), b"{\"n\":1}");

    let a = send_http(post(push_command(
        &json!({"op": "delete", "key": "ps/a.json"}),
    )))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(w.stored("ps/a.json").await, None);
    // A redelivered delete is done already.
    let a = send_http(post(push_command(
        &json!({"op": "delete", "key": "ps/a.json"}),
    )))
    .await;
    assert_eq!(a.status, 200);

    // A Cloud Storage notification whose object generation is gone (the
    // emulated Cloud Storage has no such bucket): acknowledged, nothing written.
    let notification: Value = serde_json::from_str(include_str!(
        "../fixtures/pubsub/storage-notification-push.json"
    ))
    .unwrap();
    let a = send_http(post(notification)).await;
    assert_eq!(a.status, 200, "{}", a.text());

    let mut keys = admin_list(&w.bucket, &w.prefix).await;
    keys.sort();
    assert_eq!(keys, vec![w.full("ps/b.bin"), w.full("ps/c.json")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventarc_message_published_both_modes() {
    require_rig!();
    let w = World::new("events").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();

    // Binary mode: attributes in ce-* headers, the MessagePublishedData as body.
    let binary: Value = serde_json::from_str(include_str!(
        "../fixtures/cloudevents/binary-messagePublished-put.json"
    ))
    .unwrap();
    let mut rb = server.post("/events").bearer_auth(&tok);
    for (k, v) in binary["headers"].as_object().unwrap() {
        rb = rb.header(k.as_str(), v.as_str().unwrap());
    }
    let a = send_http(rb.body(binary["body"].to_string())).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        w.stored("events/binary.txt").await.unwrap(),
        b"from a binary-mode CloudEvent"
    );

    // Structured mode.
    let structured = include_str!("../fixtures/cloudevents/structured-messagePublished-put.json");
    let a = send_http(
        server
            .post("/events")
            .bearer_auth(&tok)
            .header(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )
            .body(structured),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        w.stored("events/structured.txt").await.unwrap(),
        b"from a structured-mode CloudEvent"
    );
}

/// A service with one object, `keep.txt`, to catch deletes or overwrites
/// by input that must be refused.
struct Guarded {
    w: World,
    server: Server,
    tok: String,
    before: Vec<String>,
}

impl Guarded {
    async fn start(name: &str) -> Guarded {
        let w = World::new(name).await;
        let server = Server::start(&w.env).await;
        let tok = w.caller_token();
        let a = put_object(&server, &tok, "keep.txt", "keep").await;
        assert_eq!(a.status, 201);
        let before = admin_list(&w.bucket, &w.prefix).await;
        assert_eq!(before, vec![w.full("keep.txt")]);
        Guarded {
            w,
            server,
            tok,
            before,
        }
    }

    /// A push of `body` to `/pubsub` with the caller's token.
    fn pubsub(&self, body: String) -> reqwest::RequestBuilder {
        self.server
            .post("/pubsub")
            .bearer_auth(&self.tok)
            .header("content-type", "application/json")
            .body(body)
    }

    /// Nothing was written, overwritten or deleted.
    async fn assert_unchanged(&self) {
        assert_eq!(
            admin_list(&self.w.bucket, &self.w.prefix).await,
            self.before
        );
        assert_eq!(self.w.stored("keep.txt").await.unwrap(), b"keep");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_envelopes_and_commands_answer_400_and_change_nothing() {
    require_rig!();
    let g = Guarded::start("badenvelope").await;
    let cases: Vec<(&str, String)> = vec![
        ("not json", "this is not JSON".to_owned()),
        ("no message", json!({"subscription": "s"}).to_string()),
        ("bad base64", push_body("!!not*base64!!").to_string()),
        (
            "bad json data",
            push_body(&STANDARD.encode("{\"op\":\"put\",")).to_string(),
        ),
        (
            "unknown op",
            push_command(&json!({"op": "explode", "key": "keep.txt"})).to_string(),
        ),
        (
            "put without key",
            push_command(&json!({"op": "put", "body": "x"})).to_string(),
        ),
        (
            "delete without key",
            push_command(&json!({"op": "delete"})).to_string(),
        ),
    ];
    for (what, body) in cases {
        let a = send_http(g.pubsub(body)).await;
        assert_eq!(a.status, 400, "{what}: {}", a.text());
        a.error(400);
    }
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_answer_400_through_commands_and_put_and_change_nothing() {
    require_rig!();
    let g = Guarded::start("badkeys").await;
    let long = "a".repeat(1025 - g.w.prefix.len());
    let bad_keys = [
        "",
        long.as_str(),
        "a\u{1}b",
        "tab\there",
        "del\u{7f}",
        "/abs",
        "a/./b",
        "./a",
        "a/../b",
        "..",
        "a/..",
    ];
    for key in bad_keys {
        for cmd in [
            json!({"op": "put", "key": key, "body": "x"}),
            json!({"op": "delete", "key": key}),
            json!({"op": "copy", "source_key": "keep.txt", "key": key}),
        ] {
            let a = send_http(g.pubsub(push_command(&cmd).to_string())).await;
            assert_eq!(a.status, 400, "{cmd}: {}", a.text());
            a.error(400);
        }
        if key == ".." {
            // ".." as a whole path segment is removed by URL normalisation
            // before it is sent; "a/.." covers it.
            continue;
        }
        let a = send_http(
            client()
                .put(format!("{}/v1/objects/{}", g.server.url, enc(key)))
                .bearer_auth(&g.tok)
                .body("x"),
        )
        .await;
        assert_eq!(a.status, 400, "PUT {key:?}: {}", a.text());
        a.error(400);
    }
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_key_is_invalid_and_still_guarded() {
    require_rig!();
    let g = Guarded::start("emptykey").await;
    // The empty key through HTTP: `/v1/objects/`.
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::GET,
        reqwest::Method::DELETE,
    ] {
        let a = send_http(
            client()
                .request(method.clone(), format!("{}/v1/objects/", g.server.url))
                .bearer_auth(&g.tok)
                .body("x"),
        )
        .await;
        assert_eq!(a.error(400), "invalid_key", "{method}");
    }
    // ...and it is still guarded.
    send_http(g.server.put("/v1/objects/").body("x"))
        .await
        .error(401);
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_allowed_key_is_accepted() {
    require_rig!();
    let g = Guarded::start("longkey").await;
    // The longest allowed key is fine (and shows the limit is exactly 1024).
    let ok_key = "a".repeat(1024 - g.w.prefix.len());
    let a = send_http(
        g.pubsub(push_command(&json!({"op": "put", "key": ok_key, "body": "edge"})).to_string()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(g.w.stored(&ok_key).await.unwrap(), b"edge");
    send_http(
        g.server
            .delete(&format!("/v1/objects/{ok_key}"))
            .bearer_auth(&g.tok),
    )
    .await;
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_keys_are_written_with_a_signature_s3_accepts() {
    require_rig!();
    // Writes of bodies in memory are signed by the service itself (not the
    // SDK); moto checks each signature against the path it received.
    let g = Guarded::start("oddkeys").await;
    let ascii: String = (0x20u8..0x7f).map(char::from).collect();
    let room = 1024 - g.w.prefix.len();
    let keys = [
        format!("all {ascii} end"),
        "a//b/c/".to_owned(),
        "%2F%25+plus/\u{e9}\u{20ac}\u{1f600}".to_owned(),
        format!("{}/", "\u{e9}".repeat((room - 1) / 2)),
    ];
    for key in &keys {
        let a = send_http(
            g.pubsub(push_command(&json!({"op": "put", "key": key, "body": "odd"})).to_string()),
        )
        .await;
        assert_eq!(a.status, 200, "{key:?}: {}", a.text());
        assert_eq!(
            g.w.stored(key).await.as_deref(),
            Some(&b"odd"[..]),
            "{key:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cloudevents_answer_400_and_change_nothing() {
    require_rig!();
    let g = Guarded::start("badevents").await;
    let (server, tok) = (&g.server, &g.tok);
    let put_msg = json!({"message": {"data": STANDARD.encode(
        json!({"op": "put", "key": "ev.txt", "body": "x"}).to_string())}});
    let a = send_http(
        server
            .post("/events")
            .bearer_auth(tok)
            .header("ce-specversion", "1.0")
            .header("ce-id", "1")
            .header("ce-type", "com.example.unknown")
            .header(
                "ce-source",
                "//pubsub.googleapis.com/projects/bridge-test/topics/t",
            )
            .header("content-type", "application/json")
            .body(put_msg.to_string()),
    )
    .await;
    a.error(400);
    // No ce-* headers at all, and each one missing in turn.
    let a = send_http(
        server
            .post("/events")
            .bearer_auth(tok)
            .header("content-type", "application/json")
            .body(put_msg.to_string()),
    )
    .await;
    a.error(400);
    for missing in ["ce-specversion", "ce-id", "ce-type", "ce-source"] {
        let mut rb = server
            .post("/events")
            .bearer_auth(tok)
            .header("content-type", "application/json");
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"),
            (
                "ce-source",
                "//pubsub.googleapis.com/projects/bridge-test/topics/t",
            ),
        ] {
            if k != missing {
                rb = rb.header(k, v);
            }
        }
        let a = send_http(rb.body(put_msg.to_string())).await;
        assert_eq!(a.status, 400, "without {missing}");
        a.error(400);
    }
    // Structured mode with a body that is not JSON.
    send_http(
        server
            .post("/events")
            .bearer_auth(tok)
            .header("content-type", "application/cloudevents+json")
            .body("{nope"),
    )
    .await
    .error(400);
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_v1_bodies_answer_400_and_change_nothing() {
    require_rig!();
    let g = Guarded::start("badv1").await;
    send_http(
        g.server
            .post("/v1/copy")
            .bearer_auth(&g.tok)
            .body("not json"),
    )
    .await
    .error(400);
    post_json(
        &g.server,
        "/v1/presign",
        &g.tok,
        &json!({"key": "/abs", "method": "GET"}),
    )
    .await
    .error(400);
    g.assert_unchanged().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_answer_413() {
    require_rig!();
    let mut w = World::new("toolarge").await;
    w.set("MAX_BODY_BYTES", "1024");
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let big = push_command(&json!({"op": "put", "key": "big.bin", "body": "x".repeat(4096)}));
    let a = post_json(&server, "/pubsub", &tok, &big).await;
    a.error(413);
    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(big.to_string().into_bytes())];
    let a = send_http(
        server
            .post("/pubsub")
            .bearer_auth(&tok)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            ))),
    )
    .await;
    a.error(413);
    let a = send_http(
        server
            .post("/events")
            .bearer_auth(&tok)
            .header("content-type", "application/cloudevents+json")
            .body(vec![b' '; 2048]),
    )
    .await;
    a.error(413);
    // PUT /v1/objects streams: the limit does not apply.
    let a = put_object(&server, &tok, "streamed.bin", vec![7u8; 8192]).await;
    assert_eq!(a.status, 201);
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await,
        vec![w.full("streamed.bin")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_with_a_bad_token_are_refused_and_nothing_lands() {
    require_rig!();
    let w = World::new("verify").await;
    let server = Server::start(&w.env).await;
    let kid = w.metadata.signing_key().kid().to_owned();
    let forger = forged_key(&kid).await;
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(caller_claims(json!({})).to_string())
    );
    let cases: Vec<(&str, Option<String>, u16)> = vec![
        ("missing", None, 401),
        ("not a jwt", Some("not-a-jwt".into()), 401),
        (
            "forged signature",
            Some(w.metadata.mint_with_key(&forger, caller_claims(json!({})))),
            401,
        ),
        ("alg none", Some(alg_none), 401),
        (
            "wrong aud",
            Some(w.caller_token_with(json!({"aud": "https://elsewhere.test"}))),
            401,
        ),
        (
            "wrong iss",
            Some(w.caller_token_with(json!({"iss": "https://evil.example"}))),
            401,
        ),
        (
            "expired",
            Some(w.caller_token_with(json!({"iat": now() - 3 * 3600, "exp": now() - 2 * 3600}))),
            401,
        ),
        (
            "unverified email",
            Some(w.caller_token_with(json!({"email_verified": false}))),
            403,
        ),
        (
            "unlisted email",
            Some(w.caller_token_with(json!({"email": "someone@else.iam.gserviceaccount.com"}))),
            403,
        ),
    ];
    for (i, (what, token, status)) in cases.into_iter().enumerate() {
        let key = format!("denied-{i}.txt");
        let mut rb = server
            .put(&format!("/v1/objects/{key}"))
            .body("should not land");
        if let Some(t) = &token {
            rb = rb.bearer_auth(t);
        }
        let a = send_http(rb).await;
        assert_eq!(a.status, status, "{what}: {}", a.text());
        a.error(status);
        assert!(!a.text().contains("eyJ"), "{what}");
        // Pub/Sub push is guarded the same way.
        let mut rb = server.post("/pubsub").json(&push_command(
            &json!({"op": "put", "key": key, "body": "x"}),
        ));
        if let Some(t) = &token {
            rb = rb.bearer_auth(t);
        }
        assert_eq!(send_http(rb).await.status, status, "{what} on /pubsub");
    }
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
    assert_eq!(w.proxy.count("PutObject"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_with_a_good_token_pass_and_open_routes_need_none() {
    require_rig!();
    let w = World::new("verifyok").await;
    let server = Server::start(&w.env).await;
    // aud as an array, one of them accepted.
    let t = w.caller_token_with(json!({"aud": ["https://other.test", SERVICE_AUDIENCE]}));
    let a = send_http(
        server
            .put("/v1/objects/array-aud.txt")
            .bearer_auth(&t)
            .body("ok"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    // X-Serverless-Authorization is read as well.
    let a = send_http(server.get("/v1/objects/array-aud.txt").header(
        "x-serverless-authorization",
        format!("Bearer {}", w.caller_token()),
    ))
    .await;
    assert_eq!(a.status, 200);

    // Open routes.
    assert_eq!(send_http(server.get("/healthz")).await.status, 200);
    assert_eq!(send_http(server.get("/readyz")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_run_iam_mode_trusts_the_front_end() {
    require_rig!();
    let mut w = World::new("crIam").await;
    w.set("AUTH_MODE", "cloud-run-iam");
    let server = Server::start(&w.env).await;
    let strip = |t: String| {
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.SIGNATURE_REMOVED_BY_GOOGLE")
    };
    let put = |key: &str, token: String| {
        server
            .put(&format!("/v1/objects/{key}"))
            .bearer_auth(token)
            .body("via cloud run")
    };
    let a = send_http(put("ok.txt", strip(w.caller_token()))).await;
    assert_eq!(a.status, 201, "{}", a.text());
    let a = send_http(put(
        "aud.txt",
        strip(w.caller_token_with(json!({"aud": "https://elsewhere.test"}))),
    ))
    .await;
    a.error(401);
    let a = send_http(put(
        "expired.txt",
        strip(w.caller_token_with(json!({"iat": now() - 3 * 3600, "exp": now() - 2 * 3600}))),
    ))
    .await;
    a.error(401);
    let a = send_http(put(
        "email.txt",
        strip(w.caller_token_with(json!({"email": "someone@else.iam.gserviceaccount.com"}))),
    ))
    .await;
    a.error(403);
    send_http(server.put("/v1/objects/none.txt").body("x"))
        .await
        .error(401);
    assert_eq!(
        admin_list(&w.bucket, &w.prefix).await,
        vec![w.full("ok.txt")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight() {
    require_rig!();
    let w = World::new("sigterm").await;
    let mut server = Server::start(&w.env).await;
    w.proxy
        .push_fault("PutObject", ProxyFault::Delay(Duration::from_secs(2)));
    let url = format!("{}/v1/objects/slow.txt", server.url);
    let tok = w.caller_token();
    let inflight = tokio::spawn(async move {
        send_http(client().put(url).bearer_auth(tok).body("slow but sure")).await
    });
    eventually(
        Duration::from_secs(20),
        || "the PUT never reached S3".into(),
        || async {
            assert!(!inflight.is_finished(), "the PUT ended early");
            (w.proxy.count("PutObject") > 0).then_some(())
        },
    )
    .await;
    let signalled = Instant::now();
    server.terminate();
    let a = inflight.await.unwrap();
    assert_eq!(a.status, 201, "{}", a.text());
    let status = server.wait(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "exit status {status}\n{}",
        server.stdout.text()
    );
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert_eq!(w.stored("slow.txt").await.unwrap(), b"slow but sure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_at_once() {
    require_rig!();
    let w = World::new("sigidle").await;
    let mut server = Server::start(&w.env).await;
    let t = Instant::now();
    server.terminate();
    let status = server.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_structured_correlated_and_secret_free() {
    require_rig!();
    let w = World::new("logs").await;
    let mut server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let a = send_http(
        server
            .put("/v1/objects/traced.txt")
            .bearer_auth(&tok)
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .body("traced"),
    )
    .await;
    assert_eq!(a.status, 201);
    // The session token the service holds shows in a presigned URL.
    let a = post_json(
        &server,
        "/v1/presign",
        &tok,
        &json!({"key": "traced.txt", "method": "GET"}),
    )
    .await;
    assert_eq!(a.status, 200);
    let url = reqwest::Url::parse(a.json()["url"].as_str().unwrap()).unwrap();
    let session_token = url
        .query_pairs()
        .find(|(k, _)| k == "X-Amz-Security-Token")
        .map(|(_, v)| v.into_owned())
        .expect("a session token in the presigned URL");
    assert!(session_token.len() > 16);
    // Failures log too: a rejected token, a bad command, a missing object.
    let forged = format!("{}x", tok);
    send_http(server.get("/v1/whoami").bearer_auth(&forged)).await;
    post_json(&server, "/pubsub", &tok, &push_body("%%%")).await;
    send_http(server.get("/v1/objects/missing.txt").bearer_auth(&tok)).await;
    send_http(server.get("/v1/whoami").bearer_auth(&tok)).await;
    server.terminate();
    assert!(server.wait(Duration::from_secs(10)).await.success());
    // The capture threads drain the pipes after exit.
    eventually(
        Duration::from_secs(5),
        || format!("no \"stopped\" line:\n{}", server.stdout.text()),
        || std::future::ready(server.stdout.text().contains("stopped").then_some(())),
    )
    .await;

    let lines = server.stdout.all();
    assert!(lines.len() >= 6, "{lines:#?}");
    let mut traced = None;
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert!(v["severity"].is_string(), "no severity: {line}");
        assert!(v["message"].is_string(), "no message: {line}");
        if v["logging.googleapis.com/trace"]
            == "projects/bridge-test/traces/4bf92f3577b34da6a3ce929d0e0e4736"
            && v["httpRequest"].is_object()
        {
            traced = Some(v);
        }
    }
    let traced = traced.unwrap_or_else(|| panic!("no traced request line: {lines:#?}"));
    assert_eq!(traced["httpRequest"]["requestMethod"], "PUT");
    assert_eq!(traced["httpRequest"]["status"], 201);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"httpRequest\"") && l.contains("401")),
        "the rejected request is logged"
    );

    let stderr = server.stderr.all();
    assert!(stderr.is_empty(), "logs go to stdout only: {stderr:#?}");
    let all = format!("{}\n{}", server.stdout.text(), server.stderr.text());
    assert!(!all.contains("eyJ"), "a JWT in the logs");
    assert!(
        !all.contains(&tok[tok.len() - 20..]),
        "the caller's signature in the logs"
    );
    assert!(
        !all.contains(&session_token),
        "the session token in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_auth_mode_warns_at_start() {
    require_rig!();
    let mut w = World::new("noauth").await;
    w.set("AUTH_MODE", "none");
    let server = Server::start(&w.env).await;
    let a = send_http(server.put("/v1/objects/open.txt").body("open")).await;
    assert_eq!(a.status, 201);
    let warned = server.stdout.all().into_iter().any(|l| {
        serde_json::from_str::<Value>(&l).is_ok_and(|v| {
            v["severity"] == "WARNING"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("AUTH_MODE"))
        })
    });
    assert!(warned, "{}", server.stdout.text());

    // In verify mode there is no such warning.
    let w2 = World::new("authwarn").await;
    let s2 = Server::start(&w2.env).await;
    assert!(
        !s2.stdout.text().contains("AUTH_MODE=none"),
        "{}",
        s2.stdout.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_goog_metadata_is_refused_and_nothing_is_written() {
    require_rig!();
    let w = World::new("googmeta").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    for name in [
        "x-amz-meta-goog-generation",
        "X-Amz-Meta-Goog-Bucket",
        "x-amz-meta-GOOG-anything",
    ] {
        let a = send_http(
            server
                .put("/v1/objects/pinned.txt")
                .bearer_auth(&tok)
                .header(name, "99999999999999999")
                .body("pinned"),
        )
        .await;
        assert_eq!(a.error(400), "invalid_metadata", "{name}");
    }
    for name in ["goog-generation", "Goog-Bucket", "GOOG-GENERATION"] {
        let a = post_json(
            &server,
            "/pubsub",
            &tok,
            &push_command(&json!({
                "op": "put", "key": "pinned.txt", "body": "pinned",
                "metadata": { name: "99999999999999999" }
            })),
        )
        .await;
        assert_eq!(a.error(400), "invalid_metadata", "{name}");
    }
    assert_eq!(w.proxy.count("PutObject"), 0);
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());

    // Other names starting with "goog" are the user's.
    let a = send_http(
        server
            .put("/v1/objects/fine.txt")
            .bearer_auth(&tok)
            .header("x-amz-meta-googly", "eyes")
            .body("fine"),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_answer_4xx_and_change_nothing() {
    require_rig!();
    let w = World::new("clienterr").await;
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    for i in 0..3 {
        let a = put_object(&server, &tok, &format!("d/f{i}.txt"), "x").await;
        assert_eq!(a.status, 201);
    }
    let before = admin_list(&w.bucket, &w.prefix).await;
    let list =
        |q: Vec<(&'static str, String)>| server.get("/v1/objects").query(&q).bearer_auth(&tok);

    // A listing prefix may not climb out of the service's prefix.
    for prefix in ["../", "..", "d/../../", "./d", "/d"] {
        let a = send_http(list(vec![("prefix", prefix.to_owned())])).await;
        assert_eq!(a.error(400), "invalid_key", "prefix {prefix:?}");
    }

    // A cursor the service never gave out: 400, not 500 or 503.
    let a = send_http(list(vec![("limit", "1".to_owned())])).await;
    assert_eq!(a.status, 200);
    let cursor = a.json()["next_cursor"]
        .as_str()
        .expect("a next cursor")
        .to_owned();
    let mut tampered: Vec<char> = cursor.chars().collect();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    for bad in [
        tampered,
        format!("{cursor}x"),
        "bm90LWEtdG9rZW4=".to_owned(),
        "a\u{1}b".to_owned(),
    ] {
        let a = send_http(list(vec![("cursor", bad.clone())])).await;
        assert_eq!(a.error(400), "invalid_argument", "cursor {bad:?}");
    }
    let a = send_http(list(vec![("cursor", cursor)])).await;
    assert_eq!(a.status, 200, "the real cursor still works");

    // Copies with a bad source key.
    for source in ["", "/abs", "../d/f0.txt", "d/../f0.txt", "a\u{7f}"] {
        let a = post_json(
            &server,
            "/v1/copy",
            &tok,
            &json!({"source_key": source, "key": "copies/x.txt"}),
        )
        .await;
        assert_eq!(a.error(400), "invalid_key", "source_key {source:?}");
        let a = post_json(
            &server,
            "/pubsub",
            &tok,
            &push_command(&json!({"op": "copy", "source_key": source, "key": "copies/x.txt"})),
        )
        .await;
        assert_eq!(a.error(400), "invalid_key", "source_key {source:?}");
    }
    assert_eq!(w.proxy.count("CopyObject"), 0);
    assert_eq!(admin_list(&w.bucket, &w.prefix).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_over_the_threshold_go_part_by_part() {
    require_rig!();
    let mut w = World::new("bigcopy").await;
    // 5 MiB stands for 5 GiB: the copy of 12 MiB takes the multipart path.
    w.set(
        "TEST_COPY_MULTIPART_THRESHOLD_BYTES",
        &(5 * 1024 * 1024).to_string(),
    );
    let server = Server::start(&w.env).await;
    let tok = w.caller_token();
    let data: Vec<u8> = (0..12 * 1024 * 1024 + 7)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let a = send_http(
        server
            .put("/v1/objects/big/src.bin")
            .bearer_auth(&tok)
            .header("content-type", "application/x-big")
            .header("cache-control", "private")
            .header("x-amz-meta-origin", "test")
            .body(data.clone()),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    w.proxy.reset_counts();

    let a = post_json(
        &server,
        "/v1/copy",
        &tok,
        &json!({"source_key": "big/src.bin", "key": "big/copy.bin"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.text());
    let v = a.json();
    assert_eq!(v["key"], "big/copy.bin");
    assert!(v["etag"].as_str().is_some_and(|e| e.contains('-')), "{v}");
    assert!(v.get("version_id").is_some(), "{v}");
    assert_eq!(w.proxy.count("CopyObject"), 0, "{:?}", w.proxy.counts());
    assert_eq!(w.proxy.count("UploadPartCopy"), 2, "{:?}", w.proxy.counts());
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 1);
    assert!(w.stored("big/copy.bin").await.unwrap() == data);
    let h = admin_head(&w.bucket, &w.full("big/copy.bin")).await;
    assert_eq!(h.content_type(), Some("application/x-big"));
    assert_eq!(h.cache_control(), Some("private"));
    assert_eq!(
        h.metadata()
            .and_then(|m| m.get("origin"))
            .map(String::as_str),
        Some("test")
    );

    // A small copy is still one CopyObject.
    let a = post_json(
        &server,
        "/v1/copy",
        &tok,
        &json!({"source_key": "big/src.bin", "key": "big/copy.bin"}),
    )
    .await;
    assert_eq!(a.status, 201);
    let a = put_object(&server, &tok, "small.txt", "small").await;
    assert_eq!(a.status, 201);
    let a = post_json(
        &server,
        "/v1/copy",
        &tok,
        &json!({"source_key": "small.txt", "key": "small-copy.txt"}),
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(w.proxy.count("CopyObject"), 1);
    assert_eq!(w.stored("small-copy.txt").await.unwrap(), b"small");
}
