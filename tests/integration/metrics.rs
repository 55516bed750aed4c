//! Watching it (SPEC §11) through the real binary: metrics exported over
//! OTLP/HTTP to the test kit's receiver (on the interval, at shutdown, and
//! never without an endpoint), log lines grouped by operation, and the
//! trace of a request carried by the tasks it publishes.

use crate::common;
use crate::common::require_rig;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::otlp::OtlpReceiver;
use common::gcs::Gcs;
use common::pubsub::pull_topic;
use common::*;
use serde_json::{json, Value};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn unique() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string()
}

/// A Cloud Storage CloudEvent (binary mode) of `kind` for `obj`, with a
/// `traceparent` header of [`TRACE`]; the status.
async fn event(w: &World, server: &Server, kind: &str, obj: &Value) -> u16 {
    crate::common::storage_event(server.post("/events"), &unique(), kind, obj)
        .bearer_auth(w.caller_token())
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A command pushed to `/pubsub`; the status.
async fn command(w: &World, server: &Server, cmd: Value) -> u16 {
    let envelope = json!({
        "message": { "data": STANDARD.encode(cmd.to_string()), "messageId": unique() },
        "subscription": "projects/bridge-test/subscriptions/commands",
    });
    server
        .post("/pubsub")
        .bearer_auth(w.caller_token())
        .json(&envelope)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A world replicating from a new bucket, its metrics exported to `rx`
/// every `interval_ms`.
async fn world(test: &str, rx: &OtlpReceiver, interval_ms: u64) -> (World, Gcs, String) {
    let mut w = World::new(test).await;
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket(test).await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);
    w.set("OTEL_EXPORTER_OTLP_ENDPOINT", &rx.endpoint());
    w.set("OTEL_METRIC_EXPORT_INTERVAL", &interval_ms.to_string());
    (w, gcs, bucket)
}

/// The JSON lines the service wrote.
fn json_lines(server: &Server) -> Vec<Value> {
    server
        .stdout
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_workload_is_counted_exported_and_its_lines_grouped() {
    require_rig!();
    let rx = OtlpReceiver::start().await;
    let (w, gcs, bucket) = world("metrics", &rx, 500).await;
    let sizes = [100usize, 2000, 5];
    let mut objects = Vec::new();
    for (i, len) in sizes.iter().enumerate() {
        let data = vec![b'x'; *len];
        objects.push(
            gcs.upload(&bucket, &format!("m/{i}.bin"), &data, json!({}))
                .await,
        );
    }
    // An object that replication did not write, at a key an event names.
    admin_s3()
        .put_object()
        .bucket(&w.bucket)
        .key(w.full("m/plain.txt"))
        .body(b"mine".to_vec().into())
        .send()
        .await
        .unwrap();
    let server = Server::start(&w.env).await;

    for obj in &objects {
        assert_eq!(event(&w, &server, "finalized", obj).await, 200);
    }
    // Delivered again: up to date.
    assert_eq!(event(&w, &server, "finalized", &objects[0]).await, 200);
    // A delete of the object that is no replica: kept.
    let plain = json!({ "bucket": bucket, "name": "m/plain.txt", "generation": "1" });
    assert_eq!(event(&w, &server, "deleted", &plain).await, 200);
    // A bucket replication may not read: refused with its code.
    let other = json!({ "op": "replicate", "bucket": "not-a-source-bucket", "name": "x" });
    assert_eq!(command(&w, &server, other).await, 403);

    let objects_total = |r: &str| rx.total("bridge.replication.objects", &[("result", r)]);
    let exported = rx
        .wait_until(Duration::from_secs(15), |rx| {
            rx.total("bridge.replication.objects", &[("result", "replicated")]) == 3.0
                && rx.total("bridge.replication.objects", &[("result", "failed")]) == 1.0
                && rx.total("bridge.requests", &[("route", "/pubsub")]) == 1.0
        })
        .await;
    assert!(exported, "exports: {:#?}", rx.exports());
    assert_eq!(objects_total("replicated"), 3.0);
    assert_eq!(objects_total("up_to_date"), 1.0);
    assert_eq!(objects_total("not_a_replica"), 1.0);
    assert_eq!(
        rx.total(
            "bridge.replication.objects",
            &[
                ("result", "failed"),
                ("reason", "source_bucket_not_allowed")
            ]
        ),
        1.0
    );
    let bytes: usize = sizes.iter().sum();
    assert_eq!(rx.total("bridge.replication.bytes", &[]), bytes as f64);
    // One lag per replica committed, none negative.
    let lag = rx.points("bridge.replication.lag", &[]);
    assert_eq!(lag.iter().map(|p| p.value).sum::<f64>(), 3.0, "{lag:?}");
    assert!(lag.iter().all(|p| p.sum.unwrap_or(-1.0) >= 0.0), "{lag:?}");
    // Requests by route template and status class.
    let requests = |route: &str, class: &str| {
        rx.total(
            "bridge.requests",
            &[("route", route), ("status_class", class)],
        )
    };
    assert_eq!(requests("/events", "2xx"), 5.0);
    assert_eq!(requests("/pubsub", "4xx"), 1.0);
    assert!(requests("/healthz", "2xx") >= 1.0);
    assert!(rx.total("bridge.sts.assume_duration", &[]) >= 1.0);
    let expires_in = rx.points("bridge.credentials.expires_in", &[]);
    assert!(
        expires_in.len() == 1 && expires_in[0].value > 0.0,
        "{expires_in:?}"
    );
    let in_use = rx.points("bridge.budget.in_use", &[]);
    assert_eq!(in_use.len(), 1, "{in_use:?}");
    let export = rx.exports().pop().unwrap();
    assert_eq!(
        export.resource.get("service.name").map(String::as_str),
        Some("gcp-aws-bridge")
    );

    // The lines of one object's replication share an operation, the first
    // and the last marked, and the request's trace.
    let id = format!(
        "replicate/{bucket}/m/1.bin#{}",
        objects[1]["generation"].as_str().unwrap()
    );
    let lines: Vec<Value> = json_lines(&server)
        .into_iter()
        .filter(|l| l["logging.googleapis.com/operation"]["id"] == id.as_str())
        .collect();
    assert!(lines.len() >= 2, "{lines:#?}\n{}", server.stdout.text());
    for (i, l) in lines.iter().enumerate() {
        let op = &l["logging.googleapis.com/operation"];
        assert_eq!(op["producer"], "gcp-aws-bridge", "{l}");
        assert_eq!(op["first"] == true, i == 0, "{l}");
        assert_eq!(op["last"] == true, i == lines.len() - 1, "{l}");
        assert_eq!(
            l["logging.googleapis.com/trace"],
            format!("projects/bridge-test/traces/{TRACE}"),
            "{l}"
        );
        assert!(l.get("operation").is_none(), "{l}");
    }
    assert_eq!(lines.last().unwrap()["httpRequest"]["status"], 200);
    assert!(lines.iter().any(|l| l["message"] == "replicated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exports_what_was_counted_since_the_last_export() {
    require_rig!();
    let rx = OtlpReceiver::start().await;
    // An interval no test waits for: only the export at shutdown comes.
    let (w, gcs, bucket) = world("metrics-stop", &rx, 600_000).await;
    let obj = gcs
        .upload(&bucket, "last.bin", b"the last one", json!({}))
        .await;
    let mut server = Server::start(&w.env).await;
    assert_eq!(event(&w, &server, "finalized", &obj).await, 200);
    assert_eq!(rx.requests(), 0, "exported before shutdown");

    server.terminate();
    assert!(server.wait(Duration::from_secs(15)).await.success());
    assert_eq!(rx.requests(), 1, "{:#?}", rx.exports());
    assert_eq!(
        rx.total("bridge.replication.objects", &[("result", "replicated")]),
        1.0
    );
    assert_eq!(rx.total("bridge.replication.bytes", &[]), 12.0);
    assert_eq!(
        rx.total(
            "bridge.requests",
            &[("route", "/events"), ("status_class", "2xx")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_nothing_is_exported() {
    require_rig!();
    // Where an exporter would send with the endpoint variables unset: the
    // OTLP default, localhost:4318.
    let Some(rx) = OtlpReceiver::start_on(4318).await else {
        eprintln!("port 4318 is taken: skipped");
        return;
    };
    let mut w = World::new("metrics-off").await;
    w.set("OTEL_METRIC_EXPORT_INTERVAL", "100");
    w.set("OTEL_SERVICE_NAME", "bridge-off");
    let mut server = Server::start(&w.env).await;
    let listening = server.stdout.wait_for("\"listening\"").await;
    assert!(listening.contains("\"metrics\":false"), "{listening}");
    for _ in 0..3 {
        let r = server.get("/healthz").send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    server.terminate();
    assert!(server.wait(Duration::from_secs(15)).await.success());
    assert_eq!(rx.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_published_by_a_sync_carry_its_trace_to_the_lines_that_run_them() {
    require_rig!();
    let mut w = World::new("trace-tasks").await;
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket("trace-tasks").await;
    for name in ["a.txt", "b.txt"] {
        gcs.upload(&bucket, name, b"data", json!({})).await;
    }
    let (topic, sub) = pull_topic(&w, "trace").await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);
    w.set("TASKS_TOPIC", &topic);
    w.set(
        "PUBSUB_EMULATOR_HOST",
        &w.rig["PUBSUB_EMULATOR_HOST"].clone(),
    );
    // One object a page: the first page publishes the next.
    w.set("TEST_SYNC_PAGE_SIZE", "1");
    let server = Server::start(&w.env).await;

    let trace = "0af7651916cd43dd8448eb211c80319c";
    let r = server
        .post("/v1/sync")
        .bearer_auth(w.caller_token())
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({ "bucket": bucket }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", server.stdout.text());

    let tasks = crate::common::pubsub::pull_with_attributes(&w, &sub).await;
    assert!(!tasks.is_empty(), "no task published");
    for (_, attrs) in &tasks {
        let tp = attrs["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("{attrs}"));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!((parts[0], parts[1], parts[3]), ("00", trace, "01"), "{tp}");
        assert_eq!(parts[2].len(), 16, "{tp}");
    }
    let (page, attrs) = tasks
        .iter()
        .find(|(t, _)| t["op"] == "sync")
        .cloned()
        .expect("the next page's task");

    // The start's lines: operation sync/{run}, opened here, not closed
    // (a page follows).
    let run_lines: Vec<Value> = json_lines(&server)
        .into_iter()
        .filter(|l| {
            l["logging.googleapis.com/operation"]["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("sync/"))
        })
        .collect();
    assert!(!run_lines.is_empty(), "{}", server.stdout.text());
    let run_id = run_lines[0]["logging.googleapis.com/operation"]["id"].clone();
    assert_eq!(
        run_lines[0]["logging.googleapis.com/operation"]["first"],
        true
    );
    assert!(run_lines
        .iter()
        .all(|l| l["logging.googleapis.com/operation"].get("last").is_none()));

    // The page task as the tasks subscription pushes it (no trace header):
    // its lines carry the publisher's trace and the run's operation, the
    // last page closing it.
    let before = server.stdout.all().len();
    let envelope = json!({
        "message": {
            "data": STANDARD.encode(page.to_string()),
            "attributes": attrs,
            "messageId": unique(),
        },
        "subscription": "projects/bridge-test/subscriptions/tasks",
    });
    let r = server
        .post("/tasks")
        .bearer_auth(w.tasks_token())
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", server.stdout.text());
    server.stdout.wait_for("\"/tasks\"").await;
    let task_lines: Vec<Value> = server.stdout.all()[before..]
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let served = task_lines
        .iter()
        .find(|l| l["httpRequest"]["requestUrl"] == "/tasks")
        .expect("the request line of the task");
    assert_eq!(
        served["logging.googleapis.com/trace"],
        format!("projects/bridge-test/traces/{trace}")
    );
    let op = &served["logging.googleapis.com/operation"];
    assert_eq!(op["id"], run_id, "{served}");
    assert_eq!(op["last"], true, "{served}");
    assert!(task_lines
        .iter()
        .all(|l| l["logging.googleapis.com/operation"].get("first").is_none()));
    assert!(task_lines
        .iter()
        .filter(|l| l["message"] == "sync page")
        .all(
            |l| l["logging.googleapis.com/trace"] == format!("projects/bridge-test/traces/{trace}")
        ));
}
