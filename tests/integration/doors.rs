//! The two doors, in this process and with no rig (AWS at a closed port, so
//! a refusal proves that nothing was asked of AWS): the outside doors
//! (`/pubsub`, `/events`, `/v1/*`) refuse the service's own tasks and the
//! ops outside `COMMAND_OPS`; `/tasks` takes only tasks, only from
//! `TASKS_PUSH_EMAIL`; the reserved `.gcp-aws-bridge/` keys are refused
//! everywhere; forged tasks answer 400 before anything is read.

use crate::common;
use crate::common::answer::send;

use axum::body::Body;
use axum::http::{header, Method, Request};
use axum::Router;
use base64::Engine;
use common::in_process::InProcess;
use common::{CALLER_EMAIL, TASKS_EMAIL};
use serde_json::{json, Value};

fn request(method: Method, path: &str, token: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("a request")
}

fn json_request(path: &str, token: &str, body: &Value) -> Request<Body> {
    let body = body.to_string();
    let mut req = request(Method::POST, path, token, Body::empty());
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, body.len().into());
    *req.body_mut() = Body::from(body);
    req
}

fn envelope(data: &Value, attributes: Value) -> Value {
    json!({
        "message": {
            "data": base64::engine::general_purpose::STANDARD.encode(data.to_string()),
            "attributes": attributes,
            "messageId": "7",
        },
        "subscription": "projects/p/subscriptions/s",
    })
}

/// A push of `data` to `path`.
fn push(path: &str, token: &str, data: &Value) -> Request<Body> {
    json_request(path, token, &envelope(data, json!({})))
}

/// A structured `messagePublished` CloudEvent carrying `data`.
fn published_event(token: &str, data: &Value) -> Request<Body> {
    let ev = json!({
        "specversion": "1.0", "id": "e-1", "source": "//pubsub.googleapis.com/projects/p/topics/t",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "data": envelope(data, json!({})),
    });
    let mut req = json_request("/events", token, &ev);
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/cloudevents+json"
            .parse()
            .expect("a header value"),
    );
    req
}

/// A binary-mode Cloud Storage CloudEvent.
fn storage_event(token: &str, ty: &str) -> Request<Body> {
    let mut req = json_request(
        "/events",
        token,
        &json!({"bucket": "src", "name": "n", "generation": "1"}),
    );
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-type", ty),
        (
            "ce-source",
            "//storage.googleapis.com/projects/_/buckets/src",
        ),
        ("ce-subject", "objects/n"),
    ] {
        req.headers_mut()
            .insert(k, v.parse().expect("a header value"));
    }
    req
}

fn part_task() -> Value {
    let mib = 1024 * 1024;
    json!({
        "op": "replicate_part", "bucket": "src", "name": "big.bin", "generation": "7",
        "upload_id": "u-1", "part_number": 1, "start": 0, "end": 8 * mib - 1,
        "parts": 3, "part_size": 8 * mib, "size": 20 * mib, "crc32c": "AAAAAA==",
        "if_none_match": true,
    })
}

/// The service's own tasks, each as a forger would publish it to the
/// commands topic or post it to an outside door.
fn tasks() -> Vec<Value> {
    vec![
        part_task(),
        json!({"op": "delete_replica", "bucket": "src", "name": "n"}),
        json!({"op": "sync", "bucket": "src", "delete": true, "page_token": "x"}),
        json!({"op": "sync", "bucket": "src", "page_token": "x"}),
    ]
}

async fn assert_status(router: &Router, req: Request<Body>, status: u16, code: &str, what: &str) {
    send(router, req).await.assert_code(status, code, what);
}

fn service(
    auth_mode: &str,
    extra: &[(&str, &str)],
) -> impl std::future::Future<Output = InProcess> {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let auth_mode = auth_mode.to_owned();
    async move {
        let mut s = InProcess::new(&auth_mode).await;
        s.set("GCS_SOURCE_BUCKETS", "src");
        s.set("TASKS_TOPIC", "projects/p/topics/tasks");
        s.set("PUBSUB_EMULATOR_HOST", "127.0.0.1:9");
        for (k, v) in extra {
            s.set(&k, &v);
        }
        s
    }
}

#[tokio::test]
async fn every_task_is_refused_at_every_outside_door() {
    // SYNC_DELETE and every op allowed: the refusal is the door's.
    let s = service("verify", &[("SYNC_DELETE", "true")]).await;
    let router = s.router();
    let token = s.caller_token();
    for task in tasks() {
        assert_status(
            &router,
            push("/pubsub", &token, &task),
            403,
            "op_not_allowed",
            &format!("/pubsub {task}"),
        )
        .await;
        assert_status(
            &router,
            published_event(&token, &task),
            403,
            "op_not_allowed",
            &format!("/events {task}"),
        )
        .await;
    }
    // POST /v1/sync with a page of a run.
    assert_status(
        &router,
        json_request(
            "/v1/sync",
            &token,
            &json!({"bucket": "src", "page_token": "x"}),
        ),
        403,
        "op_not_allowed",
        "/v1/sync with a page_token",
    )
    .await;
    // A restart count is no field of an outside replicate.
    assert_status(
        &router,
        push(
            "/pubsub",
            &token,
            &json!({"op": "replicate", "bucket": "src", "name": "n", "restarts": 9}),
        ),
        400,
        "invalid_command",
        "replicate with restarts",
    )
    .await;
}

#[tokio::test]
async fn the_tasks_door_takes_only_its_push_identity_and_only_tasks() {
    for mode in ["verify", "cloud-run-iam"] {
        let s = service(mode, &[("SYNC_DELETE", "true")]).await;
        let router = s.router();
        let strip = |t: String| match mode {
            "cloud-run-iam" => {
                let (signed, _) = t.rsplit_once('.').expect("a JWT");
                format!("{signed}.SIGNATURE_REMOVED_BY_GOOGLE")
            }
            _ => t,
        };
        let caller = strip(s.caller_token());
        let tasks = strip(s.caller_token_with(json!({ "email": TASKS_EMAIL })));
        let forged_page = json!({"op": "sync", "bucket": "src", "page_token": "garbage"});
        // An allowed caller of the outside doors is no caller of /tasks.
        assert_status(
            &router,
            push("/tasks", &caller, &forged_page),
            403,
            "forbidden",
            &format!("{mode}: {CALLER_EMAIL} at /tasks"),
        )
        .await;
        let status = send(
            &router,
            Request::post("/tasks")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(envelope(&forged_page, json!({})).to_string()))
                .expect("a request"),
        )
        .await
        .status;
        assert_eq!(status, 401, "{mode}: no token at /tasks");
        // ... and the tasks identity is no caller of the outside doors.
        assert_status(
            &router,
            push("/pubsub", &tasks, &json!({"op": "delete", "key": "a"})),
            403,
            "forbidden",
            &format!("{mode}: {TASKS_EMAIL} at /pubsub"),
        )
        .await;
        // Past the door: a forged page token is refused before any call.
        assert_status(
            &router,
            push("/tasks", &tasks, &forged_page),
            400,
            "invalid_page_token",
            &format!("{mode}: forged page token"),
        )
        .await;
        // Outside ops and notifications are not tasks.
        for cmd in [
            json!({"op": "put", "key": "a", "body": "x"}),
            json!({"op": "delete", "key": "a"}),
            json!({"op": "copy", "source_key": "a", "key": "b"}),
            json!({"op": "sync", "bucket": "src", "delete": true}),
        ] {
            assert_status(
                &router,
                push("/tasks", &tasks, &cmd),
                403,
                "op_not_allowed",
                &format!("{mode}: {cmd} at /tasks"),
            )
            .await;
        }
        let notification = envelope(
            &json!({"bucket": "src", "name": "n"}),
            json!({"eventType": "OBJECT_DELETE", "payloadFormat": "JSON_API_V1", "bucketId": "src", "objectId": "n"}),
        );
        assert_status(
            &router,
            json_request("/tasks", &tasks, &notification),
            403,
            "op_not_allowed",
            &format!("{mode}: a notification at /tasks"),
        )
        .await;
    }
    // Without TASKS_PUSH_EMAIL nobody may call /tasks.
    let mut s = service("verify", &[]).await;
    s.env.retain(|(k, _)| k != "TASKS_PUSH_EMAIL");
    let router = s.router();
    let token = s.caller_token_with(json!({ "email": TASKS_EMAIL }));
    assert_status(
        &router,
        push("/tasks", &token, &tasks()[0]),
        403,
        "forbidden",
        "no TASKS_PUSH_EMAIL",
    )
    .await;
}

#[tokio::test]
async fn forged_and_impossible_tasks_answer_400_before_anything_is_read() {
    let s = service(
        "verify",
        &[("BUFFER_BUDGET_BYTES", &(16 * 1024 * 1024).to_string())],
    )
    .await;
    let router = s.router();
    let tasks = s.caller_token_with(json!({ "email": TASKS_EMAIL }));
    let mib: u64 = 1024 * 1024;
    let mut with_key = part_task();
    with_key["key"] = json!("elsewhere/secret.bin");
    let mut bad_range = part_task();
    bad_range["start"] = json!(1);
    let mut too_many = part_task();
    too_many["part_number"] = json!(4);
    // 24 MiB parts cannot fit a 16 MiB budget.
    let big_part = json!({
        "op": "replicate_part", "bucket": "src", "name": "big.bin", "generation": "7",
        "upload_id": "u-1", "part_number": 1, "start": 0, "end": 24 * mib - 1,
        "parts": 2, "part_size": 24 * mib, "size": 48 * mib, "crc32c": "AAAAAA==",
    });
    let restarts = json!({"op": "replicate", "bucket": "src", "name": "n", "restarts": 6});
    let page = |p: u64| {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            json!({"run": "0123456789abcdef0123456789abcdef", "page": p, "after": "a"}).to_string(),
        );
        json!({"op": "sync", "bucket": "src", "page_token": token})
    };
    for (task, code) in [
        (with_key, "invalid_command"),
        (bad_range, "invalid_command"),
        (too_many, "invalid_command"),
        (big_part, "part_too_large"),
        (restarts, "too_many_restarts"),
        (page(u64::MAX), "invalid_page_token"),
        (page(0), "invalid_page_token"),
        // Pages are named by a run's own tokens from 2 on.
        (page(1), "invalid_page_token"),
    ] {
        assert_status(
            &router,
            push("/tasks", &tasks, &task),
            400,
            code,
            &task.to_string(),
        )
        .await;
    }
    // A deleting task needs SYNC_DELETE=true.
    assert_status(
        &router,
        push(
            "/tasks",
            &tasks,
            &json!({"op": "delete_replica", "bucket": "src", "name": "n"}),
        ),
        403,
        "op_not_allowed",
        "delete_replica without SYNC_DELETE",
    )
    .await;
}

#[tokio::test]
async fn command_ops_and_sync_delete_are_honoured_at_every_outside_door() {
    let s = service("verify", &[("COMMAND_OPS", "put")]).await;
    let router = s.router();
    let token = s.caller_token();
    let refused = [
        (
            push("/pubsub", &token, &json!({"op": "delete", "key": "a"})),
            "delete command",
        ),
        (
            push(
                "/pubsub",
                &token,
                &json!({"op": "copy", "source_key": "a", "key": "b"}),
            ),
            "copy command",
        ),
        (
            push(
                "/pubsub",
                &token,
                &json!({"op": "replicate", "bucket": "src", "name": "n"}),
            ),
            "replicate command",
        ),
        (
            published_event(&token, &json!({"op": "sync", "bucket": "src"})),
            "sync in a CloudEvent",
        ),
        (
            json_request(
                "/pubsub",
                &token,
                &envelope(
                    &json!({"bucket": "src", "name": "n", "generation": "1"}),
                    json!({"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1"}),
                ),
            ),
            "a finalize notification (replicate)",
        ),
        (
            storage_event(&token, "google.cloud.storage.object.v1.deleted"),
            "a deleted CloudEvent (replicate)",
        ),
        (
            request(Method::DELETE, "/v1/objects/a", &token, Body::empty()),
            "DELETE /v1/objects",
        ),
        (
            json_request("/v1/copy", &token, &json!({"source_key": "a", "key": "b"})),
            "POST /v1/copy",
        ),
        (
            json_request("/v1/sync", &token, &json!({"bucket": "src"})),
            "POST /v1/sync",
        ),
    ];
    for (req, what) in refused {
        assert_status(&router, req, 403, "op_not_allowed", what).await;
    }

    // Without put: no PUT, and no URL to PUT with.
    let s = service("verify", &[("COMMAND_OPS", "replicate")]).await;
    let router = s.router();
    let token = s.caller_token();
    for (req, what) in [
        (
            request(Method::PUT, "/v1/objects/a", &token, Body::from("x")),
            "PUT /v1/objects",
        ),
        (
            json_request(
                "/v1/presign",
                &token,
                &json!({"key": "a", "method": "PUT", "expires_in": 60}),
            ),
            "a presigned PUT",
        ),
    ] {
        assert_status(&router, req, 403, "op_not_allowed", what).await;
    }

    // Every op, SYNC_DELETE unset: a deleting sync is refused at each door.
    let s = service("verify", &[]).await;
    let router = s.router();
    let token = s.caller_token();
    let delete_sync = json!({"op": "sync", "bucket": "src", "delete": true});
    for (req, what) in [
        (push("/pubsub", &token, &delete_sync), "/pubsub"),
        (published_event(&token, &delete_sync), "/events"),
        (
            json_request(
                "/v1/sync",
                &token,
                &json!({"bucket": "src", "delete": true}),
            ),
            "/v1/sync",
        ),
    ] {
        assert_status(&router, req, 403, "op_not_allowed", what).await;
    }
}

#[tokio::test]
async fn the_reserved_prefix_is_refused_everywhere() {
    let s = service("verify", &[]).await;
    let router = s.router();
    let token = s.caller_token();
    let key = ".gcp-aws-bridge/sync/0123456789abcdef0123456789abcdef/0000000002";
    let path = format!("/v1/objects/{key}");
    for (req, what) in [
        (
            request(Method::PUT, &path, &token, Body::from("forged")),
            "PUT",
        ),
        (request(Method::GET, &path, &token, Body::empty()), "GET"),
        (
            request(Method::DELETE, &path, &token, Body::empty()),
            "DELETE",
        ),
        (
            json_request("/v1/copy", &token, &json!({"source_key": "a", "key": key})),
            "copy onto",
        ),
        (
            json_request("/v1/copy", &token, &json!({"source_key": key, "key": "a"})),
            "copy from",
        ),
        (
            json_request(
                "/v1/presign",
                &token,
                &json!({"key": key, "method": "PUT", "expires_in": 60}),
            ),
            "presign",
        ),
        (
            request(
                Method::GET,
                "/v1/objects?prefix=.gcp-aws-bridge/",
                &token,
                Body::empty(),
            ),
            "list",
        ),
        (
            push(
                "/pubsub",
                &token,
                &json!({"op": "put", "key": key, "body": "{}"}),
            ),
            "put command",
        ),
        (
            push("/pubsub", &token, &json!({"op": "delete", "key": key})),
            "delete command",
        ),
        (
            json_request(
                "/v1/sync",
                &token,
                &json!({"bucket": "src", "prefix": ".gcp-aws-bridge/"}),
            ),
            "sync prefix",
        ),
    ] {
        assert_status(&router, req, 400, "invalid_key", what).await;
    }
}
