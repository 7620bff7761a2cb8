//! An alert published to SNS on the local stack (`make stack-up`: moto's SNS and SQS): the
//! topic's SQS subscriber receives it once, with the alert's subject and the window's
//! report in the message.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chief_analytics::aggregate::Acc;
use chief_analytics::alert::{AlertConfig, AlertMessage, AlertSender, AwsAlertSender, SnsConfig};
use chief_analytics::{App, Window, merge};
use chief_config::aws::AwsClients;
use chief_config::local_stack::LocalStack;
use support::create_queue;

#[tokio::test]
async fn an_sns_alert_reaches_the_topics_subscriber_with_its_report() {
    let stack = LocalStack::require();
    let clients = AwsClients::new(&stack.aws).await;
    let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut sns = aws_sdk_sns::config::Builder::from(clients.sdk_config());
    if let Some(url) = &stack.aws.sns.endpoint {
        sns = sns.endpoint_url(url);
    }
    let sns = aws_sdk_sns::Client::from_conf(sns.build());
    let mut ses = aws_sdk_sesv2::config::Builder::from(clients.sdk_config());
    if let Some(url) = &stack.aws.ses.endpoint {
        ses = ses.endpoint_url(url);
    }
    let ses = aws_sdk_sesv2::Client::from_conf(ses.build());
    let topic = sns
        .create_topic()
        .name(format!("chief-alerts-{id}"))
        .send()
        .await
        .expect("CreateTopic")
        .topic_arn()
        .expect("topic ARN")
        .to_owned();
    let sqs = clients.sqs();
    let (queue, arn) = create_queue(&sqs, &format!("chief-alerts-{id}")).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&arn)
        .send()
        .await
        .expect("Subscribe");

    let app = App::from_toml(
        "name = \"levels\"\ngroup_by = [\"level\"]\n[parse]\nformat = \"json\"\n[window]\nsize_s = 60\n[[aggregate]]\nname = \"count\"\nfn = \"count\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let window = Window {
        start_ms: 1_767_225_600_000,
        end_ms: 1_767_225_660_000,
    };
    let partial = chief_analytics::Partial {
        shard: "shardId-000000000000".into(),
        window,
        records: 5,
        rows: BTreeMap::from([
            ("ERROR".to_owned(), vec![Acc::Count(3)]),
            ("INFO".to_owned(), vec![Acc::Count(2)]),
        ]),
    };
    let result = merge(&app, window, [&partial]);
    let alert = AlertConfig {
        name: "errors".into(),
        when: "ERROR > 1".into(),
        email: None,
        sns: Some(SnsConfig { topic_arn: topic }),
    };
    alert.validate().unwrap_or_else(|e| panic!("{e}"));
    let message = AlertMessage::new(&app, &alert, &result, 3.0);
    AwsAlertSender::new(ses, sns)
        .send(&alert, &message)
        .await
        .expect("published");

    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("ReceiveMessage");
        if let Some(m) = out.messages().first() {
            break m.body().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no SNS message in the queue after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // SNS → SQS wraps the message in a notification.
    let notification: serde_json::Value = serde_json::from_str(&body).expect("a notification");
    assert_eq!(
        notification["Subject"].as_str(),
        Some(message.subject.as_str()),
        "{body}"
    );
    let text = notification["Message"].as_str().unwrap_or_default();
    assert!(text.contains("ERROR = 3"), "{text}");
    let (s, e) = (window.start_text(), window.end_text());
    assert!(
        text.contains(&format!("{s},{e},ERROR,3\n{s},{e},INFO,2")),
        "{text}"
    );
}
