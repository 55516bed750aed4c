//! A deployment of the service for the sync and part-task tests and
//! benchmarks: `n` instances behind the round-robin front end
//! ([`super::front`]), the commands topic pushing to it, Cloud Storage
//! (fake-gcs-server) behind a counting fault proxy, moto behind the world's
//! fault proxy.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bridge_testkit::FaultProxy;
use serde_json::Value;

use super::front::Front;
use super::gcs::Gcs;
use super::pubsub::PushTopic;
use super::*;

/// Deterministic, incompressible test bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
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

/// CRC-32 (IEEE), for the gzip trailer.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in stored (uncompressed) deflate
/// blocks.
pub fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none()));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// One test's deployment: `n` service instances behind the front end, the
/// commands topic pushing to it, Cloud Storage behind a counting proxy.
pub struct Deployment {
    pub w: World,
    pub gcs: Gcs,
    pub gcs_proxy: FaultProxy,
    pub bucket: String,
    pub front: Front,
    pub topic: PushTopic,
    pub servers: Vec<Server>,
}

impl Deployment {
    pub async fn start(name: &str, instances: usize, env: &[(&str, &str)]) -> Deployment {
        Deployment::start_on(name, instances, env, None).await
    }

    /// As [`Deployment::start`], reading an existing bucket when one is named.
    pub async fn start_on(
        name: &str,
        instances: usize,
        env: &[(&str, &str)],
        bucket: Option<&str>,
    ) -> Deployment {
        let mut w = World::new(name).await;
        // The emulator pushes without an Authorization header.
        w.set("AUTH_MODE", "none");
        let gcs = Gcs::new(&w.rig);
        let gcs_proxy = FaultProxy::start(&gcs.base).await;
        w.set("STORAGE_EMULATOR_HOST", &gcs_proxy.url());
        let bucket = match bucket {
            Some(b) => b.to_owned(),
            None => gcs.bucket(name).await,
        };
        w.set("GCS_SOURCE_BUCKETS", &bucket);
        let front = Front::start().await;
        // Part commands move 64 MiB each: a deadline like the Terraform's
        // rather than the helper's 10 s.
        let topic =
            PushTopic::create_with_deadline(&w, name, &format!("{}/pubsub", front.url), 60).await;
        w.set("PUBSUB_TOPIC", &topic.topic);
        let host = w.rig["PUBSUB_EMULATOR_HOST"].clone();
        w.set("PUBSUB_EMULATOR_HOST", &host);
        for (k, v) in env {
            w.set(k, v);
        }
        let mut servers = Vec::new();
        for _ in 0..instances {
            servers.push(Server::start(&w.env).await);
        }
        front.set_upstreams(servers.iter().map(|s| s.url.clone()).collect());
        Deployment {
            w,
            gcs,
            gcs_proxy,
            bucket,
            front,
            topic,
            servers,
        }
    }

    pub async fn post_sync(&self, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", self.front.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 202, "{v}");
        v
    }

    /// The JSON log lines of every instance with this message.
    pub fn logged(&self, message: &str) -> Vec<Value> {
        self.servers
            .iter()
            .flat_map(|s| s.stdout.all())
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.stdout.text())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until neither proxy has seen a request for a while: the
    /// commands in flight are done.
    pub async fn quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = (usize::MAX, usize::MAX);
        let mut since = Instant::now();
        loop {
            let now = (self.w.proxy.total(), self.gcs_proxy.total());
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() > Duration::from_millis(2500) {
                return;
            }
            assert!(Instant::now() < deadline, "the deployment never went quiet");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the sync pages logged number `pages` with the last one
    /// saying there is no next page.
    pub async fn sync_done(&self, pages_before: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pages = self.logged("sync page");
            let new: Vec<Value> = pages.into_iter().skip(pages_before).collect();
            if new.iter().any(|p| p["next_page"] == false) {
                return new;
            }
            assert!(
                Instant::now() < deadline,
                "the sync did not reach its last page:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn replicas(&self) -> BTreeSet<String> {
        admin_list(&self.w.bucket, &self.w.prefix)
            .await
            .into_iter()
            .map(|k| k[self.w.prefix.len()..].to_owned())
            .collect()
    }
}

/// The sync command line, as the binary, with the deployment's environment.
pub fn cli(d: &Deployment, args: &[&str], topic: &str) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(d.w.env.iter().cloned())
        .env("PUBSUB_TOPIC", topic)
        .arg("sync")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
