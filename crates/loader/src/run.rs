//! `chief-loader run`: finds the objects of each table that are not in `load_history`
//! and loads them, Aurora or local mode, recording them in the same transaction.
//!
//! Per table:
//! 1. take the run lock `chief-loader:<database>.<table>` (`GET_LOCK(…, 0)`); when another
//!    run holds it the table is left alone and reported as [`Outcome::Locked`];
//! 2. list the objects under `<prefix>/` from `rescan_hours` before the hour of the
//!    newest loaded object (the whole prefix on the first run), and keep those whose key
//!    is not in `load_history` or whose ETag changed;
//! 3. group them into loads of at most `max_files_per_load` objects and
//!    `max_bytes_per_load` bytes; each load is one transaction: one `LOAD DATA`
//!    statement, the warnings check, the `load_history` rows, `COMMIT`. A failure rolls
//!    its load back and stops the table (the next run resumes there).
//!    - Aurora: a MANIFEST of the load's objects (each object is read once to count its
//!      lines), `LOAD DATA FROM S3 MANIFEST`.
//!    - Local: the objects are downloaded and their lines written into one file in the
//!      import directory, sorted by the first column when it is the table's only unique
//!      key with a binary collation (stable, so the first copy of an id still wins, as
//!      when Aurora reads the objects in order; InnoDB then inserts in key order, 7×
//!      faster than random order on the local stack), `LOAD DATA INFILE`, file removed;
//! 4. count: rows read (the objects' lines), rows inserted (the statement's affected
//!    rows), rows ignored as duplicates (read − inserted; MariaDB and MySQL ≥ 5.7 raise
//!    one duplicate-key warning per such row);
//! 5. any other warning (a value converted, truncated or replaced: the database would hold
//!    something other than what the file says) rolls the load back; the object each
//!    warning's row belongs to is held in `load_rejects` with its line and the server's
//!    message (every object of the load when no warning names a row), the run fails, and
//!    the next run loads the rest. Held objects are skipped until they change (another
//!    ETag) or their `load_rejects` row is deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Acquire, MySqlConnection};

use crate::objects::{self, ListedObject, ReadObject};
use crate::queue::{Inbox, QueueReport};
use crate::session::{self, DUPLICATE_ENTRY, Warnings};
use crate::settings::{LoadSettings, Mode, TableSpec};
use crate::{LoaderConfig, LoaderError, history, keys, sql};

mod refuse;

/// Exit code of a run that loaded what it found, or found nothing new.
pub const EXIT_OK: u8 = 0;
/// Exit code of a run in which something failed (a load, a warning, S3, the database).
pub const EXIT_FAILED: u8 = 1;
/// Exit code of a run that skipped a table because another run holds its lock
/// (`EX_TEMPFAIL`); only when nothing failed.
pub const EXIT_LOCKED: u8 = 75;

/// Most warning messages kept per table in a report.
const MAX_MESSAGES: usize = 20;

/// What `chief-loader run` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// `all` or a key of `loader.tables`.
    pub table: String,
    /// The mode; default from `loader.mode`.
    pub mode: Mode,
    /// Print the statements instead of running them (no lock, nothing written).
    pub dry_run: bool,
    /// Lookback before the newest loaded hour; default from `loader.rescan_hours`.
    pub rescan_hours: u32,
    /// List every table's whole prefix this run, whenever it was last done.
    pub full_listing: bool,
}

impl RunOptions {
    /// Every table, with the config's mode and lookback.
    pub fn from_settings(settings: &LoadSettings) -> Self {
        Self {
            table: "all".to_owned(),
            mode: settings.mode,
            dry_run: false,
            rescan_hours: settings.rescan_hours,
            full_listing: false,
        }
    }
}

/// How a table's part of the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No object to load.
    NothingNew,
    /// Objects were loaded (see the warnings).
    Loaded,
    /// Dry run: the statements were only planned.
    Planned,
    /// Another run holds the lock; nothing was done.
    Locked,
    /// Something failed; loads committed before the failure stay.
    Failed,
}

/// What happened to one table.
#[derive(Debug, Serialize)]
pub struct TableReport {
    /// The `--table` name.
    pub name: String,
    /// The database table.
    pub table: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Objects loaded (planned, in a dry run).
    pub files: u64,
    /// Of those, objects loaded before whose ETag changed.
    pub files_reloaded: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Lines in them.
    pub rows_read: u64,
    /// Rows the loads inserted.
    pub rows_inserted: u64,
    /// Rows skipped because their primary key was already there (`IGNORE`).
    pub rows_duplicate: u64,
    /// Warnings other than duplicate keys (truncated, malformed rows): failures.
    pub warnings: u64,
    /// The first of those warnings, with the object they came from where known.
    pub warning_messages: Vec<String>,
    /// Keys under the prefix that do not have the executors' shape: not loaded.
    pub skipped_keys: Vec<String>,
    /// Objects this run refused (their load rolled back), now held in `load_rejects`.
    pub rejected: Vec<history::Reject>,
    /// Objects skipped because an earlier run refused them (still in `load_rejects`).
    pub held: Vec<String>,
    /// Whether this run listed the table's whole prefix.
    pub full_listing: bool,
    /// Objects the queue named that the listing did not cover (older hours).
    pub from_queue: u64,
    /// Dry run: the statements (and MANIFESTs) a run would execute.
    pub statements: Vec<String>,
    /// The error that ended the table's part, if any.
    pub error: Option<String>,
    /// The connection id holding the lock, when [`Outcome::Locked`].
    pub lock_holder: Option<u64>,
    /// Time in `LOAD DATA` statements, seconds.
    pub load_seconds: f64,
    /// Time reading the objects from S3 (line counts; local mode: the bodies), seconds.
    pub fetch_seconds: f64,
    /// Local mode: time writing (and sorting) the staged file, seconds.
    pub stage_seconds: f64,
    /// Time checking warnings, writing `load_history` and committing, seconds.
    pub commit_seconds: f64,
    /// Time for the whole table, seconds.
    pub seconds: f64,
}

impl TableReport {
    fn new(spec: &TableSpec) -> Self {
        Self {
            name: spec.key.clone(),
            table: spec.table.to_string(),
            outcome: Outcome::NothingNew,
            files: 0,
            files_reloaded: 0,
            bytes: 0,
            rows_read: 0,
            rows_inserted: 0,
            rows_duplicate: 0,
            warnings: 0,
            warning_messages: Vec::new(),
            skipped_keys: Vec::new(),
            rejected: Vec::new(),
            held: Vec::new(),
            full_listing: false,
            from_queue: 0,
            statements: Vec::new(),
            error: None,
            lock_holder: None,
            load_seconds: 0.0,
            fetch_seconds: 0.0,
            stage_seconds: 0.0,
            commit_seconds: 0.0,
            seconds: 0.0,
        }
    }

    /// Whether this table's part failed (an error, or a non-duplicate warning, which
    /// refuses its objects).
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Failed || self.warnings > 0 || !self.rejected.is_empty()
    }

    /// One line for people.
    pub fn summary_line(&self) -> String {
        let mut line = self.outcome_line();
        if !self.rejected.is_empty() {
            line.push_str(&format!(
                "; REFUSED {} objects (rolled back, held in load_rejects)",
                self.rejected.len()
            ));
        }
        if !self.held.is_empty() {
            line.push_str(&format!(
                "; {} objects held in load_rejects by earlier runs not loaded",
                self.held.len()
            ));
        }
        line
    }

    fn outcome_line(&self) -> String {
        let head = format!("{} (table `{}`)", self.name, self.table);
        match self.outcome {
            Outcome::NothingNew => format!("{head}: nothing new to load"),
            Outcome::Locked => format!(
                "{head}: skipped, another chief-loader run holds the lock{}",
                self.lock_holder
                    .map(|id| format!(" (connection {id})"))
                    .unwrap_or_default()
            ),
            Outcome::Planned => format!(
                "{head}: dry run, would load {} files ({} bytes)",
                self.files, self.bytes
            ),
            Outcome::Failed if self.files == 0 => format!(
                "{head}: FAILED: {}",
                self.error.as_deref().unwrap_or("unknown error")
            ),
            Outcome::Loaded | Outcome::Failed => {
                let mut line = format!(
                    "{head}: {} files ({} bytes, {} reloaded), {} rows read, {} inserted, \
                     {} ignored as duplicates, {} warnings",
                    self.files,
                    self.bytes,
                    self.files_reloaded,
                    self.rows_read,
                    self.rows_inserted,
                    self.rows_duplicate,
                    self.warnings
                );
                if let Some(error) = &self.error {
                    line.push_str(&format!("; FAILED: {error}"));
                }
                line
            }
        }
    }
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// `aurora` or `local`.
    pub mode: &'static str,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// One report per table, in name order.
    pub tables: Vec<TableReport>,
    /// The queue of S3 notifications, when `loader.queue_url` is set (not in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueReport>,
    /// Why the queue could not be read or cleaned up, if so (the run fails; the listing
    /// still loaded what it found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_error: Option<String>,
}

impl RunReport {
    /// [`EXIT_FAILED`] if anything failed, else [`EXIT_LOCKED`] if a table was skipped
    /// for the lock, else [`EXIT_OK`].
    pub fn exit_code(&self) -> u8 {
        if self.tables.iter().any(TableReport::failed) || self.queue_error.is_some() {
            EXIT_FAILED
        } else if self.tables.iter().any(|t| t.outcome == Outcome::Locked) {
            EXIT_LOCKED
        } else {
            EXIT_OK
        }
    }
}

/// Runs the loader: connects (an error here is the run's error), then each selected
/// table in turn; a table's failure is in its report and does not stop the others.
///
/// With `loader.queue_url` set (and `sqs` given), the queue is drained first and every
/// object it names is loaded too ([`crate::queue`]); its messages are deleted at the end
/// for the objects the database then holds.
pub async fn run(
    config: &LoaderConfig,
    s3: &aws_sdk_s3::Client,
    sqs: Option<&aws_sdk_sqs::Client>,
    options: &RunOptions,
) -> Result<RunReport, LoaderError> {
    let specs = config
        .loader
        .tables_for(&options.table)
        .map_err(LoaderError::Config)?;
    let timeout = Duration::from_millis(config.loader.connect_timeout_ms);
    let mut conn = session::open(&config.database, timeout).await?;
    let database = session::database_name(&mut conn).await?;
    let import_dir = match options.mode {
        Mode::Local => Some(session::import_dir(&mut conn, &config.database.import_dir).await?),
        Mode::Aurora => None,
    };
    let mut queue_report = None;
    let mut queue_error = None;
    let mut inbox = None;
    if let (Some(url), Some(sqs), false) = (&config.loader.queue_url, sqs, options.dry_run) {
        let mut report = QueueReport::default();
        match Inbox::receive(
            sqs,
            url,
            config.loader.queue_max_messages,
            config.loader.queue_visibility_timeout_s,
            &mut report,
        )
        .await
        {
            Ok(mut received) => {
                let all = config
                    .loader
                    .tables_for("all")
                    .map_err(LoaderError::Config)?;
                let prefixes: Vec<&str> = all.iter().map(|t| t.prefix.as_str()).collect();
                received.settle_outside(&prefixes);
                inbox = Some(received);
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the queue failed; loading what the listing finds");
                queue_error = Some(e.to_string());
            }
        }
        queue_report = Some(report);
    }
    let mut tables = Vec::with_capacity(specs.len());
    for spec in &specs {
        let ctx = TableRun {
            conn: &mut conn,
            s3,
            settings: &config.loader,
            spec,
            options,
            import_dir: import_dir.as_deref(),
            sorted: false,
            inbox: inbox.as_mut(),
            current: HashMap::new(),
        };
        let report = ctx.run(&database).await;
        log_report(&report);
        tables.push(report);
    }
    conn_close(conn).await;
    if let (Some(inbox), Some(sqs), Some(report)) = (&inbox, sqs, queue_report.as_mut()) {
        if let Err(e) = inbox.delete_settled(sqs, report).await {
            tracing::error!(error = %e, "deleting handled queue messages failed; they come back and are handled again");
            queue_error = Some(e.to_string());
        }
        tracing::info!(
            received = report.received,
            objects = report.objects,
            deleted = report.deleted,
            kept = report.kept,
            "queue"
        );
    }
    Ok(RunReport {
        mode: options.mode.as_str(),
        dry_run: options.dry_run,
        tables,
        queue: queue_report,
        queue_error,
    })
}

async fn conn_close(conn: MySqlConnection) {
    use sqlx::Connection;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the database connection");
    }
}

fn log_report(report: &TableReport) {
    if report.failed() {
        tracing::error!(
            table = %report.table,
            outcome = ?report.outcome,
            files = report.files,
            rows_inserted = report.rows_inserted,
            rows_duplicate = report.rows_duplicate,
            warnings = report.warnings,
            error = report.error.as_deref().unwrap_or(""),
            "table load failed"
        );
    } else {
        tracing::info!(
            table = %report.table,
            outcome = ?report.outcome,
            files = report.files,
            rows_read = report.rows_read,
            rows_inserted = report.rows_inserted,
            rows_duplicate = report.rows_duplicate,
            seconds = report.seconds,
            "table done"
        );
    }
}

struct TableRun<'a> {
    conn: &'a mut MySqlConnection,
    s3: &'a aws_sdk_s3::Client,
    settings: &'a LoadSettings,
    spec: &'a TableSpec,
    options: &'a RunOptions,
    import_dir: Option<&'a Path>,
    /// Local mode: whether a load's lines are sorted by the first column.
    sorted: bool,
    /// The queue's objects, when there is a queue.
    inbox: Option<&'a mut Inbox>,
    /// The queue's objects of this table as they are in S3 now (`None`: gone).
    current: HashMap<String, Option<String>>,
}

/// One load: objects that go in one transaction.
struct Load {
    objects: Vec<ListedObject>,
    reloaded: u64,
}

impl TableRun<'_> {
    async fn run(mut self, database: &str) -> TableReport {
        let started = Instant::now();
        let mut report = TableReport::new(self.spec);
        let lock = session::lock_name(database, self.spec.table.as_str());
        if !self.options.dry_run {
            match session::try_lock(self.conn, &lock).await {
                Ok(true) => {}
                Ok(false) => {
                    report.outcome = Outcome::Locked;
                    report.lock_holder = session::lock_holder(self.conn, &lock).await;
                    tracing::warn!(table = %self.spec.table, lock = %lock, holder = ?report.lock_holder,
                        "another chief-loader run holds the lock; skipping the table");
                    report.seconds = started.elapsed().as_secs_f64();
                    return report;
                }
                Err(e) => {
                    report.outcome = Outcome::Failed;
                    report.error = Some(e.to_string());
                    return report;
                }
            }
        }
        if let Err(e) = self.load_new(database, &mut report).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e.to_string());
        }
        if !self.options.dry_run {
            if report.full_listing
                && !report.failed()
                && let Err(e) =
                    history::record_full_listing(self.conn, self.spec.table.as_str()).await
            {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
            }
            if let Err(e) = self.settle_queued(&report).await {
                tracing::warn!(table = %self.spec.table, error = %e,
                    "checking the queue's objects against load_history failed; their messages come back");
            }
        }
        if !self.options.dry_run
            && let Err(e) = session::unlock(self.conn, &lock).await
        {
            tracing::warn!(error = %e, lock = %lock, "releasing the run lock (the connection's end releases it too)");
        }
        report.seconds = started.elapsed().as_secs_f64();
        report
    }

    async fn load_new(
        &mut self,
        database: &str,
        report: &mut TableReport,
    ) -> Result<(), LoaderError> {
        let spec = self.spec;
        let table = spec.table.as_str();
        if self.options.mode == Mode::Local {
            self.sorted =
                session::sortable_by(self.conn, database, table, spec.columns[0].as_str()).await?;
        }
        let full = self.options.full_listing
            || history::full_listing_due(self.conn, table, self.settings.full_listing_hours)
                .await?;
        let start_after = if full {
            None
        } else {
            let newest = history::newest_key(self.conn, table, &spec.prefix).await?;
            keys::listing_start(&spec.prefix, newest.as_deref(), self.options.rescan_hours)
        };
        report.full_listing = start_after.is_none();
        tracing::debug!(table, full, start_after = ?start_after, "listing");
        let mut listed = objects::list(
            self.s3,
            &self.settings.bucket,
            &format!("{}/", spec.prefix),
            start_after.as_deref(),
        )
        .await?;
        let mut loaded =
            history::loaded_since(self.conn, table, &spec.prefix, start_after.as_deref()).await?;
        self.add_queued(&mut listed, &mut loaded, report).await?;
        let rejected = history::rejected(self.conn, table, &spec.prefix).await?;
        let mut pending = Vec::new();
        let mut reloaded = std::collections::HashSet::new();
        for object in listed {
            if keys::key_hour(&spec.prefix, &object.key).is_none()
                || !object.key.is_ascii()
                || object.key.len() > 768
            {
                tracing::warn!(table, key = %object.key,
                    "not an executor object (<prefix>/YYYY/MM/DD/HH/<name>, ASCII, ≤ 768 bytes); not loaded");
                report.skipped_keys.push(object.key);
                continue;
            }
            if rejected.get(&object.key) == Some(&object.etag) {
                report.held.push(object.key);
                continue;
            }
            match loaded.get(&object.key) {
                Some(etag) if *etag == object.etag => {}
                Some(etag) => {
                    tracing::info!(table, key = %object.key, was = %etag, now = %object.etag,
                        "object changed since it was loaded; loading it again");
                    reloaded.insert(object.key.clone());
                    pending.push(object);
                }
                None => pending.push(object),
            }
        }
        if !report.held.is_empty() {
            tracing::warn!(table, held = report.held.len(), first = %report.held[0],
                "objects refused by an earlier run are held in load_rejects and not loaded");
        }
        if pending.is_empty() {
            report.outcome = if self.options.dry_run {
                Outcome::Planned
            } else {
                Outcome::NothingNew
            };
            return Ok(());
        }
        let loads = self.group(pending, &reloaded);
        report.outcome = if self.options.dry_run {
            Outcome::Planned
        } else {
            Outcome::Loaded
        };
        for (index, load) in loads.into_iter().enumerate() {
            if self.options.dry_run {
                self.plan(index, &load, report);
                continue;
            }
            match self.options.mode {
                Mode::Aurora => self.load_aurora(index, &load, report).await?,
                Mode::Local => self.load_local(index, &load, report).await?,
            }
        }
        Ok(())
    }

    /// Adds the queue's objects of this table that the listing did not cover to
    /// `listed` (as they are in S3 now), with what `load_history` says of them in
    /// `loaded`; remembers their current ETags for [`settle_queued`](Self::settle_queued).
    async fn add_queued(
        &mut self,
        listed: &mut Vec<ListedObject>,
        loaded: &mut HashMap<String, String>,
        report: &mut TableReport,
    ) -> Result<(), LoaderError> {
        let Some(inbox) = self.inbox.as_deref() else {
            return Ok(());
        };
        let queued = inbox.under(&self.spec.prefix);
        let in_listing: HashMap<&str, &str> = listed
            .iter()
            .map(|o| (o.key.as_str(), o.etag.as_str()))
            .collect();
        let mut outside = Vec::new();
        for object in &queued {
            match in_listing.get(object.key.as_str()) {
                Some(etag) => {
                    self.current
                        .insert(object.key.clone(), Some((*etag).to_owned()));
                }
                None => outside.push(object),
            }
        }
        if outside.is_empty() {
            return Ok(());
        }
        let keys: Vec<&str> = outside.iter().map(|o| o.key.as_str()).collect();
        let known = history::etags_of(self.conn, self.spec.table.as_str(), &keys).await?;
        for object in outside {
            if known.get(&object.key) == Some(&object.etag) {
                // Loaded already, with the ETag the event names.
                self.current
                    .insert(object.key.clone(), Some(object.etag.clone()));
                continue;
            }
            let now = objects::head(self.s3, &self.settings.bucket, &object.key).await?;
            self.current
                .insert(object.key.clone(), now.as_ref().map(|o| o.etag.clone()));
            let Some(now) = now else {
                tracing::info!(table = %self.spec.table, key = %object.key,
                    "the queue names an object that is gone; nothing to load");
                continue;
            };
            if let Some(etag) = known.get(&object.key) {
                loaded.insert(object.key.clone(), etag.clone());
            }
            if known.get(&object.key) != Some(&now.etag) {
                report.from_queue += 1;
                tracing::info!(table = %self.spec.table, key = %object.key,
                    "loading an object the listing did not cover, named by the queue");
            }
            listed.push(now);
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(())
    }

    /// Marks the queue's objects of this table that the database now holds (with the
    /// ETag they have in S3), that are held in `load_rejects`, gone, or not executor
    /// objects as handled, so that their messages are deleted.
    async fn settle_queued(&mut self, report: &TableReport) -> Result<(), LoaderError> {
        let Some(inbox) = self.inbox.as_deref_mut() else {
            return Ok(());
        };
        if self.current.is_empty() {
            return Ok(());
        }
        let table = self.spec.table.as_str();
        let keys: Vec<&str> = self.current.keys().map(String::as_str).collect();
        let loaded = history::etags_of(self.conn, table, &keys).await?;
        let rejected = history::rejected(self.conn, table, &self.spec.prefix).await?;
        for (key, now) in &self.current {
            let handled = match now {
                None => true,
                Some(etag) => {
                    loaded.get(key) == Some(etag)
                        || rejected.get(key) == Some(etag)
                        || report.skipped_keys.contains(key)
                }
            };
            if handled {
                inbox.settle(key);
            }
        }
        Ok(())
    }

    fn group(
        &self,
        pending: Vec<ListedObject>,
        reloaded: &std::collections::HashSet<String>,
    ) -> Vec<Load> {
        let mut loads: Vec<Load> = Vec::new();
        let mut bytes = 0u64;
        for object in pending {
            let full = loads.last().is_none_or(|load| {
                load.objects.len() >= self.settings.max_files_per_load
                    || bytes + object.size > self.settings.max_bytes_per_load
            });
            if full {
                loads.push(Load {
                    objects: Vec::new(),
                    reloaded: 0,
                });
                bytes = 0;
            }
            bytes += object.size;
            if let Some(load) = loads.last_mut() {
                load.reloaded += u64::from(reloaded.contains(&object.key));
                load.objects.push(object);
            }
        }
        loads
    }

    fn manifest_key(&self, index: usize) -> String {
        format!(
            "{}/{}/{}-{}-{index}.json",
            self.settings.manifest_prefix,
            self.spec.table,
            DateTime::<Utc>::from(std::time::SystemTime::now())
                .format("%Y/%m/%d/%Y%m%dT%H%M%S%.3fZ"),
            std::process::id()
        )
    }

    fn local_path(&self, dir: &Path, load: usize) -> PathBuf {
        dir.join(format!(
            "chief-loader-{}-{}-{load}.tsv",
            self.spec.table,
            std::process::id()
        ))
    }

    fn plan(&self, index: usize, load: &Load, report: &mut TableReport) {
        report.files += load.objects.len() as u64;
        report.files_reloaded += load.reloaded;
        report.bytes += load.objects.iter().map(|o| o.size).sum::<u64>();
        match self.options.mode {
            Mode::Aurora => {
                let key = self.manifest_key(index);
                let urls: Vec<String> = load
                    .objects
                    .iter()
                    .map(|o| sql::s3_url(&self.settings.bucket, &o.key))
                    .collect();
                report.statements.push(format!(
                    "-- MANIFEST {}: {}",
                    sql::s3_url(&self.settings.bucket, &key),
                    sql::manifest_json(&urls)
                ));
                report.statements.push(format!(
                    "{};",
                    sql::aurora_load_statement(
                        self.spec,
                        &sql::s3_url(&self.settings.bucket, &key)
                    )
                ));
            }
            Mode::Local => {
                let dir = self.import_dir.unwrap_or(Path::new("."));
                let path = self.local_path(dir, index);
                report.statements.push(format!(
                    "-- {} <- the lines of {} objects{}: {}",
                    path.display(),
                    load.objects.len(),
                    if self.sorted {
                        format!(", sorted by `{}`", self.spec.columns[0])
                    } else {
                        String::new()
                    },
                    load.objects
                        .iter()
                        .map(|o| sql::s3_url(&self.settings.bucket, &o.key))
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                report.statements.push(format!(
                    "{};",
                    sql::local_load_statement(self.spec, &path.to_string_lossy())
                ));
            }
        }
        report.statements.push(format!(
            "-- then INSERT INTO load_history ({} rows) and COMMIT",
            load.objects.len()
        ));
    }

    /// One load in Aurora mode: the MANIFEST, then `BEGIN; LOAD DATA FROM S3 MANIFEST …;`
    /// the warnings check, the `load_history` rows, `COMMIT`.
    ///
    /// In a transaction: the Aurora MySQL user guide's page on the statement
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Integrating.LoadFromS3.html>)
    /// documents it as `LOAD DATA INFILE`'s syntax with an S3 source and names no
    /// restriction to autocommit, and MySQL's "Statements That Cause an Implicit Commit"
    /// (<https://dev.mysql.com/doc/refman/8.0/en/implicit-commit.html>) says `LOAD DATA`
    /// causes one only for NDB tables; ours are InnoDB, so the rows and their history
    /// commit or roll back together. Not verified on a real cluster here. Should Aurora
    /// ever commit the statement by itself, the order still keeps history and data from
    /// disagreeing harmfully: the history rows are written after the data, so the worst
    /// case is data without history, which the next run loads again under `IGNORE`
    /// (nothing changes). `chief-aurora-standin` runs the statement in the caller's
    /// transaction, as documented.
    async fn load_aurora(
        &mut self,
        index: usize,
        load: &Load,
        report: &mut TableReport,
    ) -> Result<(), LoaderError> {
        let keys: Vec<String> = load.objects.iter().map(|o| o.key.clone()).collect();
        let read: Vec<ReadObject> = objects::read_all(
            self.s3,
            &self.settings.bucket,
            &keys,
            false,
            self.settings.fetch_concurrency,
        )
        .await?
        .into_iter()
        .map(|(object, _)| object)
        .collect();
        let manifest_key = self.manifest_key(index);
        let urls: Vec<String> = keys
            .iter()
            .map(|k| sql::s3_url(&self.settings.bucket, k))
            .collect();
        objects::put_manifest(
            self.s3,
            &self.settings.bucket,
            &manifest_key,
            sql::manifest_json(&urls),
        )
        .await?;
        let statement = sql::aurora_load_statement(
            self.spec,
            &sql::s3_url(&self.settings.bucket, &manifest_key),
        );
        let table = self.spec.table.as_str();
        let mut tx = self.conn.begin().await.map_err(db("BEGIN", table))?;
        let started = Instant::now();
        tracing::info!(table, manifest = %manifest_key, files = read.len(), "LOAD DATA FROM S3 MANIFEST");
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .map_err(db("LOAD DATA FROM S3 MANIFEST", table))?;
        report.load_seconds += started.elapsed().as_secs_f64();
        let lines: u64 = read.iter().map(|o| o.lines).sum();
        let inserted = result.rows_affected();
        let warnings = load_warnings(&mut tx, lines, inserted).await?;
        if warnings.total > 0 {
            tx.rollback().await.map_err(db("ROLLBACK", table))?;
            // Aurora numbers the rows across the manifest's objects in their order.
            return self
                .refuse(report, &read, &warnings, |row| {
                    let mut row = row;
                    for (object, o) in read.iter().enumerate() {
                        if row <= o.lines {
                            return Some((object, row));
                        }
                        row -= o.lines;
                    }
                    None
                })
                .await;
        }
        history::record(&mut tx, table, &read).await?;
        tx.commit().await.map_err(db("COMMIT", table))?;
        account(report, &read, load.reloaded, inserted);
        Ok(())
    }

    async fn load_local(
        &mut self,
        index: usize,
        load: &Load,
        report: &mut TableReport,
    ) -> Result<(), LoaderError> {
        let dir = self.import_dir.ok_or_else(|| {
            LoaderError::ImportDir("local mode without an import directory".into())
        })?;
        let keys: Vec<String> = load.objects.iter().map(|o| o.key.clone()).collect();
        let fetch_started = Instant::now();
        let (read, bodies): (Vec<ReadObject>, Vec<Vec<u8>>) = objects::read_all(
            self.s3,
            &self.settings.bucket,
            &keys,
            true,
            self.settings.fetch_concurrency,
        )
        .await?
        .into_iter()
        .map(|(object, body)| (object, body.unwrap_or_default()))
        .unzip();
        report.fetch_seconds += fetch_started.elapsed().as_secs_f64();
        let stage_started = Instant::now();
        // One file with every line of the load (sorted by key when that keeps IGNORE's
        // choice), so the server runs one LOAD DATA INFILE per load.
        let path = self.local_path(dir, index);
        let _cleanup = RemoveOnDrop(vec![path.clone()]);
        let sorted = self.sorted;
        let staged_path = path.clone();
        let origins =
            tokio::task::spawn_blocking(move || crate::lines::stage(&bodies, sorted, &staged_path))
                .await
                .map_err(|e| LoaderError::Task(e.to_string()))?
                .map_err(|source| LoaderError::File {
                    action: "staging",
                    path: path.clone(),
                    source,
                })?;
        report.stage_seconds += stage_started.elapsed().as_secs_f64();
        let table = self.spec.table.as_str();
        let statement = sql::local_load_statement(self.spec, &path.to_string_lossy());
        let mut tx = self.conn.begin().await.map_err(db("BEGIN", table))?;
        let started = Instant::now();
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .map_err(db("LOAD DATA INFILE", table))?;
        report.load_seconds += started.elapsed().as_secs_f64();
        let commit_started = Instant::now();
        let lines: u64 = read.iter().map(|o| o.lines).sum();
        let inserted = result.rows_affected();
        tracing::info!(
            table,
            files = read.len(),
            lines,
            inserted,
            sorted,
            seconds = started.elapsed().as_secs_f64(),
            "LOAD DATA INFILE"
        );
        let warnings = load_warnings(&mut tx, lines, inserted).await?;
        if warnings.total > 0 {
            tx.rollback().await.map_err(db("ROLLBACK", table))?;
            // A warning's row is a line of the staged file: its object and line.
            return self
                .refuse(report, &read, &warnings, |row| {
                    origins
                        .get(usize::try_from(row).ok()?.checked_sub(1)?)
                        .copied()
                })
                .await;
        }
        history::record(&mut tx, table, &read).await?;
        tx.commit().await.map_err(db("COMMIT", table))?;
        report.commit_seconds += commit_started.elapsed().as_secs_f64();
        account(report, &read, load.reloaded, inserted);
        Ok(())
    }
}

/// Files removed when the load is over, however it ended.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "removing a staged file")
                }
            }
        }
    }
}

fn db(action: &str, table: &str) -> impl FnOnce(sqlx::Error) -> LoaderError {
    let action = format!("{action} (table `{table}`)");
    move |source| LoaderError::Database { action, source }
}

/// The warnings of a load, minus the duplicate-key ones (`read − inserted` of them).
async fn load_warnings(
    conn: &mut MySqlConnection,
    lines: u64,
    inserted: u64,
) -> Result<Warnings, LoaderError> {
    let duplicates = lines.saturating_sub(inserted);
    let mut warnings = session::warnings(conn, |total| total > duplicates).await?;
    let others: Vec<(u16, String)> = warnings
        .stored
        .drain(..)
        .filter(|(code, _)| *code != DUPLICATE_ENTRY)
        .collect();
    // Stored warnings are complete up to max_error_count; beyond it, the count is the
    // total less one duplicate-key warning per skipped row.
    let other_count = (others.len() as u64).max(warnings.total.saturating_sub(duplicates));
    Ok(Warnings {
        total: other_count,
        stored: others,
    })
}

fn account(report: &mut TableReport, objects: &[ReadObject], reloaded: u64, inserted: u64) {
    let lines: u64 = objects.iter().map(|o| o.lines).sum();
    report.files += objects.len() as u64;
    report.files_reloaded += reloaded;
    report.bytes += objects.iter().map(|o| o.size).sum::<u64>();
    report.rows_read += lines;
    report.rows_inserted += inserted;
    report.rows_duplicate += lines.saturating_sub(inserted);
}
