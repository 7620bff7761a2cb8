//! [`LeaseStore`] on DynamoDB, with the KCL 2.x table schema: a KCL application and a
//! chief consumer can read each other's lease table.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

use super::{ExtendedSequenceNumber, Lease, LeaseError, LeaseStore};

/// Attribute names of the KCL 2.x lease table.
pub mod attr {
    /// `leaseKey` (S): the shard id, the table's hash key.
    pub const LEASE_KEY: &str = "leaseKey";
    /// `leaseOwner` (S): absent when released.
    pub const LEASE_OWNER: &str = "leaseOwner";
    /// `leaseCounter` (N).
    pub const LEASE_COUNTER: &str = "leaseCounter";
    /// `ownerSwitchesSinceCheckpoint` (N).
    pub const OWNER_SWITCHES: &str = "ownerSwitchesSinceCheckpoint";
    /// `checkpoint` (S).
    pub const CHECKPOINT: &str = "checkpoint";
    /// `checkpointSubSequenceNumber` (N).
    pub const CHECKPOINT_SUB: &str = "checkpointSubSequenceNumber";
    /// `pendingCheckpoint` (S).
    pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
    /// `pendingCheckpointSubSequenceNumber` (N).
    pub const PENDING_CHECKPOINT_SUB: &str = "pendingCheckpointSubSequenceNumber";
    /// `parentShardId` (SS).
    pub const PARENT_SHARD_ID: &str = "parentShardId";
    /// `childShardIds` (SS, plural: KCL's `CHILD_SHARD_IDS_KEY` since 2.3).
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    /// `childShardId` (SS, singular): what KCL 2.2 and earlier chief builds wrote. Read as
    /// child shards too, and rewritten as [`CHILD_SHARD_IDS`] by the next update of the row.
    pub const LEGACY_CHILD_SHARD_ID: &str = "childShardId";
    /// `checkpointOwner` (S): KCL 3.x's graceful hand-off; a take removes it, as KCL's
    /// `getDynamoTakeLeaseUpdate` does.
    pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// `startingHashKey` (S).
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    /// `endingHashKey` (S).
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
}

/// The lease table of one application in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbLeaseStore {
    client: Client,
    table: String,
}

impl DynamoDbLeaseStore {
    /// A store on `table` (build the client with `chief_config::aws::AwsClients`).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn store_error<E, R>(&self, operation: &'static str, err: &SdkError<E, R>) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        LeaseError::Store {
            operation,
            table: self.table.clone(),
            fatal: err.code().is_some_and(chief_stream::is_fatal_code),
            message: match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                // One readable line with every cause, not a Debug dump.
                _ => chief_stream::error_line(err),
            },
        }
    }

    fn classify<E, R>(
        &self,
        operation: &'static str,
        lease_key: &str,
        err: &SdkError<E, R>,
    ) -> LeaseError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        if err.code() == Some("ConditionalCheckFailedException") {
            LeaseError::Conflict {
                operation,
                table: self.table.clone(),
                lease_key: lease_key.to_owned(),
            }
        } else {
            self.store_error(operation, err)
        }
    }

    /// A conditional UpdateItem on `seen`: `set` values are written, `remove` attributes
    /// dropped, and the counter bumped, if counter and owner are still those of `seen`.
    ///
    /// Every update also rewrites the child shards under their KCL name: a row that has
    /// them as the legacy `childShardId` gets `childShardIds` and loses the old attribute
    /// (removing an absent attribute is a no-op), so old rows migrate without an operator.
    /// Attributes chief does not know (`throughputKBps`, `pendingCheckpointState`, …) are
    /// never touched.
    async fn conditional_update(
        &self,
        operation: &'static str,
        seen: &Lease,
        mut set: Vec<(&'static str, AttributeValue)>,
        mut remove: Vec<&'static str>,
    ) -> Result<Lease, LeaseError> {
        let touches_children = |name: &&str| *name == attr::CHILD_SHARD_IDS;
        if !seen.child_shard_ids.is_empty()
            && !set.iter().map(|(name, _)| name).any(touches_children)
            && !remove.iter().any(touches_children)
        {
            set.push((
                attr::CHILD_SHARD_IDS,
                AttributeValue::Ss(seen.child_shard_ids.iter().cloned().collect()),
            ));
        }
        remove.push(attr::LEGACY_CHILD_SHARD_ID);
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        names.insert("#counter".to_owned(), attr::LEASE_COUNTER.to_owned());
        names.insert("#owner".to_owned(), attr::LEASE_OWNER.to_owned());
        values.insert(":seen_counter".to_owned(), n(seen.lease_counter));
        values.insert(":next_counter".to_owned(), n(seen.lease_counter + 1));
        let mut condition = "#counter = :seen_counter AND ".to_owned();
        match &seen.lease_owner {
            Some(owner) => {
                condition.push_str("#owner = :seen_owner");
                values.insert(":seen_owner".to_owned(), s(owner));
            }
            None => condition.push_str("attribute_not_exists(#owner)"),
        }
        let mut sets = vec!["#counter = :next_counter".to_owned()];
        for (i, (name, value)) in set.into_iter().enumerate() {
            let (alias, placeholder) = (format!("#s{i}"), format!(":s{i}"));
            sets.push(format!("{alias} = {placeholder}"));
            names.insert(alias, name.to_owned());
            values.insert(placeholder, value);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !remove.is_empty() {
            let mut removes = Vec::new();
            for (i, name) in remove.into_iter().enumerate() {
                let alias = format!("#r{i}");
                removes.push(alias.clone());
                names.insert(alias, name.to_owned());
            }
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, s(&seen.lease_key))
            .condition_expression(condition)
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.classify(operation, &seen.lease_key, &e))?;
        let item = out.attributes.ok_or_else(|| LeaseError::Malformed {
            table: self.table.clone(),
            lease_key: seen.lease_key.clone(),
            message: "UpdateItem returned no attributes".to_owned(),
        })?;
        self.parse(&item)
    }

    /// A DynamoDB item → a lease.
    fn parse(&self, item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
        let key = item
            .get(attr::LEASE_KEY)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "?".to_owned());
        let malformed = |message: String| LeaseError::Malformed {
            table: self.table.clone(),
            lease_key: key.clone(),
            message,
        };
        let get_s = |name: &str| -> Result<Option<String>, LeaseError> {
            match item.get(name) {
                None | Some(AttributeValue::Null(_)) => Ok(None),
                Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
                Some(other) => Err(malformed(format!("{name} is {other:?}, not S"))),
            }
        };
        let get_n = |name: &str| -> Result<Option<u64>, LeaseError> {
            match item.get(name) {
                None | Some(AttributeValue::Null(_)) => Ok(None),
                Some(AttributeValue::N(v)) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| malformed(format!("{name} = {v} is not a counter"))),
                Some(other) => Err(malformed(format!("{name} is {other:?}, not N"))),
            }
        };
        let get_ss = |name: &str| -> Result<BTreeSet<String>, LeaseError> {
            match item.get(name) {
                None | Some(AttributeValue::Null(_)) => Ok(BTreeSet::new()),
                Some(AttributeValue::Ss(v)) => Ok(v.iter().cloned().collect()),
                Some(other) => Err(malformed(format!("{name} is {other:?}, not SS"))),
            }
        };
        let lease_key = get_s(attr::LEASE_KEY)?.ok_or_else(|| malformed("no leaseKey".into()))?;
        let checkpoint = ExtendedSequenceNumber::new(
            get_s(attr::CHECKPOINT)?
                .unwrap_or_else(|| ExtendedSequenceNumber::TRIM_HORIZON.to_owned()),
            get_n(attr::CHECKPOINT_SUB)?.unwrap_or(0),
        );
        let pending_checkpoint = get_s(attr::PENDING_CHECKPOINT)?
            .map(|seq| -> Result<_, LeaseError> {
                Ok(ExtendedSequenceNumber::new(
                    seq,
                    get_n(attr::PENDING_CHECKPOINT_SUB)?.unwrap_or(0),
                ))
            })
            .transpose()?;
        Ok(Lease {
            lease_key,
            lease_owner: get_s(attr::LEASE_OWNER)?,
            lease_counter: get_n(attr::LEASE_COUNTER)?.unwrap_or(0),
            owner_switches_since_checkpoint: get_n(attr::OWNER_SWITCHES)?.unwrap_or(0),
            checkpoint,
            pending_checkpoint,
            parent_shard_ids: get_ss(attr::PARENT_SHARD_ID)?,
            child_shard_ids: get_ss(attr::CHILD_SHARD_IDS)?
                .into_iter()
                .chain(get_ss(attr::LEGACY_CHILD_SHARD_ID)?)
                .collect(),
            starting_hash_key: get_s(attr::STARTING_HASH_KEY)?,
            ending_hash_key: get_s(attr::ENDING_HASH_KEY)?,
        })
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A lease → a DynamoDB item (empty sets and absent values are left out, as KCL does).
pub fn to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::new();
    item.insert(attr::LEASE_KEY.to_owned(), s(&lease.lease_key));
    if let Some(owner) = &lease.lease_owner {
        item.insert(attr::LEASE_OWNER.to_owned(), s(owner));
    }
    item.insert(attr::LEASE_COUNTER.to_owned(), n(lease.lease_counter));
    item.insert(
        attr::OWNER_SWITCHES.to_owned(),
        n(lease.owner_switches_since_checkpoint),
    );
    item.insert(
        attr::CHECKPOINT.to_owned(),
        s(&lease.checkpoint.sequence_number),
    );
    item.insert(
        attr::CHECKPOINT_SUB.to_owned(),
        n(lease.checkpoint.sub_sequence_number),
    );
    if let Some(pending) = &lease.pending_checkpoint {
        item.insert(
            attr::PENDING_CHECKPOINT.to_owned(),
            s(&pending.sequence_number),
        );
        item.insert(
            attr::PENDING_CHECKPOINT_SUB.to_owned(),
            n(pending.sub_sequence_number),
        );
    }
    if !lease.parent_shard_ids.is_empty() {
        item.insert(
            attr::PARENT_SHARD_ID.to_owned(),
            AttributeValue::Ss(lease.parent_shard_ids.iter().cloned().collect()),
        );
    }
    if !lease.child_shard_ids.is_empty() {
        item.insert(
            attr::CHILD_SHARD_IDS.to_owned(),
            AttributeValue::Ss(lease.child_shard_ids.iter().cloned().collect()),
        );
    }
    if let Some(v) = &lease.starting_hash_key {
        item.insert(attr::STARTING_HASH_KEY.to_owned(), s(v));
    }
    if let Some(v) = &lease.ending_hash_key {
        item.insert(attr::ENDING_HASH_KEY.to_owned(), s(v));
    }
    item
}

impl LeaseStore for DynamoDbLeaseStore {
    fn table(&self) -> &str {
        &self.table
    }

    async fn ensure_table(&self) -> Result<(), LeaseError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(self.store_error("DescribeTable", &e)),
        };
        if !exists {
            let key = |t| LeaseError::Store {
                operation: "CreateTable",
                table: self.table.clone(),
                message: format!("bad key schema: {t}"),
                fatal: true,
            };
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr::LEASE_KEY)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(key)?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr::LEASE_KEY)
                        .key_type(KeyType::Hash)
                        .build()
                        .map_err(key)?,
                )
                .send()
                .await;
            match created {
                Ok(_) => tracing::info!(table = %self.table, "created lease table"),
                // Another worker created it first.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(self.store_error("CreateTable", &e)),
            }
        }
        for _ in 0..600 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.store_error("DescribeTable", &e))?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LeaseError::Store {
            operation: "DescribeTable",
            table: self.table.clone(),
            message: "the table did not become ACTIVE within 60 s".to_owned(),
            fatal: false,
        })
    }

    async fn list_leases(&self) -> Result<Vec<Lease>, LeaseError> {
        let mut leases = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.store_error("Scan", &e))?;
            for item in out.items() {
                leases.push(self.parse(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        leases.sort_by(|a, b| a.lease_key.cmp(&b.lease_key));
        Ok(leases)
    }

    async fn get_lease(&self, lease_key: &str) -> Result<Option<Lease>, LeaseError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, s(lease_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.store_error("GetItem", &e))?;
        out.item.as_ref().map(|item| self.parse(item)).transpose()
    }

    async fn create_lease_if_absent(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(lease)))
            .condition_expression("attribute_not_exists(#key)")
            .expression_attribute_names("#key", attr::LEASE_KEY)
            .send()
            .await;
        match out {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.store_error("PutItem", &e)),
        }
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        if lease.lease_owner.is_none() {
            return Err(LeaseError::Conflict {
                operation: "RenewLease",
                table: self.table.clone(),
                lease_key: lease.lease_key.clone(),
            });
        }
        self.conditional_update("RenewLease", lease, Vec::new(), Vec::new())
            .await
    }

    async fn take_lease(&self, lease: &Lease, new_owner: &str) -> Result<Lease, LeaseError> {
        let switches = if lease.lease_owner.as_deref() == Some(new_owner) {
            lease.owner_switches_since_checkpoint
        } else {
            lease.owner_switches_since_checkpoint + 1
        };
        self.conditional_update(
            "TakeLease",
            lease,
            vec![
                (attr::LEASE_OWNER, s(new_owner)),
                (attr::OWNER_SWITCHES, n(switches)),
            ],
            vec![attr::CHECKPOINT_OWNER],
        )
        .await
    }

    async fn release_lease(&self, lease: &Lease) -> Result<Lease, LeaseError> {
        self.conditional_update("ReleaseLease", lease, Vec::new(), vec![attr::LEASE_OWNER])
            .await
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.conditional_update(
            "Checkpoint",
            lease,
            vec![
                (attr::CHECKPOINT, s(&checkpoint.sequence_number)),
                (attr::CHECKPOINT_SUB, n(checkpoint.sub_sequence_number)),
                (attr::OWNER_SWITCHES, n(0)),
            ],
            // As KCL's checkpoint: the pending checkpoint (and KCL 3's state) is done with.
            vec![
                attr::PENDING_CHECKPOINT,
                attr::PENDING_CHECKPOINT_SUB,
                "pendingCheckpointState",
            ],
        )
        .await
    }

    async fn prepare_checkpoint(
        &self,
        lease: &Lease,
        pending: &ExtendedSequenceNumber,
    ) -> Result<Lease, LeaseError> {
        self.conditional_update(
            "PrepareCheckpoint",
            lease,
            vec![
                (attr::PENDING_CHECKPOINT, s(&pending.sequence_number)),
                (attr::PENDING_CHECKPOINT_SUB, n(pending.sub_sequence_number)),
            ],
            Vec::new(),
        )
        .await
    }

    async fn set_child_shards(
        &self,
        lease: &Lease,
        children: &BTreeSet<String>,
    ) -> Result<Lease, LeaseError> {
        if children.is_empty() {
            return self
                .conditional_update(
                    "SetChildShards",
                    lease,
                    Vec::new(),
                    vec![attr::CHILD_SHARD_IDS],
                )
                .await;
        }
        self.conditional_update(
            "SetChildShards",
            lease,
            vec![(
                attr::CHILD_SHARD_IDS,
                AttributeValue::Ss(children.iter().cloned().collect()),
            )],
            Vec::new(),
        )
        .await
    }

    async fn delete_lease(&self, lease_key: &str) -> Result<(), LeaseError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(attr::LEASE_KEY, s(lease_key))
            .send()
            .await
            .map_err(|e| self.store_error("DeleteItem", &e))?;
        Ok(())
    }
}
