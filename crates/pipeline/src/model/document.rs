//! Steps 1 and 2 of the record contract (see the parent module): the bytes are UTF-8 and
//! one JSON object with no field name twice and none that Elasticsearch refuses, checked by
//! one walk over the document before the typed parse.

use std::fmt;

use serde::Deserializer;

use super::{ModelError, RecordKind, json_error};

/// Top-level field names Elasticsearch keeps for itself: a document holding one is
/// refused by the cluster, so it is refused here first.
const METADATA_FIELDS: [&str; 12] = [
    "_id",
    "_index",
    "_source",
    "_routing",
    "_version",
    "_seq_no",
    "_primary_term",
    "_ignored",
    "_field_names",
    "_doc_count",
    "_tier",
    "_data_stream_timestamp",
];

/// Steps 1 and 2 of the record contract (module docs): the bytes are UTF-8 and one JSON
/// object with no field name twice and none that Elasticsearch refuses. The text, for
/// the typed parse that follows.
pub(super) fn check_document(kind: RecordKind, bytes: &[u8]) -> Result<&str, ModelError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ModelError::InvalidUtf8 {
        kind,
        offset: e.valid_up_to(),
    })?;
    let mut walk = Walk {
        kind,
        path: String::new(),
        problem: None,
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let walked = serde::de::DeserializeSeed::deserialize(Node::top(&mut walk), &mut de)
        .and_then(|()| de.end());
    match (walk.problem, walked) {
        (Some(problem), _) => Err(problem),
        (None, Err(source)) => Err(json_error(kind, source)),
        (None, Ok(())) => Ok(text),
    }
}

/// The state of [`check_document`]'s walk: where it is, and the first problem found.
struct Walk {
    kind: RecordKind,
    path: String,
    problem: Option<ModelError>,
}

impl Walk {
    /// Keeps `problem` and returns the error that stops the parser.
    fn stop<E: serde::de::Error>(&mut self, problem: ModelError) -> E {
        let message = problem.to_string();
        self.problem = Some(problem);
        E::custom(message)
    }
}

/// One JSON value met by the walk.
struct Node<'w> {
    walk: &'w mut Walk,
    top: bool,
}

impl<'w> Node<'w> {
    fn top(walk: &'w mut Walk) -> Self {
        Node { walk, top: true }
    }

    fn scalar<E: serde::de::Error>(self, found: &'static str) -> Result<(), E> {
        if self.top {
            let kind = self.walk.kind;
            return Err(self.walk.stop(ModelError::NotAnObject { kind, found }));
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar("a boolean")
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar("a number")
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar("a number")
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar("a number")
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar("a string")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar("null")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.top {
            let kind = self.walk.kind;
            let found = "an array";
            return Err(self.walk.stop(ModelError::NotAnObject { kind, found }));
        }
        // Elements keep the array's path, as Elasticsearch flattens arrays.
        while seq
            .next_element_seed(Node {
                walk: &mut *self.walk,
                top: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            let walk = &mut *self.walk;
            let outer = walk.path.len();
            if outer > 0 {
                walk.path.push('.');
            }
            walk.path.push_str(&name);
            let kind = walk.kind;
            let refused = if name.is_empty() {
                Some("an empty name")
            } else if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
                Some("a `.` at either end or two in a row make object resolution ambiguous")
            } else if self.top && METADATA_FIELDS.contains(&name.as_str()) {
                Some("a metadata field cannot be inside a document")
            } else {
                None
            };
            if let Some(reason) = refused {
                let path = walk.path.clone();
                return Err(walk.stop(ModelError::InvalidFieldName { kind, path, reason }));
            }
            if !seen.insert(name) {
                let path = walk.path.clone();
                return Err(walk.stop(ModelError::DuplicateField { kind, path }));
            }
            map.next_value_seed(Node {
                walk: &mut *walk,
                top: false,
            })?;
            walk.path.truncate(outer);
        }
        Ok(())
    }
}
