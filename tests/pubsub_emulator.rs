//! Pub/Sub push through the official Pub/Sub emulator: a topic, a push
//! subscription aimed at the service's `/pubsub`, and 50 published put
//! commands that must all land in S3 with their bytes. The emulator sends no
//! Authorization header, so the service runs with `AUTH_MODE=none`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use serde_json::json;

const MESSAGES: usize = 50;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pushed_puts_all_land() {
    let mut w = World::new("emulator").await;
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
    let server = Server::start(&w.env).await;
    let client = reqwest::Client::new();
    let base = format!("http://{host}/v1");
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("projects/{project}/topics/bridge-cmds-{n}");
    let subscription = format!("projects/{project}/subscriptions/bridge-push-{n}");
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
            "ackDeadlineSeconds": 10
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
        let key = format!("pushed/m{i:03}.txt");
        let body = format!("message {i} of {MESSAGES}: {}", "x".repeat(i));
        let cmd = json!({"op": "put", "key": key, "body": body, "content_type": "text/plain"});
        messages.push(json!({
            "data": STANDARD.encode(cmd.to_string()),
            "attributes": {"n": i.to_string()}
        }));
        expected.insert(w.full(&key), body.into_bytes());
    }
    // Two publish calls, as a publisher batching would make.
    for chunk in messages.chunks(MESSAGES / 2) {
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

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut landed = Vec::new();
    while landed.len() < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} of {MESSAGES} objects landed; service log:\n{}",
            landed.len(),
            server.stdout.text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        landed = admin_list(&w.bucket, &w.prefix).await;
    }
    landed.sort();
    assert_eq!(landed, expected.keys().cloned().collect::<Vec<_>>());
    for (key, body) in &expected {
        assert_eq!(
            admin_get(&w.bucket, key).await.as_ref(),
            Some(body),
            "{key}"
        );
    }
    // Every push was answered 2xx (nothing was redelivered for a failure).
    let served: Vec<serde_json::Value> = server
        .stdout
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["httpRequest"]["requestUrl"].as_str() == Some("/pubsub"))
        .collect();
    assert!(served.len() >= MESSAGES, "{} pushes logged", served.len());
    assert!(
        served.iter().all(|v| v["httpRequest"]["status"] == 200),
        "a push was not acknowledged: {served:#?}"
    );
}
