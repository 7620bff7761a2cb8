//! `chief-join --config config/join-orders.toml`: seed 004's streaming join — orders and
//! items → enriched rows with their products, on chief's shard leases.

use std::process::ExitCode;

use chief_analytics::enrich::EnrichConfig;
use chief_config::service::ServiceArgs;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "chief-join", version)]
struct Cli {
    #[command(flatten)]
    args: ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::serve(
        "chief-join",
        cli.args,
        |config: &EnrichConfig| config.validate().map_err(Into::into),
        |config, shutdown, health| async move {
            Ok(chief_analytics::enrich::run(config, shutdown, health).await?)
        },
    )
}
