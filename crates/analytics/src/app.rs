//! An analytics application as declared in TOML: what to parse, the time of a record,
//! the windows, the group-by fields, the aggregates and the `having` filter.
//!
//! ```toml
//! name = "status-per-minute"
//! group_by = ["response"]
//! having = "count > 0"
//!
//! [parse]
//! format = "json"            # or "regex", with `pattern` (named groups are the fields), or
//!                            # "log", with `log_format` (the agent's LOGTOJSON formats)
//!
//! [time]
//! source = "arrival"         # KDA's ROWTIME; or "field", with `field` and `format`
//!
//! [window]
//! size_s = 60                # tumbling; `slide_s` makes it hopping
//! allowed_lateness_s = 5
//! idle_timeout_s = 30
//!
//! [[aggregate]]
//! name = "count"
//! fn = "count"
//! ```

use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// Why a declaration is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Not valid TOML, or an unknown or missing key.
    #[error("application declaration: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value that does not make sense.
    #[error("application `{app}`: {message}")]
    Invalid {
        /// The application.
        app: String,
        /// Why.
        message: String,
    },
}

/// An application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Its name: part of every output id.
    pub name: String,
    /// How records are read.
    pub parse: ParseSpec,
    /// The time of a record.
    #[serde(default)]
    pub time: TimeSpec,
    /// The windows.
    pub window: WindowSpec,
    /// The fields a window's rows are grouped by (none: one row per window).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// What is computed per row.
    #[serde(rename = "aggregate")]
    pub aggregates: Vec<AggregateSpec>,
    /// Rows kept in the result (`count > 0`); all when absent.
    #[serde(default)]
    pub having: Option<String>,
}

/// How records are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "format", rename_all = "lowercase")]
pub enum ParseSpec {
    /// A JSON object per record (what `chief-agent`'s `LOGTOJSON` and `CSVTOJSON` send).
    Json,
    /// A line matched by a regular expression: its named groups are the fields; a line
    /// that does not match is a bad record.
    Regex {
        /// The expression.
        pattern: String,
    },
    /// A raw log line in one of the Kinesis Agent's `LOGTOJSON` formats
    /// (`COMMONAPACHELOG`, `COMBINEDAPACHELOG`, `APACHEERRORLOG`, `SYSLOG`,
    /// `RFC3339SYSLOG`), with the agent's field names (`response`, `bytes`, `severity`…);
    /// a line that does not match is a bad record.
    Log {
        /// The format.
        log_format: String,
    },
}

/// Where a record's time comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "source", rename_all = "lowercase")]
pub enum TimeSpec {
    /// When Kinesis took the record (`ApproximateArrivalTimestamp`, KDA's `ROWTIME`):
    /// stored with the record, so a replay sees the same time.
    #[default]
    Arrival,
    /// A field of the record.
    Field {
        /// The field.
        field: String,
        /// `rfc3339`, `epoch_millis`, `epoch_seconds`, or a `chrono` format with a zone
        /// (`%d/%b/%Y:%H:%M:%S %z`, the Apache log's) or without one (taken as UTC).
        #[serde(default = "rfc3339")]
        format: String,
    },
}

fn rfc3339() -> String {
    "rfc3339".to_owned()
}

/// Tumbling (`slide_s` absent or equal to `size_s`) or hopping windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The length of a window, seconds.
    pub size_s: u64,
    /// How far apart windows start, seconds (hopping windows overlap).
    #[serde(default)]
    pub slide_s: Option<u64>,
    /// How long after its end a window still takes records (by the shard's newest record
    /// time); records later than that go to the late output.
    #[serde(default)]
    pub allowed_lateness_s: u64,
    /// A shard with no record for this long no longer holds windows open.
    #[serde(default = "idle_timeout")]
    pub idle_timeout_s: u64,
}

fn idle_timeout() -> u64 {
    30
}

/// One aggregate of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    /// Its name in the result.
    pub name: String,
    /// The function.
    #[serde(rename = "fn")]
    pub function: Function,
    /// The field it reads (none for `count`).
    #[serde(default)]
    pub field: Option<String>,
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    /// Records.
    Count,
    /// Sum of a numeric field.
    Sum,
    /// Least value of a numeric field.
    Min,
    /// Greatest value of a numeric field.
    Max,
    /// Mean of a numeric field.
    Avg,
    /// Distinct values of a field (exact).
    CountDistinct,
}

impl Default for App {
    /// An empty declaration ([`App::check`] refuses it): what a config without `[app]`
    /// holds.
    fn default() -> Self {
        Self {
            name: String::new(),
            parse: ParseSpec::Json,
            time: TimeSpec::Arrival,
            window: WindowSpec {
                size_s: 60,
                slide_s: None,
                allowed_lateness_s: 0,
                idle_timeout_s: idle_timeout(),
            },
            group_by: Vec::new(),
            aggregates: Vec::new(),
            having: None,
        }
    }
}

impl App {
    /// Reads and checks a declaration.
    ///
    /// # Errors
    /// Not valid TOML, an unknown key, or a value that does not make sense.
    pub fn from_toml(text: &str) -> Result<Self, AppError> {
        let app: Self = toml::from_str(text)?;
        app.check()?;
        Ok(app)
    }

    fn invalid(&self, message: impl Into<String>) -> AppError {
        AppError::Invalid {
            app: self.name.clone(),
            message: message.into(),
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// The first value that does not make sense.
    pub fn check(&self) -> Result<(), AppError> {
        if self.name.is_empty() {
            return Err(self.invalid("`name` is empty"));
        }
        let w = &self.window;
        if w.size_s == 0 {
            return Err(self.invalid("`window.size_s` must be at least 1"));
        }
        if let Some(slide) = w.slide_s
            && (slide == 0 || slide > w.size_s || !w.size_s.is_multiple_of(slide))
        {
            return Err(self.invalid(format!(
                "`window.slide_s` ({slide}) must divide `window.size_s` ({})",
                w.size_s
            )));
        }
        if self.aggregates.is_empty() {
            return Err(self.invalid("at least one `[[aggregate]]` is needed"));
        }
        let mut names = std::collections::BTreeSet::new();
        for a in &self.aggregates {
            if !names.insert(a.name.as_str()) || self.group_by.contains(&a.name) {
                return Err(self.invalid(format!("`{}` is named twice", a.name)));
            }
            match (a.function, &a.field) {
                (Function::Count, Some(_)) => {
                    return Err(self.invalid(format!("`{}`: count takes no field", a.name)));
                }
                (Function::Count, None) | (_, Some(_)) => {}
                (_, None) => {
                    return Err(self.invalid(format!("`{}` needs a `field`", a.name)));
                }
            }
        }
        if let ParseSpec::Regex { pattern } = &self.parse {
            regex::Regex::new(pattern)
                .map_err(|e| self.invalid(format!("`parse.pattern`: {e}")))?;
        }
        if let ParseSpec::Log { log_format } = &self.parse
            && chief_agent::convert::log_format(log_format).is_none()
        {
            return Err(self.invalid(format!(
                "`parse.log_format` `{log_format}` is not one of {}",
                chief_agent::convert::LOG_FORMATS.join(", ")
            )));
        }
        if let Some(having) = &self.having {
            Condition::parse(having).map_err(|e| self.invalid(format!("`having`: {e}")))?;
        }
        Ok(())
    }

    /// The length of a window, milliseconds.
    pub fn size_ms(&self) -> i64 {
        secs_to_ms(self.window.size_s)
    }

    /// How far apart windows start, milliseconds.
    pub fn slide_ms(&self) -> i64 {
        secs_to_ms(self.window.slide_s.unwrap_or(self.window.size_s))
    }

    /// The allowed lateness, milliseconds.
    pub fn lateness_ms(&self) -> i64 {
        secs_to_ms(self.window.allowed_lateness_s)
    }
}

fn secs_to_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_001_status_per_minute_reads() {
        let app = App::from_toml(
            r#"
name = "status-per-minute"
group_by = ["response"]
[parse]
format = "json"
[window]
size_s = 60
[[aggregate]]
name = "count"
fn = "count"
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(app.size_ms(), 60_000);
        assert_eq!(app.slide_ms(), 60_000);
        assert!(matches!(app.time, TimeSpec::Arrival));
    }

    #[test]
    fn mistakes_are_named() {
        let base = "name = \"x\"\n[parse]\nformat = \"json\"\n";
        let unknown = format!(
            "{base}[window]\nsize_s = 60\nsize = 1\n[[aggregate]]\nname = \"c\"\nfn = \"count\"\n"
        );
        let e = App::from_toml(&unknown)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("size"), "{e}");
        let slide = format!(
            "{base}[window]\nsize_s = 60\nslide_s = 7\n[[aggregate]]\nname = \"c\"\nfn = \"count\"\n"
        );
        let e = App::from_toml(&slide)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("slide_s"), "{e}");
        let field =
            format!("{base}[window]\nsize_s = 60\n[[aggregate]]\nname = \"s\"\nfn = \"sum\"\n");
        let e = App::from_toml(&field)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("needs a `field`"), "{e}");
    }
}
