//! The HTTP server: HTTP/1.1 and HTTP/2 over cleartext (h2c, prior
//! knowledge, as Cloud Run sends it with `--use-http2`) on one port, with a
//! header-read timeout, HTTP/2 keep-alive pings, an idle timeout, and
//! graceful shutdown.
//!
//! `axum::serve` sets no timer on hyper's HTTP/1 builder, which leaves
//! hyper's header-read timeout inert: a client that sends half its headers
//! and stalls would hold a connection (and its memory) for ever. Here the
//! timer is set and [`HEADER_READ_TIMEOUT`] applies to every request head on a
//! connection, including the wait for the next request on a kept-alive one.
//!
//! While it serves, a timer fires every second ([`Tick`]), so that the
//! timers of each request do not wake the thread waiting on I/O.
//!
//! HTTP/2 has no such timeout: a peer that keeps a connection open and
//! sends no request (or not even the HTTP/2 preface) would hold it for
//! ever, and one that vanished without a FIN would never be noticed. So
//! every connection counts its requests in flight (until their response
//! bodies end) and is closed gracefully (HTTP/2 `GOAWAY`) once it has had
//! none for [`IDLE_TIMEOUT`]; a peer that does not finish the close within
//! [`KEEP_ALIVE_TIMEOUT`] is dropped. HTTP/2 connections are pinged every
//! [`KEEP_ALIVE_INTERVAL`] and closed when a ping is not answered within
//! [`KEEP_ALIVE_TIMEOUT`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::settings::{number, seconds};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::ServiceExt;

/// How long a client may take to send a request's head (request line and
/// headers) before its connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection may stay open with no request in flight. HTTP/2
/// closes with `GOAWAY`, so a request the peer sends meanwhile is refused
/// unprocessed and safe to send again; five minutes keeps a busy front
/// end's connections open between requests and frees an idle one soon.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often an HTTP/2 connection is pinged.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// How long an HTTP/2 ping (or a graceful close of an idle connection) may
/// take before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Server settings.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`KEEP_ALIVE_INTERVAL`].
    pub keep_alive_interval: Duration,
    /// See [`KEEP_ALIVE_TIMEOUT`].
    pub keep_alive_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            keep_alive_interval: KEEP_ALIVE_INTERVAL,
            keep_alive_timeout: KEEP_ALIVE_TIMEOUT,
        }
    }
}

/// The requests in flight on one connection, and since when it has had
/// none.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// How long the connection has had no request in flight, if so.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(since.elapsed())
    }

    /// Resolves once the connection has had no request in flight for
    /// `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            let wait = match self.idle_for() {
                Some(d) if d >= timeout => return,
                Some(d) => timeout - d,
                None => timeout,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One request in flight, until its response body ends or is dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut since = self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// A response body that keeps its request counted in flight.
struct Tracked {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops
/// accepting and waits for the connections in flight to finish their
/// requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(opts.keep_alive_interval)
        .keep_alive_timeout(opts.keep_alive_timeout);
    // Every connection holds a receiver: `closed` resolves once all ended.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let _tick = Tick::start();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let a = activity.clone();
        let router = router.clone();
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let busy = Busy::start(&a);
            let router = router.clone();
            async move {
                let resp = router.oneshot(req).await?;
                Ok::<_, Infallible>(resp.map(|body| Tracked { body, _busy: busy }))
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let stopping = stopping.clone();
        tokio::spawn(drive(conn, activity, opts, stopping));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(stopping);
    stop.closed().await;
}

/// Runs one connection until it ends: closed gracefully once it has been
/// idle for the idle timeout or the server stops, and dropped when a
/// graceful close finds no request in flight for the keep-alive timeout.
async fn drive<C>(
    conn: C,
    activity: Arc<Activity>,
    opts: ServeOptions,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = activity.idle(opts.idle_timeout) => None,
        _ = stopping.wait_for(|s| *s) => None,
    };
    let ended = match ended {
        Some(r) => r,
        None => {
            conn.as_mut().graceful_shutdown();
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = tokio::time::sleep(opts.keep_alive_timeout) => {
                        if activity.idle_for().is_some() {
                            tracing::debug!("connection dropped: its graceful close did not finish");
                            return;
                        }
                    }
                }
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!("connection ended: {e}");
    }
}

/// The HTTP listener (`server`, `app`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServerSettings {
    /// `PORT`: listen port on 0.0.0.0 (default 8080).
    #[serde(
        default = "default_port",
        deserialize_with = "number::<_, _, 0, 65535>"
    )]
    pub port: u16,
    /// `REQUEST_TIMEOUT_SECONDS`: per-request deadline, 1–3600 (default 300,
    /// Cloud Run's default).
    #[serde(
        rename = "request_timeout_seconds",
        default = "default_request_timeout",
        deserialize_with = "seconds::<_, 1, 3600>"
    )]
    pub(crate) request_timeout: Duration,
}

fn default_port() -> u16 {
    8080
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(300)
}

/// A timer that fires every [`TICK`] for as long as the server runs.
///
/// tokio's timer driver, when it waits on I/O with no timer pending, waits
/// without a deadline; a timer set then wakes that thread (an `eventfd`
/// write, a context switch) so that it waits again with one. The server
/// sets several timers per request (the header read, the request deadline,
/// the S3 read timeout), each of which would do so whenever it is the only
/// one. With this one always pending and due first, they do not.
///
/// Under tokio's paused clock (`start_paused`), an idle runtime moves the
/// clock to the next timer, so a server waiting for its first connection
/// would race the clock ahead a second at a time: `serve` runs in real
/// time (tests that pause time call the router directly).
struct Tick(tokio::task::JoinHandle<()>);

/// See [`Tick`].
const TICK: Duration = Duration::from_secs(1);

impl Tick {
    fn start() -> Tick {
        Tick(tokio::spawn(async {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
            }
        }))
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// The server's tick runs while it serves and stops with it.
    #[tokio::test]
    async fn the_tick_lives_as_long_as_the_server() {
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            Router::new(),
            ServeOptions::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        tokio::task::yield_now().await;
        assert_eq!(tasks(), 2, "the server and its tick");
        stop.send(()).unwrap();
        served.await.unwrap();
        for _ in 0..100 {
            if tasks() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(tasks(), 0, "the tick stopped with the server");
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    const SETTINGS_ACK: [u8; 9] = [0, 0, 0, 4, 1, 0, 0, 0, 0];
    const PING: u8 = 6;
    const GOAWAY: u8 = 7;

    /// Serves a router with `/slow` (answers after 1.5 s) and `/stream` (a
    /// body that takes 1.5 s) with a 500 ms idle timeout and a 1 s grace.
    async fn server() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    "done"
                }),
            )
            .route(
                "/stream",
                axum::routing::get(|| async {
                    let chunks = futures_util::stream::unfold(0, |n| async move {
                        if n == 3 {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Some((Ok::<_, Infallible>(bytes::Bytes::from("chunk")), n + 1))
                    });
                    axum::body::Body::from_stream(chunks)
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = ServeOptions {
            idle_timeout: Duration::from_millis(500),
            keep_alive_timeout: Duration::from_secs(1),
            ..ServeOptions::default()
        };
        tokio::spawn(serve(listener, router, opts, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads HTTP/2 frames until the server closes, acknowledging its
    /// settings and (when `pong`) its pings; the frame types seen.
    async fn frames_until_closed(s: &mut TcpStream, pong: bool) -> Vec<u8> {
        let mut types = Vec::new();
        let mut head = [0u8; 9];
        while s.read_exact(&mut head).await.is_ok() {
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                break;
            }
            let (kind, ack) = (head[3], head[4] & 1 == 1);
            types.push(kind);
            if kind == 4 && !ack {
                let _ = s.write_all(&SETTINGS_ACK).await;
            }
            if kind == PING && !ack && pong {
                let mut frame = vec![0, 0, 8, PING, 1, 0, 0, 0, 0];
                frame.extend_from_slice(&payload);
                let _ = s.write_all(&frame).await;
            }
        }
        types
    }

    #[tokio::test]
    async fn a_connection_without_requests_is_closed_after_the_idle_timeout() {
        let (addr, _stop) = server().await;
        let within = |t: Instant, lo: u64, hi: u64| {
            let took = t.elapsed();
            assert!(
                took >= Duration::from_millis(lo) && took < Duration::from_millis(hi),
                "closed after {took:?}"
            );
        };

        // A client that sends nothing, not even a preface.
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("closed")
            .unwrap();
        within(t, 400, 3000);
        assert!(buf.is_empty());

        // An h2c client that opens its connection and sends no request: a
        // GOAWAY, then the close.
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PREFACE).await.unwrap();
        s.write_all(&SETTINGS).await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), frames_until_closed(&mut s, true))
            .await
            .expect("closed");
        within(t, 400, 3000);
        assert!(seen.contains(&GOAWAY), "{seen:?}");

        // One that does not answer the close's ping is dropped after the
        // grace.
        let t = Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(PREFACE).await.unwrap();
        s.write_all(&SETTINGS).await.unwrap();
        let seen =
            tokio::time::timeout(Duration::from_secs(10), frames_until_closed(&mut s, false))
                .await
                .expect("closed");
        within(t, 1400, 5000);
        assert!(seen.contains(&GOAWAY), "{seen:?}");
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_not_idle() {
        let (addr, _stop) = server().await;
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        // An answer slower than the idle timeout.
        let r = h2.get(format!("http://{addr}/slow")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.text().await.unwrap(), "done");
        // A body that streams for longer than the idle timeout.
        let r = h2
            .get(format!("http://{addr}/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "chunkchunkchunk");
    }
}
