//! The command line of `chief-dashboard` (chief_config's [`ServiceArgs`]: `--config`
//! repeatable, later files override earlier ones, `--worker-id`, `--print-config`,
//! `--log-format`); SIGTERM/SIGINT stop it (browsers are disconnected, the leases
//! released, exit 0).

use std::process::ExitCode;

use chief_config::aws::AwsConfig;
use chief_config::service::{ServiceArgs, ServiceConfig};
use chief_config::telemetry::{LogConfig, MetricsConfig};
use clap::Parser;

use crate::DashboardConfig;

#[derive(Parser, Debug)]
#[command(name = "chief-dashboard", version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

impl ServiceConfig for DashboardConfig {
    fn log_mut(&mut self) -> &mut LogConfig {
        &mut self.log
    }
    fn metrics(&self) -> &MetricsConfig {
        &self.metrics
    }
    fn aws(&self) -> &AwsConfig {
        &self.aws
    }
    /// One worker id for both consumers (`orders.worker_id`).
    fn worker_id_mut(&mut self) -> &mut Option<String> {
        &mut self.orders.worker_id
    }
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::serve(
        "chief-dashboard",
        cli.args,
        |config: &DashboardConfig| Ok(config.validate()?),
        |config, shutdown, health| async move { Ok(crate::run(config, shutdown, health).await?) },
    )
}
