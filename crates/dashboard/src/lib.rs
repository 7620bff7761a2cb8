//! `chief-dashboard`: seed 000's realtime web front-end. A consumer application on
//! `OrdersStream` and `JobResultsStream` (a lease table of its own for each) that
//! de-duplicates the records by `orderid` with the pipeline's window and serves one page
//! that updates itself over Server-Sent Events ([`http`]): unique orders and job results
//! so far and per second, revenue, job results by status, the latest orders, duplicates
//! dropped, records that do not parse, each shard's `MillisBehindLatest` and lease owner.
//!
//! Each instance is its own application (its own lease tables) and reads every shard, so
//! any instance behind a load balancer shows everything. The state is in memory: the
//! dashboard checkpoints only `SHARD_END`, and at start (`reset_leases`) forgets its
//! leases so that it reads both streams again from their oldest record — the page shows
//! the streams' retention window, exactly, after any restart.

pub mod cli;
pub mod http;
pub mod metrics;
mod processor;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::health::Health;
use chief_config::telemetry::{LogConfig, MetricsConfig};
use chief_consumer::{ConsumerConfig, ConsumerError, DynamoDbLeaseStore, LeaseStore, Scheduler};
use chief_pipeline::dedup::DedupConfig;
use chief_stream::{KinesisClient, StreamClient};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use processor::{DashboardFactory, DashboardProcessor};

use crate::state::{Board, Source};

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the page is served. Default `0.0.0.0:8080`.
    pub listen: String,
    /// Events queued per browser before it is told to reload. Default 1,024.
    pub client_queue: usize,
    /// Events kept for browsers that reconnect with `Last-Event-ID`. Default 10,000.
    pub history: usize,
    /// Orders in the page's latest orders. Default 20.
    pub latest: usize,
    /// Close each event stream after this many seconds (0: never); the browser
    /// reconnects and resumes. Default 0.
    pub sse_max_age_s: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".to_owned(),
            client_queue: 1_024,
            history: 10_000,
            latest: 20,
            sse_max_age_s: 0,
        }
    }
}

/// The dashboard's config (`config/dashboard.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Logging.
    pub log: LogConfig,
    /// `/healthz`, `/readyz`, `/metrics` (Prometheus) and CloudWatch.
    pub metrics: MetricsConfig,
    /// AWS clients.
    pub aws: AwsConfig,
    /// The orders stream and this instance's lease table for it.
    pub orders: ConsumerConfig,
    /// The job results stream and this instance's lease table for it.
    pub jobresults: ConsumerConfig,
    /// The de-duplication window (the executors' `[dedup]`).
    pub dedup: DedupConfig,
    /// The web server.
    pub http: HttpConfig,
    /// Forget this instance's leases at start, so both streams are read again from
    /// their oldest record and the page is exact after a restart. Default true.
    pub reset_leases: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            aws: AwsConfig::default(),
            orders: ConsumerConfig::default(),
            jobresults: ConsumerConfig::default(),
            dedup: DedupConfig::default(),
            http: HttpConfig::default(),
            reset_leases: true,
        }
    }
}

impl DashboardConfig {
    /// Checks what the dashboard uses.
    ///
    /// # Errors
    /// [`DashboardError::Config`] naming the field.
    pub fn validate(&self) -> Result<(), DashboardError> {
        let bad = |message: String| DashboardError::Config { message };
        self.orders
            .validate()
            .map_err(|e| bad(format!("orders: {e}")))?;
        self.jobresults
            .validate()
            .map_err(|e| bad(format!("jobresults: {e}")))?;
        if self.orders.table == self.jobresults.table {
            return Err(bad(format!(
                "orders.table and jobresults.table are both `{}`: each stream needs a lease table of its own",
                self.orders.table
            )));
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(bad(format!(
                "http.listen: `{}` is not an address",
                self.http.listen
            )));
        }
        Ok(())
    }
}

/// Why the dashboard stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// The config is not usable.
    #[error("bad config: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// The web server could not start or failed.
    #[error("web server on {listen}")]
    Http {
        /// Its address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A lease table could not be reset.
    #[error("resetting lease table {table}")]
    Reset {
        /// The table.
        table: String,
        /// Why.
        #[source]
        source: chief_consumer::LeaseError,
    },
    /// A consumer failed.
    #[error("consumer of {stream} failed")]
    Consumer {
        /// Its stream.
        stream: String,
        /// Why.
        #[source]
        source: Box<ConsumerError>,
    },
}

/// The parts a dashboard runs on; [`run`] builds them from the config.
pub struct Parts<C, L> {
    /// The stream client.
    pub stream: C,
    /// The orders' lease table.
    pub orders_leases: L,
    /// The job results' lease table.
    pub jobresults_leases: L,
    /// Where readiness is reported.
    pub health: Health,
}

/// Runs the dashboard of `config` on its AWS clients until `shutdown`.
///
/// # Errors
/// A bad config, an address that cannot be bound, or a consumer failure (a missing
/// stream or table, refused credentials).
pub async fn run(
    config: DashboardConfig,
    shutdown: CancellationToken,
    health: Health,
) -> Result<(), DashboardError> {
    config.validate()?;
    let clients = AwsClients::new(&config.aws).await;
    let parts = Parts {
        stream: KinesisClient::new(clients.kinesis()),
        orders_leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.orders.table),
        jobresults_leases: DynamoDbLeaseStore::new(clients.dynamodb(), &config.jobresults.table),
        health,
    };
    run_with(config, parts, shutdown, |_| {}).await
}

async fn reset<L: LeaseStore>(leases: &L) -> Result<usize, DashboardError> {
    let error = |source| DashboardError::Reset {
        table: leases.table().to_owned(),
        source,
    };
    leases.ensure_table().await.map_err(error)?;
    let all = leases.list_leases().await.map_err(error)?;
    for lease in &all {
        leases.delete_lease(&lease.lease_key).await.map_err(error)?;
    }
    Ok(all.len())
}

/// [`run`] on the given parts; `listening` is called with the page's address once the
/// server is bound.
///
/// # Errors
/// As [`run`].
pub async fn run_with<C, L>(
    config: DashboardConfig,
    parts: Parts<C, L>,
    shutdown: CancellationToken,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), DashboardError>
where
    C: StreamClient + Clone,
    L: LeaseStore,
{
    config.validate()?;
    let worker_id = config
        .orders
        .worker_id
        .clone()
        .unwrap_or_else(chief_config::service::default_worker_id);
    if config.reset_leases {
        for leases in [&parts.orders_leases, &parts.jobresults_leases] {
            let n = reset(leases).await?;
            tracing::info!(
                table = leases.table(),
                leases = n,
                "leases forgotten: reading from the oldest record"
            );
        }
    }
    let board = Arc::new(Board::new(
        &config.dedup,
        config.http.latest,
        config.http.history,
        config.http.client_queue,
        &worker_id,
    ));
    let stop = shutdown.child_token();
    let max_age =
        (config.http.sse_max_age_s > 0).then(|| Duration::from_secs(config.http.sse_max_age_s));
    let (addr, server) = http::serve(
        &config.http.listen,
        Arc::clone(&board),
        parts.health.clone(),
        max_age,
        stop.clone(),
    )
    .await
    .map_err(|source| DashboardError::Http {
        listen: config.http.listen.clone(),
        source,
    })?;
    tracing::info!(%addr, "dashboard on http://{addr}/");
    listening(addr);
    let mut orders_config = config.orders.clone();
    orders_config.worker_id = Some(worker_id.clone());
    let mut jobs_config = config.jobresults.clone();
    jobs_config.worker_id = Some(worker_id.clone());
    let consumer = |config: ConsumerConfig, leases: L, source: Source| {
        let stream = config.stream.clone();
        let scheduler = Scheduler::new(
            config,
            parts.stream.clone(),
            leases,
            DashboardFactory::new(Arc::clone(&board), source),
        )
        .map(|s| s.with_health(parts.health.clone()));
        let stop = stop.clone();
        async move {
            let scheduler = scheduler.map_err(|source| DashboardError::Consumer {
                stream: stream.clone(),
                source: Box::new(source),
            })?;
            let result = scheduler.run(stop.clone()).await;
            // One consumer failing stops the dashboard (systemd restarts it).
            stop.cancel();
            result.map_err(|source| DashboardError::Consumer {
                stream,
                source: Box::new(source),
            })
        }
    };
    let (orders, jobs) = tokio::join!(
        consumer(orders_config, parts.orders_leases, Source::Orders),
        consumer(jobs_config, parts.jobresults_leases, Source::JobResults),
    );
    stop.cancel();
    let served = server.await;
    orders?;
    jobs?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(DashboardError::Http {
            listen: config.http.listen.clone(),
            source,
        }),
        Err(join) => Err(DashboardError::Http {
            listen: config.http.listen,
            source: std::io::Error::other(join.to_string()),
        }),
    }
}
