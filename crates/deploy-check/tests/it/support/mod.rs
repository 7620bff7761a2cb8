//! What the deploy tests share: the template with its placeholders filled in, each
//! binary's effective settings on its instance (config file + the `CHIEF__` settings the
//! user data and the systemd unit give it), the AWS resources those settings make it use,
//! and the built binaries.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chief_deploy_check::operations::{self, SdkOperation};
use chief_deploy_check::policy::{Policy, Request};
use chief_deploy_check::template;
use chief_deploy_check::userdata;
use chief_deploy_check::workspace_root;
use chief_executors::{Executor, ExecutorConfig};
use chief_firehose::FirehoseConfig;
use chief_loader::LoaderConfig;
use chief_pipeline::archive::{RecordPosition, batch_key, dead_letter_key};
use serde_json::Value;

/// The programs that run on the stack's instances, each with its own policy
/// `deploy/aws/iam/<program>.json`: a binary, or a delivery of `chief-firehose`
/// (`chief-firehose-<delivery>`, the unit instance `chief-firehose@<delivery>` with
/// `config/firehose-<delivery>.toml`).
pub fn binaries() -> Vec<&'static str> {
    let mut out = vec!["chief-producer"];
    out.extend(Executor::ALL.iter().map(|e| e.name()));
    out.push("chief-loader");
    out.extend(DELIVERIES.iter().map(|(program, _)| *program));
    out.push("chief-agent");
    out.push("chief-dashboard");
    out.extend(ANALYTICS.iter().map(|(program, _)| *program));
    out.push("chief-s3-ingest");
    out
}

/// The stack's analytics applications: (program, application), each an instance
/// `chief-analytics@<application>` of `chief-analytics` with `config/analytics-<app>.toml`.
pub const ANALYTICS: [(&str, &str); 2] = [
    ("chief-analytics-status", "status"),
    ("chief-analytics-levels", "levels"),
];

/// The analytics application a program is, if it is one.
pub fn analytics_of(program: &str) -> Option<&'static str> {
    ANALYTICS
        .iter()
        .find(|(p, _)| *p == program)
        .map(|(_, a)| *a)
}

/// The stack's Firehose-style deliveries: (program, delivery).
pub const DELIVERIES: [(&str, &str); 1] = [("chief-firehose-taxi", "taxi")];

/// The delivery a program is, if it is one.
pub fn delivery_of(program: &str) -> Option<&'static str> {
    DELIVERIES
        .iter()
        .find(|(p, _)| *p == program)
        .map(|(_, d)| *d)
}

/// The binary file a program runs.
pub fn binary_file(program: &str) -> &str {
    if delivery_of(program).is_some() {
        "chief-firehose"
    } else if analytics_of(program).is_some() {
        "chief-analytics"
    } else {
        program
    }
}

/// The unit file of a program (`deploy/systemd/…`) and the unit it runs as.
pub fn unit_of(program: &str) -> (String, String) {
    if let Some(delivery) = delivery_of(program) {
        return (
            "chief-firehose@.service".to_owned(),
            format!("chief-firehose@{delivery}"),
        );
    }
    match analytics_of(program) {
        Some(app) => (
            "chief-analytics@.service".to_owned(),
            format!("chief-analytics@{app}"),
        ),
        None => (format!("{program}.service"), program.to_owned()),
    }
}

/// The value the tests give a `Fn::Sub` placeholder (stands for what CloudFormation would
/// put there).
pub fn value_of(placeholder: &str) -> String {
    match placeholder {
        "AWS::Partition" => "aws".to_owned(),
        "AWS::Region" => "eu-west-1".to_owned(),
        "AWS::AccountId" => "111122223333".to_owned(),
        "AWS::StackName" => "chief-test".to_owned(),
        other => format!("x-{}", other.replace(['.', ':'], "-").to_ascii_lowercase()),
    }
}

/// `text` with its placeholders filled in.
pub fn fill(text: &str) -> String {
    template::substitute(text, value_of)
}

/// `deploy/aws/chief.yaml` as JSON.
pub fn template() -> Value {
    let path = workspace_root().join("deploy/aws/chief.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    template::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The policy document `deploy/aws/iam/<name>.json`, as written.
pub fn policy_json(name: &str) -> Value {
    let path = workspace_root().join(format!("deploy/aws/iam/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The policy document `deploy/aws/iam/<name>.json` with its placeholders filled in.
pub fn policy(name: &str) -> Policy {
    let path = workspace_root().join(format!("deploy/aws/iam/{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Policy::parse(name, &fill(&text)).unwrap_or_else(|e| panic!("{e}"))
}

/// The launch template whose instances run `binary`.
pub fn launch_template_of(binary: &str) -> &'static str {
    match binary {
        "chief-producer" | "chief-agent" => "ProducerLaunchTemplate",
        "chief-loader" | "chief-dashboard" => "LoaderLaunchTemplate",
        _ => "ConsumerLaunchTemplate",
    }
}

/// The user data of a launch template, placeholders filled in.
pub fn user_data(template: &Value, launch_template: &str) -> String {
    fill(
        template::user_data(template, launch_template)
            .unwrap_or_else(|| panic!("{launch_template} has no Fn::Base64/Fn::Sub user data")),
    )
}

/// The `CHIEF__` settings `binary` runs with on its instance: its systemd unit's
/// `Environment=` lines, then the files the user data writes for it (the environment
/// file, the unit's drop-in).
pub fn instance_settings(template: &Value, binary: &str) -> Vec<(String, String)> {
    let script = user_data(template, launch_template_of(binary));
    let files = userdata::written_files(&script);
    let mut settings = Vec::new();
    let (unit_file, unit) = unit_of(binary);
    let unit_file = workspace_root().join(format!("deploy/systemd/{unit_file}"));
    if let Ok(text) = std::fs::read_to_string(&unit_file) {
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        settings.extend(userdata::chief_settings(&lines));
    }
    // What the unit (or, for the producer run by hand, deploy/README.md's command) reads:
    // the instance's environment file, then the program's own.
    let env_files: &[&str] = match binary {
        "chief-loader" => &["/etc/chief/loader.env"],
        "chief-producer" => &["/etc/chief/chief.env", "/etc/chief/producer.env"],
        _ => &["/etc/chief/chief.env"],
    };
    let drop_in = format!("/etc/systemd/system/{unit}.service.d/stack.conf");
    for wanted in env_files.iter().copied().chain([drop_in.as_str()]) {
        for f in files.iter().filter(|f| f.path == wanted) {
            settings.extend(userdata::chief_settings(&f.body));
        }
        settings.extend(
            userdata::appended_settings(&script)
                .into_iter()
                .filter(|(file, _, _)| file == wanted)
                .map(|(_, k, v)| (k, v)),
        );
    }
    settings
}

/// `config/<short name>.toml` of a binary.
pub fn config_text(binary: &str) -> String {
    let short = binary.strip_prefix("chief-").unwrap_or(binary);
    let path = workspace_root().join(format!("config/{short}.toml"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// What a binary's settings make it touch.
#[derive(Debug, Default, Clone)]
pub struct Uses {
    /// Stream names.
    pub streams: Vec<String>,
    /// Lease table names.
    pub tables: Vec<String>,
    /// Objects it writes: (bucket, key).
    pub written: Vec<(String, String)>,
    /// Objects it reads.
    pub read: Vec<(String, String)>,
    /// Prefixes it lists: (bucket, prefix).
    pub listed: Vec<(String, String)>,
    /// The CloudWatch namespace of its metrics (`[metrics] cloudwatch`), if set.
    pub metrics_namespace: Option<String>,
    /// ARNs of the SQS queues it reads.
    pub queues: Vec<String>,
    /// Firehose delivery stream names.
    pub delivery_streams: Vec<String>,
    /// (stream, lease table) of each of its applications, when it has several (its
    /// fan-out consumer on a stream is named after that stream's table); empty: every
    /// stream with every table.
    pub consumers: Vec<(String, String)>,
    /// SES identities it sends email as.
    pub email_identities: Vec<String>,
    /// SNS topic ARNs it publishes to.
    pub topics: Vec<String>,
    /// Services (`firehose`) or IAM actions (`kinesis:PutRecords`) whose calls the binary
    /// has but never makes with these settings (the agent's Firehose calls when no flow
    /// sends to Firehose, an analytics application's outputs it does not have): not to be
    /// granted.
    pub never_calls: BTreeSet<String>,
}

/// `/etc/aws-kinesis/agent.json` as the producer instance's user data writes it.
pub fn agent_json(template: &Value) -> chief_agent::config::AgentConfig {
    let script = user_data(template, launch_template_of("chief-agent"));
    let file = userdata::written_files(&script)
        .into_iter()
        .find(|f| f.path == "/etc/aws-kinesis/agent.json")
        .expect("the producer instance's user data writes /etc/aws-kinesis/agent.json");
    chief_agent::config::AgentConfig::parse(
        Path::new("/etc/aws-kinesis/agent.json"),
        &file.body.join("\n"),
    )
    .unwrap_or_else(|e| panic!("the stack's agent.json: {e}"))
}

const REGION: &str = "eu-west-1";
const ACCOUNT: &str = "111122223333";

pub fn stream_arn(name: &str) -> String {
    format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
}

pub fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

pub fn object_arn(bucket: &str, key: &str) -> String {
    format!("arn:aws:s3:::{bucket}/{key}")
}

pub fn bucket_arn(bucket: &str) -> String {
    format!("arn:aws:s3:::{bucket}")
}

fn arrival() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_704_164_645, 0).unwrap_or_default() // 2024-01-02T03:04:05Z
}

fn position(sub: u64) -> RecordPosition {
    RecordPosition {
        sequence_number: "49650000000000000000000000000000000000000000000000000001".to_owned(),
        sub_sequence_number: sub,
    }
}

/// The resources `binary` uses with its settings on its instance.
pub fn uses(template: &Value, binary: &str) -> Uses {
    let settings = instance_settings(template, binary);
    let text = config_text(binary);
    let mut uses = Uses::default();
    match binary {
        "chief-producer" => {
            let config: chief_producer_cli::app::ProducerAppConfig =
                chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            // `--stream` names the stream: the stack's two of the pipeline (the taxi trips
            // and web logs streams are fed by the agent, the app logs by chief-s3-ingest).
            uses.streams = template::resources_of(template, "AWS::Kinesis::Stream")
                .into_iter()
                .filter(|(id, _)| {
                    !["TaxiTripsStream", "WebLogsStream", "AppLogsStream"].contains(id)
                })
                .map(|(id, _)| value_of(id))
                .collect();
            assert_eq!(uses.streams.len(), 2, "the pipeline's streams");
        }
        "chief-loader" => {
            let config: LoaderConfig = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            let l = &config.loader;
            // The stack's queue (its URL is what `Ref` gives; the policy names its ARN).
            if let Some(url) = &l.queue_url {
                assert_eq!(*url, value_of("LoaderQueue"), "{binary}: queue_url");
                uses.queues.push(value_of("LoaderQueue.Arn"));
            }
            for table in l.tables.values() {
                uses.listed
                    .push((l.bucket.clone(), format!("{}/", table.prefix)));
                uses.read.push((
                    l.bucket.clone(),
                    batch_key(
                        &table.prefix,
                        arrival(),
                        "shardId-000000000001",
                        &position(0),
                    ),
                ));
                uses.written.push((
                    l.bucket.clone(),
                    format!(
                        "{}/{}/2024/01/02/20240102T030405.000Z-4242-0.json",
                        l.manifest_prefix, table.table
                    ),
                ));
            }
        }
        "chief-dashboard" => {
            let config: chief_dashboard::DashboardConfig = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            for consumer in [&config.orders, &config.jobresults] {
                uses.streams.push(consumer.stream.clone());
                uses.tables.push(consumer.table.clone());
                uses.consumers
                    .push((consumer.stream.clone(), consumer.table.clone()));
            }
        }
        "chief-agent" => {
            let config: chief_agent::AgentSettings = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            use chief_agent::config::Destination;
            let agent = agent_json(template);
            for flow in &agent.flows {
                flow.validate()
                    .unwrap_or_else(|e| panic!("the stack's agent.json: {e}"));
                for destination in
                    std::iter::once(flow.destination()).chain(flow.error_destination())
                {
                    match destination {
                        Destination::Kinesis(s) => uses.streams.push(s),
                        Destination::Firehose(s) => uses.delivery_streams.push(s),
                    }
                }
            }
            if uses.delivery_streams.is_empty() {
                uses.never_calls.insert("firehose".to_owned());
            }
        }
        _ if analytics_of(binary).is_some() => {
            let config: chief_analytics::AnalyticsConfig = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            let c = &config.consumer;
            uses.streams.push(c.stream.clone());
            uses.tables.push(c.table.clone());
            uses.tables.push(config.store.table.clone());
            uses.consumers.push((c.stream.clone(), c.table.clone()));
            match &config.output.s3 {
                Some(s3) => uses.written.push((
                    s3.bucket.clone(),
                    format!(
                        "{}{}/2024-01-02/2024-01-02T03:04:00Z.json",
                        s3.prefix, config.app.name
                    ),
                )),
                None => {
                    uses.never_calls.insert("s3".to_owned());
                }
            }
            if config.output.kinesis.is_none() {
                uses.never_calls.insert("kinesis:PutRecords".to_owned());
            }
            for alert in &config.alert {
                if let Some(email) = &alert.email {
                    uses.email_identities.push(email.from.clone());
                }
                if let Some(sns) = &alert.sns {
                    uses.topics.push(sns.topic_arn.clone());
                }
            }
            if uses.email_identities.is_empty() {
                uses.never_calls.insert("sesv2".to_owned());
            }
            if uses.topics.is_empty() {
                uses.never_calls.insert("sns".to_owned());
            }
        }
        "chief-s3-ingest" => {
            let config: chief_analytics::ingest::IngestConfig =
                chief_config::load_str(&text, &settings)
                    .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            let i = &config.ingest;
            assert_eq!(i.queue_url, value_of("AppLogsQueue"), "{binary}: queue_url");
            uses.queues.push(value_of("AppLogsQueue.Arn"));
            uses.streams.push(i.stream.clone());
            uses.tables.push(i.state_table.clone());
            // The objects the bucket announces: the hosts' uploads under the key prefix.
            uses.read.push((
                value_of("AppLogsBucket"),
                format!("{}host-1/app.log", i.key_prefix),
            ));
        }
        _ if delivery_of(binary).is_some() => {
            let config: FirehoseConfig = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config.metrics.cloudwatch.map(|c| c.namespace);
            uses.streams.push(config.consumer.stream.clone());
            uses.tables.push(config.consumer.table.clone());
            // An object and an error object, keyed as the delivery keys them.
            let (prefix, error) = config.s3.templates().expect("templates");
            let partition = std::collections::BTreeMap::new();
            let values = |kind| chief_sinks::object::template::KeyValues {
                time: arrival(),
                error_output_type: kind,
                partition: &partition,
            };
            for (template, kind) in [(prefix, ""), (error, "processing-failed")] {
                uses.written.push((
                    config.s3.bucket.clone(),
                    format!(
                        "{}{}",
                        template.render(&values(kind)).expect("key"),
                        chief_sinks::object::template::firehose_object_name(
                            &config.delivery.name,
                            config.delivery.version,
                            arrival(),
                            "",
                        )
                    ),
                ));
            }
        }
        _ => {
            let executor = Executor::ALL
                .into_iter()
                .find(|e| e.name() == binary)
                .unwrap_or_else(|| panic!("{binary} is not an executor"));
            let config: ExecutorConfig = chief_config::load_str(&text, &settings)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            config
                .validate(executor)
                .unwrap_or_else(|e| panic!("{binary} with its instance settings: {e}"));
            uses.metrics_namespace = config
                .metrics
                .cloudwatch
                .as_ref()
                .map(|c| c.namespace.clone());
            uses.streams.push(config.consumer.stream.clone());
            uses.tables.push(config.consumer.table.clone());
            let a = &config.archive;
            if executor.writes_archive() {
                uses.written.push((
                    a.bucket.clone(),
                    batch_key(&a.prefix, arrival(), "shardId-000000000001", &position(3)),
                ));
            }
            uses.written.push((
                a.bucket.clone(),
                dead_letter_key(
                    &a.dead_letter_prefix,
                    binary,
                    arrival(),
                    "shardId-000000000001",
                    &position(7),
                ),
            ));
        }
    }
    uses
}

/// The requests `binary` makes for `action` on what it `uses`.
pub fn requests(op: &SdkOperation, uses: &Uses) -> Vec<Request> {
    use operations::ResourceKind::*;
    let Some(iam) = operations::iam_action(op) else {
        return Vec::new();
    };
    let a = iam.action;
    match iam.resource {
        Stream => uses
            .streams
            .iter()
            .map(|s| Request::new(a, stream_arn(s)))
            .collect(),
        // The consumer is named after the lease table (`consumer.consumer_name` unset).
        StreamConsumer if !uses.consumers.is_empty() => uses
            .consumers
            .iter()
            .map(|(s, t)| Request::new(a, format!("{}/consumer/{t}:1700000000", stream_arn(s))))
            .collect(),
        StreamConsumer => uses
            .streams
            .iter()
            .flat_map(|s| {
                uses.tables.iter().map(move |t| {
                    Request::new(a, format!("{}/consumer/{t}:1700000000", stream_arn(s)))
                })
            })
            .collect(),
        Table => uses
            .tables
            .iter()
            .map(|t| Request::new(a, table_arn(t)))
            .collect(),
        ObjectWritten => uses
            .written
            .iter()
            .map(|(b, k)| Request::new(a, object_arn(b, k)))
            .collect(),
        ObjectRead => uses
            .read
            .iter()
            .map(|(b, k)| Request::new(a, object_arn(b, k)))
            .collect(),
        BucketListed => uses
            .listed
            .iter()
            .map(|(b, p)| Request::new(a, bucket_arn(b)).with("s3:prefix", p))
            .collect(),
        Bucket => uses
            .listed
            .iter()
            .map(|(b, _)| Request::new(a, bucket_arn(b)))
            .collect(),
        Queue => uses.queues.iter().map(|q| Request::new(a, q)).collect(),
        EmailIdentity => uses
            .email_identities
            .iter()
            .map(|i| Request::new(a, format!("arn:aws:ses:{REGION}:{ACCOUNT}:identity/{i}")))
            .collect(),
        Topic => uses.topics.iter().map(|t| Request::new(a, t)).collect(),
        DeliveryStream => uses
            .delivery_streams
            .iter()
            .map(|d| {
                Request::new(
                    a,
                    format!("arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{d}"),
                )
            })
            .collect(),
        // PutMetricData has no resource: the policy limits it to the binary's namespace.
        Any if a == "cloudwatch:PutMetricData" => uses
            .metrics_namespace
            .iter()
            .map(|ns| Request::new(a, "*").with("cloudwatch:namespace", ns))
            .collect(),
        Any => vec![Request::new(a, "*")],
    }
}

/// Requests next to `r` that a least-privilege policy allowing `r` must refuse: another
/// stream, table, bucket, or a key or prefix outside the one used.
pub fn neighbours(r: &Request) -> Vec<Request> {
    let mut out = Vec::new();
    let swap_last = |arn: &str, with: &str| match arn.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{with}"),
        None => format!("{arn}-{with}"),
    };
    if ["kinesis", "dynamodb", "ses", "sns"]
        .iter()
        .any(|service| r.resource.starts_with(&format!("arn:aws:{service}:")))
    {
        out.push(Request::new(
            &r.action,
            swap_last(&r.resource, "someone-elses"),
        ));
        out.push(Request::new(
            &r.action,
            r.resource.replace(REGION, "us-east-1"),
        ));
    } else if r.action.starts_with("sqs:") {
        out.push(Request::new(
            &r.action,
            format!("{}-someone-elses", r.resource),
        ));
    } else if let Some(path) = r.resource.strip_prefix("arn:aws:s3:::") {
        match path.split_once('/') {
            Some((bucket, key)) => {
                out.push(Request::new(
                    &r.action,
                    object_arn("someone-elses-bucket", key),
                ));
                out.push(Request::new(
                    &r.action,
                    object_arn(bucket, &format!("Other{key}")),
                ));
                out.push(Request::new(
                    &r.action,
                    object_arn(bucket, "errors/someone-else/x"),
                ));
                out.push(Request::new(&r.action, object_arn(bucket, "x")));
            }
            None => {
                for prefix in ["", "errors/", "Other/"] {
                    out.push(Request::new(&r.action, bucket_arn(path)).with("s3:prefix", prefix));
                }
                out.push(
                    Request::new(&r.action, bucket_arn("someone-elses-bucket")).with(
                        "s3:prefix",
                        r.context.first().map_or("", |(_, v)| v.as_str()),
                    ),
                );
            }
        }
    }
    out
}

/// The directory of the binaries built with this test (`target/<profile>`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{} is not under target/<profile>/deps", exe.display()))
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The built `binary`, checked to be newer than every source file it was built from
/// (its `.d` dep-info file lists them); fails loudly otherwise.
pub fn built_binary(binary: &str) -> PathBuf {
    let dir = target_profile_dir();
    let path = dir.join(binary);
    let build = "build the binaries with `cargo build --workspace --bins` (`make test` builds them before running the tests)";
    assert!(path.is_file(), "{} does not exist: {build}", path.display());
    let built = mtime(&path);
    let dep_info = dir.join(format!("{binary}.d"));
    let text = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{}: {e}; {build}", dep_info.display()));
    let first = text.lines().next().unwrap_or_default();
    let deps = first.split_once(": ").map_or("", |(_, d)| d);
    // Paths are space-separated, with spaces in names escaped as `\ `.
    let mut sources = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' => {
                if !current.is_empty() {
                    sources.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        sources.push(current);
    }
    for source in sources.iter().map(PathBuf::from).filter(|p| p.is_file()) {
        assert!(
            mtime(&source) <= built,
            "{} is older than {}: {build}",
            path.display(),
            source.display()
        );
    }
    path
}

/// The SDK operations compiled into `binary`, those the SDK sends by itself left out.
pub fn called_operations(binary: &str) -> BTreeSet<SdkOperation> {
    let path = built_binary(binary_file(binary));
    operations::from_binary(&path)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|op| operations::sdk_internal(op).is_none())
        .collect()
}

/// Each launch template with the policy of its instance's bootstrap.
pub const BOOTSTRAPS: [(&str, &str); 3] = [
    ("ProducerLaunchTemplate", "bootstrap-producer"),
    ("ConsumerLaunchTemplate", "bootstrap-consumer"),
    ("LoaderLaunchTemplate", "bootstrap-loader"),
];

/// The programs a launch template's user data ships to CloudWatch Logs, and the log group
/// it names: `bash "$release/setup/ship-journal.sh" 'GROUP' PROGRAM...`.
pub fn shipped_journal(script: &str) -> (String, Vec<String>) {
    let line = script
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("bash \"$release/setup/ship-journal.sh\" "))
        .expect("the user data runs setup/ship-journal.sh");
    let mut words = line
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_owned());
    let group = words.next().expect("a log group");
    (group, words.collect())
}
