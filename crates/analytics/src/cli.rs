//! The command line of `chief-analytics` (chief_config's [`ServiceArgs`]: `--config`
//! repeatable, later files override earlier ones, `--worker-id`, `--print-config`,
//! `--log-format`); SIGTERM/SIGINT stop it gracefully (store what the shards handed on,
//! checkpoint, release the leases, exit 0).

use std::process::ExitCode;

use chief_config::aws::AwsConfig;
use chief_config::service::{ServiceArgs, ServiceConfig};
use chief_config::telemetry::{LogConfig, MetricsConfig};
use clap::Parser;

use crate::AnalyticsConfig;

#[derive(Parser, Debug)]
#[command(name = "chief-analytics", version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

impl ServiceConfig for AnalyticsConfig {
    fn log_mut(&mut self) -> &mut LogConfig {
        &mut self.log
    }
    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }
    fn aws(&self) -> &AwsConfig {
        &self.aws
    }
    fn worker_id_mut(&mut self) -> &mut Option<String> {
        &mut self.consumer.worker_id
    }
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::serve(
        "chief-analytics",
        cli.args,
        |config: &AnalyticsConfig| config.validate().map(|_| ()).map_err(Into::into),
        |config, shutdown, health| async move { Ok(crate::run(config, shutdown, health).await?) },
    )
}
