//! The CloudWatch metrics exporter against moto's CloudWatch on the local stack
//! (`make stack-up`): what `PutMetricData` sent is read back with `ListMetrics` and
//! `GetMetricData`. Each test publishes to its own namespace and stream name (moto's
//! GetMetricData ignores the namespace of a query that has dimensions).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit};
use chief_config::aws::AwsClients;
use chief_config::cloudwatch::{CloudWatchConfig, CloudWatchExporter, CloudWatchRecorder};
use chief_config::local_stack::LocalStack;
use metrics::{Unit, counter, describe_histogram, gauge, histogram};

fn namespace(test: &str) -> String {
    format!("chief-test/{test}-{}", uuid::Uuid::new_v4().simple())
}

fn stream_name() -> String {
    format!("OrdersStream-{}", uuid::Uuid::new_v4().simple())
}

async fn client() -> aws_sdk_cloudwatch::Client {
    let stack = LocalStack::require();
    assert!(
        stack.aws.cloudwatch.endpoint.is_some(),
        "config/local.toml has no [aws.cloudwatch] endpoint"
    );
    AwsClients::new(&stack.aws).await.cloudwatch()
}

fn exporter(
    client: aws_sdk_cloudwatch::Client,
    ns: &str,
) -> (CloudWatchRecorder, CloudWatchExporter) {
    let recorder = CloudWatchRecorder::new();
    let config = CloudWatchConfig {
        namespace: ns.to_owned(),
        interval_ms: 60_000,
    };
    let exporter = CloudWatchExporter::new(client, &config, recorder.clone()).expect("exporter");
    (recorder, exporter)
}

fn dim(name: &str, value: &str) -> Dimension {
    Dimension::builder().name(name).value(value).build()
}

/// One statistic of one metric over the last and next half hour, summed over the periods
/// GetMetricData returns (None: no data point).
async fn stat(
    client: &aws_sdk_cloudwatch::Client,
    ns: &str,
    name: &str,
    dims: &[Dimension],
    stat: &str,
) -> Option<f64> {
    let now = SystemTime::now();
    let out = client
        .get_metric_data()
        .start_time(DateTime::from(now - Duration::from_secs(1800)))
        .end_time(DateTime::from(now + Duration::from_secs(1800)))
        .metric_data_queries(
            MetricDataQuery::builder()
                .id("q")
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(ns)
                                .metric_name(name)
                                .set_dimensions(Some(dims.to_vec()))
                                .build(),
                        )
                        .period(3600)
                        .stat(stat)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("GetMetricData");
    let values: Vec<f64> = out
        .metric_data_results()
        .iter()
        .flat_map(|r| r.values().iter().copied())
        .collect();
    match stat {
        "Maximum" => values.into_iter().reduce(f64::max),
        "Minimum" => values.into_iter().reduce(f64::min),
        _ => values.into_iter().reduce(|a, b| a + b),
    }
}

/// Every metric of the namespace: name → sorted (dimension name, value) pairs.
async fn list(
    client: &aws_sdk_cloudwatch::Client,
    ns: &str,
) -> BTreeMap<String, Vec<Vec<(String, String)>>> {
    let mut pages = client.list_metrics().namespace(ns).into_paginator().send();
    let mut metrics: BTreeMap<String, Vec<Vec<(String, String)>>> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        for m in page.expect("ListMetrics").metrics() {
            let mut dims: Vec<(String, String)> = m
                .dimensions()
                .iter()
                .map(|d| {
                    (
                        d.name().unwrap_or_default().to_owned(),
                        d.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            dims.sort();
            let entry = metrics
                .entry(m.metric_name().unwrap_or_default().to_owned())
                .or_default();
            // moto lists a metric once per data point of some dimension sets; CloudWatch
            // lists each metric once.
            if !entry.contains(&dims) {
                entry.push(dims);
            }
        }
    }
    metrics
}

#[tokio::test]
async fn counters_gauges_and_histograms_arrive_with_kpl_dimensions() {
    let client = client().await;
    let ns = namespace("kinds");
    let s = stream_name();
    let (recorder, mut exporter) = exporter(client.clone(), &ns);

    metrics::with_local_recorder(&recorder, || {
        describe_histogram!("RequestTime", Unit::Milliseconds, "PutRecords latency");
        counter!("UserRecordsPut", "stream" => s.clone()).increment(5);
        counter!("DeadLetters", "executor" => "chief-order-es-s3").increment(0);
        gauge!("MillisBehindLatest", "stream" => s.clone(), "shard_id" => "shardId-000000000001")
            .set(1234.0);
        let h = histogram!("RequestTime", "stream" => s.clone());
        h.record(10.0);
        h.record(30.0);
        h.record(f64::NAN); // skipped: CloudWatch refuses non-finite values
    });
    // The counter that never moved is not sent: UserRecordsPut, the gauge, the histogram.
    assert_eq!(exporter.publish().await.expect("publish 1"), 3);

    metrics::with_local_recorder(&recorder, || {
        counter!("UserRecordsPut", "stream" => s.clone()).increment(2);
        gauge!("MillisBehindLatest", "stream" => s.clone(), "shard_id" => "shardId-000000000001")
            .set(10.0);
    });
    // The counter's increase (2) and the gauge; the histogram has no new values.
    assert_eq!(exporter.publish().await.expect("publish 2"), 2);
    // Nothing moved: only the gauge, again.
    assert_eq!(exporter.publish().await.expect("publish 3"), 1);

    let metrics = list(&client, &ns).await;
    let stream = vec![("StreamName".to_owned(), s.clone())];
    let shard = vec![
        ("ShardId".to_owned(), "shardId-000000000001".to_owned()),
        ("StreamName".to_owned(), s.clone()),
    ];
    assert_eq!(
        metrics,
        BTreeMap::from([
            ("MillisBehindLatest".to_owned(), vec![shard]),
            ("RequestTime".to_owned(), vec![stream.clone()]),
            ("UserRecordsPut".to_owned(), vec![stream]),
        ])
    );

    let on_stream = [dim("StreamName", &s)];
    let on_shard = [
        dim("StreamName", &s),
        dim("ShardId", "shardId-000000000001"),
    ];
    // Counter: the increases add up to the total (5 + 2), as a KPL Sum statistic would.
    assert_eq!(
        stat(&client, &ns, "UserRecordsPut", &on_stream, "Sum").await,
        Some(7.0)
    );
    assert_eq!(
        stat(&client, &ns, "UserRecordsPut", &on_stream, "SampleCount").await,
        Some(2.0)
    );
    // Gauge: one data point per publish (1234, 10, 10).
    assert_eq!(
        stat(&client, &ns, "MillisBehindLatest", &on_shard, "Maximum").await,
        Some(1234.0)
    );
    assert_eq!(
        stat(&client, &ns, "MillisBehindLatest", &on_shard, "SampleCount").await,
        Some(3.0)
    );
    // Histogram: one statistic set of the two finite values.
    for (s, want) in [
        ("SampleCount", 2.0),
        ("Sum", 40.0),
        ("Minimum", 10.0),
        ("Maximum", 30.0),
    ] {
        assert_eq!(
            stat(&client, &ns, "RequestTime", &on_stream, s).await,
            Some(want),
            "RequestTime {s}"
        );
    }
}

#[tokio::test]
async fn units_from_describe_reach_cloudwatch() {
    let client = client().await;
    let ns = namespace("units");
    let s = stream_name();
    let (recorder, mut exporter) = exporter(client.clone(), &ns);
    metrics::with_local_recorder(&recorder, || {
        describe_histogram!("BufferingTime", Unit::Milliseconds, "time buffered");
        histogram!("BufferingTime", "stream" => s.clone()).record(100.0);
        counter!("UserRecordsPut", "stream" => s.clone()).increment(1);
    });
    assert_eq!(exporter.publish().await.expect("publish"), 2);
    let by_unit = |unit: StandardUnit, name: &'static str| {
        let client = client.clone();
        let ns = ns.clone();
        let s = s.clone();
        async move {
            let now = SystemTime::now();
            let out = client
                .get_metric_statistics()
                .namespace(&ns)
                .metric_name(name)
                .dimensions(dim("StreamName", &s))
                .start_time(DateTime::from(now - Duration::from_secs(1800)))
                .end_time(DateTime::from(now + Duration::from_secs(1800)))
                .period(3600)
                .statistics(aws_sdk_cloudwatch::types::Statistic::SampleCount)
                .unit(unit)
                .send()
                .await
                .expect("GetMetricStatistics");
            out.datapoints()
                .iter()
                .filter_map(|d| d.sample_count())
                .sum::<f64>()
        }
    };
    assert_eq!(
        by_unit(StandardUnit::Milliseconds, "BufferingTime").await,
        1.0
    );
    assert_eq!(by_unit(StandardUnit::Count, "UserRecordsPut").await, 1.0);
    assert_eq!(by_unit(StandardUnit::Seconds, "BufferingTime").await, 0.0);
}
