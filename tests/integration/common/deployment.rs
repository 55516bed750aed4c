//! A deployment of the service for the sync and part-task tests and
//! benchmarks, as the Terraform wires it: `n` instances of the real binary
//! behind the test kit's Cloud Run front end (IAM check, least-busy routing,
//! SIGKILL of an instance on demand), the commands topic pushed to it
//! through a push shim that adds the subscription's OIDC token (by default
//! [`PUSH_CONCURRENCY`] deliveries at a time from a pull subscription, as
//! real Pub/Sub pushes; the emulator's own push loop delivers one message at
//! a time, see [`bridge_testkit::push`]), the service
//! in `cloud-run-iam` mode, Cloud Storage (fake-gcs-server) behind a counting
//! fault proxy, moto behind the world's fault proxy.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bridge_testkit::{
    CloudRunConfig, CloudRunEmulator, Container, FaultProxy, PushConfig, PushShim,
};
use serde_json::Value;

use super::cloud_run::{deployed_env, front_end_config, TASKS_SA};
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

/// Deliveries in flight at once by default.
pub const PUSH_CONCURRENCY: usize = 8;

/// How the commands topic reaches the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The emulator's own push subscription: one delivery at a time.
    Emulator,
    /// A pull subscription delivered through the push shim, this many at once.
    Concurrent(usize),
}

/// One test's deployment: `n` service instances behind the Cloud Run front
/// end, the commands topic pushing to it with a token, Cloud Storage behind
/// a counting proxy.
pub struct Deployment {
    pub w: World,
    pub gcs: Gcs,
    pub gcs_proxy: FaultProxy,
    pub bucket: String,
    pub front: CloudRunEmulator,
    pub push: PushShim,
    pub topic: PushTopic,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(p) = &self.pump {
            p.abort();
        }
    }
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
        let push = Push::Concurrent(PUSH_CONCURRENCY);
        Deployment::start_pushing(name, instances, env, bucket, push).await
    }

    /// As [`Deployment::start_on`], with the commands delivered by `push`.
    pub async fn start_pushing(
        name: &str,
        instances: usize,
        env: &[(&str, &str)],
        bucket: Option<&str>,
        push_by: Push,
    ) -> Deployment {
        let mut w = World::new(name).await;
        deployed_env(&mut w);
        let gcs = Gcs::new(&w.rig);
        let gcs_proxy = FaultProxy::start(&gcs.base).await;
        w.set("STORAGE_EMULATOR_HOST", &gcs_proxy.url());
        let bucket = match bucket {
            Some(b) => b.to_owned(),
            None => gcs.bucket(name).await,
        };
        w.set("GCS_SOURCE_BUCKETS", &bucket);
        let host = w.rig["PUBSUB_EMULATOR_HOST"].clone();
        w.set("PUBSUB_EMULATOR_HOST", &host);
        w.set("RUST_LOG", "info");
        for (k, v) in env {
            w.set(k, v);
        }
        // Part commands move 64 MiB each: a request timeout like the
        // Terraform's rather than the front end's default.
        // The benchmarks may give each instance its own vCPUs, as Cloud Run
        // does (BENCH_INSTANCE_CPU); otherwise all share the machine's.
        let cpu = std::env::var("BENCH_INSTANCE_CPU").ok().map(|v| {
            v.parse::<f64>()
                .expect("BENCH_INSTANCE_CPU is a number of vCPUs")
        });
        let cfg = CloudRunConfig {
            request_timeout: Duration::from_secs(3600),
            cpu,
            ..front_end_config(&w)
        };
        // The push shim and the topic come first (the instances publish to
        // the topic), so the front end's address is chosen before it starts.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The tasks subscription pushes to /tasks with its own account.
        let push = PushShim::start(PushConfig {
            target: format!("http://127.0.0.1:{port}"),
            service_account: TASKS_SA.to_owned(),
            audience: Some(SERVICE_AUDIENCE.to_owned()),
            metadata_url: w.metadata.base_url(),
        })
        .await;
        // The ack deadline of the Terraform's subscription, not the helper's
        // 10 s: a part command moves 64 MiB.
        let endpoint = match push_by {
            Push::Emulator => format!("{}/tasks", push.url()),
            // An empty push endpoint: a pull subscription.
            Push::Concurrent(_) => String::new(),
        };
        let topic = PushTopic::create_with_deadline(&w, name, &endpoint, 60).await;
        let pump = match push_by {
            Push::Emulator => None,
            Push::Concurrent(n) => Some(push.pump_to(&host, &topic.subscription, "/tasks", n)),
        };
        w.set("TASKS_TOPIC", &topic.topic);
        // The benchmarks run a release build (bench/sync.sh sets it).
        let bin = std::env::var("BENCH_BRIDGE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gcp-aws-bridge").to_owned());
        let front = CloudRunEmulator::start_on(
            cfg,
            Some(Container::new(bin, w.env.clone())),
            ([127, 0, 0, 1], port).into(),
        )
        .await
        .expect("the front end starts");
        front
            .scale_to(instances)
            .await
            .expect("the instances start");
        Deployment {
            w,
            gcs,
            gcs_proxy,
            bucket,
            front,
            push,
            topic,
            pump,
        }
    }

    pub async fn post_sync(&self, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/sync", self.front.url()))
            .bearer_auth(self.w.caller_token())
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
        self.log_lines()
            .into_iter()
            .filter(|v| v["message"] == message)
            .collect()
    }

    /// The JSON log lines of every instance ever started.
    pub fn log_lines(&self) -> Vec<Value> {
        self.front
            .all_output()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    pub fn log_text(&self) -> String {
        self.front.all_output()
    }

    /// Statuses of the instances' `/tasks` answers, from their request log.
    pub fn task_statuses(&self) -> Vec<u64> {
        self.log_lines()
            .iter()
            .filter(|v| v["httpRequest"]["requestUrl"].as_str() == Some("/tasks"))
            .filter_map(|v| v["httpRequest"]["status"].as_u64())
            .collect()
    }

    /// Waits until neither proxy has seen a request for a while: the
    /// commands in flight are done.
    pub async fn quiet(&self) {
        let mut last = (usize::MAX, usize::MAX);
        let mut since = Instant::now();
        super::eventually(
            Duration::from_secs(120),
            || "the deployment never went quiet".into(),
            || {
                let now = (self.w.proxy.total(), self.gcs_proxy.total());
                if now != last {
                    last = now;
                    since = Instant::now();
                }
                std::future::ready((since.elapsed() > Duration::from_millis(2500)).then_some(()))
            },
        )
        .await
    }

    /// Waits until the sync pages logged number `pages` with the last one
    /// saying there is no next page.
    pub async fn sync_done(&self, pages_before: usize) -> Vec<Value> {
        super::eventually(
            Duration::from_secs(120),
            || format!("the sync did not reach its last page:\n{}", self.log_text()),
            || {
                let pages = self.logged("sync page");
                let new: Vec<Value> = pages.into_iter().skip(pages_before).collect();
                std::future::ready(new.iter().any(|p| p["next_page"] == false).then_some(new))
            },
        )
        .await
    }

    pub async fn replicas(&self) -> BTreeSet<String> {
        admin_list(&self.w.bucket, &self.w.prefix)
            .await
            .into_iter()
            .map(|k| k[self.w.prefix.len()..].to_owned())
            // The service's own bookkeeping (sync runs, uploads in progress).
            .filter(|k| !k.starts_with(".gcp-aws-bridge/"))
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
