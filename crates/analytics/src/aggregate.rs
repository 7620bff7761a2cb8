//! Aggregates as mergeable partial states: a shard's partial for a window and group is
//! merged with the other shards' into the window's result, exactly (sums of integers,
//! counts and distinct sets do not depend on the order of merging).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::app::Function;
use crate::parse::Scalar;

/// The partial state of one aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acc {
    /// Records.
    Count(u64),
    /// Sum of the values seen, and how many (no value: `null`).
    Sum(f64, u64),
    /// Least value.
    Min(Option<f64>),
    /// Greatest value.
    Max(Option<f64>),
    /// Sum and count of the values.
    Avg(f64, u64),
    /// The distinct values.
    Distinct(BTreeSet<String>),
}

impl Acc {
    /// The empty state of `function`.
    pub fn new(function: Function) -> Self {
        match function {
            Function::Count => Self::Count(0),
            Function::Sum => Self::Sum(0.0, 0),
            Function::Min => Self::Min(None),
            Function::Max => Self::Max(None),
            Function::Avg => Self::Avg(0.0, 0),
            Function::CountDistinct => Self::Distinct(BTreeSet::new()),
        }
    }

    /// Takes in one record's value of the aggregate's field (`None`: the record lacks it,
    /// which only `count` counts).
    pub fn add(&mut self, value: Option<&Scalar<'_>>) {
        let number = || value.and_then(Scalar::number);
        match self {
            Self::Count(n) => *n += 1,
            Self::Sum(sum, n) | Self::Avg(sum, n) => {
                if let Some(v) = number() {
                    *sum += v;
                    *n += 1;
                }
            }
            Self::Min(m) => {
                if let Some(v) = number() {
                    *m = Some(m.map_or(v, |m| m.min(v)));
                }
            }
            Self::Max(m) => {
                if let Some(v) = number() {
                    *m = Some(m.map_or(v, |m| m.max(v)));
                }
            }
            Self::Distinct(set) => {
                if let Some(v) = value {
                    let mut text = String::new();
                    v.push_text(&mut text);
                    if !set.contains(&text) {
                        set.insert(text);
                    }
                }
            }
        }
    }

    /// Merges another partial state of the same aggregate into this one.
    pub fn merge(&mut self, other: &Self) {
        match (self, other) {
            (Self::Count(a), Self::Count(b)) => *a += b,
            (Self::Sum(a, n), Self::Sum(b, m)) | (Self::Avg(a, n), Self::Avg(b, m)) => {
                *a += b;
                *n += m;
            }
            (Self::Min(a), Self::Min(b)) => {
                *a = match (*a, *b) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                }
            }
            (Self::Max(a), Self::Max(b)) => {
                *a = match (*a, *b) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                }
            }
            (Self::Distinct(a), Self::Distinct(b)) => a.extend(b.iter().cloned()),
            // Partials of one application always line up; nothing to merge otherwise.
            _ => {}
        }
    }

    /// The result: a number, or `null` for an aggregate that saw no value.
    pub fn value(&self) -> serde_json::Value {
        let num = |v: f64| {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                serde_json::Value::from(v as i64)
            } else {
                serde_json::Value::from(v)
            }
        };
        match self {
            Self::Count(n) => serde_json::Value::from(*n),
            Self::Sum(_, 0) | Self::Avg(_, 0) | Self::Min(None) | Self::Max(None) => {
                serde_json::Value::Null
            }
            Self::Sum(s, _) => num(*s),
            Self::Avg(s, n) => serde_json::Value::from(*s / *n as f64),
            Self::Min(Some(v)) | Self::Max(Some(v)) => num(*v),
            Self::Distinct(set) => serde_json::Value::from(set.len()),
        }
    }

    /// The result as a number (`null` as 0), for conditions.
    pub fn number(&self) -> f64 {
        self.value().as_f64().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_merge_to_the_whole() {
        let values = [3.0, -1.0, 7.0, 7.0, 2.0];
        for f in [
            Function::Count,
            Function::Sum,
            Function::Min,
            Function::Max,
            Function::Avg,
            Function::CountDistinct,
        ] {
            let mut whole = Acc::new(f);
            let (mut a, mut b) = (Acc::new(f), Acc::new(f));
            for (i, v) in values.iter().enumerate() {
                let s = Scalar::Num(*v);
                whole.add(Some(&s));
                if i % 2 == 0 {
                    a.add(Some(&s))
                } else {
                    b.add(Some(&s))
                }
            }
            a.merge(&b);
            assert_eq!(a.value(), whole.value(), "{f:?}");
        }
        let mut s = Acc::new(Function::Sum);
        assert_eq!(s.value(), serde_json::Value::Null);
        s.add(None);
        assert_eq!(
            s.value(),
            serde_json::Value::Null,
            "a missing value is not 0"
        );
        let mut d = Acc::new(Function::CountDistinct);
        d.add(Some(&Scalar::Str("a".into())));
        d.add(Some(&Scalar::Str("a".into())));
        assert_eq!(d.value(), serde_json::Value::from(1));
    }
}
