//! The service's own tasks on the rig, delivered by hand so that every
//! delivery is counted: the tasks topic is a pull subscription, and each
//! task is posted to `/tasks` as its push subscription would, as often as
//! the test wants (duplicates, redeliveries with the same message id,
//! several at once).
//! - A sync run is traversed once: each later page is published once,
//!   however often a page is delivered, and its inline copies are made
//!   once.
//! - A large object's replicate starts one upload per generation, however
//!   often it is delivered; what part tasks cannot finish is refused before
//!   anything starts.

use crate::common;
use crate::common::require_rig;

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::deployment::bytes;
use common::gcs::Gcs;
use common::pubsub::{pull_all, pull_topic};
use common::*;
use serde_json::{json, Value};

/// A test's world: a source bucket, the tasks topic as a pull
/// subscription, `SYNC_DELETE` on.
async fn world(test: &str, env: &[(&str, &str)]) -> (World, Gcs, String, String) {
    let mut w = World::new(test).await;
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket(test).await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);
    w.set("SYNC_DELETE", "true");
    let host = w.rig["PUBSUB_EMULATOR_HOST"].clone();
    w.set("PUBSUB_EMULATOR_HOST", &host);
    let (topic, sub) = pull_topic(&w, test).await;
    w.set("TASKS_TOPIC", &topic);
    for (k, v) in env {
        w.set(k, v);
    }
    (w, gcs, bucket, sub)
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "text": text })),
    )
}

/// A command at the outside door `/pubsub`, with `message_id`.
async fn command(w: &World, server: &Server, cmd: &Value, message_id: &str) -> (u16, Value) {
    let envelope = json!({
        "message": { "data": STANDARD.encode(cmd.to_string()), "messageId": message_id },
        "subscription": "projects/bridge-test/subscriptions/commands",
    });
    json_of(
        server
            .post("/pubsub")
            .bearer_auth(w.caller_token())
            .json(&envelope)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn task(w: &World, server: &Server, t: &Value, message_id: &str) -> (u16, Value) {
    json_of(w.post_task(server, t, message_id).await).await
}

/// The sync tasks among `published`, by page number.
fn sync_pages(published: &[Value]) -> Vec<Value> {
    published
        .iter()
        .filter(|t| t["op"] == "sync")
        .cloned()
        .collect()
}

fn page_of(t: &Value) -> u64 {
    let token = t["page_token"].as_str().unwrap();
    let pos: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .unwrap(),
    )
    .unwrap();
    pos["page"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_inline_copies_delivered_twice_copies_each_object_once() {
    require_rig!();
    // Three objects a page, copied inline by the page.
    let (w, gcs, bucket, sub) = world("inlinetwice", &[("TEST_SYNC_PAGE_SIZE", "3")]).await;
    let mut data = BTreeMap::new();
    for i in 0..6 {
        let body = bytes(1000 + i * 100, i as u64);
        gcs.upload(&bucket, &format!("o-{i}"), &body, json!({}))
            .await;
        data.insert(format!("o-{i}"), body);
    }
    let server = Server::start(&w.env).await;
    let start = json!({"op": "sync", "bucket": bucket});
    let (s, first) = command(&w, &server, &start, "m-1").await;
    assert_eq!((s, first["copied"].as_u64()), (200, Some(3)), "{first}");
    let published = pull_all(&w, &sub).await;
    // Only the next page: the page copied its objects itself.
    assert_eq!(published.len(), 1, "{published:?}");
    let page2 = published[0].clone();
    assert_eq!(page_of(&page2), 2);

    // Page 2 twice at once, then again: one delivery copies, the others
    // find the page held or done.
    let (a, b) = tokio::join!(
        task(&w, &server, &page2, "p2-a"),
        task(&w, &server, &page2, "p2-b")
    );
    let copied: Vec<u64> = [&a, &b]
        .iter()
        .filter(|(s, v)| *s == 200 && v["status"] == "published")
        .map(|(_, v)| v["copied"].as_u64().unwrap())
        .collect();
    assert_eq!(copied, vec![3], "{a:?} {b:?}");
    let (s, v) = task(&w, &server, &page2, "p2-a").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("already_done")),
        "{v}"
    );
    assert!(pull_all(&w, &sub).await.is_empty());

    // Each object was written once: six copies; the rest are claims (each
    // page's started and done, and a refused claim per extra delivery).
    let replicated = server
        .stdout
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "replicated")
        .count();
    assert_eq!(replicated, 6);
    assert_eq!(
        w.proxy.count("PutObject"),
        6 + 2 * 2 + 2,
        "{:?}",
        w.proxy.counts()
    );
    assert_eq!(w.proxy.count("HeadObject"), 0, "{:?}", w.proxy.counts());
    for (name, body) in &data {
        assert_eq!(w.stored(name).await.as_ref(), Some(body), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_page_delivered_again_publishes_each_later_page_once() {
    require_rig!();
    // Two objects a page: six objects make three pages. Inline copies off:
    // each page publishes a replicate task per object, which shows what
    // each delivery published.
    let (w, gcs, bucket, sub) = world(
        "synconce",
        &[("TEST_SYNC_PAGE_SIZE", "2"), ("SYNC_INLINE_BYTES", "0")],
    )
    .await;
    for i in 0..6 {
        gcs.upload(&bucket, &format!("o-{i}"), b"x", json!({}))
            .await;
    }
    let server = Server::start(&w.env).await;
    let start = json!({"op": "sync", "bucket": bucket});

    // The outside command, and the same message delivered again after its
    // answer was lost: one run, one first page.
    let (s, first) = command(&w, &server, &start, "m-1").await;
    assert_eq!(
        (s, first["status"].as_str()),
        (200, Some("published")),
        "{first}"
    );
    let (s, again) = command(&w, &server, &start, "m-1").await;
    assert_eq!(
        (s, again["status"].as_str()),
        (200, Some("already_done")),
        "{again}"
    );
    assert_eq!(again["run"], first["run"]);
    let published = pull_all(&w, &sub).await;
    let replicates = published.iter().filter(|t| t["op"] == "replicate").count();
    assert_eq!(replicates, 2, "{published:?}");
    let pages = sync_pages(&published);
    assert_eq!(pages.len(), 1, "{published:?}");
    let page2 = pages[0].clone();
    assert_eq!(page_of(&page2), 2);

    // Page 2: two deliveries at once (a duplicate publish), then the first
    // one again (a redelivery after a lost answer). One of the two at once
    // does the page; the other finds it done or in progress (503, which
    // Pub/Sub redelivers: then it finds it done).
    let (a, b) = tokio::join!(
        task(&w, &server, &page2, "p2-a"),
        task(&w, &server, &page2, "p2-b")
    );
    let done: Vec<&Value> = [&a, &b]
        .into_iter()
        .filter(|(s, v)| *s == 200 && v["status"] == "published")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(done.len(), 1, "{a:?} {b:?}");
    for (s, v) in [&a, &b] {
        assert!(
            *s == 200
                && ["published", "already_done", "in_progress"]
                    .contains(&v["status"].as_str().unwrap_or("")),
            "{s} {v}"
        );
    }
    for id in ["p2-a", "p2-b"] {
        let (s, v) = task(&w, &server, &page2, id).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("already_done")),
            "{v}"
        );
    }
    let published = pull_all(&w, &sub).await;
    let pages = sync_pages(&published);
    assert_eq!(pages.len(), 1, "{published:?}");
    let page3 = pages[0].clone();
    assert_eq!(page_of(&page3), 3);

    // Page 3, the last, delivered three times.
    let (s, v) = task(&w, &server, &page3, "p3").await;
    assert_eq!((s, v["next_page"].as_bool()), (200, Some(false)), "{v}");
    for id in ["p3", "p3-dup"] {
        let (s, v) = task(&w, &server, &page3, id).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (200, Some("already_done")),
            "{v}"
        );
    }
    let published = pull_all(&w, &sub).await;
    assert!(sync_pages(&published).is_empty(), "{published:?}");
    assert_eq!(
        published.iter().filter(|t| t["op"] == "replicate").count(),
        2,
        "{published:?}"
    );

    // A forged page token: 400, and the instance lives on.
    let mut forged = page3.clone();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"run": first["run"], "page": u64::MAX, "after": "o-5"}).to_string());
    forged["page_token"] = json!(token);
    let (s, v) = task(&w, &server, &forged, "forged").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_page_token")),
        "{v}"
    );
    let r = server.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The run's bookkeeping is no replica: a deleting sync keeps it and
    // lists none of it.
    let (s, v) = command(
        &w,
        &server,
        &json!({"op": "sync", "bucket": bucket, "delete": true}),
        "m-2",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let published = pull_all(&w, &sub).await;
    assert!(
        published.iter().all(|t| t["op"] != "delete_replica"),
        "{published:?}"
    );
    let markers = admin_list(&w.bucket, &format!("{}.gcp-aws-bridge/sync/", w.prefix)).await;
    assert!(markers.len() >= 4, "{markers:?}");
    let listed: Value = server
        .get("/v1/objects")
        .bearer_auth(w.caller_token())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| !o["key"].as_str().unwrap().starts_with(".gcp-aws-bridge")),
        "{listed}"
    );
}

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_delivered_twice_starts_one_upload_and_its_parts_finish_it() {
    require_rig!();
    let (w, gcs, bucket, sub) = world("oneupload", &[("PART_TASK_BYTES", "5242880")]).await;
    let data = bytes(12 * MIB, 3);
    let resource = gcs
        .upload(
            &bucket,
            "big.bin",
            &data,
            json!({"contentType": "application/octet-stream"}),
        )
        .await;
    let server = Server::start(&w.env).await;
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "big.bin",
                     "generation": resource["generation"]});
    let (s1, a1) = command(&w, &server, &cmd, "r-1").await;
    let (s2, a2) = command(&w, &server, &cmd, "r-2").await;
    assert_eq!(
        (s1, a1["status"].as_str()),
        (200, Some("parts_published")),
        "{a1}"
    );
    assert_eq!(
        (s2, a2["status"].as_str()),
        (200, Some("upload_in_progress")),
        "{a2}"
    );
    assert_eq!(a2["upload_id"], a1["upload_id"]);
    let uploads = w.uploads_left().await;
    assert_eq!(uploads.len(), 1, "{uploads:?}");

    // The part tasks name the object, not a key; each is delivered twice.
    let parts = pull_all(&w, &sub).await;
    assert_eq!(Some(parts.len() as u64), a1["parts"].as_u64(), "{parts:?}");
    assert!(parts.len() >= 2, "{parts:?}");
    assert!(parts
        .iter()
        .all(|p| p["op"] == "replicate_part" && p.get("key").is_none()));
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        for n in 0..2 {
            let (s, v) = task(&w, &server, p, &format!("part-{i}-{n}")).await;
            assert!(s < 300, "{s} {v}\n{}", server.stdout.text());
            *statuses
                .entry(v["status"].as_str().unwrap_or("").to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(statuses.get("replicated"), Some(&1), "{statuses:?}");
    assert_eq!(w.stored("big.bin").await.as_deref(), Some(&data[..]));
    w.assert_no_upload_left().await;

    // The replicate again: the replica has the generation, nothing starts.
    let (s, v) = command(&w, &server, &cmd, "r-3").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("up_to_date")), "{v}");
    assert!(pull_all(&w, &sub).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_task_threshold_below_s3s_smallest_part_replicates_in_one_part() {
    require_rig!();
    let (w, gcs, bucket, sub) = world("onepart", &[("PART_TASK_BYTES", "1048576")]).await;
    let data = bytes(2 * MIB, 5);
    let resource = gcs
        .upload(
            &bucket,
            "two.bin",
            &data,
            json!({"contentType": "application/octet-stream"}),
        )
        .await;
    let server = Server::start(&w.env).await;
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "two.bin",
                     "generation": resource["generation"]});
    let (s, a) = command(&w, &server, &cmd, "one-1").await;
    assert_eq!(
        (s, a["status"].as_str()),
        (200, Some("parts_published")),
        "{a}"
    );
    assert_eq!(a["parts"], 1, "{a}");
    let parts = pull_all(&w, &sub).await;
    assert_eq!(parts.len(), 1, "{parts:?}");
    let (s, v) = task(&w, &server, &parts[0], "one-part").await;
    assert_eq!((s, v["status"].as_str()), (200, Some("replicated")), "{v}");
    assert_eq!(w.stored("two.bin").await.as_deref(), Some(&data[..]));
    w.assert_no_upload_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_tasks_that_cannot_finish_are_refused_before_anything_starts() {
    require_rig!();
    for (env, code) in [
        // No part of at least 5 MiB fits a 4 MiB budget.
        (("BUFFER_BUDGET_BYTES", "4194304"), "part_too_large"),
        (("MAX_OBJECT_BYTES", "10485760"), "object_too_large"),
    ] {
        let (w, gcs, bucket, sub) = world(
            &format!("refused{}", code.len()),
            &[("PART_TASK_BYTES", "5242880"), env],
        )
        .await;
        let resource = gcs
            .upload(&bucket, "big.bin", &bytes(12 * MIB, 5), json!({}))
            .await;
        let server = Server::start(&w.env).await;
        let cmd = json!({"op": "replicate", "bucket": bucket, "name": "big.bin",
                         "generation": resource["generation"]});
        let (s, v) = command(&w, &server, &cmd, "r-1").await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
        w.assert_no_upload_left().await;
        assert!(pull_all(&w, &sub).await.is_empty());
    }
}

/// The key of the record of an upload in progress, as the service names it.
fn upload_record_key(w: &World, bucket: &str, name: &str, generation: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        bucket.as_bytes(),
        b"\0",
        name.as_bytes(),
        b"\0",
        generation.as_bytes(),
    ] {
        h.update(part);
    }
    let hex: String = h.finalize()[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{}.gcp-aws-bridge/uploads/{hex}", w.prefix)
}

/// A multipart upload of `name` opened past the service, as another
/// delivery of its replicate would have; its id.
async fn open_upload(w: &World, name: &str) -> String {
    admin_s3()
        .create_multipart_upload()
        .bucket(&w.bucket)
        .key(w.full(name))
        .send()
        .await
        .unwrap()
        .upload_id
        .unwrap()
}

/// Writes the record of `upload_id` as the upload in progress of
/// `gs://bucket/name#generation`, as the service keeps it: no part seen,
/// its tasks not yet all published, last looked at `age_secs` ago.
async fn record_upload(
    w: &World,
    bucket: &str,
    name: &str,
    generation: &str,
    upload_id: &str,
    age_secs: u64,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let record = json!({
        "bucket": bucket, "name": name, "generation": generation.parse::<i64>().unwrap(),
        "upload_id": upload_id, "parts_seen": 0, "checked_at": now - age_secs,
        "published": false,
    });
    admin_s3()
        .put_object()
        .bucket(&w.bucket)
        .key(upload_record_key(w, bucket, name, generation))
        .body(record.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_left_without_progress_is_started_again() {
    require_rig!();
    let (w, gcs, bucket, sub) = world("stalled", &[("PART_TASK_BYTES", "5242880")]).await;
    let data = bytes(12 * MIB, 9);
    let resource = gcs.upload(&bucket, "big.bin", &data, json!({})).await;
    let generation = resource["generation"].as_str().unwrap().to_owned();
    // What a replicate cut short between recording its upload and
    // publishing the parts leaves: an upload with no part, recorded two
    // hours ago.
    let lost = open_upload(&w, "big.bin").await;
    record_upload(&w, &bucket, "big.bin", &generation, &lost, 7200).await;

    let server = Server::start(&w.env).await;
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "big.bin",
                     "generation": generation});
    let (s, v) = command(&w, &server, &cmd, "r-1").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("parts_published")),
        "{v}"
    );
    assert_ne!(v["upload_id"], json!(lost));
    let uploads = w.uploads_left().await;
    assert_eq!(uploads.len(), 1, "the lost upload is aborted: {uploads:?}");
    // The new upload, delivered again, is in progress.
    let (s, again) = command(&w, &server, &cmd, "r-2").await;
    assert_eq!(
        (s, again["status"].as_str()),
        (200, Some("upload_in_progress")),
        "{again}"
    );
    for (i, p) in pull_all(&w, &sub).await.iter().enumerate() {
        let (s, v) = task(&w, &server, p, &format!("part-{i}")).await;
        assert!(s < 300, "{s} {v}");
    }
    assert_eq!(w.stored("big.bin").await.as_deref(), Some(&data[..]));
    w.assert_no_upload_left().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_tasks_are_not_yet_published_is_not_started_twice() {
    require_rig!();
    let (w, gcs, bucket, _sub) = world("starting", &[("PART_TASK_BYTES", "5242880")]).await;
    let resource = gcs
        .upload(&bucket, "big.bin", &bytes(12 * MIB, 4), json!({}))
        .await;
    let generation = resource["generation"].as_str().unwrap().to_owned();
    // Another delivery created the upload and is publishing its tasks.
    let theirs = open_upload(&w, "big.bin").await;
    record_upload(&w, &bucket, "big.bin", &generation, &theirs, 0).await;
    let server = Server::start(&w.env).await;
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "big.bin",
                     "generation": generation});
    let (s, v) = command(&w, &server, &cmd, "r-1").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("upload_starting")),
        "{v}"
    );
    assert_eq!(w.uploads_left().await.len(), 1);
    // The same, left past any request's life: that delivery ended half-way.
    record_upload(&w, &bucket, "big.bin", &generation, &theirs, 3600).await;
    let (s, v) = command(&w, &server, &cmd, "r-2").await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("parts_published")),
        "{v}"
    );
    assert_ne!(v["upload_id"], json!(theirs));
    assert_eq!(w.uploads_left().await.len(), 1, "theirs is aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_cut_short_by_the_deadline_leaves_no_upload() {
    require_rig!();
    let (w, gcs, bucket, sub) = world(
        "cutshort",
        &[
            ("PART_TASK_BYTES", "5242880"),
            ("REQUEST_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let resource = gcs
        .upload(&bucket, "big.bin", &bytes(12 * MIB, 6), json!({}))
        .await;
    let server = std::sync::Arc::new(Server::start(&w.env).await);
    let w = std::sync::Arc::new(w);
    let cmd = json!({"op": "replicate", "bucket": bucket, "name": "big.bin",
                     "generation": resource["generation"]});
    // The upload is created; the write of its record is held past the
    // request's deadline.
    let mut hold = w.proxy.hold_next("PutObject");
    let pending = {
        let (w, server) = (w.clone(), server.clone());
        tokio::spawn(async move { command(&w, &server, &cmd, "r-1").await })
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), hold.arrived())
        .await
        .expect("the record write reached S3");
    let (s, v) = pending.await.unwrap();
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("timeout")),
        "{v}"
    );
    hold.release();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !w.uploads_left().await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-short start left its upload:\n{}",
            server.stdout.text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pull_all(&w, &sub).await.is_empty(), "no part task went out");
}
