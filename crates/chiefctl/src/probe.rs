//! `chiefctl probe`: end-to-end latency, from the producer's `send` to the record being
//! visible in Elasticsearch. Sends `--count` fresh orders (from `chief-datagen`, its own
//! seed) at `--interval-ms` through the KPL-style producer — buffering, aggregation and
//! all — while the executors run, and polls `GET /<index>/_doc/<orderid>` for each until
//! it answers 200 (every `--poll-ms`, which bounds the resolution). Writes the probes it
//! sent to `--out` as JSON lines (so that `reconcile` counts them), then prints one JSON
//! line: probes, visible, `latency_ms_p50`, `latency_ms_p99`, `latency_ms_max`. Exit 1
//! if a probe is not visible within `--timeout-s`.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chief_aggregation::UserRecord;
use chief_config::aws::AwsClients;
use chief_datagen::Generator;
use chief_pipeline::model::Order;
use chief_producer::{Producer, ProducerConfig};
use chief_stream::KinesisClient;
use serde::Serialize;

use crate::reconcile::{es_client, es_has, load_config};

/// What to probe.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The stream the orders go to.
    #[arg(long, default_value = "OrdersStream")]
    pub stream: String,
    /// The index they become visible in.
    #[arg(long, default_value = "orders")]
    pub index: String,
    /// How many probes.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Time between two probes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub interval_ms: u64,
    /// Time between two looks at Elasticsearch, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub poll_ms: u64,
    /// Give up on probes not visible after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,
    /// Generator seed of the probe orders.
    #[arg(long, default_value_t = 424_242)]
    pub seed: u64,
    /// Where the probes sent are written, as JSON lines.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write `{"orderid", "sent_unix_ms"}` per probe here (for latencies to other
    /// sinks, e.g. S3 objects' LastModified).
    #[arg(long)]
    pub sent_log: Option<PathBuf>,
    /// Config files ([aws], [elasticsearch] url), e.g. config/local.toml.
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    probes: usize,
    visible: usize,
    latency_ms_p50: Option<u64>,
    latency_ms_p99: Option<u64>,
    latency_ms_max: Option<u64>,
}

/// Runs the subcommand.
pub fn main(args: ProbeArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(&args)));
    match result {
        Ok(report) => {
            if let Ok(line) = serde_json::to_string(&report) {
                println!("{line}");
            }
            if report.visible == report.probes {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("chiefctl probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `q`-quantile (0..=1) of sorted `values`.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

async fn run(args: &ProbeArgs) -> anyhow::Result<Report> {
    let config = load_config(&args.config)?;
    let clients = AwsClients::new(&config.aws).await;
    let es = es_client(&config.elasticsearch.url)?;
    let producer = Producer::start(
        KinesisClient::new(clients.kinesis()),
        args.stream.clone(),
        ProducerConfig::default(),
    )
    .await
    .context("starting the producer")?;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?,
    );
    // id → send time, until seen.
    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let poller = {
        let (pending, latencies, es, index) = (
            Arc::clone(&pending),
            Arc::clone(&latencies),
            es.clone(),
            args.index.clone(),
        );
        let poll = Duration::from_millis(args.poll_ms.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(poll).await;
                let ids: Vec<(String, Instant)> = pending
                    .lock()
                    .map(|p| p.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default();
                for (id, sent) in ids {
                    if let Ok(true) = es_has(&es, &index, &id).await {
                        let ms = sent.elapsed().as_millis() as u64;
                        if let Ok(mut p) = pending.lock() {
                            p.remove(&id);
                        }
                        if let Ok(mut l) = latencies.lock() {
                            l.push(ms);
                        }
                    }
                }
            }
        })
    };
    let mut sent_log = match &args.sent_log {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let mut receipts = Vec::with_capacity(args.count);
    let mut generator = Generator::<Order>::new(args.seed, 0.0).context("generator")?;
    for _ in 0..args.count {
        let order = generator.next_record().0;
        let json = serde_json::to_vec(&order).context("encoding an order")?;
        out.write_all(&json)
            .and_then(|()| out.write_all(b"\n"))
            .context("writing --out")?;
        let id = order.orderid.as_str().to_owned();
        if let Some(log) = sent_log.as_mut() {
            let sent_unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let line = serde_json::json!({"orderid": id, "sent_unix_ms": sent_unix_ms});
            writeln!(log, "{line}").context("writing --sent-log")?;
        }
        if let Ok(mut p) = pending.lock() {
            p.insert(id.clone(), Instant::now());
        }
        let receipt = producer
            .send(UserRecord {
                partition_key: id,
                explicit_hash_key: None,
                data: Bytes::from(json),
            })
            .await
            .map_err(|e| anyhow::anyhow!("sending a probe: {e}"))?;
        receipts.push(receipt);
        tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
    }
    out.flush().context("writing --out")?;
    if let Some(log) = sent_log.as_mut() {
        log.flush().context("writing --sent-log")?;
    }
    producer.flush().await;
    for receipt in receipts {
        if let Err(failed) = receipt.await {
            anyhow::bail!("a probe was not put: {:?}", failed.reason);
        }
    }
    producer.shutdown().await;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    while Instant::now() < deadline && pending.lock().map(|p| !p.is_empty()).unwrap_or(false) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort_unstable();
    Ok(Report {
        probes: args.count,
        visible: latencies.len(),
        latency_ms_p50: quantile(&latencies, 0.5),
        latency_ms_p99: quantile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&[7], 0.99), Some(7));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
