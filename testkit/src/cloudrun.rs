//! A Cloud Run front end: what Google's serving infrastructure does to a
//! request before the container sees it, in front of one or more instances
//! of a container it starts itself (or of servers already running).
//!
//! Per request, in order:
//! 1. **IAM.** Unless the invokers include `allUsers`: the ID token is read
//!    from `X-Serverless-Authorization` when present, else from
//!    `Authorization`; no token answers 403, a token that is not a live
//!    RS256 Google token for this service (signature against the JWKS the
//!    metadata emulator publishes, `iss`, `aud` = the service URL or a custom
//!    audience, `exp`) answers 401, and a caller whose `email` is not among
//!    the invokers answers 403. None of these reach the container.
//! 2. **Signature stripped.** The checked header is forwarded with the
//!    token's signature replaced by `SIGNATURE_REMOVED_BY_GOOGLE`; the other
//!    header is left as sent.
//! 3. **Headers added:** `X-Cloud-Trace-Context` and `traceparent` (the
//!    caller's trace when it sent one, else a new one), `X-Forwarded-For`
//!    (the caller's address appended) and `X-Forwarded-Proto: https`;
//!    hop-by-hop headers are dropped.
//! 4. **Limits.** Over HTTP/1 to the container, a request body over 32 MiB
//!    answers 413 (by `Content-Length` at once, or when a streamed body
//!    crosses it); with [`CloudRunConfig::http2`] (`--use-http2`) the
//!    container is spoken to in h2c and there is no limit. A request not
//!    answered within the timeout answers 504, and a response body still
//!    streaming then is cut.
//! 5. **Instances.** Requests go to the instance with the fewest requests in
//!    flight (round robin among equals). Instances are started with `PORT`,
//!    `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION` and the environment given
//!    (nothing else of this process's but `PATH`), and are ready when their
//!    port accepts (or a startup probe path answers 2xx). Scaling down takes
//!    an instance out of rotation, sends it SIGTERM, then SIGKILL after 10 s;
//!    [`CloudRunEmulator::kill_instance`] ends one at once, as a crash does.
//!
//! Before all this, `/eventlog`, paths under `/_ah/` and `/healthz` answer
//! 404 from the front end itself, as Google's front end does (Cloud Run
//! reserves them; its probes reach the container directly).
//!
//! Not emulated: Google Front End TLS and HTTP/3, ingress settings, IAM
//! conditions and groups (invokers are listed emails), custom domains, the
//! 32 MiB *response* limit of HTTP/1 (none here), concurrency limits and
//! queueing, autoscaling on load (instances change only when asked), cold
//! start CPU throttling (an instance's vCPUs are limited only when
//! [`CloudRunConfig::cpu`] is set), CPU allocation outside requests, liveness probes,
//! request logs in Cloud Logging, the other reserved paths ending in `z`
//! (Cloud Run does not list them), the decoding of some percent-encoded
//! characters in the path, the refusal of `TRACE` and `CONNECT`, and the
//! 32 MiB limit of HTTP/1 responses that are not streamed.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::keys::{random_hex, verify_with_jwks, VerifyError};
use crate::proxy::{is_hop_by_hop, strip_hop_by_hop};

/// What Cloud Run puts in place of a checked token's signature.
pub const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
/// Cloud Run's request size limit over HTTP/1.
pub const HTTP1_MAX_REQUEST_BYTES: u64 = 32 * 1024 * 1024;
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// How the front end behaves (a Cloud Run service's settings).
#[derive(Debug, Clone)]
pub struct CloudRunConfig {
    /// `K_SERVICE` and `K_CONFIGURATION`.
    pub service: String,
    /// `K_REVISION`.
    pub revision: String,
    /// The service URL, the `aud` tokens must carry (besides
    /// [`audiences`](Self::audiences)). `None`: the front end's own
    /// `http://127.0.0.1:PORT`.
    pub url: Option<String>,
    /// Custom audiences (Cloud Run's `custom_audiences`).
    pub audiences: Vec<String>,
    /// Members with `roles/run.invoker`: `serviceAccount:EMAIL`,
    /// `user:EMAIL`, a bare email, or `allUsers` (no check at all).
    pub invokers: Vec<String>,
    /// Google's JWKS (the metadata emulator's `/oauth2/v3/certs`).
    pub jwks_url: String,
    /// Request timeout (Cloud Run's default: 300 s).
    pub request_timeout: Duration,
    /// HTTP/2 end to end (`--use-http2`, a port named `h2c`): the container
    /// is spoken to in h2c and the 32 MiB request limit does not apply.
    pub http2: bool,
    /// SIGTERM to SIGKILL on scale-down (Cloud Run: 10 s).
    pub shutdown_grace: Duration,
    /// An HTTP startup probe path; `None`: a TCP probe (Cloud Run's default).
    pub startup_probe: Option<String>,
    /// How long an instance may take to become ready.
    pub startup_timeout: Duration,
    /// vCPUs of each instance (Cloud Run's `--cpu`), enforced with a CFS
    /// quota on the instance's own cgroup (cgroup v2 `cpu.max` or v1
    /// `cpu.cfs_quota_us`); an instance cannot start when the quota cannot
    /// be set. `None`: as many as the machine has, shared by all instances.
    pub cpu: Option<f64>,
}

impl Default for CloudRunConfig {
    fn default() -> Self {
        CloudRunConfig {
            service: "gcp-aws-bridge".into(),
            revision: "gcp-aws-bridge-00001-emu".into(),
            url: None,
            audiences: Vec::new(),
            invokers: Vec::new(),
            jwks_url: String::new(),
            request_timeout: Duration::from_secs(300),
            http2: false,
            shutdown_grace: Duration::from_secs(10),
            startup_probe: None,
            startup_timeout: Duration::from_secs(30),
            cpu: None,
        }
    }
}

/// Where an instance's stdout and stderr go.
#[derive(Debug, Clone)]
pub enum Output {
    /// Kept in memory, see [`CloudRunEmulator::output`].
    Capture,
    /// This process's own.
    Inherit,
    /// Appended to a file.
    File(PathBuf),
}

/// The container the instances run.
#[derive(Debug, Clone)]
pub struct Container {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments; `{PORT}` in one is replaced by the instance's port.
    pub args: Vec<String>,
    /// Its environment (besides `PATH`, `PORT` and the `K_*` variables).
    pub env: Vec<(String, String)>,
    /// Also pass this process's whole environment (the binary does).
    pub inherit_env: bool,
    /// stdout and stderr.
    pub output: Output,
}

impl Container {
    /// `program` with `env`, output captured.
    pub fn new(program: impl Into<PathBuf>, env: Vec<(String, String)>) -> Container {
        Container {
            program: program.into(),
            args: Vec::new(),
            env,
            inherit_env: false,
            output: Output::Capture,
        }
    }
}

/// How an instance ended on scale-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// SIGKILL was needed after the grace period.
    pub killed: bool,
    /// From SIGTERM to exit.
    pub took: Duration,
}

struct Instance {
    id: usize,
    addr: SocketAddr,
    child: Option<Child>,
    in_flight: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    output: Arc<Mutex<Vec<String>>>,
}

struct Shared {
    cfg: CloudRunConfig,
    addr: SocketAddr,
    container: Option<Container>,
    instances: Mutex<Vec<Instance>>,
    /// Output and request counts of every instance ever started, by id.
    history: Mutex<HashMap<usize, (Lines, Arc<AtomicUsize>)>>,
    next_id: AtomicUsize,
    rr: AtomicUsize,
    jwks: Mutex<Option<(Value, Instant)>>,
    http: reqwest::Client,
    h1: Client<HttpConnector, UpBody>,
    h2: Client<HttpConnector, UpBody>,
    refused: AtomicUsize,
    /// Requests being forwarded to an instance now, and the most ever.
    in_flight: Arc<AtomicUsize>,
    peak_in_flight: AtomicUsize,
}

/// Captured output lines of an instance.
type Lines = Arc<Mutex<Vec<String>>>;

type UpBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A running front end. Clones share it; the instances it started are
/// killed when the last clone is dropped (stop them first with
/// [`CloudRunEmulator::scale_to`]`(0)` for a graceful end).
#[derive(Clone)]
pub struct CloudRunEmulator {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
}

struct Guard {
    stop: watch::Sender<()>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

impl std::fmt::Debug for CloudRunEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudRunEmulator")
            .field("addr", &self.shared.addr)
            .field("service", &self.shared.cfg.service)
            .finish_non_exhaustive()
    }
}

impl CloudRunEmulator {
    /// Starts the front end on `127.0.0.1:0` and `instances` instances of
    /// `container`; returns once every instance is ready.
    pub async fn start(
        cfg: CloudRunConfig,
        container: Container,
        instances: usize,
    ) -> std::io::Result<CloudRunEmulator> {
        let emu = Self::start_on(cfg, Some(container), ([127, 0, 0, 1], 0).into()).await?;
        emu.scale_to(instances).await?;
        Ok(emu)
    }

    /// Starts the front end on `addr` in front of servers already running
    /// (their base URLs, `http://127.0.0.1:PORT`), which it neither starts
    /// nor stops.
    pub async fn start_for(
        cfg: CloudRunConfig,
        upstreams: &[String],
    ) -> std::io::Result<CloudRunEmulator> {
        let emu = Self::start_on(cfg, None, ([127, 0, 0, 1], 0).into()).await?;
        for u in upstreams {
            let addr = u
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse::<SocketAddr>()
                .map_err(|e| invalid(format!("upstream {u}: {e}")))?;
            emu.push_instance(addr, None, Arc::default());
        }
        Ok(emu)
    }

    /// Starts the front end on `addr` with no instance yet.
    pub async fn start_on(
        cfg: CloudRunConfig,
        container: Option<Container>,
        addr: SocketAddr,
    ) -> std::io::Result<CloudRunEmulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let h1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector.clone());
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .build(connector);
        let shared = Arc::new(Shared {
            cfg,
            addr,
            container,
            instances: Mutex::new(Vec::new()),
            history: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(0),
            rr: AtomicUsize::new(0),
            jwks: Mutex::new(None),
            http: reqwest::Client::new(),
            h1,
            h2,
            refused: AtomicUsize::new(0),
            in_flight: Arc::default(),
            peak_in_flight: AtomicUsize::new(0),
        });
        let (stop, rx) = watch::channel(());
        tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(CloudRunEmulator {
            shared,
            _guard: Arc::new(Guard { stop }),
        })
    }

    /// `http://127.0.0.1:PORT`: where callers send requests.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The service URL tokens must name (the configured one, else [`url`](Self::url)).
    pub fn service_url(&self) -> String {
        self.shared.service_url()
    }

    /// Instances in rotation.
    pub fn instance_count(&self) -> usize {
        self.shared.instances.lock().unwrap().len()
    }

    /// Requests each instance ever started has been given, by start order.
    pub fn requests_per_instance(&self) -> Vec<usize> {
        let h = self.shared.history.lock().unwrap();
        let mut ids: Vec<_> = h.keys().copied().collect();
        ids.sort_unstable();
        ids.iter().map(|i| h[i].1.load(Ordering::SeqCst)).collect()
    }

    /// The process ids of the instances in rotation, with their start-order
    /// numbers.
    pub fn instance_pids(&self) -> Vec<(usize, u32)> {
        self.shared
            .instances
            .lock()
            .unwrap()
            .iter()
            .filter_map(|i| Some((i.id, i.child.as_ref()?.id()?)))
            .collect()
    }

    /// The most requests ever in flight to the instances at once (all
    /// instances together).
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }

    /// Requests answered by the front end itself (401, 403, 413, a reserved
    /// path's 404).
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// The captured output lines of instance `n` (start order), stdout and
    /// stderr interleaved.
    pub fn output(&self, n: usize) -> String {
        let h = self.shared.history.lock().unwrap();
        h.get(&n)
            .map(|(o, _)| o.lock().unwrap().join("\n"))
            .unwrap_or_default()
    }

    /// The output of every instance ever started.
    pub fn all_output(&self) -> String {
        let h = self.shared.history.lock().unwrap();
        let mut ids: Vec<_> = h.keys().copied().collect();
        ids.sort_unstable();
        ids.iter()
            .map(|i| h[i].0.lock().unwrap().join("\n"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn push_instance(
        &self,
        addr: SocketAddr,
        child: Option<Child>,
        output: Arc<Mutex<Vec<String>>>,
    ) {
        let id = self.shared.next_id.fetch_add(1, Ordering::SeqCst);
        let served = Arc::new(AtomicUsize::new(0));
        self.shared
            .history
            .lock()
            .unwrap()
            .insert(id, (output.clone(), served.clone()));
        self.shared.instances.lock().unwrap().push(Instance {
            id,
            addr,
            child,
            in_flight: Arc::default(),
            served,
            output,
        });
    }

    /// Starts or stops instances until `n` are in rotation. Stopping takes
    /// the newest instances out of rotation, then SIGTERM, then SIGKILL after
    /// the grace period; it returns how each ended.
    pub async fn scale_to(&self, n: usize) -> std::io::Result<Vec<Stopped>> {
        let mut stopped = Vec::new();
        loop {
            let count = self.instance_count();
            if count == n {
                return Ok(stopped);
            }
            if count < n {
                self.start_instance().await?;
            } else {
                let inst = self.shared.instances.lock().unwrap().pop();
                if let Some(inst) = inst {
                    if let Some(s) = stop_instance(inst, self.shared.cfg.shutdown_grace).await {
                        stopped.push(s);
                    }
                }
            }
        }
    }

    /// Kills instance `n` (start order) at once with SIGKILL, as a crash or
    /// an out-of-memory kill ends an instance: it leaves the rotation, and
    /// the requests it was serving answer 503. `None` when `n` is not in
    /// rotation or was not started by this front end.
    pub async fn kill_instance(&self, n: usize) -> Option<Stopped> {
        let inst = {
            let mut instances = self.shared.instances.lock().unwrap();
            let i = instances.iter().position(|i| i.id == n)?;
            instances.remove(i)
        };
        let mut inst = inst;
        let child = inst.child.as_mut()?;
        let t = Instant::now();
        let _ = child.start_kill();
        let status = child.wait().await.ok();
        Some(Stopped {
            code: status.and_then(|s| s.code()),
            killed: true,
            took: t.elapsed(),
        })
    }

    async fn start_instance(&self) -> std::io::Result<()> {
        let container = self
            .shared
            .container
            .clone()
            .ok_or_else(|| invalid("no container to start".into()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = &self.shared.cfg;
        let mut cmd = Command::new(&container.program);
        cmd.args(
            container
                .args
                .iter()
                .map(|a| a.replace("{PORT}", &port.to_string())),
        );
        if !container.inherit_env {
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        cmd.envs(container.env.iter().cloned())
            .env("PORT", port.to_string())
            .env("K_SERVICE", &cfg.service)
            .env("K_REVISION", &cfg.revision)
            .env("K_CONFIGURATION", &cfg.service)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output: Arc<Mutex<Vec<String>>> = Arc::default();
        match &container.output {
            Output::Capture => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            }
            Output::Inherit => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
            Output::File(p) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
        }
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", container.program.display()))
        })?;
        if let (Some(cpu), Some(pid)) = (cfg.cpu, child.id()) {
            if let Err(e) = cpu_limit::apply(pid, cpu) {
                let _ = child.start_kill();
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("the instance's CPU limit of {cpu} vCPU: {e}"),
                ));
            }
        }
        if let Some(out) = child.stdout.take() {
            capture(out, output.clone());
        }
        if let Some(err) = child.stderr.take() {
            capture(err, output.clone());
        }
        let deadline = Instant::now() + cfg.startup_timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "instance exited at start with {status}:\n{}",
                    output.lock().unwrap().join("\n")
                )));
            }
            let ready = match &cfg.startup_probe {
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
                Some(path) => self
                    .shared
                    .http
                    .get(format!("http://{addr}{path}"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.start_kill();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "instance not ready in {:?}:\n{}",
                        cfg.startup_timeout,
                        output.lock().unwrap().join("\n")
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.push_instance(addr, Some(child), output);
        Ok(())
    }
}

/// An instance's CPU quota, as Cloud Run gives each instance its own vCPUs.
mod cpu_limit {
    use std::path::{Path, PathBuf};

    /// The CFS period the quota is a share of.
    const PERIOD_US: u64 = 100_000;
    const PREFIX: &str = "bridge-cloudrun-";

    /// Moves process `pid` into a cgroup of its own limited to `cpu` CPUs.
    pub(super) fn apply(pid: u32, cpu: f64) -> std::io::Result<()> {
        if !cpu.is_finite() || cpu <= 0.0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the limit must be a number above 0",
            ));
        }
        let quota = ((cpu * PERIOD_US as f64).round() as u64).max(1_000);
        let v2 = Path::new("/sys/fs/cgroup");
        if v2.join("cgroup.controllers").exists() {
            let dir = fresh(v2, pid)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?;
            return std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        }
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let dir = fresh(v1, pid)?;
        std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
    }

    /// A new cgroup under `root` for `pid`, after removing the empty ones
    /// earlier instances left.
    fn fresh(root: &Path, pid: u32) -> std::io::Result<PathBuf> {
        if let Ok(entries) = std::fs::read_dir(root) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(PREFIX) {
                    // Fails, and is left, while a process is in it.
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        let dir = root.join(format!("{PREFIX}{pid}"));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

fn invalid(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, m)
}

fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}

/// SIGTERM, wait for the grace period, SIGKILL.
async fn stop_instance(mut inst: Instance, grace: Duration) -> Option<Stopped> {
    let child = inst.child.as_mut()?;
    let pid = child.id()?;
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let (status, killed) = match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => (s.ok(), false),
        Err(_) => {
            let _ = child.start_kill();
            (child.wait().await.ok(), true)
        }
    };
    Some(Stopped {
        code: status.and_then(|s| s.code()),
        killed,
        took: t.elapsed(),
    })
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut rx: watch::Receiver<()>) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = rx.changed() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut conn_rx = rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(shared, peer, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = conn_rx.changed() => {}
            }
        });
    }
    // Instances this front end started die with it (kill_on_drop).
    shared.instances.lock().unwrap().clear();
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    // Cloud Run's own refusals are small HTML pages.
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=UTF-8")
        .body(Body::from(format!(
            "<html><head><title>{} {}</title></head><body><h1>Error: {}</h1><h2>{text}</h2></body></html>\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            status.canonical_reason().unwrap_or("")
        )))
        .expect("response")
}

impl Shared {
    fn service_url(&self) -> String {
        self.cfg
            .url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.addr))
    }

    fn refuse(&self, status: StatusCode, text: &str) -> Response<Body> {
        self.refused.fetch_add(1, Ordering::SeqCst);
        plain(status, text)
    }

    async fn jwks(&self, force: bool) -> Result<Value, String> {
        if !force {
            if let Some((v, _)) = self.jwks.lock().unwrap().as_ref() {
                return Ok(v.clone());
            }
        } else if let Some((_, at)) = self.jwks.lock().unwrap().as_ref() {
            if at.elapsed() < Duration::from_secs(1) {
                return Err("no such key".into());
            }
        }
        let v: Value = self
            .http
            .get(&self.cfg.jwks_url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        *self.jwks.lock().unwrap() = Some((v.clone(), Instant::now()));
        Ok(v)
    }

    /// IAM: `Ok(Some((header, stripped value)))` for the header to rewrite.
    async fn authorize(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Option<(HeaderName, HeaderValue)>, (StatusCode, String)> {
        if self.cfg.invokers.iter().any(|m| m == "allUsers") {
            return Ok(None);
        }
        let forbidden = |m: &str| (StatusCode::FORBIDDEN, m.to_owned());
        let unauthorized = |m: &str| (StatusCode::UNAUTHORIZED, m.to_owned());
        let xsa = HeaderName::from_static("x-serverless-authorization");
        let (name, value) = match headers.get(&xsa) {
            Some(v) => (xsa, v),
            None => match headers.get(header::AUTHORIZATION) {
                Some(v) => (header::AUTHORIZATION, v),
                None => {
                    return Err(forbidden(
                        "Your client does not have permission to get URL from this server.",
                    ))
                }
            },
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
            .ok_or_else(|| {
                unauthorized("Your client does not have permission to the requested URL.")
            })?;
        let jwks = self
            .jwks(false)
            .await
            .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("JWKS: {e}")))?;
        let claims = match verify_with_jwks(&token, &jwks) {
            Err(VerifyError::UnknownKey(_)) => match self.jwks(true).await {
                Ok(jwks) => verify_with_jwks(&token, &jwks),
                Err(e) => Err(VerifyError::UnknownKey(e)),
            },
            other => other,
        }
        .map_err(|_| unauthorized("Your client does not have permission to the requested URL."))?;
        let iss_ok = claims["iss"]
            .as_str()
            .is_some_and(|i| GOOGLE_ISSUERS.contains(&i));
        let service_url = self.service_url();
        let aud_ok = |a: &str| {
            let a = a.trim_end_matches('/');
            a == service_url.trim_end_matches('/') || self.cfg.audiences.iter().any(|x| x == a)
        };
        let aud_ok = match &claims["aud"] {
            Value::String(a) => aud_ok(a),
            Value::Array(v) => v.iter().filter_map(Value::as_str).any(aud_ok),
            _ => false,
        };
        if !iss_ok || !aud_ok {
            return Err(unauthorized(
                "Your client does not have permission to the requested URL.",
            ));
        }
        let email = claims["email"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let invoker = !email.is_empty()
            && self.cfg.invokers.iter().any(|m| {
                let e = m
                    .strip_prefix("serviceAccount:")
                    .or_else(|| m.strip_prefix("user:"))
                    .unwrap_or(m);
                e.eq_ignore_ascii_case(&email)
            });
        if !invoker {
            return Err(forbidden(
                "Your client does not have permission to get URL from this server.",
            ));
        }
        let (head, _) = token.rsplit_once('.').expect("a verified JWT");
        let stripped = HeaderValue::from_str(&format!("Bearer {head}.{SIGNATURE_REMOVED}"))
            .expect("ASCII token");
        Ok(Some((name, stripped)))
    }

    fn pick(&self) -> Option<(usize, SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>)> {
        let inst = self.instances.lock().unwrap();
        if inst.is_empty() {
            return None;
        }
        let start = self.rr.fetch_add(1, Ordering::SeqCst);
        let n = inst.len();
        let best = (0..n)
            .map(|k| &inst[(start + k) % n])
            .min_by_key(|i| i.in_flight.load(Ordering::SeqCst))?;
        let _ = &best.output;
        Some((
            best.id,
            best.addr,
            best.in_flight.clone(),
            best.served.clone(),
        ))
    }
}

/// `(trace id, span id as decimal)` from the caller's headers, else new.
fn trace_of(headers: &http::HeaderMap) -> (String, u64) {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(tp) = get("traceparent") {
        let parts: Vec<&str> = tp.split('-').collect();
        if parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16 {
            if let Ok(span) = u64::from_str_radix(parts[2], 16) {
                return (parts[1].to_owned(), span);
            }
        }
    }
    if let Some(x) = get("x-cloud-trace-context") {
        let (trace, rest) = x.split_once('/').unwrap_or((x, ""));
        let span = rest.split(';').next().and_then(|s| s.parse().ok());
        if trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) {
            return (trace.to_owned(), span.unwrap_or(1));
        }
    }
    let span = u64::from_str_radix(&random_hex(8), 16).unwrap_or(1).max(1);
    (random_hex(16), span)
}

/// Paths Google's front end answers itself (Cloud Run's known issues:
/// `/eventlog`, paths under `/_ah/`, and some paths ending in `z`, of which
/// `/healthz` is the one seen in practice).
fn reserved_path(path: &str) -> bool {
    path == "/eventlog" || path.starts_with("/_ah/") || path == "/healthz"
}

async fn handle(shared: Arc<Shared>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, incoming) = req.into_parts();
    // 0. Paths that never reach a container.
    if reserved_path(parts.uri.path()) {
        return shared.refuse(
            StatusCode::NOT_FOUND,
            "The requested URL was not found on this server.",
        );
    }
    // 1. IAM.
    let rewrite = match shared.authorize(&parts.headers).await {
        Ok(r) => r,
        Err((status, text)) => return shared.refuse(status, &text),
    };
    if let Some((name, value)) = rewrite {
        parts.headers.insert(name, value);
    }
    // 4. The request size limit of HTTP/1.
    let limit = (!shared.cfg.http2).then_some(HTTP1_MAX_REQUEST_BYTES);
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(limit), Some(len)) = (limit, declared) {
        if len > limit {
            // Read what the client sends (and discard it), so that it gets
            // to read the answer rather than a reset.
            drain(incoming).await;
            return shared.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your client issued a request that was too large.",
            );
        }
    }
    // 3. Headers.
    let (trace, span) = trace_of(&parts.headers);
    let mut headers = http::HeaderMap::new();
    for (name, value) in parts.headers.iter() {
        if !is_hop_by_hop(name) && name != header::HOST {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{trace}/{span};o=1")) {
        headers.insert("x-cloud-trace-context", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("00-{trace}-{span:016x}-01")) {
        headers.insert("traceparent", v);
    }
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    // 5. An instance.
    let Some((_id, addr, in_flight, served)) = shared.pick() else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service has no instance to serve the request.",
        );
    };
    in_flight.fetch_add(1, Ordering::SeqCst);
    served.fetch_add(1, Ordering::SeqCst);
    let _done = InFlight(in_flight);
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    let _total = InFlight(shared.in_flight.clone());
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let uri: Uri = match format!("http://{addr}{path}").parse() {
        Ok(u) => u,
        Err(_) => return plain(StatusCode::BAD_REQUEST, "Bad request."),
    };
    let too_large = Arc::new(AtomicBool::new(false));
    let body = pump(incoming, limit, too_large.clone());
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(if shared.cfg.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        })
        .body(body)
        .expect("request");
    *up.headers_mut() = headers;
    if !shared.cfg.http2 {
        if let Some(h) = parts.headers.get(header::HOST) {
            up.headers_mut().insert(header::HOST, h.clone());
        }
    }
    let client = if shared.cfg.http2 {
        &shared.h2
    } else {
        &shared.h1
    };
    let deadline = tokio::time::Instant::now() + shared.cfg.request_timeout;
    let res = match tokio::time::timeout_at(deadline, client.request(up)).await {
        Err(_) => return plain(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        Ok(Err(_)) if too_large.load(Ordering::SeqCst) => {
            return shared.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Your client issued a request that was too large.",
            )
        }
        Ok(Err(e)) => {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("The request failed because the instance could not be reached: {e}"),
            )
        }
        Ok(Ok(r)) => r,
    };
    if too_large.load(Ordering::SeqCst) {
        return shared.refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Your client issued a request that was too large.",
        );
    }
    let (mut rparts, rbody) = res.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    let body = DeadlineBody {
        inner: rbody,
        sleep: Box::pin(tokio::time::sleep_until(deadline)),
    };
    Response::from_parts(rparts, Body::new(body))
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request over the HTTP/1 limit of 32 MiB")
    }
}

impl std::error::Error for TooLarge {}

/// Discards what is left of a request body (up to 1 GiB).
async fn drain(mut body: Incoming) {
    let mut seen: u64 = 0;
    while let Some(Ok(frame)) = body.frame().await {
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > 1 << 30 {
            break;
        }
    }
}

/// The request body as the instance receives it: frames passed on until the
/// body passes `limit`, then an error for the instance's side (the request
/// fails there and the front end answers 413) while the rest of what the
/// client sends is read and discarded, so that the client reads the answer.
fn pump(mut incoming: Incoming, limit: Option<u64>, tripped: Arc<AtomicBool>) -> UpBody {
    type Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;
    let (tx, rx) = tokio::sync::mpsc::channel::<Item>(4);
    tokio::spawn(async move {
        let mut seen: u64 = 0;
        let mut forwarding = true;
        while let Some(frame) = incoming.frame().await {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx.send(Err(Box::new(e))).await;
                    return;
                }
            };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if !forwarding {
                if seen > 1 << 30 {
                    return;
                }
                continue;
            }
            if limit.is_some_and(|l| seen > l) {
                tripped.store(true, Ordering::SeqCst);
                let _ = tx.send(Err(Box::new(TooLarge))).await;
                forwarding = false;
                continue;
            }
            if tx.send(Ok(frame)).await.is_err() {
                // The instance answered without reading all of it.
                forwarding = false;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

#[derive(Debug)]
struct DeadlinePassed;

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request timeout: response cut")
    }
}

impl std::error::Error for DeadlinePassed {}

/// The response body, cut at the request deadline.
struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(DeadlinePassed))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(Some(Ok(f))) => Poll::Ready(Some(Ok(f))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU time (user + system) of `pid` so far.
    fn cpu_time(pid: u32) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command's closing parenthesis; utime and stime
        // are the 14th and 15th of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    #[tokio::test]
    async fn an_instance_gets_only_its_vcpus() {
        let probe = std::path::Path::new("/sys/fs/cgroup");
        let writable = std::fs::create_dir(probe.join("cpu/bridge-cloudrun-probe"))
            .and_then(|()| std::fs::remove_dir(probe.join("cpu/bridge-cloudrun-probe")))
            .is_ok()
            || probe.join("cgroup.controllers").exists();
        if !writable {
            eprintln!("skipped: no writable cgroup cpu controller here");
            return;
        }
        // A container that listens on $PORT and spins two threads.
        let script = "import os, socket, threading\n\
            s = socket.socket(); s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen()\n\
            def spin():\n    while True: pass\n\
            [threading.Thread(target=spin, daemon=True).start() for _ in range(2)]\n\
            while True: s.accept()[0].close()\n";
        let mut container = Container::new("python3", Vec::new());
        container.args = vec!["-c".into(), script.into()];
        let cfg = CloudRunConfig {
            cpu: Some(0.1),
            ..CloudRunConfig::default()
        };
        let emu = CloudRunEmulator::start(cfg, container, 1).await.unwrap();
        let (_, pid) = emu.instance_pids()[0];
        let (t0, c0) = (Instant::now(), cpu_time(pid));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let used = cpu_time(pid) - c0;
        let wall = t0.elapsed();
        // Unlimited, the two threads would use up to 2 CPUs (GIL: about
        // one); at 0.1 vCPU, about a tenth of the wall time.
        assert!(
            used < wall / 4,
            "{used:?} of CPU in {wall:?} at a 0.1 vCPU limit"
        );
        emu.scale_to(0).await.unwrap();
    }
}
