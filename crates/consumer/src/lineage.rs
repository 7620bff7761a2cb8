//! Shard lineage as ListShards reports it, and what the lease table says of a shard's
//! progress: what shard sync and lease clean-up decide on.

use std::collections::{BTreeSet, HashMap};

use chief_stream::Shard;

use crate::lease::Lease;

/// Shard → the shards that name it as a parent (ListShards' lineage).
pub(crate) fn children_of(shards: &[Shard]) -> HashMap<String, Vec<String>> {
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for shard in shards {
        for parent in shard
            .parent_shard_id
            .iter()
            .chain(shard.adjacent_parent_shard_id.iter())
        {
            children
                .entry(parent.clone())
                .or_default()
                .push(shard.shard_id.clone());
        }
    }
    children
}

/// Every shard descending from `shard` (children, their children, …).
pub(crate) fn descendants(
    shard: &str,
    children: &HashMap<String, Vec<String>>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![shard.to_owned()];
    while let Some(s) = stack.pop() {
        for child in children.get(&s).into_iter().flatten() {
            if out.insert(child.clone()) {
                stack.push(child.clone());
            }
        }
    }
    out
}

/// Whether a lease's shard has started: checkpointed a record, or its end.
pub(crate) fn started(lease: &Lease) -> bool {
    !lease.checkpoint.is_sentinel() || lease.checkpoint.is_shard_end()
}
