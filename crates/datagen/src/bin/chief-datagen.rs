//! `chief-datagen`: writes fake orders or job results to stdout, one JSON object per
//! line, and a summary line to stderr.
//!
//! ```text
//! chief-datagen orders --count 100000 --duplicate-ratio 0.1 --seed 42 > orders.jsonl
//! chief-datagen jobresults --count 1000 | chief-producer …
//! chief-datagen taxi-csv --count 1000 --output /tmp/taxi/trips-1.csv
//! chief-datagen apache-log --count 100000 --rate 50 --output /var/log/web/access_log_1
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
    /// Apache combined-log lines (seed 001's access logs).
    ApacheLog(LineArgs),
    /// NYC taxi trips as CSV, a header line first (seed 002).
    TaxiCsv(LineArgs),
    /// log4j-style application lines (seed 003).
    AppLog(LineArgs),
}

/// How many lines, where, how fast, which seed.
#[derive(Debug, Args)]
struct LineArgs {
    /// Number of lines to write (the taxi header not counted).
    #[arg(long)]
    count: u64,
    /// RNG seed: the same seed gives the same lines.
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Append to this file instead of stdout (flushed every line with `--rate`).
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// Lines per second (0: as fast as possible).
    #[arg(long, default_value = "0")]
    rate: u64,
    /// Leave out the taxi CSV header line.
    #[arg(long)]
    no_header: bool,
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
        Kind::ApacheLog(args) | Kind::TaxiCsv(args) | Kind::AppLog(args) => {
            return match write_lines(&cli.kind, args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) if err.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(err) => {
                    let _ = writeln!(io::stderr(), "chief-datagen: {err}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let result = match cli.kind {
        Kind::Orders(_) => generate::<Order>(seed, args),
        _ => generate::<JobResult>(seed, args),
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

/// The text lines of `kind`, to stdout or appended to `--output`, paced by `--rate`.
fn write_lines(kind: &Kind, args: &LineArgs) -> io::Result<()> {
    use chief_datagen::lines::{ApacheLog, AppLog, TAXI_COLUMNS, TaxiCsv};
    let start = chief_datagen::DEFAULT_START;
    let mut lines: Box<dyn Iterator<Item = String>> = match kind {
        Kind::ApacheLog(_) => Box::new(ApacheLog::new(args.seed, start)),
        Kind::TaxiCsv(_) => Box::new(TaxiCsv::new(args.seed, start)),
        _ => Box::new(AppLog::new(args.seed, start)),
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
        ),
        None => Box::new(BufWriter::with_capacity(64 * 1024, io::stdout().lock())),
    };
    if matches!(kind, Kind::TaxiCsv(_)) && !args.no_header {
        writeln!(out, "{}", TAXI_COLUMNS.join(","))?;
    }
    let started = std::time::Instant::now();
    for n in 0..args.count {
        let line = lines.next().unwrap_or_default();
        writeln!(out, "{line}")?;
        if args.rate > 0 {
            out.flush()?;
            let due = std::time::Duration::from_secs_f64((n + 1) as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    out.flush()
}
