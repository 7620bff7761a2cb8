//! Reading a `_bulk` body: NDJSON action lines (`index`, `create`, `delete`, `update`),
//! each but `delete` followed by a source line. Parsing happens before the store is
//! locked; what fails here fails the request as a whole (HTTP 400), as in Elasticsearch.

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::wire::ErrorCause;

/// The action of one bulk item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Index,
    Create,
    Update,
    Delete,
}

/// A source line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A JSON object, as sent.
    Valid(Bytes),
    /// Not a JSON object: the item fails with `document_parsing_exception`.
    Invalid(ErrorCause),
}

/// One item of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    pub action: Action,
    /// `_index` of the action line (the path's index otherwise).
    pub index: Option<String>,
    /// `_id` of the action line.
    pub id: Option<String>,
    /// The source line (`index`, `create`, `update`).
    pub source: Option<Source>,
}

/// The longest `_id` Elasticsearch accepts, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 512;

fn malformed(reason: String) -> ErrorCause {
    ErrorCause::new("illegal_argument_exception", reason)
}

/// Splits and checks a `_bulk` body.
pub(crate) fn parse(body: &Bytes) -> Result<Vec<Operation>, ErrorCause> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ErrorCause::new(
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err(malformed(
            "The bulk request must be terminated by a newline [\\n]".to_owned(),
        ));
    }
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, byte) in body.iter().enumerate() {
        if *byte == b'\n' {
            let mut end = i;
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
            lines.push(body.slice(start..end));
            start = i + 1;
        }
    }
    let mut operations = Vec::new();
    let mut lines = lines.into_iter().enumerate().map(|(i, l)| (i + 1, l));
    while let Some((number, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let (action, index, id) = parse_action(number, &line)?;
        let source = match action {
            Action::Delete => None,
            Action::Index | Action::Create | Action::Update => {
                let Some((_, source)) = lines.next() else {
                    return Err(malformed(format!(
                        "Malformed action/metadata line [{number}], the source line that must follow it is missing"
                    )));
                };
                Some(check_source(source))
            }
        };
        operations.push(Operation {
            action,
            index,
            id,
            source,
        });
    }
    Ok(operations)
}

fn parse_action(
    number: usize,
    line: &[u8],
) -> Result<(Action, Option<String>, Option<String>), ErrorCause> {
    let object: Map<String, Value> = serde_json::from_slice(line).map_err(|e| {
        malformed(format!(
            "Malformed action/metadata line [{number}], expected a JSON object: {e}"
        ))
    })?;
    let mut entries = object.into_iter();
    let (Some((name, meta)), None) = (entries.next(), entries.next()) else {
        return Err(malformed(format!(
            "Malformed action/metadata line [{number}], expected exactly one of [create, delete, index, update]"
        )));
    };
    let action = match name.as_str() {
        "index" => Action::Index,
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        other => {
            return Err(malformed(format!(
                "Malformed action/metadata line [{number}], expected field [create], [delete], [index] or [update] but found [{other}]"
            )));
        }
    };
    let Value::Object(meta) = meta else {
        return Err(malformed(format!(
            "Malformed action/metadata line [{number}], expected START_OBJECT but found [{}]",
            value_token(&meta)
        )));
    };
    let index = match meta.get("_index") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(malformed(format!(
                "Malformed action/metadata line [{number}], _index must be a string, not [{}]",
                value_token(other)
            )));
        }
    };
    let id = match meta.get("_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(malformed(format!(
                "Malformed action/metadata line [{number}], _id must be a string, not [{}]",
                value_token(other)
            )));
        }
    };
    if id.is_none() && matches!(action, Action::Delete | Action::Update) {
        return Err(ErrorCause::new(
            "action_request_validation_exception",
            "Validation Failed: 1: id is missing;",
        ));
    }
    if let Some(id) = &id {
        if id.is_empty() {
            return Err(ErrorCause::new(
                "action_request_validation_exception",
                "Validation Failed: 1: if _id is specified it must not be empty;",
            ));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(ErrorCause::new(
                "action_request_validation_exception",
                format!(
                    "Validation Failed: 1: id [{id}] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: {};",
                    id.len()
                ),
            ));
        }
    }
    Ok((action, index, id))
}

fn value_token(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

/// A source must be one JSON object that Elasticsearch's parser accepts (UTF-8, no
/// field name twice in an object; [`crate::document::parse`]).
pub(crate) fn check_source(source: Bytes) -> Source {
    let first = source.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = first else {
        return Source::Invalid(ErrorCause::new(
            "document_parsing_exception",
            "failed to parse, document is empty",
        ));
    };
    if let Err(cause) = crate::document::parse(&source) {
        return Source::Invalid(cause);
    }
    if source[first] != b'{' {
        return Source::Invalid(ErrorCause::new(
            "document_parsing_exception",
            format!(
                "[1:{}] failed to parse: the document source must be a JSON object",
                first + 1
            ),
        ));
    }
    Source::Valid(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(body: &str) -> Result<Vec<Operation>, ErrorCause> {
        parse(&Bytes::from(body.to_owned()))
    }

    #[test]
    fn reads_actions_and_sources() {
        let parsed = ops(concat!(
            "{\"index\":{\"_id\":\"a\"}}\n{\"x\":1}\n",
            "{\"create\":{\"_index\":\"other\",\"_id\":7}}\r\n{\"y\":2}\r\n",
            "{\"delete\":{\"_id\":\"a\"}}\n",
            "{\"index\":{}}\nnot json\n",
        ))
        .expect("parse");
        assert_eq!(parsed.len(), 4);
        assert_eq!(parsed[0].action, Action::Index);
        assert_eq!(parsed[0].id.as_deref(), Some("a"));
        assert_eq!(
            parsed[0].source,
            Some(Source::Valid(Bytes::from_static(b"{\"x\":1}")))
        );
        assert_eq!(parsed[1].action, Action::Create);
        assert_eq!(parsed[1].index.as_deref(), Some("other"));
        assert_eq!(parsed[1].id.as_deref(), Some("7"));
        assert_eq!(parsed[2].action, Action::Delete);
        assert_eq!(parsed[2].source, None);
        assert_eq!(parsed[3].id, None);
        assert!(
            matches!(&parsed[3].source, Some(Source::Invalid(e)) if e.kind == "document_parsing_exception")
        );
    }

    #[test]
    fn request_level_errors() {
        let kind = |body: &str| ops(body).expect_err(body).kind;
        assert_eq!(kind(""), "action_request_validation_exception");
        assert_eq!(kind("{\"index\":{}}\n{}"), "illegal_argument_exception");
        assert_eq!(kind("{\"upsert\":{}}\n{}\n"), "illegal_argument_exception");
        assert_eq!(kind("[1]\n{}\n"), "illegal_argument_exception");
        assert_eq!(kind("{\"index\":{}}\n"), "illegal_argument_exception");
        assert_eq!(
            kind("{\"delete\":{}}\n"),
            "action_request_validation_exception"
        );
        assert_eq!(
            kind("{\"index\":{\"_id\":\"\"}}\n{}\n"),
            "action_request_validation_exception"
        );
        let long = format!("{{\"index\":{{\"_id\":\"{}\"}}}}\n{{}}\n", "x".repeat(513));
        assert_eq!(kind(&long), "action_request_validation_exception");
    }

    #[test]
    fn sources_must_be_objects() {
        for bad in ["", "  ", "[1]", "\"s\"", "{\"a\":", "{} {}"] {
            assert!(
                matches!(
                    check_source(Bytes::from(bad.to_owned())),
                    Source::Invalid(_)
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_source(Bytes::from_static(b" {\"a\":[1,{\"b\":null}]} ")),
            Source::Valid(_)
        ));
    }
}
