//! Health of a long-running binary, and the HTTP endpoint that serves it with the metrics.
//!
//! [`Health`] is a set of named checks that the parts of a process keep up to date (the
//! consumer: lease table reachable, shards not failing, not too far behind; a binary: its
//! own). [`serve`] answers, on one `host:port`:
//! - `GET /healthz`: `200 ok` while the process serves at all (liveness);
//! - `GET /readyz`: `200` when every check passes, else `503` with one line per failing
//!   check (`name: reason`) — what a load balancer or an alarm reads;
//! - `GET /metrics`: the Prometheus text exposition of every metric of the process.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Named readiness checks, shared by every part of a process (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Health {
    failing: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Health {
    /// No failing check: ready.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, String>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Check `name` fails, for `reason` (replaces an earlier reason).
    pub fn fail(&self, name: impl Into<String>, reason: impl Into<String>) {
        self.lock().insert(name.into(), reason.into());
    }

    /// Check `name` passes (or no longer exists).
    pub fn pass(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Removes every check whose name starts with `prefix` (a part that ended).
    pub fn pass_all(&self, prefix: &str) {
        self.lock().retain(|name, _| !name.starts_with(prefix));
    }

    /// Whether every check passes.
    pub fn is_ready(&self) -> bool {
        self.lock().is_empty()
    }

    /// The failing checks: `(name, reason)`, by name.
    pub fn failing(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect()
    }
}

/// Renders the metrics of the process in the Prometheus text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// The running endpoint: serves until [`Endpoint::stop`] (or the runtime ends).
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Endpoint {
    /// The address it listens on (the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve /healthz, /readyz and /metrics on {addr}: {source}")]
pub struct EndpointError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What went wrong (port in use, no permission).
    #[source]
    pub source: std::io::Error,
}

/// Starts serving `/healthz`, `/readyz` (from `health`) and `/metrics` (from `render`) on
/// `addr`. Must run inside a tokio runtime.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    addr: SocketAddr,
    health: Health,
    render: RenderMetrics,
) -> Result<Endpoint, EndpointError> {
    let error = |source| EndpointError { addr, source };
    let std_listener = std::net::TcpListener::bind(addr).map_err(error)?;
    std_listener.set_nonblocking(true).map_err(error)?;
    let bound = std_listener.local_addr().map_err(error)?;
    let listener = TcpListener::from_std(std_listener).map_err(error)?;
    let stop = CancellationToken::new();
    tokio::spawn(accept_loop(listener, health, render, stop.clone()));
    Ok(Endpoint { addr: bound, stop })
}

async fn accept_loop(
    listener: TcpListener,
    health: Health,
    render: RenderMetrics,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "health endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (health, render) = (health.clone(), render.clone());
        connections.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&request, &health, &render);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "health endpoint: connection ended");
            }
        });
    }
    connections.close();
}

fn respond(
    request: &Request<Incoming>,
    health: &Health,
    render: &RenderMetrics,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let failing = health.failing();
            if failing.is_empty() {
                text(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                let body: String = failing
                    .iter()
                    .map(|(name, reason)| format!("{name}: {reason}\n"))
                    .collect();
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", body)
            }
        }
        "/metrics" => text(StatusCode::OK, "text/plain; version=0.0.4", render()),
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: /healthz, /readyz, /metrics\n".into(),
        ),
    }
}
