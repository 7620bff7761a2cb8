//! The chaos suite: the whole pipeline (producer → four executors, two workers for
//! `chief-order-factory-s3` → loader) on the local stack, with one thing going wrong per
//! test. Each ends with exactly the unique ids in MariaDB and in Elasticsearch, every
//! unique id in S3, and nothing lost.

use std::path::Path;
use std::time::Duration;

use chief_e2e::Run;
use serde_json::json;

const RECORDS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_one_of_two_workers_mid_run_loses_nothing() {
    let run = Run::new("kill9").await;
    run.create_tables(&run.stack.database.url).await;
    let (orders, jobs) = run.inputs(RECORDS, 101);
    let mut procs = run.executors();
    let producer = run.producer("producer-orders", &run.orders, &orders);
    run.produce("producer-jobs", &run.jobs, &jobs);
    assert!(producer.wait().success());
    // Let the first batches flow, then kill worker a without a goodbye: its leases
    // expire after the failover time and worker b takes them from the last checkpoint.
    // The kill must hit a lease holder (both workers balanced 2 + 2 first).
    let a = format!("ofs-a-{}", run.id);
    let b = format!("ofs-b-{}", run.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let held = loop {
        let owners = run.lease_owners("order-factory-s3").await;
        let held = owners.get(&a).copied().unwrap_or(0);
        if held > 0 && owners.get(&b).copied().unwrap_or(0) > 0 {
            break held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the two workers never shared the leases: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    procs.remove(0).kill();
    let killed = std::time::Instant::now();
    // Taken by the survivor within failover (3 s in the e2e overlay) + a taking round
    // (0.5 s) + slack.
    loop {
        let owners = run.lease_owners("order-factory-s3").await;
        if owners.get(&b) == Some(&4) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "worker b did not take the {held} leases of the killed worker within 10 s: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "kill -9 of a worker holding {held} leases: taken over in {:?}",
        killed.elapsed()
    );
    run.wait_caught_up(&[&orders], &[&jobs], 120);
    Run::stop_all(procs);
    run.assert_exact(&[&orders], &[&jobs]).await;
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_restart_of_every_executor_in_turn_loses_nothing() {
    let run = Run::new("restart").await;
    run.create_tables(&run.stack.database.url).await;
    let (orders, jobs) = run.inputs(RECORDS, 102);
    let mut procs = run.executors();
    let o = run.producer("producer-orders", &run.orders, &orders);
    let j = run.producer("producer-jobs", &run.jobs, &jobs);
    let workers = [
        ("order-factory-s3", "ofs-a"),
        ("order-factory-s3", "ofs-b"),
        ("order-es-s3", "oes"),
        ("jobresult-es", "jes"),
        ("jobresult-notify-s3", "jns"),
    ];
    for (i, (executor, worker)) in workers.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let old = std::mem::replace(
            &mut procs[i],
            run.executor(executor, &format!("{worker}-2")),
        );
        let name = old.name.clone();
        let status = old.terminate();
        assert!(status.success(), "{name}: SIGTERM → {status}");
    }
    assert!(o.wait().success() && j.wait().success());
    run.wait_caught_up(&[&orders], &[&jobs], 120);
    Run::stop_all(procs);
    run.assert_exact(&[&orders], &[&jobs]).await;
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_while_producing_lose_nothing() {
    let run = Run::new("reshard").await;
    run.create_tables(&run.stack.database.url).await;
    let (orders, jobs) = run.inputs(RECORDS, 103);
    let parts = run.split_input(&orders, 3);
    let procs = run.executors();
    let kinesis = run.clients.kinesis();
    let stream = chief_stream::KinesisClient::new(kinesis.clone());
    run.produce("producer-jobs", &run.jobs, &jobs);
    run.produce("producer-orders-0", &run.orders, &parts[0]);
    // Split shard 0 at the middle of its range.
    let shards = kinesis
        .list_shards()
        .stream_name(&run.orders)
        .send()
        .await
        .expect("ListShards");
    let first = &shards.shards()[0];
    let range = first.hash_key_range().expect("range");
    let (start, end): (u128, u128) = (
        range.starting_hash_key().parse().expect("start"),
        range.ending_hash_key().parse().expect("end"),
    );
    kinesis
        .split_shard()
        .stream_name(&run.orders)
        .shard_to_split(first.shard_id())
        .new_starting_hash_key((start + (end - start) / 2 + 1).to_string())
        .send()
        .await
        .expect("SplitShard");
    stream
        .wait_until_active(&run.orders, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    run.produce("producer-orders-1", &run.orders, &parts[1]);
    // Merge shards 2 and 3 (adjacent).
    kinesis
        .merge_shards()
        .stream_name(&run.orders)
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .expect("MergeShards");
    stream
        .wait_until_active(&run.orders, Duration::from_secs(60))
        .await
        .expect("ACTIVE");
    run.produce("producer-orders-2", &run.orders, &parts[2]);
    run.wait_caught_up(&[&orders], &[&jobs], 150);
    Run::stop_all(procs);
    run.assert_exact(&[&orders], &[&jobs]).await;
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_refusing_a_fifth_of_items_for_a_while_loses_nothing() {
    let run = Run::new("es429").await;
    run.create_tables(&run.stack.database.url).await;
    let (orders, jobs) = run.inputs(RECORDS, 104);
    run.es_faults(Some(json!({"reject_429_ratio": 0.2}))).await;
    let procs = run.executors();
    run.produce("producer-orders", &run.orders, &orders);
    run.produce("producer-jobs", &run.jobs, &jobs);
    tokio::time::sleep(Duration::from_secs(4)).await;
    run.es_faults(None).await;
    // The fault happened: the server refused items with 429 while it was on.
    let refused: u64 = [
        run.es_stats("orders").await,
        run.es_stats("jobresults").await,
    ]
    .iter()
    .map(|s| s["stats"]["rejected_429"].as_u64().expect("rejected_429"))
    .sum();
    assert!(refused > 0, "the stand-in refused no item with 429");
    run.wait_caught_up(&[&orders], &[&jobs], 120);
    Run::stop_all(procs);
    run.assert_exact(&[&orders], &[&jobs]).await;
    run.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_and_re_run_on_the_same_input_loses_nothing() {
    let run = Run::new("producer").await;
    run.create_tables(&run.stack.database.url).await;
    let (orders, jobs) = run.inputs(RECORDS * 2, 105);
    let procs = run.executors();
    let first = run.producer("producer-orders-killed", &run.orders, &orders);
    // Killed once it has put records, so that the re-run makes real duplicates.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while run.stream_records(&run.orders).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first producer put nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    let before = run.stream_records(&run.orders).await;
    assert!(before > 0);
    eprintln!("the killed producer had put {before} Kinesis records");
    run.produce("producer-orders", &run.orders, &orders);
    run.produce("producer-jobs", &run.jobs, &jobs);
    run.wait_caught_up(&[&orders], &[&jobs], 120);
    Run::stop_all(procs);
    run.assert_exact(&[&orders], &[&jobs]).await;
    run.cleanup().await;
}

/// A private MariaDB server (its own datadir and port), which this test may stop.
struct PrivateMariaDb {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateMariaDb {
    fn install(dir: &Path) -> Self {
        let datadir = dir.join("mysql");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let out = std::process::Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--user={user}"))
            .arg("--auth-root-authentication-method=normal")
            .output()
            .expect("mariadb-install-db (make stack-up installs mariadb-server)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(dir.join("import")).expect("import dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Self {
            dir: dir.to_path_buf(),
            port,
            child: None,
        }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/chief", self.port)
    }

    async fn start(&mut self) {
        let mariadbd = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("mariadbd (make stack-up installs mariadb-server)");
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let log = std::fs::File::create(self.dir.join("mariadbd.log")).expect("log");
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmpdir");
        self.child = Some(
            std::process::Command::new(mariadbd)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", self.dir.join("mysql").display()))
                .arg(format!("--port={}", self.port))
                .arg("--bind-address=127.0.0.1")
                .arg(format!(
                    "--socket={}",
                    self.dir.join("mysql.sock").display()
                ))
                .arg(format!(
                    "--pid-file={}",
                    self.dir.join("mariadbd.pid").display()
                ))
                .arg(format!(
                    "--secure-file-priv={}",
                    self.dir.join("import").display()
                ))
                .arg(format!("--user={user}"))
                // Its own temporary directory: internal temporary tables never meet another
                // server's (or anyone's clean-up) in /tmp.
                .arg(format!("--tmpdir={}", tmp.display()))
                .arg("--skip-log-bin")
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("mariadbd"),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "private MariaDB did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMariaDb {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_stopped_during_a_load_then_the_loader_re_run_loses_nothing() {
    let run = Run::new("mariadb").await;
    let mut db = PrivateMariaDb::install(&run.dir);
    db.start().await;
    // The schema, by the loader's own migrations, then this run's tables.
    let root = chief_config::local_stack::workspace_root();
    let url = db.url();
    let admin = url.trim_end_matches("/chief").to_owned();
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(&admin)
        .await
        .expect("private MariaDB");
    sqlx::raw_sql("CREATE DATABASE IF NOT EXISTS chief")
        .execute(&pool)
        .await
        .expect("CREATE DATABASE");
    pool.close().await;
    let import = db.dir.join("import").display().to_string();
    let env = [
        ("CHIEF__DATABASE__URL", url.as_str()),
        ("CHIEF__DATABASE__IMPORT_DIR", import.as_str()),
    ];
    let migrated = chief_e2e::loader_migrate()
        .envs(env)
        .status()
        .expect("migrate");
    assert!(migrated.success());
    run.create_tables(&url).await;

    let (orders, jobs) = run.inputs(RECORDS, 106);
    let procs = run.executors();
    run.produce("producer-orders", &run.orders, &orders);
    run.produce("producer-jobs", &run.jobs, &jobs);
    run.wait_caught_up(&[&orders], &[&jobs], 120);
    Run::stop_all(procs);

    // Stop MariaDB while the loader is in the middle of its run: a session holds both
    // tables locked, so the loader's statements wait; once the server shows one of them
    // waiting, the server is killed. The run fails, loudly.
    use sqlx::Connection as _;
    let mut locker = sqlx::mysql::MySqlConnection::connect(&url)
        .await
        .expect("MariaDB");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "LOCK TABLES `{}` WRITE, `{}` WRITE",
        run.table("orders"),
        run.table("jobresults")
    )))
    .execute(&mut locker)
    .await
    .expect("LOCK TABLES");
    let loader = {
        std::process::Command::new(chief_e2e::bin("chief-loader"))
            .args(run.loader_args())
            .current_dir(&root)
            .envs(env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("loader")
    };
    let mut watcher = sqlx::mysql::MySqlConnection::connect(&url)
        .await
        .expect("MariaDB");
    let mut waiting = false;
    for _ in 0..600 {
        let states: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT STATE, INFO FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()",
        )
        .fetch_all(&mut watcher)
        .await
        .expect("PROCESSLIST");
        waiting = states.iter().any(|(state, info)| {
            state.as_deref().is_some_and(|s| s.contains("lock"))
                && info
                    .as_deref()
                    .is_some_and(|i| !i.starts_with("LOCK TABLES"))
        });
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The fault is proven before the outcome is asserted: the loader is mid-run.
    assert!(waiting, "the loader never reached the locked tables");
    db.kill();
    drop(watcher);
    drop(locker);
    let out = loader.wait_with_output().expect("loader");
    assert!(
        !out.status.success(),
        "a loader run whose database stopped must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Start it again and re-run the loader: exactly the unique ids, none twice.
    db.start().await;
    let status = run.load(&env);
    assert!(status.success(), "re-run: {status}");
    let again = run.load(&env);
    assert!(again.success(), "a second re-run is a no-op: {again}");
    for (kind, input) in [("orders", &orders), ("jobresults", &jobs)] {
        let r = run.reconcile(kind, &[input.as_path()], true, &env);
        assert_eq!(r.lost, 0, "{kind}: {r:?}");
        assert_eq!(r.in_db, Some(r.unique), "{kind}: {r:?}");
        let n = run.db_count_at(&url, kind).await;
        assert_eq!(n, r.unique, "{kind}: exactly the unique ids");
        assert_eq!(run.es_count(kind).await, r.unique, "{kind}: Elasticsearch");
    }
    run.cleanup().await;
}
