//! [`LeaseStore`] in memory, with the same conditional semantics as DynamoDB.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{ExtendedSequenceNumber, Lease, LeaseError, LeaseStore};

/// An in-memory lease table. Cloning shares the table.
#[derive(Debug, Clone)]
pub struct MemoryLeaseStore {
    table: String,
    leases: Arc<Mutex<BTreeMap<String, Lease>>>,
}

impl MemoryLeaseStore {
    /// An empty table called `table`.
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            leases: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` to the stored lease if it still has `seen`'s counter and owner.
    fn conditional(
        &self,
        operation: &'static str,
        seen: &Lease,
        change: impl FnOnce(&mut Lease),
    ) -> Result<Lease, LeaseError> {
        let mut leases = self.lock();
        let Some(stored) = leases.get_mut(&seen.lease_key) else {
            return Err(LeaseError::Conflict {
                operation,
                table: self.table.clone(),
                lease_key: seen.lease_key.clone(),
            });
        };
        if stored.lease_counter != seen.lease_counter || stored.lease_owner != seen.lease_owner {
            return Err(LeaseError::Conflict {
                operation,
                table: self.table.clone(),
                lease_key: seen.lease_key.clone(),
            });
        }
        change(stored);
        stored.lease_counter += 1;
        Ok(stored.clone())
    }
}

impl LeaseStore for MemoryLeaseStore {
    fn table(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<(), LeaseError> {
        Ok(())
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        Ok(self.lock().values().cloned().collect())
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseError> {
        Ok(self.lock().get(lease_key).cloned())
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut leases = self.lock();
        if leases.contains_key(&lease.lease_key) {
            return Ok(false);
        }
        leases.insert(lease.lease_key.clone(), lease.clone());
        Ok(true)
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        if lease.lease_owner.is_none() {
            return Err(LeaseError::Conflict {
                operation: "RenewLease",
                table: self.table.clone(),
                lease_key: lease.lease_key.clone(),
            });
        }
        self.conditional("RenewLease", lease, |_| {})
    }

    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        self.conditional("TakeLease", lease, |l| {
            if l.lease_owner.as_deref() != Some(new_owner) {
                l.owner_switches_since_checkpoint += 1;
            }
            l.lease_owner = Some(new_owner.to_owned());
        })
    }

    async fn release_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.conditional("ReleaseLease", lease, |l| l.lease_owner = None)
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.conditional("Checkpoint", lease, |l| {
            l.checkpoint = checkpoint.clone();
            l.owner_switches_since_checkpoint = 0;
            l.pending_checkpoint = None;
        })
    }

    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.conditional("PrepareCheckpoint", lease, |l| {
            l.pending_checkpoint = Some(pending.clone());
        })
    }

    async fn set_child_shards(
        &self,
        lease: &Lease,
        children: &BTreeSet<String>,
    ) -> Result<Lease, LeaseError> {
        self.conditional("SetChildShards", lease, |l| {
            l.child_shard_ids = children.clone();
        })
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError> {
        self.lock().remove(lease_key);
        Ok(())
    }
}
