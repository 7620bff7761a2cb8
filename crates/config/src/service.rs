//! What the `main` of every long-running consumer binary (the executors,
//! `chief-firehose`) does, once: the shared command line ([`ServiceArgs`]: `--config`
//! files, `--worker-id`, `--print-config`, `--log-format`), loading and checking the
//! config, logging, `/healthz` `/readyz` `/metrics`, SIGTERM/SIGINT, systemd's `READY=1`,
//! and the exit code ([`main`]).

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsConfig;
use crate::health::Health;
use crate::telemetry::{LogConfig, LogFormat, Metrics, MetricsConfig, MetricsError};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The command line every consumer binary shares.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Config files, later ones override earlier ones, e.g.
    /// `--config config/<name>.toml --config config/local.toml`.
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// This worker's id in the lease table; unique among the application's workers.
    /// Default: `consumer.worker_id` from the config, else `<hostname>-<pid>`.
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Print the effective config as TOML (credentials redacted) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Log lines as `text` or `json` (one object a line, for journald and log shippers);
    /// overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

/// The parts of a service's config [`run`] needs.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    /// `[log]`.
    fn log_mut(&mut self) -> &mut LogConfig;
    /// `[metrics]`.
    fn metrics(&self) -> &MetricsConfig;
    /// `[aws]`.
    fn aws(&self) -> &AwsConfig;
    /// `consumer.worker_id`.
    fn worker_id_mut(&mut self) -> &mut Option<String>;
}

/// Why a service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The config files or the environment could not be read.
    #[error("loading config")]
    Load(#[source] crate::ConfigError),
    /// The config is not usable.
    #[error(transparent)]
    Invalid(BoxError),
    /// The metrics endpoint or exporter could not start.
    #[error(transparent)]
    Metrics(MetricsError),
    /// The service failed.
    #[error(transparent)]
    Run(BoxError),
}

/// `<hostname>-<pid>`: the worker id service binaries use when none is configured.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Loads the config `args` name, applies the command line, then — unless
/// `--print-config` — checks it with `validate`, starts logging, the health and metrics
/// endpoint and the signal handlers, tells systemd it is ready, and runs `service` until
/// it returns (SIGTERM/SIGINT cancel its token). The last metrics reach CloudWatch even
/// after a failure.
///
/// # Errors
/// The config cannot be loaded or is invalid, the endpoint cannot start, or `service`
/// failed.
pub async fn run<C, V, S, Fut>(
    args: ServiceArgs,
    validate: V,
    service: S,
) -> Result<(), ServiceError>
where
    C: ServiceConfig,
    V: FnOnce(&C) -> Result<(), BoxError>,
    S: FnOnce(C, CancellationToken, Health) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    let mut config: C = crate::load(&args.config).map_err(ServiceError::Load)?;
    if let Some(format) = args.log_format {
        config.log_mut().format = format;
    }
    if let Some(id) = args.worker_id {
        *config.worker_id_mut() = Some(id);
    }
    if config.worker_id_mut().is_none() {
        *config.worker_id_mut() = Some(default_worker_id());
    }
    if args.print_config {
        let text = crate::to_toml(&config).map_err(|e| ServiceError::Invalid(Box::new(e)))?;
        print!("{text}");
        return Ok(());
    }
    validate(&config).map_err(ServiceError::Invalid)?;
    crate::telemetry::init(config.log_mut());
    let health = Health::new();
    let metrics = Metrics::install(config.metrics(), config.aws(), &health)
        .await
        .map_err(ServiceError::Metrics)?;
    let shutdown = crate::telemetry::shutdown_on_signals();
    crate::systemd::ready(&shutdown);
    let result = service(config, shutdown, health).await;
    metrics.shutdown().await;
    result.map_err(ServiceError::Run)
}

/// A binary's `main`: runs `main` on a multi-threaded runtime; exit 0 on success, else
/// one line `<name>: <error and its causes>` on stderr and exit 1.
pub fn main<F, E>(name: &str, main: F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, E>>,
    E: Display,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `a: b: c` (as `anyhow`'s `{:#}`).
struct Chain<E>(E);

impl<E: std::error::Error> Display for Chain<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A consumer service binary's whole `main`: [`run`] with its command line, on [`main`]'s
/// runtime; exit 0, or 1 with one line `<name>: <error and its causes>`.
pub fn serve<C, V, S, Fut>(name: &str, args: ServiceArgs, validate: V, service: S) -> ExitCode
where
    C: ServiceConfig,
    V: FnOnce(&C) -> Result<(), BoxError>,
    S: FnOnce(C, CancellationToken, Health) -> Fut,
    Fut: Future<Output = Result<(), BoxError>>,
{
    main(name, async move {
        run(args, validate, service)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Chain)
    })
}
