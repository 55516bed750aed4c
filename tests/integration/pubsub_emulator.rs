//! Pub/Sub push through the official Pub/Sub emulator: a topic, a push
//! subscription aimed at the service's `/pubsub`, and 50 published put
//! commands that must all land in S3 with their bytes. The emulator sends no
//! Authorization header, so the service runs with `AUTH_MODE=none`.

use crate::common;
use crate::common::require_rig;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::pubsub::{pubsub_statuses, PushTopic};
use common::*;
use serde_json::json;

const MESSAGES: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_pushed_puts_all_land() {
    require_rig!();
    let mut w = World::new("emulator").await;
    w.set("AUTH_MODE", "none");
    let server = Server::start(&w.env).await;
    let topic = PushTopic::create(&w, "cmds", &format!("{}/pubsub", server.url)).await;

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
        topic.publish(chunk).await;
    }

    let mut landed = objects_landed(
        &w.bucket,
        &w.prefix,
        MESSAGES,
        Duration::from_secs(90),
        || format!("service log:\n{}", server.stdout.text()),
    )
    .await;
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
    let statuses = pubsub_statuses(&server);
    assert!(
        statuses.len() >= MESSAGES,
        "{} pushes logged",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| *s == 200),
        "a push was not acknowledged: {statuses:?}"
    );
}
