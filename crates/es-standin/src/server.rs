//! HTTP/1.1 with hyper: accept loop, one task per connection, graceful shutdown on a
//! [`CancellationToken`] (mini-redis `server::run(listener, shutdown)`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::StandinError;
use crate::rest::{self, RestRequest};
use crate::standin::{AuthScheme, Reply, Standin};
use crate::wire::ErrorCause;

/// Serves `standin` on `listener` until `shutdown` is cancelled, then lets the open
/// connections finish the request in hand and returns. Accept errors (e.g. out of file
/// descriptors) are logged and retried after a pause; they do not stop the server.
pub async fn serve(listener: TcpListener, standin: Standin, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::from_millis(10);
                accepted
            }
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        connections.spawn(serve_connection(
            stream,
            peer,
            standin.clone(),
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    standin: Standin,
    shutdown: CancellationToken,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let service = service_fn(move |request| {
        let standin = standin.clone();
        async move { Ok::<_, Infallible>(handle(&standin, request).await) }
    });
    let connection = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn handle(standin: &Standin, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let head = parts.method == Method::HEAD;
    standin.record_request(AuthScheme::of(
        parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes),
    ));
    let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
    let reply = if !standin.config().authenticates(authorization) {
        Reply::error(
            401,
            ErrorCause::new(
                "security_exception",
                format!(
                    "unable to authenticate user for REST request [{}]",
                    parts.uri.path()
                ),
            ),
        )
    } else {
        match read_body(standin, &parts.headers, body).await {
            Ok(body) => match signature_refused(standin, &parts, &body) {
                Some(reply) => reply,
                None => rest::route(
                    standin,
                    RestRequest {
                        method: &parts.method,
                        path: parts.uri.path(),
                        query: parts.uri.query(),
                        body,
                    },
                ),
            },
            Err(reply) => reply,
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    tracing::debug!(
        method = %parts.method,
        path = parts.uri.path(),
        status = reply.status,
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response(reply, head)
}

/// With `--aws-sigv4`: the 403 a request without a valid signature gets, as Amazon
/// OpenSearch Service answers it (`{"message": …}`).
fn signature_refused(
    standin: &Standin,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
) -> Option<Reply> {
    let key = standin.config().sigv4.as_ref()?;
    let host = parts
        .headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let url = format!(
        "http://{host}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let received = crate::sigv4::Received {
        method: parts.method.as_str(),
        url: &url,
        headers,
        body,
    };
    let refused = crate::sigv4::verify(&received, key, Some(std::time::SystemTime::now())).err()?;
    tracing::info!(path = parts.uri.path(), reason = %refused, "SigV4 signature refused");
    Some(Reply::json(403, &serde_json::json!({"message": refused})))
}

async fn read_body(
    standin: &Standin,
    headers: &hyper::HeaderMap,
    body: Incoming,
) -> Result<Bytes, Reply> {
    let max = standin.config().max_body_bytes;
    let too_large = || {
        Reply::error(
            413,
            ErrorCause::new(
                "content_too_long_exception",
                format!("request body is larger than the limit of [{max}] bytes"),
            ),
        )
    };
    if let Some(encoding) = headers.get(CONTENT_ENCODING)
        && encoding.as_bytes() != b"identity"
    {
        return Err(Reply::error(
            400,
            ErrorCause::new(
                "illegal_argument_exception",
                "chief-es-standin does not decompress request bodies (Content-Encoding)",
            ),
        ));
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(Reply::error(
            400,
            ErrorCause::new(
                "illegal_argument_exception",
                format!("cannot read the request body: {error}"),
            ),
        )),
    }
}

fn response(reply: Reply, head: bool) -> Response<Full<Bytes>> {
    let body = if head { Bytes::new() } else { reply.body };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    // The header Elasticsearch 7.14+ sends and its 8.x clients check for.
    headers.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

/// A stand-in serving on its own task: what tests start on `127.0.0.1:0`. Dropping it
/// stops the server.
#[derive(Debug)]
pub struct RunningStandin {
    addr: SocketAddr,
    standin: Standin,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningStandin {
    /// Binds `addr` (e.g. `127.0.0.1:0`) and serves `standin` there on a new task.
    ///
    /// # Errors
    /// [`StandinError::Bind`] when the address cannot be bound.
    pub async fn start(addr: &str, standin: Standin) -> Result<Self, StandinError> {
        let bind_error = |source| StandinError::Bind {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, standin.clone(), shutdown.clone()));
        Ok(Self {
            addr,
            standin,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its state, for assertions and fault set-up without HTTP.
    pub fn standin(&self) -> &Standin {
        &self.standin
    }

    /// Stops accepting, lets open requests finish, and waits for the server task.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Err(error) = (&mut self.task).await {
            tracing::warn!(%error, "the stand-in's server task failed");
        }
    }
}

impl Drop for RunningStandin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
