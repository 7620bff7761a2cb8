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

    // A row written by a KCL application reads back.
    let mut kcl = std::collections::HashMap::new();
    kcl.insert(
        "leaseKey".to_owned(),
        AttributeValue::S("shardId-000000000007".into()),
    );
    kcl.insert(
        "leaseOwner".to_owned(),
        AttributeValue::S("kcl-worker".into()),
    );
    kcl.insert("leaseCounter".to_owned(), AttributeValue::N("42".into()));
    kcl.insert(
        "checkpoint".to_owned(),
        AttributeValue::S("SHARD_END".into()),
    );
    kcl.insert(
        "checkpointSubSequenceNumber".to_owned(),
        AttributeValue::N("0".into()),
    );
    kcl.insert(
        "ownerSwitchesSinceCheckpoint".to_owned(),
        AttributeValue::N("3".into()),
    );
    kcl.insert(
        "childShardId".to_owned(),
        AttributeValue::Ss(vec!["shardId-000000000008".into()]),
    );
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(kcl))
        .send()
        .await
        .expect("put");
    let l = store
        .get_lease("shardId-000000000007")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        (
            l.lease_owner.as_deref(),
            l.lease_counter,
            l.owner_switches_since_checkpoint
        ),
        (Some("kcl-worker"), 42, 3)
    );
    assert!(l.checkpoint.is_shard_end());
    assert_eq!(l.child_shard_ids.len(), 1);
    let _ = client.delete_table().table_name(&table).send().await;
}
