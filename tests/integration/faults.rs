//! Redelivery under faults, end to end through the Pub/Sub emulator: 500
//! put commands pushed to `/pubsub` while a fifth of the S3 `PutObject` and
//! STS `AssumeRoleWithWebIdentity` calls fail at the fault proxy (503, 500,
//! dropped connections, delays) and the metadata server fails the first
//! identity-token requests. Every transient failure must be answered 503 or
//! 429 (so Pub/Sub redelivers) and never 500; in the end every message's
//! object is in S3 with exactly its bytes. The same for replication: Cloud
//! Storage notifications pushed while a fifth of the Cloud Storage reads
//! and of the S3 uploads fail, some halfway through the body.

use crate::common;
use crate::common::require_rig;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::metadata::{Endpoint, Fault};
use bridge_testkit::{FaultPlan, FaultProxy, ProxyFault};
use common::gcs::Gcs;
use common::pubsub::{pubsub_statuses, PushTopic};
use common::*;
use serde_json::json;

const MESSAGES: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_puts_survive_s3_sts_and_metadata_faults() {
    require_rig!();
    let mut w = World::new("faults").await;
    w.set("AUTH_MODE", "none");
    // The first two identity-token requests fail: one 503, one dropped.
    w.metadata
        .push_fault(Endpoint::Identity, Fault::Status(503));
    w.metadata.push_fault(Endpoint::Identity, Fault::Drop);
    // The first credential load meets an STS that is down for all of its
    // attempts (the load is single-flight, so the four faults are its own):
    // the deliveries waiting for it answer 503 and are redelivered, whatever
    // the random faults below happen to hit.
    for _ in 0..4 {
        w.proxy
            .push_fault("AssumeRoleWithWebIdentity", ProxyFault::Status(503));
    }
    w.proxy.set_faults(FaultPlan {
        ops: Some(vec![
            "PutObject".to_owned(),
            "AssumeRoleWithWebIdentity".to_owned(),
        ]),
        rate: 0.2,
        kinds: vec![
            ProxyFault::Status(503),
            ProxyFault::Status(500),
            ProxyFault::Drop,
            ProxyFault::Delay(Duration::from_millis(200)),
        ],
        max: None,
        seed: 0x5eed_f417,
    });

    let server = Server::start(&w.env).await;
    let topic = PushTopic::create(&w, "faults", &format!("{}/pubsub", server.url)).await;

    let mut expected = BTreeMap::new();
    let mut messages = Vec::new();
    for i in 0..MESSAGES {
        let key = format!("faults/m{i:04}.bin");
        // Distinct bodies of varied length, with bytes outside ASCII.
        let body: Vec<u8> = (0..(16 + (i * 37) % 3000))
            .map(|j| ((i * 131 + j * 7) % 251) as u8)
            .collect();
        let cmd = json!({
            "op": "put",
            "key": key,
            "body_base64": STANDARD.encode(&body),
            "content_type": "application/octet-stream"
        });
        messages.push(json!({
            "data": STANDARD.encode(cmd.to_string()),
            "attributes": {"n": i.to_string()}
        }));
        expected.insert(w.full(&key), body);
    }
    for chunk in messages.chunks(100) {
        topic.publish(chunk).await;
    }

    let mut landed = objects_landed(
        &w.bucket,
        &w.prefix,
        MESSAGES,
        Duration::from_secs(120),
        || {
            format!(
                "faults injected {}; answers {:?}",
                w.proxy.faults_injected(),
                tally(&pubsub_statuses(&server)),
            )
        },
    )
    .await;
    landed.sort();
    assert_eq!(landed, expected.keys().cloned().collect::<Vec<_>>());
    for (key, body) in &expected {
        let got = admin_get(&w.bucket, key).await;
        assert!(
            got.as_ref() == Some(body),
            "{key}: {} bytes stored, {} expected",
            got.map_or(0, |b| b.len()),
            body.len()
        );
    }

    let statuses = pubsub_statuses(&server);
    let counts = tally(&statuses);
    eprintln!(
        "faults injected {}; proxy counts {:?}; /pubsub answers {counts:?}; metadata identity calls {}",
        w.proxy.faults_injected(),
        w.proxy.counts(),
        w.metadata.calls(Endpoint::Identity)
    );
    assert!(w.proxy.faults_injected() > 0, "no fault was injected");
    assert!(
        w.metadata.calls(Endpoint::Identity) >= 3,
        "the metadata faults were not met: {} identity calls",
        w.metadata.calls(Endpoint::Identity)
    );
    assert!(
        statuses.len() >= MESSAGES,
        "{} pushes logged",
        statuses.len()
    );
    assert_eq!(
        counts.get(&500),
        None,
        "a transient fault was answered 500: {counts:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| (200..300).contains(s) || *s == 503 || *s == 429),
        "answers other than 2xx, 503 and 429: {counts:?}"
    );
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "no delivery was answered 503, so nothing was redelivered: {counts:?}"
    );
    let acked = statuses.iter().filter(|s| (200..300).contains(*s)).count();
    assert!(
        acked >= MESSAGES,
        "{acked} pushes acknowledged for {MESSAGES} messages"
    );
}

fn tally(statuses: &[u64]) -> HashMap<u64, usize> {
    let mut m = HashMap::new();
    for s in statuses {
        *m.entry(*s).or_insert(0) += 1;
    }
    m
}

/// Objects replicated under faults: small ones in one streamed PUT, one past
/// 64 MiB in parts.
const OBJECTS: usize = 40;
const LARGE: usize = 72 * 1024 * 1024;

fn object_bytes(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_survives_faults_mid_stream() {
    require_rig!();
    let mut w = World::new("replfaults").await;
    w.set("AUTH_MODE", "none");
    let gcs = Gcs::new(&w.rig);
    let bucket = gcs.bucket("faults").await;
    w.set("GCS_SOURCE_BUCKETS", &bucket);

    let mut expected = BTreeMap::new();
    let mut messages = Vec::new();
    for i in 0..=OBJECTS {
        let len = if i == OBJECTS {
            LARGE
        } else {
            1024 + (i * 52_433) % (2 * 1024 * 1024)
        };
        let name = format!("src/o{i:03}.bin");
        let data = object_bytes(i, len);
        let obj = gcs
            .upload(
                &bucket,
                &name,
                &data,
                json!({"contentType": "application/octet-stream"}),
            )
            .await;
        let generation = obj["generation"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| obj["generation"].to_string());
        messages.push(json!({
            "data": STANDARD.encode(obj.to_string()),
            "attributes": {
                "eventType": "OBJECT_FINALIZE",
                "payloadFormat": "JSON_API_V1",
                "bucketId": bucket,
                "objectId": name,
                "objectGeneration": generation,
            }
        }));
        expected.insert(w.full(&name), data);
    }

    // A fifth of Cloud Storage requests fail, some after half the body.
    let gcs_host = w.rig["STORAGE_EMULATOR_HOST"].clone();
    let gcs_proxy = FaultProxy::start(&gcs_host).await;
    gcs_proxy.set_faults(FaultPlan {
        ops: None,
        rate: 0.2,
        kinds: vec![
            ProxyFault::DropMidBody,
            ProxyFault::Status(503),
            ProxyFault::Drop,
        ],
        max: None,
        seed: 0x6c5_fa17,
    });
    w.set("STORAGE_EMULATOR_HOST", &gcs_proxy.url());
    // And a fifth of the S3 writes.
    w.proxy.set_faults(FaultPlan {
        ops: Some(vec![
            "PutObject".to_owned(),
            "UploadPart".to_owned(),
            "CompleteMultipartUpload".to_owned(),
        ]),
        rate: 0.2,
        kinds: vec![
            ProxyFault::Status(503),
            ProxyFault::Drop,
            ProxyFault::DropMidBody,
        ],
        max: None,
        seed: 0x53_fa17,
    });

    let server = Server::start(&w.env).await;
    let topic = PushTopic::create(&w, "replfaults", &format!("{}/pubsub", server.url)).await;
    topic.publish(&messages).await;

    let pending = std::sync::Mutex::new(expected.keys().cloned().collect::<Vec<String>>());
    eventually(
        Duration::from_secs(180),
        || {
            format!(
                "{} of {} replicas missing or wrong; answers {:?}",
                pending.lock().unwrap().len(),
                expected.len(),
                tally(&pubsub_statuses(&server)),
            )
        },
        || async {
            let listed = admin_list(&w.bucket, &w.prefix).await;
            let mut still = Vec::new();
            let keys = pending.lock().unwrap().clone();
            for key in keys {
                if !listed.contains(&key)
                    || admin_get(&w.bucket, &key).await.as_ref() != expected.get(&key)
                {
                    still.push(key);
                }
            }
            let done = still.is_empty();
            *pending.lock().unwrap() = still;
            done.then_some(())
        },
    )
    .await;

    let counts = tally(&pubsub_statuses(&server));
    eprintln!(
        "Cloud Storage faults {}; S3 faults {}; S3 counts {:?}; /pubsub answers {counts:?}",
        gcs_proxy.faults_injected(),
        w.proxy.faults_injected(),
        w.proxy.counts()
    );
    assert!(
        gcs_proxy.faults_injected() > 0,
        "no Cloud Storage fault was injected"
    );
    assert!(w.proxy.faults_injected() > 0, "no S3 fault was injected");
    assert_eq!(
        counts.get(&500),
        None,
        "a transient fault was answered 500: {counts:?}"
    );
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "no delivery was answered 503, so nothing was redelivered: {counts:?}"
    );
    assert!(
        counts
            .keys()
            .all(|s| (200..300).contains(s) || *s == 503 || *s == 429),
        "answers other than 2xx, 503 and 429: {counts:?}"
    );
    // Every replica carries its generation, and no upload was left behind.
    for key in expected.keys() {
        let head = admin_head(&w.bucket, key).await;
        assert!(
            head.metadata()
                .and_then(|m| m.get("goog-generation"))
                .is_some(),
            "{key} has no goog-generation"
        );
    }
    w.assert_no_upload_left().await;
}
