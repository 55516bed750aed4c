//! A fast S3 stand-in for throughput measurements: it stores nothing.
//!
//! ```text
//! s3-sink [--port P] [--threads N] [--latency-ms MS]
//! ```
//!
//! Prints `READY 127.0.0.1:P` once listening, then serves HTTP/1.1 until SIGTERM
//! or SIGINT, then prints `COUNTS {"requests":N,"puts":N,"bytes":N}`.
//!
//! - `PUT /{bucket}/{key}` reads the whole body, then answers 200 with an
//!   `ETag` (a hash of the body length and a counter, not an MD5) and echoes
//!   `x-amz-checksum-crc32c` / `x-amz-checksum-crc32` when sent.
//! - `HEAD` answers 200 with `Content-Length: 0`, `GET` 200 with an empty body,
//!   `DELETE` 204.
//! - Anything else answers 501 with an S3 `<Error>` body.
//!
//! With `--latency-ms`, every answer waits that long after the request has
//! been read, without holding a thread: an S3 far away (S3 documents median
//! latencies of tens of milliseconds for small requests) whose capacity is
//! not the limit.
//!
//! Signatures are not checked, path-style and virtual-hosted addressing are
//! treated alike, and no state is kept. It exists because moto answers a few
//! hundred requests per second, too few to see a client's own overhead.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bridge_testkit::flags;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const USAGE: &str = "usage: s3-sink [--port P] [--threads N] [--latency-ms MS]";

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    puts: AtomicU64,
    bytes: AtomicU64,
}

fn main() -> ExitCode {
    let mut port: u16 = 0;
    let mut threads: usize = 0;
    let mut latency_ms: u64 = 0;
    let flags = match flags::parse(USAGE) {
        Ok(f) => f,
        Err(code) => return code,
    };
    for (name, value) in flags {
        let parsed = match name.as_str() {
            "--port" => flags::number(&name, &value).map(|p| port = p),
            "--threads" => flags::number(&name, &value).map(|n| threads = n),
            "--latency-ms" => flags::number(&name, &value).map(|n| latency_ms = n),
            other => return flags::unknown(other, USAGE),
        };
        if let Err(code) = parsed {
            return code;
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if threads > 0 {
        rt.worker_threads(threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(serve(port, Duration::from_millis(latency_ms)))
}

async fn serve(port: u16, latency: Duration) -> ExitCode {
    let listener = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cannot read the listening address: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install SIGTERM handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("READY {addr}");
    let _ = std::io::stdout().flush();
    let stats = Arc::new(Stats::default());
    loop {
        let accepted = tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = stats.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(stats.clone(), req, latency));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    println!(
        "COUNTS {{\"requests\":{},\"puts\":{},\"bytes\":{}}}",
        stats.requests.load(Ordering::Relaxed),
        stats.puts.load(Ordering::Relaxed),
        stats.bytes.load(Ordering::Relaxed)
    );
    ExitCode::SUCCESS
}

fn etag(len: u64, n: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in len.to_le_bytes().iter().chain(n.to_le_bytes().iter()) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}{:016x}\"", h.rotate_left(29) ^ n)
}

async fn handle(
    stats: Arc<Stats>,
    req: Request<Incoming>,
    latency: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = stats.requests.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let mut res = Response::new(Full::new(Bytes::new()));
    res.headers_mut()
        .insert("x-amz-request-id", HeaderValue::from(n));
    match method {
        Method::PUT => {
            let echo: Vec<_> = ["x-amz-checksum-crc32c", "x-amz-checksum-crc32"]
                .iter()
                .filter_map(|h| req.headers().get(*h).map(|v| (*h, v.clone())))
                .collect();
            let mut body = req.into_body();
            let mut len: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            len += d.len() as u64;
                        }
                    }
                    Err(_) => {
                        *res.status_mut() = StatusCode::BAD_REQUEST;
                        return Ok(res);
                    }
                }
            }
            stats.puts.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(len, Ordering::Relaxed);
            let h = res.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&etag(len, n)) {
                h.insert(header::ETAG, v);
            }
            for (name, value) in echo {
                h.insert(name, value);
            }
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        Method::HEAD | Method::GET => {
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        Method::DELETE => *res.status_mut() = StatusCode::NO_CONTENT,
        _ => {
            *res.status_mut() = StatusCode::NOT_IMPLEMENTED;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            *res.body_mut() = Full::new(Bytes::from_static(
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NotImplemented</Code><Message>s3-sink answers PUT, GET, HEAD and DELETE only</Message></Error>\n",
            ));
            return Ok(res);
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(res)
}
