//! Object key templates with Amazon Data Firehose's prefix expressions, and Firehose's
//! object names.
//!
//! A template is literal text with expressions in it:
//!
//! | expression | renders |
//! |---|---|
//! | `!{timestamp:yyyy/MM/dd/HH}` | the object's time (UTC) in a `java.time.format.DateTimeFormatter` pattern: `yyyy` `yy` `MM` `M` `dd` `d` `HH` `H` `mm` `ss` `SSS`, `'quoted text'`; any other letter is refused |
//! | `!{firehose:random-string}` | 11 random letters and digits |
//! | `!{firehose:error-output-type}` | `processing-failed`, `elasticsearch-failed`, … (error prefixes only) |
//! | `!{partitionKeyFromQuery:name}` | the record's value of partition key `name` (dynamic partitioning; not in error prefixes) |
//!
//! [`KeyTemplate::firehose_prefix`] and [`KeyTemplate::firehose_error_prefix`] apply
//! Firehose's defaults: a prefix without any expression gets
//! `!{timestamp:yyyy/MM/dd/HH/}` appended (an empty one is just that), an error prefix
//! without one gets `!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH/}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// A template that does not parse, or uses an expression where Firehose refuses it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad key template `{template}`: {reason}")]
pub struct TemplateError {
    /// The template.
    pub template: String,
    /// What is wrong.
    pub reason: String,
}

/// Where a template is used: what it may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateUse {
    /// An object prefix: no `firehose:error-output-type`.
    Prefix,
    /// An error output prefix: no `partitionKeyFromQuery`.
    ErrorPrefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DateToken {
    Literal(String),
    Year4,
    Year2,
    Month2,
    Month,
    Day2,
    Day,
    Hour2,
    Hour,
    Minute2,
    Second2,
    Millis3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Timestamp(Vec<DateToken>),
    RandomString,
    ErrorOutputType,
    PartitionKey(String),
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    parts: Vec<Part>,
}

/// What a template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct KeyValues<'a> {
    /// The time `!{timestamp:…}` shows (Firehose: the arrival time of the object's
    /// oldest record).
    pub time: DateTime<Utc>,
    /// `!{firehose:error-output-type}`.
    pub error_output_type: &'a str,
    /// The values of `!{partitionKeyFromQuery:…}`.
    pub partition: &'a BTreeMap<String, String>,
}

const DEFAULT_TIMESTAMP: &str = "!{timestamp:yyyy/MM/dd/HH/}";

impl KeyTemplate {
    /// Parses `template` for `usage`.
    ///
    /// # Errors
    /// An unclosed or unknown expression, an unsupported date letter, or an expression
    /// `usage` does not allow.
    pub fn parse(template: &str, usage: TemplateUse) -> Result<Self, TemplateError> {
        let bad = |reason: String| TemplateError {
            template: template.to_owned(),
            reason,
        };
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| bad("an expression `!{` is not closed".into()))?;
            let expression = &after[..end];
            let (namespace, argument) = expression
                .split_once(':')
                .ok_or_else(|| bad(format!("`!{{{expression}}}` has no `namespace:`")))?;
            parts.push(match (namespace, argument) {
                ("timestamp", pattern) => {
                    Part::Timestamp(parse_date_pattern(pattern).map_err(bad)?)
                }
                ("firehose", "random-string") => Part::RandomString,
                ("firehose", "error-output-type") if usage == TemplateUse::ErrorPrefix => {
                    Part::ErrorOutputType
                }
                ("firehose", "error-output-type") => {
                    return Err(bad(
                        "`!{firehose:error-output-type}` is allowed in an error prefix only".into(),
                    ));
                }
                ("partitionKeyFromQuery", name) if usage == TemplateUse::Prefix => {
                    if name.is_empty() {
                        return Err(bad("`!{partitionKeyFromQuery:}` names no key".into()));
                    }
                    Part::PartitionKey(name.to_owned())
                }
                ("partitionKeyFromQuery", _) => {
                    return Err(bad(
                        "`!{partitionKeyFromQuery:…}` is not allowed in an error prefix".into(),
                    ));
                }
                _ => return Err(bad(format!("unknown expression `!{{{expression}}}`"))),
            });
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self {
            source: template.to_owned(),
            parts,
        })
    }

    /// A Firehose S3 prefix: `prefix` as given when it has an expression, else `prefix`
    /// followed by `!{timestamp:yyyy/MM/dd/HH/}` (so `Firehose/` becomes
    /// `Firehose/2026/12/04/19/`, and no prefix `2026/12/04/19/`).
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn firehose_prefix(prefix: &str) -> Result<Self, TemplateError> {
        let parsed = Self::parse(prefix, TemplateUse::Prefix)?;
        if parsed.has_expressions() {
            Ok(parsed)
        } else {
            Self::parse(&format!("{prefix}{DEFAULT_TIMESTAMP}"), TemplateUse::Prefix)
        }
    }

    /// A Firehose error output prefix: `prefix` as given when it has an expression, else
    /// `prefix` followed by `!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd/HH/}`.
    ///
    /// # Errors
    /// As [`parse`](Self::parse).
    pub fn firehose_error_prefix(prefix: &str) -> Result<Self, TemplateError> {
        let parsed = Self::parse(prefix, TemplateUse::ErrorPrefix)?;
        if parsed.has_expressions() {
            Ok(parsed)
        } else {
            Self::parse(
                &format!("{prefix}!{{firehose:error-output-type}}/{DEFAULT_TIMESTAMP}"),
                TemplateUse::ErrorPrefix,
            )
        }
    }

    /// The template as written (after defaults).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it has any expression.
    pub fn has_expressions(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Literal(_)))
    }

    /// The partition keys it uses, in order of first use.
    pub fn partition_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for part in &self.parts {
            if let Part::PartitionKey(name) = part
                && !keys.contains(&name.as_str())
            {
                keys.push(name);
            }
        }
        keys
    }

    /// The key (prefix) for `values`.
    ///
    /// # Errors
    /// The name of a partition key `values` has no value for.
    pub fn render(&self, values: &KeyValues<'_>) -> Result<String, String> {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Timestamp(tokens) => render_date(&mut out, tokens, values.time),
                Part::RandomString => out.push_str(&random_string(11)),
                Part::ErrorOutputType => out.push_str(values.error_output_type),
                Part::PartitionKey(name) => {
                    out.push_str(values.partition.get(name).ok_or_else(|| name.clone())?);
                }
            }
        }
        Ok(out)
    }
}

fn parse_date_pattern(pattern: &str) -> Result<Vec<DateToken>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == '\'')
                .ok_or_else(|| format!("a quote in `{pattern}` is not closed"))?;
            let text: String = chars[i + 1..i + 1 + end].iter().collect();
            // `''` is a quote.
            tokens.push(DateToken::Literal(if text.is_empty() {
                "'".to_owned()
            } else {
                text
            }));
            i += end + 2;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            tokens.push(DateToken::Literal(c.to_string()));
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|x| **x == c).count();
        tokens.push(match (c, run) {
            ('y' | 'u', 4) => DateToken::Year4,
            ('y' | 'u', 2) => DateToken::Year2,
            ('M', 2) => DateToken::Month2,
            ('M', 1) => DateToken::Month,
            ('d', 2) => DateToken::Day2,
            ('d', 1) => DateToken::Day,
            ('H', 2) => DateToken::Hour2,
            ('H', 1) => DateToken::Hour,
            ('m', 2) => DateToken::Minute2,
            ('s', 2) => DateToken::Second2,
            ('S', 3) => DateToken::Millis3,
            _ => {
                return Err(format!(
                    "`{}` in `{pattern}` is not a supported date field (yyyy yy MM M dd d HH H mm ss SSS, 'text')",
                    chars[i..i + run].iter().collect::<String>()
                ));
            }
        });
        i += run;
    }
    Ok(tokens)
}

fn render_date(out: &mut String, tokens: &[DateToken], t: DateTime<Utc>) {
    for token in tokens {
        // Writing to a String cannot fail.
        let _ = match token {
            DateToken::Literal(text) => out.write_str(text),
            DateToken::Year4 => write!(out, "{:04}", t.year()),
            DateToken::Year2 => write!(out, "{:02}", t.year().rem_euclid(100)),
            DateToken::Month2 => write!(out, "{:02}", t.month()),
            DateToken::Month => write!(out, "{}", t.month()),
            DateToken::Day2 => write!(out, "{:02}", t.day()),
            DateToken::Day => write!(out, "{}", t.day()),
            DateToken::Hour2 => write!(out, "{:02}", t.hour()),
            DateToken::Hour => write!(out, "{}", t.hour()),
            DateToken::Minute2 => write!(out, "{:02}", t.minute()),
            DateToken::Second2 => write!(out, "{:02}", t.second()),
            DateToken::Millis3 => write!(out, "{:03}", t.timestamp_subsec_millis()),
        };
    }
}

/// `len` random ASCII letters and digits.
pub fn random_string(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]));
        }
    }
    out
}

/// Firehose's object name: `<delivery>-<version>-<yyyy-MM-dd-HH-mm-ss>-<uuid>`, with
/// `extension` (e.g. `.gz`) appended.
pub fn firehose_object_name(
    delivery: &str,
    version: u32,
    time: DateTime<Utc>,
    extension: &str,
) -> String {
    format!(
        "{delivery}-{version}-{}-{}{extension}",
        time.format("%Y-%m-%d-%H-%M-%S"),
        uuid::Uuid::new_v4()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    fn render(t: &KeyTemplate, time: &str, partition: &[(&str, &str)]) -> Result<String, String> {
        let partition: BTreeMap<String, String> = partition
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        t.render(&KeyValues {
            time: at(time),
            error_output_type: "elasticsearch-failed",
            partition: &partition,
        })
    }

    #[test]
    fn firehose_defaults() -> Result<(), TemplateError> {
        let t = KeyTemplate::firehose_prefix("Firehose/")?;
        assert_eq!(
            render(&t, "2026-12-04T09:05:06Z", &[]),
            Ok("Firehose/2026/12/04/09/".into())
        );
        let t = KeyTemplate::firehose_prefix("")?;
        assert_eq!(
            render(&t, "2026-01-02T23:59:59Z", &[]),
            Ok("2026/01/02/23/".into())
        );
        let t = KeyTemplate::firehose_error_prefix("errors/")?;
        assert_eq!(
            render(&t, "2026-12-04T09:05:06Z", &[]),
            Ok("errors/elasticsearch-failed/2026/12/04/09/".into())
        );
        Ok(())
    }

    #[test]
    fn expressions_render() -> Result<(), TemplateError> {
        let t = KeyTemplate::firehose_prefix(
            "logs/!{partitionKeyFromQuery:customer}/!{timestamp:yyyy-MM-dd'T'HH}/d=!{timestamp:d}/",
        )?;
        assert_eq!(t.partition_keys(), vec!["customer"]);
        assert_eq!(
            render(&t, "2026-03-07T04:00:00Z", &[("customer", "c-42")]),
            Ok("logs/c-42/2026-03-07T04/d=7/".into())
        );
        assert_eq!(
            render(&t, "2026-03-07T04:00:00Z", &[]),
            Err("customer".into())
        );
        let t = KeyTemplate::parse("x/!{firehose:random-string}/", TemplateUse::Prefix)?;
        let a = render(&t, "2026-03-07T04:00:00Z", &[]).unwrap_or_default();
        assert_eq!(a.len(), "x//".len() + 11);
        assert!(a[2..13].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(Ok(a), render(&t, "2026-03-07T04:00:00Z", &[]));
        Ok(())
    }

    #[test]
    fn refuses_what_firehose_refuses() {
        for (template, usage) in [
            ("a/!{timestamp:yyyy", TemplateUse::Prefix),
            ("a/!{timestamp:yyyyy}", TemplateUse::Prefix),
            ("a/!{timestamp:EEE}", TemplateUse::Prefix),
            ("a/!{firehose:error-output-type}/", TemplateUse::Prefix),
            ("a/!{partitionKeyFromQuery:x}/", TemplateUse::ErrorPrefix),
            ("a/!{partitionKeyFromQuery:}/", TemplateUse::Prefix),
            ("a/!{nope:x}/", TemplateUse::Prefix),
            ("a/!{timestamp:'x}/", TemplateUse::Prefix),
        ] {
            assert!(
                KeyTemplate::parse(template, usage).is_err(),
                "{template} should be refused"
            );
        }
    }

    #[test]
    fn object_names_as_firehose_writes_them() {
        let name = firehose_object_name("taxi", 1, at("2026-12-04T19:05:06Z"), ".gz");
        assert!(name.starts_with("taxi-1-2026-12-04-19-05-06-"), "{name}");
        assert!(name.ends_with(".gz"));
        assert_eq!(name.len(), "taxi-1-2026-12-04-19-05-06-".len() + 36 + 3);
    }
}
