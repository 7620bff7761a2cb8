//! Leases: who processes which shard, and how far it got. The KCL 2.x lease table schema,
//! the [`LeaseStore`] trait and its two implementations.

pub mod dynamodb;
mod memory;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;

pub use dynamodb::DynamoDbLeaseStore;
pub use memory::MemoryLeaseStore;

/// A checkpoint value: a sequence number with its sub-sequence number, or one of the KCL
/// sentinels (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`) with sub-sequence 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtendedSequenceNumber {
    /// A sequence number or a sentinel.
    pub sequence_number: String,
    /// The user record's position in its aggregate (0 for a plain record or a sentinel).
    pub sub_sequence_number: u64,
}

impl ExtendedSequenceNumber {
    /// Sentinel: start from the oldest record.
    pub const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    /// Sentinel: start from the newest record.
    pub const LATEST: &'static str = "LATEST";
    /// Sentinel: start from the configured timestamp.
    pub const AT_TIMESTAMP: &'static str = "AT_TIMESTAMP";
    /// Sentinel: the shard was read to its end and its processor confirmed it.
    pub const SHARD_END: &'static str = "SHARD_END";

    /// A position after the user record `(sequence_number, sub_sequence_number)`.
    pub fn new(sequence_number: impl Into<String>, sub_sequence_number: u64) -> Self {
        Self {
            sequence_number: sequence_number.into(),
            sub_sequence_number,
        }
    }

    /// One of the sentinels.
    pub fn sentinel(name: &'static str) -> Self {
        Self::new(name, 0)
    }

    /// `SHARD_END`.
    pub fn shard_end() -> Self {
        Self::sentinel(Self::SHARD_END)
    }

    /// Whether this is `SHARD_END`.
    pub fn is_shard_end(&self) -> bool {
        self.sequence_number == Self::SHARD_END
    }

    /// Whether this is a sentinel rather than a sequence number.
    pub fn is_sentinel(&self) -> bool {
        !self.sequence_number.bytes().all(|b| b.is_ascii_digit())
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence_number, self.sub_sequence_number)
    }
}

/// One row of the lease table (KCL 2.x attribute names in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The shard id (`leaseKey`, S, the hash key).
    pub lease_key: String,
    /// The worker holding it; `None` once released (`leaseOwner`, S, absent when released).
    pub lease_owner: Option<String>,
    /// Bumped by every write; a holder that stops bumping it loses the lease (`leaseCounter`, N).
    pub lease_counter: u64,
    /// Owner changes since the last checkpoint (`ownerSwitchesSinceCheckpoint`, N).
    pub owner_switches_since_checkpoint: u64,
    /// How far the shard was processed (`checkpoint`, S, and `checkpointSubSequenceNumber`, N).
    pub checkpoint: ExtendedSequenceNumber,
    /// A checkpoint being prepared (`pendingCheckpoint`, S, and
    /// `pendingCheckpointSubSequenceNumber`, N): written by
    /// [`Checkpointer::prepare_checkpoint_at`](crate::Checkpointer::prepare_checkpoint_at),
    /// cleared by the next checkpoint.
    pub pending_checkpoint: Option<ExtendedSequenceNumber>,
    /// The shard's parents (`parentShardId`, SS).
    pub parent_shard_ids: BTreeSet<String>,
    /// The shard's children, once known (`childShardIds`, SS; the legacy `childShardId` is
    /// read too).
    pub child_shard_ids: BTreeSet<String>,
    /// First hash key of the shard, decimal (`startingHashKey`, S).
    pub starting_hash_key: Option<String>,
    /// Last hash key of the shard, decimal (`endingHashKey`, S).
    pub ending_hash_key: Option<String>,
}

impl Lease {
    /// A new, unowned lease for `shard_id` starting at `checkpoint`.
    pub fn new(shard_id: impl Into<String>, checkpoint: ExtendedSequenceNumber) -> Self {
        Self {
            lease_key: shard_id.into(),
            lease_owner: None,
            lease_counter: 0,
            owner_switches_since_checkpoint: 0,
            checkpoint,
            pending_checkpoint: None,
            parent_shard_ids: BTreeSet::new(),
            child_shard_ids: BTreeSet::new(),
            starting_hash_key: None,
            ending_hash_key: None,
        }
    }

    /// Whether `worker` holds it.
    pub fn is_owned_by(&self, worker: &str) -> bool {
        self.lease_owner.as_deref() == Some(worker)
    }
}

/// A lease table operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease changed since it was read (its counter or owner moved): another worker
    /// took it, or it was renewed/checkpointed elsewhere. Nothing was written.
    #[error(
        "{operation} on lease {lease_key} of table {table}: the lease changed since it was read (counter or owner moved)"
    )]
    Conflict {
        /// The operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The lease.
        lease_key: String,
    },
    /// The lease does not exist.
    #[error("{operation}: lease {lease_key} not found in table {table}")]
    NotFound {
        /// The operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The lease.
        lease_key: String,
    },
    /// The store failed (network, throttling, service error).
    #[error("{operation} on lease table {table} failed: {message}")]
    Store {
        /// The operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// What happened.
        message: String,
        /// No retry can fix it: the table is gone, or the credentials are refused or not
        /// allowed the call.
        fatal: bool,
    },
    /// A row of the table does not have the KCL schema.
    #[error("lease table {table}: malformed lease {lease_key}: {message}")]
    Malformed {
        /// The table.
        table: String,
        /// The lease (or `?`).
        lease_key: String,
        /// What is wrong.
        message: String,
    },
}

impl LeaseError {
    /// Whether the lease was lost to a concurrent write (as opposed to a failed call).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }

    /// Whether the process cannot go on (the table is gone, access is denied).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Store { fatal: true, .. })
    }
}

/// The lease table. Every mutation of an existing lease is conditional on the
/// `leaseCounter` and `leaseOwner` of the lease passed in (the caller's last view), and
/// fails with [`LeaseError::Conflict`] if either moved. Successful mutations return the
/// lease as written, with `lease_counter` bumped by one.
pub trait LeaseStore: Send + Sync + 'static {
    /// The table's name, for logs and errors.
    fn table(&self) -> &str;

    /// Creates the table if it does not exist (on demand, pay per request) and waits until
    /// it can be used.
    fn ensure_table(&self) -> impl Future<Output = Result<(), LeaseError>> + Send;

    /// Every lease (consistent read).
    fn list_leases(&self) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// One lease (consistent read), `None` if absent.
    fn get_lease(
        &self,
        lease_key: &str,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Writes `lease` if no lease with its key exists; `Ok(false)` if one does.
    fn create_lease_if_absent(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Renewal: bumps the counter, if `lease` is still as read and owned by its owner.
    fn renew_lease(&self, lease: &Lease) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Takes `lease` (expired, released or stolen) for `new_owner`, if it is still as read.
    /// Counts an owner switch when the owner changes.
    fn take_lease(
        &self,
        lease: &Lease,
        new_owner: &str,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Releases `lease` (removes `leaseOwner`) so that any worker may take it at once.
    fn release_lease(
        &self,
        lease: &Lease,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Writes a checkpoint (resets the owner switches, clears a pending checkpoint), if
    /// `lease` is still as read.
    fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &ExtendedSequenceNumber,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Writes a pending checkpoint (`pendingCheckpoint`, KCL's `prepareCheckpoint`): the
    /// records up to it may already be in a sink although they are not checkpointed. The
    /// next [`checkpoint`](Self::checkpoint) clears it.
    fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &ExtendedSequenceNumber,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Records the shard's children on its lease, if `lease` is still as read.
    fn set_child_shards(
        &self,
        lease: &Lease,
        children: &BTreeSet<String>,
    ) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Deletes a lease (unconditionally); `Ok(())` if it was absent.
    fn delete_lease(&self, lease_key: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;
}
