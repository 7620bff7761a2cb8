//! Helpers of the producer's local-stack tests: a unique stream, and reading it back with
//! plain GetRecords calls and `deaggregate`.
#![allow(dead_code)]

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use chief_aggregation::{UserRecord, deaggregate, parse_hash_key};
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_stream::KinesisClient;

pub async fn kinesis() -> aws_sdk_kinesis::Client {
    AwsClients::new(&LocalStack::require().aws).await.kinesis()
}

pub async fn create_stream(k: &aws_sdk_kinesis::Client, shards: i32) -> String {
    let name = format!("producer-{}", uuid::Uuid::new_v4().simple());
    KinesisClient::new(k.clone())
        .create_stream(&name, shards)
        .await
        .expect("CreateStream");
    wait_active(k, &name).await;
    name
}

pub async fn wait_active(k: &aws_sdk_kinesis::Client, name: &str) {
    KinesisClient::new(k.clone())
        .wait_until_active(name, Duration::from_secs(30))
        .await
        .expect("stream becomes ACTIVE");
}

/// One Kinesis record read back: its shard and the user records it carries.
pub struct Read {
    /// The shard.
    pub shard: String,
    /// The shard's hash key range.
    pub outer_hash_range: (u128, u128),
    /// The user records.
    pub users: Vec<UserRecord>,
}

/// Reads every shard from TRIM_HORIZON to its end (or to the tip).
pub async fn read_all(k: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Read> {
    let shards = k
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let range = shard.hash_key_range().expect("range");
        let bounds = (
            parse_hash_key(range.starting_hash_key()).expect("start"),
            parse_hash_key(range.ending_hash_key()).expect("end"),
        );
        let mut iterator = k
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(it) = iterator {
            let page = k
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            for r in page.records() {
                let outer = UserRecord {
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    explicit_hash_key: None,
                    data: r.data().as_ref().to_vec().into(),
                };
                out.push(Read {
                    shard: shard.shard_id().to_owned(),
                    outer_hash_range: bounds,
                    users: deaggregate(outer).map(|d| d.record).collect(),
                });
            }
            let caught_up = page.records().is_empty() && page.millis_behind_latest() == Some(0);
            iterator = if caught_up {
                None
            } else {
                page.next_shard_iterator
            };
        }
    }
    out
}
