//! The command line of `chief-firehose`: `--config` (repeatable, later files override
//! earlier ones), `--worker-id`, `--print-config`, `--log-format`; SIGTERM/SIGINT stop it
//! gracefully (write every buffer, checkpoint, release the leases, exit 0).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::FirehoseConfig;

#[derive(Parser, Debug)]
#[command(name = "chief-firehose", version)]
struct Cli {
    /// Config files, later ones override earlier ones, e.g.
    /// `--config config/firehose-taxi.toml --config config/local.toml`.
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// This worker's id in the lease table; unique among the delivery's workers.
    /// Default: `consumer.worker_id` from the config, else `<hostname>-<pid>`.
    #[arg(long)]
    worker_id: Option<String>,
    /// Print the effective config as TOML (credentials redacted) and exit.
    #[arg(long)]
    print_config: bool,
    /// Log lines as `text` or `json`; overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<chief_config::telemetry::LogFormat>,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chief-firehose: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chief-firehose: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config: FirehoseConfig = chief_config::load(&cli.config).context("loading config")?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if let Some(id) = cli.worker_id {
        config.consumer.worker_id = Some(id);
    }
    if config.consumer.worker_id.is_none() {
        config.consumer.worker_id = Some(chief_consumer::default_worker_id());
    }
    if cli.print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(());
    }
    config.validate()?;
    chief_config::telemetry::init(&config.log);
    let health = chief_config::health::Health::new();
    let metrics =
        chief_config::telemetry::Metrics::install(&config.metrics, &config.aws, &health).await?;
    let shutdown = chief_config::telemetry::shutdown_on_signals();
    chief_config::systemd::ready(&shutdown);
    let result = crate::run(config, shutdown, health).await;
    // The last interval's values reach CloudWatch (when it is on), even after a failure.
    metrics.shutdown().await;
    result?;
    Ok(())
}
