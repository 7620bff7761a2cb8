//! `dataProcessingOptions`: a record (a line, or the lines of a multi-line record) through
//! each option in order. A record an option cannot convert is an error, handed back with
//! why — never dropped, never shifted into the wrong fields.

use regex::Regex;
use serde_json::Value;

use crate::config::{JsonFormat, ProcessingOption};

/// One conversion step.
#[derive(Debug, Clone)]
enum Step {
    SingleLine {
        trim: bool,
        escape_newline: bool,
    },
    Csv {
        object: ObjectWriter,
        delimiter: Delimiter,
    },
    Log {
        format: String,
        pattern: Regex,
        object: ObjectWriter,
        dash_is_null: bool,
    },
    Metadata {
        timestamp: bool,
        metadata: Option<Value>,
        pretty: bool,
    },
    Brackets,
}

/// A CSV delimiter: one character (RFC 4180 quoting), or a regex (plain split, as the
/// agent's `String.split`).
#[derive(Debug, Clone)]
enum Delimiter {
    Char(u8),
    Regex(Regex),
}

/// Writes JSON objects with a fixed list of keys in order (the agent's `LinkedHashMap`),
/// compact or indented as Jackson's default pretty printer does: the keys are encoded
/// once, the values written straight into the output.
#[derive(Debug, Clone)]
struct ObjectWriter {
    /// `"name"` then `:` (or ` : ` when pretty), each key.
    keys: Vec<Vec<u8>>,
    pretty: bool,
}

impl ObjectWriter {
    fn new(names: &[String], pretty: bool) -> Self {
        let keys = names
            .iter()
            .map(|name| {
                let mut key = Vec::with_capacity(name.len() + 5);
                write_json_str(&mut key, name);
                key.extend_from_slice(if pretty { b" : " } else { b":" });
                key
            })
            .collect();
        Self { keys, pretty }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// The object of `values` (one per key; `None` is `null`) and a newline.
    fn write<'a>(&self, values: impl Iterator<Item = Option<&'a str>>, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (key, value)) in self.keys.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if self.pretty {
                out.extend_from_slice(b"\n  ");
            }
            out.extend_from_slice(key);
            match value {
                Some(v) => write_json_str(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        if self.pretty && !self.keys.is_empty() {
            out.push(b'\n');
        }
        out.extend_from_slice(b"}\n");
    }
}

/// `text` as a JSON string, escaped as serde_json escapes it.
fn write_json_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The flow's conversions.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    steps: Vec<Step>,
}

// The agent's building blocks (PatternConstants).
const INT: &str = r"(?:[+-]?(?:[0-9]+))";
const POSINT: &str = r"(?:[1-9][0-9]*)";
const NONNEGINT: &str = r"(?:[0-9]+)";
const WORD: &str = r"\w+";
const NOQUOTE: &str = r#"[^"]+"#;
const IP: &str = r"(?:[\d\.]+)";
const HOSTNAME: &str = r"(?:[\w\-]+)(?:\.(?:[\w\-]+))*(?:\.?|\b)";
const USER: &str = r"(?:[a-zA-Z0-9._-]+)";
const MONTHDAY: &str = r"(?:(?:0[1-9])|(?:[12][0-9])|(?:3[01])|[1-9])";
const DAY: &str = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)";
const MONTH: &str = r"\b(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|Sep(?:tember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b";
const YEAR: &str = r"(?:[1-9]\d*)";
const HOUR: &str = r"(?:2[0123]|[01]?[0-9])";
const MINUTE: &str = r"(?:[0-5][0-9])";
const SECOND: &str = r"(?:(?:[0-5]?[0-9]|60)(?:[:\.,][0-9]+)?)";
const RFC3339: &str = r"(?:\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?)(?:Z|(?:[-+]\d{2}:\d{2}))";

/// The `LOGTOJSON` formats: their full-line regex (the agent's, from its
/// `PatternConstants`) and default field names.
pub fn log_format(name: &str) -> Option<(String, &'static [&'static str])> {
    let iporhost = format!("(?:{HOSTNAME}|{IP})");
    let time = format!("(?:{HOUR}:{MINUTE}:{SECOND})");
    let httpdate = format!(r"(?:{MONTHDAY}/{MONTH}/{YEAR}:{time}\s{INT})");
    let common = format!(
        r#"^({iporhost}) ({USER}) ({USER}) \[({httpdate})\] "({NOQUOTE})" ({INT}|\-) ({INT}|\-)"#
    );
    let syslog_prog = format!(r"([\w\._/%-]+)(?:\[({POSINT})\])?");
    let facility = format!("<{NONNEGINT}.{NONNEGINT}>");
    Some(match name {
        "COMMONAPACHELOG" => (
            format!("{common}.*$"),
            &[
                "host", "ident", "authuser", "datetime", "request", "response", "bytes",
            ],
        ),
        "COMBINEDAPACHELOG" => (
            format!(r#"{common} "({NOQUOTE})" "({NOQUOTE})".*$"#),
            &[
                "host", "ident", "authuser", "datetime", "request", "response", "bytes", "referer",
                "agent",
            ],
        ),
        "APACHEERRORLOG" => {
            let stamp = format!(r"(?:{DAY}\s+{MONTH}\s+{MONTHDAY}\s+{time}\s+{YEAR})");
            let urihost = format!("(?:{iporhost}(?::{POSINT})?)");
            (
                format!(
                    r"^\[({stamp})\] \[(?:({WORD}):)?({WORD})\] \[pid ({NONNEGINT})(?::tid ({NONNEGINT}))?\] \[client ({urihost})\] (.*)$"
                ),
                &[
                    "timestamp",
                    "module",
                    "severity",
                    "processid",
                    "threadid",
                    "client",
                    "message",
                ],
            )
        }
        "SYSLOG" => (
            format!(
                r"^((?:{MONTH}\s+{MONTHDAY}\s+{time})) (?:{facility} )?({USER}) {syslog_prog}: (.*)$"
            ),
            &["timestamp", "hostname", "program", "processid", "message"],
        ),
        "RFC3339SYSLOG" => (
            format!(r"^({RFC3339}) (?:{facility} )?({USER}) {syslog_prog}: (.*)$"),
            &["timestamp", "hostname", "program", "processid", "message"],
        ),
        _ => return None,
    })
}

/// The `logFormat` values.
pub const LOG_FORMATS: [&str; 5] = [
    "COMMONAPACHELOG",
    "COMBINEDAPACHELOG",
    "APACHEERRORLOG",
    "SYSLOG",
    "RFC3339SYSLOG",
];

impl Pipeline {
    /// The steps of `options`.
    ///
    /// # Errors
    /// An option the agent would refuse (no field names, a bad regex, an unknown log
    /// format, a delimiter that is not one character).
    pub fn new(options: &[ProcessingOption]) -> Result<Self, String> {
        let mut steps = Vec::new();
        for option in options {
            steps.push(match option {
                ProcessingOption::Singleline { parse_options } => {
                    for o in parse_options {
                        if o != "NO_TRIM" && o != "ESCAPE_NEW_LINE" {
                            return Err(format!(
                                "SINGLELINE: parseOptions `{o}` is not NO_TRIM or ESCAPE_NEW_LINE"
                            ));
                        }
                    }
                    Step::SingleLine {
                        trim: !parse_options.iter().any(|o| o == "NO_TRIM"),
                        escape_newline: parse_options.iter().any(|o| o == "ESCAPE_NEW_LINE"),
                    }
                }
                ProcessingOption::Csvtojson {
                    custom_field_names,
                    delimiter,
                    json_format,
                } => {
                    if custom_field_names.is_empty() {
                        return Err("CSVTOJSON: customFieldNames is empty".into());
                    }
                    let text = delimiter.as_deref().unwrap_or(",");
                    let delimiter = match text.as_bytes() {
                        [b] if !b".[]()*+?{}|^$\\".contains(b) => Delimiter::Char(*b),
                        [b'\\', b't'] => Delimiter::Char(b'\t'),
                        [b'\\', b] if b.is_ascii_punctuation() => Delimiter::Char(*b),
                        _ => Delimiter::Regex(
                            Regex::new(text)
                                .map_err(|e| format!("CSVTOJSON: delimiter `{text}`: {e}"))?,
                        ),
                    };
                    Step::Csv {
                        object: ObjectWriter::new(
                            custom_field_names,
                            *json_format == JsonFormat::Prettyprint,
                        ),
                        delimiter,
                    }
                }
                ProcessingOption::Logtojson {
                    log_format: format,
                    match_pattern,
                    custom_field_names,
                    json_format,
                } => {
                    let (default_pattern, default_names) = log_format(format).ok_or_else(|| {
                        format!(
                            "LOGTOJSON: logFormat `{format}` is not one of {}",
                            LOG_FORMATS.join(", ")
                        )
                    })?;
                    let names: Vec<String> = match (match_pattern, custom_field_names) {
                        (Some(_), None) => {
                            return Err("LOGTOJSON: matchPattern needs customFieldNames".into());
                        }
                        (_, Some(names)) => names.clone(),
                        (None, None) => default_names.iter().map(|n| (*n).to_owned()).collect(),
                    };
                    let source = match match_pattern {
                        // Java's matches(): the whole line.
                        Some(p) => format!("^(?:{p})$"),
                        None => default_pattern,
                    };
                    let pattern =
                        Regex::new(&source).map_err(|e| format!("LOGTOJSON: matchPattern: {e}"))?;
                    if pattern.captures_len() - 1 != names.len() {
                        return Err(format!(
                            "LOGTOJSON: the pattern has {} groups for {} field names",
                            pattern.captures_len() - 1,
                            names.len()
                        ));
                    }
                    Step::Log {
                        format: format.clone(),
                        pattern,
                        object: ObjectWriter::new(&names, *json_format == JsonFormat::Prettyprint),
                        dash_is_null: format.contains("APACHE"),
                    }
                }
                ProcessingOption::Addmetadata {
                    timestamp,
                    metadata,
                    json_format,
                } => Step::Metadata {
                    timestamp: timestamp
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case("true")),
                    metadata: metadata.clone(),
                    pretty: *json_format == JsonFormat::Prettyprint,
                },
                ProcessingOption::Addbrackets => Step::Brackets,
            });
        }
        Ok(Self { steps })
    }

    /// Whether a step uses the time the record was read (`ADDMETADATA` with `timestamp`).
    pub fn needs_time(&self) -> bool {
        self.steps.iter().any(|s| {
            matches!(
                s,
                Step::Metadata {
                    timestamp: true,
                    ..
                }
            )
        })
    }

    /// Whether it has no step (records are the lines as read, with their newline).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Converts one record (without its final newline). The output ends with a newline,
    /// as the agent's records do.
    ///
    /// # Errors
    /// Why the record does not convert.
    pub fn convert(&self, record: &[u8], read_at: &str) -> Result<Vec<u8>, String> {
        let mut current: std::borrow::Cow<'_, [u8]> = std::borrow::Cow::Borrowed(record);
        for step in &self.steps {
            // Each step takes the record without its final newline, as the agent's do.
            if let Some(without) = current.strip_suffix(b"\n") {
                current = std::borrow::Cow::Owned(without.to_vec());
            }
            let next: Vec<u8> = match step {
                Step::SingleLine {
                    trim,
                    escape_newline,
                } => {
                    let mut out = single_line(&current, *trim, *escape_newline);
                    out.push(b'\n');
                    out
                }
                Step::Csv { object, delimiter } => {
                    let text = std::str::from_utf8(&current)
                        .map_err(|e| format!("CSVTOJSON: not UTF-8: {e}"))?;
                    // A CRLF file's `\r` is not part of the last column.
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    let fields: Vec<std::borrow::Cow<'_, str>> = match delimiter {
                        Delimiter::Char(d) => split_csv_fields(text, *d)?,
                        Delimiter::Regex(r) => {
                            r.split(text).map(std::borrow::Cow::Borrowed).collect()
                        }
                    };
                    if fields.len() != object.len() {
                        return Err(format!(
                            "CSVTOJSON: {} columns, customFieldNames has {}",
                            fields.len(),
                            object.len()
                        ));
                    }
                    let mut out = Vec::with_capacity(text.len() * 2 + 24 * object.len());
                    object.write(fields.iter().map(|f| Some(f.as_ref())), &mut out);
                    out
                }
                Step::Log {
                    format,
                    pattern,
                    object,
                    dash_is_null,
                } => {
                    let text = std::str::from_utf8(&current)
                        .map_err(|e| format!("LOGTOJSON: not UTF-8: {e}"))?;
                    let captures = pattern
                        .captures(text)
                        .ok_or_else(|| format!("LOGTOJSON: the line does not match {format}"))?;
                    let values = (1..=object.len()).map(|i| match captures.get(i) {
                        Some(m) if *dash_is_null && m.as_str() == "-" => None,
                        Some(m) => Some(m.as_str()),
                        None => None,
                    });
                    let mut out = Vec::with_capacity(text.len() * 2 + 24 * object.len());
                    object.write(values, &mut out);
                    out
                }
                Step::Metadata {
                    timestamp,
                    metadata,
                    pretty,
                } => {
                    let mut object: Vec<(&str, Value)> = Vec::new();
                    if *timestamp {
                        object.push(("ts", Value::String(read_at.to_owned())));
                    }
                    if let Some(metadata) = metadata {
                        object.push(("metadata", metadata.clone()));
                    }
                    object.push((
                        "data",
                        Value::String(String::from_utf8_lossy(&current).into_owned()),
                    ));
                    json_line(&object, *pretty)?
                }
                Step::Brackets => {
                    let mut out = Vec::with_capacity(current.len() + 2);
                    out.push(b'{');
                    out.extend_from_slice(&current);
                    out.push(b'}');
                    out
                }
            };
            current = std::borrow::Cow::Owned(next);
        }
        let mut out = current.into_owned();
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// An object with its keys in the given order (the agent's `LinkedHashMap`), compact or
/// indented as Jackson's default pretty printer does, and a newline.
fn json_line(fields: &[(&str, Value)], pretty: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 * fields.len());
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if pretty {
            out.extend_from_slice(b"\n  ");
        }
        serde_json::to_writer(&mut out, key).map_err(|e| e.to_string())?;
        out.extend_from_slice(if pretty { b" : " } else { b":" });
        serde_json::to_writer(&mut out, value).map_err(|e| e.to_string())?;
    }
    if pretty && !fields.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(b"}\n");
    Ok(out)
}

/// The agent's `SINGLELINE`: the lines trimmed (Java's `trim`: every character up to
/// U+0020) and joined with nothing, or with `\\n` (`ESCAPE_NEW_LINE`).
fn single_line(record: &[u8], trim: bool, escape_newline: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(record);
    let mut out = String::with_capacity(text.len());
    let pieces: Vec<&str> = text.split('\n').collect();
    let last = pieces
        .iter()
        .rposition(|p| !p.is_empty())
        .map_or(0, |i| i + 1);
    for (i, piece) in pieces[..last].iter().enumerate() {
        if i > 0 && escape_newline {
            out.push_str("\\\\n");
        }
        if trim {
            out.push_str(piece.trim_matches(|c: char| c <= ' '));
        } else {
            out.push_str(piece);
        }
    }
    out.into_bytes()
}

/// Splits one CSV row (RFC 4180): fields separated by `delimiter`, a field in double
/// quotes may hold the delimiter, newlines and `""` for a quote.
///
/// # Errors
/// A quote that is not closed, or text after a closing quote.
pub fn split_csv(row: &str, delimiter: u8) -> Result<Vec<String>, String> {
    Ok(split_csv_fields(row, delimiter)?
        .into_iter()
        .map(std::borrow::Cow::into_owned)
        .collect())
}

/// [`split_csv`], a field borrowed from `row` unless quoting changed it.
fn split_csv_fields(row: &str, delimiter: u8) -> Result<Vec<std::borrow::Cow<'_, str>>, String> {
    let bytes = row.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut field = Vec::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("CSVTOJSON: a quoted field is not closed".into()),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b) => {
                        field.push(*b);
                        i += 1;
                    }
                }
            }
            // Cut at ASCII quotes of a `str`: still UTF-8.
            fields.push(std::borrow::Cow::Owned(
                String::from_utf8(field).map_err(|e| format!("CSVTOJSON: {e}"))?,
            ));
            match bytes.get(i) {
                None => break,
                Some(b) if *b == delimiter => i += 1,
                Some(_) => {
                    return Err(format!(
                        "CSVTOJSON: text after the closing quote of field {}",
                        fields.len()
                    ));
                }
            }
        } else {
            let end = bytes[i..]
                .iter()
                .position(|b| *b == delimiter)
                .map_or(bytes.len(), |p| i + p);
            // `delimiter` is ASCII: `i` and `end` are character boundaries.
            fields.push(std::borrow::Cow::Borrowed(
                row.get(i..end).unwrap_or_default(),
            ));
            if end == bytes.len() {
                break;
            }
            i = end + 1;
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(names: &[&str]) -> Pipeline {
        Pipeline::new(&[ProcessingOption::Csvtojson {
            custom_field_names: names.iter().map(|n| (*n).to_owned()).collect(),
            delimiter: None,
            json_format: JsonFormat::Compact,
        }])
        .unwrap_or_default()
    }

    #[test]
    fn csv_rows_become_objects_in_field_order() {
        let p = csv(&["b", "a", "c"]);
        assert_eq!(
            p.convert(b"1,two,3.5", "").map(String::from_utf8),
            Ok(Ok("{\"b\":\"1\",\"a\":\"two\",\"c\":\"3.5\"}\n".to_owned()))
        );
        // RFC 4180: delimiters and quotes inside quotes, empty fields.
        assert_eq!(
            split_csv(r#""x, y","say ""hi""",,"#, b','),
            Ok(vec![
                "x, y".into(),
                "say \"hi\"".into(),
                String::new(),
                String::new()
            ])
        );
        // The wrong number of columns is an error, never shifted.
        let err = p.convert(b"0,1,two,3.5", "").expect_err("4 columns");
        assert!(err.contains("4 columns, customFieldNames has 3"), "{err}");
        assert!(p.convert(b"1,2", "").is_err());
        assert!(p.convert(br#""open,2,3"#, "").is_err());
    }

    #[test]
    fn combined_apache_lines_become_objects() {
        let p = Pipeline::new(&[ProcessingOption::Logtojson {
            log_format: "COMBINEDAPACHELOG".into(),
            match_pattern: None,
            custom_field_names: None,
            json_format: JsonFormat::Compact,
        }])
        .unwrap_or_default();
        let line = br#"203.0.113.9 - - [01/Jan/2024:00:00:01 +0000] "GET /list HTTP/1.0" 404 4987 "http://www.example1.com/explore" "Mozilla/5.0 (X11)""#;
        let out = p.convert(line, "").unwrap_or_default();
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["host"], "203.0.113.9");
        assert_eq!(v["datetime"], "01/Jan/2024:00:00:01 +0000");
        assert_eq!(v["request"], "GET /list HTTP/1.0");
        assert_eq!(v["response"], "404");
        assert_eq!(v["bytes"], "4987");
        assert_eq!(v["agent"], "Mozilla/5.0 (X11)");
        assert!(p.convert(b"not a log line", "").is_err());
    }

    #[test]
    fn syslog_and_metadata() {
        let p = Pipeline::new(&[ProcessingOption::Logtojson {
            log_format: "SYSLOG".into(),
            match_pattern: None,
            custom_field_names: None,
            json_format: JsonFormat::Compact,
        }])
        .unwrap_or_default();
        let out = p
            .convert(b"Mar  7 04:02:11 host1 sshd[4321]: Accepted publickey", "")
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["timestamp"], "Mar  7 04:02:11");
        assert_eq!(v["hostname"], "host1");
        assert_eq!(v["program"], "sshd");
        assert_eq!(v["processid"], "4321");
        assert_eq!(v["message"], "Accepted publickey");
        let m = Pipeline::new(&[ProcessingOption::Addmetadata {
            timestamp: Some("true".into()),
            metadata: Some(serde_json::json!({"env": "test"})),
            json_format: JsonFormat::Compact,
        }])
        .unwrap_or_default();
        assert_eq!(
            m.convert(b"a line", "2026-12-04T20:00:00.000Z").map(String::from_utf8),
            Ok(Ok("{\"ts\":\"2026-12-04T20:00:00.000Z\",\"metadata\":{\"env\":\"test\"},\"data\":\"a line\"}\n".to_owned()))
        );
    }

    #[test]
    fn every_format_of_the_agent_parses_its_lines() {
        for (format, line, field, value) in [
            (
                "COMMONAPACHELOG",
                r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
                "authuser",
                "frank",
            ),
            (
                "APACHEERRORLOG",
                "[Wed Oct 11 14:32:52 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] File does not exist: /usr/local/apache2/htdocs/favicon.ico",
                "client",
                "72.15.99.187",
            ),
            (
                "RFC3339SYSLOG",
                "2026-12-04T20:00:00.123Z host1 cron[99]: job done",
                "program",
                "cron",
            ),
        ] {
            let p = Pipeline::new(&[ProcessingOption::Logtojson {
                log_format: format.into(),
                match_pattern: None,
                custom_field_names: None,
                json_format: JsonFormat::Compact,
            }])
            .unwrap_or_default();
            let out = p
                .convert(line.as_bytes(), "")
                .unwrap_or_else(|e| panic!("{format}: {e}"));
            let v: Value = serde_json::from_slice(&out).unwrap_or_default();
            assert_eq!(v[field], value, "{format}");
        }
        // The apache formats' `-` is null.
        let p = Pipeline::new(&[ProcessingOption::Logtojson {
            log_format: "COMMONAPACHELOG".into(),
            match_pattern: None,
            custom_field_names: None,
            json_format: JsonFormat::Compact,
        }])
        .unwrap_or_default();
        let out = p
            .convert(
                br#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 304 -"#,
                "",
            )
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&out).unwrap_or_default();
        assert_eq!(v["bytes"], Value::Null);
        assert_eq!(v["ident"], Value::Null);
        // A custom pattern needs field names, one per group.
        assert!(
            Pipeline::new(&[ProcessingOption::Logtojson {
                log_format: "SYSLOG".into(),
                match_pattern: Some("(a)(b)".into()),
                custom_field_names: Some(vec!["x".into()]),
                json_format: JsonFormat::Compact,
            }])
            .is_err()
        );
        assert!(
            Pipeline::new(&[ProcessingOption::Logtojson {
                log_format: "RFC5424SYSLOG".into(),
                match_pattern: None,
                custom_field_names: None,
                json_format: JsonFormat::Compact,
            }])
            .is_err()
        );
    }

    #[test]
    fn single_line_joins() {
        let p = Pipeline::new(&[ProcessingOption::Singleline {
            parse_options: Vec::new(),
        }])
        .unwrap_or_default();
        assert_eq!(
            p.convert(b"Exception: x\n    at a.b(C.java:1)\n    at d\n", ""),
            Ok(b"Exception: xat a.b(C.java:1)at d\n".to_vec())
        );
        let p = Pipeline::new(&[ProcessingOption::Singleline {
            parse_options: vec!["ESCAPE_NEW_LINE".into()],
        }])
        .unwrap_or_default();
        assert_eq!(p.convert(b"a\n b", ""), Ok(b"a\\\\nb\n".to_vec()));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_control: String = (0u8..0x20).map(char::from).collect();
        every_control.push_str("\"\\/\u{7f}é€😀 plain");
        for text in ["", "plain", "a\"b", "tab\there", &every_control] {
            let mut out = Vec::new();
            write_json_str(&mut out, text);
            let expected = serde_json::to_vec(text).expect("serde_json");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&expected)
            );
        }
    }
}
