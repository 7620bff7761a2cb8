//! Observability and process set-up shared by chief binaries: `tracing` (`RUST_LOG`-style
//! filter, text or JSON), the Prometheus endpoint for `metrics`, and the shutdown signal.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// The `[log]` section: how a binary writes its logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `RUST_LOG` syntax; the `RUST_LOG` variable wins when set. Default `info`.
    pub filter: String,
    /// `text` (default) or `json` (one object per line, for journald and log shippers).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON objects, one a line.
    Json,
}

/// Installs the global subscriber, writing to stderr. Calling it twice is harmless.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already set; that one stays.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The `[metrics]` section: where the Prometheus endpoint listens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the Prometheus scrape endpoint (`GET /metrics`), e.g. `127.0.0.1:9101`.
    /// Default: none (metrics are not exported).
    pub listen: Option<String>,
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// `listen` is not a socket address.
    #[error("metrics listen address {0:?} is not host:port")]
    Address(String),
    /// The exporter could not be installed (port in use, recorder already set).
    #[error("cannot start the Prometheus endpoint on {addr}: {reason}")]
    Install {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

/// Installs the Prometheus exporter as the global `metrics` recorder, serving on
/// `config.listen`. Must run inside a tokio runtime. Does nothing without `listen`.
pub fn install_metrics(config: &MetricsConfig) -> Result<Option<SocketAddr>, MetricsError> {
    let Some(listen) = &config.listen else {
        return Ok(None);
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| MetricsError::Address(listen.clone()))?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| MetricsError::Install {
            addr,
            reason: e.to_string(),
        })?;
    tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
    Ok(Some(addr))
}

/// A token cancelled on SIGTERM or SIGINT (Ctrl-C): the one shutdown signal of a binary
/// (DESIGN.md convention 7). Must be called inside a tokio runtime.
pub fn shutdown_on_signals() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => tracing::info!("SIGINT: shutting down"),
                        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops");
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        cancel.cancel();
    });
    token
}
