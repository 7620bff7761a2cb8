//! `chiefctl`: the operator CLI of chief.
//!
//! - `chiefctl setup` creates the streams and the bucket named in the config (idempotent).
//! - `chiefctl agg pack|unpack` packs user records into KPL aggregates and back, as JSON lines.
//! - `chiefctl leases` prints a consumer's lease table, one JSON line per lease.
//! - `chiefctl tail` prints a stream's deaggregated records as JSON lines.
//! - `chiefctl reconcile` checks that every produced record is in S3, the database and
//!   Elasticsearch, and counts the ones lost.
//! - `chiefctl probe` measures the latency from the producer's send to Elasticsearch.

mod agg;
mod leases;
mod probe;
mod reconcile;
mod replay;
mod setup;
mod tail;

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
    /// Print a consumer application's lease table, one JSON line per lease.
    Leases {
        /// The lease table (the application's name).
        #[arg(long)]
        table: String,
        /// DynamoDB endpoint override, e.g. http://127.0.0.1:5000.
        #[arg(long)]
        endpoint: Option<String>,
        /// Config files whose [aws] section is used (e.g. config/local.toml).
        #[arg(long = "config")]
        config: Vec<PathBuf>,
    },
    /// Print a stream's deaggregated user records as JSON lines (data in base64).
    Tail {
        /// The stream.
        #[arg(long)]
        stream: String,
        /// Where to start.
        #[arg(long, value_enum, default_value = "trim-horizon")]
        from: tail::From,
        /// Stop after this many user records (default: follow until interrupted).
        #[arg(long)]
        max_records: Option<u64>,
        /// Print each record's data as the seed's Lambda does: `Decoded payload:` and the
        /// data (indented when it is JSON) instead of a JSON line.
        #[arg(long)]
        decode: bool,
        /// Kinesis endpoint override, e.g. http://127.0.0.1:4568.
        #[arg(long)]
        endpoint: Option<String>,
        /// Config files whose [aws] section is used (e.g. config/local.toml).
        #[arg(long = "config")]
        config: Vec<PathBuf>,
    },
    /// Check that the produced records are in S3, the database and Elasticsearch; count the lost.
    Reconcile(reconcile::ReconcileArgs),
    /// Latency from the producer's send to the record being visible in Elasticsearch.
    Probe(probe::ProbeArgs),
    /// Replay JSON events from S3 into a stream in the order of their timestamps, paced.
    Replay(replay::ReplayArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup {
            config,
            print_config,
        } => setup::main(&config, print_config),
        Command::Agg { command } => agg::main(command),
        Command::Leases {
            table,
            endpoint,
            config,
        } => leases::main(&table, endpoint, &config),
        Command::Tail {
            stream,
            from,
            max_records,
            decode,
            endpoint,
            config,
        } => tail::main(&stream, from, max_records, decode, endpoint, &config),
        Command::Reconcile(args) => reconcile::main(args),
        Command::Probe(args) => probe::main(args),
        Command::Replay(args) => replay::main(args),
    }
}
