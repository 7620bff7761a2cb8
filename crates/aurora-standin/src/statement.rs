//! `LOAD DATA FROM S3` as the Aurora MySQL user guide documents it
//! (<https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/AuroraMySQL.Integrating.LoadFromS3.html>,
//! "Syntax"):
//!
//! ```text
//! LOAD DATA FROM S3 [FILE | PREFIX | MANIFEST] 'S3-URI'
//!     [REPLACE | IGNORE] INTO TABLE tbl_name … (the rest of LOAD DATA INFILE's clauses)
//! ```
//!
//! with `S3-URI` = `s3[-region]://bucket/key-or-prefix`, and a MANIFEST a JSON document
//! `{"entries": [{"url": "s3://…", "mandatory": true}, …]}` (`mandatory` defaults to
//! false; the load fails on a missing mandatory file, and whatever `mandatory` says, when
//! no file is found at all).

use serde::Deserialize;

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One object (the default).
    File,
    /// Every object under a prefix, in key order.
    Prefix,
    /// The objects a JSON manifest lists.
    Manifest,
}

/// An `s3[-region]://bucket/key` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    /// The region, when the URI names one.
    pub region: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The key (or prefix).
    pub key: String,
}

/// A parsed `LOAD DATA FROM S3` statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFromS3 {
    /// FILE, PREFIX or MANIFEST.
    pub source: Source,
    /// The URI.
    pub uri: S3Uri,
    /// Everything after the URI (`IGNORE INTO TABLE …`), verbatim: what follows the file
    /// name in `LOAD DATA INFILE`.
    pub rest: String,
}

/// Why a statement is not a `LOAD DATA FROM S3` the stand-in can run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// One manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `s3[-region]://bucket/key`.
    pub url: String,
    /// Whether a missing file fails the load. Default false.
    #[serde(default)]
    pub mandatory: bool,
}

/// A manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The files, in load order.
    pub entries: Vec<Entry>,
}

/// Skips whitespace and comments (`-- …`, `# …`, `/* … */`) from `i`.
fn skip_space(sql: &str, mut i: usize) -> usize {
    let b = sql.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if sql[i..].starts_with("/*") {
            i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
        } else if sql[i..].starts_with("-- ") || sql[i..].starts_with('#') {
            i = sql[i..].find('\n').map_or(b.len(), |e| i + e + 1);
        } else {
            return i;
        }
    }
}

/// The keyword at `i` (letters, digits, `_`), and where it ends.
fn word(sql: &str, i: usize) -> (&str, usize) {
    let end = sql[i..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(sql.len(), |e| i + e);
    (&sql[i..end], end)
}

/// Whether `sql` starts (after whitespace and comments) with `LOAD DATA FROM S3`.
pub fn is_load_from_s3(sql: &str) -> bool {
    let mut i = 0;
    for expected in ["LOAD", "DATA", "FROM", "S3"] {
        i = skip_space(sql, i);
        let (w, end) = word(sql, i);
        if !w.eq_ignore_ascii_case(expected) {
            return false;
        }
        i = end;
    }
    true
}

/// A MySQL string literal at `i` (`'…'` or `"…"`, backslash escapes and doubled quotes):
/// its value and where it ends.
fn string_literal(sql: &str, i: usize) -> Result<(String, usize), SyntaxError> {
    let b = sql.as_bytes();
    let quote = *b
        .get(i)
        .filter(|q| **q == b'\'' || **q == b'"')
        .ok_or_else(|| SyntaxError("expected a quoted S3 URI".into()))?;
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if j + 1 < b.len() => {
                out.push(match b[j + 1] {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'0' => 0,
                    b'Z' => 0x1a,
                    other => other,
                });
                j += 2;
            }
            q if q == quote && b.get(j + 1) == Some(&quote) => {
                out.push(quote);
                j += 2;
            }
            q if q == quote => {
                let value = String::from_utf8(out)
                    .map_err(|_| SyntaxError("the S3 URI is not UTF-8".into()))?;
                return Ok((value, j + 1));
            }
            other => {
                out.push(other);
                j += 1;
            }
        }
    }
    Err(SyntaxError("unterminated string".into()))
}

/// Parses `s3[-region]://bucket/key`.
///
/// # Errors
/// Not an S3 URI.
pub fn parse_uri(uri: &str) -> Result<S3Uri, SyntaxError> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| SyntaxError(format!("`{uri}` is not an S3 URI (s3-region://bucket/key)")))?;
    let region = match scheme.to_ascii_lowercase().as_str() {
        "s3" => None,
        s => Some(
            s.strip_prefix("s3-")
                .filter(|r| !r.is_empty())
                .ok_or_else(|| {
                    SyntaxError(format!("`{uri}`: the scheme must be s3 or s3-<region>"))
                })?
                .to_owned(),
        ),
    };
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(SyntaxError(format!("`{uri}` names no bucket")));
    }
    Ok(S3Uri {
        region,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// Parses a `LOAD DATA FROM S3` statement.
///
/// # Errors
/// The statement does not follow the documented syntax (or uses `LOCAL`, which Aurora
/// refuses with S3).
pub fn parse(sql: &str) -> Result<LoadFromS3, SyntaxError> {
    if !is_load_from_s3(sql) {
        return Err(SyntaxError("not a LOAD DATA FROM S3 statement".into()));
    }
    let mut i = 0;
    for _ in 0..4 {
        i = skip_space(sql, i);
        i = word(sql, i).1;
    }
    i = skip_space(sql, i);
    let (w, end) = word(sql, i);
    let source = match w.to_ascii_uppercase().as_str() {
        "FILE" => Some(Source::File),
        "PREFIX" => Some(Source::Prefix),
        "MANIFEST" => Some(Source::Manifest),
        "LOCAL" => {
            return Err(SyntaxError(
                "LOCAL cannot be used with LOAD DATA FROM S3".into(),
            ));
        }
        "" => None,
        other => {
            return Err(SyntaxError(format!(
                "expected FILE, PREFIX, MANIFEST or the S3 URI, found `{other}`"
            )));
        }
    };
    if source.is_some() {
        i = skip_space(sql, end);
    }
    let (uri, end) = string_literal(sql, i)?;
    let rest = sql[end..]
        .trim()
        .trim_end_matches(';')
        .trim_end()
        .to_owned();
    let (first, _) = word(&rest, 0);
    if !["REPLACE", "IGNORE", "INTO"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k))
    {
        return Err(SyntaxError(format!(
            "expected REPLACE, IGNORE or INTO TABLE after the URI, found `{}`",
            rest.chars().take(30).collect::<String>()
        )));
    }
    Ok(LoadFromS3 {
        source: source.unwrap_or(Source::File),
        uri: parse_uri(&uri)?,
        rest,
    })
}

/// A MySQL string literal of `text` (single quotes, backslash escapes).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let s = parse(
            "LOAD DATA FROM S3 MANIFEST 's3-us-west-2://aurora-bucket/customer.manifest'\n    INTO TABLE CUSTOMER\n    FIELDS TERMINATED BY ','\n    LINES TERMINATED BY '\\n'\n    (ID, FIRSTNAME, LASTNAME, EMAIL);",
        )
        .expect("manifest form");
        assert_eq!(s.source, Source::Manifest);
        assert_eq!(
            s.uri,
            S3Uri {
                region: Some("us-west-2".into()),
                bucket: "aurora-bucket".into(),
                key: "customer.manifest".into()
            }
        );
        assert!(s.rest.starts_with("INTO TABLE CUSTOMER"));
        assert!(s.rest.ends_with("(ID, FIRSTNAME, LASTNAME, EMAIL)"));

        let s = parse("load data from s3 's3://dbbucket/customerdata.csv' IGNORE INTO TABLE t")
            .expect("file form");
        assert_eq!(s.source, Source::File);
        assert_eq!(s.uri.key, "customerdata.csv");
        assert_eq!(s.rest, "IGNORE INTO TABLE t");

        let s = parse("/* x */ LOAD DATA FROM S3 PREFIX 's3://my-data/employee_data' REPLACE INTO TABLE employees")
            .expect("prefix form");
        assert_eq!(s.source, Source::Prefix);
        assert_eq!(s.uri.key, "employee_data");
    }

    #[test]
    fn the_loaders_statement_parses() {
        let sql = r"LOAD DATA FROM S3 MANIFEST 's3://chief-archive/chief-loader/manifests/orders/x.json' IGNORE INTO TABLE `orders` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES TERMINATED BY '\n' (`orderid`, `orderdata`) SET `processedtimestamp` = CURRENT_TIMESTAMP";
        let s = parse(sql).expect("the loader's statement");
        assert_eq!(s.uri.bucket, "chief-archive");
        assert_eq!(s.uri.key, "chief-loader/manifests/orders/x.json");
        assert!(
            s.rest
                .starts_with("IGNORE INTO TABLE `orders` CHARACTER SET utf8mb4")
        );
    }

    #[test]
    fn refuses_what_aurora_refuses() {
        assert!(parse("LOAD DATA FROM S3 LOCAL 's3://b/k' INTO TABLE t").is_err());
        assert!(parse("LOAD DATA FROM S3 'http://b/k' INTO TABLE t").is_err());
        assert!(parse("LOAD DATA FROM S3 's3://b/k'").is_err());
        assert!(parse("LOAD DATA INFILE '/tmp/x' INTO TABLE t").is_err());
        assert!(!is_load_from_s3("SELECT 'LOAD DATA FROM S3'"));
        assert!(is_load_from_s3("  load\n data from S3 's3://b/k'"));
    }

    #[test]
    fn manifests_default_mandatory_to_false() {
        let m: Manifest = serde_json::from_str(
            r#"{"entries":[{"url":"s3://b/1","mandatory":true},{"url":"s3://b/2"}]}"#,
        )
        .expect("manifest");
        assert!(m.entries[0].mandatory);
        assert!(!m.entries[1].mandatory);
        assert!(serde_json::from_str::<Manifest>(r#"{"entries":[{"uri":"x"}]}"#).is_err());
    }

    #[test]
    fn quoting_round_trips() {
        let path = "/var/lib/mysql-files/a'b\\c";
        let (back, _) = string_literal(&quote(path), 0).expect("literal");
        assert_eq!(back, path);
    }
}
