//! The command line every executor binary shares (chief_config's [`ServiceArgs`]:
//! `--config` repeatable, later files override earlier ones, `--worker-id`,
//! `--print-config`, `--log-format`); SIGTERM/SIGINT stop it gracefully (flush,
//! checkpoint, release the leases, exit 0).

use std::process::ExitCode;

use chief_config::aws::AwsConfig;
use chief_config::service::{ServiceArgs, ServiceConfig};
use chief_config::telemetry::{LogConfig, MetricsConfig};
use clap::Parser;

use crate::{Executor, ExecutorConfig};

pub use chief_consumer::default_worker_id;

#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

impl ServiceConfig for ExecutorConfig {
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

/// The `main` of `executor`'s binary.
pub fn main(executor: Executor) -> ExitCode {
    let cli = Cli::parse_from(
        std::iter::once(std::ffi::OsString::from(executor.name()))
            .chain(std::env::args_os().skip(1)),
    );
    chief_config::service::serve(
        executor.name(),
        cli.args,
        |config: &ExecutorConfig| Ok(config.validate(executor)?),
        |config, shutdown, health| async move {
            Ok(crate::run(executor, config, shutdown, health).await?)
        },
    )
}
