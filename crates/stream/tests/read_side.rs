//! The read side (GetShardIterator, GetRecords) of both `StreamClient`s, with the same
//! expectations: positions, paging, the end of a closed shard with its children.
//! The Kinesis half runs on the local stack (`make stack-up`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_stream::{
    Faults, IteratorPosition, KinesisClient, MemoryStreams, PutEntry, StreamClient, StreamError,
};

fn entries(from: usize, n: usize) -> Vec<PutEntry> {
    (from..from + n)
        .map(|i| PutEntry {
            partition_key: format!("key-{i}"),
            // All on the lower half of the hash space: the first shard of a 1-shard stream,
            // the first child after a split at 2^127.
            explicit_hash_key: Some("1".to_owned()),
            data: Bytes::from(format!("record-{i}")),
        })
        .collect()
}

async fn read_all<C: StreamClient>(
    c: &C,
    stream: &str,
    mut it: String,
) -> (Vec<String>, Option<String>) {
    let mut out = Vec::new();
    for _ in 0..50 {
        let page = c.get_records(stream, &it, 3).await.expect("GetRecords");
        out.extend(
            page.records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.data).into_owned()),
        );
        match page.next_shard_iterator {
            Some(next) if !page.records.is_empty() => it = next,
            Some(next) => return (out, Some(next)),
            None => {
                let kids: Vec<String> = page
                    .child_shards
                    .iter()
                    .map(|c| c.shard_id.clone())
                    .collect();
                return (out, Some(format!("END:{}", kids.join(","))));
            }
        }
    }
    (out, None)
}

/// `split` splits `shard` at 2^127 and waits until the stream is usable again.
async fn conformance<C, F, Fut>(c: &C, stream: &str, split: F)
where
    C: StreamClient,
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let shard = c.list_shards(stream).await.expect("ListShards")[0]
        .shard_id
        .clone();
    let before = SystemTime::now() - Duration::from_secs(1);
    let put = c
        .put_records(stream, entries(0, 7))
        .await
        .expect("PutRecords");
    let seqs: Vec<String> = put
        .into_iter()
        .map(|r| r.expect("put").sequence_number)
        .collect();

    let it = c
        .get_shard_iterator(stream, &shard, &IteratorPosition::TrimHorizon)
        .await
        .expect("iterator");
    let (data, _) = read_all(c, stream, it).await;
    assert_eq!(
        data,
        (0..7).map(|i| format!("record-{i}")).collect::<Vec<_>>()
    );

    let it = c
        .get_shard_iterator(
            stream,
            &shard,
            &IteratorPosition::AtSequenceNumber(seqs[3].clone()),
        )
        .await
        .expect("at");
    assert_eq!(read_all(c, stream, it).await.0[0], "record-3");
    let it = c
        .get_shard_iterator(
            stream,
            &shard,
            &IteratorPosition::AfterSequenceNumber(seqs[3].clone()),
        )
        .await
        .expect("after");
    assert_eq!(read_all(c, stream, it).await.0[0], "record-4");
    let it = c
        .get_shard_iterator(stream, &shard, &IteratorPosition::AtTimestamp(before))
        .await
        .expect("ts");
    assert_eq!(read_all(c, stream, it).await.0.len(), 7);
    let latest = c
        .get_shard_iterator(stream, &shard, &IteratorPosition::Latest)
        .await
        .expect("latest");
    let page = c
        .get_records(stream, &latest, 100)
        .await
        .expect("GetRecords latest");
    assert!(page.records.is_empty());
    assert_eq!(page.millis_behind_latest, Some(0));

    split(shard.clone()).await;
    let it = c
        .get_shard_iterator(stream, &shard, &IteratorPosition::TrimHorizon)
        .await
        .expect("iterator");
    let (data, end) = read_all(c, stream, it).await;
    assert_eq!(data.len(), 7);
    let end = end.expect("reached the end");
    let kids: Vec<String> = c
        .list_shards(stream)
        .await
        .expect("ListShards")
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(&shard))
        .map(|s| s.shard_id)
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(
        end,
        format!("END:{}", kids.join(",")),
        "closed shard ends with its children"
    );
}

#[tokio::test]
async fn memory_read_side() {
    let m = MemoryStreams::new(1);
    m.create_stream("S", 1);
    let m2 = m.clone();
    conformance(&m, "S", move |shard| {
        let m2 = m2.clone();
        async move { m2.split_shard("S", &shard, 1u128 << 127).expect("split") }
    })
    .await;
}

#[tokio::test]
async fn memory_injects_read_faults() {
    let m = MemoryStreams::new(1);
    m.create_stream("S", 1);
    let shard = m.list_shards("S").await.expect("ListShards")[0]
        .shard_id
        .clone();
    let it = m
        .get_shard_iterator("S", &shard, &IteratorPosition::TrimHorizon)
        .await
        .expect("it");
    m.set_faults(Faults {
        expired_iterator_ratio: 1.0,
        ..Faults::default()
    });
    assert!(matches!(
        m.get_records("S", &it, 10).await,
        Err(StreamError::ExpiredIterator { .. })
    ));
    m.set_faults(Faults {
        read_throttle_ratio: 1.0,
        ..Faults::default()
    });
    let err = m.get_records("S", &it, 10).await.expect_err("throttled");
    assert!(matches!(err, StreamError::Throttled { .. }) && err.is_retryable());
}

async fn wait_active(sdk: &aws_sdk_kinesis::Client, stream: &str) {
    KinesisClient::new(sdk.clone())
        .wait_until_active(stream, Duration::from_secs(30))
        .await
        .expect("stream becomes ACTIVE");
}

#[tokio::test]
async fn kinesis_local_read_side() {
    let stack = LocalStack::require();
    let sdk = AwsClients::new(&stack.aws).await.kinesis();
    let stream = format!("chief-read-{}", uuid::Uuid::new_v4().simple());
    sdk.create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    wait_active(&sdk, &stream).await;
    let c = KinesisClient::new(sdk.clone());
    let (sdk2, stream2) = (sdk.clone(), stream.clone());
    conformance(&c, &stream, move |shard| {
        let (sdk, stream) = (sdk2.clone(), stream2.clone());
        async move {
            sdk.split_shard()
                .stream_name(&stream)
                .shard_to_split(shard)
                .new_starting_hash_key((1u128 << 127).to_string())
                .send()
                .await
                .expect("SplitShard");
            wait_active(&sdk, &stream).await;
        }
    })
    .await;
    let _ = sdk.delete_stream().stream_name(&stream).send().await;
}
