//! The [`Checkpointer`] a processor uses, and the lease a worker holds.

use std::cmp::Ordering;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chief_stream::compare_sequence_numbers;
use tokio_util::sync::CancellationToken;

use crate::lease::{ExtendedSequenceNumber, Lease, LeaseError, LeaseStore};
use crate::metrics as m;

/// A checkpoint was not written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The worker no longer holds the shard's lease (another worker took it, or it
    /// expired): the checkpoint is refused and nothing is written.
    #[error(
        "checkpoint of shard {shard_id} of stream {stream} refused: worker {worker_id} lost its lease"
    )]
    LeaseLost {
        /// The stream.
        stream: String,
        /// The shard.
        shard_id: String,
        /// This worker.
        worker_id: String,
    },
    /// The position is after the last record delivered, or before the last checkpoint.
    #[error("checkpoint of shard {shard_id} at {requested} refused: {reason}")]
    OutOfRange {
        /// The shard.
        shard_id: String,
        /// The position asked for.
        requested: ExtendedSequenceNumber,
        /// Why.
        reason: String,
    },
    /// The lease table call failed; the checkpoint may be tried again.
    #[error("checkpoint of shard {shard_id} failed: {source}")]
    Store {
        /// The shard.
        shard_id: String,
        /// The store's error.
        source: LeaseError,
    },
}

/// A lease this worker holds: the latest view of it (renewals and checkpoints bump its
/// counter, one at a time), and a token cancelled once it is lost.
#[derive(Debug)]
pub(crate) struct HeldLease<S> {
    store: Arc<S>,
    pub(crate) stream: String,
    pub(crate) shard_id: String,
    pub(crate) worker_id: String,
    lease: tokio::sync::Mutex<Lease>,
    pub(crate) lost: CancellationToken,
    last_renewal: Mutex<Instant>,
}

impl<S: LeaseStore> HeldLease<S> {
    pub(crate) fn new(store: Arc<S>, stream: &str, worker_id: &str, lease: Lease) -> Self {
        Self {
            store,
            stream: stream.to_owned(),
            shard_id: lease.lease_key.clone(),
            worker_id: worker_id.to_owned(),
            lease: tokio::sync::Mutex::new(lease),
            lost: CancellationToken::new(),
            last_renewal: Mutex::new(Instant::now()),
        }
    }

    /// The latest view of the lease.
    pub(crate) async fn snapshot(&self) -> Lease {
        self.lease.lock().await.clone()
    }

    fn lose(&self, why: &str) {
        if !self.lost.is_cancelled() {
            tracing::info!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id, why, "lease lost");
            self.lost.cancel();
        }
    }

    /// Renews; marks the lease lost on a conflict, or when renewals have failed for
    /// longer than `failover`.
    pub(crate) async fn renew(&self, failover: std::time::Duration) {
        if self.lost.is_cancelled() {
            return;
        }
        let mut lease = self.lease.lock().await;
        match self.store.renew_lease(&lease).await {
            Ok(renewed) => {
                *lease = renewed;
                *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            }
            Err(e) if e.is_conflict() => {
                // An earlier renewal that timed out may have been written after all: then
                // the row holds our owner and the counter one past our view (KCL checks
                // the same before it gives a lease up).
                let recovered = match self.store.get_lease(&lease.lease_key).await {
                    Ok(Some(current))
                        if current.lease_owner.as_deref() == Some(self.worker_id.as_str())
                            && current.lease_counter == lease.lease_counter + 1 =>
                    {
                        Some(current)
                    }
                    _ => None,
                };
                match recovered {
                    Some(current) => {
                        tracing::info!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id,
                            "renewal conflict from our own earlier renewal; recovered");
                        *lease = current;
                        *self.last_renewal.lock().unwrap_or_else(|p| p.into_inner()) =
                            Instant::now();
                    }
                    None => self.lose("renewal conflict"),
                }
            }
            Err(e) => {
                let since = self
                    .last_renewal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .elapsed();
                tracing::warn!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id, error = %e, "lease renewal failed");
                if since >= failover {
                    self.lose("renewals failed for longer than the failover time");
                }
            }
        }
    }

    /// [`renew`](Self::renew), given at most `timeout`: a call still unanswered then counts
    /// as a failed renewal (the lease is lost only after `failover` without a success).
    pub(crate) async fn renew_within(
        &self,
        failover: std::time::Duration,
        timeout: std::time::Duration,
    ) {
        if tokio::time::timeout(timeout, self.renew(failover))
            .await
            .is_err()
        {
            let since = self
                .last_renewal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed();
            tracing::warn!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id,
                timeout_ms = timeout.as_millis() as u64, "lease renewal timed out");
            if since >= failover {
                self.lose("renewals failed for longer than the failover time");
            }
        }
    }

    /// Writes a checkpoint (or, `prepare`, a pending one), conditional on the lease as last
    /// seen.
    pub(crate) async fn checkpoint(
        &self,
        position: &ExtendedSequenceNumber,
        prepare: bool,
    ) -> Result<(), CheckpointError> {
        let lost = || CheckpointError::LeaseLost {
            stream: self.stream.clone(),
            shard_id: self.shard_id.clone(),
            worker_id: self.worker_id.clone(),
        };
        if self.lost.is_cancelled() {
            metrics::counter!(m::CHECKPOINT_FAILURES, "reason" => "lease_lost").increment(1);
            return Err(lost());
        }
        let mut lease = self.lease.lock().await;
        let written = if prepare {
            self.store.prepare_checkpoint(&lease, position).await
        } else {
            self.store.checkpoint(&lease, position).await
        };
        match written {
            Ok(written) => {
                *lease = written;
                tracing::debug!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id, checkpoint = %position, prepare, "checkpointed");
                Ok(())
            }
            Err(e) if e.is_conflict() => {
                metrics::counter!(m::CHECKPOINT_FAILURES, "reason" => "lease_lost").increment(1);
                self.lose("checkpoint conflict");
                Err(lost())
            }
            Err(source) => {
                metrics::counter!(m::CHECKPOINT_FAILURES, "reason" => "store").increment(1);
                Err(CheckpointError::Store {
                    shard_id: self.shard_id.clone(),
                    source,
                })
            }
        }
    }

    /// Records the children, then releases the lease (after `SHARD_END` or at shutdown).
    pub(crate) async fn release(&self, children: Option<&std::collections::BTreeSet<String>>) {
        if self.lost.is_cancelled() {
            return;
        }
        let mut lease = self.lease.lock().await;
        if let Some(children) = children.filter(|c| !c.is_empty()) {
            match self.store.set_child_shards(&lease, children).await {
                Ok(l) => *lease = l,
                Err(e) => {
                    tracing::warn!(stream = %self.stream, shard_id = %self.shard_id, error = %e, "could not record child shards")
                }
            }
        }
        match self.store.release_lease(&lease).await {
            Ok(l) => {
                *lease = l;
                tracing::info!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id, "lease released");
            }
            Err(e) => {
                tracing::warn!(stream = %self.stream, shard_id = %self.shard_id, lease_owner = %self.worker_id, error = %e, "could not release lease")
            }
        }
        self.lost.cancel();
    }
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CheckpointError>> + Send + 'a>>;

/// The object-safe face of a held lease, so that [`Checkpointer`] has no type parameter.
trait CheckpointWrite: Send + Sync {
    fn write<'a>(&'a self, position: &'a ExtendedSequenceNumber, prepare: bool) -> WriteFuture<'a>;
}

impl<S: LeaseStore> CheckpointWrite for HeldLease<S> {
    fn write<'a>(&'a self, position: &'a ExtendedSequenceNumber, prepare: bool) -> WriteFuture<'a> {
        Box::pin(self.checkpoint(position, prepare))
    }
}

#[derive(Debug, Default)]
struct Progress {
    /// The last record delivered to the processor (in a call that did not fail).
    delivered: Option<ExtendedSequenceNumber>,
    /// The last checkpoint written.
    checkpointed: Option<ExtendedSequenceNumber>,
    /// The shard was read to its end: `checkpoint()` writes `SHARD_END`.
    at_shard_end: bool,
}

/// Checkpoints one shard. Every write is conditional on the lease this worker holds;
/// after the lease is lost it fails with [`CheckpointError::LeaseLost`].
#[derive(Clone)]
pub struct Checkpointer {
    shard_id: String,
    writer: Arc<dyn CheckpointWrite>,
    progress: Arc<Mutex<Progress>>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("shard_id", &self.shard_id)
            .field("progress", &self.progress)
            .finish()
    }
}

fn compare(a: &ExtendedSequenceNumber, b: &ExtendedSequenceNumber) -> Ordering {
    compare_sequence_numbers(&a.sequence_number, &b.sequence_number)
        .then(a.sub_sequence_number.cmp(&b.sub_sequence_number))
}

impl Checkpointer {
    pub(crate) fn new<S: LeaseStore>(
        held: Arc<HeldLease<S>>,
        start: &ExtendedSequenceNumber,
    ) -> Self {
        Self {
            shard_id: held.shard_id.clone(),
            writer: held,
            progress: Arc::new(Mutex::new(Progress {
                checkpointed: (!start.is_sentinel()).then(|| start.clone()),
                ..Progress::default()
            })),
        }
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the last delivered record; returns the previous one (to restore on failure).
    pub(crate) fn deliver(
        &self,
        last: Option<ExtendedSequenceNumber>,
    ) -> Option<ExtendedSequenceNumber> {
        std::mem::replace(&mut self.progress().delivered, last)
    }

    /// The last delivered record.
    pub(crate) fn delivered(&self) -> Option<ExtendedSequenceNumber> {
        self.progress().delivered.clone()
    }

    pub(crate) fn set_shard_end(&self) {
        self.progress().at_shard_end = true;
    }

    /// The shard this checkpointer writes.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The last checkpoint this worker wrote for the shard, if any.
    pub fn last_checkpoint(&self) -> Option<ExtendedSequenceNumber> {
        self.progress().checkpointed.clone()
    }

    /// Checkpoints everything delivered so far (the last record of the current batch), or
    /// `SHARD_END` from [`RecordProcessor::shard_ended`](crate::RecordProcessor::shard_ended).
    /// Does nothing if nothing new was delivered.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        let position = {
            let p = self.progress();
            if p.at_shard_end {
                ExtendedSequenceNumber::shard_end()
            } else {
                match &p.delivered {
                    Some(d) if p.checkpointed.as_ref() != Some(d) => d.clone(),
                    _ => return Ok(()),
                }
            }
        };
        self.write(position).await
    }

    /// Checkpoints at a delivered record: `(sequence, sub-sequence)` and everything before
    /// it in the shard is done.
    pub async fn checkpoint_at(
        &self,
        position: ExtendedSequenceNumber,
    ) -> Result<(), CheckpointError> {
        self.check_range(&position)?;
        self.write(position).await
    }

    /// KCL's `prepareCheckpoint`: records on the lease (`pendingCheckpoint`) that the
    /// records up to this delivered one may reach a sink before they are checkpointed —
    /// written before a sink write, so that after a crash the next owner knows which of the
    /// records it reads again were perhaps delivered already
    /// ([`InitializationInput::pending_checkpoint`](crate::InitializationInput)). The next
    /// checkpoint clears it.
    ///
    /// # Errors
    /// As [`checkpoint_at`](Self::checkpoint_at).
    pub async fn prepare_checkpoint_at(
        &self,
        position: ExtendedSequenceNumber,
    ) -> Result<(), CheckpointError> {
        self.check_range(&position)?;
        self.writer.write(&position, true).await
    }

    fn check_range(&self, position: &ExtendedSequenceNumber) -> Result<(), CheckpointError> {
        {
            let p = self.progress();
            let refuse = |reason: String| CheckpointError::OutOfRange {
                shard_id: self.shard_id.clone(),
                requested: position.clone(),
                reason,
            };
            if position.is_sentinel() {
                return Err(refuse("not a sequence number".into()));
            }
            match &p.delivered {
                Some(d) if compare(position, d).is_le() => {}
                Some(d) => return Err(refuse(format!("after the last delivered record {d}"))),
                None => return Err(refuse("nothing was delivered yet".into())),
            }
            if let Some(c) = &p.checkpointed
                && compare(position, c).is_lt()
            {
                return Err(refuse(format!("before the last checkpoint {c}")));
            }
        }
        Ok(())
    }

    async fn write(&self, position: ExtendedSequenceNumber) -> Result<(), CheckpointError> {
        self.writer.write(&position, false).await?;
        self.progress().checkpointed = Some(position);
        Ok(())
    }
}

/// The position a processor last checkpointed, moved forward only: what a processor that
/// checkpoints "everything its sinks made durable" keeps between calls.
#[derive(Debug, Default, Clone)]
pub struct CheckpointTracker {
    last: Option<ExtendedSequenceNumber>,
}

impl CheckpointTracker {
    /// The position last checkpointed through this tracker.
    pub fn last(&self) -> Option<&ExtendedSequenceNumber> {
        self.last.as_ref()
    }

    /// Whether `position` is at or before the last checkpoint.
    pub fn covers(&self, position: &ExtendedSequenceNumber) -> bool {
        self.last
            .as_ref()
            .is_some_and(|last| compare(position, last).is_le())
    }

    /// Checkpoints at `position` if it is past the last checkpoint; whether it wrote one.
    ///
    /// # Errors
    /// As [`Checkpointer::checkpoint_at`].
    pub async fn advance(
        &mut self,
        checkpointer: &Checkpointer,
        position: ExtendedSequenceNumber,
    ) -> Result<bool, CheckpointError> {
        if self.covers(&position) {
            return Ok(false);
        }
        checkpointer.checkpoint_at(position.clone()).await?;
        tracing::debug!(shard_id = checkpointer.shard_id(), checkpoint = %position, "checkpointed");
        self.last = Some(position);
        Ok(true)
    }
}
