//! The second stage: a window's result is the merge of every shard's partial for it,
//! once no shard can add to it any more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregate::Acc;
use crate::app::App;
use crate::condition::Condition;
use crate::partial::{GROUP_SEPARATOR, Partial};
use crate::window::Window;

/// What the second stage knows of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardProgress {
    /// The shard.
    pub shard: String,
    /// Its newest record time handed on (partials of the windows it closed are stored).
    pub max_time: Option<i64>,
    /// Read to its end (split or merged away): every partial of it is stored.
    pub finished: bool,
    /// Caught up and without a record for the application's idle timeout: it holds no
    /// window open.
    pub idle: bool,
}

/// Whether no shard can add to `window` any more: every shard finished, idle, or past the
/// window's end plus the allowed lateness. Never with no shard known.
pub fn complete(app: &App, window: &Window, shards: &[ShardProgress]) -> bool {
    !shards.is_empty()
        && shards
            .iter()
            .all(|s| s.finished || s.idle || window.closed_by(s.max_time, app.lateness_ms()))
}

/// One row of a window's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The group-by values, in the declaration's order.
    pub group: Vec<String>,
    /// The aggregates' states, in the declaration's order.
    pub values: Vec<Acc>,
}

/// A window's result over the whole stream.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    /// The window.
    pub window: Window,
    /// Records in it.
    pub records: u64,
    /// Its rows, by group, the `having` filter applied.
    pub rows: Vec<Row>,
}

/// Merges the partials of one window (every shard's, each once).
pub fn merge<'a>(
    app: &App,
    window: Window,
    partials: impl IntoIterator<Item = &'a Partial>,
) -> WindowResult {
    let mut rows: BTreeMap<String, Vec<Acc>> = BTreeMap::new();
    let mut records = 0;
    for p in partials {
        records += p.records;
        for (key, accs) in &p.rows {
            match rows.get_mut(key) {
                Some(into) => {
                    for (a, b) in into.iter_mut().zip(accs) {
                        a.merge(b);
                    }
                }
                None => {
                    rows.insert(key.clone(), accs.clone());
                }
            }
        }
    }
    let having = app.having.as_deref().and_then(|h| Condition::parse(h).ok());
    let rows = rows
        .into_iter()
        .map(|(key, values)| Row {
            group: if app.group_by.is_empty() {
                Vec::new()
            } else {
                key.split(GROUP_SEPARATOR).map(str::to_owned).collect()
            },
            values,
        })
        .filter(|row| {
            having
                .as_ref()
                .is_none_or(|c| row_value(app, row, &c.subject).is_some_and(|v| c.holds(v)))
        })
        .collect();
    WindowResult {
        window,
        records,
        rows,
    }
}

fn row_value(app: &App, row: &Row, aggregate: &str) -> Option<f64> {
    let i = app.aggregates.iter().position(|a| a.name == aggregate)?;
    row.values.get(i).map(Acc::number)
}

impl WindowResult {
    /// The row documents: `window_start`, `window_end`, the group-by fields and the
    /// aggregates, each with a deterministic id (application, window, group) so that
    /// writing a result again replaces it.
    pub fn documents(&self, app: &App) -> Vec<(String, serde_json::Value)> {
        self.rows
            .iter()
            .map(|row| {
                let mut doc = serde_json::Map::new();
                doc.insert("window_start".into(), self.window.start_text().into());
                doc.insert("window_end".into(), self.window.end_text().into());
                for (name, value) in app.group_by.iter().zip(&row.group) {
                    doc.insert(name.clone(), value.clone().into());
                }
                for (a, acc) in app.aggregates.iter().zip(&row.values) {
                    doc.insert(a.name.clone(), acc.value());
                }
                let id = format!(
                    "{}-{}-{}",
                    app.name,
                    self.window.start_ms,
                    row.group.join("|")
                );
                (id, serde_json::Value::Object(doc))
            })
            .collect()
    }

    /// The value an alert condition's subject names in this window: an aggregate (the
    /// greatest over the rows), the first aggregate of the row grouped under a value
    /// (`ERROR`), or `value.aggregate`; 0 when there is no such row.
    pub fn subject_value(&self, app: &App, subject: &str) -> f64 {
        if app.aggregates.iter().any(|a| a.name == subject) {
            return self
                .rows
                .iter()
                .filter_map(|r| row_value(app, r, subject))
                .fold(0.0, f64::max);
        }
        let (group, aggregate) = match subject.rsplit_once('.') {
            Some((g, a)) if app.aggregates.iter().any(|x| x.name == a) => (g, Some(a)),
            _ => (subject, None),
        };
        let Some(row) = self.rows.iter().find(|r| r.group.join("|") == group) else {
            return 0.0;
        };
        match aggregate {
            Some(a) => row_value(app, row, a).unwrap_or(0.0),
            None => row.values.first().map_or(0.0, Acc::number),
        }
    }
}
