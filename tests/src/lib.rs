//! The harness of chief's end-to-end tests: a [`Run`] owns one pipeline on the local
//! stack (`make stack-up`) with its own streams, bucket, lease tables, indices and
//! MariaDB tables, runs the real binaries (`target/debug/…`, built by `cargo test
//! --workspace`) as child processes, and checks the sinks with `chiefctl reconcile`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chief_config::aws::AwsClients;
use chief_config::local_stack::{LocalStack, workspace_root};
use chief_datagen::Generator;
use chief_pipeline::model::{JobResult, Order};
use chief_stream::KinesisClient;
use serde_json::Value;

/// The four executors, as (config name, stream kind).
pub const EXECUTORS: [&str; 4] = [
    "order-factory-s3",
    "order-es-s3",
    "jobresult-es",
    "jobresult-notify-s3",
];

/// Where the binaries are: next to the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace --bins`; `make test` does)",
        path.display()
    );
    path
}

/// `chief-loader migrate` with the loader's and the local stack's config, run from the
/// workspace root (point it at a database with `CHIEF__DATABASE__URL`).
pub fn loader_migrate() -> Command {
    let mut command = Command::new(bin("chief-loader"));
    command
        .args([
            "--config",
            "config/loader.toml",
            "--config",
            "config/local.toml",
            "migrate",
        ])
        .current_dir(workspace_root());
    command
}

/// A running child process with its log file.
pub struct Proc {
    /// What it is.
    pub name: String,
    /// The process.
    pub child: Child,
    /// Its stdout + stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Sends SIGTERM and waits (at most 90 s) for it to exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 90 s of SIGTERM (log {})",
                self.name,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, no goodbye.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit by itself.
    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("wait")
    }
}

/// Sends `SIG<sig>` to the child.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {}", child.id());
}

/// Counts of one kind of record across the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Unique ids produced.
    pub unique: u64,
    /// Of those, in the S3 files.
    pub in_s3: u64,
    /// Of those, in the table (when asked).
    pub in_db: Option<u64>,
    /// Of those, in the index.
    pub in_es: u64,
    /// Missing from at least one sink.
    pub lost: u64,
}

/// One pipeline on the local stack.
pub struct Run {
    /// The local stack's settings.
    pub stack: LocalStack,
    /// AWS clients on it.
    pub clients: AwsClients,
    /// Unique suffix of every name.
    pub id: String,
    /// Work folder (inputs, overlays, logs): `.local/e2e/<test>-<id>/`.
    pub dir: PathBuf,
    /// Orders stream.
    pub orders: String,
    /// Job results stream.
    pub jobs: String,
    /// Bucket.
    pub bucket: String,
}

impl Run {
    /// Streams (4 and 2 shards), bucket, tables and a work folder for `test`.
    pub async fn new(test: &str) -> Self {
        let stack = LocalStack::require();
        let clients = AwsClients::new(&stack.aws).await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = workspace_root()
            .join(".local/e2e")
            .join(format!("{test}-{id}"));
        std::fs::create_dir_all(&dir).expect("work dir");
        let run = Self {
            orders: format!("e2e-orders-{id}"),
            jobs: format!("e2e-jobs-{id}"),
            bucket: format!("e2e-{id}"),
            stack,
            clients,
            id,
            dir,
        };
        let kinesis = KinesisClient::new(run.clients.kinesis());
        kinesis
            .create_stream(&run.orders, 4)
            .await
            .expect("CreateStream");
        kinesis
            .create_stream(&run.jobs, 2)
            .await
            .expect("CreateStream");
        for s in [&run.orders, &run.jobs] {
            kinesis
                .wait_until_active(s, Duration::from_secs(60))
                .await
                .expect("ACTIVE");
        }
        run.clients
            .s3()
            .create_bucket()
            .bucket(&run.bucket)
            .send()
            .await
            .expect("CreateBucket");
        run.write_overlays();
        run
    }

    /// The MariaDB table of `kind` (`orders` or `jobresults`) for this run.
    pub fn table(&self, kind: &str) -> String {
        format!("e2e_{kind}_{}", self.id)
    }

    /// The Elasticsearch index of `kind` for this run.
    pub fn index(&self, kind: &str) -> String {
        format!("{kind}-{}", self.id)
    }

    fn write_overlays(&self) {
        for executor in EXECUTORS {
            let (stream, kind) = if executor.starts_with("order") {
                (&self.orders, "orders")
            } else {
                (&self.jobs, "jobresults")
            };
            let text = format!(
                "[consumer]\nstream = \"{stream}\"\ntable = \"e2e-{executor}-{id}\"\n\
                 failover_time_ms = 3000\nlease_taking_interval_ms = 500\n\
                 shard_sync_interval_ms = 2000\npoll_interval_ms = 100\nidle_time_max_ms = 200\n\
                 [archive]\nbucket = \"{bucket}\"\nmax_age_ms = 1000\n\
                 [elasticsearch]\nindex = \"{index}\"\nmax_age_ms = 200\n",
                id = self.id,
                bucket = self.bucket,
                index = self.index(kind),
            );
            std::fs::write(self.dir.join(format!("{executor}.toml")), text).expect("overlay");
        }
        let loader = format!(
            "[loader]\nmode = \"local\"\nbucket = \"{bucket}\"\n\
             [loader.tables.orders]\ntable = \"{orders}\"\n\
             [loader.tables.jobresults]\ntable = \"{jobs}\"\n",
            bucket = self.bucket,
            orders = self.table("orders"),
            jobs = self.table("jobresults"),
        );
        std::fs::write(self.dir.join("loader.toml"), loader).expect("overlay");
    }

    /// Creates this run's tables in `database_url` (like the migrated ones; `make test`
    /// migrates the shared database first, this migrates it if nobody did).
    pub async fn create_tables(&self, database_url: &str) {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await
            .expect("MariaDB (make stack-up)");
        let migrated: Option<String> = sqlx::query_scalar(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = 'jobresults'",
        )
        .fetch_optional(&pool)
        .await
        .expect("information_schema");
        if migrated.is_none() {
            let status = loader_migrate()
                .env("CHIEF__DATABASE__URL", database_url)
                .status()
                .expect("chief-loader migrate");
            assert!(status.success(), "chief-loader migrate: {status}");
        }
        for kind in ["orders", "jobresults"] {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS `{}` LIKE `{kind}`",
                self.table(kind)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .expect("CREATE TABLE LIKE");
        }
        pool.close().await;
    }

    /// Writes `count` orders and job results (seed `seed`, 10 % duplicates) as JSON lines.
    pub fn inputs(&self, count: usize, seed: u64) -> (PathBuf, PathBuf) {
        let orders = self.dir.join("orders.jsonl");
        let jobs = self.dir.join("jobresults.jsonl");
        let lines = |records: Vec<Vec<u8>>| {
            let mut out = Vec::new();
            for r in records {
                out.extend_from_slice(&r);
                out.push(b'\n');
            }
            out
        };
        let o: Vec<Vec<u8>> = Generator::<Order>::new(seed, 0.1)
            .expect("generator")
            .take(count)
            .map(|r| serde_json::to_vec(&r).expect("json"))
            .collect();
        let j: Vec<Vec<u8>> = Generator::<JobResult>::new(seed, 0.1)
            .expect("generator")
            .take(count)
            .map(|r| serde_json::to_vec(&r).expect("json"))
            .collect();
        std::fs::write(&orders, lines(o)).expect("write");
        std::fs::write(&jobs, lines(j)).expect("write");
        (orders, jobs)
    }

    /// Splits `input` into `parts` files of consecutive lines.
    pub fn split_input(&self, input: &Path, parts: usize) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(input).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        let per = lines.len().div_ceil(parts);
        lines
            .chunks(per)
            .enumerate()
            .map(|(i, chunk)| {
                let path = self.dir.join(format!("part-{i}.jsonl"));
                std::fs::write(&path, format!("{}\n", chunk.join("\n"))).expect("write");
                path
            })
            .collect()
    }

    fn spawn(&self, name: &str, program: &Path, args: &[String], env: &[(&str, &str)]) -> Proc {
        let log = self.dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        Proc {
            name: name.to_owned(),
            child: command.spawn().expect("spawn"),
            log,
        }
    }

    /// Starts a worker of `executor` (e.g. `order-factory-s3`) named `worker`.
    pub fn executor(&self, executor: &str, worker: &str) -> Proc {
        self.executor_with_env(executor, worker, &[])
    }

    /// [`Run::executor`] with extra environment variables.
    pub fn executor_with_env(&self, executor: &str, worker: &str, env: &[(&str, &str)]) -> Proc {
        let args = vec![
            "--config".into(),
            format!("config/{executor}.toml"),
            "--config".into(),
            "config/local.toml".into(),
            "--config".into(),
            self.dir
                .join(format!("{executor}.toml"))
                .display()
                .to_string(),
            "--worker-id".into(),
            format!("{worker}-{}", self.id),
        ];
        self.spawn(worker, &bin(&format!("chief-{executor}")), &args, env)
    }

    /// Starts the four executors, two workers of order-factory-s3 (`ofs-a`, `ofs-b`).
    pub fn executors(&self) -> Vec<Proc> {
        vec![
            self.executor("order-factory-s3", "ofs-a"),
            self.executor("order-factory-s3", "ofs-b"),
            self.executor("order-es-s3", "oes"),
            self.executor("jobresult-es", "jes"),
            self.executor("jobresult-notify-s3", "jns"),
        ]
    }

    /// Starts `chief-producer` putting `input` into `stream`.
    pub fn producer(&self, name: &str, stream: &str, input: &Path) -> Proc {
        let args = vec![
            "--config".into(),
            "config/producer.toml".into(),
            "--config".into(),
            "config/local.toml".into(),
            "--stream".into(),
            stream.to_owned(),
            "--records".into(),
            if stream == self.jobs {
                "jobresults"
            } else {
                "orders"
            }
            .into(),
            "--input".into(),
            input.display().to_string(),
            "--failed-file".into(),
            self.dir
                .join(format!("{name}-failed.jsonl"))
                .display()
                .to_string(),
            "--progress".into(),
            "0".into(),
        ];
        // kinesis-local on a loaded CI machine can be far slower than Kinesis: records get
        // 5 minutes before they count as failed.
        self.spawn(
            name,
            &bin("chief-producer"),
            &args,
            &[("CHIEF__PRODUCER__RECORD_TTL_MS", "300000")],
        )
    }

    /// Puts `input` into `stream` and waits: every record put.
    pub fn produce(&self, name: &str, stream: &str, input: &Path) {
        let status = self.producer(name, stream, input).wait();
        assert!(status.success(), "{name}: chief-producer {status}");
    }

    /// Runs `chief-loader run` (local mode) into this run's tables; its exit status.
    pub fn load(&self, env: &[(&str, &str)]) -> ExitStatus {
        self.spawn("loader", &bin("chief-loader"), &self.loader_args(), env)
            .wait()
    }

    /// The arguments of `chief-loader run` into this run's tables.
    pub fn loader_args(&self) -> Vec<String> {
        vec![
            "--config".into(),
            "config/loader.toml".into(),
            "--config".into(),
            "config/local.toml".into(),
            "--config".into(),
            self.dir.join("loader.toml").display().to_string(),
            "run".into(),
        ]
    }

    /// `chiefctl reconcile` of `input` against the S3 prefix, the index and (with
    /// `table`) the table of `kind`.
    pub fn reconcile(
        &self,
        kind: &str,
        input: &[&Path],
        table: bool,
        env: &[(&str, &str)],
    ) -> Reconciled {
        // Every executor that archives the stream: each prefix must hold every id.
        let prefixes: &[&str] = if kind == "orders" {
            &["ChiefOrderS3", "ChiefOrderEsS3"]
        } else {
            &["ChiefJobResultNotifyS3"]
        };
        let mut args: Vec<String> = vec![
            "reconcile".into(),
            "--config".into(),
            "config/local.toml".into(),
            "--bucket".into(),
            self.bucket.clone(),
            "--index".into(),
            self.index(kind),
        ];
        for prefix in prefixes {
            args.push("--s3-prefix".into());
            args.push((*prefix).into());
        }
        for path in input {
            args.push("--input".into());
            args.push(path.display().to_string());
        }
        if table {
            args.push("--table".into());
            args.push(self.table(kind));
        }
        let mut command = Command::new(bin("chiefctl"));
        command.args(&args).current_dir(workspace_root());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().expect("chiefctl reconcile");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "chiefctl reconcile: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let n = |k: &str| report[k].as_u64().unwrap_or(0);
        Reconciled {
            unique: n("unique"),
            in_s3: n("in_s3_unique"),
            in_db: report["in_db"].as_u64(),
            in_es: n("in_es"),
            lost: n("lost"),
        }
    }

    /// Waits (at most `secs`) until S3 and Elasticsearch hold every unique id of both
    /// inputs.
    pub fn wait_caught_up(&self, orders: &[&Path], jobs: &[&Path], secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let o = self.reconcile("orders", orders, false, &[]);
            let j = self.reconcile("jobresults", jobs, false, &[]);
            if o.lost == 0 && j.lost == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not caught up after {secs} s: orders {o:?}, job results {j:?} (logs in {})",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// The number of documents in this run's index of `kind` (0 before it exists).
    pub async fn es_count(&self, kind: &str) -> u64 {
        let transport =
            elasticsearch::http::transport::Transport::single_node(&self.stack.elasticsearch.url)
                .expect("transport");
        let client = elasticsearch::Elasticsearch::new(transport);
        let index = self.index(kind);
        let response = client
            .count(elasticsearch::CountParts::Index(&[&index]))
            .send()
            .await
            .expect("_count");
        if response.status_code().as_u16() == 404 {
            // The executor has not created it yet.
            return 0;
        }
        let body: Value = response.json().await.expect("json");
        body["count"].as_u64().expect("count")
    }

    /// Sets the stand-in's faults on both indices (`None`: clears them).
    pub async fn es_faults(&self, faults: Option<Value>) {
        let transport =
            elasticsearch::http::transport::Transport::single_node(&self.stack.elasticsearch.url)
                .expect("transport");
        for kind in ["orders", "jobresults"] {
            let path = format!("/_standin/faults/{}", self.index(kind));
            let (method, body) = match &faults {
                Some(f) => (elasticsearch::http::Method::Put, Some(f.to_string())),
                None => (elasticsearch::http::Method::Delete, None),
            };
            let response = transport
                .send(
                    method,
                    &path,
                    elasticsearch::http::headers::HeaderMap::new(),
                    None::<&()>,
                    body.map(|b| b.into_bytes()),
                    None,
                )
                .await
                .expect("faults");
            assert!(response.status_code().is_success(), "{path}");
        }
    }

    /// Creates the index of `kind` with `body` (`{"mappings": …}`) before an executor
    /// does, as an operator's wrong mapping would be.
    pub async fn es_create_index(&self, kind: &str, body: &Value) {
        let transport =
            elasticsearch::http::transport::Transport::single_node(&self.stack.elasticsearch.url)
                .expect("transport");
        let path = format!("/{}", self.index(kind));
        let mut headers = elasticsearch::http::headers::HeaderMap::new();
        headers.insert(
            elasticsearch::http::headers::CONTENT_TYPE,
            elasticsearch::http::headers::HeaderValue::from_static("application/json"),
        );
        let response = transport
            .send(
                elasticsearch::http::Method::Put,
                &path,
                headers,
                None::<&()>,
                Some(body.to_string().into_bytes()),
                None,
            )
            .await
            .expect("create index");
        assert!(response.status_code().is_success(), "PUT {path}");
    }

    /// The stand-in's counters of the index of `kind` (`GET /_standin/stats/{index}`):
    /// what Elasticsearch did, seen from the server side.
    pub async fn es_stats(&self, kind: &str) -> Value {
        let transport =
            elasticsearch::http::transport::Transport::single_node(&self.stack.elasticsearch.url)
                .expect("transport");
        let path = format!("/_standin/stats/{}", self.index(kind));
        let response = transport
            .send(
                elasticsearch::http::Method::Get,
                &path,
                elasticsearch::http::headers::HeaderMap::new(),
                None::<&()>,
                None::<Vec<u8>>,
                None,
            )
            .await
            .expect("stats");
        assert!(response.status_code().is_success(), "{path}");
        response.json().await.expect("json")
    }

    /// The lease owners of `executor`'s lease table: owner → leases held.
    pub async fn lease_owners(&self, executor: &str) -> BTreeMap<String, usize> {
        use chief_consumer::LeaseStore;
        let table = format!("e2e-{executor}-{}", self.id);
        let store = chief_consumer::DynamoDbLeaseStore::new(self.clients.dynamodb(), &table);
        let mut owners = BTreeMap::new();
        for lease in store.list_leases().await.unwrap_or_default() {
            if let Some(owner) = lease.lease_owner {
                *owners.entry(owner).or_insert(0) += 1;
            }
        }
        owners
    }

    /// How many Kinesis records `stream` holds now (every shard from TRIM_HORIZON).
    pub async fn stream_records(&self, stream: &str) -> usize {
        let client = self.clients.kinesis();
        let shards = client
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut count = 0;
        for shard in shards.shards() {
            let mut iterator = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator;
            while let Some(it) = iterator {
                let page = client
                    .get_records()
                    .shard_iterator(it)
                    .limit(10_000)
                    .send()
                    .await
                    .expect("GetRecords");
                count += page.records().len();
                if page.records().is_empty() {
                    break;
                }
                iterator = page.next_shard_iterator;
            }
        }
        count
    }

    /// The unique ids of a JSON-lines input.
    pub fn unique_ids(input: &Path) -> BTreeSet<String> {
        std::fs::read_to_string(input)
            .expect("read")
            .lines()
            .filter_map(|l| {
                Order::parse(l.as_bytes())
                    .map(|order| order.orderid)
                    .or_else(|_| JobResult::parse(l.as_bytes()).map(|job| job.orderid))
                    .ok()
            })
            .map(|id| id.as_str().to_owned())
            .collect()
    }

    /// Stops every process with SIGTERM; each must exit 0.
    pub fn stop_all(procs: Vec<Proc>) {
        for p in procs {
            let name = p.name.clone();
            let log = p.log.clone();
            let status = p.terminate();
            assert!(
                status.success(),
                "{name} exited with {status} after SIGTERM (log {})",
                log.display()
            );
        }
    }

    /// The end of every scenario: load, then exact counts in MariaDB and Elasticsearch
    /// and nothing lost.
    pub async fn assert_exact(&self, orders: &[&Path], jobs: &[&Path]) {
        let status = self.load(&[]);
        assert!(status.success(), "chief-loader run: {status}");
        for (kind, input) in [("orders", orders), ("jobresults", jobs)] {
            let r = self.reconcile(kind, input, true, &[]);
            assert_eq!(r.lost, 0, "{kind}: {r:?}");
            assert_eq!(r.in_db, Some(r.unique), "{kind}: {r:?}");
            assert_eq!(r.in_s3, r.unique, "{kind}: {r:?}");
            let db = self.db_count(kind).await;
            assert_eq!(db, r.unique, "{kind}: exactly the unique ids in MariaDB");
            let es = self.es_count(kind).await;
            assert_eq!(
                es, r.unique,
                "{kind}: exactly the unique ids in Elasticsearch"
            );
        }
    }

    /// Rows in this run's table of `kind`.
    pub async fn db_count(&self, kind: &str) -> u64 {
        self.db_count_at(&self.stack.database.url, kind).await
    }

    /// Rows in this run's table of `kind` in the database at `database_url`.
    pub async fn db_count_at(&self, database_url: &str, kind: &str) -> u64 {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(1)
            .connect(database_url)
            .await
            .expect("MariaDB");
        let sql = format!("SELECT COUNT(*) FROM `{}`", self.table(kind));
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        u64::try_from(n).unwrap_or(0)
    }

    /// Deletes the streams (kinesis-local counts shards across streams).
    pub async fn cleanup(&self) {
        for s in [&self.orders, &self.jobs] {
            let _ = self
                .clients
                .kinesis()
                .delete_stream()
                .stream_name(s)
                .enforce_consumer_deletion(true)
                .send()
                .await;
        }
    }
}
