//! Smoke tests of the real AWS SDK clients, built by `chief_config::aws`, against the
//! local stack (`make stack-up`). Each test uses unique resource names.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use aws_sdk_s3::primitives::ByteStream;
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn clients() -> AwsClients {
    let stack = LocalStack::require();
    AwsClients::new(&stack.aws).await
}

#[tokio::test]
async fn kinesis_create_stream_put_and_get_a_record() {
    let kinesis = clients().await.kinesis();
    let stream = unique("smoke");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    let mut active = false;
    for _ in 0..100 {
        let summary = kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .expect("DescribeStreamSummary");
        if summary
            .stream_description_summary()
            .is_some_and(|d| d.stream_status() == &StreamStatus::Active)
        {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(active, "stream {stream} never became ACTIVE");

    let payload = b"order-1\tpayload \x00\xff bytes".to_vec();
    let put = kinesis
        .put_record()
        .stream_name(&stream)
        .partition_key("order-1")
        .data(Blob::new(payload.clone()))
        .send()
        .await
        .expect("PutRecord");
    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 1);
    assert_eq!(put.shard_id(), shards.shards()[0].shard_id());

    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(put.shard_id())
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("an iterator");
    let got = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("GetRecords");
    assert_eq!(got.records().len(), 1);
    let record = &got.records()[0];
    assert_eq!(record.data().as_ref(), payload.as_slice());
    assert_eq!(record.partition_key(), Some("order-1"));
    assert_eq!(record.sequence_number(), put.sequence_number());

    kinesis
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .expect("DeleteStream");
}

#[tokio::test]
async fn dynamodb_create_table_and_conditional_put() {
    let ddb = clients().await.dynamodb();
    let table = unique("SmokeLeases");
    ddb.create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");

    let put = |owner: &'static str| {
        ddb.put_item()
            .table_name(&table)
            .item("leaseKey", AttributeValue::S("shardId-000000000000".into()))
            .item("leaseOwner", AttributeValue::S(owner.into()))
            .item("leaseCounter", AttributeValue::N("1".into()))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
    };
    put("worker-a").await.expect("first conditional put wins");
    let err = put("worker-b")
        .await
        .expect_err("second conditional put must lose");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_conditional_check_failed_exception()),
        "expected ConditionalCheckFailedException, got {err:?}"
    );
    let item = ddb
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .expect("the item");
    assert_eq!(
        item.get("leaseOwner"),
        Some(&AttributeValue::S("worker-a".into()))
    );
    ddb.delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("DeleteTable");
}

#[tokio::test]
async fn s3_put_list_and_get_an_object() {
    let s3 = clients().await.s3();
    let bucket = unique("chief-smoke");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    let body = b"abc\tdef\n\\N\n".to_vec();
    let key = "ChiefOrderS3/2026/11/23/21/shardId-000000000000-1";
    s3.put_object()
        .bucket(&bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("PutObject");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("ChiefOrderS3/2026/11/23/")
        .send()
        .await
        .expect("ListObjectsV2");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec![key]);
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("GetObject")
        .body
        .collect()
        .await
        .expect("object body")
        .into_bytes();
    assert_eq!(got.as_ref(), body.as_slice());
    s3.delete_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .expect("DeleteObject");
    s3.delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("DeleteBucket");
}

/// Who the clients of `aws` act as (STS GetCallerIdentity with their credentials).
async fn caller(aws: &chief_config::aws::AwsConfig) -> String {
    let clients = AwsClients::new(aws).await;
    let mut config = aws_sdk_sts::config::Builder::from(clients.sdk_config());
    if let Some(url) = &aws.sts.endpoint {
        config = config.endpoint_url(url);
    }
    aws_sdk_sts::Client::from_conf(config.build())
        .get_caller_identity()
        .send()
        .await
        .expect("GetCallerIdentity")
        .arn()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn role_arn_makes_every_client_act_as_the_assumed_role() {
    let mut aws = LocalStack::require().aws;
    assert!(
        aws.sts.endpoint.is_some(),
        "config/local.toml has no [aws.sts] endpoint"
    );
    let base = caller(&aws).await;
    assert!(
        !base.contains(":assumed-role/"),
        "the base credentials: {base}"
    );
    let role = unique("chief-order-es-s3");
    aws.role_arn = Some(format!("arn:aws:iam::123456789012:role/{role}"));
    aws.role_session_name = Some("chief-test-session".to_owned());
    let assumed = caller(&aws).await;
    assert_eq!(
        assumed,
        format!("arn:aws:sts::123456789012:assumed-role/{role}/chief-test-session")
    );
    // The service clients sign with the role's temporary credentials too.
    let clients = AwsClients::new(&aws).await;
    use aws_credential_types::provider::ProvideCredentials;
    let credentials = clients
        .sdk_config()
        .credentials_provider()
        .expect("a provider")
        .provide_credentials()
        .await
        .expect("assumed credentials");
    assert!(
        credentials.session_token().is_some(),
        "temporary credentials"
    );
    assert_ne!(credentials.access_key_id(), "chief-local");
    clients
        .s3()
        .list_buckets()
        .send()
        .await
        .expect("S3 as the role");
}
