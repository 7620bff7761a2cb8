//! `agent.json`: the Amazon Kinesis Agent's own configuration format, read as the agent
//! reads it (key names, defaults, limits), with chief's additions marked as such.
//! A key the agent does not know is an error naming the key.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Publish metrics to CloudWatch. Default true in the agent; chief publishes when
    /// `[metrics] cloudwatch` is set and always serves `/metrics`.
    #[serde(rename = "cloudwatch.emitMetrics", default = "yes")]
    pub cloudwatch_emit_metrics: bool,
    /// CloudWatch endpoint (host or URL).
    #[serde(rename = "cloudwatch.endpoint", default)]
    pub cloudwatch_endpoint: Option<String>,
    /// Kinesis endpoint (host, e.g. `kinesis.us-east-1.amazonaws.com`, or URL).
    #[serde(rename = "kinesis.endpoint", default)]
    pub kinesis_endpoint: Option<String>,
    /// Firehose endpoint.
    #[serde(rename = "firehose.endpoint", default)]
    pub firehose_endpoint: Option<String>,
    /// Static credentials (the agent accepts them here; prefer the instance's role).
    #[serde(rename = "awsAccessKeyId", default)]
    pub aws_access_key_id: Option<String>,
    /// See `awsAccessKeyId` (printed redacted).
    #[serde(rename = "awsSecretAccessKey", default)]
    pub aws_secret_access_key: Option<chief_config::secret::Secret>,
    /// A role to assume.
    #[serde(rename = "assumeRoleARN", default)]
    pub assume_role_arn: Option<String>,
    /// Its external id.
    #[serde(rename = "assumeRoleExternalId", default)]
    pub assume_role_external_id: Option<String>,
    /// Where the agent keeps its checkpoints. Default
    /// `/var/run/aws-kinesis-agent/checkpoints` (chief writes JSON there, not the Java
    /// agent's SQLite: point chief at a path of its own when replacing the Java agent).
    #[serde(rename = "checkpointFile", default = "default_checkpoint_file")]
    pub checkpoint_file: PathBuf,
    // The Java agent's settings that have no meaning for chief (thread pools, HTTP
    // client, its CloudWatch publisher, checkpoint TTL…): accepted as the agent accepts
    // them, and ignored.
    #[serde(
        rename = "kinesis.region",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    kinesis_region: Option<serde_json::Value>,
    #[serde(
        rename = "sts.endpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    sts_endpoint: Option<serde_json::Value>,
    #[serde(
        rename = "checkpointTimeToLiveDays",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    checkpoint_ttl_days: Option<serde_json::Value>,
    #[serde(
        rename = "cloudwatch.tagInstance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cloudwatch_tag_instance: Option<serde_json::Value>,
    #[serde(
        rename = "cloudwatch.namespace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cloudwatch_namespace: Option<serde_json::Value>,
    #[serde(
        rename = "cloudwatch.metricsBufferTimeMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cloudwatch_buffer: Option<serde_json::Value>,
    #[serde(
        rename = "cloudwatch.metricsQueueSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    cloudwatch_queue: Option<serde_json::Value>,
    #[serde(
        rename = "log.emitMetrics",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    log_emit_metrics: Option<serde_json::Value>,
    #[serde(
        rename = "log.emitInternalMetrics",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    log_emit_internal: Option<serde_json::Value>,
    #[serde(
        rename = "log.statusReportingPeriodSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    log_status_period: Option<serde_json::Value>,
    #[serde(
        rename = "shutdownTimeoutMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    shutdown_timeout: Option<serde_json::Value>,
    #[serde(
        rename = "maxSendingThreads",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    max_sending_threads: Option<serde_json::Value>,
    #[serde(
        rename = "maxSendingThreadsPerCore",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    max_sending_threads_per_core: Option<serde_json::Value>,
    #[serde(
        rename = "sendingThreadsKeepAliveMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    sending_keep_alive: Option<serde_json::Value>,
    #[serde(
        rename = "sendingThreadsMaxQueueSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    sending_queue: Option<serde_json::Value>,
    #[serde(
        rename = "maxConnections",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    max_connections: Option<serde_json::Value>,
    #[serde(
        rename = "connectionTimeoutMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    connection_timeout: Option<serde_json::Value>,
    #[serde(
        rename = "connectionTTLMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    connection_ttl: Option<serde_json::Value>,
    #[serde(
        rename = "socketTimeoutMillis",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    socket_timeout: Option<serde_json::Value>,
    #[serde(
        rename = "useTcpKeepAlive",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    tcp_keep_alive: Option<serde_json::Value>,
    #[serde(
        rename = "useHttpGzip",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    http_gzip: Option<serde_json::Value>,
    #[serde(rename = "userAgent", default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<serde_json::Value>,
    #[serde(
        rename = "userAgentOverride",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    user_agent_override: Option<serde_json::Value>,
    /// The flows.
    pub flows: Vec<Flow>,
}

fn yes() -> bool {
    true
}

fn default_checkpoint_file() -> PathBuf {
    PathBuf::from("/var/run/aws-kinesis-agent/checkpoints")
}

/// Where a flow starts in files it has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialPosition {
    /// At the start of every file.
    StartOfFile,
    /// At the end of the files that exist when the agent starts (files that appear
    /// later are read from their start). The agent's default.
    #[default]
    EndOfFile,
}

/// How records get their partition key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PartitionKeyOption {
    /// A random key per record (the agent's default).
    #[default]
    Random,
    /// The hex MD5 of the record: the same record always goes to the same shard.
    Deterministic,
}

/// One flow: files → records → a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Flow {
    /// The files, a glob in the file name (`/tmp/*.csv*`).
    pub file_pattern: String,
    /// The Kinesis stream.
    #[serde(default)]
    pub kinesis_stream: Option<String>,
    /// The Firehose delivery stream.
    #[serde(default)]
    pub delivery_stream: Option<String>,
    /// Partition keys.
    #[serde(default)]
    pub partition_key_option: PartitionKeyOption,
    /// Where files without a checkpoint start.
    #[serde(default)]
    pub initial_position: InitialPosition,
    /// Lines skipped at the start of every file (a CSV header). Default 0.
    #[serde(default)]
    pub skip_header_lines: u64,
    /// A record starts at a line matching this regex; the lines up to the next such line
    /// are part of it.
    #[serde(default)]
    pub multi_line_start_pattern: Option<String>,
    /// Appended to a record cut at the largest record size. Default a newline.
    #[serde(default = "default_terminator")]
    pub truncated_record_terminator: String,
    /// Longest a record waits in the buffer, ms (1,000–900,000). Default 60,000.
    #[serde(default = "default_buffer_age")]
    pub max_buffer_age_millis: u64,
    /// Records per request (1–500). Default 500.
    #[serde(default = "default_buffer_records")]
    pub max_buffer_size_records: usize,
    /// Bytes per request (1–5 MiB for Kinesis, 4 MiB for Firehose). Default the most.
    #[serde(default)]
    pub max_buffer_size_bytes: Option<usize>,
    /// Stop reading a file at a record that matches this regex.
    #[serde(default)]
    pub file_footer_pattern: Option<String>,
    /// Firehose only: records aggregated up to this size. Accepted.
    #[serde(default)]
    pub aggregated_record_size_bytes: Option<u64>,
    /// The Java agent's publishing and polling knobs: accepted; chief's producer has its
    /// own (per-shard rate limits, retries with back-off).
    #[serde(default)]
    pub min_time_between_file_polls_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub max_time_between_file_tracker_refresh_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub wait_on_full_publish_queue_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub wait_on_empty_publish_queue_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub retry_initial_backoff_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub retry_max_backoff_millis: Option<u64>,
    /// See `minTimeBetweenFilePollsMillis`.
    #[serde(default)]
    pub publish_queue_capacity: Option<u64>,
    /// How lines become records.
    #[serde(default)]
    pub data_processing_options: Vec<ProcessingOption>,
    /// chief: where lines that cannot be converted go, one JSON object a line (default
    /// `<checkpointFile>.errors/<flow id>.jsonl`). Never dropped.
    #[serde(default, rename = "chief.errorFile")]
    pub error_file: Option<PathBuf>,
    /// chief: send those error records to this Kinesis stream instead of a file.
    #[serde(default, rename = "chief.errorKinesisStream")]
    pub error_kinesis_stream: Option<String>,
    /// chief: send those error records to this Firehose delivery stream instead of a file.
    #[serde(default, rename = "chief.errorDeliveryStream")]
    pub error_delivery_stream: Option<String>,
    /// chief: KPL aggregation of the records (off, as the agent sends them).
    #[serde(default, rename = "chief.aggregation")]
    pub aggregation: bool,
}

fn default_terminator() -> String {
    "\n".to_owned()
}

fn default_buffer_age() -> u64 {
    60_000
}

fn default_buffer_records() -> usize {
    500
}

/// How a JSON-producing option writes its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JsonFormat {
    /// One line (the default).
    #[default]
    Compact,
    /// Indented.
    Prettyprint,
}

/// One step of `dataProcessingOptions`, applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "optionName", rename_all = "UPPERCASE", deny_unknown_fields)]
pub enum ProcessingOption {
    /// A multi-line record on one line: each line trimmed (unless `NO_TRIM`), joined with
    /// nothing (or `\\n` with `ESCAPE_NEW_LINE`).
    Singleline {
        /// `NO_TRIM`, `ESCAPE_NEW_LINE`.
        #[serde(rename = "parseOptions", default)]
        parse_options: Vec<String>,
    },
    /// A delimited line as a JSON object of `customFieldNames`.
    Csvtojson {
        /// The field names, in column order.
        #[serde(rename = "customFieldNames")]
        custom_field_names: Vec<String>,
        /// The delimiter: a Java regex in the agent; one character (or an escaped one,
        /// `\\t`) for chief's RFC 4180 parsing, else a regex. Default `,`.
        #[serde(default)]
        delimiter: Option<String>,
        /// `COMPACT` or `PRETTYPRINT`.
        #[serde(rename = "jsonFormat", default)]
        json_format: JsonFormat,
    },
    /// A log line as a JSON object.
    Logtojson {
        /// `COMMONAPACHELOG`, `COMBINEDAPACHELOG`, `APACHEERRORLOG`, `SYSLOG`,
        /// `RFC3339SYSLOG`.
        #[serde(rename = "logFormat")]
        log_format: String,
        /// A regex replacing the format's (its groups are the fields; needs
        /// `customFieldNames`).
        #[serde(rename = "matchPattern", default)]
        match_pattern: Option<String>,
        /// Field names replacing the format's.
        #[serde(rename = "customFieldNames", default)]
        custom_field_names: Option<Vec<String>>,
        /// `COMPACT` or `PRETTYPRINT`.
        #[serde(rename = "jsonFormat", default)]
        json_format: JsonFormat,
    },
    /// The record wrapped: `{"ts": …, "metadata": …, "data": "<record>"}`.
    Addmetadata {
        /// `"true"` adds `ts`, when the record was read (UTC, ms).
        #[serde(default)]
        timestamp: Option<String>,
        /// Static metadata, any JSON.
        #[serde(default)]
        metadata: Option<serde_json::Value>,
        /// `COMPACT` or `PRETTYPRINT`.
        #[serde(rename = "jsonFormat", default)]
        json_format: JsonFormat,
    },
    /// The record in braces: `{` + record + `}`.
    Addbrackets,
}

/// Why a config is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not the agent's JSON (an unknown key, a wrong type…).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde's message, naming the key.
        message: String,
    },
    /// A value out of range, or a flow without a destination.
    #[error("{path}: flow {flow} (`{pattern}`): {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Its index.
        flow: usize,
        /// Its pattern.
        pattern: String,
        /// What is wrong.
        message: String,
    },
}

/// The largest record Kinesis takes.
pub const KINESIS_MAX_RECORD: usize = 1024 * 1024;
/// The largest PutRecords request.
pub const KINESIS_MAX_REQUEST: usize = 5 * 1024 * 1024;

impl AgentConfig {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and what is wrong.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` (read from `path`).
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn parse(path: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for (i, flow) in config.flows.iter().enumerate() {
            flow.validate().map_err(|message| ConfigError::Invalid {
                path: path.to_path_buf(),
                flow: i,
                pattern: flow.file_pattern.clone(),
                message,
            })?;
        }
        Ok(config)
    }
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A Kinesis stream, through chief's producer.
    Kinesis(String),
    /// A Firehose delivery stream, with `PutRecordBatch`.
    Firehose(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kinesis(s) => write!(f, "Kinesis stream {s}"),
            Self::Firehose(s) => write!(f, "Firehose delivery stream {s}"),
        }
    }
}

impl Flow {
    /// Where the flow's records go (`kinesisStream`, else `deliveryStream`).
    pub fn destination(&self) -> Destination {
        match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(s), _) => Destination::Kinesis(s.clone()),
            (None, Some(d)) => Destination::Firehose(d.clone()),
            (None, None) => Destination::Kinesis(String::new()),
        }
    }

    /// Where records that do not convert go when not to a file.
    pub fn error_destination(&self) -> Option<Destination> {
        match (&self.error_kinesis_stream, &self.error_delivery_stream) {
            (Some(s), _) => Some(Destination::Kinesis(s.clone())),
            (None, Some(d)) => Some(Destination::Firehose(d.clone())),
            (None, None) => None,
        }
    }

    /// The flow's id in checkpoints and metrics: its destination and pattern.
    pub fn id(&self) -> String {
        match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(s), _) => format!("kinesis:{s}:{}", self.file_pattern),
            (None, Some(d)) => format!("firehose:{d}:{}", self.file_pattern),
            (None, None) => self.file_pattern.clone(),
        }
    }

    /// Checks the values as the agent does.
    ///
    /// # Errors
    /// What is wrong.
    pub fn validate(&self) -> Result<(), String> {
        crate::tail::split_pattern(&self.file_pattern)?;
        match (&self.kinesis_stream, &self.delivery_stream) {
            (Some(_), None) => {}
            (None, Some(_)) => {}
            (Some(_), Some(_)) => {
                return Err("set kinesisStream or deliveryStream, not both".into());
            }
            (None, None) => return Err("set kinesisStream or deliveryStream".into()),
        }
        if !(1_000..=900_000).contains(&self.max_buffer_age_millis) {
            return Err(format!(
                "maxBufferAgeMillis {} is not in 1000–900000",
                self.max_buffer_age_millis
            ));
        }
        if !(1..=500).contains(&self.max_buffer_size_records) {
            return Err(format!(
                "maxBufferSizeRecords {} is not in 1–500",
                self.max_buffer_size_records
            ));
        }
        let max_request = match self.destination() {
            Destination::Kinesis(_) => KINESIS_MAX_REQUEST,
            Destination::Firehose(_) => crate::firehose::MAX_BATCH_BYTES,
        };
        if let Some(bytes) = self.max_buffer_size_bytes
            && !(1..=max_request).contains(&bytes)
        {
            return Err(format!(
                "maxBufferSizeBytes {bytes} is not in 1–{max_request}"
            ));
        }
        let error_outputs = [
            self.error_file.is_some(),
            self.error_kinesis_stream.is_some(),
            self.error_delivery_stream.is_some(),
        ];
        if error_outputs.iter().filter(|set| **set).count() > 1 {
            return Err(
                "set one of chief.errorFile, chief.errorKinesisStream, chief.errorDeliveryStream"
                    .into(),
            );
        }
        for (key, pattern) in [
            ("multiLineStartPattern", &self.multi_line_start_pattern),
            ("fileFooterPattern", &self.file_footer_pattern),
        ] {
            if let Some(pattern) = pattern {
                regex::bytes::Regex::new(pattern).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        crate::convert::Pipeline::new(&self.data_processing_options)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 002's file, verbatim but for the stream name and endpoint.
    pub const SEED_002: &str = r#"{
        "cloudwatch.emitMetrics": true,
        "kinesis.endpoint": "kinesis.us-east-1.amazonaws.com",
        "flows": [
            {
            "filePattern": "/tmp/*.csv*",
            "kinesisStream": "TaxiTrips",
            "partitionKeyOption": "RANDOM",
            "initialPosition": "START_OF_FILE",
                "dataProcessingOptions": [
                    {
                        "optionName": "CSVTOJSON",
                        "customFieldNames": ["VendorID","tpep_pickup_datetime","tpep_dropoff_datetime","passenger_count","trip_distance","RatecodeID","store_and_fwd_flag","PULocationID","DOLocationID","payment_type","fare_amount","extra","mta_tax","tip_amount","tolls_amount","improvement_surcharge","total_amount"],
                        "delimiter": ","
                    }
                ]
            }
        ]
    }"#;

    #[test]
    fn seed_002_loads_as_written() -> Result<(), ConfigError> {
        let c = AgentConfig::parse(std::path::Path::new("agent.json"), SEED_002)?;
        assert!(c.cloudwatch_emit_metrics);
        assert_eq!(c.flows.len(), 1);
        let f = &c.flows[0];
        assert_eq!(f.kinesis_stream.as_deref(), Some("TaxiTrips"));
        assert_eq!(f.initial_position, InitialPosition::StartOfFile);
        assert_eq!(f.max_buffer_age_millis, 60_000);
        assert_eq!(c.checkpoint_file, default_checkpoint_file());
        assert!(matches!(
            &f.data_processing_options[0],
            ProcessingOption::Csvtojson { custom_field_names, delimiter, .. }
                if custom_field_names.len() == 17 && delimiter.as_deref() == Some(",")
        ));
        Ok(())
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let path = std::path::Path::new("agent.json");
        let unknown = SEED_002.replace("\"partitionKeyOption\"", "\"partitionKeyOptoin\"");
        let err = AgentConfig::parse(path, &unknown)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("partitionKeyOptoin"), "{err}");
        let bad = SEED_002.replace("\"CSVTOJSON\"", "\"CSV2JSON\"");
        let err = AgentConfig::parse(path, &bad)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("CSV2JSON"), "{err}");
        let age = SEED_002.replace(
            "\"initialPosition\"",
            "\"maxBufferAgeMillis\": 5, \"initialPosition\"",
        );
        let err = AgentConfig::parse(path, &age)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("maxBufferAgeMillis 5"), "{err}");
    }

    #[test]
    fn firehose_flows_and_error_outputs() -> Result<(), ConfigError> {
        let path = std::path::Path::new("agent.json");
        let firehose = SEED_002.replace("\"kinesisStream\"", "\"deliveryStream\"");
        let c = AgentConfig::parse(path, &firehose)?;
        assert_eq!(
            c.flows[0].destination(),
            Destination::Firehose("TaxiTrips".into())
        );
        // Firehose takes 4 MiB a call, Kinesis 5 MiB.
        let five = "\"maxBufferSizeBytes\": 5242880, \"initialPosition\"";
        let err = AgentConfig::parse(path, &firehose.replace("\"initialPosition\"", five))
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("maxBufferSizeBytes 5242880 is not in 1–4194304"),
            "{err}"
        );
        AgentConfig::parse(path, &SEED_002.replace("\"initialPosition\"", five))?;
        let errors = SEED_002.replace(
            "\"initialPosition\"",
            "\"chief.errorKinesisStream\": \"TaxiErrors\", \"initialPosition\"",
        );
        let c = AgentConfig::parse(path, &errors)?;
        assert_eq!(
            c.flows[0].error_destination(),
            Some(Destination::Kinesis("TaxiErrors".into()))
        );
        let both = errors.replace(
            "\"initialPosition\"",
            "\"chief.errorFile\": \"/tmp/e\", \"initialPosition\"",
        );
        let err = AgentConfig::parse(path, &both)
            .map(|_| ())
            .expect_err("refused")
            .to_string();
        assert!(err.contains("set one of chief.errorFile"), "{err}");
        Ok(())
    }
}
