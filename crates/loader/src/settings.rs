//! The `[loader]` config section: where the files are, which tables they go to, and how
//! a run loads them.

use std::collections::BTreeMap;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::sql::Identifier;

/// How the files reach the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Aurora MySQL reads the objects from S3 itself: a MANIFEST of the new objects is
    /// written to S3 and loaded with `LOAD DATA FROM S3 MANIFEST`. The production default.
    #[default]
    Aurora,
    /// Any MySQL/MariaDB: the loader downloads each object into the server's
    /// `secure_file_priv` directory ([`DatabaseConfig::import_dir`]) and runs
    /// `LOAD DATA INFILE` with the same clauses. The local stack and the tests use it.
    ///
    /// [`DatabaseConfig::import_dir`]: chief_config::database::DatabaseConfig::import_dir
    Local,
}

impl Mode {
    /// `aurora` or `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Aurora => "aurora",
            Mode::Local => "local",
        }
    }
}

/// The `[loader]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSettings {
    /// `aurora` (default) or `local`; `chief-loader run --mode` overrides it.
    pub mode: Mode,
    /// The archive bucket the executors write to. Default `chief-archive`.
    pub bucket: String,
    /// Aurora mode: key prefix of the MANIFEST objects (never under a table's prefix).
    /// Default `chief-loader/manifests`; expire them with a lifecycle rule.
    pub manifest_prefix: String,
    /// How many hours before the hour of the newest loaded object a run lists again, so
    /// that files written late into an already-loaded hour are found. The executors
    /// write a batch at most `max_age` (60 s) plus their write-retry deadline (300 s)
    /// after its hour, so 1 would do; the default 3 also covers an S3 outage of a couple
    /// of hours. The first run of a table (no history) lists the whole prefix.
    pub rescan_hours: u32,
    /// A run lists a table's whole prefix when its last whole listing (`loader_state`) is
    /// older than this many hours, so that an object written into any older hour (a
    /// shard stalled for days, a replay) is loaded within this bound even without the
    /// queue. 0: every run lists everything. Default 24.
    pub full_listing_hours: u32,
    /// The SQS queue (URL) the archive bucket sends its `s3:ObjectCreated:*`
    /// notifications for the tables' prefixes to. Each run drains it and loads every
    /// object it names, whatever its hour; a message is deleted once the database holds
    /// its object (loaded, or held in `load_rejects`), so an object whose load failed is
    /// named again after `queue_visibility_timeout_s`. Default none: listing only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// How long a received message stays invisible to other runs, in seconds: longer
    /// than a run takes. Default 900.
    pub queue_visibility_timeout_s: u32,
    /// Most messages one run receives (the rest wait for the next run). Default 100,000.
    pub queue_max_messages: usize,
    /// Most objects in one load (one MANIFEST, one transaction). Default 1000.
    pub max_files_per_load: usize,
    /// Most object bytes in one load (one transaction); a single larger object goes
    /// alone. Default 256 MiB.
    pub max_bytes_per_load: u64,
    /// Objects fetched at the same time (line counting, local-mode downloads). Default 8.
    pub fetch_concurrency: usize,
    /// How long connecting to the database may take, in milliseconds. Default 10,000.
    pub connect_timeout_ms: u64,
    /// The tables, by the name `--table` selects them with. Default `orders` and
    /// `jobresults`, as the chief design defines them.
    pub tables: BTreeMap<String, TableConfig>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        let mut tables = BTreeMap::new();
        tables.insert("orders".to_owned(), TableConfig::orders());
        tables.insert("jobresults".to_owned(), TableConfig::jobresults());
        Self {
            mode: Mode::Aurora,
            bucket: "chief-archive".to_owned(),
            manifest_prefix: "chief-loader/manifests".to_owned(),
            rescan_hours: 3,
            full_listing_hours: 24,
            queue_url: None,
            queue_visibility_timeout_s: 900,
            queue_max_messages: 100_000,
            max_files_per_load: 1000,
            max_bytes_per_load: 256 * 1024 * 1024,
            fetch_concurrency: 8,
            connect_timeout_ms: 10_000,
            tables,
        }
    }
}

/// One table and the objects that fill it (`[loader.tables.<name>]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    /// The table in the database (an identifier: letters, digits, `_`).
    pub table: String,
    /// The key prefix the executor writes under, without a trailing `/`
    /// (objects are `<prefix>/YYYY/MM/DD/HH/<name>`).
    pub prefix: String,
    /// The columns of a line, in file order (identifiers).
    pub columns: Vec<String>,
    /// A column set to `CURRENT_TIMESTAMP` for every loaded row (`SET … =
    /// CURRENT_TIMESTAMP`), if any. `orders` has `processedtimestamp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_timestamp_column: Option<String>,
}

impl TableConfig {
    /// `orders (orderid, orderdata)` from `ChiefOrderS3`, `processedtimestamp` set.
    pub fn orders() -> Self {
        Self {
            table: "orders".to_owned(),
            prefix: "ChiefOrderS3".to_owned(),
            columns: vec!["orderid".to_owned(), "orderdata".to_owned()],
            processed_timestamp_column: Some("processedtimestamp".to_owned()),
        }
    }

    /// `jobresults (orderid, userid, factoryid, robotid, jobstatus, timestamp)` from
    /// `ChiefJobResultNotifyS3`.
    pub fn jobresults() -> Self {
        Self {
            table: "jobresults".to_owned(),
            prefix: "ChiefJobResultNotifyS3".to_owned(),
            columns: [
                "orderid",
                "userid",
                "factoryid",
                "robotid",
                "jobstatus",
                "timestamp",
            ]
            .map(str::to_owned)
            .to_vec(),
            processed_timestamp_column: None,
        }
    }
}

/// A table's config, checked: names are identifiers, the prefix is a plain key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// The name `--table` selects it with.
    pub key: String,
    /// The table.
    pub table: Identifier,
    /// The key prefix (no trailing `/`).
    pub prefix: String,
    /// The columns of a line.
    pub columns: Vec<Identifier>,
    /// The column set to `CURRENT_TIMESTAMP`, if any.
    pub processed_timestamp_column: Option<Identifier>,
}

impl TableSpec {
    /// Checks `config` of the table selected as `key`.
    ///
    /// # Errors
    /// A sentence naming the field and what is wrong with it.
    pub fn new(key: &str, config: &TableConfig) -> Result<Self, String> {
        let field = |name: &str| format!("loader.tables.{key}.{name}");
        let table =
            Identifier::new(&config.table).map_err(|e| format!("{}: {e}", field("table")))?;
        check_prefix(&config.prefix).map_err(|e| format!("{}: {e}", field("prefix")))?;
        if config.columns.is_empty() {
            return Err(format!(
                "{} must name at least one column",
                field("columns")
            ));
        }
        let mut columns: Vec<Identifier> = Vec::with_capacity(config.columns.len());
        for column in &config.columns {
            let column =
                Identifier::new(column).map_err(|e| format!("{}: {e}", field("columns")))?;
            if columns.iter().any(|c| c.eq_ignore_case(&column)) {
                return Err(format!("{}: `{column}` appears twice", field("columns")));
            }
            columns.push(column);
        }
        let processed_timestamp_column = match &config.processed_timestamp_column {
            None => None,
            Some(name) => {
                let column = Identifier::new(name)
                    .map_err(|e| format!("{}: {e}", field("processed_timestamp_column")))?;
                if columns.iter().any(|c| c.eq_ignore_case(&column)) {
                    return Err(format!(
                        "{}: `{column}` is also a file column",
                        field("processed_timestamp_column")
                    ));
                }
                Some(column)
            }
        };
        Ok(Self {
            key: key.to_owned(),
            table,
            prefix: config.prefix.clone(),
            columns,
            processed_timestamp_column,
        })
    }
}

impl LoadSettings {
    /// Checks the section and returns the tables `selection` names (`all` = every table,
    /// in name order).
    ///
    /// # Errors
    /// A sentence naming the field and what is wrong with it.
    pub fn tables_for(&self, selection: &str) -> Result<Vec<TableSpec>, String> {
        check_bucket(&self.bucket).map_err(|e| format!("loader.bucket: {e}"))?;
        check_prefix(&self.manifest_prefix).map_err(|e| format!("loader.manifest_prefix: {e}"))?;
        if self.max_files_per_load == 0 || self.max_bytes_per_load == 0 {
            return Err("loader.max_files_per_load and max_bytes_per_load must be positive".into());
        }
        if self.fetch_concurrency == 0 {
            return Err("loader.fetch_concurrency must be positive".into());
        }
        if self.queue_url.as_deref().is_some_and(str::is_empty) {
            return Err("loader.queue_url is empty (leave it out for no queue)".into());
        }
        if !(1..=43_200).contains(&self.queue_visibility_timeout_s) {
            return Err("loader.queue_visibility_timeout_s must be 1..=43200 (SQS's range)".into());
        }
        let mut specs = Vec::new();
        for (key, config) in &self.tables {
            let spec = TableSpec::new(key, config)?;
            let manifests = format!("{}/", self.manifest_prefix);
            let files = format!("{}/", spec.prefix);
            if manifests.starts_with(&files) || files.starts_with(&manifests) {
                return Err(format!(
                    "loader.manifest_prefix `{}` and loader.tables.{key}.prefix `{}` overlap",
                    self.manifest_prefix, spec.prefix
                ));
            }
            specs.push(spec);
        }
        for (i, a) in specs.iter().enumerate() {
            if let Some(b) = specs[i + 1..]
                .iter()
                .find(|b| b.table.eq_ignore_case(&a.table))
            {
                return Err(format!(
                    "loader.tables.{} and loader.tables.{} both load table `{}`",
                    a.key, b.key, a.table
                ));
            }
        }
        if selection == "all" {
            return Ok(specs);
        }
        let names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        specs
            .into_iter()
            .find(|s| s.key == selection)
            .map(|s| vec![s])
            .ok_or_else(|| {
                format!(
                    "no table `{selection}` in loader.tables (configured: {}, or `all`)",
                    names.join(", ")
                )
            })
    }
}

/// An S3 key prefix as the executors use it: `/`-separated segments of letters, digits
/// and `_ - . ! * ( )`, no empty segment, no leading or trailing `/`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("must be set".into());
    }
    if prefix.len() > 256 {
        return Err("is longer than 256 characters".into());
    }
    for segment in prefix.split('/') {
        if segment.is_empty() {
            return Err(format!(
                "`{prefix}` has an empty segment (leading, trailing or double `/`)"
            ));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-.!*()".contains(*c)))
        {
            return Err(format!("`{prefix}` contains `{c}`"));
        }
    }
    Ok(())
}

/// An S3 bucket name: 3–63 lowercase letters, digits, `.` and `-`.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{bucket}` is not a bucket name (3–63 lowercase letters, digits, `.`, `-`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_chief_tables() {
        let specs = LoadSettings::default().tables_for("all").expect("valid");
        let got: Vec<(String, String, String)> = specs
            .iter()
            .map(|s| {
                let columns: Vec<&str> = s.columns.iter().map(Identifier::as_str).collect();
                (s.key.clone(), s.prefix.clone(), columns.join(","))
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "jobresults".into(),
                    "ChiefJobResultNotifyS3".into(),
                    "orderid,userid,factoryid,robotid,jobstatus,timestamp".into()
                ),
                (
                    "orders".into(),
                    "ChiefOrderS3".into(),
                    "orderid,orderdata".into()
                ),
            ]
        );
        let orders = LoadSettings::default().tables_for("orders").expect("valid");
        assert_eq!(
            orders[0]
                .processed_timestamp_column
                .as_ref()
                .map(Identifier::as_str),
            Some("processedtimestamp")
        );
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused_before_any_sql() {
        let mut settings = LoadSettings::default();
        let orders = settings.tables.get_mut("orders").expect("orders");
        orders.table = "orders; DROP TABLE orders".into();
        let err = settings.tables_for("all").expect_err("refused");
        assert!(err.contains("loader.tables.orders.table"), "{err}");

        let mut settings = LoadSettings::default();
        let orders = settings.tables.get_mut("orders").expect("orders");
        orders.columns.push("x`y".into());
        let err = settings.tables_for("orders").expect_err("refused");
        assert!(err.contains("loader.tables.orders.columns"), "{err}");

        let mut settings = LoadSettings::default();
        let orders = settings.tables.get_mut("orders").expect("orders");
        orders.columns.push("ORDERID".into());
        let err = settings.tables_for("orders").expect_err("refused");
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn prefixes_buckets_and_selection_are_checked() {
        let mut settings = LoadSettings::default();
        settings.tables.get_mut("orders").expect("orders").prefix = "ChiefOrderS3/".into();
        assert!(settings.tables_for("all").is_err());

        let mut settings = LoadSettings::default();
        settings.tables.get_mut("orders").expect("orders").prefix = "a'b".into();
        assert!(settings.tables_for("all").is_err());

        let settings = LoadSettings {
            bucket: "Bad_Bucket".into(),
            ..LoadSettings::default()
        };
        assert!(settings.tables_for("all").is_err());

        let settings = LoadSettings {
            manifest_prefix: "ChiefOrderS3/manifests".into(),
            ..LoadSettings::default()
        };
        let err = settings.tables_for("all").expect_err("overlap");
        assert!(err.contains("overlap"), "{err}");

        let err = LoadSettings::default()
            .tables_for("customers")
            .expect_err("unknown");
        assert!(err.contains("jobresults, orders"), "{err}");
    }
}
