//! Every AWS client `AwsClients` makes counts each attempt of each call in `AwsCalls`
//! (service, operation), against the local stack (`make stack-up`).

use std::collections::BTreeMap;

use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::test]
async fn every_attempt_of_every_call_is_counted_by_service_and_operation() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let dynamodb = clients.dynamodb();
    dynamodb.list_tables().send().await.expect("ListTables");
    dynamodb.list_tables().send().await.expect("ListTables");
    // A call the service refuses is a call too.
    let missing = format!("chief-missing-{}", uuid::Uuid::new_v4().simple());
    assert!(dynamodb.scan().table_name(&missing).send().await.is_err());
    clients
        .s3()
        .list_buckets()
        .send()
        .await
        .expect("ListBuckets");
    let kinesis = clients.kinesis();
    assert!(
        kinesis
            .describe_stream_summary()
            .stream_name(&missing)
            .send()
            .await
            .is_err()
    );

    // `AwsCalls{service="DynamoDB",operation="Scan"} 1` lines of the Prometheus text.
    let text = handle.render();
    let mut calls: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("AwsCalls{")) {
        let (labels, value) = line.rsplit_once(' ').expect("name{labels} value");
        let label = |name: &str| {
            labels
                .split_once(&format!("{name}=\""))
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(v, _)| v.to_owned())
                .unwrap_or_default()
        };
        calls.insert(
            (label("service"), label("operation")),
            value.parse().expect("a count"),
        );
    }
    let expected: BTreeMap<(String, String), u64> = [
        (("DynamoDB", "ListTables"), 2),
        (("DynamoDB", "Scan"), 1),
        (("S3", "ListBuckets"), 1),
        (("Kinesis", "DescribeStreamSummary"), 1),
    ]
    .into_iter()
    .map(|((s, o), n)| ((s.to_owned(), o.to_owned()), n))
    .collect();
    assert_eq!(calls, expected, "{text}");
}
