//! A minimal HTTP/1.1 accept loop shared by the emulator and the proxy.
//!
//! Handlers may answer `Err(DropConnection)` to close the connection without
//! writing a response, which axum's own `serve` cannot do.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Returned by a handler to close the client connection without an answer.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> BoxFuture<Result<Response<Body>, DropConnection>> + Send + Sync,
>;

/// Stops the server (accept loop and open connections) when dropped or on
/// [`ServerGuard::shutdown`].
#[derive(Debug)]
pub(crate) struct ServerGuard {
    stop: watch::Sender<()>,
}

impl ServerGuard {
    pub(crate) fn shutdown(&self) {
        let _ = self.stop.send(());
    }
}

/// Serves `handler` on `listener` in a background task.
pub(crate) fn spawn(listener: TcpListener, handler: Handler) -> ServerGuard {
    let (stop, rx) = watch::channel(());
    tokio::spawn(accept_loop(listener, handler, rx));
    ServerGuard { stop }
}

async fn accept_loop(listener: TcpListener, handler: Handler, mut rx: watch::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            _ = rx.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer): (_, SocketAddr) = match accepted {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut conn_rx = rx.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| (handler)(req));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = conn_rx.changed() => {}
            }
        });
    }
}

/// Wraps an axum router (or any tower service) as a [`Handler`] step.
pub(crate) async fn call_router(router: axum::Router, req: Request<Incoming>) -> Response<Body> {
    use tower::ServiceExt;
    let res: Result<Response<Body>, Infallible> = router.oneshot(req.map(Body::new)).await;
    match res {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
