//! The web server: `GET /` the page (and `/app.js`, served by the binary: no CDN, the
//! page works offline), `GET /events` Server-Sent Events, `GET /api/summary` the state as
//! JSON, `GET /healthz` (liveness), `GET /readyz` (readiness), `GET /metrics` (the
//! process's Prometheus metrics) — the last three as on `[metrics] listen`.
//!
//! `/events`: a browser with no `Last-Event-ID` (or one from another run, or older than
//! the kept events) first gets a `snapshot` event (the whole state); one that reconnects
//! with `Last-Event-ID` gets exactly the `update` events after it. Every event has an
//! `id:`. Each browser has a bounded queue (`client_queue` events): one that falls behind
//! it is sent `reload` and disconnected, and never slows the consumer down. With
//! `sse_max_age_s`, a connection is closed after that long (the browser reconnects
//! where it left off; behind a load balancer this spreads browsers over instances).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chief_config::health::Health;
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::state::{Board, Event, Start};

/// How soon a browser reconnects after its stream ended (`retry:`; EventSource's own
/// default is about 3 s).
const RECONNECT: Duration = Duration::from_secs(1);

/// The page.
const PAGE: &str = include_str!("page.html");
/// Its script.
const SCRIPT: &str = include_str!("app.js");

#[derive(Clone)]
struct App {
    board: Arc<Board>,
    health: Health,
    shutdown: CancellationToken,
    max_age: Option<Duration>,
}

/// Binds `listen` and serves until `shutdown`; the bound address is returned once it is
/// listening.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    listen: &str,
    board: Arc<Board>,
    health: Health,
    max_age: Option<Duration>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = App {
        board,
        health,
        shutdown: shutdown.clone(),
        max_age,
    };
    let router = Router::new()
        .route("/", get(page))
        .route("/app.js", get(script))
        .route("/events", get(events))
        .route("/api/summary", get(summary))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .with_state(app);
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    });
    Ok((addr, task))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

async fn summary(State(app): State<App>) -> Response {
    axum::Json(app.board.summary()).into_response()
}

/// `200` when every check passes (both consumers started, no shard stuck), else `503`
/// with one line per failing check; `/healthz` is liveness only, as on every binary.
async fn readyz(State(app): State<App>) -> Response {
    if app.health.is_ready() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let failing: Vec<String> = app
            .health
            .failing()
            .into_iter()
            .map(|(name, why)| format!("{name}: {why}"))
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", failing.join("\n")),
        )
            .into_response()
    }
}

/// The process's Prometheus metrics, as on `[metrics] listen` (404 when that is off).
async fn prometheus() -> Response {
    match chief_config::telemetry::render_prometheus() {
        Some(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no Prometheus endpoint: set [metrics] listen\n",
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// For clients that cannot set the header on their first request.
    #[serde(rename = "lastEventId")]
    last_event_id: Option<u64>,
}

/// Counts a connected browser while it lives.
struct Connected;

impl Connected {
    fn new() -> Self {
        metrics::gauge!(m::CLIENTS).increment(1.0);
        Self
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics::gauge!(m::CLIENTS).decrement(1.0);
    }
}

enum Phase {
    First(std::vec::IntoIter<SseEvent>),
    Live,
    Done,
}

struct Feed {
    phase: Phase,
    rx: broadcast::Receiver<Event>,
    last: u64,
    shutdown: CancellationToken,
    deadline: Option<tokio::time::Instant>,
    _connected: Connected,
}

fn update(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event("update")
        .data(&*event.data)
}

async fn events(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or(query.last_event_id);
    let (start, rx) = app.board.subscribe(last_event_id);
    let (first, last) = match start {
        Start::Replay(events) => {
            let last = events.last().map_or(last_event_id.unwrap_or(0), |e| e.id);
            // The reconnection delay first (no id: Last-Event-ID stays as it is).
            let mut first = vec![SseEvent::default().retry(RECONNECT).comment("resumed")];
            first.extend(events.iter().map(update));
            (first, last)
        }
        Start::Snapshot(summary) => {
            let data = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".to_owned());
            (
                vec![
                    SseEvent::default()
                        .id(summary.id.to_string())
                        .event("snapshot")
                        .retry(RECONNECT)
                        .data(data),
                ],
                summary.id,
            )
        }
    };
    let feed = Feed {
        phase: Phase::First(first.into_iter()),
        rx,
        last,
        shutdown: app.shutdown.clone(),
        deadline: app.max_age.map(|age| tokio::time::Instant::now() + age),
        _connected: Connected::new(),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        loop {
            match &mut feed.phase {
                Phase::Done => return None,
                Phase::First(events) => match events.next() {
                    Some(event) => return Some((Ok(event), feed)),
                    None => feed.phase = Phase::Live,
                },
                Phase::Live => {
                    let deadline = feed.deadline;
                    let expired = async move {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = feed.shutdown.cancelled() => return None,
                        () = expired => return None,
                        received = feed.rx.recv() => match received {
                            Ok(event) if event.id <= feed.last => {}
                            Ok(event) => {
                                feed.last = event.id;
                                return Some((Ok(update(&event)), feed));
                            }
                            Err(broadcast::error::RecvError::Lagged(missed)) => {
                                metrics::counter!(m::CLIENTS_LAGGED).increment(1);
                                tracing::info!(missed, "a browser fell behind; told to reload");
                                feed.phase = Phase::Done;
                                let reload = SseEvent::default()
                                    .event("reload")
                                    .data(format!("{{\"missed\":{missed}}}"));
                                return Some((Ok(reload), feed));
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
