//! `chief-agent --config /etc/aws-kinesis/agent.json [--settings config/agent.toml]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use crate::AgentSettings;
use crate::config::AgentConfig;

#[derive(Parser, Debug)]
#[command(name = "chief-agent", version)]
struct Cli {
    /// The Kinesis Agent's configuration (`agent.json`).
    #[arg(
        long = "config",
        short = 'c',
        default_value = "/etc/aws-kinesis/agent.json"
    )]
    config: PathBuf,
    /// chief's settings (TOML: `[log]`, `[metrics]`, `[aws]`, `[producer]`); later files
    /// override earlier ones, `CHIEF__SECTION__KEY` overrides them.
    #[arg(long = "settings")]
    settings: Vec<PathBuf>,
    /// Print the effective agent.json and settings and exit.
    #[arg(long)]
    print_config: bool,
    /// Log lines as `text` or `json`; overrides `[log] format`.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<chief_config::telemetry::LogFormat>,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    chief_config::service::main("chief-agent", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let agent = AgentConfig::load(&cli.config)?;
    let mut settings: AgentSettings =
        chief_config::load(&cli.settings).context("loading settings")?;
    if let Some(format) = cli.log_format {
        settings.log.format = format;
    }
    if cli.print_config {
        use std::io::Write as _;
        let text = format!(
            "{}\n{}",
            serde_json::to_string_pretty(&agent)?,
            chief_config::to_toml(&settings)?
        );
        return match std::io::stdout().write_all(text.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(ExitCode::SUCCESS),
        };
    }
    chief_config::telemetry::init(&settings.log);
    let health = chief_config::health::Health::new();
    let metrics =
        chief_config::telemetry::Metrics::install(&settings.metrics, &settings.aws, &health)
            .await?;
    let shutdown = chief_config::telemetry::shutdown_on_signals();
    chief_config::systemd::ready(&shutdown);
    let result = crate::run(agent, settings, shutdown, health).await;
    metrics.shutdown().await;
    result?;
    Ok(ExitCode::SUCCESS)
}
