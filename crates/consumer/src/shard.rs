//! Processing one shard: the fetchers (GetRecords polling or an enhanced fan-out
//! subscription, one pending batch of prefetch either way), deaggregation, the processor's
//! lifecycle, retries that never skip records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chief_aggregation::{UserRecord, deaggregate, parse_hash_key};
use chief_config::health::Health;
use chief_stream::{
    GetRecordsOutput, IteratorPosition, StreamClient, StreamError, compare_sequence_numbers,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::checkpoint::{Checkpointer, HeldLease};
use crate::config::{ConsumerConfig, OnProcessingFailure, OutOfRangeRecords};
use crate::handoff::{HandoffSender, handoff};
use crate::lease::{ExtendedSequenceNumber, LeaseStore};
use crate::metrics as m;
use crate::processor::{
    ConsumedRecord, DeadLetterInput, InitializationInput, LeaseLostInput, ProcessRecordsInput,
    RecordProcessor, ShardEndedInput, ShutdownRequestedInput,
};

/// How processing of a shard ended.
#[derive(Debug)]
pub(crate) enum ShardOutcome {
    /// The shard was read to its end and `SHARD_END` checkpointed; these are its children.
    Ended(BTreeSet<String>),
    /// The lease was lost.
    Lost,
    /// The worker is shutting down; the processor was told.
    ShutDown,
    /// The processor returned a [`Fatal`](crate::Fatal) error: the worker must stop.
    Fatal(String),
}

/// Where to start reading a shard from its checkpoint, and the sub-records to skip.
fn start_position(
    checkpoint: &ExtendedSequenceNumber,
    config: &ConsumerConfig,
) -> (IteratorPosition, Option<ExtendedSequenceNumber>) {
    match checkpoint.sequence_number.as_str() {
        ExtendedSequenceNumber::TRIM_HORIZON => (IteratorPosition::TrimHorizon, None),
        ExtendedSequenceNumber::LATEST => (IteratorPosition::Latest, None),
        ExtendedSequenceNumber::AT_TIMESTAMP => (
            IteratorPosition::AtTimestamp(config.initial_timestamp()),
            None,
        ),
        seq => (
            IteratorPosition::AtSequenceNumber(seq.to_owned()),
            Some(checkpoint.clone()),
        ),
    }
}

/// Sets the `MillisBehindLatest` gauge of the shard, if the read reported it.
fn report_behind(stream: &str, shard_id: &str, millis_behind_latest: Option<u64>) {
    if let Some(behind) = millis_behind_latest {
        metrics::gauge!(m::MILLIS_BEHIND_LATEST, "stream" => stream.to_owned(), "shard_id" => shard_id.to_owned())
            .set(behind as f64);
    }
}

/// Reads a shard with GetRecords and hands each non-empty batch (and the end of the
/// shard) to `tx`, whose one pending batch (what was read while the processor worked,
/// at most `max_records` records and 10 MiB, GetRecords' limits) is the prefetch bound.
/// Waits adaptively between empty reads, backs off on throttling and failures, and
/// renews an expired iterator after the last record read.
async fn fetch<C: StreamClient>(
    client: C,
    config: ConsumerConfig,
    shard_id: String,
    start: IteratorPosition,
    tx: HandoffSender,
) {
    let stream = config.stream.clone();
    let poll = Duration::from_millis(config.poll_interval_ms);
    // Empty reads back off from at least 10 ms, even with `poll_interval_ms = 0`.
    let idle_floor = poll.max(Duration::from_millis(10));
    let idle_max = Duration::from_millis(config.idle_time_max_ms).max(idle_floor);
    let mut idle = idle_floor;
    let mut last_read: Option<String> = None;
    let mut iterator: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let it = match iterator.take() {
            Some(it) => it,
            None => {
                let position = match &last_read {
                    Some(seq) => IteratorPosition::AfterSequenceNumber(seq.clone()),
                    None => start.clone(),
                };
                match client
                    .get_shard_iterator(&stream, &shard_id, &position)
                    .await
                {
                    Ok(it) => it,
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, failures, "GetShardIterator failed; backing off");
                        tokio::time::sleep(config.fetch_retry.jittered(failures)).await;
                        continue;
                    }
                }
            }
        };
        let started = Instant::now();
        match client.get_records(&stream, &it, config.max_records).await {
            Ok(out) => {
                failures = 0;
                if let Some(last) = out.records.last() {
                    last_read = Some(last.sequence_number.clone());
                }
                report_behind(&stream, &shard_id, out.millis_behind_latest);
                let empty = out.records.is_empty();
                let end = out.next_shard_iterator.is_none();
                iterator.clone_from(&out.next_shard_iterator);
                if (!empty || end || config.deliver_empty_batches) && tx.send(out).await.is_err() {
                    return;
                }
                if end {
                    return;
                }
                let wait = if empty {
                    let wait = idle;
                    idle = (idle * 2).min(idle_max);
                    wait
                } else {
                    idle = idle_floor;
                    poll
                };
                tokio::time::sleep(wait.saturating_sub(started.elapsed())).await;
            }
            Err(StreamError::ExpiredIterator { .. }) => {
                metrics::counter!(m::EXPIRED_ITERATORS, "stream" => stream.clone()).increment(1);
                tracing::info!(after = ?last_read, "shard iterator expired; renewing it after the last record read");
            }
            Err(e) => {
                failures += 1;
                if matches!(e, StreamError::Throttled { .. }) {
                    metrics::counter!(m::GET_RECORDS_THROTTLED, "stream" => stream.clone())
                        .increment(1);
                }
                tracing::warn!(error = %e, failures, "GetRecords failed; backing off");
                // An emulator answers an unknown iterator with a bare 500: after a few
                // failures, start again from the last record read.
                if failures < 3 {
                    iterator = Some(it);
                }
                tokio::time::sleep(config.fetch_retry.jittered(failures)).await;
            }
        }
    }
}

/// Reads a shard through enhanced fan-out: one SubscribeToShard subscription at a time,
/// renewed from the last record received when Kinesis ends it (every five minutes) or it
/// fails (with back-off: another worker's subscription may still hold the shard for a
/// moment after a hand-over). Events go to `tx` as GetRecords answers whose next iterator
/// is the continuation sequence number (`None` at the end of the shard); its pending
/// batch is the prefetch bound, and a full one stops the reading of the HTTP/2 stream.
/// After `fan_out_end_check_ms` without records, one GetRecords call checks whether the
/// shard has ended (for endpoints that never say so on the subscription).
async fn subscribe<C: StreamClient>(
    client: C,
    config: ConsumerConfig,
    consumer_arn: String,
    shard_id: String,
    start: IteratorPosition,
    tx: HandoffSender,
) {
    let stream = config.stream.clone();
    let end_check = Duration::from_millis(config.fan_out_end_check_ms);
    let mut position = start;
    let mut failures = 0u32;
    let mut quiet_since = Instant::now();
    loop {
        let mut subscription = match client
            .subscribe_to_shard(&stream, &consumer_arn, &shard_id, &position)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, position = ?position, "SubscribeToShard failed; backing off");
                tokio::time::sleep(config.fetch_retry.jittered(failures)).await;
                continue;
            }
        };
        metrics::counter!(m::SUBSCRIPTIONS, "stream" => stream.clone()).increment(1);
        tracing::debug!(position = ?position, "subscribed to shard");
        loop {
            let event = match subscription.next().await {
                Some(Ok(event)) => event,
                // Kinesis ended the subscription (after five minutes): subscribe again.
                None => break,
                Some(Err(e)) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "subscription failed; subscribing again");
                    tokio::time::sleep(config.fetch_retry.jittered(failures)).await;
                    break;
                }
            };
            failures = 0;
            if let Some(last) = event.records.last() {
                position = IteratorPosition::AfterSequenceNumber(last.sequence_number.clone());
                quiet_since = Instant::now();
            } else if let Some(continuation) = &event.continuation_sequence_number {
                position = IteratorPosition::AfterSequenceNumber(continuation.clone());
            }
            report_behind(&stream, &shard_id, event.millis_behind_latest);
            let empty = event.records.is_empty();
            let end = event.is_shard_end();
            if (!empty || end || config.deliver_empty_batches)
                && tx.send(event.into_get_records_output()).await.is_err()
            {
                return;
            }
            if end {
                return;
            }
            if empty && !end_check.is_zero() && quiet_since.elapsed() >= end_check {
                quiet_since = Instant::now();
                if let Some(end) = shard_end(&client, &stream, &shard_id, &position).await {
                    tracing::info!(
                        "the shard ended (found by GetRecords; the subscription did not say so)"
                    );
                    let _ = tx.send(end).await;
                    return;
                }
            }
        }
    }
}

/// One GetRecords call from `position`: the answer if it is the end of a closed shard.
async fn shard_end<C: StreamClient>(
    client: &C,
    stream: &str,
    shard_id: &str,
    position: &IteratorPosition,
) -> Option<GetRecordsOutput> {
    let iterator = match client.get_shard_iterator(stream, shard_id, position).await {
        Ok(it) => it,
        Err(e) => {
            tracing::debug!(error = %e, "end-of-shard check: GetShardIterator failed");
            return None;
        }
    };
    match client.get_records(stream, &iterator, 1).await {
        Ok(out) if out.records.is_empty() && out.is_shard_end() => Some(out),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(error = %e, "end-of-shard check: GetRecords failed");
            None
        }
    }
}

/// Everything one shard's processing needs.
pub(crate) struct ShardTask<C, S> {
    pub(crate) client: C,
    pub(crate) config: ConsumerConfig,
    pub(crate) held: Arc<HeldLease<S>>,
    pub(crate) shutdown: CancellationToken,
    /// The hash range of a shard made by a split, to count aggregated records that lie
    /// outside it (`None` elsewhere: no check).
    pub(crate) range: Option<(u128, u128)>,
    /// With enhanced fan-out: the registered stream consumer; `None` means polling.
    pub(crate) consumer_arn: Option<String>,
    /// Where the shard reports failing processing and lag (readiness).
    pub(crate) health: Health,
}

impl<C: StreamClient + Clone, S: LeaseStore> ShardTask<C, S> {
    /// Runs a processor over the shard until its end, lease loss, or shutdown.
    pub(crate) async fn run<P: RecordProcessor>(self, processor: P) -> ShardOutcome {
        let span = tracing::info_span!("shard", stream = %self.config.stream, shard_id = %self.held.shard_id, lease_owner = %self.held.worker_id);
        let (health, checks) = (self.health.clone(), self.check_prefix());
        let outcome = self.run_inner(processor).instrument(span).await;
        // The shard is no longer this task's: its checks go with it.
        health.pass_all(&checks);
        outcome
    }

    async fn run_inner<P: RecordProcessor>(self, mut processor: P) -> ShardOutcome {
        let shard_id = self.held.shard_id.clone();
        let lease = self.held.snapshot().await;
        let checkpoint = lease.checkpoint.clone();
        let checkpointer = Checkpointer::new(self.held.clone(), &checkpoint);
        if checkpoint.is_shard_end() {
            return ShardOutcome::Ended(lease.child_shard_ids.clone());
        }
        let mut attempt = 0;
        loop {
            let init = processor
                .initialize(InitializationInput {
                    shard_id: &shard_id,
                    checkpoint: &checkpoint,
                    pending_checkpoint: lease.pending_checkpoint.as_ref(),
                })
                .await;
            match init {
                Ok(()) => break,
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "initialize failed; retrying");
                    if let Some(outcome) = self.pause(&mut processor, &checkpointer, attempt).await
                    {
                        return outcome;
                    }
                }
            }
        }
        tracing::info!(checkpoint = %checkpoint, "processing shard");
        let (position, mut resume) = start_position(&checkpoint, &self.config);
        let (tx, mut rx) = handoff(self.config.max_records as usize);
        let (client, config) = (self.client.clone(), self.config.clone());
        let fetcher = match self.consumer_arn.clone() {
            Some(arn) => tokio::spawn(
                subscribe(client, config, arn, shard_id.clone(), position, tx).in_current_span(),
            ),
            None => tokio::spawn(
                fetch(client, config, shard_id.clone(), position, tx).in_current_span(),
            ),
        };
        let _fetcher = AbortOnDropHandle::new(fetcher);
        loop {
            let batch = tokio::select! {
                biased;
                () = self.held.lost.cancelled() => return self.lost(&mut processor).await,
                () = self.shutdown.cancelled() => return self.shut_down(&mut processor, &checkpointer).await,
                batch = rx.recv() => batch,
            };
            let Some(batch) = batch else {
                // The fetcher only stops at the end of the shard, after sending it.
                return self.lost(&mut processor).await;
            };
            let records = self.deaggregate(&batch, &mut resume);
            self.check_lag(batch.millis_behind_latest);
            if (!records.is_empty() || self.config.deliver_empty_batches)
                && let Some(outcome) = self
                    .process(
                        &mut processor,
                        &checkpointer,
                        &records,
                        batch.millis_behind_latest,
                    )
                    .await
            {
                return outcome;
            }
            if batch.next_shard_iterator.is_none() {
                let children = batch
                    .child_shards
                    .iter()
                    .map(|c| c.shard_id.clone())
                    .collect();
                return self.end(&mut processor, &checkpointer, children).await;
            }
        }
    }

    fn deaggregate(
        &self,
        batch: &GetRecordsOutput,
        resume: &mut Option<ExtendedSequenceNumber>,
    ) -> Vec<ConsumedRecord> {
        let mut out = Vec::new();
        for r in &batch.records {
            let mut skip_through = None;
            if let Some(at) = resume.as_ref() {
                match compare_sequence_numbers(&r.sequence_number, &at.sequence_number) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => skip_through = Some(at.sub_sequence_number),
                    std::cmp::Ordering::Greater => {}
                }
                *resume = None;
            }
            let mut records = deaggregate(UserRecord {
                partition_key: r.partition_key.clone(),
                explicit_hash_key: None,
                data: r.data.clone(),
            });
            let mut corrupt = None;
            let aggregated = match records.kind() {
                chief_aggregation::RecordKind::Aggregate { user_records } => {
                    out.reserve(*user_records);
                    true
                }
                chief_aggregation::RecordKind::Corrupt(why) => {
                    metrics::counter!(m::CORRUPT_AGGREGATES, "stream" => self.config.stream.clone())
                        .increment(1);
                    tracing::warn!(
                        sequence_number = %r.sequence_number,
                        error = %why,
                        "corrupt KPL aggregate: handed to the processor unchanged, marked corrupt"
                    );
                    corrupt = Some(format!("corrupt KPL aggregate: {why}"));
                    out.reserve(1);
                    false
                }
                _ => {
                    out.reserve(1);
                    false
                }
            };
            if let Some(sub) = skip_through {
                records = records.resume_after(sub);
            }
            let drop_strays =
                aggregated && self.config.out_of_range_records == OutOfRangeRecords::Drop;
            let mut strays = 0u64;
            for d in records {
                if aggregated
                    && let Some((start, end)) = self.range
                    && let Ok(hash) = d.record.hash_key()
                    && !(start..=end).contains(&hash)
                {
                    strays += 1;
                    if drop_strays {
                        continue;
                    }
                }
                out.push(ConsumedRecord {
                    sequence_number: r.sequence_number.clone(),
                    sub_sequence_number: d.sub_sequence_number,
                    aggregated,
                    partition_key: d.record.partition_key,
                    explicit_hash_key: d.record.explicit_hash_key,
                    data: d.record.data,
                    approximate_arrival: r.approximate_arrival,
                    corrupt: corrupt.clone(),
                });
            }
            if strays > 0 {
                metrics::counter!(m::RECORDS_OUTSIDE_SHARD_RANGE, "stream" => self.config.stream.clone())
                    .increment(strays);
                tracing::info!(
                    sequence_number = %r.sequence_number,
                    records = strays,
                    delivered = !drop_strays,
                    "user records of an aggregate hash outside the shard's range (aggregated on an out-of-date shard map; the producer sent them again to their shard)"
                );
            }
        }
        out
    }

    /// Calls `process_records` until it succeeds; `Some` if processing must stop.
    async fn process<P: RecordProcessor>(
        &self,
        processor: &mut P,
        checkpointer: &Checkpointer,
        records: &[ConsumedRecord],
        millis_behind_latest: Option<u64>,
    ) -> Option<ShardOutcome> {
        let mut attempt = 0;
        let mut first_failure: Option<Instant> = None;
        loop {
            // An empty batch delivers nothing new: the last delivered record stays.
            let last = match records.last() {
                Some(r) => Some(r.position()),
                None => checkpointer.delivered(),
            };
            let previous = checkpointer.deliver(last.clone());
            let result = processor
                .process_records(ProcessRecordsInput {
                    shard_id: &self.held.shard_id,
                    records,
                    millis_behind_latest,
                    checkpointer,
                })
                .await;
            match result {
                Ok(()) => {
                    metrics::counter!(m::RECORDS_PROCESSED, "stream" => self.config.stream.clone())
                        .increment(records.len() as u64);
                    if first_failure.is_some() {
                        self.health.pass(&self.check("processing"));
                    }
                    return None;
                }
                Err(e) => {
                    // The batch is not done: checkpoint() must not cover it.
                    checkpointer.deliver(previous);
                    if e.is::<crate::Fatal>() {
                        tracing::error!(error = %e, records = records.len(), "process_records failed for good; stopping the worker");
                        return Some(ShardOutcome::Fatal(e.to_string()));
                    }
                    attempt += 1;
                    metrics::counter!(m::PROCESSING_FAILURES, "stream" => self.config.stream.clone())
                        .increment(1);
                    tracing::warn!(error = %e, attempt, records = records.len(), "process_records failed; retrying the same records");
                    let failing_for = first_failure.get_or_insert_with(Instant::now).elapsed();
                    if failing_for >= Duration::from_millis(self.config.unready_after_failing_ms) {
                        self.health.fail(
                            self.check("processing"),
                            format!(
                                "process_records failing for {} s ({attempt} attempts): {e}",
                                failing_for.as_secs()
                            ),
                        );
                    }
                    if self.config.on_processing_failure == OnProcessingFailure::DeadLetter
                        && !self.config.processing_retry.allows(failing_for)
                    {
                        let error = e.to_string();
                        match processor
                            .dead_letter(DeadLetterInput {
                                shard_id: &self.held.shard_id,
                                records,
                                error: &error,
                                attempts: attempt,
                            })
                            .await
                        {
                            Ok(()) => {
                                checkpointer.deliver(last);
                                metrics::counter!(m::DEAD_LETTERED_RECORDS, "stream" => self.config.stream.clone())
                                    .increment(records.len() as u64);
                                tracing::error!(error = %error, attempts = attempt, records = records.len(),
                                    first = ?records.first().map(ConsumedRecord::position),
                                    "batch dead-lettered after the processing deadline; moving on");
                                return None;
                            }
                            Err(dl) => {
                                tracing::warn!(error = %dl, "dead-lettering the batch failed; retrying it")
                            }
                        }
                    }
                    if let Some(outcome) = self.pause(processor, checkpointer, attempt).await {
                        return Some(outcome);
                    }
                }
            }
        }
    }

    /// The prefix of this shard's readiness checks.
    fn check_prefix(&self) -> String {
        format!("shard {} ", self.held.shard_id)
    }

    /// The name of one of this shard's readiness checks.
    fn check(&self, what: &str) -> String {
        format!("{}{what}", self.check_prefix())
    }

    /// Not ready while the shard is more than `unready_millis_behind` behind the tip.
    fn check_lag(&self, millis_behind_latest: Option<u64>) {
        let bound = self.config.unready_millis_behind;
        let Some(behind) = millis_behind_latest else {
            return;
        };
        if bound > 0 && behind > bound {
            self.health.fail(
                self.check("lag"),
                format!("{behind} ms behind the tip (bound {bound} ms)"),
            );
        } else {
            self.health.pass(&self.check("lag"));
        }
    }

    /// Backs off before a retry; ends processing if the lease is lost or on shutdown.
    async fn pause<P: RecordProcessor>(
        &self,
        processor: &mut P,
        checkpointer: &Checkpointer,
        attempt: u32,
    ) -> Option<ShardOutcome> {
        tokio::select! {
            biased;
            () = self.held.lost.cancelled() => Some(self.lost(processor).await),
            () = self.shutdown.cancelled() => Some(self.shut_down(processor, checkpointer).await),
            () = tokio::time::sleep(self.config.processing_retry.jittered(attempt)) => None,
        }
    }

    async fn lost<P: RecordProcessor>(&self, processor: &mut P) -> ShardOutcome {
        processor
            .lease_lost(LeaseLostInput {
                shard_id: &self.held.shard_id,
            })
            .await;
        ShardOutcome::Lost
    }

    async fn shut_down<P: RecordProcessor>(
        &self,
        processor: &mut P,
        checkpointer: &Checkpointer,
    ) -> ShardOutcome {
        if let Err(e) = processor
            .shutdown_requested(ShutdownRequestedInput {
                shard_id: &self.held.shard_id,
                checkpointer,
            })
            .await
        {
            tracing::warn!(error = %e, "shutdown_requested failed");
        }
        ShardOutcome::ShutDown
    }

    async fn end<P: RecordProcessor>(
        &self,
        processor: &mut P,
        checkpointer: &Checkpointer,
        children: BTreeSet<String>,
    ) -> ShardOutcome {
        checkpointer.set_shard_end();
        let mut attempt = 0;
        loop {
            let result = processor
                .shard_ended(ShardEndedInput {
                    shard_id: &self.held.shard_id,
                    checkpointer,
                })
                .await;
            let done = self.held.snapshot().await.checkpoint.is_shard_end();
            match result {
                Ok(()) if done => {
                    tracing::info!(children = ?children, "shard ended and checkpointed SHARD_END");
                    return ShardOutcome::Ended(children);
                }
                Ok(()) => tracing::error!(
                    "shard_ended returned without checkpointing: the children cannot start; calling it again"
                ),
                Err(e) => tracing::warn!(error = %e, "shard_ended failed; calling it again"),
            }
            attempt += 1;
            tokio::select! {
                biased;
                () = self.held.lost.cancelled() => return self.lost(processor).await,
                () = self.shutdown.cancelled() => return ShardOutcome::ShutDown,
                () = tokio::time::sleep(self.config.processing_retry.jittered(attempt)) => {}
            }
        }
    }
}

/// The hash range recorded on a lease.
pub(crate) fn lease_range(start: Option<&str>, end: Option<&str>) -> Option<(u128, u128)> {
    Some((parse_hash_key(start?).ok()?, parse_hash_key(end?).ok()?))
}
