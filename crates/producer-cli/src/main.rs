//! `chief-producer`: puts JSON-lines records (or generated orders / job results) into a
//! Kinesis stream through the KPL-style producer, with partition key = `orderid`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chief_config::aws::AwsClients;
use chief_producer_cli::app::{self, GenerateSpec, ProducerAppConfig, RecordKind, Source};
use chief_stream::KinesisClient;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "chief-producer",
    version,
    about = "KPL-style Kinesis producer for chief"
)]
struct Cli {
    /// Config files, later ones override earlier ones (config/producer.toml config/local.toml).
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Log lines as `text` or `json` (one object a line, for journald and log shippers);
    /// overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<chief_config::telemetry::LogFormat>,
    /// The stream to put to.
    #[arg(long, default_value = "OrdersStream")]
    stream: String,
    /// JSON lines to send, one record each; `-` is stdin. Default: stdin unless --generate.
    #[arg(long, conflicts_with = "generate")]
    input: Option<PathBuf>,
    /// What each input line must be (orders or job results); a line that is not a valid
    /// record of that kind goes to the failed file with the reason and is not sent.
    #[arg(
        long,
        value_enum,
        required_unless_present = "generate",
        conflicts_with = "generate"
    )]
    records: Option<RecordKind>,
    /// Generate records instead of reading them.
    #[arg(long, value_enum)]
    generate: Option<RecordKind>,
    /// Generated records per second (0: as fast as possible).
    #[arg(long, default_value_t = 1000, requires = "generate")]
    rate: u64,
    /// Stop generating after this long: `90s`, `5m`, `500ms`, `1h`.
    #[arg(long, value_parser = parse_duration, requires = "generate")]
    duration: Option<Duration>,
    /// Stop generating after this many records.
    #[arg(long, requires = "generate")]
    count: Option<u64>,
    /// Generator seed.
    #[arg(long, default_value_t = 1, requires = "generate")]
    seed: u64,
    /// Share of generated records that repeat an earlier one.
    #[arg(long, default_value_t = 0.0, requires = "generate")]
    duplicate_ratio: f64,
    /// Where records that finally failed, and malformed input lines, are written.
    /// Default: `<stream>-failed.jsonl` in the current directory.
    #[arg(long)]
    failed_file: Option<PathBuf>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 1)]
    progress: u64,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("unknown unit {unit:?} in {text:?} (ms, s, m, h)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::main("chief-producer", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config: ProducerAppConfig =
        chief_config::load(&cli.config).context("loading config")?;
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    if cli.print_config {
        print!("{}", chief_config::to_toml(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    chief_config::telemetry::init(&config.log);
    // Ready while records are put; not ready from a record that failed (handed back, to
    // the failed file) until one is put again (app::KINESIS_CHECK).
    let health = chief_config::health::Health::new();
    let metrics =
        chief_config::telemetry::Metrics::install(&config.metrics, &config.aws, &health).await?;
    if !(0.0..1.0).contains(&cli.duplicate_ratio) {
        bail!("--duplicate-ratio must be in [0, 1)");
    }
    let lines = |reader| match cli.records {
        Some(kind) => Ok(Source::Lines { kind, reader }),
        None => Err(anyhow::anyhow!(
            "--records orders|jobresults is needed to read input lines"
        )),
    };
    let source = match (cli.generate, &cli.input) {
        (Some(kind), _) => {
            if cli.count.is_none() && cli.duration.is_none() {
                bail!("--generate needs --count or --duration");
            }
            Source::Generate(GenerateSpec {
                kind,
                rate_per_sec: cli.rate,
                duration: cli.duration,
                count: cli.count,
                seed: cli.seed,
                duplicate_ratio: cli.duplicate_ratio,
            })
        }
        (None, Some(path)) if path.as_os_str() != "-" => {
            let file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening input {}", path.display()))?;
            lines(Box::new(tokio::io::BufReader::with_capacity(1 << 16, file)))?
        }
        (None, _) => lines(Box::new(tokio::io::BufReader::with_capacity(
            1 << 16,
            tokio::io::stdin(),
        )))?,
    };
    let failed_path = cli
        .failed_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-failed.jsonl", cli.stream)));
    let shutdown = chief_config::telemetry::shutdown_on_signals();
    chief_config::systemd::ready(&shutdown);
    let clients = AwsClients::new(&config.aws).await;
    let progress = (cli.progress > 0).then(|| Duration::from_secs(cli.progress));
    let summary = app::run(
        KinesisClient::new(clients.kinesis()),
        &cli.stream,
        config.producer,
        source,
        &failed_path,
        progress,
        shutdown,
        health.clone(),
    )
    .await;
    // The last interval's values reach CloudWatch (when it is on), whatever the outcome.
    metrics.shutdown().await;
    let summary = summary?;
    let secs = summary.elapsed.as_secs_f64();
    println!(
        "chief-producer: {}: sent {} put {} failed {} malformed {} in {:.1}s ({:.0} records/s){}",
        cli.stream,
        summary.sent,
        summary.put,
        summary.failed,
        summary.malformed,
        secs,
        summary.put as f64 / secs.max(1e-9),
        if summary.interrupted {
            ", interrupted"
        } else {
            ""
        }
    );
    if let Some(path) = &summary.failed_file {
        println!(
            "chief-producer: failed records and malformed lines: {}",
            path.display()
        );
    }
    Ok(if summary.failed > 0 || summary.malformed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
