//! `chief-loader`: applies the schema, and loads the executors' S3 files into Aurora
//! MySQL (`LOAD DATA FROM S3 MANIFEST … IGNORE`) or a local MariaDB (`LOAD DATA INFILE`).
//!
//! Exit codes of `run`: 0 loaded (or nothing new), 1 something failed, 75 a table was
//! skipped because another run holds its lock (and nothing failed), 2 usage.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chief_loader::{LoaderConfig, Mode, RunOptions};
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
    /// Log lines as `text` or `json` (one object a line, for journald and log shippers);
    /// overrides `[log] format`.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<chief_config::telemetry::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply the schema migrations in sql/ that are not applied yet.
    Migrate,
    /// Load the objects not in load_history yet (exit 0 ok or nothing new, 1 failure,
    /// 75 another run holds the lock).
    Run {
        /// `orders`, `jobresults` (any key of [loader.tables]) or `all`.
        #[arg(long, default_value = "all")]
        table: String,
        /// Print the statements (and MANIFESTs) instead of running them.
        #[arg(long)]
        dry_run: bool,
        /// `aurora` (LOAD DATA FROM S3 MANIFEST) or `local` (LOAD DATA INFILE from
        /// database.import_dir). Default: loader.mode.
        #[arg(long, value_enum)]
        mode: Option<Mode>,
        /// Hours before the newest loaded hour to list again. Default: loader.rescan_hours.
        #[arg(long)]
        rescan_hours: Option<u32>,
        /// List every table's whole prefix, whenever that was last done (otherwise once
        /// loader.full_listing_hours have passed).
        #[arg(long)]
        full_listing: bool,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("chief-loader: error: {}", one_line(&err));
            ExitCode::from(chief_loader::EXIT_FAILED)
        }
    }
}

/// The error and its causes on one line (no backtrace: this is what cron's log keeps),
/// leaving out a cause whose text the line already holds.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config: LoaderConfig = chief_config::load(&cli.config).context("loading config")?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if cli.print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(ExitCode::SUCCESS);
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
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            table,
            dry_run,
            mode,
            rescan_hours,
            full_listing,
        } => {
            let defaults = RunOptions::from_settings(&config.loader);
            let options = RunOptions {
                table,
                mode: mode.unwrap_or(defaults.mode),
                dry_run,
                rescan_hours: rescan_hours.unwrap_or(defaults.rescan_hours),
                full_listing,
            };
            let clients = chief_config::aws::AwsClients::new(&config.aws).await;
            // A cron job: no endpoint to scrape, but its result goes to CloudWatch when on.
            let metrics = chief_config::telemetry::Metrics::install(
                &config.metrics,
                &config.aws,
                &chief_config::health::Health::new(),
            )
            .await?;
            let sqs = config.loader.queue_url.is_some().then(|| clients.sqs());
            let result = chief_loader::run(&config, &clients.s3(), sqs.as_ref(), &options).await;
            publish_result(result.as_ref().ok());
            metrics.shutdown().await;
            let report = result.with_context(|| {
                format!(
                    "chief-loader run ({} mode) on {}",
                    options.mode.as_str(),
                    chief_loader::redact(&config.database.url)
                )
            })?;
            for table in &report.tables {
                for statement in &table.statements {
                    println!("{statement}");
                }
                println!("{}", table.summary_line());
                for message in &table.warning_messages {
                    println!("  warning: {message}");
                }
                for reject in &table.rejected {
                    println!(
                        "  refused: s3://{}/{} line {}: {}",
                        config.loader.bucket,
                        reject.key,
                        reject
                            .line
                            .map_or_else(|| "?".to_owned(), |l| l.to_string()),
                        reject.reason
                    );
                }
                if !table.skipped_keys.is_empty() {
                    println!(
                        "  {} keys under the prefix are not executor objects and were not loaded, e.g. {}",
                        table.skipped_keys.len(),
                        table.skipped_keys[0]
                    );
                }
            }
            if let Some(queue) = &report.queue {
                println!(
                    "queue: {} messages naming {} objects, {} deleted, {} kept for a later run{}",
                    queue.received,
                    queue.objects,
                    queue.deleted,
                    queue.kept,
                    report
                        .queue_error
                        .as_deref()
                        .map(|e| format!("; FAILED: {e}"))
                        .unwrap_or_default()
                );
            }
            println!("{}", serde_json::to_string(&report)?);
            Ok(ExitCode::from(report.exit_code()))
        }
    }
}

/// The run's result as metrics: one run, a failure when it failed or a table failed
/// (`None`: the run itself failed), what it loaded.
fn publish_result(report: Option<&chief_loader::RunReport>) {
    metrics::counter!("LoaderRuns").increment(1);
    let failed = report.is_none_or(|r| {
        r.tables
            .iter()
            .any(|t| matches!(t.outcome, chief_loader::Outcome::Failed))
    });
    metrics::counter!("LoaderFailures").increment(u64::from(failed));
    if let Some(report) = report {
        let files: u64 = report.tables.iter().map(|t| t.files).sum();
        let rows: u64 = report.tables.iter().map(|t| t.rows_inserted).sum();
        metrics::counter!("LoaderFilesLoaded").increment(files);
        metrics::counter!("LoaderRowsInserted").increment(rows);
    }
}
