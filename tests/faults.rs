//! Redelivery under faults, end to end through the Pub/Sub emulator: 500
//! put commands pushed to `/pubsub` while a fifth of the S3 `PutObject` and
//! STS `AssumeRoleWithWebIdentity` calls fail at the fault proxy (503, 500,
//! dropped connections, delays) and the metadata server fails the first
//! identity-token requests. Every transient failure must be answered 503 or
//! 429 (so Pub/Sub redelivers) and never 500; in the end every message's
//! object is in S3 with exactly its bytes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_testkit::metadata::{Endpoint, Fault};
use bridge_testkit::{FaultPlan, ProxyFault};
use common::*;
use serde_json::json;

const MESSAGES: usize = 500;

/// Deletes the subscription and topic when the test ends, pass or fail, so
/// the emulator stops pushing to a server that is gone.
struct Cleanup {
    base: String,
    topic: String,
    subscription: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let urls = [
            format!("{}/{}", self.base, self.subscription),
            format!("{}/{}", self.base, self.topic),
        ];
        // Drop cannot await: best-effort deletes on a thread of their own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let c = reqwest::Client::new();
                for u in urls {
                    let _ = c.delete(u).timeout(Duration::from_secs(5)).send().await;
                }
            });
        })
        .join();
    }
}

/// Statuses of the service's `/pubsub` answers, from its JSON request log.
fn pubsub_statuses(server: &Server) -> Vec<u64> {
    server
        .stdout
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["httpRequest"]["requestUrl"].as_str() == Some("/pubsub"))
        .filter_map(|v| v["httpRequest"]["status"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_puts_survive_s3_sts_and_metadata_faults() {
    let mut w = World::new("faults").await;
    w.set("AUTH_MODE", "none");
    let host = w
        .rig
        .get("PUBSUB_EMULATOR_HOST")
        .cloned()
        .expect("PUBSUB_EMULATOR_HOST in rig.env: scripts/rig-up.sh pubsub");
    let project = w
        .rig
        .get("RIG_PUBSUB_PROJECT")
        .cloned()
        .unwrap_or("bridge-test".into());

    // The first two identity-token requests fail: one 503, one dropped.
    w.metadata
        .push_fault(Endpoint::Identity, Fault::Status(503));
    w.metadata.push_fault(Endpoint::Identity, Fault::Drop);
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
    let client = reqwest::Client::new();
    let base = format!("http://{host}/v1");
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("projects/{project}/topics/bridge-faults-{n}");
    let subscription = format!("projects/{project}/subscriptions/bridge-faults-push-{n}");
    let _cleanup = Cleanup {
        base: base.clone(),
        topic: topic.clone(),
        subscription: subscription.clone(),
    };

    let r = client
        .put(format!("{base}/{topic}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "create topic: {}",
        r.text().await.unwrap()
    );
    let r = client
        .put(format!("{base}/{subscription}"))
        .json(&json!({
            "topic": topic,
            "pushConfig": {"pushEndpoint": format!("{}/pubsub", server.url)},
            "ackDeadlineSeconds": 10,
            "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "5s"}
        }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "create subscription: {}",
        r.text().await.unwrap()
    );

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
        let r = client
            .post(format!("{base}/{topic}:publish"))
            .json(&json!({ "messages": chunk }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(status.is_success(), "publish: {v}");
        assert_eq!(v["messageIds"].as_array().map(Vec::len), Some(chunk.len()));
    }

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut landed = Vec::new();
    while landed.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} of {MESSAGES} objects landed; faults injected {}; answers {:?}",
            landed.len(),
            w.proxy.faults_injected(),
            tally(&pubsub_statuses(&server)),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        landed = admin_list(&w.bucket, &w.prefix).await;
    }
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
