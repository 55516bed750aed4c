//! Sync and part tasks (SPEC §10) on the rig: fake-gcs-server behind a
//! counting proxy, the Pub/Sub emulator pushing the commands topic with the
//! subscription's OIDC token (the test kit's push shim) to the service's
//! instances behind the test kit's Cloud Run front end, moto behind the
//! fault proxy (tests/integration/common/deployment.rs).

use crate::common;
use crate::common::require_rig;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::{FaultPlan, ProxyFault};
use common::deployment::{bytes, cli, gzip_stored, Deployment, Push};
use common::pubsub::{pull_all, pull_topic};
use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

const OBJECTS: usize = 2000;
const MIB: usize = 1024 * 1024;

fn object_name(i: usize) -> String {
    match i % 5 {
        0 => format!("root-{i:04}"),
        1 => format!("a/{}/obj-{i:04}.bin", i % 7),
        2 => format!("a/{}/b/{}/obj-{i:04}", i % 7, i % 3),
        3 => format!("logs/2026/{:02}/{i:04}.log", i % 12),
        _ => format!("z/deep/er/and/deeper/{i:04}"),
    }
}

/// 0 B to 3 MiB, mostly small: 10 objects of 3 MiB, 90 of 64–300 KiB.
fn object_size(i: usize) -> usize {
    if i == 1 {
        0
    } else if i % 200 == 3 {
        3 * MIB
    } else if i % 20 == 7 {
        64 * 1024 + i * 113
    } else {
        (i * 7919) % 4096
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_copies_two_thousand_objects_then_costs_list_calls_only_and_deletes_orphans() {
    require_rig!();
    // The emulator's own push subscription delivers every command here (one
    // at a time); the part-task test below delivers several at once, as
    // Pub/Sub does, through a pull subscription and the push shim.
    let d = Deployment::start_pushing(
        "sync2000",
        1,
        &[("SYNC_DELETE", "true")],
        None,
        Push::Emulator,
    )
    .await;

    // 2,000 objects in nested prefixes, some gzip-encoded.
    let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let uploads = futures_util::stream::iter((0..OBJECTS).map(|i| {
        let name = object_name(i);
        let raw = bytes(object_size(i), i as u64);
        let (data, resource) = if i % 25 == 4 {
            (
                gzip_stored(&raw),
                json!({"contentType": "text/plain", "contentEncoding": "gzip"}),
            )
        } else {
            (raw, json!({"contentType": "application/octet-stream"}))
        };
        let gcs = &d.gcs;
        let bucket = &d.bucket;
        async move {
            gcs.upload(bucket, &name, &data, resource).await;
            (name, data)
        }
    }))
    .buffer_unordered(32)
    .collect::<Vec<_>>()
    .await;
    expected.extend(uploads);
    assert_eq!(expected.len(), OBJECTS);

    // The dry run plans every object and publishes nothing.
    let (dry_topic, dry_sub) = pull_topic(&d.w, "dry").await;
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}", d.bucket), "--dry-run"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let copies = out.lines().filter(|l| l.starts_with("copy gs://")).count();
    assert_eq!(copies, OBJECTS, "{err}");
    let totals: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(totals["copy"], OBJECTS);
    // Every object is under SYNC_INLINE_BYTES: the pages would copy them.
    assert_eq!(totals["copy_inline"], OBJECTS);
    assert_eq!(totals["published"], 0);
    assert_eq!(
        totals["copy_bytes"],
        expected.values().map(Vec::len).sum::<usize>()
    );
    assert!(pull_all(&d.w, &dry_sub).await.is_empty());
    assert!(d.replicas().await.is_empty());

    // One command syncs it all.
    let first = d.post_sync(json!({ "bucket": d.bucket })).await;
    assert_eq!(first["page"], 1);
    assert_eq!(first["next_page"], true);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = d.replicas().await.len();
        if n == OBJECTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {OBJECTS} replicas:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pages = d.sync_done(0).await;
    d.quiet().await;
    let page_numbers: BTreeSet<u64> = pages.iter().filter_map(|p| p["page"].as_u64()).collect();
    assert!(
        page_numbers.len() <= OBJECTS.div_ceil(1000) + 1,
        "{page_numbers:?}"
    );
    let s3 = admin_s3();
    futures_util::stream::iter(&expected)
        .for_each_concurrent(16, |(name, data)| {
            let s3 = &s3;
            let (bucket, key) = (&d.w.bucket, d.w.full(name));
            async move {
                let got = s3.get_object().bucket(bucket).key(&key).send().await;
                let got = got.unwrap_or_else(|e| panic!("{name}: {e:?}"));
                let got = got.body.collect().await.unwrap().into_bytes();
                assert_eq!(&got[..], data.as_slice(), "{name}");
            }
        })
        .await;
    // One log line per completed object.
    assert!(d.logged("replicated").len() >= OBJECTS);

    // A bucket in sync costs list calls only, and per page the two writes of
    // its claim (started, done).
    d.w.proxy.reset_counts();
    d.gcs_proxy.reset_counts();
    let pages_before = d.logged("sync page").len();
    let again = d.post_sync(json!({ "bucket": d.bucket })).await;
    assert_eq!(again["replicate"], 0, "{again}");
    let pages = d.sync_done(pages_before).await;
    d.quiet().await;
    assert!(pages.iter().all(|p| p["replicate"] == 0), "{pages:?}");
    let s3 = d.w.proxy.counts();
    let s3_object_calls: usize = s3
        .iter()
        .filter(|(op, _)| !op.starts_with("S3:") && *op != "ListObjectsV2")
        .filter(|(op, _)| !op.contains("Role") && *op != "GetCallerIdentity")
        .filter(|(op, _)| *op != "PutObject")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(s3_object_calls, 0, "S3 calls: {s3:?}");
    assert_eq!(
        s3.get("PutObject").copied().unwrap_or(0),
        2 * pages.len(),
        "S3 calls: {s3:?}"
    );
    assert!(s3.get("ListObjectsV2").copied().unwrap_or(0) >= 1, "{s3:?}");
    let gcs = d.gcs_proxy.counts();
    assert_eq!(
        d.gcs_proxy.total(),
        gcs.get("GcsListObjects").copied().unwrap_or(0),
        "Cloud Storage calls: {gcs:?}"
    );

    // 100 objects deleted in Cloud Storage: a delete sync removes exactly
    // their replicas.
    let deleted: BTreeSet<String> = expected.keys().step_by(20).cloned().collect();
    assert_eq!(deleted.len(), 100);
    futures_util::stream::iter(deleted.iter())
        .for_each_concurrent(16, |n| d.gcs.delete(&d.bucket, n))
        .await;
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}", d.bucket), "--delete", "--dry-run"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let planned: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("delete s3://"))
        .map(|k| k[d.w.bucket.len() + 1 + d.w.prefix.len()..].to_owned())
        .collect();
    assert_eq!(planned, deleted);
    assert!(pull_all(&d.w, &dry_sub).await.is_empty());

    let pages_before = d.logged("sync page").len();
    d.post_sync(json!({ "bucket": d.bucket, "delete": true }))
        .await;
    let pages = d.sync_done(pages_before).await;
    let deletes: u64 = pages
        .iter()
        .filter_map(|p| p["delete_replicas"].as_u64())
        .sum();
    assert!(deletes >= 100, "{pages:?}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = d.replicas().await;
        if left.len() == OBJECTS - 100 {
            let want: BTreeSet<String> = expected
                .keys()
                .filter(|k| !deleted.contains(*k))
                .cloned()
                .collect();
            assert_eq!(left, want);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} replicas left:\n{}",
            left.len(),
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Without --dry-run the command line publishes the first page's command.
    let (ok, out, err) = cli(
        &d,
        &[&format!("gs://{}/a/", d.bucket), "--delete"],
        &dry_topic,
    );
    assert!(ok, "{out}\n{err}");
    let published = pull_all(&d.w, &dry_sub).await;
    assert_eq!(
        published,
        vec![json!({"op": "sync", "bucket": d.bucket, "prefix": "a/", "delete": true})]
    );
    assert!(d.task_statuses().iter().all(|s| *s < 300));
    assert!(d.push.statuses().iter().all(|s| *s < 300));
    assert_eq!(d.front.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_refuses_buckets_outside_the_allow_list_and_bad_tokens() {
    require_rig!();
    let d = Deployment::start("syncrefuse", 1, &[]).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/sync", d.front.url()))
        .bearer_auth(d.w.caller_token())
        .json(&json!({ "bucket": "not-allowed-bucket" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "source_bucket_not_allowed");
    for (body, status, code) in [
        (json!({ "bucket": "Bad_Bucket!" }), 400, "invalid_bucket"),
        // A page of a run is the service's own: never at an outside door.
        (
            json!({ "bucket": d.bucket, "page_token": "garbage" }),
            403,
            "op_not_allowed",
        ),
        (
            json!({ "bucket": d.bucket, "prefix": "../x" }),
            400,
            "invalid_key",
        ),
        (
            json!({ "bucket": d.bucket, "prefix": ".gcp-aws-bridge/" }),
            400,
            "invalid_key",
        ),
        (
            json!({ "bucket": d.bucket, "extra": 1 }),
            400,
            "invalid_json",
        ),
        // SYNC_DELETE is not set.
        (
            json!({ "bucket": d.bucket, "delete": true }),
            403,
            "op_not_allowed",
        ),
    ] {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", d.front.url()))
            .bearer_auth(d.w.caller_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    // Nothing was listed for a refused request.
    assert_eq!(d.gcs_proxy.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_640_mib_object_in_part_tasks_over_two_instances_with_faults_and_a_kill() {
    require_rig!();
    // Room for two 64 MiB parts per instance; the deliveries pushed at an
    // instance beyond that wait for the budget.
    let budget = 128 * MIB;
    let d = Deployment::start(
        "parts640",
        2,
        &[
            ("PART_TASK_BYTES", &(64 * MIB).to_string()),
            ("BUFFER_BUDGET_BYTES", &budget.to_string()),
        ],
    )
    .await;
    let pids = d.front.instance_pids();
    assert_eq!(pids.len(), 2);
    let size = 640 * MIB;
    let data = bytes(size, 640);
    let obj = d
        .gcs
        .upload(
            &d.bucket,
            "big/object.bin",
            &data,
            json!({"contentType": "application/octet-stream", "metadata": {"team": "data"}}),
        )
        .await;
    let gcs_crc = obj["crc32c"].as_str().unwrap().to_owned();

    // 20 % of ranged reads and of UploadPart calls fail.
    d.gcs_proxy.set_faults(FaultPlan {
        ops: Some(vec!["GcsRangedRead".into()]),
        rate: 0.2,
        kinds: vec![ProxyFault::Status(503)],
        seed: 15,
        ..FaultPlan::default()
    });
    d.w.proxy.set_faults(FaultPlan {
        ops: Some(vec!["UploadPart".into()]),
        rate: 0.2,
        kinds: vec![ProxyFault::Status(503)],
        seed: 16,
        ..FaultPlan::default()
    });
    let cmd = json!({"op": "replicate", "bucket": d.bucket, "name": "big/object.bin"});
    d.topic
        .publish(&[json!({ "data": STANDARD.encode(cmd.to_string()) })])
        .await;

    // One instance is killed once parts are under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.w.proxy.count("UploadPart") < 3 {
        assert!(Instant::now() < deadline, "no parts:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dispatched_before_kill = d.front.requests_per_instance();
    let peak_before_kill: Vec<usize> = pids.iter().map(|(_, pid)| peak_rss(*pid)).collect();
    let killed = d
        .front
        .kill_instance(1)
        .await
        .expect("instance 1 is running");
    assert!(killed.killed);
    assert_eq!(d.front.instance_count(), 1);

    let key = d.w.full("big/object.bin");
    let deadline = Instant::now() + Duration::from_secs(300);
    let head = loop {
        match admin_s3()
            .head_object()
            .bucket(&d.w.bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(h) => break h,
            Err(_) => {
                assert!(Instant::now() < deadline, "no replica:\n{}", d.log_text());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(head.content_length(), Some(size as i64));
    assert_eq!(head.checksum_crc32_c(), Some(gcs_crc.as_str()));
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("team"))
            .map(String::as_str),
        Some("data")
    );
    let got = admin_get(&d.w.bucket, &key).await.unwrap();
    use sha2::Digest;
    assert_eq!(
        sha2::Sha256::digest(&got),
        sha2::Sha256::digest(&data),
        "replica differs"
    );
    drop(got);

    // Each instance stayed within its buffer budget: its peak RSS is the
    // budget plus what the process holds anyway, far from a part buffer per
    // delivery in flight.
    let survivor = pids.iter().find(|(n, _)| *n != 1).unwrap().1;
    let peaks = [
        peak_before_kill[0].max(peak_before_kill[1]),
        peak_rss(survivor),
    ];
    eprintln!(
        "peak RSS (MiB): instances before the kill {:?}, the survivor at the end {}",
        peak_before_kill.iter().map(|p| p / MIB).collect::<Vec<_>>(),
        peaks[1] / MIB
    );
    for peak in peaks {
        assert!(
            peak < budget + 128 * MIB,
            "an instance's peak RSS is {} MiB, over the budget of {} MiB plus 128 MiB",
            peak / MIB,
            budget / MIB
        );
    }

    // Both instances handled commands, and faults were injected on both sides.
    assert!(
        dispatched_before_kill.iter().all(|n| *n > 0),
        "{dispatched_before_kill:?}"
    );
    assert!(d.w.proxy.faults_injected() > 0);
    assert!(d.gcs_proxy.faults_injected() > 0);

    // No upload is left behind.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let uploads = admin_s3()
            .list_multipart_uploads()
            .bucket(&d.w.bucket)
            .prefix(&d.w.prefix)
            .send()
            .await
            .unwrap();
        if uploads.uploads().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads left: {:?}",
            uploads.uploads()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes `body` at `name`'s key in S3 as the replica of generation
/// `generation` of `gs://d.bucket/name`, past the service (admin client).
async fn put_replica(d: &Deployment, name: &str, body: &[u8], generation: i64) {
    admin_s3()
        .put_object()
        .bucket(&d.w.bucket)
        .key(d.w.full(name))
        .metadata("goog-generation", generation.to_string())
        .metadata("goog-bucket", &d.bucket)
        .body(body.to_vec().into())
        .send()
        .await
        .unwrap();
}

fn generation_of(obj: &Value) -> i64 {
    match &obj["generation"] {
        Value::String(g) => g.parse().unwrap(),
        g => g.as_i64().unwrap(),
    }
}

async fn publish_replicate(d: &Deployment, name: &str) {
    let cmd = json!({"op": "replicate", "bucket": d.bucket, "name": name});
    d.topic
        .publish(&[json!({ "data": STANDARD.encode(cmd.to_string()) })])
        .await;
}

async fn uploads_left(d: &Deployment) -> usize {
    admin_s3()
        .list_multipart_uploads()
        .bucket(&d.w.bucket)
        .prefix(&d.w.prefix)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

/// Waits until `done` holds, at most a minute.
async fn until<F: std::future::Future<Output = bool>>(
    d: &Deployment,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets the next completion reach S3 only after `interfering` was written
/// at the key as a newer replica; then waits until the completion, refused,
/// was decided again (the part task finds the newer replica and leaves it)
/// and no upload is left.
async fn complete_after_a_newer_write(
    d: &Deployment,
    name: &str,
    generation: i64,
    interfering: &[u8],
) {
    let kept_before = d.logged(UP_TO_DATE).len();
    let mut hold = d.w.proxy.hold_next("CompleteMultipartUpload");
    publish_replicate(d, name).await;
    tokio::time::timeout(Duration::from_secs(60), hold.arrived())
        .await
        .unwrap_or_else(|_| panic!("no completion:\n{}", d.log_text()));
    put_replica(d, name, interfering, generation + 1).await;
    hold.release();
    until(
        d,
        "the refused completion was not decided again",
        || async { d.logged(UP_TO_DATE).len() > kept_before },
    )
    .await;
    until(d, "an upload was left behind", || async {
        uploads_left(d).await == 0
    })
    .await;
}

const UP_TO_DATE: &str = "replica already holds this generation or a newer one";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_task_completion_is_conditional_on_what_the_check_saw() {
    require_rig!();
    // 6 MiB with PART_TASK_BYTES at 5 MiB: one part task, so exactly one
    // completion per upload.
    let d = Deployment::start(
        "partsrace",
        1,
        &[("PART_TASK_BYTES", &(5 * MIB).to_string())],
    )
    .await;
    let data = bytes(6 * MIB, 61);
    let mut generations = Vec::new();
    for name in ["race/new.bin", "race/old.bin"] {
        let obj = d
            .gcs
            .upload(
                &d.bucket,
                name,
                &data,
                json!({"contentType": "application/octet-stream"}),
            )
            .await;
        generations.push(generation_of(&obj));
    }

    // No replica when the replicate command checked: the completion is
    // `If-None-Match: *`, so a replica written meanwhile is not overwritten;
    // the part command, refused, finds the newer replica and leaves it.
    complete_after_a_newer_write(
        &d,
        "race/new.bin",
        generations[0],
        b"newer, written meanwhile",
    )
    .await;
    assert_eq!(
        admin_get(&d.w.bucket, &d.w.full("race/new.bin"))
            .await
            .as_deref(),
        Some(&b"newer, written meanwhile"[..])
    );

    // An older replica when the check ran: the completion replaces exactly
    // it (`If-Match` on its ETag) ...
    put_replica(&d, "race/old.bin", b"generation 1", 1).await;
    publish_replicate(&d, "race/old.bin").await;
    until(&d, "the older replica was not replaced", || async {
        admin_get(&d.w.bucket, &d.w.full("race/old.bin"))
            .await
            .as_deref()
            == Some(&data[..])
    })
    .await;
    // ... and not another object written after the check.
    let data2 = bytes(6 * MIB, 62);
    let obj = d
        .gcs
        .upload(
            &d.bucket,
            "race/old.bin",
            &data2,
            json!({"contentType": "application/octet-stream"}),
        )
        .await;
    complete_after_a_newer_write(
        &d,
        "race/old.bin",
        generation_of(&obj),
        b"newest, written meanwhile",
    )
    .await;
    assert_eq!(
        admin_get(&d.w.bucket, &d.w.full("race/old.bin"))
            .await
            .as_deref(),
        Some(&b"newest, written meanwhile"[..])
    );

    // Each refused completion found the newer replica at once: acknowledged,
    // nothing published again.
    assert!(
        d.task_statuses().iter().all(|s| *s == 200),
        "{:?}",
        d.task_statuses()
    );

    // An object that is no replica written meanwhile: the refused completion
    // answers 503, publishes the replicate again (one more restart), and that
    // one replaces the object, conditional on what it checked.
    let data3 = bytes(6 * MIB, 63);
    d.gcs
        .upload(
            &d.bucket,
            "race/user.bin",
            &data3,
            json!({"contentType": "application/octet-stream"}),
        )
        .await;
    let mut hold = d.w.proxy.hold_next("CompleteMultipartUpload");
    publish_replicate(&d, "race/user.bin").await;
    tokio::time::timeout(Duration::from_secs(60), hold.arrived())
        .await
        .unwrap_or_else(|_| panic!("no completion:\n{}", d.log_text()));
    admin_s3()
        .put_object()
        .bucket(&d.w.bucket)
        .key(d.w.full("race/user.bin"))
        .body(b"a user's object".to_vec().into())
        .send()
        .await
        .unwrap();
    hold.release();
    until(
        &d,
        "the replicate published again did not replace it",
        || async {
            admin_get(&d.w.bucket, &d.w.full("race/user.bin"))
                .await
                .as_deref()
                == Some(&data3[..])
        },
    )
    .await;
    until(&d, "an upload was left behind", || async {
        uploads_left(&d).await == 0
    })
    .await;
    let s503 = d.task_statuses().iter().filter(|s| **s == 503).count();
    assert_eq!(s503, 1, "{:?}", d.task_statuses());
    assert!(d.push.statuses().contains(&503));
    assert_eq!(d.front.refused(), 0);
}

/// A process's peak resident set (VmHWM), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}
