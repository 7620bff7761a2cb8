//! `chief-s3-ingest --config config/s3-ingest.toml`: log files uploaded to S3 → their new
//! lines → a stream (seed 003), driven by the bucket's notifications in an SQS queue.

use std::process::ExitCode;

use chief_analytics::ingest::IngestConfig;
use chief_config::service::ServiceArgs;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "chief-s3-ingest", version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::serve(
        "chief-s3-ingest",
        cli.args,
        |config: &IngestConfig| config.validate().map_err(Into::into),
        |config, shutdown, health| async move {
            Ok(chief_analytics::ingest::run(config, shutdown, health).await?)
        },
    )
}
