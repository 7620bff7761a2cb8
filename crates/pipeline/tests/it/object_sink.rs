//! One conformance suite for every `ObjectSink`: the in-memory one, and S3 on the local
//! stack (moto, `make stack-up`; a fresh bucket per test). Plus one archive batch written
//! end to end to S3 and read back through `LOAD DATA`'s escaping.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use chief_pipeline::archive::{
    ArchiveConfig, ArchiveRecord, Disposition, RecordPosition, RowKind, ShardArchiver,
};
use chief_pipeline::object_sink::{
    MemoryObjectSink, ObjectMeta, ObjectSink, ObjectSinkError, S3ObjectSink,
};
use chief_pipeline::tsv;
use chrono::{TimeZone, Utc};

/// The fields of a valid order (the record contract) after its `orderid`.
const ORDER_FIELDS: &str = r#""user":{"userid":"u","name":"n"},"factoryid":"f","items":[],"timestamp":"2017-10-18T16:00:00Z""#;

/// What every implementation must do.
async fn conformance(sink: &impl ObjectSink) {
    // Empty store.
    assert_eq!(
        sink.list("").await.expect("list empty"),
        Vec::<ObjectMeta>::new()
    );
    let missing = sink.get("a/missing").await.expect_err("missing object");
    assert!(
        matches!(missing, ObjectSinkError::NotFound { ref key, .. } if key == "a/missing"),
        "{missing}"
    );
    assert!(!missing.is_retryable());

    // Bytes come back exactly, with their content type.
    let hostile = Bytes::from_static(b"tab\there\nnul\0 \\N \xff\xfe emoji \xf0\x9f\xa6\x80");
    sink.put("a/2017/10/18/16/one", hostile.clone(), tsv::CONTENT_TYPE)
        .await
        .expect("put");
    let object = sink.get("a/2017/10/18/16/one").await.expect("get");
    assert_eq!(object.body, hostile);
    assert_eq!(object.content_type.as_deref(), Some(tsv::CONTENT_TYPE));

    // Empty objects exist too.
    sink.put("a/2017/10/18/16/empty", Bytes::new(), "application/json")
        .await
        .expect("put empty");
    assert_eq!(
        sink.get("a/2017/10/18/16/empty")
            .await
            .expect("get empty")
            .body,
        Bytes::new()
    );

    // Overwrite replaces.
    sink.put("b/x", Bytes::from_static(b"first"), "text/plain")
        .await
        .expect("put");
    sink.put("b/x", Bytes::from_static(b"second!"), "text/plain")
        .await
        .expect("overwrite");
    assert_eq!(
        sink.get("b/x").await.expect("get").body,
        Bytes::from_static(b"second!")
    );

    // Listing: by prefix, in key order, with sizes.
    sink.put(
        "a/2017/10/18/17/two",
        Bytes::from_static(b"12345"),
        "text/plain",
    )
    .await
    .expect("put");
    sink.put("ab", Bytes::from_static(b"1"), "text/plain")
        .await
        .expect("put");
    let listed = |prefix: &'static str| async move {
        sink.list(prefix)
            .await
            .expect("list")
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed("a/").await,
        vec![
            ("a/2017/10/18/16/empty".to_owned(), 0),
            ("a/2017/10/18/16/one".to_owned(), hostile.len() as u64),
            ("a/2017/10/18/17/two".to_owned(), 5),
        ]
    );
    assert_eq!(listed("a/2017/10/18/17/").await.len(), 1);
    assert_eq!(listed("a").await.len(), 4);
    assert_eq!(listed("").await.len(), 5);
    assert_eq!(listed("c/").await.len(), 0);

    // More than one page of a listing (S3 pages at 1,000 keys).
    for n in 0..1_005 {
        sink.put(&format!("many/{n:05}"), Bytes::new(), "text/plain")
            .await
            .expect("put many");
    }
    let many = listed("many/").await;
    assert_eq!(many.len(), 1_005);
    assert_eq!(many[0].0, "many/00000");
    assert_eq!(many[1_004].0, "many/01004");
}

async fn s3_sink() -> S3ObjectSink {
    let stack = LocalStack::require();
    let client = AwsClients::new(&stack.aws).await.s3();
    let bucket = format!("chief-test-{}", uuid::Uuid::new_v4().simple());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    S3ObjectSink::new(client, bucket)
}

#[tokio::test]
async fn memory_sink_conforms() {
    conformance(&MemoryObjectSink::new()).await;
}

#[tokio::test]
async fn s3_sink_conforms() {
    conformance(&s3_sink().await).await;
}

#[tokio::test]
async fn s3_errors_say_whether_to_retry() {
    let sink = s3_sink().await;
    let gone = S3ObjectSink::new(
        AwsClients::new(&LocalStack::require().aws).await.s3(),
        format!("{}-absent", sink.bucket()),
    );
    let err = gone
        .put("k", Bytes::from_static(b"x"), "text/plain")
        .await
        .expect_err("no such bucket");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains("PutObject of `k`"), "{err}");
}

#[tokio::test]
async fn an_archive_batch_lands_in_s3_and_reads_back_through_load_data_escaping() {
    let sink = Arc::new(s3_sink().await);
    let config = ArchiveConfig {
        bucket: sink.bucket().to_owned(),
        prefix: "ChiefOrderS3".into(),
        ..ArchiveConfig::default()
    };
    config.validate().expect("valid config");
    let mut archiver = ShardArchiver::new(
        Arc::clone(&sink),
        Arc::new(config),
        RowKind::Orders,
        "chief-order-factory-s3",
        "shardId-000000000000",
    );
    let records: Vec<Vec<u8>> = vec![
        format!(r#"{{"orderid":"o-1",{ORDER_FIELDS},"note":"plain"}}"#).into_bytes(),
        format!("{{\"orderid\":\"o-2\",{ORDER_FIELDS},\"note\":\"tab\\t nl\\n bs\\\\ \\\\N 🦀\"}}")
            .into_bytes(),
        b"not json".to_vec(),
    ];
    let arrival = Utc
        .with_ymd_and_hms(2017, 10, 18, 16, 30, 0)
        .single()
        .expect("time");
    let now = Instant::now();
    let mut dispositions = Vec::new();
    for (n, data) in records.iter().enumerate() {
        let position = RecordPosition {
            sequence_number: format!("4959000000000000000000000{n}"),
            sub_sequence_number: 0,
        };
        let processed = archiver
            .process(
                ArchiveRecord {
                    data,
                    position: &position,
                    arrival,
                },
                None,
                now,
            )
            .await
            .expect("process");
        dispositions.push(processed.disposition);
    }
    assert_eq!(
        dispositions,
        vec![
            Disposition::Buffered,
            Disposition::Buffered,
            Disposition::DeadLettered
        ]
    );
    let durable = archiver.flush().await.expect("flush");
    assert_eq!(
        durable.map(|p| p.sequence_number),
        Some("49590000000000000000000002".to_owned())
    );

    let key = "ChiefOrderS3/2017/10/18/16/shardId-000000000000-49590000000000000000000000";
    let keys: Vec<String> = sink
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        vec![
            key.to_owned(),
            "errors/chief-order-factory-s3/2017/10/18/16/shardId-000000000000-49590000000000000000000002-0"
                .to_owned(),
        ]
    );
    let body = sink.get(key).await.expect("batch").body;
    let mut expected = Vec::new();
    tsv::write_order_row(&mut expected, &"o-1".parse().expect("id"), &records[0]);
    tsv::write_order_row(&mut expected, &"o-2".parse().expect("id"), &records[1]);
    assert_eq!(body.to_vec(), expected);
    // The JSON's own backslashes are doubled; raw tabs/newlines never appear in a field.
    let second = String::from_utf8(body.to_vec()).expect("utf-8");
    let second = second.lines().nth(1).expect("second line");
    assert_eq!(
        second,
        format!(
            "o-2\t{{\"orderid\":\"o-2\",{ORDER_FIELDS},\"note\":\"tab\\\\t nl\\\\n bs\\\\\\\\ \\\\\\\\N 🦀\"}}"
        )
    );
}
