//! A CloudFormation template (YAML with the short intrinsic tags) as JSON: `!Ref X` →
//! `{"Ref": "X"}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` →
//! `{"Fn::Sub": s}`, any other `!Name v` → `{"Fn::Name": v}`. Plus the helpers the tests
//! use: `Fn::Sub` placeholders and substitution, and the user data scripts.

use serde_json::{Map, Value};

/// Why a template could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// Not YAML.
    #[error("template is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A mapping key that is not a string, or a number JSON cannot hold.
    #[error("template: {0}")]
    Shape(String),
}

/// Reads a YAML template into JSON.
pub fn parse(text: &str) -> Result<Value, TemplateError> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
    to_json(yaml)
}

fn to_json(v: serde_yaml::Value) -> Result<Value, TemplateError> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n
                    .as_f64()
                    .ok_or_else(|| TemplateError::Shape(format!("number {n}")))?;
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| TemplateError::Shape(format!("number {n}")))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    other => return Err(TemplateError::Shape(format!("mapping key {other:?}"))),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!').to_owned();
            let value = to_json(tagged.value)?;
            let (key, value) = match (name.as_str(), value) {
                ("Ref", v) => ("Ref".to_owned(), v),
                ("GetAtt", Value::String(s)) => {
                    let (resource, attribute) = s.split_once('.').ok_or_else(|| {
                        TemplateError::Shape(format!("!GetAtt {s} has no attribute"))
                    })?;
                    (
                        "Fn::GetAtt".to_owned(),
                        Value::Array(vec![resource.into(), attribute.into()]),
                    )
                }
                (other, v) => (format!("Fn::{other}"), v),
            };
            let mut m = Map::new();
            m.insert(key, value);
            Value::Object(m)
        }
    })
}

/// `value` with every `{"Fn::Sub": "text"}` replaced by `"text"` (the form of the
/// documents in `deploy/aws/iam/`). A `Fn::Sub` with a variable map is left as it is.
pub fn unwrap_subs(value: &Value) -> Value {
    match value {
        Value::Object(m) if m.len() == 1 => match m.get("Fn::Sub") {
            Some(Value::String(s)) => Value::String(s.clone()),
            _ => Value::Object(m.iter().map(|(k, v)| (k.clone(), unwrap_subs(v))).collect()),
        },
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), unwrap_subs(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(unwrap_subs).collect()),
        other => other.clone(),
    }
}

/// The `${Name}` placeholders of a `Fn::Sub` string (`${!Literal}` is an escape, not a
/// placeholder).
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            out.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    out
}

/// A `Fn::Sub` string with each `${Name}` replaced by `value(Name)` and each `${!X}` by
/// `${X}`, as CloudFormation does.
pub fn substitute(text: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            }
            None => out.push_str(&value(name)),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The resources of a template, by logical id.
pub fn resources(template: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    template["Resources"]
        .as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

/// The logical ids and properties of the resources of `kind` (`AWS::IAM::Role`).
pub fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), &r["Properties"]))
        .collect()
}

/// The user data script of a launch template (`Fn::Base64` of a `Fn::Sub` string),
/// placeholders not substituted.
pub fn user_data<'a>(template: &'a Value, launch_template: &str) -> Option<&'a str> {
    resources(template)
        .get(launch_template)?
        .pointer("/Properties/LaunchTemplateData/UserData/Fn::Base64/Fn::Sub")?
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_become_intrinsic_functions() {
        let t = parse(
            "A: !Ref X\nB: !GetAtt C.D.E\nC: !Sub \"arn:${AWS::Partition}\"\nD: !If [c, !Ref Y, none]\n",
        )
        .expect("parse");
        assert_eq!(t["A"], serde_json::json!({"Ref": "X"}));
        assert_eq!(t["B"], serde_json::json!({"Fn::GetAtt": ["C", "D.E"]}));
        assert_eq!(
            t["C"],
            serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}"})
        );
        assert_eq!(
            t["D"],
            serde_json::json!({"Fn::If": ["c", {"Ref": "Y"}, "none"]})
        );
        assert_eq!(
            unwrap_subs(&t["C"]),
            serde_json::json!("arn:${AWS::Partition}")
        );
    }

    #[test]
    fn sub_placeholders() {
        let s = "a ${X} b ${AWS::Region} c ${!bash} d ${R.Attr}";
        assert_eq!(placeholders(s), ["X", "AWS::Region", "R.Attr"]);
        assert_eq!(
            substitute(s, |n| format!("<{n}>")),
            "a <X> b <AWS::Region> c ${bash} d <R.Attr>"
        );
    }
}
