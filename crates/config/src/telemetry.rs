//! Observability and process set-up shared by chief binaries: `tracing` (`RUST_LOG`-style
//! filter, text or JSON), the exporters of `metrics` (a Prometheus endpoint, CloudWatch
//! `PutMetricData`), and the shutdown signal.

use std::net::SocketAddr;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusRecorder;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::aws::{AwsClients, AwsConfig};
use crate::cloudwatch::{
    CloudWatchConfig, CloudWatchError, CloudWatchExporter, CloudWatchRecorder,
};
use crate::health::Health;

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

impl std::str::FromStr for LogFormat {
    type Err = String;

    /// `text` or `json`: what a binary's `--log-format` takes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
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
    /// `host:port` of the endpoint serving `GET /metrics` (Prometheus), `/healthz` and
    /// `/readyz`, e.g. `127.0.0.1:9101` (`:0` picks a free port, logged at start). Default:
    /// none (no endpoint); every shipped config of a service binary sets one.
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

/// The Prometheus recorder, and the endpoint serving it on `listen` with `/healthz` and
/// `/readyz` from `health`.
/// The Prometheus recorder of the process, once installed.
static PROMETHEUS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// The process's metrics in Prometheus' text format, as `[metrics] listen`'s `/metrics`
/// serves them; `None` when no Prometheus endpoint is installed.
pub fn render_prometheus() -> Option<String> {
    PROMETHEUS
        .get()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
}

fn prometheus_endpoint(
    listen: &str,
    health: &Health,
) -> Result<(PrometheusRecorder, SocketAddr), MetricsError> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| MetricsError::Address(listen.to_owned()))?;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The process's one recorder: other servers of the process may show it too.
    let _ = PROMETHEUS.set(handle.clone());
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms are drained into their summaries here (the builder's own listener
        // does this; ours must).
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let endpoint = crate::health::serve(addr, health.clone(), Arc::new(move || handle.render()))
        .map_err(|e| MetricsError::Install {
            addr,
            reason: e.source.to_string(),
        })?;
    let addr = endpoint.addr();
    tracing::info!(%addr, "health and metrics on http://{addr}/healthz, /readyz, /metrics");
    Ok((recorder, addr))
}

/// Installs the Prometheus exporter as the global `metrics` recorder and serves it on
/// `config.listen` (`/metrics`), with `/healthz` and `/readyz` from `health`. Returns the
/// address (the real port when `:0` was asked for). Must run inside a tokio runtime. Does
/// nothing without `listen`. Refuses a config with `cloudwatch` set
/// ([`MetricsError::CloudWatchNeedsAws`]): that needs [`Metrics::install`].
pub fn install_metrics(
    config: &MetricsConfig,
    health: &Health,
) -> Result<Option<SocketAddr>, MetricsError> {
    if config.cloudwatch.is_some() {
        return Err(MetricsError::CloudWatchNeedsAws);
    }
    let Some(listen) = &config.listen else {
        return Ok(None);
    };
    let (recorder, addr) = prometheus_endpoint(listen, health)?;
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::RecorderAlreadySet)?;
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
    pub async fn install(
        config: &MetricsConfig,
        aws: &AwsConfig,
        health: &Health,
    ) -> Result<Self, MetricsError> {
        let Some(cw) = &config.cloudwatch else {
            return Ok(Self {
                prometheus: install_metrics(config, health)?,
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
                let (prom, addr) = prometheus_endpoint(listen, health)?;
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
