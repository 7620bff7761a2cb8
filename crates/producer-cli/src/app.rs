//! What the `chief-producer` binary does, as a library function: read JSON lines (or
//! generate orders / job results), send them with partition key = `orderid`, show
//! progress, and write every record that finally failed — and every malformed input
//! line — to a failed-records file as JSON lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use chief_config::aws::AwsConfig;
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_datagen::Generator;
use chief_pipeline::model::{JobResult, ModelError, Order, OrderId};
use chief_stream::StreamClient;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use chief_producer::{Producer, ProducerConfig, ProducerError, RecordReceipt, UserRecord};

/// `config/producer.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerAppConfig {
    /// Logging.
    pub log: LogConfig,
    /// AWS clients.
    pub aws: AwsConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The producer.
    pub producer: ProducerConfig,
}

/// What to send.
pub enum Source {
    /// JSON lines, one record of `kind` each, checked against the record contract
    /// (`chief_pipeline::model`): a line that breaks it goes to the failed file with the
    /// reason and is not sent.
    Lines {
        /// What every line must be.
        kind: RecordKind,
        /// The lines.
        reader: Box<dyn AsyncBufRead + Unpin + Send>,
    },
    /// Generated records.
    Generate(GenerateSpec),
}

/// Which records to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordKind {
    /// Orders (the OrdersStream).
    Orders,
    /// Job results (the JobResultsStream).
    Jobresults,
}

/// How many records to generate, how fast.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateSpec {
    /// Orders or job results.
    pub kind: RecordKind,
    /// Records per second (0: as fast as the producer takes them).
    pub rate_per_sec: u64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Generator seed.
    pub seed: u64,
    /// Share of repeated records.
    pub duplicate_ratio: f64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Records handed to the producer.
    pub sent: u64,
    /// Records put.
    pub put: u64,
    /// Records that finally failed (written to the failed file).
    pub failed: u64,
    /// Input lines that were not records (written to the failed file).
    pub malformed: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The failed-records file, if anything was written to it.
    pub failed_file: Option<PathBuf>,
    /// Whether the run was stopped by the shutdown signal.
    pub interrupted: bool,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The producer did not start.
    #[error(transparent)]
    Producer(#[from] ProducerError),
    /// Reading the input failed.
    #[error("reading input: {0}")]
    Input(std::io::Error),
    /// Writing the failed-records file failed.
    #[error("writing failed records to {path}: {source}")]
    FailedFile {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A generated record could not be serialised.
    #[error("serialising a generated record: {0}")]
    Serialize(serde_json::Error),
    /// The generator refused its settings.
    #[error("generator: {0}")]
    Generate(#[from] chief_datagen::DatagenError),
}

/// The failed-records file, opened on the first failure.
struct FailedFile {
    path: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
}

impl FailedFile {
    async fn write(&mut self, line: serde_json::Value) -> Result<(), AppError> {
        let err = |source| AppError::FailedFile {
            path: self.path.clone(),
            source,
        };
        if self.file.is_none() {
            let f = tokio::fs::File::create(&self.path).await.map_err(err)?;
            self.file = Some(tokio::io::BufWriter::new(f));
        }
        if let Some(f) = &mut self.file {
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            f.write_all(&bytes)
                .await
                .map_err(|source| AppError::FailedFile {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    async fn close(mut self) -> Result<Option<PathBuf>, AppError> {
        match self.file.take() {
            Some(mut f) => {
                f.flush().await.map_err(|source| AppError::FailedFile {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(Some(self.path))
            }
            None => Ok(None),
        }
    }
}

/// The input bytes as JSON: a string when UTF-8, else `{"base64": …}`.
fn input_value(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    }
}

/// The readiness check the run keeps: failing from a record that failed (expired,
/// refused, throttled with `fail_if_throttled`) until one is put again.
pub const KINESIS_CHECK: &str = "kinesis";

/// Sends `source` to `stream` and reports. Stops reading when `shutdown` fires, then
/// flushes what was sent. Progress goes to stderr every `progress` (if set); `health`
/// gets [`KINESIS_CHECK`].
#[allow(clippy::too_many_arguments)]
pub async fn run<C: StreamClient>(
    client: C,
    stream: &str,
    config: ProducerConfig,
    source: Source,
    failed_path: &Path,
    progress: Option<Duration>,
    shutdown: CancellationToken,
    health: Health,
) -> Result<RunSummary, AppError> {
    let started = Instant::now();
    let producer = Arc::new(Producer::start(client, stream, config).await?);
    let mut failed_file = FailedFile {
        path: failed_path.to_path_buf(),
        file: None,
    };

    // Outcomes are awaited in send order by one task; the channel bound keeps memory bounded.
    let (receipts_tx, mut receipts_rx) = mpsc::channel::<(u64, RecordReceipt)>(65_536);
    let (malformed_tx, mut malformed_rx) = mpsc::unbounded_channel::<serde_json::Value>();
    let collector = tokio::spawn(async move {
        let mut failed = 0u64;
        let mut failed_in_a_row = 0u64;
        let mut malformed = 0u64;
        let mut receipts_open = true;
        let mut malformed_open = true;
        while receipts_open || malformed_open {
            tokio::select! {
                r = receipts_rx.recv(), if receipts_open => match r {
                    Some((line, receipt)) => {
                        let outcome = receipt.await;
                        if outcome.is_ok() && failed_in_a_row > 0 {
                            failed_in_a_row = 0;
                            health.pass(KINESIS_CHECK);
                        }
                        if let Err(f) = outcome {
                            failed += 1;
                            failed_in_a_row += 1;
                            let last = f.attempts.last().and_then(|a| a.error.as_ref());
                            health.fail(
                                KINESIS_CHECK,
                                format!(
                                    "{failed_in_a_row} records failed since the last one put ({:?}{})",
                                    f.reason,
                                    last.map(|e| format!(", last error {}: {}", e.code, e.message))
                                        .unwrap_or_default()
                                ),
                            );
                            let attempts: Vec<serde_json::Value> = f.attempts.iter().map(|a| serde_json::json!({
                                "code": a.error.as_ref().map(|e| e.code.as_str()),
                                "message": a.error.as_ref().map(|e| e.message.as_str()),
                                "duration_ms": a.duration.as_millis() as u64,
                                "delay_ms": a.delay.as_millis() as u64,
                            })).collect();
                            let (key, input) = match &f.record {
                                Some(r) => (Some(r.partition_key.clone()), input_value(&r.data)),
                                None => (None, serde_json::Value::Null),
                            };
                            failed_file.write(serde_json::json!({
                                "line": line,
                                "partition_key": key,
                                "reason": format!("{:?}", f.reason),
                                "attempts": attempts,
                                "input": input,
                            })).await?;
                        }
                    }
                    None => receipts_open = false,
                },
                m = malformed_rx.recv(), if malformed_open => match m {
                    Some(value) => {
                        malformed += 1;
                        failed_file.write(value).await?;
                    }
                    None => malformed_open = false,
                },
            }
        }
        let path = failed_file.close().await?;
        Ok::<_, AppError>((failed, malformed, path))
    });

    let ticker = progress.map(|every| {
        let producer = producer.clone();
        let stream = stream.to_owned();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(every).await;
                let s = producer.stats();
                let now = Instant::now();
                let rate = s.put.saturating_sub(last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, s.put);
                eprintln!(
                    "chief-producer: {stream}: sent {} put {} failed {} in flight {} ({rate:.0} records/s put)",
                    s.received, s.put, s.failed, s.pending
                );
            }
        })
    });

    let send_result = match source {
        Source::Lines { kind, reader } => {
            send_lines(
                &producer,
                kind,
                reader,
                &receipts_tx,
                &malformed_tx,
                &shutdown,
            )
            .await
        }
        Source::Generate(spec) => {
            send_generated(&producer, &spec, &receipts_tx, &malformed_tx, &shutdown).await
        }
    };
    drop(receipts_tx);
    drop(malformed_tx);
    // Progress goes on while the outcomes of what was sent come in.
    let collected = collector.await;
    if let Some(t) = ticker {
        t.abort();
        let _ = t.await;
    }
    let stats = match Arc::try_unwrap(producer) {
        Ok(p) => p.shutdown().await,
        Err(p) => {
            p.flush().await;
            p.stats()
        }
    };
    send_result?;
    let (failed, malformed, failed_file) = match collected {
        Ok(r) => r?,
        Err(e) => {
            return Err(AppError::FailedFile {
                path: failed_path.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            });
        }
    };
    Ok(RunSummary {
        sent: stats.received,
        put: stats.put,
        failed,
        malformed,
        elapsed: started.elapsed(),
        failed_file,
        interrupted: shutdown.is_cancelled(),
    })
}

/// The `orderid` of `data` if it is a valid record of `kind` (the record contract).
fn checked_id(kind: RecordKind, data: &[u8]) -> Result<OrderId, ModelError> {
    match kind {
        RecordKind::Orders => Order::parse(data).map(|order| order.orderid),
        RecordKind::Jobresults => JobResult::parse(data).map(|job| job.orderid),
    }
}

async fn send_lines(
    producer: &Producer,
    kind: RecordKind,
    mut reader: Box<dyn AsyncBufRead + Unpin + Send>,
    receipts: &mpsc::Sender<(u64, RecordReceipt)>,
    malformed: &mpsc::UnboundedSender<serde_json::Value>,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    let mut line_no = 0u64;
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        let n = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            n = reader.read_until(b'\n', &mut buf) => n.map_err(AppError::Input)?,
        };
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match checked_id(kind, &buf) {
            Ok(id) => UserRecord::new(id.into_string(), buf.clone()),
            Err(e) => {
                tracing::warn!(line = line_no, error = %e, "malformed input line");
                let _ = malformed.send(serde_json::json!({
                    "line": line_no,
                    "error": e.to_string(),
                    "input": input_value(&buf),
                }));
                continue;
            }
        };
        send_one(producer, line_no, record, receipts, malformed).await;
    }
}

async fn send_one(
    producer: &Producer,
    line: u64,
    record: UserRecord,
    receipts: &mpsc::Sender<(u64, RecordReceipt)>,
    malformed: &mpsc::UnboundedSender<serde_json::Value>,
) {
    match producer.send(record).await {
        Ok(receipt) => {
            let _ = receipts.send((line, receipt)).await;
        }
        Err(e) => {
            tracing::warn!(line, error = %e, "record refused");
            let error = e.to_string();
            let record = e.into_record();
            let _ = malformed.send(serde_json::json!({
                "line": line,
                "error": error,
                "partition_key": record.partition_key,
                "input": input_value(&record.data),
            }));
        }
    }
}

async fn send_generated(
    producer: &Producer,
    spec: &GenerateSpec,
    receipts: &mpsc::Sender<(u64, RecordReceipt)>,
    malformed: &mpsc::UnboundedSender<serde_json::Value>,
    shutdown: &CancellationToken,
) -> Result<(), AppError> {
    let start = Instant::now();
    type Next = Box<dyn FnMut() -> Result<(String, Vec<u8>), serde_json::Error> + Send>;
    let mut next: Next = match spec.kind {
        RecordKind::Orders => {
            let mut g = Generator::<Order>::new(spec.seed, spec.duplicate_ratio)?;
            Box::new(move || {
                let (o, _) = g.next_record();
                Ok((o.orderid.to_string(), serde_json::to_vec(&o)?))
            })
        }
        RecordKind::Jobresults => {
            let mut g = Generator::<JobResult>::new(spec.seed, spec.duplicate_ratio)?;
            Box::new(move || {
                let (j, _) = g.next_record();
                Ok((j.orderid.to_string(), serde_json::to_vec(&j)?))
            })
        }
    };
    let mut sent = 0u64;
    loop {
        if shutdown.is_cancelled()
            || spec.count.is_some_and(|c| sent >= c)
            || spec.duration.is_some_and(|d| start.elapsed() >= d)
        {
            return Ok(());
        }
        if spec.rate_per_sec > 0 {
            let due = (start.elapsed().as_secs_f64() * spec.rate_per_sec as f64) as u64;
            if sent >= due {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        }
        let (key, data) = next().map_err(AppError::Serialize)?;
        sent += 1;
        send_one(
            producer,
            sent,
            UserRecord::new(key, data),
            receipts,
            malformed,
        )
        .await;
    }
}
