//! What Elasticsearch refuses in a document before and while it indexes it, for the cases
//! chief's record contract is about, so that the local stack cannot hide a difference:
//!
//! - the source is not UTF-8 (Jackson: `Invalid UTF-8 start byte 0xff`), holds a field
//!   name twice in an object (`Duplicate field 'a'`, strict duplicate detection is on
//!   by default), or is not one JSON object: 400 `document_parsing_exception`;
//! - a value does not fit its mapped field (`dynamic: false` mappings: unmapped fields
//!   are kept in `_source` and not checked): an `integer` or `long` out of range or not
//!   a whole number, a `keyword` or `text` given an object, a `keyword` longer than
//!   Lucene's 32,766-byte term, a `date` that is not `strict_date_optional_time` or
//!   epoch milliseconds, an object field given a concrete value: 400
//!   `document_parsing_exception` naming the field, with the cause.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::wire::ErrorCause;

/// Lucene's largest term, in bytes: a longer `keyword` value fails the document.
const MAX_TERM_BYTES: usize = 32_766;

fn parsing(reason: String) -> ErrorCause {
    ErrorCause::new("document_parsing_exception", reason)
}

/// Parses a document source as Elasticsearch's parser would accept it.
///
/// # Errors
/// The `document_parsing_exception` Elasticsearch answers with.
pub(crate) fn parse(source: &[u8]) -> Result<Value, ErrorCause> {
    let text = std::str::from_utf8(source).map_err(|e| {
        let at = e.valid_up_to();
        let byte = source.get(at).copied().unwrap_or_default();
        parsing(format!(
            "[1:{}] failed to parse: Invalid UTF-8 start byte 0x{byte:02x}",
            at + 1
        ))
        .caused_by(ErrorCause::new(
            "json_parse_exception",
            format!("Invalid UTF-8 start byte 0x{byte:02x}"),
        ))
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|e| {
            parsing(format!(
                "[{}:{}] failed to parse: {e}",
                e.line(),
                e.column()
            ))
            .caused_by(ErrorCause::new("json_parse_exception", e.to_string()))
        })?;
    Ok(value)
}

/// A JSON value, refusing a field name twice in one object.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if object.contains_key(&name) {
                return Err(de::Error::custom(format!("Duplicate field '{name}'")));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(name, value);
        }
        Ok(Value::Object(object))
    }
}

/// Checks `doc` against the index's `mappings` (`{"properties": …}`).
///
/// # Errors
/// The `document_parsing_exception` Elasticsearch answers with, naming the field.
pub(crate) fn check_mapping(mappings: &Value, doc: &Value, id: &str) -> Result<(), ErrorCause> {
    match mappings.get("properties") {
        Some(properties) => check_object(properties, doc, "", id),
        None => Ok(()),
    }
}

fn check_object(properties: &Value, doc: &Value, prefix: &str, id: &str) -> Result<(), ErrorCause> {
    let (Some(properties), Some(fields)) = (properties.as_object(), doc.as_object()) else {
        return Ok(());
    };
    for (name, mapping) in properties {
        let Some(value) = fields.get(name) else {
            continue;
        };
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        check_field(mapping, value, &path, id)?;
    }
    Ok(())
}

fn check_field(mapping: &Value, value: &Value, path: &str, id: &str) -> Result<(), ErrorCause> {
    if let Value::Array(items) = value {
        return items
            .iter()
            .try_for_each(|item| check_field(mapping, item, path, id));
    }
    if value.is_null() {
        return Ok(());
    }
    if let Some(properties) = mapping.get("properties") {
        if !value.is_object() {
            return Err(parsing(format!(
                "[1:1] object mapping for [{path}] tried to parse field [{path}] as object, \
                 but found a concrete value"
            )));
        }
        return check_object(properties, value, path, id);
    }
    let kind = mapping
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let refused = |cause: ErrorCause| {
        let preview = match value {
            Value::String(s) => s.chars().take(20).collect(),
            other => other.to_string(),
        };
        parsing(format!(
            "[1:1] failed to parse field [{path}] of type [{kind}] in document with id '{id}'. \
             Preview of field's value: '{preview}'"
        ))
        .caused_by(cause)
    };
    match kind {
        "integer" => {
            check_whole(value, i64::from(i32::MIN), i64::from(i32::MAX), "int").map_err(refused)
        }
        "long" => check_whole(value, i64::MIN, i64::MAX, "long").map_err(refused),
        "keyword" | "text" if value.is_object() => Err(refused(ErrorCause::new(
            "illegal_state_exception",
            "Can't get text on a START_OBJECT at 1:1",
        ))),
        "keyword" => match value {
            Value::String(s) if s.len() > MAX_TERM_BYTES => Err(ErrorCause::new(
                "illegal_argument_exception",
                format!(
                    "Document contains at least one immense term in field=\"{path}\" (whose UTF8 \
                     encoding is longer than the max length {MAX_TERM_BYTES}), all of which were \
                     skipped."
                ),
            )),
            _ => Ok(()),
        },
        "date" => match value {
            Value::Number(n) if n.is_i64() => Ok(()),
            Value::String(s) if strict_date_optional_time(s) => Ok(()),
            _ => Err(refused(ErrorCause::new(
                "illegal_argument_exception",
                format!(
                    "failed to parse date field [{value}] with format \
                     [strict_date_optional_time||epoch_millis]"
                ),
            ))),
        },
        _ => Ok(()),
    }
}

/// A whole number in `min..=max` (a JSON number, or a string holding one, which
/// Elasticsearch coerces).
fn check_whole(value: &Value, min: i64, max: i64, name: &str) -> Result<(), ErrorCause> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => {
            return Err(ErrorCause::new(
                "illegal_argument_exception",
                format!("Current token ({value}) not numeric, can not use numeric value accessors"),
            ));
        }
    };
    match text.parse::<i128>() {
        Ok(n) if n >= i128::from(min) && n <= i128::from(max) => Ok(()),
        Ok(_) => Err(ErrorCause::new(
            "illegal_argument_exception",
            format!("Numeric value ({text}) out of range of {name} ({min} - {max})"),
        )),
        Err(_) => Err(ErrorCause::new(
            "illegal_argument_exception",
            format!("Value [{text}] is not a whole {name}"),
        )),
    }
}

/// `strict_date_optional_time`: `yyyy-MM-dd`, optionally `'T'HH:mm[:ss[.S{1,9}]]`, then
/// optionally `Z` or an offset `±HH:mm` / `±HHmm`.
fn strict_date_optional_time(text: &str) -> bool {
    fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
        let (head, rest) = (s.get(..n)?, s.get(n..)?);
        head.iter().all(u8::is_ascii_digit).then(|| {
            let v = head.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            (v, rest)
        })
    }
    fn expect(s: &[u8], c: u8) -> Option<&[u8]> {
        (s.first() == Some(&c)).then(|| &s[1..])
    }
    fn parse(s: &[u8]) -> Option<()> {
        let (_, s) = digits(s, 4)?;
        let (month, s) = digits(expect(s, b'-')?, 2)?;
        let (day, s) = digits(expect(s, b'-')?, 2)?;
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        if s.is_empty() {
            return Some(());
        }
        let (hour, s) = digits(expect(s, b'T')?, 2)?;
        let (minute, mut s) = digits(expect(s, b':')?, 2)?;
        if hour > 23 || minute > 59 {
            return None;
        }
        if let Some(rest) = expect(s, b':') {
            let (second, rest) = digits(rest, 2)?;
            if second > 59 {
                return None;
            }
            s = rest;
            if let Some(rest) = expect(s, b'.') {
                let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if !(1..=9).contains(&n) {
                    return None;
                }
                s = &rest[n..];
            }
        }
        match s {
            [] | [b'Z'] => Some(()),
            [b'+' | b'-', rest @ ..] => {
                let (oh, rest) = digits(rest, 2)?;
                let rest = expect(rest, b':').unwrap_or(rest);
                let (om, rest) = digits(rest, 2)?;
                (rest.is_empty() && oh <= 18 && om <= 59).then_some(())
            }
            _ => None,
        }
    }
    parse(text.as_bytes()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind_and_reason(cause: &ErrorCause) -> String {
        serde_json::to_value(cause)
            .map(|v| format!("{} {}", v["type"], v["reason"]))
            .unwrap_or_default()
    }

    #[test]
    fn sources_that_elasticsearch_cannot_parse() {
        let err = parse(b"{\"a\":\"\xff\xfe\"}").expect_err("not UTF-8");
        assert!(kind_and_reason(&err).contains("Invalid UTF-8 start byte 0xff"));
        let err = parse(br#"{"a":{"b":1,"b":2}}"#).expect_err("twice");
        assert!(kind_and_reason(&err).contains("Duplicate field 'b'"));
        assert!(parse(br#"{"a":{"b":1},"b":{"b":2}}"#).is_ok());
    }

    #[test]
    fn values_must_fit_their_mapped_fields() {
        let mappings = json!({"dynamic": false, "properties": {
            "q": {"type": "integer"}, "p": {"type": "long"}, "k": {"type": "keyword"},
            "t": {"type": "date"}, "u": {"properties": {"n": {"type": "text"}}}
        }});
        let ok = |doc: Value| check_mapping(&mappings, &doc, "x").is_ok();
        assert!(ok(
            json!({"q": 2147483647, "p": i64::MAX, "k": "a", "t": "2024-01-02T03:04:05.678Z"})
        ));
        assert!(ok(
            json!({"q": [1, "2"], "t": "9999-12-31T23:59:59.999999999+09:00", "unmapped": {"q": "x"}})
        ));
        assert!(ok(json!({"t": "2024-01-02", "u": {"n": "x"}, "k": 5})));
        assert!(!ok(json!({"q": 2147483648u64})));
        assert!(!ok(json!({"q": -2147483649i64})));
        assert!(!ok(json!({"p": 9223372036854775808u64})));
        assert!(!ok(json!({"q": 1.5})));
        assert!(!ok(json!({"k": {"a": 1}})));
        assert!(!ok(json!({"k": "x".repeat(MAX_TERM_BYTES + 1)})));
        assert!(!ok(json!({"u": "flat"})));
        for bad in [
            "2024-01-02 03:04:05",
            "2024-01-02t03:04:05Z",
            "2016-12-31T23:59:60Z",
            "yesterday",
        ] {
            assert!(!ok(json!({"t": bad})), "{bad}");
        }
    }
}
