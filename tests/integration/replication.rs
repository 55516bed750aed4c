//! Replication from Cloud Storage (SPEC §5) through the real binary, against
//! fake-gcs-server and moto with IAM auth on: bytes and metadata kept,
//! idempotency by generation, deletes, integrity, and failures on either side.

use crate::common;
use crate::common::require_rig;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::{FaultPlan, FaultProxy, ProxyFault};
use common::gcs::Gcs;
use common::*;
use serde_json::{json, Value};

fn generation(obj: &Value) -> i64 {
    obj["generation"]
        .as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| obj["generation"].as_i64())
        .unwrap_or_else(|| panic!("no generation in {obj}"))
}

/// The metageneration of an object resource, as a decimal string.
fn metageneration(obj: &Value) -> String {
    obj["metageneration"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| obj["metageneration"].as_i64().map(|m| m.to_string()))
        .unwrap_or_else(|| panic!("no metageneration in {obj}"))
}

/// Deterministic, incompressible test bytes.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An answer of the service.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = r.text().await.unwrap();
    Answer {
        status,
        retry_after,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

/// A Cloud Storage CloudEvent in binary mode: `ce-*` headers, the object
/// resource as the body.
async fn event(w: &World, server: &Server, kind: &str, obj: &Value) -> Answer {
    let id = format!("{}-{kind}-{}", generation(obj), rand_id());
    let r = storage_event(server.post("/events"), &id, kind, obj)
        .bearer_auth(w.caller_token())
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// A Cloud Storage notification pushed by Pub/Sub.
async fn notification(w: &World, server: &Server, event_type: &str, obj: &Value) -> Answer {
    let envelope = json!({
        "message": {
            "data": STANDARD.encode(obj.to_string()),
            "attributes": {
                "eventType": event_type,
                "payloadFormat": "JSON_API_V1",
                "bucketId": obj["bucket"],
                "objectId": obj["name"],
                "objectGeneration": generation(obj).to_string(),
                "notificationConfig": "projects/_/buckets/b/notificationConfigs/1",
            },
            "messageId": rand_id(),
            "message_id": rand_id(),
            "publishTime": "2026-01-01T00:00:00Z",
            "publish_time": "2026-01-01T00:00:00Z",
        },
        "subscription": "projects/bridge-test/subscriptions/replication",
    });
    let r = server
        .post("/pubsub")
        .bearer_auth(w.caller_token())
        .json(&envelope)
        .send()
        .await
        .unwrap();
    answer(r).await
}

/// A replicate command in a Pub/Sub message.
async fn command(w: &World, server: &Server, cmd: Value) -> Answer {
    let envelope = json!({
        "message": { "data": STANDARD.encode(cmd.to_string()), "messageId": rand_id() },
        "subscription": "projects/bridge-test/subscriptions/commands",
    });
    let r = server
        .post("/pubsub")
        .bearer_auth(w.caller_token())
        .json(&envelope)
        .send()
        .await
        .unwrap();
    answer(r).await
}

fn rand_id() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        .to_string()
}

fn assert_2xx(a: &Answer, server: &Server) {
    assert!(
        (200..300).contains(&a.status),
        "expected 2xx, got {a:?}\n{}",
        server.stdout.text()
    );
}

async fn head(
    w: &World,
    name: &str,
) -> Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    match admin_s3()
        .head_object()
        .bucket(&w.bucket)
        .key(w.full(name))
        .send()
        .await
    {
        Ok(h) => Some(h),
        Err(e) => {
            let svc = e.into_service_error();
            assert!(svc.is_not_found(), "unexpected error: {svc:?}");
            None
        }
    }
}

/// The replica of `name` holds `data` and `of`'s generation.
async fn assert_replica(w: &World, name: &str, data: &[u8], of: &Value) {
    assert_eq!(
        w.stored(name).await.as_deref(),
        Some(data),
        "the replica of {name}"
    );
    assert_eq!(
        replica_generation(w, name).await,
        Some(generation(of).to_string())
    );
}

async fn replica_generation(w: &World, name: &str) -> Option<String> {
    head(w, name)
        .await
        .and_then(|h| h.metadata().and_then(|m| m.get("goog-generation").cloned()))
}

/// Waits until the service has logged a JSON line whose message contains
/// `needle` (stdout is read by a thread, so it may trail the answer).
async fn logged(server: &Server, needle: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found = server.stdout.all().into_iter().find_map(|l| {
            let v: Value = serde_json::from_str(&l).ok()?;
            v["message"].as_str()?.contains(needle).then_some(v)
        });
        if let Some(v) = found {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle:?}:\n{}",
            server.stdout.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fault proxy in front of fake-gcs-server, and the service pointed at it.
async fn gcs_proxy(w: &mut World) -> FaultProxy {
    let gcs = Gcs::new(&w.rig);
    let proxy = FaultProxy::start(&gcs.base).await;
    w.set("STORAGE_EMULATOR_HOST", &proxy.url());
    proxy
}

/// A test's world that replicates from a new Cloud Storage bucket named
/// after the test, and that bucket.
async fn with_source_bucket(test: &str) -> (World, Gcs, String) {
    let mut w = World::new(test).await;
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket(test).await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);
    // Orphan removals (delete_replica tasks) are sync deletes.
    w.set("SYNC_DELETE", "true");
    (w, gcs, bucket)
}

async fn round_trip(test: &str, name: &str, data: Vec<u8>, resource: Value) -> World {
    let (w, gcs, bucket) = with_source_bucket(test).await;
    let obj = gcs.upload(&bucket, name, &data, resource.clone()).await;
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    let got = w.stored(name).await.expect("replica");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "replica bytes differ from the source");

    let h = head(&w, name).await.unwrap();
    let field = |k: &str| resource.get(k).and_then(Value::as_str);
    assert_eq!(
        h.content_type(),
        field("contentType").or(Some("application/octet-stream"))
    );
    assert_eq!(h.content_encoding(), field("contentEncoding"));
    assert_eq!(h.content_disposition(), field("contentDisposition"));
    assert_eq!(h.cache_control(), field("cacheControl"));
    assert_eq!(h.content_language(), field("contentLanguage"));
    let mut want: HashMap<String, String> = resource
        .get("metadata")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_owned()))
                .collect()
        })
        .unwrap_or_default();
    want.insert("goog-generation".into(), generation(&obj).to_string());
    want.insert("goog-bucket".into(), bucket.clone());
    want.insert("goog-metageneration".into(), metageneration(&obj));
    assert_eq!(h.metadata().cloned().unwrap_or_default(), want);
    drop(server);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object_is_replicated() {
    require_rig!();
    let w = round_trip(
        "empty",
        "empty.txt",
        Vec::new(),
        json!({ "contentType": "text/plain" }),
    )
    .await;
    assert_eq!(w.proxy.count("PutObject"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_object_keeps_bytes_and_metadata() {
    require_rig!();
    let w = round_trip(
        "small",
        "dir/one-kib.bin",
        bytes(1024, 1),
        json!({
            "contentType": "application/x-test",
            "contentDisposition": "attachment; filename=\"one-kib.bin\"",
            "cacheControl": "public, max-age=60",
            "contentLanguage": "de",
            "metadata": { "Color": "blue", "origin": "fake-gcs" },
        }),
    )
    .await;
    assert_eq!(w.proxy.count("PutObject"), 1);
    assert_eq!(w.proxy.count("CreateMultipartUpload"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_encoded_object_arrives_as_stored() {
    require_rig!();
    // gzip of "hello, replicated world\n" x 4: the replica must hold these
    // bytes, not the text inside.
    let gz = vec![
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0xd7, 0x51, 0x28, 0x4a, 0x2d, 0xc8, 0xc9, 0x4c, 0x4e, 0x2c, 0x49, 0x4d, 0x51, 0x28, 0xcf,
        0x2f, 0xca, 0x49, 0xe1, 0xca, 0xa0, 0x92, 0x38, 0x00, 0x2c, 0xf9, 0x76, 0x33, 0x60, 0x00,
        0x00, 0x00,
    ];
    round_trip(
        "gzip",
        "hello.txt.gz",
        gz,
        json!({
            "contentType": "text/plain; charset=utf-8",
            "contentEncoding": "gzip",
            "cacheControl": "no-transform",
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_goes_up_in_parts() {
    require_rig!();
    let data = bytes(100 * 1024 * 1024, 7);
    let w = round_trip(
        "large",
        "big/hundred-mib.bin",
        data,
        json!({
            "contentType": "application/octet-stream",
            "contentDisposition": "inline",
            "cacheControl": "private",
            "contentLanguage": "en",
            "metadata": { "purpose": "multipart" },
        }),
    )
    .await;
    assert!(w.proxy.count("UploadPart") >= 13, "{:?}", w.proxy.counts());
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 1);
    assert_eq!(w.proxy.count("PutObject"), 0);
    assert_eq!(w.proxy.count("AbortMultipartUpload"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_new_object_costs_one_read_and_one_write() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("tworequests").await;
    let small = gcs
        .upload(
            &bucket,
            "new/small.txt",
            b"a new object",
            json!({"contentType": "text/plain", "metadata": {"team": "blue"}}),
        )
        .await;
    let notified = gcs
        .upload(&bucket, "new/notified.bin", &bytes(300_000, 9), json!({}))
        .await;
    // At SYNC_INLINE_BYTES (here 1 MiB) and above, a wasted upload costs
    // more than a HEAD: the replica is checked first.
    let large = gcs
        .upload(&bucket, "new/large.bin", &bytes(1024 * 1024, 10), json!({}))
        .await;
    w.set("SYNC_INLINE_BYTES", &(1024 * 1024).to_string());
    let gproxy = gcs_proxy(&mut w).await;
    let server = Server::start(&w.env).await;

    // The event carries the object resource: no metadata read, and no
    // HEAD for an object that has no replica yet.
    let a = event(&w, &server, "finalized", &small).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    let a = notification(&w, &server, "OBJECT_FINALIZE", &notified).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(
        gproxy.counts().get("GcsGetMedia"),
        Some(&2),
        "{:?}",
        gproxy.counts()
    );
    assert_eq!(gproxy.total(), 2, "{:?}", gproxy.counts());
    let s3 = w.proxy.counts();
    assert_eq!(s3.get("PutObject"), Some(&2), "{s3:?}");
    assert_eq!(s3.get("HeadObject"), None, "{s3:?}");
    assert_replica(&w, "new/small.txt", b"a new object", &small).await;
    assert_replica(&w, "new/notified.bin", &bytes(300_000, 9), &notified).await;
    let h = head(&w, "new/small.txt").await.unwrap();
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_eq!(
        h.metadata().and_then(|m| m.get("team")).map(String::as_str),
        Some("blue")
    );

    gproxy.reset_counts();
    w.proxy.reset_counts();
    let a = event(&w, &server, "finalized", &large).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(gproxy.total(), 1, "{:?}", gproxy.counts());
    assert_eq!(w.proxy.count("HeadObject"), 1);
    assert_eq!(w.proxy.count("PutObject"), 1);
    assert_replica(&w, "new/large.bin", &bytes(1024 * 1024, 10), &large).await;

    // A command names only the bucket and the object: its resource is read.
    gproxy.reset_counts();
    let a = command(
        &w,
        &server,
        json!({"op": "replicate", "bucket": bucket, "name": "new/small.txt"}),
    )
    .await;
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(
        gproxy.counts().get("GcsGetObject"),
        Some(&1),
        "{:?}",
        gproxy.counts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_and_older_generations_leave_the_replica_alone() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("redeliver").await;
    let name = "doc.txt";
    let old = gcs.upload(&bucket, name, b"first version", json!({})).await;
    let new = gcs
        .upload(&bucket, name, b"second version", json!({}))
        .await;
    assert!(generation(&new) > generation(&old));
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &new).await;
    assert_2xx(&a, &server);
    assert_eq!(w.proxy.count("PutObject"), 1);

    // The first write of a small object carries `If-None-Match: *` and no
    // check: one Cloud Storage read, one S3 write.
    assert_eq!(w.proxy.count("HeadObject"), 0);

    // The same event again: acknowledged, nothing written. Its write
    // (`If-None-Match: *`) is refused, and the check that follows finds
    // the generation replicated.
    let a = event(&w, &server, "finalized", &new).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(w.proxy.count("PutObject"), 2);
    assert_eq!(w.proxy.count("HeadObject"), 1);

    // The same generation through a Pub/Sub notification (one more refused
    // write) and a command (a check, no write).
    let a = notification(&w, &server, "OBJECT_FINALIZE", &new).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    let a = command(
        &w,
        &server,
        json!({ "op": "replicate", "bucket": bucket, "name": name }),
    )
    .await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(w.proxy.count("PutObject"), 3);

    // The older generation's event, late: its pinned read is refused, and
    // the newer replica stays.
    let a = event(&w, &server, "finalized", &old).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "source_gone", "{a:?}");
    let a = notification(&w, &server, "OBJECT_FINALIZE", &old).await;
    assert_2xx(&a, &server);
    assert_eq!(w.proxy.count("PutObject"), 3);
    assert_replica(&w, name, b"second version", &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_generation_replicated_first_is_replaced_by_the_newer() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("catchup").await;
    let name = "doc.txt";
    let first = gcs.upload(&bucket, name, b"first version", json!({})).await;
    let server = Server::start(&w.env).await;
    let a = event(&w, &server, "finalized", &first).await;
    assert_2xx(&a, &server);
    let second = gcs
        .upload(&bucket, name, b"second version", json!({}))
        .await;

    // The first generation's event again, now that it is gone: nothing changes.
    let a = event(&w, &server, "finalized", &first).await;
    assert_2xx(&a, &server);
    assert_eq!(w.proxy.count("PutObject"), 1);

    // Its write without a check (`If-None-Match: *`) is refused; the check
    // finds the older replica, which the bytes already read replace
    // (`If-Match` on its ETag).
    let a = event(&w, &server, "finalized", &second).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(w.proxy.count("PutObject"), 3);
    assert_eq!(w.proxy.count("HeadObject"), 1);
    assert_replica(&w, name, b"second version", &second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_event_removes_only_a_replica_not_newer_than_it() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("delete").await;
    let name = "gone.txt";
    let obj = gcs.upload(&bucket, name, b"to be deleted", json!({})).await;
    let server = Server::start(&w.env).await;
    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert!(head(&w, name).await.is_some());

    // The delete of an older generation leaves the newer replica.
    let mut older = obj.clone();
    older["generation"] = json!((generation(&obj) - 1).to_string());
    let a = event(&w, &server, "deleted", &older).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert_eq!(w.proxy.count("DeleteObject"), 0);
    assert!(head(&w, name).await.is_some());

    // The delete of the replicated generation removes it.
    gcs.delete(&bucket, name).await;
    let a = event(&w, &server, "deleted", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_deleted", "{a:?}");
    assert!(head(&w, name).await.is_none());
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());

    // Its redelivery is acknowledged.
    let a = event(&w, &server, "deleted", &obj).await;
    assert_2xx(&a, &server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_notification_removes_only_a_replica_not_newer_than_it() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("archive").await;
    let name = "arch/ived.txt";
    let obj = gcs
        .upload(&bucket, name, b"to be archived", json!({}))
        .await;
    let server = Server::start(&w.env).await;
    let a = notification(&w, &server, "OBJECT_FINALIZE", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(
        replica_generation(&w, name).await,
        Some(generation(&obj).to_string())
    );

    let mut older = obj.clone();
    older["generation"] = json!((generation(&obj) - 5).to_string());
    let a = notification(&w, &server, "OBJECT_ARCHIVE", &older).await;
    assert_2xx(&a, &server);
    assert!(
        head(&w, name).await.is_some(),
        "an older generation's archive removed the replica"
    );

    // An archive of the generation Cloud Storage still has live did not
    // happen (forged, or older than what it names): kept.
    let a = notification(&w, &server, "OBJECT_ARCHIVE", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert!(head(&w, name).await.is_some());

    // Archived for real (the rig's Cloud Storage keeps no noncurrent
    // generations: the object is gone).
    gcs.delete(&bucket, name).await;
    let a = notification(&w, &server, "OBJECT_ARCHIVE", &obj).await;
    assert_2xx(&a, &server);
    assert!(
        head(&w, name).await.is_none(),
        "the replica survived its archive: {a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc32c_mismatch_leaves_no_replica() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("crc").await;
    let name = "checked.bin";
    let mut obj = gcs.upload(&bucket, name, &bytes(4096, 3), json!({})).await;
    let real = obj["crc32c"].as_str().unwrap().to_owned();
    let wrong = STANDARD.encode((crc32c_of(&real) ^ 1).to_be_bytes());
    let gproxy = gcs_proxy(&mut w).await;
    let server = Server::start(&w.env).await;

    // The event's CRC32C disagrees with what Cloud Storage reports.
    obj["crc32c"] = json!(wrong);
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert_eq!(a.body["error"]["code"], "integrity_mismatch", "{a:?}");
    assert!(head(&w, name).await.is_none());
    assert_eq!(w.proxy.count("PutObject"), 0);

    // Every declared CRC32C agrees, but a byte changes on the way: only the
    // CRC32C computed over the streamed bytes can catch it.
    // The event carries the object resource: the media read is the first
    // request to Cloud Storage.
    obj["crc32c"] = json!(real);
    gproxy.push_fault("*", ProxyFault::CorruptBody);
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert_eq!(a.body["error"]["code"], "integrity_mismatch", "{a:?}");
    assert_eq!(gproxy.faults_injected(), 1);
    let line = logged(&server, "did not match their checksum").await;
    let detail = line["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("CRC32C of the 4096 bytes received"),
        "not the byte-level check: {line}"
    );
    assert!(head(&w, name).await.is_none());
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());
    assert_eq!(w.proxy.count("PutObject"), 0);

    // With the bytes intact the same object goes through.
    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert!(head(&w, name).await.is_some());
}

fn crc32c_of(b64: &str) -> u32 {
    u32::from_be_bytes(STANDARD.decode(b64).unwrap().try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_for_a_deleted_object_is_acknowledged_and_logged() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("gone").await;
    let name = "short-lived.txt";
    let obj = gcs.upload(&bucket, name, b"here and gone", json!({})).await;
    gcs.delete(&bucket, name).await;
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "source_gone", "{a:?}");
    let line = logged(&server, "source generation is gone").await;
    assert_eq!(line["severity"], "INFO", "{line}");
    assert!(head(&w, name).await.is_none());
    assert_eq!(w.proxy.count("PutObject"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_server_errors_answer_503_with_retry_after() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("gcs5xx").await;
    let name = "unlucky.txt";
    let obj = gcs
        .upload(&bucket, name, b"behind a failing server", json!({}))
        .await;
    let gproxy = gcs_proxy(&mut w).await;
    gproxy.set_faults(FaultPlan {
        ops: None,
        rate: 1.0,
        kinds: vec![ProxyFault::Status(503)],
        max: None,
        seed: 3,
    });
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(gproxy.faults_injected() >= 1);
    assert_eq!(a.body["error"]["code"], "gcs_unavailable", "{a:?}");
    assert!(head(&w, name).await.is_none());

    // Once Cloud Storage recovers, the redelivery succeeds.
    gproxy.clear_faults();
    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(w.stored(name).await.unwrap(), b"behind a failing server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_connection_cut_mid_body_leaves_no_replica() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("gcscut").await;
    let name = "cut.bin";
    let data = bytes(256 * 1024, 5);
    let obj = gcs.upload(&bucket, name, &data, json!({})).await;
    let gproxy = gcs_proxy(&mut w).await;
    // The event carries the object resource, so the media download is the
    // first request; it is cut halfway.
    gproxy.push_fault("*", ProxyFault::DropMidBody);
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert_eq!(gproxy.faults_injected(), 1);
    assert_eq!(a.body["error"]["code"], "gcs_unavailable", "{a:?}");
    assert!(head(&w, name).await.is_none());
    assert!(admin_list(&w.bucket, &w.prefix).await.is_empty());

    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert!(w.stored(name).await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failure_mid_multipart_leaves_no_stray_upload() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("mpufail").await;
    let name = "parts.bin";
    let data = bytes(72 * 1024 * 1024, 11);
    let obj = gcs
        .upload(
            &bucket,
            name,
            &data,
            json!({ "contentType": "application/x-parts" }),
        )
        .await;
    let server = Server::start(&w.env).await;

    // The first two parts go through; every later part attempt fails,
    // more often than the SDK retries.
    w.proxy
        .push_fault("UploadPart", ProxyFault::Delay(Duration::ZERO));
    w.proxy
        .push_fault("UploadPart", ProxyFault::Delay(Duration::ZERO));
    w.proxy.set_faults(FaultPlan {
        ops: Some(vec!["UploadPart".into()]),
        rate: 1.0,
        kinds: vec![ProxyFault::Status(500)],
        max: Some(50),
        seed: 9,
    });
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "s3_unavailable", "{a:?}");
    assert!(w.proxy.faults_injected() >= 3, "{:?}", w.proxy.counts());
    assert_eq!(w.proxy.count("CreateMultipartUpload"), 1);
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 0);
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    assert!(head(&w, name).await.is_none());

    w.assert_no_upload_left().await;

    // The redelivery, with S3 healthy again, succeeds.
    w.proxy.clear_faults();
    let a = event(&w, &server, "finalized", &obj).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 1);
    assert!(w.stored(name).await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_source_buckets_are_read() {
    require_rig!();
    let mut w = World::new("sources").await;
    let gcs = Gcs::new(&w.rig);
    let allowed = gcs.bucket("src-ok").await;
    let other = gcs.bucket("src-other").await;
    let name = "secret.txt";
    let obj = gcs.upload(&other, name, b"not for S3", json!({})).await;
    let mine = gcs.upload(&allowed, name, b"for S3", json!({})).await;
    let gproxy = gcs_proxy(&mut w).await;
    w.set("GCS_SOURCE_BUCKETS", &allowed);
    let server = Server::start(&w.env).await;

    // Another bucket, through each trigger: 403, nothing read, nothing written.
    let cmd = json!({ "op": "replicate", "bucket": other, "name": name });
    let answers = [
        command(&w, &server, cmd).await,
        notification(&w, &server, "OBJECT_FINALIZE", &obj).await,
        notification(&w, &server, "OBJECT_DELETE", &obj).await,
        event(&w, &server, "finalized", &obj).await,
        event(&w, &server, "deleted", &obj).await,
    ];
    for a in answers {
        assert_eq!(a.status, 403, "{a:?}");
        assert_eq!(
            a.body["error"]["code"], "source_bucket_not_allowed",
            "{a:?}"
        );
    }
    assert_eq!(gproxy.total(), 0, "Cloud Storage was read");
    assert_eq!(w.proxy.count("PutObject"), 0);
    assert!(head(&w, name).await.is_none());

    // Names Cloud Storage would never accept: 400.
    for bad in [
        "Upper_Case",
        "goog-bucket",
        "my-google-data",
        "10.0.0.1",
        "a",
        "-x-",
    ] {
        let a = command(
            &w,
            &server,
            json!({ "op": "replicate", "bucket": bad, "name": name }),
        )
        .await;
        assert_eq!(a.status, 400, "{bad}: {a:?}");
        assert_eq!(a.body["error"]["code"], "invalid_bucket", "{a:?}");
    }
    assert_eq!(gproxy.total(), 0, "Cloud Storage was read");

    // The allowed bucket replicates.
    let a = event(&w, &server, "finalized", &mine).await;
    assert_2xx(&a, &server);
    assert_eq!(w.stored(name).await.unwrap(), b"for S3");
    let h = head(&w, name).await.unwrap();
    assert_eq!(
        h.metadata().unwrap().get("goog-bucket"),
        Some(&allowed),
        "{h:?}"
    );
    drop(server);

    // Unset: replication is off, even for that bucket.
    w.env.retain(|(k, _)| k != "GCS_SOURCE_BUCKETS");
    let server = Server::start(&w.env).await;
    gproxy.reset_counts();
    let a = event(&w, &server, "finalized", &mine).await;
    assert_eq!(a.status, 403, "{a:?}");
    assert_eq!(
        a.body["error"]["code"], "source_bucket_not_allowed",
        "{a:?}"
    );
    assert_eq!(gproxy.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_are_compared_within_one_bucket() {
    require_rig!();
    let mut w = World::new("twobuckets").await;
    let gcs = Gcs::new(&w.rig);
    let src = gcs.bucket("src").await;
    let other = gcs.bucket("other").await;
    let name = "shared/name.txt";
    let mine = gcs.upload(&src, name, b"from src", json!({})).await;
    let theirs = gcs.upload(&other, name, b"from other", json!({})).await;
    assert!(generation(&theirs) > generation(&mine));
    w.set("GCS_SOURCE_BUCKETS", &format!("{src},{other}"));
    let server = Server::start(&w.env).await;

    // The other bucket's higher generation is replicated first...
    let a = event(&w, &server, "finalized", &theirs).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    // ...and does not pin the key: src's lower generation replaces it.
    let a = event(&w, &server, "finalized", &mine).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(w.stored(name).await.unwrap(), b"from src");
    let h = head(&w, name).await.unwrap();
    let meta = h.metadata().unwrap();
    assert_eq!(meta.get("goog-bucket"), Some(&src));
    assert_eq!(
        meta.get("goog-generation"),
        Some(&generation(&mine).to_string())
    );

    // A redelivery from src is up to date; a delete from the other bucket,
    // even of a higher generation, leaves src's replica.
    let a = event(&w, &server, "finalized", &mine).await;
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    let a = event(&w, &server, "deleted", &theirs).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert!(head(&w, name).await.is_some());
    assert_eq!(w.proxy.count("DeleteObject"), 0);

    // src's own delete removes it.
    gcs.delete(&src, name).await;
    let a = event(&w, &server, "deleted", &mine).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_deleted", "{a:?}");
    assert!(head(&w, name).await.is_none());
}

/// Runs `fut` in the background.
fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(fut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_write_of_an_older_generation_loses_to_a_newer_one() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("racewrite").await;
    let name = "raced.txt";
    let old = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let w = std::sync::Arc::new(w);

    // Generation one's check finds no replica; its write is held at the proxy.
    let mut hold = w.proxy.hold_next("PutObject");
    let slow = {
        let (w, server, old) = (w.clone(), server.clone(), old.clone());
        spawn(async move { event(&w, &server, "finalized", &old).await })
    };
    tokio::time::timeout(Duration::from_secs(20), hold.arrived())
        .await
        .expect("the first write reached S3");

    // Meanwhile generation two is written and replicated.
    let new = gcs
        .upload(&bucket, name, b"generation two", json!({}))
        .await;
    let a = event(&w, &server, "finalized", &new).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    // The held write goes on: its condition (no replica) no longer holds,
    // and the check that follows finds the newer replica and leaves it.
    hold.release();
    let a = slow.await.unwrap();
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_replica(&w, name, b"generation two", &new).await;

    // A redelivery: the generation is gone now, its pinned read is refused.
    let a = event(&w, &server, "finalized", &old).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "source_gone", "{a:?}");
    assert_replica(&w, name, b"generation two", &new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_after_the_check_loses_to_a_write_made_meanwhile() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("racecheck").await;
    let name = "replaced.txt";
    let one = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let a = event(&w, &server, "finalized", &one).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    let two = gcs
        .upload(&bucket, name, b"generation two", json!({}))
        .await;
    let w = std::sync::Arc::new(w);

    // Generation two's first write (`If-None-Match: *`) is refused; its
    // second, over the replica the check saw (`If-Match`), is held while
    // another replica is written.
    let first = w.proxy.hold_next("PutObject");
    let mut second = w.proxy.hold_next("PutObject");
    let slow = {
        let (w, server, two) = (w.clone(), server.clone(), two.clone());
        spawn(async move { event(&w, &server, "finalized", &two).await })
    };
    first.release();
    tokio::time::timeout(Duration::from_secs(20), second.arrived())
        .await
        .expect("the write after the check reached S3");
    assert_eq!(w.proxy.count("HeadObject"), 1);
    let newer = (generation(&two) + 1).to_string();
    admin_s3()
        .put_object()
        .bucket(&w.bucket)
        .key(w.full(name))
        .metadata("goog-generation", &newer)
        .metadata("goog-bucket", &bucket)
        .body(b"written meanwhile".to_vec().into())
        .send()
        .await
        .unwrap();
    second.release();
    let a = slow.await.unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "replica_changed", "{a:?}");
    assert!(a.retry_after.is_some());
    assert_eq!(
        w.stored(name).await.as_deref(),
        Some(&b"written meanwhile"[..])
    );

    // Its redelivery decides again: the replica is newer.
    let a = event(&w, &server, "finalized", &two).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(replica_generation(&w, name).await, Some(newer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_newer_replica_leaves_it() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("racedelete").await;
    let name = "raced.txt";
    let old = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let w = std::sync::Arc::new(w);
    let a = event(&w, &server, "finalized", &old).await;
    assert_2xx(&a, &server);

    // Generation one is overwritten: its delete checks the replica (one)
    // and is held on its way to S3.
    let new = gcs
        .upload(&bucket, name, b"generation two", json!({}))
        .await;
    let mut hold = w.proxy.hold_next("DeleteObject");
    let slow = {
        let (w, server, old) = (w.clone(), server.clone(), old.clone());
        spawn(async move { event(&w, &server, "deleted", &old).await })
    };
    tokio::time::timeout(Duration::from_secs(20), hold.arrived())
        .await
        .expect("the delete reached S3");

    // Generation two replaces the replica meanwhile.
    let a = event(&w, &server, "finalized", &new).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    // The held delete goes on: it removes only the version it checked.
    hold.release();
    let a = slow.await.unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "replica_changed", "{a:?}");
    assert_eq!(w.stored(name).await.unwrap(), b"generation two");

    // Its redelivery decides again: the replica is newer and stays.
    let a = event(&w, &server, "deleted", &old).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert!(head(&w, name).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_over_the_s3_limit_is_refused_before_any_byte_is_read() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("bigmeta").await;
    let name = "labelled.txt";
    let obj = gcs
        .upload(
            &bucket,
            name,
            b"small object, large labels",
            json!({ "metadata": { "notes": "n".repeat(1500), "more": "m".repeat(800) } }),
        )
        .await;
    let gproxy = gcs_proxy(&mut w).await;
    let server = Server::start(&w.env).await;

    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.status, 400, "{a:?}");
    assert_eq!(a.body["error"]["code"], "metadata_too_large", "{a:?}");
    // The event carries the object resource: nothing was read.
    assert_eq!(gproxy.total(), 0, "{:?}", gproxy.counts());
    assert_eq!(w.proxy.count("PutObject"), 0);
    assert!(head(&w, name).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_replacement_completes_only_over_the_replica_it_checked() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("racempu").await;
    let name = "grows.bin";
    let one = gcs.upload(&bucket, name, b"small first", json!({})).await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let w = std::sync::Arc::new(w);
    let a = event(&w, &server, "finalized", &one).await;
    assert_2xx(&a, &server);

    // Generation two goes up in parts over generation one's replica; its
    // completion is held.
    let big = bytes(65 * 1024 * 1024, 21);
    let two = gcs.upload(&bucket, name, &big, json!({})).await;
    let mut hold = w.proxy.hold_next("CompleteMultipartUpload");
    let slow = {
        let (w, server, two) = (w.clone(), server.clone(), two.clone());
        spawn(async move { event(&w, &server, "finalized", &two).await })
    };
    tokio::time::timeout(Duration::from_secs(120), hold.arrived())
        .await
        .expect("the multipart upload reached its completion");

    // Generation three replaces generation one meanwhile.
    let three = gcs.upload(&bucket, name, b"small third", json!({})).await;
    let a = event(&w, &server, "finalized", &three).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    // The completion's If-Match names generation one's ETag: refused, the
    // upload aborted, generation three stays.
    hold.release();
    let a = slow.await.unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "replica_changed", "{a:?}");
    assert_eq!(w.proxy.count("CompleteMultipartUpload"), 1);
    assert!(w.proxy.count("AbortMultipartUpload") >= 1);
    w.assert_no_upload_left().await;
    assert_replica(&w, name, b"small third", &three).await;
}

// --- The service removes only what it owns ---------------------------------

/// Posts one of the service's own tasks (`delete_replica`, …) as its tasks
/// subscription would push it.
async fn post_task(w: &World, server: &Server, task: Value) -> Answer {
    answer(w.post_task(server, &task, &rand_id()).await).await
}

/// `PUT /v1/objects/{key}`: an object a user wrote, no replica.
async fn put_user_object(w: &World, server: &Server, key: &str, body: &[u8]) {
    let r = server
        .put(&format!("/v1/objects/{key}"))
        .bearer_auth(w.caller_token())
        .header("content-type", "text/plain")
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// An object resource of `bucket/name` at `generation`, as an event of an
/// object that Cloud Storage no longer has carries it.
fn resource_of(bucket: &str, name: &str, generation: i64) -> Value {
    json!({ "bucket": bucket, "name": name, "generation": generation.to_string() })
}

/// A user object under the prefix, and a server replicating from a bucket
/// that has no object of that name.
async fn user_object_world(test: &str, name: &str) -> (World, Server, String) {
    let (w, _gcs, bucket) = with_source_bucket(test).await;
    let server = Server::start(&w.env).await;
    put_user_object(&w, &server, name, b"written by a user").await;
    (w, server, bucket)
}

async fn assert_user_object_kept(w: &World, server: &Server, a: &Answer, name: &str) {
    assert_2xx(a, server);
    assert_eq!(a.body["status"], "not_a_replica", "{a:?}");
    assert_eq!(
        w.stored(name).await.as_deref(),
        Some(&b"written by a user"[..])
    );
    assert_eq!(w.proxy.count("DeleteObject"), 0);
    logged(server, "no replica").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_object_survives_a_deleted_event() {
    require_rig!();
    let name = "mine/report.txt";
    let (w, server, bucket) = user_object_world("ownevent", name).await;
    let a = event(&w, &server, "deleted", &resource_of(&bucket, name, 7)).await;
    assert_user_object_kept(&w, &server, &a, name).await;
    let a = event(&w, &server, "archived", &resource_of(&bucket, name, 7)).await;
    assert_user_object_kept(&w, &server, &a, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_object_survives_a_delete_notification() {
    require_rig!();
    let name = "mine/report.txt";
    let (w, server, bucket) = user_object_world("ownnotif", name).await;
    let a = notification(&w, &server, "OBJECT_DELETE", &resource_of(&bucket, name, 7)).await;
    assert_user_object_kept(&w, &server, &a, name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_object_survives_a_sync_orphan_removal() {
    require_rig!();
    let name = "mine/report.txt";
    let (w, server, bucket) = user_object_world("ownorphan", name).await;
    let a = post_task(
        &w,
        &server,
        json!({ "op": "delete_replica", "bucket": bucket, "name": name }),
    )
    .await;
    assert_user_object_kept(&w, &server, &a, name).await;
}

/// The user metadata of the object at `name`, admin view.
async fn user_metadata(w: &World, name: &str) -> HashMap<String, String> {
    head(w, name)
        .await
        .unwrap_or_else(|| panic!("no object at {name}"))
        .metadata()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_replica_carries_no_replication_metadata() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("copyown").await;
    // Copies past 5 MiB go part by part (UploadPartCopy).
    w.set(
        "TEST_COPY_MULTIPART_THRESHOLD_BYTES",
        &(5 * 1024 * 1024).to_string(),
    );
    let small = gcs
        .upload(
            &bucket,
            "src/small.txt",
            b"replicated bytes",
            json!({ "contentType": "text/x-small", "metadata": { "team": "blue" } }),
        )
        .await;
    let big_data = bytes(6 * 1024 * 1024, 5);
    let big = gcs
        .upload(
            &bucket,
            "src/big.bin",
            &big_data,
            json!({ "metadata": { "team": "red" } }),
        )
        .await;
    let server = Server::start(&w.env).await;
    for obj in [&small, &big] {
        let a = event(&w, &server, "finalized", obj).await;
        assert_eq!(a.body["status"], "replicated", "{a:?}");
    }

    // POST /v1/copy (one CopyObject), the copy command, and a multipart copy.
    let r = server
        .post("/v1/copy")
        .bearer_auth(w.caller_token())
        .json(&json!({ "source_key": "src/small.txt", "key": "copies/http.txt" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let a = command(
        &w,
        &server,
        json!({ "op": "copy", "source_key": "src/small.txt", "key": "copies/pubsub.txt" }),
    )
    .await;
    assert_2xx(&a, &server);
    let r = server
        .post("/v1/copy")
        .bearer_auth(w.caller_token())
        .json(&json!({ "source_key": "src/big.bin", "key": "copies/big.bin" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert!(
        w.proxy.count("UploadPartCopy") >= 1,
        "{:?}",
        w.proxy.counts()
    );

    for (key, team) in [
        ("copies/http.txt", "blue"),
        ("copies/pubsub.txt", "blue"),
        ("copies/big.bin", "red"),
    ] {
        let meta = user_metadata(&w, key).await;
        assert!(
            !meta.keys().any(|k| k.starts_with("goog-")),
            "{key} carries replication metadata: {meta:?}"
        );
        assert_eq!(meta.get("team").map(String::as_str), Some(team), "{key}");
    }
    let h = head(&w, "copies/http.txt").await.unwrap();
    assert_eq!(h.content_type(), Some("text/x-small"));
    assert_eq!(w.stored("copies/big.bin").await.unwrap(), big_data);

    // The source object of the copy's name replaces the copy: a copy is no
    // replica that could be taken as up to date.
    let real = gcs
        .upload(&bucket, "copies/http.txt", b"the real object", json!({}))
        .await;
    let a = event(&w, &server, "finalized", &real).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_replica(&w, "copies/http.txt", b"the real object", &real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_removal_leaves_a_replica_written_after_its_check() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("orphanrace").await;
    let name = "orphan.txt";
    let obj = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let gproxy = gcs_proxy(&mut w).await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let w = std::sync::Arc::new(w);
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    gcs.delete(&bucket, name).await;

    // The orphan removal reads the replica, then its check of Cloud
    // Storage is held.
    let mut hold = gproxy.hold_next("GcsGetObject");
    let slow = {
        let (w, server, bucket) = (w.clone(), server.clone(), bucket.clone());
        spawn(async move {
            post_task(
                &w,
                &server,
                json!({ "op": "delete_replica", "bucket": bucket, "name": name }),
            )
            .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), hold.arrived())
        .await
        .expect("the Cloud Storage check");
    // The finalize wrote without a check; the removal read the replica.
    assert_eq!(w.proxy.count("HeadObject"), 1, "{:?}", w.proxy.counts());

    // A newer replica is written meanwhile.
    admin_s3()
        .put_object()
        .bucket(&w.bucket)
        .key(w.full(name))
        .metadata("goog-bucket", &bucket)
        .metadata("goog-generation", (generation(&obj) + 1).to_string())
        .body(b"generation two".to_vec().into())
        .send()
        .await
        .unwrap();

    // The removal goes on: conditional on what it read, it fails.
    hold.release();
    let a = slow.await.unwrap();
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "replica_changed", "{a:?}");
    assert_eq!(w.stored(name).await.unwrap(), b"generation two");
}

// --- Versioned buckets ------------------------------------------------------

/// A test's world on the rig's versioned bucket.
async fn with_versioned_source_bucket(test: &str) -> (World, Gcs, String) {
    let (mut w, gcs, bucket) = with_source_bucket(test).await;
    let versioned = w.rig["RIG_VERSIONED_BUCKET"].clone();
    w.set("S3_BUCKET", &versioned);
    w.bucket = versioned;
    (w, gcs, bucket)
}

/// Every version of exactly `name` (delete markers left out), newest
/// first: version id and user metadata.
async fn versions(w: &World, name: &str) -> Vec<(String, HashMap<String, String>)> {
    let s3 = admin_s3();
    let key = w.full(name);
    let out = s3
        .list_object_versions()
        .bucket(&w.bucket)
        .prefix(&key)
        .send()
        .await
        .unwrap();
    let mut all = Vec::new();
    for v in out.versions() {
        if v.key() != Some(key.as_str()) {
            continue;
        }
        let id = v.version_id().unwrap().to_owned();
        let h = s3
            .head_object()
            .bucket(&w.bucket)
            .key(&key)
            .version_id(&id)
            .send()
            .await
            .unwrap();
        all.push((id, h.metadata().cloned().unwrap_or_default()));
    }
    all
}

/// Nothing reads back at `name`, no version is a replica of `bucket`, and
/// the user's version is still there.
async fn assert_only_the_user_version_left(w: &World, name: &str, bucket: &str) {
    assert!(w.stored(name).await.is_none(), "{name} still reads back");
    let left = versions(w, name).await;
    assert!(
        !left
            .iter()
            .any(|(_, m)| m.get("goog-bucket").map(String::as_str) == Some(bucket)),
        "replica versions left at {name}: {left:?}"
    );
    assert_eq!(left.len(), 1, "{name}: {left:?}");
    let user = admin_s3()
        .get_object()
        .bucket(&w.bucket)
        .key(w.full(name))
        .version_id(&left[0].0)
        .send()
        .await
        .unwrap();
    let body = user.body.collect().await.unwrap().into_bytes();
    assert_eq!(&body[..], b"written by a user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_on_a_versioned_bucket_leave_no_replica_version_behind() {
    require_rig!();
    let (w, gcs, bucket) = with_versioned_source_bucket("versioned").await;
    let server = Server::start(&w.env).await;
    for how in ["event", "notification", "orphan"] {
        let name = format!("{how}/doc.txt");
        // A user's object, then two generations replicated over it.
        put_user_object(&w, &server, &name, b"written by a user").await;
        let one = gcs
            .upload(&bucket, &name, b"generation one", json!({}))
            .await;
        let a = event(&w, &server, "finalized", &one).await;
        assert_eq!(a.body["status"], "replicated", "{a:?}");
        let two = gcs
            .upload(&bucket, &name, b"generation two", json!({}))
            .await;
        let a = event(&w, &server, "finalized", &two).await;
        assert_eq!(a.body["status"], "replicated", "{a:?}");
        assert_eq!(versions(&w, &name).await.len(), 3);
        gcs.delete(&bucket, &name).await;

        let a = match how {
            "event" => event(&w, &server, "deleted", &two).await,
            "notification" => notification(&w, &server, "OBJECT_DELETE", &two).await,
            _ => {
                post_task(
                    &w,
                    &server,
                    json!({ "op": "delete_replica", "bucket": bucket, "name": name }),
                )
                .await
            }
        };
        assert_2xx(&a, &server);
        assert_eq!(a.body["status"], "replica_deleted", "{how}: {a:?}");
        assert_only_the_user_version_left(&w, &name, &bucket).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_a_versioned_bucket_keeps_newer_replica_versions() {
    require_rig!();
    let (w, gcs, bucket) = with_versioned_source_bucket("versionednewer").await;
    let server = Server::start(&w.env).await;
    let name = "doc.txt";
    let one = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let a = event(&w, &server, "finalized", &one).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    let two = gcs
        .upload(&bucket, name, b"generation two", json!({}))
        .await;
    let a = event(&w, &server, "finalized", &two).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    // Generation one's delete arrives late: generation two's replica stays,
    // and so does every version under it.
    let a = event(&w, &server, "deleted", &one).await;
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert_eq!(versions(&w, name).await.len(), 2);
    assert_replica(&w, name, b"generation two", &two).await;
}

// --- Metadata updates -------------------------------------------------------

/// `obj` at metageneration `m`, with the content type, cache control and
/// custom metadata of that metageneration.
fn at_metageneration(obj: &Value, m: i64) -> Value {
    let mut o = obj.clone();
    o["metageneration"] = json!(m.to_string());
    o["contentType"] = json!(format!("text/x-meta-{m}"));
    o["cacheControl"] = json!(format!("max-age={m}"));
    o["contentLanguage"] = json!("fr");
    o["metadata"] = json!({ "rev": m.to_string() });
    o
}

/// The replica of `name` holds `data` and `of`'s generation, with the
/// headers and metadata of metageneration `m`.
async fn assert_metageneration(w: &World, name: &str, data: &[u8], of: &Value, m: i64) {
    assert_replica(w, name, data, of).await;
    let h = head(w, name).await.unwrap();
    assert_eq!(h.content_type(), Some(format!("text/x-meta-{m}").as_str()));
    assert_eq!(h.cache_control(), Some(format!("max-age={m}").as_str()));
    assert_eq!(h.content_language(), Some("fr"));
    let meta = h.metadata().unwrap();
    assert_eq!(meta.get("rev"), Some(&m.to_string()));
    assert_eq!(meta.get("goog-metageneration"), Some(&m.to_string()));
    assert_eq!(meta.get("goog-bucket").map(String::as_str), obj_bucket(of));
}

fn obj_bucket(obj: &Value) -> Option<&str> {
    obj["bucket"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_updates_in_order_leave_the_newest_metadata() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("metaorder").await;
    let name = "meta/doc.txt";
    let obj = gcs
        .upload(
            &bucket,
            name,
            b"same bytes",
            json!({ "contentType": "text/plain" }),
        )
        .await;
    let server = Server::start(&w.env).await;

    // A metadata update before any replica replicates the object.
    let a = event(&w, &server, "metadataUpdated", &obj).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    let meta = user_metadata(&w, name).await;
    assert_eq!(meta.get("goog-metageneration"), Some(&metageneration(&obj)));

    let a = event(&w, &server, "metadataUpdated", &at_metageneration(&obj, 2)).await;
    assert_eq!(a.body["status"], "metadata_updated", "{a:?}");
    assert_metageneration(&w, name, b"same bytes", &obj, 2).await;
    let a = notification(
        &w,
        &server,
        "OBJECT_METADATA_UPDATE",
        &at_metageneration(&obj, 3),
    )
    .await;
    assert_eq!(a.body["status"], "metadata_updated", "{a:?}");
    assert_metageneration(&w, name, b"same bytes", &obj, 3).await;
    assert_eq!(w.proxy.count("CopyObject"), 2);

    // Its redelivery changes nothing.
    let a = event(&w, &server, "metadataUpdated", &at_metageneration(&obj, 3)).await;
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(w.proxy.count("CopyObject"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_updates_out_of_order_keep_the_newest_metadata() {
    require_rig!();
    let (mut w, gcs, bucket) = with_source_bucket("metaooo").await;
    // Past 5 MiB the copy onto itself goes part by part.
    w.set(
        "TEST_COPY_MULTIPART_THRESHOLD_BYTES",
        &(5 * 1024 * 1024).to_string(),
    );
    let name = "meta/big.bin";
    let data = bytes(6 * 1024 * 1024, 9);
    let obj = gcs.upload(&bucket, name, &data, json!({})).await;
    let server = Server::start(&w.env).await;
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    let a = event(&w, &server, "metadataUpdated", &at_metageneration(&obj, 3)).await;
    assert_eq!(a.body["status"], "metadata_updated", "{a:?}");
    assert!(
        w.proxy.count("UploadPartCopy") >= 1,
        "{:?}",
        w.proxy.counts()
    );
    let a = event(&w, &server, "metadataUpdated", &at_metageneration(&obj, 2)).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_metageneration(&w, name, &data, &obj, 3).await;
    w.assert_no_upload_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_update_of_an_older_generation_changes_nothing() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("metaold").await;
    let name = "meta/doc.txt";
    let one = gcs
        .upload(&bucket, name, b"generation one", json!({}))
        .await;
    let two = gcs
        .upload(
            &bucket,
            name,
            b"generation two",
            json!({ "contentType": "text/plain" }),
        )
        .await;
    let server = Server::start(&w.env).await;
    let a = event(&w, &server, "finalized", &two).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");

    let a = event(&w, &server, "metadataUpdated", &at_metageneration(&one, 9)).await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "up_to_date", "{a:?}");
    assert_eq!(w.proxy.count("CopyObject"), 0);
    assert_eq!(w.proxy.count("PutObject"), 1);
    let h = head(&w, name).await.unwrap();
    assert_eq!(h.content_type(), Some("text/plain"));
    assert_replica(&w, name, b"generation two", &two).await;
}

// --- Events decided by generation, in any order -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overwrite_ends_with_the_new_replica_whatever_the_event_order() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("overwrite").await;
    let server = Server::start(&w.env).await;
    for (name, delete_first) in [("finalize-first.txt", false), ("delete-first.txt", true)] {
        let one = gcs
            .upload(&bucket, name, b"generation one", json!({}))
            .await;
        let a = event(&w, &server, "finalized", &one).await;
        assert_eq!(a.body["status"], "replicated", "{a:?}");
        // The overwrite: finalized(two) and deleted(one), in either order.
        let two = gcs
            .upload(&bucket, name, b"generation two", json!({}))
            .await;
        if delete_first {
            let a = event(&w, &server, "deleted", &one).await;
            assert_eq!(a.body["status"], "replica_deleted", "{a:?}");
        }
        let a = event(&w, &server, "finalized", &two).await;
        assert_eq!(a.body["status"], "replicated", "{a:?}");
        if !delete_first {
            let a = event(&w, &server, "deleted", &one).await;
            assert_eq!(a.body["status"], "replica_kept", "{a:?}");
        }
        assert_replica(&w, name, b"generation two", &two).await;
    }
}

// --- S3's 403 for a missing key ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_for_a_missing_key_is_resolved_by_a_listing() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("forbidden404").await;
    let name = "dir/new.txt";
    let obj = gcs.upload(&bucket, name, b"new object", json!({})).await;
    let server = Server::start(&w.env).await;
    // S3 answers a HEAD of a missing key with 403 when the caller lacks
    // s3:ListBucket for it.
    let missing = ProxyFault::RewriteStatus { from: 404, to: 403 };

    // (A command: an event of a small object writes without a check.)
    w.proxy.push_fault("HeadObject", missing.clone());
    let a = command(
        &w,
        &server,
        json!({ "op": "replicate", "bucket": bucket, "name": name }),
    )
    .await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    assert_eq!(w.proxy.faults_injected(), 1);
    assert_eq!(w.proxy.count("ListObjectsV2"), 1);
    assert_replica(&w, name, b"new object", &obj).await;

    // A deleted event of a key with no replica: acknowledged.
    w.proxy.push_fault("HeadObject", missing);
    let a = event(
        &w,
        &server,
        "deleted",
        &resource_of(&bucket, "dir/none.txt", 3),
    )
    .await;
    assert_2xx(&a, &server);
    assert_eq!(a.body["status"], "replica_kept", "{a:?}");
    assert_eq!(w.proxy.faults_injected(), 2);

    // A 403 for a key that is listed stands.
    w.proxy.push_fault("HeadObject", ProxyFault::Status(403));
    let a = event(&w, &server, "deleted", &obj).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["error"]["code"], "s3_access_denied", "{a:?}");
    assert!(head(&w, name).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_a_generation_still_live_removes_nothing() {
    require_rig!();
    let (w, gcs, bucket) = with_source_bucket("stilllive").await;
    let name = "live.txt";
    let obj = gcs.upload(&bucket, name, b"still here", json!({})).await;
    let server = Server::start(&w.env).await;
    let a = event(&w, &server, "finalized", &obj).await;
    assert_eq!(a.body["status"], "replicated", "{a:?}");
    // Forged or out of order: a delete naming a generation newer than any,
    // while Cloud Storage still has the replica's.
    let mut newest = obj.clone();
    newest["generation"] = json!(i64::MAX.to_string());
    for kind in ["deleted", "archived"] {
        let a = event(&w, &server, kind, &newest).await;
        assert_eq!(a.body["status"], "replica_kept", "{kind}: {a:?}");
    }
    let a = notification(&w, &server, "OBJECT_DELETE", &newest).await;
    assert_eq!(a.body["status"], "replica_kept", "notification: {a:?}");
    assert_eq!(w.proxy.count("DeleteObject"), 0);
    assert_replica(&w, name, b"still here", &obj).await;
}
