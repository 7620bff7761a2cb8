//! The command line every executor binary shares: `--config` (repeatable, later files
//! override earlier ones), `--worker-id`, `--print-config`; SIGTERM/SIGINT stop it
//! gracefully (flush, checkpoint, release the leases, exit 0).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::{Executor, ExecutorConfig};

#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Config files, later ones override earlier ones, e.g.
    /// `--config config/order-factory-s3.toml --config config/local.toml`.
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// This worker's id in the lease table; unique among the workers of the executor.
    /// Default: `consumer.worker_id` from the config, else `<hostname>-<pid>`.
    #[arg(long)]
    worker_id: Option<String>,
    /// Print the effective config as TOML (credentials redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Log lines as `text` or `json` (one object a line, for journald and log shippers);
    /// overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<chief_config::telemetry::LogFormat>,
}

pub use chief_consumer::default_worker_id;

/// The `main` of `executor`'s binary.
pub fn main(executor: Executor) -> ExitCode {
    let cli = Cli::parse_from(
        std::iter::once(std::ffi::OsString::from(executor.name()))
            .chain(std::env::args_os().skip(1)),
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{executor}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(executor, cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{executor}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(executor: Executor, cli: Cli) -> anyhow::Result<()> {
    let mut config: ExecutorConfig = chief_config::load(&cli.config).context("loading config")?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if let Some(id) = cli.worker_id {
        config.consumer.worker_id = Some(id);
    }
    if config.consumer.worker_id.is_none() {
        config.consumer.worker_id = Some(default_worker_id());
    }
    if cli.print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(());
    }
    config.validate(executor)?;
    chief_config::telemetry::init(&config.log);
    let health = chief_config::health::Health::new();
    let metrics =
        chief_config::telemetry::Metrics::install(&config.metrics, &config.aws, &health).await?;
    let shutdown = chief_config::telemetry::shutdown_on_signals();
    chief_config::systemd::ready(&shutdown);
    let result = crate::run(executor, config, shutdown, health).await;
    // The last interval's values reach CloudWatch (when it is on), even after a failure.
    metrics.shutdown().await;
    result?;
    Ok(())
}
