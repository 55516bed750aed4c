//! A topic and push subscription on the rig's Pub/Sub emulator, aimed at a
//! running service; deleted again when dropped, pass or fail, so the
//! emulator stops pushing to a server that is gone.

use std::time::Duration;

use serde_json::{json, Value};

use super::World;

/// A topic with one push subscription.
pub struct PushTopic {
    base: String,
    /// `projects/P/topics/T`.
    pub topic: String,
    /// `projects/P/subscriptions/S`.
    pub subscription: String,
    http: reqwest::Client,
}

impl PushTopic {
    /// Creates `bridge-<name>-<n>` pushing to `endpoint` (e.g. the
    /// service's `/pubsub`), with a 10 s ack deadline and a 1–5 s retry
    /// backoff.
    pub async fn create(w: &World, name: &str, endpoint: &str) -> PushTopic {
        PushTopic::create_with_deadline(w, name, endpoint, 10).await
    }

    /// As [`PushTopic::create`], with an ack deadline of `ack_deadline`
    /// seconds (how long the emulator waits for an answer).
    pub async fn create_with_deadline(
        w: &World,
        name: &str,
        endpoint: &str,
        ack_deadline: u32,
    ) -> PushTopic {
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
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let t = PushTopic {
            base: format!("http://{host}/v1"),
            topic: format!("projects/{project}/topics/bridge-{name}-{n}"),
            subscription: format!("projects/{project}/subscriptions/bridge-{name}-push-{n}"),
            http: reqwest::Client::new(),
        };
        t.put(&t.topic, json!({})).await;
        t.put(
            &t.subscription,
            json!({
                "topic": t.topic,
                "pushConfig": {"pushEndpoint": endpoint},
                "ackDeadlineSeconds": ack_deadline,
                "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "5s"}
            }),
        )
        .await;
        t
    }

    async fn put(&self, path: &str, body: Value) {
        let r = self
            .http
            .put(format!("{}/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "create {path}: {}",
            r.text().await.unwrap()
        );
    }

    /// Publishes `messages` (`{data, attributes}`) in one call.
    pub async fn publish(&self, messages: &[Value]) {
        let r = self
            .http
            .post(format!("{}/{}:publish", self.base, self.topic))
            .json(&json!({ "messages": messages }))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "publish: {v}");
        assert_eq!(
            v["messageIds"].as_array().map(Vec::len),
            Some(messages.len())
        );
    }
}

impl Drop for PushTopic {
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

/// Statuses of a service's `/pubsub` answers, from its JSON request log.
pub fn pubsub_statuses(server: &super::Server) -> Vec<u64> {
    server
        .stdout
        .all()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["httpRequest"]["requestUrl"].as_str() == Some("/pubsub"))
        .filter_map(|v| v["httpRequest"]["status"].as_u64())
        .collect()
}

/// A topic with a pull subscription on the rig's emulator, to see what a
/// command published: `(topic, subscription)`.
pub async fn pull_topic(w: &World, name: &str) -> (String, String) {
    let host = &w.rig["PUBSUB_EMULATOR_HOST"];
    let project = w
        .rig
        .get("RIG_PUBSUB_PROJECT")
        .cloned()
        .unwrap_or("bridge-test".into());
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("projects/{project}/topics/pull-{name}-{n}");
    let sub = format!("projects/{project}/subscriptions/pull-{name}-{n}");
    let http = reqwest::Client::new();
    for (path, body) in [(&topic, json!({})), (&sub, json!({ "topic": topic }))] {
        let r = http
            .put(format!("http://{host}/v1/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create {path}");
    }
    (topic, sub)
}

/// The data (as JSON) of the messages waiting on a pull subscription,
/// acknowledged.
pub async fn pull_all(w: &World, sub: &str) -> Vec<Value> {
    pull_with_attributes(w, sub)
        .await
        .into_iter()
        .map(|(data, _)| data)
        .collect()
}

/// The messages waiting on a pull subscription, acknowledged: each its data
/// (as JSON) and its attributes as sent.
pub async fn pull_with_attributes(w: &World, sub: &str) -> Vec<(Value, Value)> {
    use base64::Engine;
    let host = &w.rig["PUBSUB_EMULATOR_HOST"];
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    loop {
        let v: Value = http
            .post(format!("http://{host}/v1/{sub}:pull"))
            .json(&json!({ "maxMessages": 1000, "returnImmediately": true }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let msgs = v["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        let ids: Vec<Value> = msgs.iter().map(|m| m["ackId"].clone()).collect();
        for m in msgs {
            let data = base64::engine::general_purpose::STANDARD
                .decode(m["message"]["data"].as_str().unwrap_or(""))
                .unwrap();
            out.push((
                serde_json::from_slice(&data).unwrap(),
                m["message"]["attributes"].clone(),
            ));
        }
        http.post(format!("http://{host}/v1/{sub}:acknowledge"))
            .json(&json!({ "ackIds": ids }))
            .send()
            .await
            .unwrap();
    }
}
