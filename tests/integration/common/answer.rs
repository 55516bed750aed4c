//! One answer type for the tests that call the service, and the two ways
//! of getting one: through the router in this process ([`send`]) or over
//! HTTP with reqwest ([`send_http`]).

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error body; empty when there is none.
    pub fn code(&self) -> String {
        serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Asserts the status and the error code, showing the body and `what`
    /// when they differ.
    pub fn assert_code(&self, status: u16, code: &str, what: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code().as_str()),
            (status, code),
            "{what}: {}",
            self.text()
        );
    }

    /// Asserts the status and the `{"error":{"code","message"}}` shape
    /// (code in snake_case, a message); returns the code.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        let err = v["error"].as_object().expect("an error object");
        let code = err["code"].as_str().expect("error.code is a string");
        assert!(
            !code.is_empty()
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "error.code is snake_case: {code:?}"
        );
        assert!(
            !err["message"].as_str().expect("error.message").is_empty(),
            "error.message is set"
        );
        code.to_owned()
    }
}

/// Sends `req` through `router` in this process.
pub async fn send(router: &Router, req: Request<Body>) -> Answer {
    let resp = router.clone().oneshot(req).await.expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Sends `rb` over HTTP.
pub async fn send_http(rb: reqwest::RequestBuilder) -> Answer {
    let r = rb.send().await.expect("request sent");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("body read").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}
