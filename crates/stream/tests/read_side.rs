//! The read side (GetShardIterator, GetRecords) of both `StreamClient`s, with the same
//! expectations: positions, paging, the end of a closed shard with its children.
//! The Kinesis half runs on the local stack (`make stack-up`).

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_stream::{
    Faults, IteratorPosition, KinesisClient, MemoryStreams, PutEntry, StreamClient, StreamError,
    Subscription,
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

/// A new one-shard stream `<prefix>-<uuid>` on the local stack, ACTIVE.
async fn local_stream(prefix: &str) -> (aws_sdk_kinesis::Client, String) {
    let stack = LocalStack::require();
    let sdk = AwsClients::new(&stack.aws).await.kinesis();
    let stream = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    sdk.create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    wait_active(&sdk, &stream).await;
    (sdk, stream)
}

#[tokio::test]
async fn kinesis_local_read_side() {
    let (sdk, stream) = local_stream("chief-read").await;
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

/// Reads `subscription` until it has delivered `n` records (or 30 s pass); returns their
/// data and the last continuation sequence number.
async fn receive(subscription: &mut Subscription, n: usize) -> (Vec<String>, Option<String>) {
    let mut out = Vec::new();
    let mut continuation = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while out.len() < n {
        let event = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} records in 30 s: {out:?}", out.len()))
            .expect("the subscription is open")
            .expect("an event");
        out.extend(
            event
                .records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.data).into_owned()),
        );
        continuation = event.continuation_sequence_number;
    }
    (out, continuation)
}

/// Enhanced fan-out, same expectations on both clients: a registered consumer (registering
/// again finds it), a subscription pushing what was there and what arrives later, in order,
/// one subscription per consumer and shard at a time, a new subscription after the last
/// continuation sequence number getting only what came after.
async fn subscription_conformance<C: StreamClient>(c: &C, stream: &str) {
    let arn = c
        .register_consumer(stream, "chief-test")
        .await
        .expect("register");
    assert_eq!(
        c.register_consumer(stream, "chief-test")
            .await
            .expect("again"),
        arn,
        "registering an existing consumer finds it"
    );
    let shard = c.list_shards(stream).await.expect("ListShards")[0]
        .shard_id
        .clone();
    c.put_records(stream, entries(0, 3)).await.expect("put");
    let mut sub = c
        .subscribe_to_shard(stream, &arn, &shard, &IteratorPosition::TrimHorizon)
        .await
        .expect("SubscribeToShard");
    let (first, _) = receive(&mut sub, 3).await;
    assert_eq!(first, ["record-0", "record-1", "record-2"]);
    c.put_records(stream, entries(3, 2)).await.expect("put");
    let (later, continuation) = receive(&mut sub, 2).await;
    assert_eq!(later, ["record-3", "record-4"]);
    let continuation = continuation.expect("an open shard has a continuation");

    // One subscription per consumer and shard: a second one is refused while the first
    // is open (at once, or as the subscription's first event).
    let second = c
        .subscribe_to_shard(stream, &arn, &shard, &IteratorPosition::TrimHorizon)
        .await;
    match second {
        Err(e) => assert_eq!(e.code(), "ResourceInUseException", "{e}"),
        Ok(mut s) => {
            let refused = tokio::time::timeout(Duration::from_secs(10), s.next())
                .await
                .expect("an answer within 10 s");
            let Some(Err(e)) = refused else {
                panic!("a second subscription was accepted: {refused:?}")
            };
            assert_eq!(e.code(), "ResourceInUseException", "{e}");
        }
    }
    drop(sub);

    c.put_records(stream, entries(5, 1)).await.expect("put");
    let position = IteratorPosition::AfterSequenceNumber(continuation);
    // The emulator frees the first subscription's slot a moment after its connection
    // closes: until then a new one is refused (at once or as its first event).
    let mut after = Vec::new();
    for _ in 0..50 {
        let Ok(mut sub) = c.subscribe_to_shard(stream, &arn, &shard, &position).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Some(Ok(event))) => {
                after.extend(
                    event
                        .records
                        .iter()
                        .map(|r| String::from_utf8_lossy(&r.data).into_owned()),
                );
                if after.is_empty() {
                    after = receive(&mut sub, 1).await.0;
                }
                break;
            }
            Ok(Some(Err(e))) if e.code() == "ResourceInUseException" => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => panic!("subscription after the continuation: {other:?}"),
        }
    }
    assert_eq!(after, ["record-5"], "only what came after the continuation");
}

#[tokio::test]
async fn memory_subscriptions() {
    let m = MemoryStreams::new(1);
    m.create_stream("S", 1);
    subscription_conformance(&m, "S").await;
}

#[tokio::test]
async fn kinesis_local_subscriptions() {
    let (sdk, stream) = local_stream("chief-subscribe").await;
    subscription_conformance(&KinesisClient::new(sdk.clone()), &stream).await;
    let _ = sdk.delete_stream().stream_name(&stream).send().await;
}
