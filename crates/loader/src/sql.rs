//! The SQL text the loader sends: identifiers (checked, then quoted), string literals,
//! the two `LOAD DATA` statements and the Aurora MANIFEST.
//!
//! Both statements spell out every clause instead of relying on defaults, so that the
//! server reads the files exactly as [`chief_pipeline::tsv`] writes them, whatever its
//! `character_set_database` is:
//!
//! ```text
//! … IGNORE INTO TABLE `t` CHARACTER SET utf8mb4
//!     FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\'
//!     LINES TERMINATED BY '\n' (`c1`, `c2`) [SET `p` = CURRENT_TIMESTAMP]
//! ```
//!
//! The `'\t'`, `'\n'` and `'\\'` literals (and [`string_literal`]) assume the session's
//! `sql_mode` lacks `NO_BACKSLASH_ESCAPES`; the loader's connection makes sure of that.
//!
//! [`chief_pipeline::tsv`]: https://docs.rs/chief-pipeline (crates/pipeline/src/tsv.rs)

use std::fmt;

use serde::Serialize;

use crate::settings::TableSpec;

/// A table or column name that is safe to put into SQL text: 1–64 ASCII letters, digits
/// and `_`, not starting with a digit. It is still written quoted (`` `name` ``), so a
/// reserved word such as `timestamp` works too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier(String);

impl Identifier {
    /// Checks `name`.
    ///
    /// # Errors
    /// A sentence saying why `name` is not accepted.
    pub fn new(name: &str) -> Result<Self, String> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 64 {
            return Err(format!("`{name}` must be 1 to 64 characters"));
        }
        if bytes[0].is_ascii_digit() {
            return Err(format!("`{name}` must not start with a digit"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
        {
            return Err(format!(
                "`{name}` is not an identifier: `{c}` (only ASCII letters, digits and `_`)"
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both name the same thing (MySQL column names ignore case).
    pub fn eq_ignore_case(&self, other: &Identifier) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }

    /// `` `name` ``.
    pub fn quoted(&self) -> String {
        format!("`{}`", self.0)
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `'text'` with `\`, `'`, NUL, newline, carriage return and Ctrl-Z escaped.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

/// `s3://bucket/key`.
pub fn s3_url(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// Everything after the source: `IGNORE INTO TABLE … SET …`.
fn into_table_clauses(spec: &TableSpec) -> String {
    let columns: Vec<String> = spec.columns.iter().map(Identifier::quoted).collect();
    let mut sql = format!(
        "IGNORE INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
         LINES TERMINATED BY '\\n' ({})",
        spec.table.quoted(),
        columns.join(", ")
    );
    if let Some(column) = &spec.processed_timestamp_column {
        sql.push_str(&format!(" SET {} = CURRENT_TIMESTAMP", column.quoted()));
    }
    sql
}

/// Aurora: `LOAD DATA FROM S3 MANIFEST '<manifest_url>' IGNORE INTO TABLE …`.
pub fn aurora_load_statement(spec: &TableSpec, manifest_url: &str) -> String {
    format!(
        "LOAD DATA FROM S3 MANIFEST {} {}",
        string_literal(manifest_url),
        into_table_clauses(spec)
    )
}

/// MySQL/MariaDB: `LOAD DATA INFILE '<server_path>' IGNORE INTO TABLE …`.
pub fn local_load_statement(spec: &TableSpec, server_path: &str) -> String {
    format!(
        "LOAD DATA INFILE {} {}",
        string_literal(server_path),
        into_table_clauses(spec)
    )
}

/// The body of an Aurora MANIFEST: `{"entries":[{"url":"s3://…","mandatory":true},…]}`.
/// `mandatory` makes the load fail when an object has gone, rather than skip it while
/// the loader records it as loaded.
pub fn manifest_json(urls: &[String]) -> String {
    #[derive(Serialize)]
    struct Manifest<'a> {
        entries: Vec<Entry<'a>>,
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        url: &'a str,
        mandatory: bool,
    }
    let manifest = Manifest {
        entries: urls
            .iter()
            .map(|url| Entry {
                url,
                mandatory: true,
            })
            .collect(),
    };
    // Serializing strings and booleans cannot fail.
    serde_json::to_string(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{TableConfig, TableSpec};

    #[test]
    fn identifiers_are_letters_digits_and_underscores() {
        for good in ["orders", "t_0123", "_x", "Timestamp"] {
            assert!(Identifier::new(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "", "1abc", "a-b", "a b", "a`b", "a'b", "a;b", "é", "a.b", &long,
        ] {
            assert!(Identifier::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Identifier::new("timestamp").expect("ok").quoted(),
            "`timestamp`"
        );
    }

    #[test]
    fn string_literals_escape_what_mysql_would_read_specially() {
        assert_eq!(string_literal("plain"), "'plain'");
        assert_eq!(
            string_literal("it's a\\b\n\0\r\u{1a}"),
            r"'it\'s a\\b\n\0\r\Z'"
        );
    }

    #[test]
    fn manifest_has_the_aurora_shape() {
        assert_eq!(
            manifest_json(&[
                "s3://b/ChiefOrderS3/2024/01/01/00/shardId-000000000000-1".to_owned(),
                "s3://b/k\"2".to_owned(),
            ]),
            r#"{"entries":[{"url":"s3://b/ChiefOrderS3/2024/01/01/00/shardId-000000000000-1","mandatory":true},{"url":"s3://b/k\"2","mandatory":true}]}"#
        );
        assert_eq!(manifest_json(&[]), r#"{"entries":[]}"#);
    }

    #[test]
    fn local_statement_quotes_the_path() {
        let spec = TableSpec::new("orders", &TableConfig::orders()).expect("valid");
        assert_eq!(
            local_load_statement(&spec, "/srv/import/it's.tsv"),
            "LOAD DATA INFILE '/srv/import/it\\'s.tsv' IGNORE INTO TABLE `orders` \
             CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
             LINES TERMINATED BY '\\n' (`orderid`, `orderdata`) \
             SET `processedtimestamp` = CURRENT_TIMESTAMP"
        );
    }
}
