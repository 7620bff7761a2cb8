//! The producer against the local Kinesis (`make stack-up`): what goes in comes out, on
//! the right shard, in per-key order, and a split in the middle loses nothing. The
//! stream is read back with plain GetRecords calls and `deaggregate`.

use crate::support;

use std::collections::HashMap;

use chief_aggregation::{UserRecord, parse_hash_key};
use chief_producer::{Producer, ProducerConfig};
use chief_stream::KinesisClient;
use support::{create_stream, kinesis, read_all, wait_active};

fn input(n: usize, keys: usize, offset: usize) -> Vec<UserRecord> {
    (offset..offset + n)
        .map(|i| {
            let key = format!(
                "{:08x}-order-{:05}",
                (i % keys) * 2_654_435_761 % 0xFFFF_FFFF,
                i % keys
            );
            UserRecord::new(
                key.clone(),
                format!("{key}:{i:08}:{}", "o".repeat(60)).into_bytes(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<UserRecord>) -> Vec<UserRecord> {
    v.sort_by(|a, b| (&a.partition_key, &a.data).cmp(&(&b.partition_key, &b.data)));
    v
}

fn index_of(r: &UserRecord) -> u64 {
    String::from_utf8_lossy(&r.data)
        .split(':')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("index in data")
}

async fn produce(stream: &str, records: &[UserRecord]) {
    let k = kinesis().await;
    // kinesis-local takes 50 KB aggregates at ~34/s when idle, far less while the rest of
    // the suite runs on it: the last of 100,000 buffered records can wait longer than the
    // default 30 s TTL for their turn. This test is about exactness, not speed.
    let config = ProducerConfig {
        record_ttl_ms: 300_000,
        ..ProducerConfig::default()
    };
    let producer = Producer::start(KinesisClient::new(k), stream, config)
        .await
        .expect("start");
    let mut receipts = Vec::with_capacity(records.len());
    for r in records {
        receipts.push(producer.send(r.clone()).await.expect("send"));
    }
    for r in receipts {
        r.await.expect("every record is put");
    }
    let stats = producer.shutdown().await;
    assert_eq!(stats.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_records_come_back_exactly_on_their_shards_in_key_order() {
    let k = kinesis().await;
    let stream = create_stream(&k, 4).await;
    let records = input(100_000, 5_000, 0);
    produce(&stream, &records).await;

    let read = read_all(&k, &stream).await;
    let mut per_key: HashMap<String, u64> = HashMap::new();
    let mut users = Vec::with_capacity(records.len());
    for r in &read {
        for u in &r.users {
            let hash = u.hash_key().expect("hash");
            assert!(
                (r.outer_hash_range.0..=r.outer_hash_range.1).contains(&hash),
                "user record {} is on {} which does not own its hash key",
                u.partition_key,
                r.shard
            );
            let i = index_of(u);
            if let Some(prev) = per_key.insert(u.partition_key.clone(), i) {
                assert!(
                    prev < i,
                    "key {} out of order: {prev} before {i}",
                    u.partition_key
                );
            }
            users.push(u.clone());
        }
    }
    assert_eq!(users.len(), 100_000, "exact count, no duplicates");
    assert_eq!(sorted(users), sorted(records));
    assert!(
        read.len() < 1_000,
        "aggregated: {} Kinesis records",
        read.len()
    );
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_in_the_middle_loses_nothing_and_later_records_land_on_the_children() {
    let k = kinesis().await;
    let stream = create_stream(&k, 2).await;
    let first = input(10_000, 1_000, 0);
    let second = input(10_000, 1_000, 10_000);

    let producer = Producer::start(
        KinesisClient::new(k.clone()),
        &stream,
        ProducerConfig::default(),
    )
    .await
    .expect("start");
    let mut receipts = Vec::new();
    for r in &first {
        receipts.push(producer.send(r.clone()).await.expect("send"));
    }
    producer.flush().await;
    let shards = k
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards");
    let parent = shards.shards()[0].clone();
    let range = parent.hash_key_range().expect("range");
    let (lo, hi) = (
        parse_hash_key(range.starting_hash_key()).expect("start"),
        parse_hash_key(range.ending_hash_key()).expect("end"),
    );
    k.split_shard()
        .stream_name(&stream)
        .shard_to_split(parent.shard_id())
        .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
        .send()
        .await
        .expect("SplitShard");
    wait_active(&k, &stream).await;
    let mut later = Vec::new();
    for r in &second {
        later.push(producer.send(r.clone()).await.expect("send"));
    }
    for r in receipts {
        r.await.expect("put");
    }
    let mut later_shards = Vec::new();
    for r in later {
        later_shards.push(r.await.expect("put").shard_id.to_string());
    }
    producer.shutdown().await;
    assert!(
        !later_shards.iter().any(|s| s == parent.shard_id()),
        "records sent after the split land on the children, not the closed parent"
    );
    let children: Vec<String> = k
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards")
        .shards()
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent.shard_id()))
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children.len(), 2);
    assert!(
        children.iter().all(|c| later_shards.contains(c)),
        "both children got records"
    );

    let mut all: Vec<UserRecord> = first.clone();
    all.extend(second.iter().cloned());
    // Read as a KCL reads: shard after shard (the parent before its children), skipping
    // the user records of aggregates that hash outside their shard (put on a child on the
    // producer's old map; the producer sent those again to the child that owns them).
    let mut skipped = 0;
    let mut users: Vec<UserRecord> = Vec::new();
    for read in read_all(&k, &stream).await {
        let (lo, hi) = read.outer_hash_range;
        for user in read.users {
            if (lo..=hi).contains(&user.hash_key().expect("hash")) {
                users.push(user);
            } else {
                skipped += 1;
            }
        }
    }
    assert!(
        skipped > 0,
        "aggregates of both children were put on the old map (else this test proves nothing)"
    );
    assert_eq!(users.len(), 20_000, "exact count, no duplicates");
    // Per-key order, parent then child: kept except for records that shared the first
    // PutRecords call on the old map with an earlier record of their key (the KPL's
    // "Wrong Shard" retry has the same window; see the README). Reported, not asserted.
    let index_of: HashMap<&[u8], usize> = all
        .iter()
        .enumerate()
        .map(|(i, r)| (r.data.as_ref(), i))
        .collect();
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut violations = 0;
    for user in &users {
        let index = *index_of.get(user.data.as_ref()).expect("a sent record");
        if last
            .insert(&user.partition_key, index)
            .is_some_and(|prev| prev > index)
        {
            violations += 1;
        }
    }
    eprintln!(
        "split mid-production: {skipped} user records outside their shard skipped, {violations} per-key order violations"
    );
    assert_eq!(sorted(users), sorted(all));
    k.delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}
