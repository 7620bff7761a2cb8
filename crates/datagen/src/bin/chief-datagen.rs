//! `chief-datagen`: writes fake orders or job results to stdout, one JSON object per
//! line, and a summary line to stderr.
//!
//! ```text
//! chief-datagen orders --count 100000 --duplicate-ratio 0.1 --seed 42 > orders.jsonl
//! chief-datagen jobresults --count 1000 | chief-producer …
//! chief-datagen taxi-csv --count 1000 --output /tmp/taxi/trips-1.csv
//! chief-datagen apache-log --count 100000 --rate 50 --output /var/log/web/access_log_1
//! chief-datagen products --count 1000 --output products.json
//! chief-datagen orders-items --orders 500000 --products 1000 --output orders.json
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
    /// Seed 004's reference table: products (`productId`, `productName`, `productPrice`).
    Products(ProductsArgs),
    /// Seed 004's events: orders, each followed by its two items (`itemId` a product's
    /// id), with `orderDateTime` timestamps.
    OrdersItems(OrdersItemsArgs),
}

/// Seed 004's products.
#[derive(Debug, Args)]
struct ProductsArgs {
    /// Number of products (ids from 999900001).
    #[arg(long, default_value = "1000")]
    count: u64,
    /// RNG seed: the same seed gives the same products.
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Write to this file instead of stdout.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

/// Seed 004's orders and items.
#[derive(Debug, Args)]
struct OrdersItemsArgs {
    /// Number of orders (each with two items: three lines).
    #[arg(long)]
    orders: u64,
    /// The products' count and seed, as given to `products` (the items are theirs).
    #[arg(long, default_value = "1000")]
    products: u64,
    /// The products' seed.
    #[arg(long, default_value = "1")]
    products_seed: u64,
    /// RNG seed of the orders.
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Mean time between two orders' `orderDateTime`, ms.
    #[arg(long, default_value = "10")]
    interval_ms: u64,
    /// Write to this file instead of stdout.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

/// JSON lines of `records` to `output` or stdout.
fn write_json<T: serde::Serialize>(
    records: impl Iterator<Item = T>,
    output: Option<&std::path::Path>,
) -> io::Result<u64> {
    let out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::fs::File::create(path)?),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let mut n = 0;
    for record in records {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

fn seed_004(kind: &Kind) -> io::Result<(&'static str, u64)> {
    use chief_datagen::etl::{OrdersItems, products};
    match kind {
        Kind::Products(args) => write_json(
            products(args.seed, args.count).into_iter(),
            args.output.as_deref(),
        )
        .map(|n| ("products", n)),
        Kind::OrdersItems(args) => {
            if args.products < 2 {
                return Err(io::Error::new(
                    ErrorKind::InvalidInput,
                    "--products must be at least 2 (an order has two different products)",
                ));
            }
            let lines = OrdersItems::new(
                args.seed,
                products(args.products_seed, args.products),
                chief_datagen::DEFAULT_START,
                args.interval_ms,
            )
            .take(usize::try_from(args.orders.saturating_mul(3)).unwrap_or(usize::MAX));
            write_json(lines, args.output.as_deref()).map(|n| ("orders-items", n))
        }
        _ => Err(io::Error::new(
            ErrorKind::InvalidInput,
            "not a seed 004 kind",
        )),
    }
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
        Kind::Products(_) | Kind::OrdersItems(_) => {
            return match seed_004(&cli.kind) {
                Ok((kind, lines)) => {
                    let _ = writeln!(io::stderr(), "chief-datagen: {kind} lines={lines}");
                    ExitCode::SUCCESS
                }
                Err(err) if err.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(err) => {
                    let _ = writeln!(io::stderr(), "chief-datagen: {err}");
                    ExitCode::FAILURE
                }
            };
        }
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
