//! `chief-datagen`: writes fake orders or job results to stdout, one JSON object per
//! line, and a summary line to stderr.
//!
//! ```text
//! chief-datagen orders --count 100000 --duplicate-ratio 0.1 --seed 42 > orders.jsonl
//! chief-datagen jobresults --count 1000 | chief-producer …
//! ```
//!
//! Without `--seed` a random seed is used; the summary line says which, so a run can
//! be repeated. A closed stdout (`| head`) ends the program quietly with exit 0.

use std::io::{self, BufWriter, ErrorKind, Write};
use std::process::ExitCode;

use chief_datagen::{FakeRecord, Generator, Stats, parse_duplicate_ratio};
use chief_pipeline::model::{JobResult, Order};
use clap::{Args, Parser, Subcommand};

/// Fake orders and job results for chief, one JSON object per line on stdout.
#[derive(Debug, Parser)]
#[command(name = "chief-datagen", version, about)]
struct Cli {
    #[command(subcommand)]
    kind: Kind,
}

/// Which records to generate.
#[derive(Debug, Subcommand)]
enum Kind {
    /// Orders (the orders stream).
    Orders(GenerateArgs),
    /// Job results (the job-results stream); for one seed they match the orders'
    /// ids.
    Jobresults(GenerateArgs),
}

/// How many records, how many duplicates, which seed.
#[derive(Debug, Args)]
struct GenerateArgs {
    /// Number of lines to write.
    #[arg(long)]
    count: u64,
    /// Probability, in [0, 1), that a line repeats an earlier one byte for byte.
    #[arg(long, default_value = "0", value_parser = ratio)]
    duplicate_ratio: f64,
    /// RNG seed: the same seed gives the same output. Random when absent.
    #[arg(long)]
    seed: Option<u64>,
}

fn ratio(text: &str) -> Result<f64, String> {
    parse_duplicate_ratio(text).map_err(|err| err.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (kind, args) = match &cli.kind {
        Kind::Orders(args) => ("orders", args),
        Kind::Jobresults(args) => ("jobresults", args),
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let result = match cli.kind {
        Kind::Orders(_) => generate::<Order>(seed, args),
        Kind::Jobresults(_) => generate::<JobResult>(seed, args),
    };
    match result {
        Ok(stats) => {
            // Nothing to be done if stderr is closed too.
            let _ = writeln!(
                io::stderr(),
                "chief-datagen: {kind} lines={} distinct_orderids={} duplicates={} seed={seed}",
                stats.total,
                stats.distinct,
                stats.duplicates,
            );
            ExitCode::SUCCESS
        }
        Err(err) if err.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr(), "chief-datagen: writing to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

fn generate<R>(seed: u64, args: &GenerateArgs) -> io::Result<Stats>
where
    R: FakeRecord + serde::Serialize,
{
    let mut generator = Generator::<R>::new(seed, args.duplicate_ratio)
        .map_err(|err| io::Error::new(ErrorKind::InvalidInput, err))?;
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    chief_datagen::write_json_lines(&mut generator, args.count, &mut out)
}
