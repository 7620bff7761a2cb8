//! A record's bytes → the fields the application uses: its time, its group, and the
//! values its aggregates read. Only those fields are taken out of a JSON object (the
//! rest is skipped without being built), so parsing costs little more than scanning.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::app::{App, Function, ParseSpec, TimeSpec};

/// One value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A number.
    Num(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`, an object or an array.
    Other,
}

impl Scalar<'_> {
    /// The value as a number, if it is one (or a string holding one).
    pub fn number(&self) -> Option<f64> {
        match self {
            Self::Num(n) => Some(*n),
            Self::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// Appends the value as text (how it is grouped and counted distinct).
    pub fn push_text(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Self::Str(s) => out.push_str(s),
            Self::Num(n) => {
                let _ = write!(out, "{n}");
            }
            Self::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Self::Other => {}
        }
    }
}

/// Why a record is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRecord(pub String);

/// The fields of one record the application needs, in the order [`Parser::fields`] lists.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// By index in [`Parser::fields`]; `None` when the record lacks it.
    pub values: Vec<Option<Scalar<'a>>>,
}

/// Reads records for one application.
#[derive(Debug, Clone)]
pub struct Parser {
    format: Format,
    /// Every field needed: the time field (if any), then group-by, then aggregate fields.
    fields: Vec<String>,
    time: Option<(usize, TimeFormat)>,
    /// Index in `fields` of each group-by field.
    pub group: Vec<usize>,
    /// Index in `fields` of each aggregate's field (`None` for `count`).
    pub aggregate: Vec<Option<usize>>,
}

#[derive(Debug, Clone)]
enum Format {
    Json,
    Regex(regex::Regex),
    /// The agent's full-line expression, its groups in the order of the field names.
    Log(regex::Regex, Vec<String>),
}

#[derive(Debug, Clone)]
enum TimeFormat {
    Rfc3339,
    EpochMillis,
    EpochSeconds,
    Chrono { format: String, zoned: bool },
}

fn index_of(fields: &mut Vec<String>, name: &str) -> usize {
    if let Some(i) = fields.iter().position(|f| f == name) {
        return i;
    }
    fields.push(name.to_owned());
    fields.len() - 1
}

impl Parser {
    /// The parser of `app` (checked by [`App::check`]).
    ///
    /// # Errors
    /// A regular expression that does not compile.
    pub fn new(app: &App) -> Result<Self, BadRecord> {
        let format = match &app.parse {
            ParseSpec::Json => Format::Json,
            ParseSpec::Regex { pattern } => {
                Format::Regex(regex::Regex::new(pattern).map_err(|e| BadRecord(e.to_string()))?)
            }
            ParseSpec::Log { log_format } => {
                let (pattern, names) = chief_agent::convert::log_format(log_format)
                    .ok_or_else(|| BadRecord(format!("unknown log format `{log_format}`")))?;
                Format::Log(
                    regex::Regex::new(&pattern).map_err(|e| BadRecord(e.to_string()))?,
                    names.iter().map(|n| (*n).to_owned()).collect(),
                )
            }
        };
        let mut fields = Vec::new();
        let time = match &app.time {
            TimeSpec::Arrival => None,
            TimeSpec::Field { field, format } => {
                let i = index_of(&mut fields, field);
                let f = match format.as_str() {
                    "rfc3339" => TimeFormat::Rfc3339,
                    "epoch_millis" => TimeFormat::EpochMillis,
                    "epoch_seconds" => TimeFormat::EpochSeconds,
                    other => TimeFormat::Chrono {
                        format: other.to_owned(),
                        zoned: other.contains("%z") || other.contains("%:z"),
                    },
                };
                Some((i, f))
            }
        };
        let group = app
            .group_by
            .iter()
            .map(|g| index_of(&mut fields, g))
            .collect();
        let aggregate = app
            .aggregates
            .iter()
            .map(|a| match (a.function, &a.field) {
                (Function::Count, _) | (_, None) => None,
                (_, Some(f)) => Some(index_of(&mut fields, f)),
            })
            .collect();
        Ok(Self {
            format,
            fields,
            time,
            group,
            aggregate,
        })
    }

    /// The fields needed, by index.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    /// Takes the needed fields out of `data`.
    ///
    /// # Errors
    /// Not a JSON object, or a line the expression does not match.
    pub fn parse<'a>(&self, data: &'a [u8], out: &mut Fields<'a>) -> Result<(), BadRecord> {
        out.values.clear();
        out.values.resize(self.fields.len(), None);
        match &self.format {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_slice(data);
                de::Deserializer::deserialize_map(
                    &mut de,
                    ObjectVisitor {
                        fields: &self.fields,
                        out: &mut out.values,
                    },
                )
                .map_err(|e| BadRecord(format!("not a JSON object: {e}")))?;
                de.end()
                    .map_err(|e| BadRecord(format!("not a JSON object: {e}")))?;
            }
            Format::Regex(re) => {
                let caps = re.captures(line_of(data)?).ok_or_else(|| {
                    BadRecord("the line does not match `parse.pattern`".to_owned())
                })?;
                for (i, name) in self.fields.iter().enumerate() {
                    if let Some(m) = caps.name(name) {
                        out.values[i] = Some(Scalar::Str(Cow::Borrowed(m.as_str())));
                    }
                }
            }
            Format::Log(re, names) => {
                let caps = re
                    .captures(line_of(data)?)
                    .ok_or_else(|| BadRecord("the line is not in `parse.log_format`".to_owned()))?;
                for (group, name) in names.iter().enumerate() {
                    if let (Some(i), Some(m)) = (
                        self.fields.iter().position(|f| f == name),
                        caps.get(group + 1),
                    ) {
                        out.values[i] = Some(Scalar::Str(Cow::Borrowed(m.as_str())));
                    }
                }
            }
        }
        Ok(())
    }

    /// The record's time, milliseconds since the epoch: its field's, or `arrival_ms`.
    ///
    /// # Errors
    /// The time field is missing or not in its format.
    pub fn time(&self, fields: &Fields<'_>, arrival_ms: i64) -> Result<i64, BadRecord> {
        let Some((i, format)) = &self.time else {
            return Ok(arrival_ms);
        };
        let name = &self.fields[*i];
        let value = fields.values[*i]
            .as_ref()
            .ok_or_else(|| BadRecord(format!("no `{name}` (the time field)")))?;
        let bad = || BadRecord(format!("`{name}` is not a time in its format: {value:?}"));
        match (format, value) {
            (TimeFormat::EpochMillis, v) => v.number().map(|n| n as i64).ok_or_else(bad),
            (TimeFormat::EpochSeconds, v) => {
                v.number().map(|n| (n * 1000.0) as i64).ok_or_else(bad)
            }
            (TimeFormat::Rfc3339, Scalar::Str(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| bad()),
            (TimeFormat::Chrono { format, zoned }, Scalar::Str(s)) => {
                if *zoned {
                    chrono::DateTime::parse_from_str(s, format)
                        .map(|t| t.timestamp_millis())
                        .map_err(|_| bad())
                } else {
                    chrono::NaiveDateTime::parse_from_str(s, format)
                        .map(|t| t.and_utc().timestamp_millis())
                        .map_err(|_| bad())
                }
            }
            _ => Err(bad()),
        }
    }
}

/// A record as one line of text, without its line end.
fn line_of(data: &[u8]) -> Result<&str, BadRecord> {
    let text = std::str::from_utf8(data).map_err(|_| BadRecord("not UTF-8 text".to_owned()))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    Ok(line.strip_suffix('\r').unwrap_or(line))
}

struct ObjectVisitor<'f, 'o, 'a> {
    fields: &'f [String],
    out: &'o mut Vec<Option<Scalar<'a>>>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.fields.iter().position(|f| *f == key) {
                Some(i) => self.out[i] = Some(map.next_value_seed(ScalarSeed)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(extra: &str) -> App {
        App::from_toml(&format!(
            "name = \"t\"\ngroup_by = [\"level\"]\n{extra}\n[window]\nsize_s = 60\n[[aggregate]]\nname = \"count\"\nfn = \"count\"\n[[aggregate]]\nname = \"bytes\"\nfn = \"sum\"\nfield = \"bytes\"\n"
        ))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_takes_only_the_fields_needed() {
        let p = Parser::new(&app("[parse]\nformat = \"json\"\n[time]\nsource = \"field\"\nfield = \"datetime\"\nformat = \"%d/%b/%Y:%H:%M:%S %z\""))
            .unwrap_or_else(|e| panic!("{e}"));
        let data = br#"{"host":"1.2.3.4","datetime":"10/Oct/2026:13:55:36 -0700","level":"ERROR","bytes":2326,"nested":{"a":[1,2]}}"#;
        let mut f = Fields::default();
        p.parse(data, &mut f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.fields(), ["datetime", "level", "bytes"]);
        assert_eq!(f.values[1], Some(Scalar::Str(Cow::Borrowed("ERROR"))));
        assert_eq!(f.values[2].as_ref().and_then(Scalar::number), Some(2326.0));
        assert_eq!(p.time(&f, 0), Ok(1_791_665_736_000));
        assert!(p.parse(b"[1,2]", &mut f).is_err());
        assert!(p.parse(b"{\"level\":", &mut f).is_err());
        p.parse(br#"{"level":"INFO"}"#, &mut f)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(p.time(&f, 0).is_err(), "no time field");
    }

    #[test]
    fn the_agents_log_formats_give_its_field_names() {
        let p = Parser::new(&app(
            "[parse]\nformat = \"log\"\nlog_format = \"COMBINEDAPACHELOG\"\n[time]\nsource = \"field\"\nfield = \"datetime\"\nformat = \"%d/%b/%Y:%H:%M:%S %z\"",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut f = Fields::default();
        let line = br#"143.20.234.82 - - [01/Jan/2024:00:00:00 +0000] "DELETE /list HTTP/1.0" 404 5019 "http://www.example29.com/" "Mozilla/5.0 (X11)""#;
        p.parse(line, &mut f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.time(&f, 0), Ok(1_704_067_200_000));
        assert_eq!(f.values[2].as_ref().and_then(Scalar::number), Some(5019.0));
        assert!(p.parse(b"not an access log line", &mut f).is_err());
        let bad = App::from_toml(
            "name = \"t\"\n[parse]\nformat = \"log\"\nlog_format = \"NGINX\"\n[window]\nsize_s = 60\n[[aggregate]]\nname = \"c\"\nfn = \"count\"\n",
        );
        let e = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("`parse.log_format` `NGINX`"), "{e}");
    }

    #[test]
    fn regex_fields_are_the_named_groups() {
        let p = Parser::new(&app(
            "[parse]\nformat = \"regex\"\npattern = '^\\S+ \\S+ (?P<level>[A-Z]+) .* (?P<bytes>\\d+)$'",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut f = Fields::default();
        p.parse(
            b"2026-12-04 10:00:00,123 ERROR something ERROR-ish 512\n",
            &mut f,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.values[0], Some(Scalar::Str(Cow::Borrowed("ERROR"))));
        assert_eq!(f.values[1].as_ref().and_then(Scalar::number), Some(512.0));
        assert_eq!(p.time(&f, 42), Ok(42), "arrival time");
        assert!(p.parse(b"no match", &mut f).is_err());
    }
}
