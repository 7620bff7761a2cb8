//! Observability and process set-up shared by chief binaries: `tracing` (`RUST_LOG`-style
//! filter, text or JSON), the exporters of `metrics` (a Prometheus endpoint, CloudWatch
//! `PutMetricData`), and the shutdown signal.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::aws::{AwsClients, AwsConfig};
use crate::cloudwatch::{
    CloudWatchConfig, CloudWatchError, CloudWatchExporter, CloudWatchRecorder,
};

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

/// The `[metrics]` section: where the metrics go. Both exporters are off by default and
/// may run together; they see the same metrics under the same names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of the Prometheus scrape endpoint (`GET /metrics`), e.g. `127.0.0.1:9101`.
    /// Default: none (no endpoint).
    pub listen: Option<String>,
    /// Publish to CloudWatch: `cloudwatch = { namespace = "chief-order-es-s3",
    /// interval_ms = 60000 }` (see [`crate::cloudwatch`]; the client is built from the
    /// binary's `[aws]` section, endpoint `[aws.cloudwatch]`). Default: none (off).
    pub cloudwatch: Option<CloudWatchConfig>,
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
    /// `[metrics] cloudwatch` is set but this binary installs its metrics with
    /// [`install_metrics`], which has no AWS settings: it must use [`Metrics::install`].
    #[error(
        "[metrics] cloudwatch is set, but this binary does not publish to CloudWatch yet \
         (it calls telemetry::install_metrics, not telemetry::Metrics::install)"
    )]
    CloudWatchNeedsAws,
    /// The CloudWatch settings are invalid.
    #[error(transparent)]
    CloudWatch(#[from] CloudWatchError),
    /// Another global `metrics` recorder is already installed.
    #[error("a metrics recorder is already installed in this process")]
    RecorderAlreadySet,
}

/// Installs the Prometheus exporter as the global `metrics` recorder, serving on
/// `config.listen`. Must run inside a tokio runtime. Does nothing without `listen`.
/// Refuses a config with `cloudwatch` set ([`MetricsError::CloudWatchNeedsAws`]): that
/// needs [`Metrics::install`].
pub fn install_metrics(config: &MetricsConfig) -> Result<Option<SocketAddr>, MetricsError> {
    if config.cloudwatch.is_some() {
        return Err(MetricsError::CloudWatchNeedsAws);
    }
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

/// The metrics exporters of a process, installed by [`Metrics::install`].
#[derive(Debug)]
pub struct Metrics {
    prometheus: Option<SocketAddr>,
    cloudwatch: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Metrics {
    /// Installs the global `metrics` recorder for `config`: the Prometheus endpoint on
    /// `listen`, the CloudWatch exporter (client from `aws`, endpoint `[aws.cloudwatch]`)
    /// publishing every `cloudwatch.interval_ms`, both or neither. Must run inside a tokio
    /// runtime. Call [`Metrics::shutdown`] before exiting so that the last interval's values
    /// reach CloudWatch.
    pub async fn install(config: &MetricsConfig, aws: &AwsConfig) -> Result<Self, MetricsError> {
        let Some(cw) = &config.cloudwatch else {
            return Ok(Self {
                prometheus: install_metrics(config)?,
                cloudwatch: None,
            });
        };
        cw.validate()?;
        let recorder = CloudWatchRecorder::new();
        let exporter = CloudWatchExporter::new(
            AwsClients::new(aws).await.cloudwatch(),
            cw,
            recorder.clone(),
        )?;
        let mut prometheus = None;
        let installed = match &config.listen {
            None => metrics::set_global_recorder(recorder).is_ok(),
            Some(listen) => {
                let addr: SocketAddr = listen
                    .parse()
                    .map_err(|_| MetricsError::Address(listen.clone()))?;
                let (prom, serve) = metrics_exporter_prometheus::PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .build()
                    .map_err(|e| MetricsError::Install {
                        addr,
                        reason: e.to_string(),
                    })?;
                tokio::spawn(async move {
                    if let Err(e) = serve.await {
                        tracing::error!(error = ?e, "Prometheus endpoint stopped");
                    }
                });
                prometheus = Some(addr);
                metrics::set_global_recorder(
                    metrics_util::layers::FanoutBuilder::default()
                        .add_recorder(prom)
                        .add_recorder(recorder)
                        .build(),
                )
                .is_ok()
            }
        };
        if !installed {
            return Err(MetricsError::RecorderAlreadySet);
        }
        if let Some(addr) = prometheus {
            tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics");
        }
        tracing::info!(
            namespace = %cw.namespace,
            interval_ms = cw.interval_ms,
            "publishing metrics to CloudWatch"
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(exporter.run(cw.interval(), stop.clone()));
        Ok(Self {
            prometheus,
            cloudwatch: Some((stop, task)),
        })
    }

    /// Where the Prometheus endpoint listens, if it does.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus
    }

    /// Publishes the last values to CloudWatch (if it is on) and stops its exporter.
    pub async fn shutdown(self) {
        if let Some((stop, task)) = self.cloudwatch {
            stop.cancel();
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "CloudWatch exporter task failed");
            }
        }
    }
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
