//! IAM policy documents as chief writes them, and a small evaluator for the tests: does a
//! policy allow this action on this resource (with these condition keys)?
//!
//! It implements what chief's documents use — `Allow`/`Deny` statements, `Action` and
//! `Resource` as a string or a list with `*`/`?` wildcards, and `StringEquals` /
//! `StringLike` conditions — and refuses anything else (`NotAction`, `NotResource`,
//! `Principal`, other condition operators) instead of guessing what it means.

use std::collections::BTreeSet;

use serde_json::Value;

/// Why a policy document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not JSON.
    #[error("policy {name}: not JSON: {source}")]
    Json {
        /// The document's name.
        name: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// JSON, but not a policy this evaluator understands.
    #[error("policy {name}: {reason}")]
    Shape {
        /// The document's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `"Effect": "Allow"`.
    Allow,
    /// `"Effect": "Deny"`.
    Deny,
}

/// One condition: `operator: { key: [values] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `StringEquals` or `StringLike`.
    pub operator: String,
    /// The condition key, e.g. `s3:prefix`.
    pub key: String,
    /// The values (any may match).
    pub values: Vec<String>,
}

/// One statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The `Sid`, if any.
    pub sid: Option<String>,
    /// Allow or deny.
    pub effect: Effect,
    /// Action patterns (`service:Name`, wildcards allowed).
    pub actions: Vec<String>,
    /// Resource patterns.
    pub resources: Vec<String>,
    /// All must hold.
    pub conditions: Vec<Condition>,
}

/// A policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name (the file name without `.json`, or the template's `PolicyName`).
    pub name: String,
    /// The statements.
    pub statements: Vec<Statement>,
}

/// A request to evaluate: an action on a resource, with condition keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    /// E.g. `s3:PutObject`.
    pub action: String,
    /// E.g. `arn:aws:s3:::bucket/key`.
    pub resource: String,
    /// Condition keys of the request, e.g. `("s3:prefix", "ChiefOrderS3/")`.
    pub context: Vec<(String, String)>,
}

impl Request {
    /// A request without condition keys.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: Vec::new(),
        }
    }

    /// Adds a condition key.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.context.push((key.to_owned(), value.to_owned()));
        self
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (k, v) in &self.context {
            write!(f, " ({k}={v:?})")?;
        }
        Ok(())
    }
}

fn strings(name: &str, field: &str, v: &Value) -> Result<Vec<String>, PolicyError> {
    let shape = |reason: String| PolicyError::Shape {
        name: name.to_owned(),
        reason,
    };
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| shape(format!("{field} holds a non-string {i}")))
            })
            .collect(),
        other => Err(shape(format!("{field} is {other}, not a string or a list"))),
    }
}

impl Policy {
    /// Reads a policy document (JSON text).
    pub fn parse(name: &str, text: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(text).map_err(|source| PolicyError::Json {
            name: name.to_owned(),
            source,
        })?;
        Self::from_value(name, &value)
    }

    /// Reads a policy document (a JSON value).
    pub fn from_value(name: &str, value: &Value) -> Result<Self, PolicyError> {
        let shape = |reason: String| PolicyError::Shape {
            name: name.to_owned(),
            reason,
        };
        let object = value
            .as_object()
            .ok_or_else(|| shape("not an object".into()))?;
        for key in object.keys() {
            if key != "Version" && key != "Statement" {
                return Err(shape(format!("unknown top-level key {key}")));
            }
        }
        if object.get("Version").and_then(Value::as_str) != Some("2012-10-17") {
            return Err(shape("Version must be \"2012-10-17\"".into()));
        }
        let statements = match object.get("Statement") {
            Some(Value::Array(s)) => s.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => return Err(shape("no Statement".into())),
        };
        let mut out = Vec::new();
        for st in &statements {
            let st = st
                .as_object()
                .ok_or_else(|| shape("a statement is not an object".into()))?;
            for key in st.keys() {
                if !["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key.as_str()) {
                    return Err(shape(format!(
                        "statement key {key} is not supported by this evaluator"
                    )));
                }
            }
            let effect = match st.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                other => return Err(shape(format!("Effect {other:?}"))),
            };
            let actions = strings(
                name,
                "Action",
                st.get("Action")
                    .ok_or_else(|| shape("statement without Action".into()))?,
            )?;
            let resources = strings(
                name,
                "Resource",
                st.get("Resource")
                    .ok_or_else(|| shape("statement without Resource".into()))?,
            )?;
            let mut conditions = Vec::new();
            if let Some(c) = st.get("Condition") {
                let c = c
                    .as_object()
                    .ok_or_else(|| shape("Condition is not an object".into()))?;
                for (operator, keys) in c {
                    if operator != "StringEquals" && operator != "StringLike" {
                        return Err(shape(format!(
                            "condition operator {operator} is not supported by this evaluator"
                        )));
                    }
                    let keys = keys
                        .as_object()
                        .ok_or_else(|| shape(format!("{operator} is not an object")))?;
                    for (key, values) in keys {
                        conditions.push(Condition {
                            operator: operator.clone(),
                            key: key.clone(),
                            values: strings(name, key, values)?,
                        });
                    }
                }
            }
            out.push(Statement {
                sid: st.get("Sid").and_then(Value::as_str).map(str::to_owned),
                effect,
                actions,
                resources,
                conditions,
            });
        }
        Ok(Self {
            name: name.to_owned(),
            statements: out,
        })
    }

    /// Every action pattern the policy allows, as written.
    pub fn allowed_actions(&self) -> BTreeSet<String> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(|s| s.actions.iter().cloned())
            .collect()
    }

    /// Whether the policy allows `request`: an `Allow` statement matches it and no
    /// `Deny` statement does.
    pub fn allows(&self, request: &Request) -> bool {
        let matching = |effect| {
            self.statements
                .iter()
                .filter(move |s| s.effect == effect)
                .any(|s| s.matches(request))
        };
        matching(Effect::Allow) && !matching(Effect::Deny)
    }

    /// The Allow statements' (statement index, resource pattern) pairs that `request`
    /// matches: what it uses of the policy.
    pub fn used_by(&self, request: &Request) -> Vec<(usize, String)> {
        self.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| s.effect == Effect::Allow && s.matches_action_and_conditions(request))
            .flat_map(|(i, s)| {
                s.resources
                    .iter()
                    .filter(|r| wildcard(r, &request.resource, false))
                    .map(move |r| (i, r.clone()))
            })
            .collect()
    }
}

impl Statement {
    fn matches(&self, request: &Request) -> bool {
        self.matches_action_and_conditions(request)
            && self
                .resources
                .iter()
                .any(|r| wildcard(r, &request.resource, false))
    }

    fn matches_action_and_conditions(&self, request: &Request) -> bool {
        self.actions
            .iter()
            .any(|a| wildcard(a, &request.action, true))
            && self.conditions.iter().all(|c| c.holds(request))
    }
}

impl Condition {
    fn holds(&self, request: &Request) -> bool {
        let values: Vec<&str> = request
            .context
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| v.as_str())
            .collect();
        // A key the request does not carry never satisfies a String condition.
        !values.is_empty()
            && values.iter().all(|v| {
                self.values
                    .iter()
                    .any(|pattern| match self.operator.as_str() {
                        "StringLike" => wildcard(pattern, v, false),
                        _ => pattern == v,
                    })
            })
    }
}

/// IAM wildcard matching: `*` any run of characters, `?` one character.
pub fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            text.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), text.chars().collect())
    };
    // Iterative matcher with one backtrack point (the last `*`).
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(
            "arn:aws:s3:::b/errors/x/*",
            "arn:aws:s3:::b/errors/x/1/2",
            false
        ));
        assert!(!wildcard(
            "arn:aws:s3:::b/errors/x/*",
            "arn:aws:s3:::b/errors/y/1",
            false
        ));
        assert!(wildcard("kinesis:Get*", "kinesis:GetRecords", true));
        assert!(wildcard("kinesis:getrecords", "kinesis:GetRecords", true));
        assert!(!wildcard("kinesis:GetRecords", "kinesis:GetRecordsX", true));
        assert!(wildcard("a?c", "abc", false));
        assert!(wildcard("*", "", false));
        assert!(!wildcard("ChiefOrderS3/*", "ChiefOrderS3", false));
        assert!(wildcard("ChiefOrderS3/*", "ChiefOrderS3/", false));
    }

    #[test]
    fn allow_deny_and_conditions() {
        let p = Policy::parse(
            "t",
            r#"{"Version":"2012-10-17","Statement":[
              {"Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b",
               "Condition":{"StringLike":{"s3:prefix":["A/*","B/*"]}}},
              {"Effect":"Allow","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::b/*"]},
              {"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/secret/*"}]}"#,
        )
        .expect("parse");
        let list = |prefix: &str| {
            Request::new("s3:ListBucket", "arn:aws:s3:::b").with("s3:prefix", prefix)
        };
        assert!(p.allows(&list("A/")));
        assert!(p.allows(&list("B/2024/")));
        assert!(!p.allows(&list("C/")));
        assert!(!p.allows(&Request::new("s3:ListBucket", "arn:aws:s3:::b")));
        assert!(p.allows(&Request::new("s3:GetObject", "arn:aws:s3:::b/x")));
        assert!(!p.allows(&Request::new("s3:GetObject", "arn:aws:s3:::b/secret/x")));
        assert!(!p.allows(&Request::new("s3:PutObject", "arn:aws:s3:::b/x")));
        assert_eq!(
            p.allowed_actions().into_iter().collect::<Vec<_>>(),
            ["s3:GetObject", "s3:ListBucket"]
        );
    }

    #[test]
    fn unsupported_shapes_are_refused() {
        for doc in [
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"s3:*","Resource":"*"}]}"#,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"ArnLike":{"aws:SourceArn":"x"}}}]}"#,
            r#"{"Version":"2008-10-17","Statement":[]}"#,
            r#"{"Statement":[]}"#,
        ] {
            assert!(Policy::parse("t", doc).is_err(), "{doc}");
        }
    }
}
