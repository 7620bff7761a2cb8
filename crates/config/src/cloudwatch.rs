//! Publishing the `metrics` crate's counters, gauges and histograms to CloudWatch, as the
//! KPL and KCL do: one namespace per application, the metric names chief already uses for
//! Prometheus (`UserRecordsPut`, `RecordsProcessed`, `MillisBehindLatest`, …), one
//! `PutMetricData` batch per interval.
//!
//! [`CloudWatchRecorder`] is a `metrics::Recorder` that keeps every metric in a
//! `metrics_util` registry (atomics, no locks on the hot path); the telemetry set-up
//! installs it next to the Prometheus recorder (a fan-out), so both see every update.
//! [`CloudWatchExporter`] reads that registry every `interval_ms` and publishes:
//!
//! - a **counter** as the increase since the last successful publish (`Value`, unit
//!   `Count` unless the metric was described with another unit); a counter that did not
//!   move is not sent (as the KPL, which sends only metrics with data in the period);
//! - a **gauge** as its current value, every interval;
//! - a **histogram** as a statistic set (`SampleCount`, `Sum`, `Minimum`, `Maximum`) of
//!   the values recorded since the last successful publish; empty ones are not sent.
//!
//! Labels become dimensions, named as the KPL/KCL name them where one exists (`stream` →
//! `StreamName`, `shard_id` → `ShardId`, `code` → `ErrorCode`, `worker` →
//! `WorkerIdentifier`); other labels keep their name. A request that fails (after the SDK's
//! retries) loses nothing: its counters' increases and histograms' values are sent with
//! the next interval. Non-finite values are skipped (CloudWatch rejects them).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_sdk_cloudwatch::error::DisplayErrorContext;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit, StatisticSet};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// Data points per `PutMetricData` request (the CloudWatch limit is 1,000 metrics and
/// 1 MB; a datum of chief's is well under 1 KB).
pub const MAX_DATUMS_PER_REQUEST: usize = 1_000;

/// Dimensions per metric that CloudWatch accepts.
pub const MAX_DIMENSIONS: usize = 30;

/// Label names that become the dimension names the KPL and KCL use.
const DIMENSION_NAMES: &[(&str, &str)] = &[
    ("stream", "StreamName"),
    ("shard_id", "ShardId"),
    ("code", "ErrorCode"),
    ("worker", "WorkerIdentifier"),
];

/// `[metrics] cloudwatch = { namespace = "chief-order-es-s3", interval_ms = 60000 }`:
/// publish the metrics to CloudWatch. Off unless the table is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// The CloudWatch namespace, one per application as the KPL/KCL do (e.g. the binary's
    /// name). Required; 1–255 characters, not starting with `AWS/`.
    pub namespace: String,
    /// How often to publish, in milliseconds. Default 60000 (CloudWatch's standard
    /// resolution is one minute); at least 1000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
}

fn default_interval_ms() -> u64 {
    60_000
}

impl CloudWatchConfig {
    /// Checks the namespace and the interval.
    pub fn validate(&self) -> Result<(), CloudWatchError> {
        let ns = &self.namespace;
        let why = if ns.is_empty() || ns.chars().count() > 255 {
            Some("must have 1 to 255 characters")
        } else if ns.starts_with("AWS/") {
            Some("must not start with AWS/ (reserved for AWS services)")
        } else if ns.chars().any(|c| c.is_control()) {
            Some("must not contain control characters")
        } else {
            None
        };
        if let Some(reason) = why {
            return Err(CloudWatchError::Namespace {
                namespace: ns.clone(),
                reason,
            });
        }
        if self.interval_ms < 1_000 {
            return Err(CloudWatchError::Interval(self.interval_ms));
        }
        Ok(())
    }

    /// The publishing interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
}

/// What went wrong with the CloudWatch exporter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudWatchError {
    /// The namespace is not one CloudWatch accepts.
    #[error("metrics.cloudwatch.namespace {namespace:?} {reason}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The interval is too short.
    #[error("metrics.cloudwatch.interval_ms must be at least 1000 (got {0})")]
    Interval(u64),
    /// `PutMetricData` failed (after the SDK's retries); the data is kept for the next
    /// interval.
    #[error("PutMetricData of {datums} data points to namespace {namespace} failed: {message}")]
    Put {
        /// The namespace.
        namespace: String,
        /// Data points in the failed requests.
        datums: usize,
        /// The SDK error, with its context.
        message: String,
    },
}

/// A `metrics::Recorder` that keeps the values for [`CloudWatchExporter`]. Cheap to clone
/// (one shared registry).
#[derive(Debug, Clone)]
pub struct CloudWatchRecorder {
    state: Arc<RecorderState>,
}

struct RecorderState {
    registry: Registry<Key, AtomicStorage>,
    units: Mutex<HashMap<String, Unit>>,
}

impl std::fmt::Debug for RecorderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecorderState").finish_non_exhaustive()
    }
}

impl Default for CloudWatchRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl CloudWatchRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            state: Arc::new(RecorderState {
                registry: Registry::atomic(),
                units: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn describe(&self, key: &KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.state
                .units
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.as_str().to_owned(), unit);
        }
    }

    fn unit_of(&self, name: &str) -> Option<Unit> {
        self.state
            .units
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }
}

impl Recorder for CloudWatchRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.state
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.state
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.state
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// Count, sum, minimum and maximum of a histogram's values (a CloudWatch statistic set).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Stats {
    const EMPTY: Stats = Stats {
        count: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// One value to publish, and what to remember once it was published.
#[derive(Debug)]
enum Sample {
    /// A counter's total now and the increase since the last publish.
    Counter { total: u64, increase: u64 },
    /// A gauge's value.
    Gauge(f64),
    /// A histogram's values since the last publish.
    Histogram(Stats),
}

/// Publishes a [`CloudWatchRecorder`]'s metrics with `PutMetricData`.
#[derive(Debug)]
pub struct CloudWatchExporter {
    client: aws_sdk_cloudwatch::Client,
    namespace: String,
    recorder: CloudWatchRecorder,
    /// Counter totals as last published.
    published: HashMap<Key, u64>,
    /// Histogram values drained from the registry but not yet published.
    pending: HashMap<Key, Stats>,
}

impl CloudWatchExporter {
    /// An exporter of `recorder`'s metrics to `config.namespace`.
    pub fn new(
        client: aws_sdk_cloudwatch::Client,
        config: &CloudWatchConfig,
        recorder: CloudWatchRecorder,
    ) -> Result<Self, CloudWatchError> {
        config.validate()?;
        Ok(Self {
            client,
            namespace: config.namespace.clone(),
            recorder,
            published: HashMap::new(),
            pending: HashMap::new(),
        })
    }

    /// The namespace it publishes to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Publishes what changed since the last successful publish; returns the number of
    /// data points sent. On error the unsent increases and values stay for the next call.
    pub async fn publish(&mut self) -> Result<usize, CloudWatchError> {
        let samples = self.collect();
        if samples.is_empty() {
            return Ok(0);
        }
        let timestamp = DateTime::from(SystemTime::now());
        let mut sent = 0;
        let mut failed = 0;
        let mut first_error = None;
        for chunk in samples.chunks(MAX_DATUMS_PER_REQUEST) {
            let data: Vec<MetricDatum> = chunk
                .iter()
                .map(|(key, sample)| self.datum(key, sample, timestamp))
                .collect();
            let result = self
                .client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(data))
                .send()
                .await;
            match result {
                Ok(_) => {
                    sent += chunk.len();
                    for (key, sample) in chunk {
                        match sample {
                            Sample::Counter { total, .. } => {
                                self.published.insert(key.clone(), *total);
                            }
                            Sample::Histogram(_) => {
                                self.pending.remove(key);
                            }
                            Sample::Gauge(_) => {}
                        }
                    }
                }
                Err(e) => {
                    failed += chunk.len();
                    first_error.get_or_insert_with(|| DisplayErrorContext(&e).to_string());
                }
            }
        }
        match first_error {
            None => Ok(sent),
            Some(message) => Err(CloudWatchError::Put {
                namespace: self.namespace.clone(),
                datums: failed,
                message,
            }),
        }
    }

    /// Publishes every `interval` until `stop` is cancelled, then once more (the last
    /// values before the process exits). Failures are logged, never fatal.
    pub async fn run(mut self, interval: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.publish_logged().await,
                () = stop.cancelled() => {
                    self.publish_logged().await;
                    return;
                }
            }
        }
    }

    async fn publish_logged(&mut self) {
        match self.publish().await {
            Ok(datums) => {
                tracing::debug!(namespace = %self.namespace, datums, "metrics published to CloudWatch");
            }
            Err(e) => {
                tracing::warn!(error = %e, "CloudWatch metrics not published; retrying next interval")
            }
        }
    }

    /// The samples to publish now: counters that moved, every finite gauge, histograms
    /// with values (drained from the registry into `pending`).
    fn collect(&mut self) -> Vec<(Key, Sample)> {
        let registry = &self.recorder.state.registry;
        let mut samples = Vec::new();
        registry.visit_counters(|key, counter| {
            let total = counter.load(Ordering::Acquire);
            let before = self.published.get(key).copied().unwrap_or(0);
            // A counter set lower (`absolute`) started again from zero.
            let increase = if total >= before {
                total - before
            } else {
                total
            };
            if increase > 0 {
                samples.push((key.clone(), Sample::Counter { total, increase }));
            }
        });
        registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(Ordering::Acquire));
            if value.is_finite() {
                samples.push((key.clone(), Sample::Gauge(value)));
            }
        });
        let pending = &mut self.pending;
        registry.visit_histograms(|key, bucket| {
            let mut stats = Stats::EMPTY;
            bucket.clear_with(|values| {
                for v in values.iter().copied().filter(|v| v.is_finite()) {
                    stats.add(v);
                }
            });
            if stats.count > 0 {
                pending
                    .entry(key.clone())
                    .or_insert(Stats::EMPTY)
                    .merge(&stats);
            }
        });
        samples.extend(
            self.pending
                .iter()
                .filter(|(_, s)| s.count > 0)
                .map(|(k, s)| (k.clone(), Sample::Histogram(*s))),
        );
        samples.retain(|(key, _)| {
            let labels = key.labels().filter(|l| !l.value().is_empty()).count();
            if labels > MAX_DIMENSIONS {
                tracing::warn!(
                    metric = key.name(),
                    labels,
                    "more labels than CloudWatch's 30 dimensions; not published"
                );
            }
            labels <= MAX_DIMENSIONS
        });
        samples
    }

    fn datum(&self, key: &Key, sample: &Sample, timestamp: DateTime) -> MetricDatum {
        let dimensions = key
            .labels()
            .filter(|l| !l.value().is_empty())
            .map(|l| {
                Dimension::builder()
                    .name(dimension_name(l.key()))
                    .value(l.value())
                    .build()
            })
            .collect();
        let unit = self.recorder.unit_of(key.name()).and_then(standard_unit);
        let builder = MetricDatum::builder()
            .metric_name(key.name())
            .set_dimensions(Some(dimensions))
            .timestamp(timestamp);
        match sample {
            Sample::Counter { increase, .. } => builder
                .value(*increase as f64)
                .unit(unit.unwrap_or(StandardUnit::Count)),
            Sample::Gauge(value) => builder.value(*value).set_unit(unit),
            Sample::Histogram(s) => builder
                .statistic_values(
                    StatisticSet::builder()
                        .sample_count(s.count as f64)
                        .sum(s.sum)
                        .minimum(s.min)
                        .maximum(s.max)
                        .build(),
                )
                .set_unit(unit),
        }
        .build()
    }
}

/// The dimension name of a label: the KPL/KCL name where one exists.
pub fn dimension_name(label: &str) -> &str {
    DIMENSION_NAMES
        .iter()
        .find(|(l, _)| *l == label)
        .map_or(label, |(_, d)| d)
}

/// The CloudWatch unit of a `metrics` unit, where CloudWatch has the same one.
fn standard_unit(unit: Unit) -> Option<StandardUnit> {
    Some(match unit {
        Unit::Count => StandardUnit::Count,
        Unit::Percent => StandardUnit::Percent,
        Unit::Seconds => StandardUnit::Seconds,
        Unit::Milliseconds => StandardUnit::Milliseconds,
        Unit::Microseconds => StandardUnit::Microseconds,
        Unit::Bytes => StandardUnit::Bytes,
        Unit::CountPerSecond => StandardUnit::CountSecond,
        Unit::BitsPerSecond => StandardUnit::BitsSecond,
        Unit::KilobitsPerSecond => StandardUnit::KilobitsSecond,
        Unit::MegabitsPerSecond => StandardUnit::MegabitsSecond,
        Unit::GigabitsPerSecond => StandardUnit::GigabitsSecond,
        Unit::TerabitsPerSecond => StandardUnit::TerabitsSecond,
        // Binary multiples (KiB…) and nanoseconds have no CloudWatch unit.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ns: &str, interval_ms: u64) -> CloudWatchConfig {
        CloudWatchConfig {
            namespace: ns.to_owned(),
            interval_ms,
        }
    }

    #[test]
    fn config_is_checked() {
        assert!(config("chief-order-es-s3", 60_000).validate().is_ok());
        assert!(matches!(
            config("", 60_000).validate(),
            Err(CloudWatchError::Namespace { .. })
        ));
        assert!(matches!(
            config("AWS/Kinesis", 60_000).validate(),
            Err(CloudWatchError::Namespace { .. })
        ));
        assert!(matches!(
            config(&"n".repeat(256), 60_000).validate(),
            Err(CloudWatchError::Namespace { .. })
        ));
        assert!(matches!(
            config("chief", 999).validate(),
            Err(CloudWatchError::Interval(999))
        ));
    }

    #[test]
    fn interval_defaults_to_a_minute_and_unknown_keys_are_refused() {
        let c: CloudWatchConfig = toml::from_str(r#"namespace = "chief""#).expect("parse");
        assert_eq!(c.interval(), Duration::from_secs(60));
        assert!(toml::from_str::<CloudWatchConfig>(r#"interval_ms = 1000"#).is_err());
        assert!(toml::from_str::<CloudWatchConfig>("namespace = \"chief\"\nperiod = 1").is_err());
    }

    #[test]
    fn labels_become_kpl_dimension_names() {
        assert_eq!(dimension_name("stream"), "StreamName");
        assert_eq!(dimension_name("shard_id"), "ShardId");
        assert_eq!(dimension_name("code"), "ErrorCode");
        assert_eq!(dimension_name("worker"), "WorkerIdentifier");
        assert_eq!(dimension_name("executor"), "executor");
    }

    #[test]
    fn stats_merge() {
        let mut a = Stats::EMPTY;
        a.add(3.0);
        a.add(1.0);
        let mut b = Stats::EMPTY;
        b.add(10.0);
        a.merge(&b);
        assert_eq!(
            a,
            Stats {
                count: 3,
                sum: 14.0,
                min: 1.0,
                max: 10.0
            }
        );
    }
}
