//! `chiefctl`: the operator CLI of chief.
//!
//! - `chiefctl setup` creates the streams and the bucket named in the config (idempotent).
//! - `chiefctl agg pack|unpack` packs user records into KPL aggregates and back, as JSON lines.

mod agg;
mod setup;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "chiefctl",
    version,
    about = "Operator CLI for the chief Kinesis pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the streams and the S3 bucket named in the config; existing ones are left as they are.
    Setup {
        /// Config files, later ones override earlier ones (e.g. config/chiefctl.toml config/local.toml).
        #[arg(long = "config", required = true)]
        config: Vec<PathBuf>,
        /// Print the effective config as TOML and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// KPL aggregation: pack user records into Kinesis records, or unpack them (JSON lines on stdin/stdout).
    Agg {
        #[command(subcommand)]
        command: agg::AggCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup {
            config,
            print_config,
        } => setup::main(&config, print_config),
        Command::Agg { command } => agg::main(command),
    }
}
