//! Sending to a Firehose delivery stream, as the agent's `deliveryStream` flows do:
//! records collected into `PutRecordBatch` calls (at most 500 records and 4 MiB a call,
//! 1,000 KiB a record; fewer when the flow's `maxBufferSizeRecords`/`maxBufferSizeBytes`
//! say so), a call sent when full or when its oldest record is `maxBufferAgeMillis` old,
//! and only the entries a call reports as failed sent again, with jittered exponential
//! back-off. Every record's outcome comes back through its [`FirehoseReceipt`].
//!
//! A call refused for good (the delivery stream does not exist, the credentials are
//! refused) fails each of its records as fatal; a record still failing after
//! `max_attempts` comes back as a retryable failure, and the flow sends it again.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_firehose::error::{ProvideErrorMetadata as _, SdkError};
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Records a `PutRecordBatch` call takes at most.
pub const MAX_BATCH_RECORDS: usize = 500;
/// Bytes a `PutRecordBatch` call takes at most (the sum of its records' data).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Bytes of one Firehose record at most (1,000 KiB).
pub const MAX_RECORD: usize = 1_000 * 1024;

/// A failed call, or a failed entry of a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct FirehoseFailure {
    /// Firehose's code (`ServiceUnavailableException`, `ResourceNotFoundException`…), or
    /// `Transport`/`Timeout`.
    pub code: String,
    /// Its message.
    pub message: String,
    /// Retrying cannot help: the delivery stream is gone or access is refused.
    pub fatal: bool,
}

impl FirehoseFailure {
    fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        let code = code.into();
        let fatal = chief_stream::is_fatal_code(&code) || code == "InvalidArgumentException";
        Self {
            code,
            message: message.into(),
            fatal,
        }
    }
}

/// The two Firehose calls the agent makes. [`FirehoseClient`] is the real one; a test
/// may wrap it to refuse entries.
pub trait FirehoseApi: Clone + Send + Sync + 'static {
    /// Checks that the delivery stream exists and may be written (at start, so a wrong
    /// name or credential fails loudly before any line is read).
    fn check(&self, stream: &str) -> impl Future<Output = Result<(), FirehoseFailure>> + Send;

    /// One `PutRecordBatch`: for each record, `None` if Firehose took it, or why not.
    fn put_record_batch(
        &self,
        stream: &str,
        records: &[Bytes],
    ) -> impl Future<Output = Result<Vec<Option<FirehoseFailure>>, FirehoseFailure>> + Send;
}

/// The Firehose API through `aws-sdk-firehose`.
#[derive(Debug, Clone)]
pub struct FirehoseClient {
    client: aws_sdk_firehose::Client,
}

impl FirehoseClient {
    /// Wraps an SDK client.
    pub fn new(client: aws_sdk_firehose::Client) -> Self {
        Self { client }
    }
}

fn classify<E>(err: SdkError<E, aws_smithy_runtime_api::http::Response>) -> FirehoseFailure
where
    E: aws_sdk_firehose::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    let line = chief_stream::error_line(&err);
    match err {
        SdkError::TimeoutError(_) => FirehoseFailure::new("Timeout", line),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            FirehoseFailure::new("Transport", line)
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e
                .err()
                .code()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned);
            let message = e.err().message().unwrap_or_default().to_owned();
            FirehoseFailure::new(code, message)
        }
        other => FirehoseFailure::new(other.code().unwrap_or("Unknown").to_owned(), line),
    }
}

impl FirehoseApi for FirehoseClient {
    async fn check(&self, stream: &str) -> Result<(), FirehoseFailure> {
        self.client
            .describe_delivery_stream()
            .delivery_stream_name(stream)
            .limit(1)
            .send()
            .await
            .map(|_| ())
            .map_err(classify)
    }

    async fn put_record_batch(
        &self,
        stream: &str,
        records: &[Bytes],
    ) -> Result<Vec<Option<FirehoseFailure>>, FirehoseFailure> {
        let mut entries = Vec::with_capacity(records.len());
        for data in records {
            let record = aws_sdk_firehose::types::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(data.to_vec()))
                .build()
                .map_err(|e| FirehoseFailure::new("InvalidArgumentException", e.to_string()))?;
            entries.push(record);
        }
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .map_err(classify)?;
        let responses = out.request_responses();
        if responses.len() != records.len() {
            return Err(FirehoseFailure::new(
                "InternalFailure",
                format!(
                    "PutRecordBatch answered {} entries for {} records",
                    responses.len(),
                    records.len()
                ),
            ));
        }
        Ok(responses
            .iter()
            .map(|entry| {
                entry.error_code().map(|code| {
                    FirehoseFailure::new(code, entry.error_message().unwrap_or_default())
                })
            })
            .collect())
    }
}

/// How records are collected into calls and retried.
#[derive(Debug, Clone)]
pub struct FirehoseSettings {
    /// Records a call takes at most (1–500; the flow's `maxBufferSizeRecords`).
    pub max_records: usize,
    /// Bytes a call takes at most (the flow's `maxBufferSizeBytes`, at most 4 MiB).
    pub max_bytes: usize,
    /// Longest a record waits for its call (the flow's `maxBufferAgeMillis`).
    pub max_age: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Attempts of a record before it comes back as failed.
    pub max_attempts: u32,
    /// First back-off before sending failed entries again.
    pub initial_backoff: Duration,
    /// Longest back-off.
    pub max_backoff: Duration,
}

impl Default for FirehoseSettings {
    fn default() -> Self {
        Self {
            max_records: MAX_BATCH_RECORDS,
            max_bytes: MAX_BATCH_BYTES,
            max_age: Duration::from_secs(60),
            concurrency: 4,
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A record's outcome: `Ok` once Firehose took it, else why not and the record.
pub type FirehoseReceipt = oneshot::Receiver<Result<(), FailedRecord>>;

/// A record Firehose did not take, handed back.
#[derive(Debug, Clone)]
pub struct FailedRecord {
    /// Why.
    pub failure: FirehoseFailure,
    /// The record.
    pub data: Bytes,
}

struct Pending {
    data: Bytes,
    done: oneshot::Sender<Result<(), FailedRecord>>,
}

enum Command {
    Record(Pending),
    Flush(oneshot::Sender<()>),
}

/// Sends records to one delivery stream from a task of its own.
#[derive(Debug)]
pub struct FirehoseSender {
    stream: String,
    tx: mpsc::Sender<Command>,
}

/// Why records cannot be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirehoseError {
    /// The delivery stream cannot be written at all.
    #[error("delivery stream {stream}: {failure}")]
    Refused {
        /// The delivery stream.
        stream: String,
        /// Firehose's answer.
        failure: FirehoseFailure,
    },
    /// The record is larger than Firehose takes.
    #[error("a record of {size} bytes is larger than Firehose's {MAX_RECORD}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The sending task is gone (the process is stopping).
    #[error("delivery stream {stream}: the sender has stopped")]
    Stopped {
        /// The delivery stream.
        stream: String,
    },
}

impl FirehoseSender {
    /// Checks `stream` and starts the task that sends to it.
    ///
    /// # Errors
    /// The delivery stream does not exist or may not be written.
    pub async fn start<A: FirehoseApi>(
        api: A,
        stream: &str,
        settings: FirehoseSettings,
    ) -> Result<Self, FirehoseError> {
        api.check(stream)
            .await
            .map_err(|failure| FirehoseError::Refused {
                stream: stream.to_owned(),
                failure,
            })?;
        let (tx, rx) = mpsc::channel(settings.max_records.max(1) * 2);
        tokio::spawn(collect(api, stream.to_owned(), settings, rx));
        Ok(Self {
            stream: stream.to_owned(),
            tx,
        })
    }

    /// Queues `data`; the receipt resolves once Firehose took it or gave up.
    ///
    /// # Errors
    /// The record is too large, or the sender has stopped.
    pub async fn send(&self, data: Bytes) -> Result<FirehoseReceipt, FirehoseError> {
        if data.len() > MAX_RECORD {
            return Err(FirehoseError::TooLarge { size: data.len() });
        }
        let (done, receipt) = oneshot::channel();
        self.tx
            .send(Command::Record(Pending { data, done }))
            .await
            .map_err(|_| FirehoseError::Stopped {
                stream: self.stream.clone(),
            })?;
        Ok(receipt)
    }

    /// Sends what is collected now, without waiting for its age.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Collects records into calls until every sender is dropped.
async fn collect<A: FirehoseApi>(
    api: A,
    stream: String,
    settings: FirehoseSettings,
    mut rx: mpsc::Receiver<Command>,
) {
    let max_records = settings.max_records.clamp(1, MAX_BATCH_RECORDS);
    let max_bytes = settings.max_bytes.clamp(1, MAX_BATCH_BYTES);
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let settings = Arc::new(settings);
    let stream: Arc<str> = stream.into();
    let mut batch: Vec<Pending> = Vec::new();
    let mut bytes = 0usize;
    let mut oldest = Instant::now();
    loop {
        let deadline = oldest + settings.max_age;
        let command = if batch.is_empty() {
            rx.recv().await
        } else {
            tokio::select! {
                c = rx.recv() => c,
                () = tokio::time::sleep_until(deadline.into()) => {
                    let full = std::mem::take(&mut batch);
                    bytes = 0;
                    dispatch(&api, &stream, &settings, &permits, full).await;
                    continue;
                }
            }
        };
        match command {
            None => break,
            Some(Command::Flush(ack)) => {
                if !batch.is_empty() {
                    let full = std::mem::take(&mut batch);
                    bytes = 0;
                    dispatch(&api, &stream, &settings, &permits, full).await;
                }
                let _ = ack.send(());
            }
            Some(Command::Record(pending)) => {
                if !batch.is_empty() && bytes + pending.data.len() > max_bytes {
                    let full = std::mem::take(&mut batch);
                    bytes = 0;
                    dispatch(&api, &stream, &settings, &permits, full).await;
                }
                if batch.is_empty() {
                    oldest = Instant::now();
                }
                bytes += pending.data.len();
                batch.push(pending);
                if batch.len() >= max_records {
                    let full = std::mem::take(&mut batch);
                    bytes = 0;
                    dispatch(&api, &stream, &settings, &permits, full).await;
                }
            }
        }
    }
    if !batch.is_empty() {
        dispatch(&api, &stream, &settings, &permits, batch).await;
    }
}

/// Starts one call (waiting while `concurrency` calls are in flight).
async fn dispatch<A: FirehoseApi>(
    api: &A,
    stream: &Arc<str>,
    settings: &Arc<FirehoseSettings>,
    permits: &Arc<Semaphore>,
    batch: Vec<Pending>,
) {
    let Ok(permit) = permits.clone().acquire_owned().await else {
        return;
    };
    let (api, stream, settings) = (api.clone(), stream.clone(), settings.clone());
    tokio::spawn(async move {
        put(&api, &stream, &settings, batch).await;
        drop(permit);
    });
}

fn backoff(settings: &FirehoseSettings, attempt: u32) -> Duration {
    let base = settings
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(settings.max_backoff);
    // Full jitter over the upper half, so retries of several calls spread out.
    let half = base / 2;
    half + base.saturating_sub(half).mul_f64(rand::random::<f64>())
}

/// Sends `batch`, then only its failed entries again, until each is taken, fatal, or out
/// of attempts.
async fn put<A: FirehoseApi>(
    api: &A,
    stream: &str,
    settings: &FirehoseSettings,
    batch: Vec<Pending>,
) {
    let mut left = batch;
    let mut attempt = 0u32;
    while !left.is_empty() {
        attempt += 1;
        let data: Vec<Bytes> = left.iter().map(|p| p.data.clone()).collect();
        let started = Instant::now();
        let answer = api.put_record_batch(stream, &data).await;
        metrics::histogram!(crate::metrics::FIREHOSE_CALL_SECONDS, crate::metrics::STREAM => stream.to_owned())
            .record(started.elapsed().as_secs_f64());
        let failures: Vec<(Pending, FirehoseFailure)> = match answer {
            Ok(results) => {
                let mut failed = Vec::new();
                for (pending, result) in left.drain(..).zip(results) {
                    match result {
                        None => {
                            let _ = pending.done.send(Ok(()));
                        }
                        Some(failure) => failed.push((pending, failure)),
                    }
                }
                failed
            }
            Err(failure) => left.drain(..).map(|p| (p, failure.clone())).collect(),
        };
        if failures.is_empty() {
            return;
        }
        let first = failures[0].1.clone();
        metrics::counter!(crate::metrics::FIREHOSE_FAILED_ENTRIES, crate::metrics::STREAM => stream.to_owned(), "code" => first.code.clone())
            .increment(failures.len() as u64);
        for (pending, failure) in failures {
            if failure.fatal || attempt >= settings.max_attempts {
                let _ = pending.done.send(Err(FailedRecord {
                    failure,
                    data: pending.data,
                }));
            } else {
                left.push(pending);
            }
        }
        if left.is_empty() {
            return;
        }
        let wait = backoff(settings, attempt);
        tracing::warn!(stream, failed = left.len(), attempt, code = %first.code, message = %first.message, wait_ms = wait.as_millis() as u64, "PutRecordBatch entries failed; sending those again");
        tokio::time::sleep(wait).await;
    }
}
