//! Shared support for the integration tests: the rig's endpoints (moto,
//! the Pub/Sub emulator, fake-gcs-server, started by `scripts/rig-up.sh`),
//! an in-process metadata emulator and fault proxy per test, the service
//! in-process or as the real binary, and an admin S3 client to check what
//! landed.
#![allow(dead_code, unreachable_pub)]

pub mod answer;
pub mod cloud_run;
pub mod deployment;
pub mod expiring;
pub mod gcs;
pub mod in_process;
pub mod pubsub;
pub mod sidecar;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bridge_testkit::{FaultProxy, MetadataConfig, MetadataEmulator, StsGate};
use gcp_aws_bridge::config::Config;

/// The audience of the service's Google ID token (presented to STS).
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The audience callers' tokens carry.
pub const SERVICE_AUDIENCE: &str = "https://bridge.test";
/// The caller allowed by default.
pub const CALLER_EMAIL: &str = "push@bridge-test.iam.gserviceaccount.com";
/// The push identity of the tasks subscription (`TASKS_PUSH_EMAIL`): the
/// only caller of `/tasks`, no caller of the outside doors.
pub const TASKS_EMAIL: &str = "bridge-tasks@bridge-test.iam.gserviceaccount.com";

/// The claims of a token of the allowed caller (Google-issued, for
/// [`SERVICE_AUDIENCE`], live for an hour), with `overrides` put in: a
/// null removes the claim.
pub fn caller_claims(overrides: serde_json::Value) -> serde_json::Value {
    let now = bridge_testkit::keys::now_secs();
    let mut claims = serde_json::json!({
        "iss": "https://accounts.google.com",
        "aud": SERVICE_AUDIENCE,
        "azp": "104857600000000000002",
        "sub": "104857600000000000002",
        "email": CALLER_EMAIL,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    });
    if let (Some(c), Some(o)) = (claims.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    claims
}

/// Polls `check` until it yields `Some`, within `limit` (every 10 ms at
/// first, then less often, at most every 250 ms); panics with `what()` when
/// the time is up. The one poll loop of the tests: a test waits on what it
/// can observe, never on a fixed sleep.
pub async fn eventually<T, F, Fut, W>(limit: Duration, what: W, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
    W: FnOnce() -> String,
{
    let deadline = std::time::Instant::now() + limit;
    let mut every = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!("not within {limit:?}: {}", what());
        }
        tokio::time::sleep(every).await;
        every = (every * 2).min(Duration::from_millis(250));
    }
}

/// Where the running rig describes itself: `$RIG_DIR/rig.env`, default
/// `.run/rig.env`.
fn rig_env_path() -> String {
    let dir = std::env::var("RIG_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.run").to_owned());
    format!("{dir}/rig.env")
}

/// Whether a test that needs the rig may run. Without the rig it says so and
/// the test returns early (skipped), unless the rig is required
/// (`RIG_REQUIRED=1`, which `scripts/test.sh` sets, or `CI=true`): then the
/// test goes on and fails on the missing rig.
pub fn rig_is_up(test: &str) -> bool {
    let path = rig_env_path();
    if std::path::Path::new(&path).exists() {
        return true;
    }
    let required = std::env::var("RIG_REQUIRED").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true");
    if !required {
        eprintln!(
            "skipped {test}: it needs the local rig and {path} is missing; start it with \
             scripts/rig-up.sh (scripts/test.sh does), or set RIG_REQUIRED=1 to fail instead"
        );
    }
    required
}

/// Skips the calling test (returns) when the rig is not running and not
/// required: see [`rig_is_up`].
macro_rules! require_rig {
    () => {
        fn here() {}
        let test = std::any::type_name_of_val(&here)
            .trim_end_matches("::here")
            .trim_end_matches("::{{closure}}");
        if !$crate::common::rig_is_up(test) {
            return;
        }
    };
}
pub(crate) use require_rig;

/// A Cloud Storage CloudEvent in binary mode on `rb`: the `ce-*` headers
/// of event `id` of `kind` (`finalized`, `deleted`, …) for object resource
/// `obj`, which is the body.
pub fn storage_event(
    rb: reqwest::RequestBuilder,
    id: &str,
    kind: &str,
    obj: &serde_json::Value,
) -> reqwest::RequestBuilder {
    let bucket = obj["bucket"].as_str().unwrap();
    let name = obj["name"].as_str().unwrap();
    rb.header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", format!("google.cloud.storage.object.v1.{kind}"))
        .header(
            "ce-source",
            format!("//storage.googleapis.com/projects/_/buckets/{bucket}"),
        )
        .header("ce-subject", format!("objects/{name}"))
        .header("ce-time", "2026-01-01T00:00:00Z")
        .header("content-type", "application/json")
        .body(obj.to_string())
}

/// `rclone VERB src:BUCKET dst:RIG_BUCKET/PREFIX` between the rig's
/// fake-gcs-server (anonymous) and moto (the admin keys), configured in the
/// environment only (`--config /dev/null`), without statistics.
pub fn rclone(rig: &HashMap<String, String>, verb: &str, bucket: &str, prefix: &str) -> Command {
    let gcs = gcs::Gcs::new(rig);
    let mut cmd = Command::new("rclone");
    // rclone's S3 client refuses a CA bundle with its own HTTP transport,
    // and moto is plain http.
    cmd.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_SRC_TYPE", "google cloud storage")
        .env("RCLONE_CONFIG_SRC_ANONYMOUS", "true")
        .env(
            "RCLONE_CONFIG_SRC_ENDPOINT",
            format!("{}/storage/v1/", gcs.base),
        )
        .env("RCLONE_CONFIG_DST_TYPE", "s3")
        .env("RCLONE_CONFIG_DST_PROVIDER", "Other")
        .env("RCLONE_CONFIG_DST_ENDPOINT", &rig["RIG_MOTO_ENDPOINT"])
        .env(
            "RCLONE_CONFIG_DST_ACCESS_KEY_ID",
            &rig["RIG_ADMIN_ACCESS_KEY_ID"],
        )
        .env(
            "RCLONE_CONFIG_DST_SECRET_ACCESS_KEY",
            &rig["RIG_ADMIN_SECRET_ACCESS_KEY"],
        )
        .env("RCLONE_CONFIG_DST_REGION", "us-east-1")
        .env("RCLONE_CONFIG_DST_FORCE_PATH_STYLE", "true")
        .arg(verb)
        .arg(format!("src:{bucket}"))
        .arg(format!("dst:{}/{prefix}", rig["RIG_BUCKET"]))
        .args(["--config", "/dev/null", "--stats", "0"]);
    cmd
}

/// `rig.env` of the running rig: `$RIG_DIR/rig.env`, default `.run/rig.env`.
pub fn rig() -> HashMap<String, String> {
    let path = rig_env_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}; start the stand-ins with scripts/rig-up.sh (scripts/test.sh does)")
    });
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A unique, allowed prefix for one test: `allowed/<name>-<nanos>/`.
pub fn unique_prefix(name: &str) -> String {
    let rig = rig();
    let base = rig
        .get("RIG_ALLOWED_PREFIX")
        .cloned()
        .unwrap_or("allowed/".into());
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{base}{name}-{n}/")
}

/// An S3 client at the rig's moto with the given keys.
pub fn moto_s3(
    rig: &HashMap<String, String>,
    access_key_id: &str,
    secret_access_key: &str,
    session_token: Option<&str>,
) -> aws_sdk_s3::Client {
    let creds = Credentials::new(
        access_key_id,
        secret_access_key,
        session_token.map(str::to_owned),
        None,
        "test",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .http_client(gcp_aws_bridge::aws::http_client())
        .endpoint_url(&rig["RIG_MOTO_ENDPOINT"])
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An S3 client with the rig's admin keys, to inspect and prepare buckets.
pub fn admin_s3() -> aws_sdk_s3::Client {
    let rig = rig();
    moto_s3(
        &rig,
        &rig["RIG_ADMIN_ACCESS_KEY_ID"],
        &rig["RIG_ADMIN_SECRET_ACCESS_KEY"],
        None,
    )
}

/// Runs the service's binary with `args` and `env` (nothing of this
/// process's environment but PATH) to its end, at most 60 s.
pub async fn run_bin(args: &[&str], env: &[(String, String)]) -> std::process::Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gcp-aws-bridge"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("gcp-aws-bridge finished within 60 s")
        .expect("run gcp-aws-bridge")
}

/// A path under the system's temporary directory that no other test or
/// run uses.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::env::temp_dir().join(format!("bridge-{name}-{}-{n}", std::process::id()))
}

/// Reads an object with the admin client; `None` when absent.
pub async fn admin_get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    match admin_s3().get_object().bucket(bucket).key(key).send().await {
        Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
        Err(e) => {
            let svc = e.into_service_error();
            assert!(svc.is_no_such_key(), "unexpected error: {svc:?}");
            None
        }
    }
}

/// An object's head with the admin client; panics when it is absent.
pub async fn admin_head(
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    admin_s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {:?}", e.into_service_error()))
}

/// Waits until at least `n` objects are under `prefix` (admin view), at
/// most `limit`; their keys. `more` tells what else to show when they are
/// not.
pub async fn objects_landed(
    bucket: &str,
    prefix: &str,
    n: usize,
    limit: Duration,
    more: impl FnOnce() -> String,
) -> Vec<String> {
    eventually(
        limit,
        || format!("fewer than {n} objects under {prefix}; {}", more()),
        || async {
            let keys = admin_list(bucket, prefix).await;
            (keys.len() >= n).then_some(keys)
        },
    )
    .await
}

/// Keys under `prefix`, admin view.
pub async fn admin_list(bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = admin_s3()
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_owned);
        } else {
            return keys;
        }
    }
}

fn set_trust(proxy: &FaultProxy, metadata: &MetadataEmulator, aud: &str, sub: &str) {
    proxy.set_sts_gate(Some(StsGate {
        jwks_url: metadata.jwks_url(),
        oaud: STS_AUDIENCE.to_owned(),
        aud: aud.to_owned(),
        sub: sub.to_owned(),
    }));
}

/// What differs between the services the tests run.
pub struct ServiceEnv<'a> {
    pub metadata: &'a MetadataEmulator,
    /// STS and S3.
    pub aws_url: &'a str,
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub bucket: &'a str,
    pub prefix: &'a str,
    pub auth_mode: &'a str,
}

/// The environment of a service whose Google identity and callers' keys
/// come from the metadata emulator, allowing [`CALLER_EMAIL`] with
/// [`SERVICE_AUDIENCE`].
pub fn service_env(s: &ServiceEnv<'_>) -> Vec<(String, String)> {
    [
        ("TARGET_AUDIENCE", STS_AUDIENCE.to_owned()),
        ("AWS_ROLE_ARN", s.role_arn.to_owned()),
        ("AWS_ROLE_SESSION_NAME", s.session_name.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", s.aws_url.to_owned()),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("S3_BUCKET", s.bucket.to_owned()),
        ("S3_PREFIX", s.prefix.to_owned()),
        ("GCE_METADATA_HOST", s.metadata.host()),
        ("ID_TOKEN_SOURCE", "metadata".to_owned()),
        ("AUTH_MODE", s.auth_mode.to_owned()),
        ("AUTH_AUDIENCES", SERVICE_AUDIENCE.to_owned()),
        ("AUTH_ALLOWED_EMAILS", CALLER_EMAIL.to_owned()),
        ("TASKS_PUSH_EMAIL", TASKS_EMAIL.to_owned()),
        ("GOOGLE_CERTS_URL", s.metadata.jwks_url()),
        ("GOOGLE_CLOUD_PROJECT", "bridge-test".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One test's world: a metadata emulator, a fault proxy in front of moto
/// with the STS gate on, and the environment of a service using them.
pub struct World {
    pub rig: HashMap<String, String>,
    pub metadata: MetadataEmulator,
    pub proxy: FaultProxy,
    pub bucket: String,
    pub prefix: String,
    pub env: Vec<(String, String)>,
}

impl World {
    pub async fn new(name: &str) -> World {
        World::with_metadata(name, MetadataConfig::default()).await
    }

    pub async fn with_metadata(name: &str, cfg: MetadataConfig) -> World {
        let rig = rig();
        let metadata = MetadataEmulator::start(cfg).await;
        let proxy = FaultProxy::start(&rig["RIG_MOTO_ENDPOINT"]).await;
        let mc = metadata.config();
        // Real STS checks the token and the trust policy; moto does neither.
        set_trust(&proxy, &metadata, &mc.unique_id, &mc.unique_id);
        let bucket = rig["RIG_BUCKET"].clone();
        let prefix = unique_prefix(name);
        let mut env = service_env(&ServiceEnv {
            metadata: &metadata,
            aws_url: &proxy.url(),
            role_arn: &rig["RIG_ROLE_ARN"],
            session_name: &format!("test-{name}"),
            bucket: &bucket,
            prefix: &prefix,
            auth_mode: "verify",
        });
        if let Some(gcs) = rig.get("STORAGE_EMULATOR_HOST") {
            env.push(("STORAGE_EMULATOR_HOST".into(), gcs.clone()));
        }
        World {
            rig,
            metadata,
            proxy,
            bucket,
            prefix,
            env,
        }
    }

    /// Sets (or replaces) an environment variable of the service.
    pub fn set(&mut self, k: &str, v: &str) {
        self.env.retain(|(key, _)| key != k);
        self.env.push((k.to_owned(), v.to_owned()));
    }

    /// The role's trust policy: tokens of the metadata emulator for
    /// [`STS_AUDIENCE`] whose `azp` is `aud` and `sub` is `sub`.
    pub fn trust(&self, aud: &str, sub: &str) {
        set_trust(&self.proxy, &self.metadata, aud, sub);
    }

    /// A trust policy that names another service account than the
    /// emulator's: STS refuses every token.
    pub fn trust_someone_else(&self) {
        self.trust("999999999999999999999", "999999999999999999999");
    }

    pub fn config(&self) -> Config {
        Config::from_iter(self.env.clone()).expect("test configuration")
    }

    /// A caller token the service accepts (signed by the emulator's key,
    /// which the service trusts through GOOGLE_CERTS_URL).
    pub fn caller_token(&self) -> String {
        self.caller_token_with(serde_json::json!({}))
    }

    /// A token of the tasks subscription's push identity (`/tasks`).
    pub fn tasks_token(&self) -> String {
        self.caller_token_with(serde_json::json!({ "email": TASKS_EMAIL }))
    }

    /// Posts `task` to `/tasks` as the tasks subscription pushes it, with
    /// the message id `message_id`.
    pub async fn post_task(
        &self,
        server: &Server,
        task: &serde_json::Value,
        message_id: &str,
    ) -> reqwest::Response {
        use base64::Engine;
        let envelope = serde_json::json!({
            "message": {
                "data": base64::engine::general_purpose::STANDARD.encode(task.to_string()),
                "messageId": message_id,
            },
            "subscription": "projects/bridge-test/subscriptions/tasks",
        });
        server
            .post("/tasks")
            .bearer_auth(self.tasks_token())
            .json(&envelope)
            .send()
            .await
            .unwrap()
    }

    /// A caller token with claims overridden by `overrides`.
    pub fn caller_token_with(&self, overrides: serde_json::Value) -> String {
        self.metadata.mint(caller_claims(overrides))
    }

    /// The object at the relative `key`, admin view; `None` when absent.
    pub async fn stored(&self, key: &str) -> Option<Vec<u8>> {
        admin_get(&self.bucket, &self.full(key)).await
    }

    /// Keys of the multipart uploads under the prefix that were started and
    /// neither completed nor aborted.
    pub async fn uploads_left(&self) -> Vec<String> {
        let out = admin_s3()
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect()
    }

    /// No multipart upload is left behind under the prefix.
    pub async fn assert_no_upload_left(&self) {
        let left = self.uploads_left().await;
        assert!(left.is_empty(), "multipart uploads left behind: {left:?}");
    }

    /// The full S3 key of a relative key.
    pub fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// Captured output lines of a child process.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn text(&self) -> String {
        self.all().join("\n")
    }
    /// The first line containing `needle`, waiting up to 10 s for the
    /// process to write it (its output is read on another thread, so a line
    /// logged before a response may arrive after it).
    pub async fn wait_for(&self, needle: &str) -> String {
        eventually(
            Duration::from_secs(10),
            || format!("no line with {needle:?}:\n{}", self.text()),
            || std::future::ready(self.all().into_iter().find(|l| l.contains(needle))),
        )
        .await
    }
}

/// The service binary, running.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn capture(stream: impl std::io::Read + Send + 'static) -> Lines {
    let lines = Lines::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            l.0.lock().unwrap().push(line);
        }
    });
    lines
}

/// Starts `cmd` (stdin closed, stdout and stderr captured) and waits until
/// `{url}/healthz` answers 200, at most 20 s; panics with its output when
/// it exits first.
pub async fn spawn_until_healthy(what: &str, mut cmd: Command, url: &str) -> (Child, Lines, Lines) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let stdout = capture(child.stdout.take().unwrap());
    let stderr = capture(child.stderr.take().unwrap());
    let client = reqwest::Client::new();
    let child = std::sync::Mutex::new(child);
    eventually(
        Duration::from_secs(20),
        || format!("{what} did not answer /healthz"),
        || async {
            if let Ok(Some(status)) = child.lock().unwrap().try_wait() {
                panic!(
                    "{what} exited with {status}:\n{}\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            match client.get(format!("{url}/healthz")).send().await {
                Ok(r) if r.status() == 200 => Some(()),
                _ => None,
            }
        },
    )
    .await;
    let child = child.into_inner().unwrap();
    (child, stdout, stderr)
}

impl Server {
    /// Starts the real binary with `env` (and nothing of this process's
    /// environment but PATH) and waits for /healthz.
    pub async fn start(env: &[(String, String)]) -> Server {
        let port = free_port();
        // The benchmarks run a release build (bench/sync.sh sets it).
        let bin = std::env::var("BENCH_BRIDGE_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gcp-aws-bridge").to_owned());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().cloned());
        let url = format!("http://127.0.0.1:{port}");
        let (child, stdout, stderr) = spawn_until_healthy("gcp-aws-bridge", cmd, &url).await;
        Server {
            child,
            url,
            stdout,
            stderr,
        }
    }

    /// A request to `path` (from `/`) of the service.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    pub fn head(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::HEAD, path)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PUT, path)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::DELETE, path)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to exit (bounded).
    pub async fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        eventually(
            limit,
            || "gcp-aws-bridge did not exit".into(),
            || std::future::ready(self.child.try_wait().unwrap()),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rig's Python (rig/venv.sh), which has boto3 and the AWS CLI.
pub fn rig_python() -> String {
    let out = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/rig/venv.sh"))
        .output()
        .expect("rig/venv.sh");
    assert!(
        out.status.success(),
        "rig/venv.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
