//! One flow at work: tail → records (multi-line, truncation) → `dataProcessingOptions` →
//! the destination (a Kinesis stream or a Firehose delivery stream); a record that does
//! not convert goes to the flow's error output (a file, or an error stream). Every line
//! is delivered in order per file: the checkpoint moves past a line only once the
//! destination acknowledged it (or the error output holds it), and a record the
//! destination gives up on is sent again, never skipped.

use std::collections::{HashMap, VecDeque};
use std::future::Future as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chief_aggregation::UserRecord;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointFile, FlowCheckpoint};
use crate::config::{Flow, InitialPosition, PartitionKeyOption};
use crate::convert::Pipeline;
use crate::metrics as m;
use crate::send::{Receipt, Sender};
use crate::tail::{Event, FileKey, Line, Tailer};

/// Why a flow stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// The flow's settings are not usable.
    #[error("flow {flow}: {message}")]
    Config {
        /// The flow.
        flow: String,
        /// Why.
        message: String,
    },
    /// Files could not be read, or the error file or checkpoint written.
    #[error("flow {flow}: {source}")]
    Io {
        /// The flow.
        flow: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint file could not be written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The destination refused a record for good (the stream does not exist, access
    /// denied).
    #[error("flow {flow}: the destination refused a record: {reason}")]
    Rejected {
        /// The flow.
        flow: String,
        /// Kinesis' code and message.
        reason: String,
    },
}

/// How far each file's lines are delivered, shared by the flow and its acknowledger.
pub type Delivered = Arc<Mutex<HashMap<FileKey, u64>>>;

/// A record on its way, from its line to the destination's acknowledgement.
struct InFlight {
    file: FileKey,
    end: u64,
    /// The record, until it is handed to the destination (which hands it back if it
    /// gives up on it).
    record: Option<UserRecord>,
    receipt: Option<Receipt>,
    /// Sent to the error stream, not the flow's destination.
    error: bool,
}

/// Where records that do not convert go.
enum ErrorOutput {
    /// Appended to a file (opened at the first one).
    File {
        path: PathBuf,
        file: Option<std::fs::File>,
    },
    /// Sent to a stream.
    Stream(Sender),
}

/// A multi-line record being assembled.
struct Assembling {
    file: FileKey,
    text: Vec<u8>,
    number: u64,
    end: u64,
    replayed: bool,
    last: Instant,
}

/// Runs one flow until `shutdown`.
pub struct FlowRunner {
    id: String,
    flow: Flow,
    sender: Sender,
    pipeline: Pipeline,
    start: Option<regex::bytes::Regex>,
    checkpoints: CheckpointFile,
    errors: ErrorOutput,
    delivered: Delivered,
    assembling: HashMap<FileKey, Assembling>,
    paths: HashMap<FileKey, PathBuf>,
    stats: Stats,
    max_in_flight: usize,
    counters: Counters,
    /// Records converted and not yet handed to the destination (sent as one batch).
    batch: Vec<InFlight>,
}

/// Records handed to the destination at once at most.
const BATCH: usize = 500;

/// The flow's counters, registered once (an increment is then one atomic add).
struct Counters {
    lines: metrics::Counter,
    sent: metrics::Counter,
    acked: metrics::Counter,
    replayed: metrics::Counter,
    truncated: metrics::Counter,
    errors: metrics::Counter,
}

impl Counters {
    fn new(flow: &str) -> Self {
        let c = |name: &'static str| metrics::counter!(name, m::FLOW => flow.to_owned());
        Self {
            lines: c(m::LINES_READ),
            sent: c(m::RECORDS_SENT),
            acked: c(m::RECORDS_ACKED),
            replayed: c(m::REPLAYED_RECORDS),
            truncated: c(m::RECORDS_TRUNCATED),
            errors: c(m::RECORDS_IN_ERROR_OUTPUT),
        }
    }
}

/// What a flow did (logged every 30 s as the agent logs its progress).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Lines read.
    pub lines: u64,
    /// Records handed to the destination.
    pub sent: u64,
    /// Records acknowledged by the destination.
    pub acked: u64,
    /// Records sent to the error output.
    pub errors: u64,
    /// Records sent again after the destination gave up on them.
    pub resent: u64,
    /// Records perhaps sent before a restart, sent again.
    pub replayed: u64,
}

fn partition_key(option: PartitionKeyOption, data: &[u8]) -> String {
    use md5::Digest as _;
    match option {
        PartitionKeyOption::Random => hex(&rand::random::<u128>().to_be_bytes()),
        PartitionKeyOption::Deterministic => hex(&md5::Md5::digest(data)),
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn rfc3339_now() -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl FlowRunner {
    /// A runner of `flow` sending with `sender`; records that do not convert go to
    /// `error_stream` when given, else to the flow's error file.
    ///
    /// # Errors
    /// Bad processing options or multi-line pattern.
    pub fn new(
        flow: Flow,
        sender: Sender,
        error_stream: Option<Sender>,
        checkpoints: CheckpointFile,
        default_error_dir: &std::path::Path,
    ) -> Result<Self, FlowError> {
        let id = flow.id();
        let bad = |message: String| FlowError::Config {
            flow: id.clone(),
            message,
        };
        let pipeline = Pipeline::new(&flow.data_processing_options).map_err(bad)?;
        let start = flow
            .multi_line_start_pattern
            .as_deref()
            .map(regex::bytes::Regex::new)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        let path = flow.error_file.clone().unwrap_or_else(|| {
            let safe: String = id
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            default_error_dir.join(format!("{safe}.jsonl"))
        });
        let errors = match error_stream {
            Some(sender) => ErrorOutput::Stream(sender),
            None => ErrorOutput::File { path, file: None },
        };
        Ok(Self {
            id: id.clone(),
            flow,
            sender,
            pipeline,
            start,
            checkpoints,
            errors,
            delivered: Arc::new(Mutex::new(HashMap::new())),
            assembling: HashMap::new(),
            paths: HashMap::new(),
            stats: Stats::default(),
            max_in_flight: 5_000,
            counters: Counters::new(&id),
            batch: Vec::new(),
        })
    }

    /// Reading waits while this many records are in flight.
    #[must_use]
    pub fn with_max_in_flight(mut self, records: usize) -> Self {
        self.max_in_flight = records.max(1);
        self
    }

    fn io(&self, source: std::io::Error) -> FlowError {
        FlowError::Io {
            flow: self.id.clone(),
            source,
        }
    }

    /// Runs until `shutdown`; then waits for what is in flight (at most `drain`), writes
    /// the last checkpoint and returns.
    ///
    /// # Errors
    /// A file, error file or checkpoint that cannot be read or written, or a stream that
    /// destination that refuses records for good.
    pub async fn run(
        mut self,
        shutdown: CancellationToken,
        drain: Duration,
    ) -> Result<Stats, FlowError> {
        let known = self.checkpoints.flow(&self.id).files;
        let mut tailer = Tailer::new(
            &self.flow.file_pattern,
            self.flow.initial_position == InitialPosition::EndOfFile,
            self.flow.skip_header_lines,
            known,
        )
        .map_err(|message| FlowError::Config {
            flow: self.id.clone(),
            message,
        })?;
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut last_scan = Instant::now() - Duration::from_secs(60);
        let mut last_checkpoint = Instant::now();
        let mut last_progress = Instant::now();
        let mut events = Vec::new();
        let mut lines = Vec::new();
        loop {
            let stopping = shutdown.is_cancelled();
            let mut read_any = false;
            if !stopping {
                if last_scan.elapsed() >= Duration::from_millis(500) || tailer.wants_scan() {
                    tailer.scan(&mut events).map_err(|e| self.io(e))?;
                    last_scan = Instant::now();
                }
                // Reading waits while much is in flight: lines wait in their files, not in
                // memory, and a record never waits long enough in the producer to expire.
                if inflight.len() < self.max_in_flight {
                    let delivered = self.delivered.clone();
                    tailer
                        .read(
                            4 * 1024 * 1024,
                            |key| {
                                delivered
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .get(&key)
                                    .copied()
                            },
                            &mut lines,
                            &mut events,
                        )
                        .map_err(|e| self.io(e))?;
                }
                self.note_events(&mut events);
                if tailer.needs_checkpoint_before_sending() {
                    self.write_checkpoint(&mut tailer)?;
                    last_checkpoint = Instant::now();
                }
                read_any = !lines.is_empty();
                for line in lines.drain(..) {
                    self.stats.lines += 1;
                    self.counters.lines.increment(1);
                    self.take_line(line, &mut inflight).await?;
                }
                self.flush_assembled(!read_any, &mut inflight).await?;
                self.send_batch(&mut inflight).await?;
            }
            let before = self.stats.acked;
            self.drain_acks(&mut inflight, false).await?;
            let acked_any = self.stats.acked > before;
            if last_checkpoint.elapsed() >= Duration::from_secs(1) {
                self.write_checkpoint(&mut tailer)?;
                last_checkpoint = Instant::now();
            }
            if last_progress.elapsed() >= Duration::from_secs(30) {
                self.progress(&tailer);
                last_progress = Instant::now();
            }
            if stopping {
                break;
            }
            if read_any || acked_any {
                // Let the producer (and the other flows) run.
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        }
        // Shutdown: what is assembled goes, then what is in flight is waited for.
        self.flush_assembled(true, &mut inflight).await?;
        self.send_batch(&mut inflight).await?;
        self.sender.flush().await;
        if let ErrorOutput::Stream(errors) = &self.errors {
            errors.flush().await;
        }
        let deadline = Instant::now() + drain;
        while !inflight.is_empty() && Instant::now() < deadline {
            self.drain_acks(&mut inflight, true).await?;
        }
        self.write_checkpoint(&mut tailer)?;
        self.progress(&tailer);
        Ok(self.stats)
    }

    fn note_events(&mut self, events: &mut Vec<Event>) {
        for event in events.drain(..) {
            match event {
                Event::Opened { file, path, offset } => {
                    tracing::info!(flow = %self.id, path = %path.display(), offset, "tailing file");
                    self.paths.insert(file, path);
                }
                Event::Truncated {
                    file,
                    copy,
                    missing,
                } => {
                    tracing::info!(flow = %self.id, file, copy = ?copy, missing, "file truncated in place (copytruncate)");
                    if missing > 0 {
                        metrics::counter!(m::BYTES_LOST_TO_TRUNCATION, m::FLOW => self.id.clone())
                            .increment(missing);
                    }
                }
                Event::Closed { file } => {
                    tracing::info!(flow = %self.id, path = ?self.paths.get(&file), "file read to its end and gone; closed");
                    self.paths.remove(&file);
                }
            }
        }
    }

    async fn take_line(
        &mut self,
        line: Line,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<(), FlowError> {
        let Some(start) = &self.start else {
            return self
                .record(
                    line.file,
                    line.text,
                    line.number,
                    line.end,
                    line.replayed,
                    inflight,
                )
                .await;
        };
        let begins = start.is_match(&line.text);
        if begins {
            if let Some(done) = self.assembling.remove(&line.file) {
                self.record(
                    done.file,
                    done.text,
                    done.number,
                    done.end,
                    done.replayed,
                    inflight,
                )
                .await?;
            }
            self.assembling.insert(
                line.file,
                Assembling {
                    file: line.file,
                    text: line.text,
                    number: line.number,
                    end: line.end,
                    replayed: line.replayed,
                    last: Instant::now(),
                },
            );
            Ok(())
        } else if let Some(open) = self.assembling.get_mut(&line.file) {
            open.text.push(b'\n');
            open.text.extend_from_slice(&line.text);
            open.end = line.end;
            open.last = Instant::now();
            Ok(())
        } else {
            // Lines before the first start line are a record each.
            self.record(
                line.file,
                line.text,
                line.number,
                line.end,
                line.replayed,
                inflight,
            )
            .await
        }
    }

    async fn flush_assembled(
        &mut self,
        idle: bool,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<(), FlowError> {
        let age = Duration::from_millis(self.flow.max_buffer_age_millis);
        let due: Vec<FileKey> = self
            .assembling
            .iter()
            .filter(|(_, a)| idle && a.last.elapsed() >= age.min(Duration::from_secs(1)))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(done) = self.assembling.remove(&key) {
                self.record(
                    done.file,
                    done.text,
                    done.number,
                    done.end,
                    done.replayed,
                    inflight,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// One record: converted and sent, or written to the error file.
    async fn record(
        &mut self,
        file: FileKey,
        text: Vec<u8>,
        number: u64,
        end: u64,
        replayed: bool,
        inflight: &mut VecDeque<InFlight>,
    ) -> Result<(), FlowError> {
        if replayed {
            self.stats.replayed += 1;
            self.counters.replayed.increment(1);
        }
        let converted = if self.pipeline.is_empty() {
            let mut data = text.clone();
            data.push(b'\n');
            Ok(data)
        } else {
            let now = if self.pipeline.needs_time() {
                rfc3339_now()
            } else {
                String::new()
            };
            self.pipeline.convert(&text, &now)
        };
        let mut data = match converted {
            Ok(data) => data,
            Err(why) => {
                // In order: what was converted before it goes first.
                self.send_batch(inflight).await?;
                let receipt = self.write_error(file, number, &text, &why).await?;
                inflight.push_back(InFlight {
                    file,
                    end,
                    record: None,
                    receipt,
                    error: true,
                });
                return Ok(());
            }
        };
        let key = if self.sender.keyed() {
            partition_key(self.flow.partition_key_option, &data)
        } else {
            String::new()
        };
        let max = self.sender.max_record(key.len());
        if data.len() > max {
            let terminator = self.flow.truncated_record_terminator.as_bytes();
            data.truncate(max.saturating_sub(terminator.len()));
            data.extend_from_slice(terminator);
            self.counters.truncated.increment(1);
        }
        let record = UserRecord {
            partition_key: key,
            explicit_hash_key: None,
            data: Bytes::from(data),
        };
        self.batch.push(InFlight {
            file,
            end,
            record: Some(record),
            receipt: None,
            error: false,
        });
        if self.batch.len() >= BATCH {
            self.send_batch(inflight).await?;
        }
        Ok(())
    }

    /// Hands the records converted so far to the destination, at once.
    async fn send_batch(&mut self, inflight: &mut VecDeque<InFlight>) -> Result<(), FlowError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let records: Vec<UserRecord> = self
            .batch
            .iter_mut()
            .filter_map(|entry| entry.record.take())
            .collect();
        let n = records.len();
        let receipts = self
            .sender
            .send_batch(records)
            .await
            .map_err(|e| FlowError::Rejected {
                flow: self.id.clone(),
                reason: e.reason,
            })?;
        if receipts.len() != self.batch.len() {
            return Err(FlowError::Rejected {
                flow: self.id.clone(),
                reason: format!(
                    "{} receipts for {} records",
                    receipts.len(),
                    self.batch.len()
                ),
            });
        }
        self.stats.sent += n as u64;
        self.counters.sent.increment(n as u64);
        for (mut entry, receipt) in self.batch.drain(..).zip(receipts) {
            entry.receipt = Some(receipt);
            inflight.push_back(entry);
        }
        Ok(())
    }

    /// Sends to the destination, or with `error` to the error stream.
    async fn send(&mut self, record: UserRecord, error: bool) -> Result<Receipt, FlowError> {
        let sender = match (&self.errors, error) {
            (ErrorOutput::Stream(errors), true) => errors,
            _ => &self.sender,
        };
        match sender.send(record).await {
            Ok(receipt) => {
                if !error {
                    self.stats.sent += 1;
                    self.counters.sent.increment(1);
                }
                Ok(receipt)
            }
            Err(e) => Err(FlowError::Rejected {
                flow: self.id.clone(),
                reason: e.reason,
            }),
        }
    }

    /// Writes a record that does not convert to the error output: appended to the error
    /// file (then delivered: no receipt), or sent to the error stream (then its receipt).
    async fn write_error(
        &mut self,
        file: FileKey,
        number: u64,
        text: &[u8],
        why: &str,
    ) -> Result<Option<Receipt>, FlowError> {
        use base64::Engine as _;
        let entry = serde_json::json!({
            "flow": self.id,
            "file": self.paths.get(&file).map(|p| p.display().to_string()),
            "line": number,
            "error": why,
            "data": String::from_utf8_lossy(text),
            "dataBase64": base64::engine::general_purpose::STANDARD.encode(text),
            "time": rfc3339_now(),
        });
        let mut line = entry.to_string().into_bytes();
        line.push(b'\n');
        self.stats.errors += 1;
        self.counters.errors.increment(1);
        let flow = self.id.clone();
        let io = |source| FlowError::Io {
            flow: flow.clone(),
            source,
        };
        match &mut self.errors {
            ErrorOutput::File { path, file: open } => {
                tracing::warn!(flow = %self.id, line = number, error = why, file = %path.display(), "record does not convert; written to the error file");
                if open.is_none() {
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir).map_err(io)?;
                    }
                    let f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&*path)
                        .map_err(io)?;
                    *open = Some(f);
                }
                if let Some(f) = open.as_mut() {
                    f.write_all(&line).map_err(io)?;
                }
                Ok(None)
            }
            ErrorOutput::Stream(_) => {
                tracing::warn!(flow = %self.id, line = number, error = why, "record does not convert; sent to the error stream");
                let record = UserRecord {
                    partition_key: partition_key(PartitionKeyOption::Random, &line),
                    explicit_hash_key: None,
                    data: Bytes::from(line),
                };
                Ok(Some(self.send(record, true).await?))
            }
        }
    }

    /// Moves the delivered offsets past the acknowledged records at the front, in order;
    /// a record the producer gave up on is sent again. With `wait`, waits for the front.
    async fn drain_acks(
        &mut self,
        inflight: &mut VecDeque<InFlight>,
        wait: bool,
    ) -> Result<(), FlowError> {
        loop {
            let Some(front) = inflight.front_mut() else {
                return Ok(());
            };
            let outcome = match front.receipt.as_mut() {
                None => None,
                Some(receipt) if wait => Some(
                    tokio::time::timeout(Duration::from_millis(200), receipt)
                        .await
                        .ok(),
                ),
                // Ready or not, polled once: no timer, and outside tokio's cooperative
                // budget (which would make a long run of ready receipts look pending).
                Some(receipt) => {
                    let polled = tokio::task::unconstrained(std::future::poll_fn(|cx| {
                        std::task::Poll::Ready(std::pin::Pin::new(&mut *receipt).poll(cx))
                    }))
                    .await;
                    match polled {
                        std::task::Poll::Ready(outcome) => Some(Some(outcome)),
                        std::task::Poll::Pending => Some(None),
                    }
                }
            };
            match outcome {
                // An error-file record: delivered as soon as it is at the front.
                None => {}
                // Not acknowledged yet.
                Some(None) => return Ok(()),
                // Error records are counted when written.
                Some(Some(Ok(()))) if front.error => {}
                Some(Some(Ok(()))) => {
                    self.stats.acked += 1;
                    self.counters.acked.increment(1);
                }
                Some(Some(Err(failure))) => {
                    if failure.fatal {
                        return Err(FlowError::Rejected {
                            flow: self.id.clone(),
                            reason: failure.reason,
                        });
                    }
                    let error = front.error;
                    tracing::warn!(flow = %self.id, reason = %failure.reason, "record not put; sending it again");
                    // The destination hands the record back; one it lost cannot be sent
                    // again from here: stop, and the restart reads it from the file again.
                    let Some(record) = failure.record else {
                        return Err(FlowError::Rejected {
                            flow: self.id.clone(),
                            reason: format!("{} (the record was not handed back)", failure.reason),
                        });
                    };
                    self.stats.resent += 1;
                    let receipt = self.send(record, error).await?;
                    if let Some(front) = inflight.front_mut() {
                        front.receipt = Some(receipt);
                    }
                    continue;
                }
            }
            if let Some(done) = inflight.pop_front() {
                self.delivered
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(done.file, done.end);
            }
        }
    }

    fn write_checkpoint(&mut self, tailer: &mut Tailer) -> Result<(), FlowError> {
        if let ErrorOutput::File { file: Some(f), .. } = &mut self.errors {
            // The error records a checkpoint moves past are on disk first.
            f.sync_data().map_err(|e| FlowError::Io {
                flow: self.id.clone(),
                source: e,
            })?;
        }
        let delivered = self.delivered.clone();
        let files = tailer.positions(|key| {
            delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&key)
                .copied()
        });
        self.checkpoints.store(&self.id, FlowCheckpoint { files })?;
        Ok(())
    }

    fn progress(&self, tailer: &Tailer) {
        let s = &self.stats;
        tracing::info!(
            flow = %self.id,
            files = tailer.open_files(),
            lines = s.lines,
            sent = s.sent,
            acked = s.acked,
            errors = s.errors,
            resent = s.resent,
            replayed = s.replayed,
            "progress"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_are_32_hex_digits_as_the_agent_makes_them() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let random = partition_key(PartitionKeyOption::Random, b"x");
        assert_eq!(random.len(), 32);
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // The agent's DETERMINISTIC key: the MD5 of the record, in hex.
        assert_eq!(
            partition_key(PartitionKeyOption::Deterministic, b"hello"),
            "5d41402abc4b2a76b9719d911017c592"
        );
    }
}
