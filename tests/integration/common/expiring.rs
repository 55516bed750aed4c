//! A pass-through in front of the fault proxy that gives STS credentials
//! the lifetime a test asks for and refuses requests signed with
//! credentials past their `Expiration` (403 `ExpiredToken`), as AWS does:
//! moto issues credentials that never expire, so without this a client
//! that kept using old credentials would never be caught.
//!
//! It also records which access keys signed requests, so a test can check
//! that an SDK used exactly the credentials the credential server handed out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::response::IntoResponse;

#[derive(Default)]
struct State {
    upstream: String,
    http: reqwest::Client,
    /// Lifetime given to new STS credentials, seconds; 0 leaves moto's.
    lifetime: AtomicU64,
    /// Access key id -> expiry of every credential STS issued through here.
    issued: Mutex<HashMap<String, SystemTime>>,
    /// Access key id -> requests it signed.
    used: Mutex<HashMap<String, usize>>,
    expired_refusals: AtomicUsize,
}

/// Handle to the running pass-through.
#[derive(Clone)]
pub struct ExpiringAws {
    url: String,
    state: Arc<State>,
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<(usize, usize, &'a str)> {
    let a = text.find(open)? + open.len();
    let b = a + text[a..].find(close)?;
    Some((a, b, &text[a..b]))
}

/// The access key id of a SigV4-signed request (header or query).
fn access_key(headers: &http::HeaderMap, query: &str) -> Option<String> {
    let from = |s: &str| {
        s.split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .map(str::to_owned)
    };
    if let Some(a) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return from(a);
    }
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("X-Amz-Credential="))
        .map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .and_then(|v| v.split('/').next().map(str::to_owned))
}

impl ExpiringAws {
    /// Starts in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> ExpiringAws {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            ..State::default()
        });
        let s = state.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let s = s.clone();
            async move { forward(s, req).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        ExpiringAws { url, state }
    }

    /// `http://127.0.0.1:PORT`, the endpoint for STS and S3.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// New STS credentials live this long (`None`: as moto issues them).
    pub fn set_lifetime(&self, d: Option<Duration>) {
        self.state
            .lifetime
            .store(d.map_or(0, |d| d.as_secs()), Ordering::SeqCst);
    }

    /// Requests refused because their credentials had expired.
    pub fn expired_refusals(&self) -> usize {
        self.state.expired_refusals.load(Ordering::SeqCst)
    }

    /// Access keys STS issued through this proxy.
    pub fn issued(&self) -> HashMap<String, SystemTime> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Access keys that signed requests, with their request counts.
    pub fn used(&self) -> HashMap<String, usize> {
        self.state.used.lock().unwrap().clone()
    }
}

fn aws_error(status: u16, code: &str, message: &str) -> axum::response::Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>expiring-proxy</RequestId></ErrorResponse>"
    );
    let mut r = (http::StatusCode::from_u16(status).unwrap(), body).into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml"),
    );
    r
}

async fn forward(s: Arc<State>, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20).await.unwrap();
    let query = parts.uri.query().unwrap_or("");
    if let Some(key) = access_key(&parts.headers, query) {
        *s.used.lock().unwrap().entry(key.clone()).or_default() += 1;
        let expiry = s.issued.lock().unwrap().get(&key).copied();
        if expiry.is_some_and(|e| SystemTime::now() >= e) {
            s.expired_refusals.fetch_add(1, Ordering::SeqCst);
            return aws_error(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            );
        }
    }
    let is_assume = body
        .windows(b"AssumeRoleWithWebIdentity".len())
        .any(|w| w == b"AssumeRoleWithWebIdentity")
        || query.contains("AssumeRoleWithWebIdentity");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut rb = s
        .http
        .request(parts.method.clone(), format!("{}{path}", s.upstream));
    for (k, v) in &parts.headers {
        // Host stays as the client sent it: SigV4 signs it.
        if k != http::header::CONTENT_LENGTH
            && k != http::header::TRANSFER_ENCODING
            && k != http::header::CONNECTION
            && k != http::header::EXPECT
        {
            rb = rb.header(k, v);
        }
    }
    let resp = match rb.body(body).send().await {
        Ok(r) => r,
        Err(e) => return aws_error(502, "BadGateway", &e.to_string()),
    };
    let status = resp.status();
    let mut headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    let bytes = if is_assume && status.is_success() {
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        let lifetime = s.lifetime.load(Ordering::SeqCst);
        let rfc = &time::format_description::well_known::Rfc3339;
        if lifetime > 0 {
            if let Some((a, b, _)) = between(&text, "<Expiration>", "</Expiration>") {
                let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(lifetime as i64);
                let t = t.replace_nanosecond(0).unwrap().format(rfc).unwrap();
                text = format!("{}{t}{}", &text[..a], &text[b..]);
            }
        }
        if let (Some((_, _, key)), Some((_, _, exp))) = (
            between(&text, "<AccessKeyId>", "</AccessKeyId>"),
            between(&text, "<Expiration>", "</Expiration>"),
        ) {
            if let Ok(t) = time::OffsetDateTime::parse(exp, rfc) {
                s.issued
                    .lock()
                    .unwrap()
                    .insert(key.to_owned(), SystemTime::from(t));
            }
        }
        bytes::Bytes::from(text)
    } else {
        bytes
    };
    if parts.method != http::Method::HEAD {
        headers.remove(http::header::CONTENT_LENGTH);
    }
    headers.remove(http::header::TRANSFER_ENCODING);
    headers.remove(http::header::CONNECTION);
    let mut r = (status, bytes).into_response();
    for (k, v) in &headers {
        r.headers_mut().insert(k, v.clone());
    }
    r
}
