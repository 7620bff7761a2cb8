//! The first stage as a KCL record processor, one per shard lease: records → partials,
//! late and bad records into the window store, then the shard's progress, then the
//! checkpoint — never past the first record of the oldest open window, so that whoever
//! holds the lease next rebuilds every open window whole.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chief_consumer::{
    Checkpointer, ExtendedSequenceNumber, Fatal, InitializationInput, ProcessRecordsInput,
    ProcessorError, ProcessorFactory, RecordProcessor, ShardEndedInput, ShutdownRequestedInput,
};
use chief_stream::compare_sequence_numbers;

use crate::app::App;
use crate::metrics as m;
use crate::parse::Parser;
use crate::partial::{Input, Resume, ShardAggregator, Step};
use crate::store::{RejectKind, Rejected, StoreError, StoredProgress, WindowStore};

/// The wall clock, milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn position_text(p: &ExtendedSequenceNumber) -> String {
    format!("{}#{}", p.sequence_number, p.sub_sequence_number)
}

fn compare(a: &ExtendedSequenceNumber, b: &ExtendedSequenceNumber) -> Ordering {
    compare_sequence_numbers(&a.sequence_number, &b.sequence_number)
        .then(a.sub_sequence_number.cmp(&b.sub_sequence_number))
}

/// A store error as the consumer sees it: retried, or fatal (table gone, access denied).
fn store_error(e: StoreError) -> ProcessorError {
    let retryable = !e.fatal;
    Fatal::unless_retryable(e, retryable)
}

/// Makes an [`AnalyticsProcessor`] per shard.
pub struct AnalyticsFactory<S> {
    app: Arc<App>,
    parser: Arc<Parser>,
    store: S,
}

impl<S> AnalyticsFactory<S> {
    /// Processors of `app` writing to `store`.
    pub fn new(app: Arc<App>, parser: Arc<Parser>, store: S) -> Self {
        Self { app, parser, store }
    }
}

impl<S: WindowStore> ProcessorFactory for AnalyticsFactory<S> {
    type Processor = AnalyticsProcessor<S>;

    fn create(&self, shard_id: &str) -> Self::Processor {
        AnalyticsProcessor {
            app: self.app.clone(),
            parser: self.parser.clone(),
            store: self.store.clone(),
            shard: shard_id.to_owned(),
            aggregator: None,
            pushed_through: None,
            undelivered: Vec::new(),
            checkpointed: None,
            last_record_ms: now_ms(),
            last_report: None,
            record_max_time: None,
            idle_ms: i64::try_from(self.app.window.idle_timeout_s.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }
}

/// The first stage on one shard.
pub struct AnalyticsProcessor<S> {
    app: Arc<App>,
    parser: Arc<Parser>,
    store: S,
    shard: String,
    aggregator: Option<ShardAggregator<ExtendedSequenceNumber>>,
    /// The last record given to the aggregator: a batch retried after a failed store
    /// write is not counted twice.
    pushed_through: Option<ExtendedSequenceNumber>,
    /// Steps not yet in the store.
    undelivered: Vec<Step<ExtendedSequenceNumber>>,
    checkpointed: Option<ExtendedSequenceNumber>,
    last_record_ms: i64,
    last_report: Option<Instant>,
    /// The application's idle timeout, ms.
    idle_ms: i64,
    /// The shard's newest time when its last record came.
    record_max_time: Option<i64>,
}

/// How often a quiet shard reports that its worker is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

impl<S: WindowStore> AnalyticsProcessor<S> {
    fn aggregator(&mut self) -> &mut ShardAggregator<ExtendedSequenceNumber> {
        let (app, parser, shard) = (self.app.clone(), self.parser.clone(), self.shard.clone());
        self.aggregator.get_or_insert_with(|| {
            ShardAggregator::new(
                app,
                parser,
                &shard,
                Resume {
                    position: ExtendedSequenceNumber::sentinel(
                        ExtendedSequenceNumber::TRIM_HORIZON,
                    ),
                    max_time: None,
                },
            )
        })
    }

    /// Writes the steps handed on so far to the store, in order.
    async fn deliver(&mut self) -> Result<(), ProcessorError> {
        let mut rejected = Vec::new();
        for step in &self.undelivered {
            match step {
                Step::Partial(p) => {
                    self.store.put_partial(p).await.map_err(store_error)?;
                    metrics::counter!(m::PARTIALS, m::APP => self.app.name.clone()).increment(1);
                }
                Step::Late {
                    position,
                    time_ms,
                    windows,
                    data,
                } => rejected.push(Rejected {
                    shard: self.shard.clone(),
                    position: position_text(position),
                    kind: RejectKind::Late,
                    reason: format!(
                        "later than the allowed lateness for {}",
                        windows
                            .iter()
                            .map(|w| format!("[{}, {})", w.start_text(), w.end_text()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    time_ms: Some(*time_ms),
                    data: data.clone(),
                }),
                Step::Bad {
                    position,
                    error,
                    data,
                } => rejected.push(Rejected {
                    shard: self.shard.clone(),
                    position: position_text(position),
                    kind: RejectKind::Bad,
                    reason: error.to_string(),
                    time_ms: None,
                    data: data.clone(),
                }),
            }
        }
        if !rejected.is_empty() {
            self.store
                .put_rejected(&rejected)
                .await
                .map_err(store_error)?;
            for r in &rejected {
                let metric = match r.kind {
                    RejectKind::Late => m::LATE_RECORDS,
                    RejectKind::Bad => m::BAD_RECORDS,
                };
                metrics::counter!(metric, m::APP => self.app.name.clone()).increment(1);
            }
        }
        self.undelivered.clear();
        Ok(())
    }

    /// Reports the shard's progress (after its partials), then checkpoints as far as the
    /// open windows allow.
    async fn report_and_checkpoint(
        &mut self,
        checkpointer: &Checkpointer,
        caught_up: bool,
        finished: bool,
        had_records: bool,
    ) -> Result<(), ProcessorError> {
        let resume = self.aggregator().resume_point().clone();
        let max_time = self.aggregator().max_time();
        let moves = !resume.position.is_sentinel()
            && self
                .checkpointed
                .as_ref()
                .is_none_or(|c| compare(&resume.position, c).is_gt());
        let due = self.last_report.is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if had_records || moves || finished || due {
            let progress = StoredProgress {
                shard: self.shard.clone(),
                max_time,
                finished,
                caught_up,
                last_record_ms: self.last_record_ms,
                heartbeat_ms: now_ms(),
                resume_position: (!resume.position.is_sentinel())
                    .then(|| position_text(&resume.position)),
                resume_max_time: resume.max_time,
            };
            self.store
                .put_progress(&progress)
                .await
                .map_err(store_error)?;
            self.last_report = Some(Instant::now());
        }
        if moves && !finished {
            checkpointer.checkpoint_at(resume.position.clone()).await?;
            self.checkpointed = Some(resume.position);
        }
        Ok(())
    }
}

impl<S: WindowStore> RecordProcessor for AnalyticsProcessor<S> {
    async fn initialize(&mut self, input: InitializationInput<'_>) -> Result<(), ProcessorError> {
        let stored = self.store.progress().await.map_err(store_error)?;
        let at = position_text(input.checkpoint);
        // The newest record time at the checkpoint, if the previous owner reported it for
        // this very checkpoint.
        let max_time = stored
            .iter()
            .find(|p| p.shard == self.shard && p.resume_position.as_deref() == Some(at.as_str()))
            .and_then(|p| p.resume_max_time);
        self.aggregator = Some(ShardAggregator::new(
            self.app.clone(),
            self.parser.clone(),
            &self.shard,
            Resume {
                position: input.checkpoint.clone(),
                max_time,
            },
        ));
        if !input.checkpoint.is_sentinel() {
            self.checkpointed = Some(input.checkpoint.clone());
        }
        self.record_max_time = max_time;
        tracing::info!(app = %self.app.name, shard = %self.shard, checkpoint = %at, ?max_time, "shard starting");
        Ok(())
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let mut steps = std::mem::take(&mut self.undelivered);
        let mut pushed = 0u64;
        for record in input.records {
            let position = record.position();
            if self
                .pushed_through
                .as_ref()
                .is_some_and(|p| compare(&position, p).is_le())
            {
                continue;
            }
            let arrival_ms = record
                .approximate_arrival
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(now_ms, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            self.aggregator().push(
                Input {
                    data: &record.data,
                    arrival_ms,
                    position: &position,
                },
                &mut steps,
            );
            self.pushed_through = Some(position);
            pushed += 1;
        }
        let caught_up = input.millis_behind_latest == Some(0);
        let now = now_ms();
        if pushed > 0 {
            self.last_record_ms = now;
            self.record_max_time = self.aggregator().max_time();
            metrics::counter!(m::RECORDS, m::APP => self.app.name.clone()).increment(pushed);
        } else if caught_up && now - self.last_record_ms >= self.idle_ms {
            // Idle: the shard's time moves on by the silence since its newest record, less
            // the idle timeout (by arrival time: to about the idle timeout before now, so
            // that a record still on its way is not made late), and its last windows close.
            let beyond = now - self.last_record_ms - self.idle_ms;
            let target = self
                .record_max_time
                .map_or(now - self.idle_ms, |m| m.saturating_add(beyond));
            self.aggregator().advance_to(target, &mut steps);
        }
        self.undelivered = steps;
        self.deliver().await?;
        self.report_and_checkpoint(input.checkpointer, caught_up, false, pushed > 0)
            .await
    }

    async fn shard_ended(&mut self, input: ShardEndedInput<'_>) -> Result<(), ProcessorError> {
        let mut steps = std::mem::take(&mut self.undelivered);
        self.aggregator().finish(&mut steps);
        self.undelivered = steps;
        self.deliver().await?;
        self.report_and_checkpoint(input.checkpointer, true, true, false)
            .await?;
        input.checkpointer.checkpoint().await?;
        tracing::info!(app = %self.app.name, shard = %self.shard, "shard ended: every partial stored");
        Ok(())
    }

    async fn shutdown_requested(
        &mut self,
        input: ShutdownRequestedInput<'_>,
    ) -> Result<(), ProcessorError> {
        // Open windows stay open: the next owner rebuilds them from the checkpoint.
        self.deliver().await?;
        self.report_and_checkpoint(input.checkpointer, false, false, false)
            .await
    }
}
