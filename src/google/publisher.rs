//! Publishing through the Pub/Sub REST API: the service's own tasks to
//! `TASKS_TOPIC` (`projects/P/topics/T`), so that work one request finds (a
//! sync page, the parts of a large object) is spread by Pub/Sub over as many
//! instances as the load calls for; and, for `gcp-aws-bridge sync`, a sync
//! command to the commands topic `PUBSUB_TOPIC`.
//!
//! ```text
//! TASKS_TOPIC=projects/my-project/topics/bridge-tasks
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085   # plain http, no token (as Google's libraries)
//! ```
//!
//! Messages are sent in batches of at most 1,000 messages and 10 MB per
//! `:publish` call (the API's limits). Transient failures (connect errors,
//! timeouts, 408, 429, 5xx) are retried with bounded full-jitter backoff;
//! this is the only retry layer around Pub/Sub. A token comes from gcp_auth
//! (the metadata server on Cloud Run) unless the emulator is used.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::retry::{is_transient_status, Backoff};
use crate::settings::number;
use crate::util::{error_chain, error_text, read_limited, AccessTokens};
use crate::wire::Task;
use serde::Deserialize;

const PUBSUB_ENDPOINT: &str = "https://pubsub.googleapis.com";
const PUBSUB_SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// Messages per `:publish` call (the API's limit).
pub(crate) const MAX_BATCH_MESSAGES: usize = 1000;
/// Request bytes per `:publish` call: the API takes 10 MB; the JSON
/// envelope of each message is counted too, with room to spare.
pub(crate) const MAX_BATCH_BYTES: usize = 9 * 1024 * 1024;
/// The largest answer to a `:publish` call read: 1,000 message ids of a
/// few dozen bytes each.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Why publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `TASKS_TOPIC` is not set.
    #[error("TASKS_TOPIC is not set: this work is spread over the service's own tasks")]
    NoTopic,
    /// One message is larger than a publish call may be.
    #[error("a message of {0} bytes is over the Pub/Sub limit")]
    TooLarge(usize),
    /// Pub/Sub refused or failed.
    #[error("Pub/Sub publish: {message}")]
    Failed {
        /// What happened (never a token).
        message: String,
        /// Whether trying again may succeed.
        transient: bool,
    },
}

/// Publishing's retry policy: five attempts, waits drawn with full jitter
/// below a ceiling that doubles from 250 ms to at most 4 s.
const PUBLISH_BACKOFF: Backoff = Backoff {
    max_attempts: 5,
    initial: Duration::from_millis(250),
    max_delay: Duration::from_secs(4),
};

/// A Pub/Sub publisher for one topic.
pub(crate) struct Publisher {
    http: reqwest::Client,
    base: String,
    topic: String,
    emulator: bool,
    access_tokens: AccessTokens,
    backoff: Backoff,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("base", &self.base)
            .field("topic", &self.topic)
            .field("emulator", &self.emulator)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `topic` on `pubsub.googleapis.com`, or on
    /// `emulator_host` (`host:port`, plain http, no token).
    pub(crate) fn new(topic: &str, emulator_host: Option<&str>) -> Publisher {
        let (base, emulator) = match emulator_host {
            Some(h) if h.starts_with("http://") || h.starts_with("https://") => {
                (h.trim_end_matches('/').to_owned(), true)
            }
            Some(h) => (format!("http://{}", h.trim_end_matches('/')), true),
            None => (PUBSUB_ENDPOINT.to_owned(), false),
        };
        Publisher {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(60))
                .user_agent(concat!("gcp-aws-bridge/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a TLS client with the built-in roots"),
            base,
            topic: topic.to_owned(),
            emulator,
            access_tokens: AccessTokens::new(PUBSUB_SCOPE),
            backoff: PUBLISH_BACKOFF,
        }
    }

    /// The publisher of the service's own tasks (`TASKS_TOPIC`), if any.
    pub(crate) fn tasks(settings: &PublisherSettings) -> Option<Publisher> {
        settings
            .tasks_topic
            .as_deref()
            .map(|t| Publisher::new(t, settings.emulator_host.as_deref()))
    }

    /// The publisher of the commands topic (`PUBSUB_TOPIC`), if any.
    pub(crate) fn commands(settings: &PublisherSettings) -> Option<Publisher> {
        settings
            .commands_topic
            .as_deref()
            .map(|t| Publisher::new(t, settings.emulator_host.as_deref()))
    }

    /// Replaces the retry policy (tests).
    #[cfg(test)]
    pub(crate) fn with_backoff(mut self, backoff: Backoff) -> Publisher {
        self.backoff = backoff;
        self
    }

    /// `projects/P/topics/T`.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    async fn authorize(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, PublishError> {
        if self.emulator {
            return Ok(req);
        }
        self.access_tokens
            .authorize(req)
            .await
            .map_err(|message| PublishError::Failed {
                message,
                transient: true,
            })
    }

    /// Publishes tasks, each one message (see [`Publisher::publish`]): a
    /// task is turned into its message only when its batch is built.
    pub(crate) async fn publish_tasks<I>(&self, tasks: I) -> Result<usize, PublishError>
    where
        I: IntoIterator,
        I::Item: std::borrow::Borrow<Task>,
    {
        use std::borrow::Borrow;
        self.publish(tasks.into_iter().map(|t| t.borrow().to_json()))
            .await
    }

    /// Publishes each message (its JSON as the data), in as few calls as the
    /// limits allow, taking the messages from `messages` one batch at a
    /// time: at most one batch (1,000 messages, 9 MiB) is held at once, and
    /// nothing after a failed batch is built. Returns the number published.
    /// On an error some batches may have been published: tasks are
    /// idempotent, so the caller answers non-2xx and the redelivery
    /// publishes again.
    pub(crate) async fn publish<I>(&self, messages: I) -> Result<usize, PublishError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut batch = Batch::new();
        let mut published = 0;
        // Each task continues the trace of the request that publishes it.
        let traceparent = crate::telemetry::current_traceparent();
        let tp = traceparent.as_deref();
        for msg in messages {
            let data = STANDARD.encode(msg.as_ref());
            let size = data.len() + 32 + tp.map_or(0, |t| t.len() + 32);
            if size > MAX_BATCH_BYTES {
                return Err(PublishError::TooLarge(size));
            }
            if batch.count == MAX_BATCH_MESSAGES || batch.bytes + size > MAX_BATCH_BYTES {
                let full = std::mem::replace(&mut batch, Batch::new());
                published += self.publish_batch(full).await?;
            }
            batch.push(&data, tp, size);
        }
        if batch.count > 0 {
            published += self.publish_batch(batch).await?;
        }
        Ok(published)
    }

    async fn publish_batch(&self, batch: Batch) -> Result<usize, PublishError> {
        let url = format!("{}/v1/{}:publish", self.base, self.topic);
        let count = batch.count;
        let body = batch.finish();
        let mut attempt = 1;
        loop {
            match self.publish_once(&url, body.clone(), count).await {
                Err(PublishError::Failed {
                    transient: true,
                    message,
                }) if attempt < self.backoff.max_attempts => {
                    tracing::debug!(attempt, "Pub/Sub publish failed, retrying: {message}");
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn publish_once(
        &self,
        url: &str,
        body: bytes::Bytes,
        count: usize,
    ) -> Result<usize, PublishError> {
        let req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let req = self.authorize(req).await?;
        let resp = req.send().await.map_err(|e| PublishError::Failed {
            message: format!("request failed: {}", error_chain(&e)),
            transient: true,
        })?;
        let status = resp.status().as_u16();
        if !resp.status().is_success() {
            let text = error_text(resp).await;
            return Err(PublishError::Failed {
                message: format!("HTTP {status}: {text}"),
                transient: is_transient_status(status),
            });
        }
        let body =
            read_limited(resp, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| PublishError::Failed {
                    message: format!("answer: {e}"),
                    transient: true,
                })?;
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default, rename = "messageIds")]
            message_ids: Vec<serde::de::IgnoredAny>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| PublishError::Failed {
            message: format!("unreadable answer: {e}"),
            transient: true,
        })?;
        let ids = answer.message_ids.len();
        if ids != count {
            return Err(PublishError::Failed {
                message: format!("{ids} message ids for {count} messages"),
                transient: true,
            });
        }
        Ok(count)
    }
}

/// The body of one `:publish` call, built as its messages come:
/// `{"messages":[{"data":"<base64>","attributes":{"traceparent":"…"}},…]}`
/// (base64 and a checked `traceparent` need no JSON escape).
struct Batch {
    body: Vec<u8>,
    count: usize,
    /// The bytes counted against [`MAX_BATCH_BYTES`].
    bytes: usize,
}

impl Batch {
    const HEAD: &'static [u8] = br#"{"messages":["#;

    fn new() -> Batch {
        Batch {
            body: Batch::HEAD.to_vec(),
            count: 0,
            bytes: 0,
        }
    }

    /// Adds a message whose data is `data` (base64), with a `traceparent`
    /// attribute when given (hex digits and dashes), counted as `size`.
    fn push(&mut self, data: &str, traceparent: Option<&str>, size: usize) {
        if self.count > 0 {
            self.body.push(b',');
        }
        self.body.extend_from_slice(br#"{"data":""#);
        self.body.extend_from_slice(data.as_bytes());
        self.body.push(b'"');
        if let Some(tp) = traceparent {
            self.body
                .extend_from_slice(br#","attributes":{"traceparent":""#);
            self.body.extend_from_slice(tp.as_bytes());
            self.body.extend_from_slice(br#""}"#);
        }
        self.body.push(b'}');
        self.count += 1;
        self.bytes += size;
    }

    fn finish(mut self) -> bytes::Bytes {
        self.body.extend_from_slice(b"]}");
        self.body.into()
    }
}

/// What the work that publishes tasks (sync pages, part tasks, orphan
/// removals) needs: the tasks publisher and its settings.
#[derive(Debug)]
pub(crate) struct Fanout {
    /// `TASKS_TOPIC`'s publisher, if set.
    pub(crate) tasks: Option<Publisher>,
    /// `PART_TASK_BYTES`.
    pub(crate) part_task_bytes: u64,
    /// Objects per sync page.
    pub(crate) page_size: usize,
    /// `SYNC_INLINE_BYTES`: objects smaller than this are copied by a sync
    /// page itself, and an event's object is written without a check first.
    pub(crate) inline_bytes: u64,
    /// How long a sync page starts inline copies; the objects left then go
    /// to replicate tasks, so a page ends well within its request's deadline.
    pub(crate) inline_window: Duration,
    /// How long a sync page's claim holds before another delivery may take
    /// it over: longer than any request may run.
    pub(crate) lease: Duration,
}

impl Default for Fanout {
    /// No tasks topic; the defaults of the settings.
    fn default() -> Fanout {
        Fanout {
            tasks: None,
            part_task_bytes: DEFAULT_PART_TASK_BYTES,
            page_size: 1000,
            inline_bytes: DEFAULT_SYNC_INLINE_BYTES,
            inline_window: Duration::from_secs(300 / 2),
            lease: Duration::from_secs(300 + 30),
        }
    }
}

impl Fanout {
    /// From the publisher's settings; a claim of work is taken over after
    /// `request_timeout` and 30 s more (no request lives longer). No
    /// outbound call.
    pub(crate) fn new(settings: &PublisherSettings, request_timeout: Duration) -> Fanout {
        Fanout {
            tasks: Publisher::tasks(settings),
            part_task_bytes: settings.part_task_bytes,
            page_size: settings.sync_page_size,
            inline_bytes: settings.sync_inline_bytes,
            inline_window: request_timeout / 2,
            lease: request_timeout + Duration::from_secs(30),
        }
    }

    /// The tasks publisher, or [`PublishError::NoTopic`].
    pub(crate) fn publisher(&self) -> Result<&Publisher, PublishError> {
        self.tasks.as_ref().ok_or(PublishError::NoTopic)
    }
}

/// Pub/Sub topics: the service's own tasks and the commands topic the
/// command line publishes to (`publisher`, `parts`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublisherSettings {
    /// `TASKS_TOPIC`: the topic of the service's own tasks
    /// (`projects/P/topics/T`): sync pages, replicate tasks, part tasks and
    /// orphan removals. Its push subscription delivers to `POST /tasks`.
    #[serde(rename = "tasks_topic")]
    pub(crate) tasks_topic: Option<String>,
    /// `PUBSUB_TOPIC`: the commands topic (the outside door) that
    /// `gcp-aws-bridge sync` publishes its sync command to. The service
    /// itself publishes only to `TASKS_TOPIC`.
    #[serde(rename = "pubsub_topic")]
    pub(crate) commands_topic: Option<String>,
    /// `PUBSUB_EMULATOR_HOST`: Pub/Sub endpoint override (`host:port`, plain
    /// http); no token is sent then.
    #[serde(rename = "pubsub_emulator_host")]
    pub(crate) emulator_host: Option<String>,
    /// `PART_TASK_BYTES`: objects of at least this size are replicated in
    /// parts, one task per part (default 1 GiB, at least 1 byte; the parts
    /// themselves are never smaller than S3 allows, see `PartPlan`).
    #[serde(
        default = "default_part_task_bytes",
        deserialize_with = "number::<_, _, 1, { u64::MAX }>"
    )]
    pub(crate) part_task_bytes: u64,
    /// `TEST_SYNC_PAGE_SIZE` (tests only): objects per sync page (default and
    /// most 1,000, Cloud Storage's and S3's page size).
    #[serde(
        rename = "test_sync_page_size",
        default = "default_sync_page_size",
        deserialize_with = "number::<_, _, 1, 1000>"
    )]
    pub(crate) sync_page_size: usize,
    /// `SYNC_INLINE_BYTES`: objects smaller than this are copied by the sync
    /// page itself (one Cloud Storage read, one S3 write, several at once
    /// within the buffer budget), and an event's object smaller than this is
    /// written without a check first (default 8 MiB; 0 to 64 MiB, 0 turns
    /// inline copies off).
    #[serde(
        default = "default_sync_inline_bytes",
        deserialize_with = "number::<_, _, 0, { MAX_SYNC_INLINE_BYTES }>"
    )]
    pub(crate) sync_inline_bytes: u64,
}

/// Default `PART_TASK_BYTES`: 1 GiB.
pub(crate) const DEFAULT_PART_TASK_BYTES: u64 = 1024 * 1024 * 1024;

/// Default `SYNC_INLINE_BYTES`: 8 MiB.
pub(crate) const DEFAULT_SYNC_INLINE_BYTES: u64 = 8 * 1024 * 1024;
/// The largest `SYNC_INLINE_BYTES`: one PutObject of bytes held whole.
pub(crate) const MAX_SYNC_INLINE_BYTES: u64 = 64 * 1024 * 1024;

fn default_sync_page_size() -> usize {
    1000
}

fn default_sync_inline_bytes() -> u64 {
    DEFAULT_SYNC_INLINE_BYTES
}

fn default_part_task_bytes() -> u64 {
    DEFAULT_PART_TASK_BYTES
}

impl PublisherSettings {
    pub(crate) fn validate(&self, errors: &mut Vec<String>) {
        for (name, topic) in [
            ("TASKS_TOPIC", &self.tasks_topic),
            ("PUBSUB_TOPIC", &self.commands_topic),
        ] {
            if let Some(t) = topic {
                if !is_topic_name(t) {
                    errors.push(format!(
                        "{name}: {t:?} is not a topic name (projects/PROJECT/topics/TOPIC)"
                    ));
                }
            }
        }
        if let (Some(tasks), Some(commands)) = (&self.tasks_topic, &self.commands_topic) {
            if tasks == commands {
                errors.push(format!(
                    "TASKS_TOPIC: {tasks:?} is also PUBSUB_TOPIC; the service's own tasks need a topic of their own, pushed to /tasks"
                ));
            }
        }
    }
}

/// Whether `topic` has the form `projects/P/topics/T`.
pub(crate) fn is_topic_name(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('/').collect();
    parts.len() == 4
        && parts[0] == "projects"
        && parts[2] == "topics"
        && !parts[1].is_empty()
        && !parts[3].is_empty()
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~+%".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::sync::Mutex;

    /// A Pub/Sub stand-in on 127.0.0.1 that fails the first `fail` calls
    /// with 503 and records the message count of every call.
    async fn stand_in(fail: usize) -> (String, Arc<Mutex<Vec<usize>>>, Arc<AtomicUsize>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (c, a) = (calls.clone(), attempts.clone());
        let app = axum::Router::new()
            .route(
                "/v1/projects/p/topics/{t}",
                axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                    let (c, a) = (c.clone(), a.clone());
                    async move {
                        let n = body["messages"].as_array().map_or(0, Vec::len);
                        if a.fetch_add(1, Ordering::SeqCst) < fail {
                            return (
                                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({})),
                            );
                        }
                        c.lock().unwrap().push(n);
                        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                        (
                            axum::http::StatusCode::OK,
                            axum::Json(serde_json::json!({ "messageIds": ids })),
                        )
                    }
                }),
            )
            // The API takes 10 MB.
            .layer(axum::extract::DefaultBodyLimit::max(10_000_000));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (host, calls, attempts)
    }

    fn quick() -> Backoff {
        Backoff {
            max_attempts: 3,
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn batches_stay_within_the_api_limits() {
        let (host, calls, _) = stand_in(0).await;
        let p = Publisher::new("projects/p/topics/t", Some(&host)).with_backoff(quick());
        let cmds: Vec<Vec<u8>> = (0..2500)
            .map(|i| {
                serde_json::json!({"op": "replicate", "bucket": "b", "name": i.to_string()})
                    .to_string()
                    .into_bytes()
            })
            .collect();
        assert_eq!(p.publish(&cmds).await.unwrap(), 2500);
        assert_eq!(*calls.lock().unwrap(), vec![1000, 1000, 500]);
        // 40 messages of about 600 KiB: at most 9 MiB per call.
        calls.lock().unwrap().clear();
        let big: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                serde_json::json!({"op": "put", "key": "k", "body": "x".repeat(450_000)})
                    .to_string()
                    .into_bytes()
            })
            .collect();
        assert_eq!(p.publish(&big).await.unwrap(), 40);
        let sizes = calls.lock().unwrap().clone();
        assert!(
            sizes.len() >= 3 && sizes.iter().sum::<usize>() == 40,
            "{sizes:?}"
        );
        assert!(
            sizes.iter().all(|n| *n * 600_000 <= MAX_BATCH_BYTES),
            "{sizes:?}"
        );
    }

    #[tokio::test]
    async fn transient_failures_are_retried_a_bounded_number_of_times() {
        let (host, calls, attempts) = stand_in(2).await;
        let p = Publisher::new("projects/p/topics/t", Some(&host)).with_backoff(quick());
        let cmd = [br#"{"op":"sync","bucket":"b"}"#.to_vec()];
        assert_eq!(p.publish(&cmd).await.unwrap(), 1);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(*calls.lock().unwrap(), vec![1]);

        let (host, _, attempts) = stand_in(usize::MAX).await;
        let p = Publisher::new("projects/p/topics/t", Some(&host)).with_backoff(quick());
        let e = p.publish(&cmd).await.unwrap_err();
        assert!(
            matches!(
                e,
                PublishError::Failed {
                    transient: true,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        let app: crate::http::error::AppError = e.into();
        assert_eq!(
            (app.status().as_u16(), app.code().as_str()),
            (503, "publish_failed")
        );
    }

    #[tokio::test]
    async fn tasks_are_built_and_published_one_batch_at_a_time() {
        // A stand-in that notes, at each call, how many messages had been
        // built so far, and fails (400) from call `fail_at` on.
        let built = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (b, s) = (built.clone(), seen.clone());
        let fail_at = 3;
        let app = axum::Router::new()
            .route(
                "/v1/projects/p/topics/{t}",
                axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                    let (b, s) = (b.clone(), s.clone());
                    async move {
                        let n = body["messages"].as_array().map_or(0, Vec::len);
                        let mut s = s.lock().unwrap();
                        s.push((n, b.load(Ordering::SeqCst)));
                        if s.len() >= fail_at {
                            return (
                                axum::http::StatusCode::BAD_REQUEST,
                                axum::Json(serde_json::json!({"error": "x".repeat(100_000)})),
                            );
                        }
                        let ids: Vec<String> = (0..n).map(|i| i.to_string()).collect();
                        (
                            axum::http::StatusCode::OK,
                            axum::Json(serde_json::json!({ "messageIds": ids })),
                        )
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(10_000_000));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let p = Publisher::new("projects/p/topics/t", Some(&host)).with_backoff(quick());
        let b = built.clone();
        // As many as the parts of an upload can be.
        let tasks = (0..10_000).map(move |i| {
            b.fetch_add(1, Ordering::SeqCst);
            format!(r#"{{"op":"replicate_part","part_number":{i}}}"#).into_bytes()
        });
        let e = p.publish(tasks).await.unwrap_err();
        // The third call failed: nothing after it was built or sent.
        assert!(
            matches!(&e, PublishError::Failed { transient: false, message } if message.len() < 400),
            "{e}"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(1000, 1001), (1000, 2001), (1000, 3001)],
            "(messages, built when sent)"
        );
        assert_eq!(built.load(Ordering::SeqCst), 3001);
    }
}
