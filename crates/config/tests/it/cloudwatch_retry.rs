//! The CloudWatch exporter's requests, served by a scripted HTTP endpoint on 127.0.0.1:0
//! (no local stack needed; moto takes about a minute for one PutMetricData of 1,000
//! metrics, so the request-size test is here): a failed PutMetricData loses nothing (the
//! counters' increases and the histograms' values go with the next publish), and more
//! metrics than one request holds go in several.

use std::sync::{Arc, Mutex};

use chief_config::aws::{AwsClients, AwsConfig, ServiceConfig, StaticCredentials};
use chief_config::cloudwatch::{
    CloudWatchConfig, CloudWatchError, CloudWatchExporter, CloudWatchRecorder,
};
use metrics::{counter, histogram};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OK: &str = "<PutMetricDataResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
<ResponseMetadata><RequestId>ok</RequestId></ResponseMetadata></PutMetricDataResponse>";
const FAIL: &str = "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\">\
<Error><Type>Receiver</Type><Code>InternalServiceError</Code><Message>scripted failure</Message>\
</Error><RequestId>fail</RequestId></ErrorResponse>";

/// A request as the endpoint saw it: its head (lower-cased) and body.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Answers each request with the next status of `script` (then 200), keeping the requests.
async fn scripted(script: Vec<u16>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let status = script.next().unwrap_or(200);
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let body_start = loop {
                    let n = sock.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed before the request ended");
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("content-length");
                while buf.len() < body_start + len {
                    let n = sock.read(&mut chunk).await.expect("read");
                    assert!(n > 0, "connection closed before the body ended");
                    buf.extend_from_slice(&chunk[..n]);
                }
                seen.lock()
                    .expect("lock")
                    .push((head, buf[body_start..body_start + len].to_vec()));
                let (reason, body) = if status == 200 {
                    ("OK", OK)
                } else {
                    ("Internal Server Error", FAIL)
                };
                let response = format!(
                    "HTTP/1.1 {status} {reason}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, bodies)
}

async fn client(url: &str) -> aws_sdk_cloudwatch::Client {
    let config = AwsConfig {
        static_credentials: Some(StaticCredentials {
            access_key_id: "chief-test".into(),
            secret_access_key: chief_config::secret::Secret::new("chief-test"),
        }),
        max_attempts: 1,
        cloudwatch: ServiceConfig {
            endpoint: Some(url.to_owned()),
        },
        ..AwsConfig::default()
    };
    AwsClients::new(&config).await.cloudwatch()
}

/// The form fields of a query-protocol body, decoded.
fn fields(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).expect("utf8")
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn a_failed_put_is_sent_with_the_next_publish() {
    let (url, bodies) = scripted(vec![500]).await;
    let recorder = CloudWatchRecorder::new();
    let config = CloudWatchConfig {
        namespace: "chief-test".into(),
        interval_ms: 60_000,
    };
    let mut exporter =
        CloudWatchExporter::new(client(&url).await, &config, recorder.clone()).expect("exporter");

    metrics::with_local_recorder(&recorder, || {
        counter!("UserRecordsPut", "stream" => "OrdersStream").increment(5);
        histogram!("RequestTime", "stream" => "OrdersStream").record(10.0);
    });
    let err = exporter.publish().await.expect_err("scripted 500");
    assert!(
        matches!(err, CloudWatchError::Put { datums: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chief-test"), "{err}");

    metrics::with_local_recorder(&recorder, || {
        counter!("UserRecordsPut", "stream" => "OrdersStream").increment(2);
        histogram!("RequestTime", "stream" => "OrdersStream").record(30.0);
    });
    assert_eq!(exporter.publish().await.expect("second publish"), 2);
    // Nothing new: nothing sent, no request.
    assert_eq!(exporter.publish().await.expect("third publish"), 0);

    let requests = bodies.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2);
    let second = fields(&String::from_utf8_lossy(&requests[1].1));
    assert_eq!(field(&second, "Action"), Some("PutMetricData"));
    assert_eq!(field(&second, "Namespace"), Some("chief-test"));
    // Find each metric's member index, then its values.
    let member = |name: &str| {
        second
            .iter()
            .find(|(k, v)| k.ends_with(".MetricName") && v == name)
            .map(|(k, _)| k.trim_end_matches("MetricName").to_owned())
            .unwrap_or_else(|| panic!("{name} not in {second:?}"))
    };
    let put = member("UserRecordsPut");
    assert_eq!(
        field(&second, &format!("{put}Value")).map(|v| v.parse::<f64>().expect("number")),
        Some(7.0),
        "the failed increase (5) and the new one (2)"
    );
    assert_eq!(field(&second, &format!("{put}Unit")), Some("Count"));
    assert_eq!(
        field(&second, &format!("{put}Dimensions.member.1.Name")),
        Some("StreamName")
    );
    let time = member("RequestTime");
    let stat = |s: &str| {
        field(&second, &format!("{time}StatisticValues.{s}"))
            .map(|v| v.parse::<f64>().expect("number"))
    };
    assert_eq!(stat("SampleCount"), Some(2.0));
    assert_eq!(stat("Sum"), Some(40.0));
    assert_eq!(stat("Minimum"), Some(10.0));
    assert_eq!(stat("Maximum"), Some(30.0));
}

#[tokio::test]
async fn more_metrics_than_one_request_holds_go_in_several_requests() {
    let (url, seen) = scripted(Vec::new()).await;
    let recorder = CloudWatchRecorder::new();
    let config = CloudWatchConfig {
        namespace: "chief-test".into(),
        interval_ms: 60_000,
    };
    let mut exporter =
        CloudWatchExporter::new(client(&url).await, &config, recorder.clone()).expect("exporter");
    metrics::with_local_recorder(&recorder, || {
        for i in 0..1_001 {
            counter!("ErrorsByCode", "stream" => "OrdersStream", "code" => format!("Code{i:04}"))
                .increment(1);
        }
    });
    assert_eq!(exporter.publish().await.expect("publish"), 1_001);
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 2, "1,000 + 1");
    // The full request is over the SDK's 10 KiB threshold: sent gzip-compressed.
    let (big_head, _) = &requests[0];
    assert!(big_head.contains("content-encoding: gzip"), "{big_head}");
    let small = fields(&String::from_utf8_lossy(&requests[1].1));
    let members = small
        .iter()
        .filter(|(k, _)| k.ends_with(".MetricName"))
        .count();
    assert_eq!(members, 1, "{small:?}");
    assert_eq!(exporter.publish().await.expect("nothing new"), 0);
}
