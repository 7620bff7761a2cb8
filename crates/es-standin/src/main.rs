//! `chief-es-standin`: serves the in-memory Elasticsearch stand-in (dev only; see the
//! library docs) until SIGTERM or Ctrl-C, then exits 0.

use anyhow::Context;
use chief_config::telemetry::{self, LogConfig, LogFormat};
use chief_es_standin::{Standin, StandinConfig, serve};
use clap::Parser;
use tokio::net::TcpListener;

/// A dev-only, in-memory stand-in for the Elasticsearch REST calls chief makes
/// (index create/exists, _bulk, _doc, _count, _refresh) with fault injection for tests.
/// Not Elasticsearch.
#[derive(Debug, Parser)]
#[command(name = "chief-es-standin", version)]
struct Args {
    /// Address to listen on.
    #[arg(
        long,
        env = "CHIEF_ES_STANDIN_LISTEN",
        default_value = "127.0.0.1:9200"
    )]
    listen: String,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = StandinConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// `user:password`: require HTTP basic auth on every request (401 otherwise), as a
    /// cluster with security on. Default: no authentication.
    #[arg(long, env = "CHIEF_ES_STANDIN_BASIC_AUTH")]
    basic_auth: Option<String>,
    /// `ACCESS_KEY_ID:SECRET`: require every request to be signed with AWS SigV4 for
    /// service `es` with this key (403 with AWS's message otherwise), as Amazon OpenSearch
    /// Service with IAM authentication. Default: no signature required.
    #[arg(long, env = "CHIEF_ES_STANDIN_AWS_SIGV4")]
    aws_sigv4: Option<String>,
    /// Log filter (`RUST_LOG` wins when set); `debug` logs every request.
    #[arg(long, default_value = "info")]
    log_filter: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(&LogConfig {
        filter: args.log_filter.clone(),
        format: if args.log_format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listen address")?;
    tracing::info!(
        %addr,
        "chief-es-standin (dev-only in-memory Elasticsearch stand-in) listening on http://{addr}"
    );
    let shutdown = telemetry::shutdown_on_signals();
    let basic_auth = match &args.basic_auth {
        None => None,
        Some(pair) => {
            let (user, password) = pair
                .split_once(':')
                .context("--basic-auth is user:password")?;
            Some((user.to_owned(), password.to_owned()))
        }
    };
    let sigv4 = match &args.aws_sigv4 {
        None => None,
        Some(pair) => {
            let (id, secret) = pair
                .split_once(':')
                .context("--aws-sigv4 is ACCESS_KEY_ID:SECRET")?;
            Some(chief_es_standin::sigv4::SigV4Key {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
                service: "es".to_owned(),
            })
        }
    };
    let standin = Standin::new(StandinConfig {
        max_body_bytes: args.max_body_bytes,
        basic_auth,
        sigv4,
    });
    serve(listener, standin, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}
