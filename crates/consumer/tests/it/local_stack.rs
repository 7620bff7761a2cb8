//! The scheduler scenarios of issue 6 on the local stack (`make stack-up`): kinesis-local
//! for the stream, moto for the DynamoDB lease table. Unique stream and table per test;
//! the tests fail (naming `make stack-up`) when the stack is absent.

use crate::support;

use std::time::Duration;

use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_consumer::DynamoDbLeaseStore;
use chief_stream::{KinesisClient, StreamClient};
use support::*;

struct Local {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: String,
    table: String,
}

impl Local {
    async fn new(shards: i32) -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let me = Self {
            kinesis: clients.kinesis(),
            dynamodb: clients.dynamodb(),
            stream: format!("chief-consumer-{id}"),
            table: format!("chief-consumer-leases-{id}"),
        };
        me.kinesis
            .create_stream()
            .stream_name(&me.stream)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        me.wait_active().await;
        me
    }

    async fn wait_active(&self) {
        KinesisClient::new(self.kinesis.clone())
            .wait_until_active(&self.stream, Duration::from_secs(60))
            .await
            .expect("the stream becomes ACTIVE");
    }

    async fn clean_up(self) {
        let _ = self
            .kinesis
            .delete_stream()
            .stream_name(&self.stream)
            .send()
            .await;
        let _ = self
            .dynamodb
            .delete_table()
            .table_name(&self.table)
            .send()
            .await;
    }
}

impl Backend for Local {
    type Client = KinesisClient;
    type Store = DynamoDbLeaseStore;
    fn client(&self) -> KinesisClient {
        KinesisClient::new(self.kinesis.clone())
    }
    fn store(&self) -> DynamoDbLeaseStore {
        DynamoDbLeaseStore::new(self.dynamodb.clone(), &self.table)
    }
    fn stream(&self) -> String {
        self.stream.clone()
    }
    async fn split(&self, shard: &str) {
        let shards = self
            .client()
            .list_shards(&self.stream)
            .await
            .expect("shards");
        let s = shards.iter().find(|s| s.shard_id == shard).expect("shard");
        let mid = s.starting_hash_key + (s.ending_hash_key - s.starting_hash_key) / 2 + 1;
        self.kinesis
            .split_shard()
            .stream_name(&self.stream)
            .shard_to_split(shard)
            .new_starting_hash_key(mid.to_string())
            .send()
            .await
            .expect("SplitShard");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.wait_active().await;
    }
    async fn merge(&self, a: &str, b: &str) {
        self.kinesis
            .merge_shards()
            .stream_name(&self.stream)
            .shard_to_merge(a)
            .adjacent_shard_to_merge(b)
            .send()
            .await
            .expect("MergeShards");
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.wait_active().await;
    }
}

#[tokio::test]
async fn local_two_workers_balance_to_two_and_two() {
    let l = Local::new(4).await;
    two_workers_balance(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_dead_worker_is_taken_over_after_failover() {
    let l = Local::new(4).await;
    dead_worker_is_taken_over(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_graceful_stop_hands_over_at_once() {
    let l = Local::new(4).await;
    graceful_stop_hands_over(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_split_and_merge_while_the_producer_sends_lose_nothing() {
    let l = Local::new(4).await;
    reshard_while_producing(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_split_and_merge_mid_run_lose_nothing_and_keep_key_order() {
    let l = Local::new(4).await;
    reshard_mid_run(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_restart_replays_only_what_was_not_checkpointed() {
    let l = Local::new(4).await;
    restart_replays_only_what_was_not_checkpointed(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_checkpoint_after_lease_loss_is_refused() {
    let l = Local::new(4).await;
    checkpoint_after_lease_loss_is_refused(&l, &l.table.clone()).await;
    l.clean_up().await;
}

// Enhanced fan-out on kinesis-local (RegisterStreamConsumer + SubscribeToShard over
// HTTP/1.1 event streams; the emulator pushes an event per shard once a second and never
// reports the end of a closed shard on a subscription, which the end-of-shard check covers).

#[tokio::test]
async fn local_fan_out_two_workers_balance_to_two_and_two() {
    let l = FanOut(Local::new(4).await);
    two_workers_balance(&l, &l.0.table.clone()).await;
    l.0.clean_up().await;
}

#[tokio::test]
async fn local_fan_out_split_and_merge_mid_run_lose_nothing_and_keep_key_order() {
    let l = FanOut(Local::new(4).await);
    reshard_mid_run(&l, &l.0.table.clone()).await;
    l.0.clean_up().await;
}

#[tokio::test]
async fn local_fan_out_restart_replays_only_what_was_not_checkpointed() {
    let l = FanOut(Local::new(4).await);
    restart_replays_only_what_was_not_checkpointed(&l, &l.0.table.clone()).await;
    l.0.clean_up().await;
}

#[tokio::test]
async fn local_initial_position_latest() {
    let l = Local::new(2).await;
    initial_position_latest(&l, &l.table.clone()).await;
    l.clean_up().await;
}

#[tokio::test]
async fn local_initial_position_at_timestamp() {
    let l = Local::new(2).await;
    initial_position_at_timestamp(&l, &l.table.clone()).await;
    l.clean_up().await;
}
