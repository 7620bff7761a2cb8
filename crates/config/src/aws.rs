//! The one place where AWS SDK clients are built.
//!
//! Region, an endpoint override per service (Kinesis, DynamoDB, S3, CloudWatch and SQS may each
//! point at a different local emulator), credentials from the default chain (or static ones for local
//! emulators), path-style S3 addressing, the pinned [`behavior_version`], retries and
//! timeouts.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde::{Deserialize, Serialize};

/// The SDK behaviour version every client of chief uses, pinned so that an SDK upgrade
/// never changes retry or timeout defaults silently.
pub fn behavior_version() -> BehaviorVersion {
    BehaviorVersion::v2026_01_12()
}

/// The `[aws]` section of every binary's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// AWS region. Default `us-east-1`.
    pub region: String,
    /// Named profile of the shared config files; default: none (the default chain).
    pub profile: Option<String>,
    /// Fixed credentials, meant for local emulators only. Default: none, which means the
    /// default chain (environment, profile, web identity, ECS, EC2 instance role).
    pub static_credentials: Option<StaticCredentials>,
    /// A role every client of the process assumes (STS `AssumeRole`, renewed before it
    /// expires) with the credentials above as the base: on an instance running several
    /// binaries, each binary gets only its own role's permissions while the instance role
    /// may do nothing but assume them. Default: none (the base credentials are used).
    pub role_arn: Option<String>,
    /// The session name the role is assumed under (CloudTrail shows it). Default
    /// `chief-<binary>`.
    pub role_session_name: Option<String>,
    /// Attempts per SDK call for transport errors and throttling (standard retry mode),
    /// including the first. Default 3. Partial failures are retried by chief itself.
    pub max_attempts: u32,
    /// First SDK retry back-off in milliseconds (jittered, exponential). Default 100.
    pub initial_backoff_ms: u64,
    /// Connect timeout in milliseconds. Default 3100.
    pub connect_timeout_ms: u64,
    /// Timeout of a whole SDK operation, retries included, in milliseconds. Default 60000.
    pub operation_timeout_ms: u64,
    /// Kinesis endpoint override.
    pub kinesis: ServiceConfig,
    /// DynamoDB endpoint override.
    pub dynamodb: ServiceConfig,
    /// S3 endpoint override and addressing style.
    pub s3: S3Config,
    /// CloudWatch endpoint override (the metrics exporter, `[metrics] cloudwatch`).
    pub cloudwatch: ServiceConfig,
    /// SQS endpoint override (the loader's queue of S3 notifications).
    pub sqs: ServiceConfig,
    /// STS endpoint override (assuming `role_arn`).
    pub sts: ServiceConfig,
    /// Firehose endpoint override (`chief-agent`'s `deliveryStream` flows).
    pub firehose: ServiceConfig,
    /// SES endpoint override (`chief-analytics`' email alerts).
    pub ses: ServiceConfig,
    /// SNS endpoint override (`chief-analytics`' SNS alerts).
    pub sns: ServiceConfig,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_owned(),
            profile: None,
            static_credentials: None,
            role_arn: None,
            role_session_name: None,
            max_attempts: 3,
            initial_backoff_ms: 100,
            connect_timeout_ms: 3_100,
            operation_timeout_ms: 60_000,
            kinesis: ServiceConfig::default(),
            dynamodb: ServiceConfig::default(),
            s3: S3Config::default(),
            cloudwatch: ServiceConfig::default(),
            sqs: ServiceConfig::default(),
            sts: ServiceConfig::default(),
            firehose: ServiceConfig::default(),
            ses: ServiceConfig::default(),
            sns: ServiceConfig::default(),
        }
    }
}

/// Credentials written in the config. For local emulators only; never put real keys in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (shown as `<redacted>`).
    pub secret_access_key: crate::secret::Secret,
}

/// Per-service settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Endpoint URL override, e.g. `http://127.0.0.1:4568`. Default: the AWS endpoint.
    pub endpoint: Option<String>,
}

/// S3 settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint URL override. Default: the AWS endpoint.
    pub endpoint: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), needed by emulators. Default false.
    pub force_path_style: bool,
}

/// `chief-<binary>` (the executable's name), as STS accepts session names.
fn default_session_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "chief".to_owned());
    let name: String = binary
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(*c))
        .take(58)
        .collect();
    if name.starts_with("chief") {
        name
    } else {
        format!("chief-{name}")
    }
}

/// The SDK clients of one process, built from one [`SdkConfig`].
#[derive(Debug, Clone)]
pub struct AwsClients {
    sdk: SdkConfig,
    config: AwsConfig,
}

impl AwsClients {
    /// Resolves credentials provider, region, retry and timeout settings once.
    pub async fn new(config: &AwsConfig) -> Self {
        let mut loader = aws_config::defaults(behavior_version())
            .region(Region::new(config.region.clone()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(config.max_attempts.max(1))
                    .with_initial_backoff(Duration::from_millis(config.initial_backoff_ms)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
                    .operation_timeout(Duration::from_millis(config.operation_timeout_ms))
                    .build(),
            );
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(creds) = &config.static_credentials {
            loader = loader.credentials_provider(Credentials::new(
                &creds.access_key_id,
                creds.secret_access_key.expose(),
                None,
                None,
                "chief-static-config",
            ));
        }
        let mut sdk = loader.load().await;
        if let Some(role) = &config.role_arn {
            let session = config
                .role_session_name
                .clone()
                .unwrap_or_else(default_session_name);
            let mut base = sdk.clone();
            if let Some(url) = &config.sts.endpoint {
                base = base.into_builder().endpoint_url(url).build();
            }
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(session)
                .configure(&base)
                .build()
                .await;
            sdk = sdk
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build();
        }
        Self {
            sdk,
            config: config.clone(),
        }
    }

    /// The shared SDK config.
    pub fn sdk_config(&self) -> &SdkConfig {
        &self.sdk
    }

    /// A Kinesis client, with the configured endpoint override.
    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        let mut b = aws_sdk_kinesis::config::Builder::from(&self.sdk).interceptor(CountCalls);
        if let Some(url) = &self.config.kinesis.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_kinesis::Client::from_conf(b.build())
    }

    /// A DynamoDB client, with the configured endpoint override.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let mut b = aws_sdk_dynamodb::config::Builder::from(&self.sdk).interceptor(CountCalls);
        if let Some(url) = &self.config.dynamodb.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(b.build())
    }

    /// An S3 client, with the configured endpoint override and addressing style.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let mut b = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.config.s3.force_path_style)
            .interceptor(CountCalls);
        if let Some(url) = &self.config.s3.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    }

    /// An SQS client, with the configured endpoint override.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let mut b = aws_sdk_sqs::config::Builder::from(&self.sdk).interceptor(CountCalls);
        if let Some(url) = &self.config.sqs.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    }

    /// A CloudWatch client, with the configured endpoint override.
    pub fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        let mut b = aws_sdk_cloudwatch::config::Builder::from(&self.sdk).interceptor(CountCalls);
        if let Some(url) = &self.config.cloudwatch.endpoint {
            b = b.endpoint_url(url);
        }
        aws_sdk_cloudwatch::Client::from_conf(b.build())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Accepts one HTTP request on a fresh loopback port and hands back its head.
    async fn one_request() -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let head = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 16 * 1024];
            let mut len = 0;
            while !String::from_utf8_lossy(&buf[..len]).contains("\r\n\r\n") {
                let n = sock.read(&mut buf[len..]).await.expect("read");
                if n == 0 {
                    break;
                }
                len += n;
            }
            let _ = sock
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                .await;
            String::from_utf8_lossy(&buf[..len]).into_owned()
        });
        (url, head)
    }

    fn config(kinesis: &str, dynamodb: &str, s3: &str, cloudwatch: &str) -> AwsConfig {
        AwsConfig {
            region: "eu-west-1".into(),
            static_credentials: Some(StaticCredentials {
                access_key_id: "AKIDCHIEFTEST".into(),
                secret_access_key: crate::secret::Secret::new("b"),
            }),
            max_attempts: 1,
            kinesis: ServiceConfig {
                endpoint: Some(kinesis.into()),
            },
            dynamodb: ServiceConfig {
                endpoint: Some(dynamodb.into()),
            },
            s3: S3Config {
                endpoint: Some(s3.into()),
                force_path_style: true,
            },
            cloudwatch: ServiceConfig {
                endpoint: Some(cloudwatch.into()),
            },
            ..AwsConfig::default()
        }
    }

    #[tokio::test]
    async fn each_service_goes_to_its_own_endpoint_signed_with_the_configured_credentials() {
        let (k_url, k_head) = one_request().await;
        let (d_url, d_head) = one_request().await;
        let (s_url, s_head) = one_request().await;
        let (c_url, c_head) = one_request().await;
        let clients = AwsClients::new(&config(&k_url, &d_url, &s_url, &c_url)).await;
        assert_eq!(
            clients
                .sdk_config()
                .retry_config()
                .map(|r| r.max_attempts()),
            Some(1)
        );

        let _ = clients.kinesis().list_streams().send().await;
        let _ = clients.dynamodb().list_tables().send().await;
        let _ = clients
            .s3()
            .list_objects_v2()
            .bucket("chief-b")
            .send()
            .await;
        let _ = clients.cloudwatch().list_metrics().send().await;

        let k = k_head.await.expect("kinesis request");
        assert!(k.contains("Kinesis_20131202.ListStreams"), "{k}");
        assert!(k.contains("Credential=AKIDCHIEFTEST/"), "{k}");
        assert!(k.contains("/eu-west-1/kinesis/"), "{k}");
        let d = d_head.await.expect("dynamodb request");
        assert!(d.contains("DynamoDB_20120810.ListTables"), "{d}");
        // Path-style: the bucket is in the path, not in the host name.
        let s = s_head.await.expect("s3 request");
        assert!(s.starts_with("GET /chief-b/?"), "{s}");
        assert!(s.contains("list-type=2"), "{s}");
        let c = c_head.await.expect("cloudwatch request");
        assert!(c.contains("/eu-west-1/monitoring/"), "{c}");
    }
}

/// Counts every attempt of every AWS call its clients make, retries included (what the
/// service sees and bills): counter `AwsCalls` with labels `service` (`DynamoDB`,
/// `Kinesis`, `S3`, …) and `operation` (`Scan`, `UpdateItem`, `GetRecords`, …).
#[derive(Debug, Clone, Copy)]
pub struct CountCalls;

impl aws_smithy_runtime_api::client::interceptors::Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "chief::CountCalls"
    }

    fn read_before_attempt(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(op) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            metrics::counter!(
                "AwsCalls",
                "service" => op.service().to_owned(),
                "operation" => op.name().to_owned()
            )
            .increment(1);
        }
        Ok(())
    }
}
