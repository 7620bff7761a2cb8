//! One conformance suite for `LeaseStore`, run against the in-memory store and against
//! DynamoDB on the local stack (moto, `make stack-up`), one fresh table per test.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::{
    DynamoDbLeaseStore, ExtendedSequenceNumber, Lease, LeaseError, LeaseStore, MemoryLeaseStore,
};

fn new_lease(key: &str) -> Lease {
    let mut l = Lease::new(
        key,
        ExtendedSequenceNumber::sentinel(ExtendedSequenceNumber::TRIM_HORIZON),
    );
    l.parent_shard_ids = BTreeSet::from([
        "shardId-000000000000".to_owned(),
        "shardId-000000000001".to_owned(),
    ]);
    l.starting_hash_key = Some("0".to_owned());
    l.ending_hash_key = Some(u128::MAX.to_string());
    l
}

fn conflict<T: std::fmt::Debug>(r: Result<T, LeaseError>) -> bool {
    matches!(r, Err(LeaseError::Conflict { .. }))
}

/// Everything a `LeaseStore` must do, the same way on every implementation.
async fn conformance<S: LeaseStore + Clone>(store: S) {
    store.ensure_table().await.expect("ensure_table");
    store
        .ensure_table()
        .await
        .expect("ensure_table is idempotent");
    assert!(store.list_leases().await.expect("list").is_empty());

    // Create once.
    let lease = new_lease("shardId-000000000002");
    assert!(store.create_lease_if_absent(&lease).await.expect("create"));
    assert!(
        !store
            .create_lease_if_absent(&lease)
            .await
            .expect("create again")
    );
    let read = store
        .get_lease(&lease.lease_key)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, lease, "round trip of every attribute");
    assert!(store.get_lease("nope").await.expect("get").is_none());

    // Take an unowned lease.
    let a = store.take_lease(&read, "worker-a").await.expect("take");
    assert_eq!(a.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!((a.lease_counter, a.owner_switches_since_checkpoint), (1, 1));
    // A stale view (counter 0, no owner) cannot take it again.
    assert!(conflict(store.take_lease(&read, "worker-b").await));

    // Renew bumps the counter; a stale view is refused.
    let a2 = store.renew_lease(&a).await.expect("renew");
    assert_eq!(a2.lease_counter, 2);
    assert!(conflict(store.renew_lease(&a).await));

    // Checkpoint: conditional, resets the owner switches.
    let cp = ExtendedSequenceNumber::new(
        "49590338271490256608559692538361571095921575989136588898",
        7,
    );
    let a3 = store.checkpoint(&a2, &cp).await.expect("checkpoint");
    assert_eq!(
        (
            a3.checkpoint.clone(),
            a3.owner_switches_since_checkpoint,
            a3.lease_counter
        ),
        (cp.clone(), 0, 3)
    );
    assert!(conflict(store.checkpoint(&a2, &cp).await));

    // Another worker steals it (with a fresh view); the old holder's renewal and
    // checkpoint are refused from then on.
    let b = store.take_lease(&a3, "worker-b").await.expect("steal");
    assert_eq!(
        (b.lease_owner.as_deref(), b.owner_switches_since_checkpoint),
        (Some("worker-b"), 1)
    );
    assert!(conflict(store.renew_lease(&a3).await));
    assert!(conflict(
        store
            .checkpoint(&a3, &ExtendedSequenceNumber::shard_end())
            .await
    ));
    let now = store
        .get_lease(&lease.lease_key)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(now.checkpoint, cp, "the refused checkpoint wrote nothing");

    // Release: no owner; renewing a released lease is refused; anyone may take it.
    let released = store.release_lease(&b).await.expect("release");
    assert_eq!(released.lease_owner, None);
    assert!(conflict(store.renew_lease(&released).await));
    assert!(conflict(store.release_lease(&b).await));
    let c = store
        .take_lease(&released, "worker-c")
        .await
        .expect("take released");
    assert_eq!(c.lease_owner.as_deref(), Some("worker-c"));

    // A pending checkpoint: written conditionally, kept until the next checkpoint.
    let pending = ExtendedSequenceNumber::new(
        "49590338271490256608559692538361571095921575989136588999",
        2,
    );
    let p1 = store
        .prepare_checkpoint(&c, &pending)
        .await
        .expect("prepare");
    assert_eq!(p1.pending_checkpoint.as_ref(), Some(&pending));
    assert!(
        conflict(store.prepare_checkpoint(&c, &pending).await),
        "a stale view is refused"
    );
    let read = store
        .get_lease(&lease.lease_key)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, p1);
    let done = ExtendedSequenceNumber::new(
        "49590338271490256608559692538361571095921575989136588999",
        2,
    );
    let c = store.checkpoint(&p1, &done).await.expect("checkpoint");
    assert_eq!(c.pending_checkpoint, None);
    let read = store
        .get_lease(&lease.lease_key)
        .await
        .expect("get")
        .expect("present");
    assert_eq!((read.pending_checkpoint, read.checkpoint), (None, done));

    // Children, then SHARD_END.
    let kids = BTreeSet::from([
        "shardId-000000000005".to_owned(),
        "shardId-000000000006".to_owned(),
    ]);
    let c2 = store.set_child_shards(&c, &kids).await.expect("children");
    let c3 = store
        .checkpoint(&c2, &ExtendedSequenceNumber::shard_end())
        .await
        .expect("shard end");
    let read = store
        .get_lease(&lease.lease_key)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read, c3);
    assert!(read.checkpoint.is_shard_end());
    assert_eq!(read.child_shard_ids, kids);

    // Concurrent takes of one view: exactly one wins, round after round (a store whose
    // condition check and write are not atomic lets two win now and then).
    let other = new_lease("shardId-000000000009");
    assert!(store.create_lease_if_absent(&other).await.expect("create"));
    let mut view = other.clone();
    for round in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (store, view) = (store.clone(), view.clone());
            tasks.push(tokio::spawn(async move {
                store.take_lease(&view, &format!("r{round}w{i}")).await
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("join") {
                Ok(won) => winners.push(won),
                Err(e) => assert!(e.is_conflict(), "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let stored = store
            .get_lease(&other.lease_key)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            stored, winners[0],
            "round {round}: the winner's write is the one stored"
        );
        view = stored;
    }

    let all = store.list_leases().await.expect("list");
    assert_eq!(
        all.iter().map(|l| l.lease_key.as_str()).collect::<Vec<_>>(),
        vec!["shardId-000000000002", "shardId-000000000009"]
    );
    store
        .delete_lease("shardId-000000000009")
        .await
        .expect("delete");
    store
        .delete_lease("shardId-000000000009")
        .await
        .expect("delete absent");
    assert_eq!(store.list_leases().await.expect("list").len(), 1);
}

#[tokio::test]
async fn memory_lease_store_conforms() {
    conformance(MemoryLeaseStore::new("memory")).await;
}

async fn dynamodb() -> (aws_sdk_dynamodb::Client, String) {
    let stack = LocalStack::require();
    let client = AwsClients::new(&stack.aws).await.dynamodb();
    (
        client,
        format!("chief-leases-{}", uuid::Uuid::new_v4().simple()),
    )
}

#[tokio::test]
async fn dynamodb_lease_store_conforms() {
    let (client, table) = dynamodb().await;
    conformance(DynamoDbLeaseStore::new(client.clone(), &table)).await;
    let _ = client.delete_table().table_name(&table).send().await;
}

#[tokio::test]
async fn dynamodb_rows_have_the_kcl_schema() {
    let (client, table) = dynamodb().await;
    let store = DynamoDbLeaseStore::new(client.clone(), &table);
    store.ensure_table().await.expect("ensure_table");
    let desc = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe");
    let t = desc.table().expect("table");
    assert_eq!(t.key_schema()[0].attribute_name(), "leaseKey");
    assert_eq!(
        t.billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str()),
        Some("PAY_PER_REQUEST")
    );
    let lease = new_lease("shardId-000000000003");
    store.create_lease_if_absent(&lease).await.expect("create");
    let taken = store.take_lease(&lease, "w").await.expect("take");
    let cp = store
        .checkpoint(&taken, &ExtendedSequenceNumber::new("123", 4))
        .await
        .expect("checkpoint");
    let item = client
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S(lease.lease_key.clone()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert_eq!(item["leaseOwner"], AttributeValue::S("w".into()));
    assert_eq!(item["leaseCounter"], AttributeValue::N("2".into()));
    assert_eq!(
        item["ownerSwitchesSinceCheckpoint"],
        AttributeValue::N("0".into())
    );
    assert_eq!(item["checkpoint"], AttributeValue::S("123".into()));
    assert_eq!(
        item["checkpointSubSequenceNumber"],
        AttributeValue::N("4".into())
    );
    assert_eq!(item["startingHashKey"], AttributeValue::S("0".into()));
    let AttributeValue::Ss(parents) = &item["parentShardId"] else {
        panic!("parentShardId is not SS")
    };
    assert_eq!(parents.len(), 2);
    store.release_lease(&cp).await.expect("release");
    let item = client
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S(lease.lease_key.clone()))
        .send()
        .await
        .expect("get")
        .item
        .expect("item");
    assert!(
        !item.contains_key("leaseOwner"),
        "a released lease has no leaseOwner"
    );

    let _ = client.delete_table().table_name(&table).send().await;
}

type Item = std::collections::HashMap<String, AttributeValue>;

fn attr_s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn attr_n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

fn attr_ss(v: &[&str]) -> AttributeValue {
    AttributeValue::Ss(v.iter().map(|s| (*s).to_owned()).collect())
}

/// A row as KCL's `DynamoDBLeaseSerializer.toDynamoRecord` writes it (KCL 2.3+ names and
/// types, attribute by attribute): a lease held by a KCL worker with a pending checkpoint.
fn kcl2_row(key: &str) -> Item {
    Item::from([
        ("leaseKey".to_owned(), attr_s(key)),
        ("leaseCounter".to_owned(), attr_n("41")),
        ("leaseOwner".to_owned(), attr_s("kcl-worker-1")),
        ("ownerSwitchesSinceCheckpoint".to_owned(), attr_n("2")),
        (
            "checkpoint".to_owned(),
            attr_s("49590338271490256608559692538361571095921575989136588898"),
        ),
        ("checkpointSubSequenceNumber".to_owned(), attr_n("7")),
        (
            "parentShardId".to_owned(),
            attr_ss(&["shardId-000000000000"]),
        ),
        (
            "pendingCheckpoint".to_owned(),
            attr_s("49590338271490256608559692538361571095921575989136588999"),
        ),
        ("pendingCheckpointSubSequenceNumber".to_owned(), attr_n("0")),
        ("startingHashKey".to_owned(), attr_s("0")),
        (
            "endingHashKey".to_owned(),
            attr_s("170141183460469231731687303715884105727"),
        ),
    ])
}

/// The same with what KCL 3.x adds: `throughputKBps` (N), `checkpointOwner` (S, a hand-off
/// in progress), `pendingCheckpointState` (B).
fn kcl3_row(key: &str) -> Item {
    let mut row = kcl2_row(key);
    row.insert("throughputKBps".to_owned(), attr_n("12.5"));
    row.insert("checkpointOwner".to_owned(), attr_s("kcl-worker-2"));
    row.insert(
        "pendingCheckpointState".to_owned(),
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 1, 2, 255])),
    );
    row
}

/// A finished parent as KCL writes it: `SHARD_END` and `childShardIds`.
fn kcl_parent_row(key: &str, children_attr: &str) -> Item {
    Item::from([
        ("leaseKey".to_owned(), attr_s(key)),
        ("leaseCounter".to_owned(), attr_n("9")),
        ("ownerSwitchesSinceCheckpoint".to_owned(), attr_n("0")),
        ("checkpoint".to_owned(), attr_s("SHARD_END")),
        ("checkpointSubSequenceNumber".to_owned(), attr_n("0")),
        (
            children_attr.to_owned(),
            attr_ss(&["shardId-000000000011", "shardId-000000000012"]),
        ),
        ("startingHashKey".to_owned(), attr_s("0")),
        (
            "endingHashKey".to_owned(),
            attr_s("340282366920938463463374607431768211455"),
        ),
    ])
}

/// KCL's attribute names and types (`DynamoDBLeaseSerializer`, 2.x and 3.x).
fn kcl_type(name: &str) -> Option<&'static str> {
    Some(match name {
        "leaseKey" | "leaseOwner" | "checkpoint" | "pendingCheckpoint" | "startingHashKey"
        | "endingHashKey" | "checkpointOwner" => "S",
        "leaseCounter"
        | "ownerSwitchesSinceCheckpoint"
        | "checkpointSubSequenceNumber"
        | "pendingCheckpointSubSequenceNumber"
        | "throughputKBps" => "N",
        "parentShardId" | "childShardIds" => "SS",
        "pendingCheckpointState" => "B",
        _ => return None,
    })
}

fn type_of(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::B(_) => "B",
        _ => "other",
    }
}

async fn row(client: &aws_sdk_dynamodb::Client, table: &str, key: &str) -> Item {
    client
        .get_item()
        .table_name(table)
        .key("leaseKey", attr_s(key))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the row")
}

/// Every attribute has KCL's name and type, and the attributes chief does not use are
/// exactly as the KCL worker wrote them.
fn assert_kcl_row(item: &Item, original: &Item, chief_writes: &[&str]) {
    for (name, value) in item {
        assert_eq!(kcl_type(name), Some(type_of(value)), "{name}: {value:?}");
    }
    for (name, value) in original {
        if !chief_writes.contains(&name.as_str()) {
            assert_eq!(
                item.get(name),
                Some(value),
                "{name} is kept as KCL wrote it"
            );
        }
    }
}

#[tokio::test]
async fn rows_written_by_kcl_2_and_3_are_taken_renewed_checkpointed_and_released_with_kcl_names() {
    let (client, table) = dynamodb().await;
    let store = DynamoDbLeaseStore::new(client.clone(), &table);
    store.ensure_table().await.expect("ensure_table");
    for (key, original) in [
        ("shardId-000000000002", kcl2_row("shardId-000000000002")),
        ("shardId-000000000003", kcl3_row("shardId-000000000003")),
    ] {
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(original.clone()))
            .send()
            .await
            .expect("PutItem");
        let lease = store.get_lease(key).await.expect("get").expect("present");
        assert_eq!(lease.lease_owner.as_deref(), Some("kcl-worker-1"));
        assert_eq!(
            (lease.lease_counter, lease.owner_switches_since_checkpoint),
            (41, 2)
        );
        assert_eq!(lease.checkpoint.sub_sequence_number, 7);
        assert_eq!(
            lease
                .pending_checkpoint
                .as_ref()
                .map(|p| p.sequence_number.as_str()),
            Some("49590338271490256608559692538361571095921575989136588999")
        );
        assert_eq!(lease.parent_shard_ids.len(), 1);
        assert_eq!(
            lease.ending_hash_key.as_deref(),
            Some("170141183460469231731687303715884105727")
        );

        // Take (the KCL worker's lease expired): owner, counter, one more switch, and
        // checkpointOwner removed as KCL's take does; the rest untouched.
        let taken = store
            .take_lease(&lease, "chief-worker")
            .await
            .expect("take");
        let item = row(&client, &table, key).await;
        assert_eq!(item["leaseOwner"], attr_s("chief-worker"));
        assert_eq!(item["leaseCounter"], attr_n("42"));
        assert_eq!(item["ownerSwitchesSinceCheckpoint"], attr_n("3"));
        assert!(!item.contains_key("checkpointOwner"), "{item:?}");
        let taking = [
            "leaseOwner",
            "leaseCounter",
            "ownerSwitchesSinceCheckpoint",
            "checkpointOwner",
        ];
        assert_kcl_row(&item, &original, &taking);

        let renewed = store.renew_lease(&taken).await.expect("renew");
        assert_eq!(
            row(&client, &table, key).await["leaseCounter"],
            attr_n("43")
        );
        let checkpointed = store
            .checkpoint(
                &renewed,
                &ExtendedSequenceNumber::new(
                    "49590338271490256608559692538361571095921575989136589000",
                    3,
                ),
            )
            .await
            .expect("checkpoint");
        let item = row(&client, &table, key).await;
        assert_eq!(
            item["checkpoint"],
            attr_s("49590338271490256608559692538361571095921575989136589000")
        );
        assert_eq!(item["checkpointSubSequenceNumber"], attr_n("3"));
        assert_eq!(item["ownerSwitchesSinceCheckpoint"], attr_n("0"));
        // As KCL's checkpoint: the pending checkpoint is cleared.
        for name in [
            "pendingCheckpoint",
            "pendingCheckpointSubSequenceNumber",
            "pendingCheckpointState",
        ] {
            assert!(!item.contains_key(name), "{name} left after a checkpoint");
        }
        let checkpointing = [
            taking.as_slice(),
            &[
                "checkpoint",
                "checkpointSubSequenceNumber",
                "pendingCheckpoint",
                "pendingCheckpointSubSequenceNumber",
                "pendingCheckpointState",
            ],
        ]
        .concat();
        assert_kcl_row(&item, &original, &checkpointing);

        store.release_lease(&checkpointed).await.expect("release");
        let item = row(&client, &table, key).await;
        assert!(!item.contains_key("leaseOwner"), "released: no leaseOwner");
        assert_eq!(item["leaseCounter"], attr_n("45"));
        assert_kcl_row(&item, &original, &checkpointing);
    }

    // A finished parent: KCL 2.3+ names its children `childShardIds`; a row written with
    // the singular `childShardId` (KCL 2.2, chief before) reads the same and is rewritten
    // with the right name by its next update.
    for (key, children_attr) in [
        ("shardId-000000000004", "childShardIds"),
        ("shardId-000000000005", "childShardId"),
    ] {
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(kcl_parent_row(key, children_attr)))
            .send()
            .await
            .expect("PutItem");
        let lease = store.get_lease(key).await.expect("get").expect("present");
        assert!(lease.checkpoint.is_shard_end());
        assert_eq!(
            lease.child_shard_ids,
            BTreeSet::from([
                "shardId-000000000011".to_owned(),
                "shardId-000000000012".to_owned()
            ]),
            "{children_attr}"
        );
        let taken = store
            .take_lease(&lease, "chief-worker")
            .await
            .expect("take");
        store.release_lease(&taken).await.expect("release");
        let item = row(&client, &table, key).await;
        assert_eq!(
            item.get("childShardIds"),
            Some(&attr_ss(&["shardId-000000000011", "shardId-000000000012"])),
            "{children_attr}: {item:?}"
        );
        assert!(!item.contains_key("childShardId"), "{item:?}");
        for (name, value) in &item {
            assert_eq!(kcl_type(name), Some(type_of(value)), "{name}");
        }
    }

    // What chief writes itself has only KCL's names and types.
    let mut lease = new_lease("shardId-000000000006");
    lease.child_shard_ids = BTreeSet::from(["shardId-000000000013".to_owned()]);
    store.create_lease_if_absent(&lease).await.expect("create");
    for (name, value) in &row(&client, &table, "shardId-000000000006").await {
        assert_eq!(kcl_type(name), Some(type_of(value)), "{name}");
    }
    let _ = client.delete_table().table_name(&table).send().await;
}
