//! `chief-aurora-standin`: runs the dev-only `LOAD DATA FROM S3` proxy (see the library
//! docs) in front of a MariaDB server until SIGTERM or Ctrl-C, then exits 0.

use std::path::PathBuf;

use anyhow::Context;
use chief_aurora_standin::{Options, serve};
use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::telemetry::{self, LogConfig};
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// A dev-only stand-in for Aurora MySQL's `LOAD DATA FROM S3` in front of MariaDB. Not
/// Aurora.
#[derive(Debug, Parser)]
#[command(name = "chief-aurora-standin", version)]
struct Args {
    /// Address to listen on (MySQL protocol).
    #[arg(long, default_value = "127.0.0.1:3308")]
    listen: String,
    /// The MariaDB server, host:port.
    #[arg(long, default_value = "127.0.0.1:3307")]
    upstream: String,
    /// The server's secure_file_priv directory (SELECT @@secure_file_priv), where the
    /// files are staged for LOAD DATA INFILE.
    #[arg(long)]
    import_dir: PathBuf,
    /// Config files with an [aws] section (S3 endpoint, credentials), e.g.
    /// config/local.toml; CHIEF__AWS__… variables override them.
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// Fault injection: delete from S3, just before reading it, every listed object whose
    /// key contains this string (the object is really gone when the load reads it).
    #[arg(long)]
    delete_before_load: Option<String>,
}

/// The sections the stand-in reads from `--config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
struct StandinConfig {
    log: LogConfig,
    aws: AwsConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: StandinConfig = chief_config::load(&args.config).context("loading config")?;
    telemetry::init(&config.log);
    let import_dir = std::fs::canonicalize(&args.import_dir)
        .with_context(|| format!("the import directory {}", args.import_dir.display()))?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr().context("the listen address")?;
    tracing::info!(%addr, upstream = %args.upstream, import_dir = %import_dir.display(),
        "chief-aurora-standin (dev-only LOAD DATA FROM S3 proxy, not Aurora) listening on {addr}");
    let s3 = AwsClients::new(&config.aws).await.s3();
    let shutdown = telemetry::shutdown_on_signals();
    tokio::select! {
        () = serve(listener, s3, Options {
            upstream: args.upstream,
            import_dir,
            delete_before_load: args.delete_before_load,
        }) => {}
        () = shutdown.cancelled() => {}
    }
    tracing::info!("stopped");
    Ok(())
}
