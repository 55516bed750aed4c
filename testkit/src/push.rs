//! Authenticated push, as Pub/Sub and Eventarc send it: a forwarder that adds
//! `Authorization: Bearer <Google ID token>` to every request and passes it
//! on to a target (the Cloud Run front end), answering what the target
//! answered.
//!
//! The Pub/Sub emulator pushes without any token; a real push subscription
//! with `oidc_token { service_account_email, audience }` sends an ID token
//! of that account with `aud` = the audience (default: the push endpoint
//! URL), which the Pub/Sub service agent mints through IAM Credentials
//! `generateIdToken`. This shim does the same against the metadata
//! emulator: an access token from its metadata server, then
//! `generateIdToken` for the push account (`email`, `email_verified`, `sub` =
//! `azp` = a unique id of that account), cached until 5 minutes before it
//! expires. Eventarc delivers to Cloud Run the same way with its trigger's
//! service account and `aud` = the service URL.
//!
//! Point the Pub/Sub emulator's `pushEndpoint` at `{shim}/pubsub`; the shim
//! forwards to `{target}/pubsub`.
//!
//! The emulator pushes one message at a time per subscription (its push
//! loop pulls one message, posts it, waits for the answer, acknowledges,
//! then takes the next), so a push subscription on it never has two
//! deliveries in flight, whatever the number of instances behind the
//! endpoint; real Pub/Sub pushes many at once. [`PushShim::pump`] stands in
//! for that: it pulls a *pull* subscription of the emulator and delivers up
//! to a fixed number of messages at once through the shim, acknowledging
//! each on 2xx and making it available again after a second otherwise.
//!
//! Not emulated: Pub/Sub's push backoff and flow control (the emulator's
//! own apply; the pump's concurrency is fixed), the `From`/`User-Agent`
//! headers Google's pushers send, and Eventarc's own retries (a test that
//! acts as Eventarc posts to the shim).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderName};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::keys::{decode_claims_unverified, now_secs};
use crate::server::{self, DropConnection, ServerGuard};

/// What the shim adds and where it forwards.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// Base URL requests are forwarded to (`http://127.0.0.1:PORT`).
    pub target: String,
    /// The account whose token is sent (the subscription's
    /// `oidc_token.service_account_email`, or the Eventarc trigger's).
    pub service_account: String,
    /// `aud` of the token; `None`: the URL the request is forwarded to, as
    /// Pub/Sub does without an explicit audience.
    pub audience: Option<String>,
    /// The metadata emulator's base URL (`http://127.0.0.1:PORT`), which
    /// mints the tokens.
    pub metadata_url: String,
}

struct Shared {
    cfg: PushConfig,
    http: reqwest::Client,
    tokens: Mutex<HashMap<String, (String, i64)>>,
    statuses: Mutex<Vec<u16>>,
    minted: AtomicUsize,
    /// One mint at a time; the others wait for its token.
    mint_lock: tokio::sync::Mutex<()>,
}

/// A running shim. Clones share it; it stops when the last is dropped.
#[derive(Clone)]
pub struct PushShim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _guard: Arc<ServerGuard>,
}

impl std::fmt::Debug for PushShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushShim")
            .field("addr", &self.addr)
            .field("service_account", &self.shared.cfg.service_account)
            .finish_non_exhaustive()
    }
}

impl PushShim {
    /// Starts on `127.0.0.1:0`.
    pub async fn start(cfg: PushConfig) -> PushShim {
        PushShim::start_on(cfg, ([127, 0, 0, 1], 0).into())
            .await
            .expect("bind 127.0.0.1:0")
    }

    /// Starts on `addr`.
    pub async fn start_on(cfg: PushConfig, addr: SocketAddr) -> std::io::Result<PushShim> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()
                .expect("HTTP client"),
            tokens: Mutex::new(HashMap::new()),
            statuses: Mutex::new(Vec::new()),
            minted: AtomicUsize::new(0),
            mint_lock: tokio::sync::Mutex::new(()),
        });
        let s = shared.clone();
        let handler: server::Handler = Arc::new(move |req| Box::pin(handle(s.clone(), req)));
        let guard = Arc::new(server::spawn(listener, handler));
        Ok(PushShim {
            shared,
            addr,
            _guard: guard,
        })
    }

    /// `http://127.0.0.1:PORT`: the push endpoint's base.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The status the target answered to each delivery, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.shared.statuses.lock().unwrap().clone()
    }

    /// ID tokens minted so far.
    pub fn tokens_minted(&self) -> usize {
        self.shared.minted.load(Ordering::SeqCst)
    }

    /// Delivers the messages of `subscription` (`projects/P/subscriptions/S`,
    /// a pull subscription on the emulator at `emulator`, `host:port`) to
    /// `{target}/pubsub` as push requests with the token, up to
    /// `concurrency` at a time, until the returned task is aborted. A
    /// message answered 2xx is acknowledged; any other answer makes it
    /// available again after a second (the subscription's minimum backoff).
    pub fn pump(
        &self,
        emulator: &str,
        subscription: &str,
        concurrency: usize,
    ) -> tokio::task::JoinHandle<()> {
        self.pump_to(emulator, subscription, "/pubsub", concurrency)
    }

    /// As [`PushShim::pump`], delivering to `{target}{path}` (e.g. `/tasks`).
    pub fn pump_to(
        &self,
        emulator: &str,
        subscription: &str,
        path: &str,
        concurrency: usize,
    ) -> tokio::task::JoinHandle<()> {
        let base = format!("http://{emulator}/v1/{subscription}");
        let push = format!("{}{path}", self.url());
        let subscription = subscription.to_owned();
        let http = reqwest::Client::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            loop {
                let free = slots.available_permits();
                if free == 0 {
                    let _ = slots.acquire().await.map(drop);
                    continue;
                }
                let pulled = pull(&http, &base, free).await;
                if pulled.is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                for received in pulled {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (http, base, push, subscription) = (
                        http.clone(),
                        base.clone(),
                        push.clone(),
                        subscription.clone(),
                    );
                    tokio::spawn(async move {
                        deliver(&http, &base, &push, &subscription, received).await;
                        drop(permit);
                    });
                }
            }
        })
    }
}

/// Up to `max` messages of the subscription at `base`, without waiting.
async fn pull(http: &reqwest::Client, base: &str, max: usize) -> Vec<Value> {
    let r = http
        .post(format!("{base}:pull"))
        .json(&json!({ "maxMessages": max, "returnImmediately": true }))
        .send()
        .await;
    let Ok(r) = r else { return Vec::new() };
    let v: Value = r.json().await.unwrap_or_default();
    v["receivedMessages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Posts one received message as the emulator's push body, then
/// acknowledges it or makes it available again.
async fn deliver(
    http: &reqwest::Client,
    base: &str,
    push: &str,
    subscription: &str,
    received: Value,
) {
    let ack_id = received["ackId"].as_str().unwrap_or_default().to_owned();
    let m = &received["message"];
    let body = json!({
        "message": {
            "data": m["data"],
            "attributes": m.get("attributes").cloned().unwrap_or_else(|| json!({})),
            "messageId": m["messageId"],
            "message_id": m["messageId"],
            "publishTime": m["publishTime"],
            "publish_time": m["publishTime"],
        },
        "subscription": subscription,
    });
    let ok = http
        .post(push)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    let r = if ok {
        http.post(format!("{base}:acknowledge"))
            .json(&json!({ "ackIds": [ack_id] }))
    } else {
        http.post(format!("{base}:modifyAckDeadline"))
            .json(&json!({ "ackIds": [ack_id], "ackDeadlineSeconds": 1 }))
    };
    let _ = r.send().await;
}

impl Shared {
    fn cached(&self, audience: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        let (t, exp) = tokens.get(audience)?;
        (*exp - 300 > now_secs()).then(|| t.clone())
    }

    async fn token(&self, audience: &str) -> Result<String, String> {
        if let Some(t) = self.cached(audience) {
            return Ok(t);
        }
        let _one = self.mint_lock.lock().await;
        if let Some(t) = self.cached(audience) {
            return Ok(t);
        }
        let base = self.cfg.metadata_url.trim_end_matches('/');
        let access: Value = self
            .http
            .get(format!(
                "{base}/computeMetadata/v1/instance/service-accounts/default/token"
            ))
            .header("metadata-flavor", "Google")
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("access token: {e}"))?
            .json()
            .await
            .map_err(|e| format!("access token: {e}"))?;
        let access = access["access_token"].as_str().unwrap_or_default();
        let r: Value = self
            .http
            .post(format!(
                "{base}/v1/projects/-/serviceAccounts/{}:generateIdToken",
                self.cfg.service_account
            ))
            .bearer_auth(access)
            .json(&json!({ "audience": audience, "includeEmail": true }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("generateIdToken: {e}"))?
            .json()
            .await
            .map_err(|e| format!("generateIdToken: {e}"))?;
        let token = r["token"]
            .as_str()
            .ok_or("generateIdToken: no token")?
            .to_owned();
        let exp = decode_claims_unverified(&token)
            .and_then(|c| c["exp"].as_i64())
            .unwrap_or(0);
        self.minted.fetch_add(1, Ordering::SeqCst);
        self.tokens
            .lock()
            .unwrap()
            .insert(audience.to_owned(), (token.clone(), exp));
        Ok(token)
    }
}

fn skip(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host"
            | "authorization"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let url = format!("{}{path}", shared.cfg.target.trim_end_matches('/'));
    let audience = shared.cfg.audience.clone().unwrap_or_else(|| url.clone());
    let answer = |status: StatusCode, text: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from(text))
            .expect("response")
    };
    let token = match shared.token(&audience).await {
        Ok(t) => t,
        Err(e) => {
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("push shim: {e}\n"),
            ))
        }
    };
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };
    let mut rb = shared
        .http
        .request(parts.method.clone(), &url)
        .bearer_auth(token)
        .body(bytes);
    for (name, value) in parts.headers.iter() {
        if !skip(name) {
            rb = rb.header(name, value);
        }
    }
    let res = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            shared.statuses.lock().unwrap().push(502);
            return Ok(answer(
                StatusCode::BAD_GATEWAY,
                format!("push shim: {url}: {e}\n"),
            ));
        }
    };
    let status = res.status();
    shared.statuses.lock().unwrap().push(status.as_u16());
    let mut out = Response::builder().status(status);
    for (name, value) in res.headers() {
        if !skip(name) {
            out = out.header(name, value);
        }
    }
    let body = res.bytes().await.unwrap_or_default();
    Ok(out.body(Body::from(body)).expect("response"))
}
