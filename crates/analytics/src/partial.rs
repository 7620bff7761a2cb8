//! The first stage, one per shard: records → partial aggregates per window and group.
//!
//! A shard's window closes when the shard's newest record time passes the window's end
//! plus the allowed lateness; its partial then goes to the second stage
//! ([`crate::merge`]), which merges the partials of every shard. A record for a window
//! the shard already closed is late: it goes to the late output, never into a count.
//!
//! Replays change nothing. The shard is checkpointed no further than just before the
//! first record of its oldest open window ([`ShardAggregator::resume_point`]), together
//! with the newest record time at that point; a worker that resumes there (after a kill
//! or a fail-over) makes the same decisions record by record, so a partial it emits
//! again is the one emitted before — the second stage keeps the first (a conditional
//! write), and a late record is late again, with the same id.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregate::Acc;
use crate::app::App;
use crate::parse::{BadRecord, Fields, Parser};
use crate::window::{Window, assign};

/// A shard's partial aggregates of one window: what the second stage merges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// The shard.
    pub shard: String,
    /// The window.
    pub window: Window,
    /// Records of the shard counted in it.
    pub records: u64,
    /// Per group (the group-by values joined by [`GROUP_SEPARATOR`]), one state per
    /// aggregate in the declaration's order.
    pub rows: BTreeMap<String, Vec<Acc>>,
}

/// Joins the group-by values of a row into its key.
pub const GROUP_SEPARATOR: char = '\u{1f}';

/// Where a shard resumes: a position in it and the newest record time up to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume<P> {
    /// The position (a checkpoint: the records up to it are done).
    pub position: P,
    /// The newest record time up to it (none: no record yet).
    pub max_time: Option<i64>,
}

/// One record for the first stage.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a, P> {
    /// Its bytes.
    pub data: &'a [u8],
    /// When Kinesis took it (its time unless the application reads a time field).
    pub arrival_ms: i64,
    /// Its position in the shard.
    pub position: &'a P,
}

/// What the first stage hands on, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<P> {
    /// A window the shard closed: to the second stage, durably, before the checkpoint
    /// passes [`ShardAggregator::resume_point`].
    Partial(Partial),
    /// A record later than its window(s) allow: to the late output.
    Late {
        /// Its position (with the shard, its id).
        position: P,
        /// Its time.
        time_ms: i64,
        /// The windows it missed.
        windows: Vec<Window>,
        /// The record.
        data: Vec<u8>,
    },
    /// A record that does not parse: to the error output.
    Bad {
        /// Its position.
        position: P,
        /// Why.
        error: BadRecord,
        /// The record.
        data: Vec<u8>,
    },
}

struct OpenWindow<P> {
    rows: foldhash::HashMap<String, Vec<Acc>>,
    records: u64,
    /// The index of its first record (records are numbered as they come).
    first: u64,
    /// Where to resume so that it is rebuilt whole.
    resume: Resume<P>,
}

/// The first stage of one application on one shard.
pub struct ShardAggregator<P> {
    app: Arc<App>,
    parser: Arc<Parser>,
    shard: String,
    open: BTreeMap<Window, OpenWindow<P>>,
    last: Resume<P>,
    index: u64,
    size_ms: i64,
    slide_ms: i64,
    lateness_ms: i64,
    windows: Vec<Window>,
    missed: Vec<Window>,
    key: String,
}

impl<P: Clone> ShardAggregator<P> {
    /// The first stage of `app` on `shard`, resuming at `resume` (the checkpoint, with
    /// the newest record time stored with it).
    pub fn new(app: Arc<App>, parser: Arc<Parser>, shard: &str, resume: Resume<P>) -> Self {
        Self {
            size_ms: app.size_ms(),
            slide_ms: app.slide_ms(),
            lateness_ms: app.lateness_ms(),
            app,
            parser,
            shard: shard.to_owned(),
            open: BTreeMap::new(),
            last: resume,
            index: 0,
            windows: Vec::new(),
            missed: Vec::new(),
            key: String::new(),
        }
    }

    /// The shard's newest record time.
    pub fn max_time(&self) -> Option<i64> {
        self.last.max_time
    }

    /// Windows open.
    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// How far the shard may be checkpointed once the steps handed on so far are durable:
    /// just before the first record of the oldest open window, or after the last record
    /// when none is open.
    pub fn resume_point(&self) -> &Resume<P> {
        self.open
            .values()
            .min_by_key(|w| w.first)
            .map_or(&self.last, |w| &w.resume)
    }

    /// Takes one record.
    pub fn push(&mut self, record: Input<'_, P>, out: &mut Vec<Step<P>>) {
        let mut fields = Fields::default();
        let parsed = self
            .parser
            .parse(record.data, &mut fields)
            .and_then(|()| self.parser.time(&fields, record.arrival_ms));
        let time = match parsed {
            Ok(t) => t,
            Err(error) => {
                out.push(Step::Bad {
                    position: record.position.clone(),
                    error,
                    data: record.data.to_vec(),
                });
                self.advance(record.position, None, out);
                return;
            }
        };
        assign(time, self.size_ms, self.slide_ms, &mut self.windows);
        self.missed.clear();
        self.key.clear();
        for (n, i) in self.parser.group.iter().enumerate() {
            if n > 0 {
                self.key.push(crate::partial::GROUP_SEPARATOR);
            }
            if let Some(v) = &fields.values[*i] {
                v.push_text(&mut self.key);
            }
        }
        for w in &self.windows {
            if w.closed_by(self.last.max_time, self.lateness_ms) {
                self.missed.push(*w);
                continue;
            }
            let open = match self.open.get_mut(w) {
                Some(open) => open,
                None => self.open.entry(*w).or_insert_with(|| OpenWindow {
                    rows: foldhash::HashMap::default(),
                    records: 0,
                    first: self.index,
                    resume: self.last.clone(),
                }),
            };
            open.records += 1;
            let row = match open.rows.get_mut(self.key.as_str()) {
                Some(row) => row,
                None => open.rows.entry(self.key.clone()).or_insert_with(|| {
                    self.app
                        .aggregates
                        .iter()
                        .map(|a| Acc::new(a.function))
                        .collect()
                }),
            };
            for (acc, field) in row.iter_mut().zip(&self.parser.aggregate) {
                acc.add(field.and_then(|i| fields.values[i].as_ref()));
            }
        }
        if !self.missed.is_empty() {
            out.push(Step::Late {
                position: record.position.clone(),
                time_ms: time,
                windows: self.missed.clone(),
                data: record.data.to_vec(),
            });
        }
        self.advance(record.position, Some(time), out);
    }

    /// The record at `position` is taken: the newest time moves on and the windows it
    /// closes are handed on.
    fn advance(&mut self, position: &P, time: Option<i64>, out: &mut Vec<Step<P>>) {
        self.index += 1;
        self.last.position = position.clone();
        if let Some(t) = time {
            self.last.max_time = Some(self.last.max_time.map_or(t, |m| m.max(t)));
        }
        self.close(out);
    }

    /// The shard had no record for a while (caught up, the application's idle timeout):
    /// its time moves on to `time` if that is later, and the windows it passes close —
    /// an idle shard holds no window open.
    pub fn advance_to(&mut self, time: i64, out: &mut Vec<Step<P>>) {
        if self.last.max_time.is_some_and(|m| m >= time) {
            return;
        }
        self.last.max_time = Some(time);
        self.close(out);
    }

    /// Hands on every open window the shard's time has passed.
    fn close(&mut self, out: &mut Vec<Step<P>>) {
        let max_time = self.last.max_time;
        while let Some((w, _)) = self.open.first_key_value() {
            if !w.closed_by(max_time, self.lateness_ms) {
                // Windows close in order of their end; with hopping windows an older
                // start has an older end, so the first still open stops the scan.
                break;
            }
            if let Some((w, open)) = self.open.pop_first() {
                out.push(Step::Partial(self.partial(w, open)));
            }
        }
    }

    fn partial(&self, window: Window, open: OpenWindow<P>) -> Partial {
        Partial {
            shard: self.shard.clone(),
            window,
            records: open.records,
            rows: open.rows.into_iter().collect(),
        }
    }

    /// The shard ended (it was split or merged): every open window is handed on.
    pub fn finish(&mut self, out: &mut Vec<Step<P>>) {
        while let Some((w, open)) = self.open.pop_first() {
            out.push(Step::Partial(self.partial(w, open)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregator() -> ShardAggregator<i64> {
        let app = Arc::new(
            App::from_toml(
                "name = \"t\"\n[parse]\nformat = \"json\"\n[window]\nsize_s = 60\nallowed_lateness_s = 5\n[[aggregate]]\nname = \"count\"\nfn = \"count\"\n",
            )
            .unwrap_or_else(|e| panic!("{e}")),
        );
        let parser = Arc::new(Parser::new(&app).unwrap_or_else(|e| panic!("{e}")));
        ShardAggregator::new(
            app,
            parser,
            "s",
            Resume {
                position: -1,
                max_time: None,
            },
        )
    }

    fn push(
        a: &mut ShardAggregator<i64>,
        position: i64,
        arrival_ms: i64,
        data: &[u8],
    ) -> Vec<Step<i64>> {
        let mut out = Vec::new();
        a.push(
            Input {
                data,
                arrival_ms,
                position: &position,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn windows_close_at_their_end_plus_lateness_and_later_records_are_late() {
        let mut a = aggregator();
        assert!(push(&mut a, 0, 10_000, b"{}").is_empty());
        assert_eq!(
            a.resume_point().position,
            -1,
            "before the open window's first record"
        );
        assert!(
            push(&mut a, 1, 60_000, b"{}").is_empty(),
            "at the end: the next window"
        );
        assert!(matches!(
            push(&mut a, 2, 1, b"oops")[..],
            [Step::Bad { position: 2, .. }]
        ));
        assert!(
            push(&mut a, 3, 64_999, b"{}").is_empty(),
            "the window is still open"
        );
        assert!(push(&mut a, 4, 59_999, b"{}").is_empty(), "in time");
        let out = push(&mut a, 5, 65_000, b"{}");
        let [Step::Partial(p)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((p.window.start_ms, p.records), (0, 2));
        assert_eq!(
            a.resume_point().position,
            0,
            "just before the first record of [60 s, 120 s)"
        );
        assert_eq!(a.resume_point().max_time, Some(10_000));
        let out = push(&mut a, 6, 59_999, b"{}");
        assert!(
            matches!(&out[..], [Step::Late { position: 6, windows, .. }] if windows.len() == 1),
            "{out:?}"
        );
        // Idle: the shard's time moves on and closes the window; a record for it is late.
        let mut out = Vec::new();
        a.advance_to(125_000, &mut out);
        let [Step::Partial(p)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((p.window.start_ms, p.records), (60_000, 3));
        assert!(matches!(
            push(&mut a, 7, 119_999, b"{}")[..],
            [Step::Late { position: 7, .. }]
        ));
        let mut out = Vec::new();
        a.advance_to(1, &mut out);
        assert!(
            out.is_empty() && a.max_time() == Some(125_000),
            "never back"
        );
        assert!(push(&mut a, 8, 120_000, b"{}").is_empty());
        let mut out = Vec::new();
        a.finish(&mut out);
        let [Step::Partial(p)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!((p.window.start_ms, p.records), (120_000, 1));
        assert_eq!(
            a.resume_point().position,
            8,
            "nothing open: after the last record"
        );
    }
}
