//! `chief-loader`: applies the schema and (later) loads S3 files into Aurora / MariaDB.

use std::path::PathBuf;

use anyhow::Context;
use chief_loader::LoaderConfig;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "chief-loader",
    version,
    about = "Final de-duplication: S3 files into Aurora MySQL"
)]
struct Cli {
    /// Config files, later ones override earlier ones (config/loader.toml config/local.toml).
    #[arg(long = "config", global = true)]
    config: Vec<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long, global = true)]
    print_config: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the schema migrations in sql/ that are not applied yet.
    Migrate,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config: LoaderConfig = chief_config::load(&cli.config).context("loading config")?;
    if cli.print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(());
    }
    chief_config::telemetry::init(&config.log);
    match cli.command {
        Command::Migrate => {
            let pool = chief_loader::connect(&config.database).await?;
            for m in chief_loader::migrate(&pool).await? {
                let state = if m.applied_now {
                    "applied"
                } else {
                    "already applied"
                };
                println!("migration {:04} {}: {state}", m.version, m.description);
            }
            pool.close().await;
        }
    }
    Ok(())
}
