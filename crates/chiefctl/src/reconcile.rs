//! `chiefctl reconcile`: are the records that were produced in every sink? Reads the JSON
//! lines that were sent (any number of files), takes their unique `orderid`s, and looks
//! each up in the S3 batch files under a prefix, in a MariaDB/Aurora table and in an
//! Elasticsearch index; prints one JSON line with the counts and `lost`, the unique ids
//! missing from at least one of them. Exit 1 when `lost` > 0.
//!
//! ```sh
//! chiefctl reconcile --config config/local.toml --input .local/demo/orders.jsonl \
//!     --s3-prefix ChiefOrderS3 --table orders --index orders
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use chief_config::aws::{AwsClients, AwsConfig};
use chief_config::database::DatabaseConfig;
use chief_config::local_stack::ElasticsearchEndpoint;
use chief_pipeline::model::{JobResult, Order};
use chief_pipeline::tsv;
use elasticsearch::http::transport::Transport;
use elasticsearch::{Elasticsearch, GetParts};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// The sections `reconcile` and `probe` read (others in the files are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SinksConfig {
    /// AWS clients (S3).
    pub aws: AwsConfig,
    /// The database holding the tables.
    pub database: DatabaseConfig,
    /// The Elasticsearch cluster (only `url` is read).
    pub elasticsearch: ElasticsearchEndpoint,
}

/// What to compare.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// JSON lines that were produced (repeatable).
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// The bucket of the batch files.
    #[arg(long, default_value = "chief-archive")]
    pub bucket: String,
    /// An S3 prefix of batch files (e.g. ChiefOrderS3), repeatable: every unique id must
    /// be under each (one per executor that archives the stream); none: S3 is not checked.
    #[arg(long = "s3-prefix")]
    pub s3_prefixes: Vec<String>,
    /// A prefix of dead-letter objects (e.g. `errors`): they are counted (`dead_letters`).
    #[arg(long)]
    pub dead_letter_prefix: Option<String>,
    /// The table (e.g. orders); none: the database is not checked.
    #[arg(long)]
    pub table: Option<String>,
    /// The index (e.g. orders); none: Elasticsearch is not checked.
    #[arg(long)]
    pub index: Option<String>,
    /// Config files ([aws], [database], [elasticsearch] url), e.g. config/local.toml.
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
}

/// The result, printed as one JSON line.
#[derive(Debug, Serialize)]
struct Report {
    produced: usize,
    unique: usize,
    in_s3_unique: Option<usize>,
    s3_rows: Option<usize>,
    in_db: Option<usize>,
    in_es: Option<usize>,
    dead_letters: Option<usize>,
    lost: usize,
    lost_examples: Vec<String>,
}

/// Runs the subcommand.
pub fn main(args: ReconcileArgs) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(&args)));
    match result {
        Ok(report) => {
            match serde_json::to_string(&report) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("chiefctl reconcile: {e}"),
            }
            if report.lost > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("chiefctl reconcile: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the sinks' config sections.
pub fn load_config(paths: &[PathBuf]) -> anyhow::Result<SinksConfig> {
    if paths.is_empty() {
        return Ok(SinksConfig::default());
    }
    chief_config::load(paths).context("loading the config")
}

async fn run(args: &ReconcileArgs) -> anyhow::Result<Report> {
    let config = load_config(&args.config)?;
    let mut produced = 0;
    let mut expected = BTreeSet::new();
    for path in &args.inputs {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            produced += 1;
            // Only a valid record (the record contract) is expected in the sinks.
            if let Ok(id) = Order::parse(line)
                .map(|order| order.orderid)
                .or_else(|_| JobResult::parse(line).map(|job| job.orderid))
            {
                expected.insert(id.as_str().to_owned());
            }
        }
    }
    let mut missing = BTreeSet::new();
    let mut report = Report {
        produced,
        unique: expected.len(),
        in_s3_unique: None,
        s3_rows: None,
        in_db: None,
        in_es: None,
        dead_letters: None,
        lost: 0,
        lost_examples: Vec::new(),
    };
    for prefix in &args.s3_prefixes {
        let (ids, rows) = s3_ids(&config.aws, &args.bucket, prefix).await?;
        // In every prefix: the fewest found in any.
        let found = expected.intersection(&ids).count();
        report.in_s3_unique = Some(report.in_s3_unique.map_or(found, |n| n.min(found)));
        report.s3_rows = Some(report.s3_rows.unwrap_or(0) + rows);
        missing.extend(expected.difference(&ids).cloned());
    }
    if let Some(prefix) = &args.dead_letter_prefix {
        report.dead_letters = Some(count_objects(&config.aws, &args.bucket, prefix).await?);
    }
    if let Some(table) = &args.table {
        let ids = db_ids(&config.database, table).await?;
        report.in_db = Some(expected.intersection(&ids).count());
        missing.extend(expected.difference(&ids).cloned());
    }
    if let Some(index) = &args.index {
        let absent = es_missing(&config.elasticsearch.url, index, &expected).await?;
        report.in_es = Some(expected.len() - absent.len());
        missing.extend(absent);
    }
    report.lost = missing.len();
    report.lost_examples = missing.into_iter().take(5).collect();
    Ok(report)
}

/// The keys of every object under `prefix/`.
async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{prefix}/"))
            .set_continuation_token(token)
            .send()
            .await
            .with_context(|| format!("listing s3://{bucket}/{prefix}/"))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    Ok(keys)
}

/// The unique `orderid`s (first column) of every object under `prefix`, and the rows.
async fn s3_ids(
    aws: &AwsConfig,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<(BTreeSet<String>, usize)> {
    let s3 = AwsClients::new(aws).await.s3();
    let mut ids = BTreeSet::new();
    let mut rows = 0;
    for key in list_keys(&s3, bucket, prefix).await? {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))?
            .body
            .collect()
            .await
            .with_context(|| format!("reading s3://{bucket}/{key}"))?
            .into_bytes();
        for row in tsv::read_rows(&body) {
            rows += 1;
            if let Some(Some(id)) = row.first() {
                ids.insert(String::from_utf8_lossy(id).into_owned());
            }
        }
    }
    Ok((ids, rows))
}

/// How many objects are under `prefix/`.
async fn count_objects(aws: &AwsConfig, bucket: &str, prefix: &str) -> anyhow::Result<usize> {
    let s3 = AwsClients::new(aws).await.s3();
    Ok(list_keys(&s3, bucket, prefix).await?.len())
}

/// The `orderid`s of `table`.
async fn db_ids(database: &DatabaseConfig, table: &str) -> anyhow::Result<BTreeSet<String>> {
    if table.is_empty()
        || !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!("--table `{table}` is not a plain identifier");
    }
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&database.url)
        .await
        .context("connecting to the database (database.url)")?;
    // The key is VARBINARY (sql/0004): the id's UTF-8 bytes.
    let ids: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT orderid FROM `{table}`"
    )))
    .fetch_all(&pool)
    .await
    .with_context(|| format!("reading {table}"))?;
    pool.close().await;
    Ok(ids
        .into_iter()
        .map(|id| String::from_utf8_lossy(&id).into_owned())
        .collect())
}

/// Which of `ids` the index does not have (`GET /<index>/_doc/<id>`, 16 at a time).
pub async fn es_missing(
    url: &str,
    index: &str,
    ids: &BTreeSet<String>,
) -> anyhow::Result<Vec<String>> {
    let client = es_client(url)?;
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.iter().cloned() {
        let (client, limit, index) = (client.clone(), Arc::clone(&limit), index.to_owned());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let found = es_has(&client, &index, &id).await;
            (id, found)
        });
    }
    let mut missing = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, found) = joined.context("lookup task")?;
        if !found.with_context(|| format!("looking up {id} in {index}"))? {
            missing.push(id);
        }
    }
    missing.sort();
    Ok(missing)
}

/// A client for the cluster at `url`.
pub fn es_client(url: &str) -> anyhow::Result<Elasticsearch> {
    let transport =
        Transport::single_node(url).with_context(|| format!("Elasticsearch URL {url}"))?;
    Ok(Elasticsearch::new(transport))
}

/// Whether the index has a document with this id.
pub async fn es_has(client: &Elasticsearch, index: &str, id: &str) -> anyhow::Result<bool> {
    let response = client
        .get(GetParts::IndexId(index, id))
        .send()
        .await
        .context("GET _doc")?;
    match response.status_code().as_u16() {
        200 => Ok(true),
        404 => Ok(false),
        status => bail!("GET /{index}/_doc/{id}: HTTP {status}"),
    }
}
