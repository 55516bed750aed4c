//! A minimal round-robin front end for several service processes, standing
//! in for the Cloud Run front end (which spreads requests over instances)
//! in the tests that need more than one instance. It forwards each request
//! whole to the next upstream; an upstream that refuses the connection (a
//! killed instance) is skipped, as Cloud Run stops routing to a dead
//! instance; a request cut off by an instance that dies answers 502, which
//! Pub/Sub redelivers. It does not emulate Cloud Run's IAM check, deadlines
//! or headers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Clone, Default)]
struct Shared {
    upstreams: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
    served: Arc<Mutex<Vec<usize>>>,
    http: reqwest::Client,
}

/// The front end, listening on 127.0.0.1.
pub struct Front {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Front {
    pub async fn start() -> Front {
        let shared = Shared::default();
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Front { url, shared, task }
    }

    /// Replaces the instances requests are spread over.
    pub fn set_upstreams(&self, urls: Vec<String>) {
        *self.shared.served.lock().unwrap() = vec![0; urls.len()];
        *self.shared.upstreams.lock().unwrap() = urls;
    }

    /// Requests handed to each upstream, in `set_upstreams` order.
    pub fn dispatched(&self) -> Vec<usize> {
        self.shared.served.lock().unwrap().clone()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let upstreams = s.upstreams.lock().unwrap().clone();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    for _ in 0..upstreams.len() {
        let i = s.next.fetch_add(1, Ordering::SeqCst) % upstreams.len();
        let mut r = s
            .http
            .request(parts.method.clone(), format!("{}{path}", upstreams[i]))
            .body(bytes.clone());
        for (k, v) in &parts.headers {
            if k != "host" && k != "content-length" {
                r = r.header(k, v);
            }
        }
        if let Some(n) = s.served.lock().unwrap().get_mut(i) {
            *n += 1;
        }
        let resp = match r.send().await {
            Ok(resp) => resp,
            // A dead instance: try the next one.
            Err(e) if e.is_connect() => continue,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let Ok(body) = resp.bytes().await else {
            return StatusCode::BAD_GATEWAY.into_response();
        };
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = status;
        for (k, v) in &headers {
            if k != "content-length" && k != "transfer-encoding" {
                out.headers_mut().insert(k, v.clone());
            }
        }
        return out;
    }
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}
