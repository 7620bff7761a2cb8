//! The two stages against an independent computation of the same input: every window's
//! rows equal a batch computation over the records (minus the late ones), and the late
//! output holds exactly the late records — with shards processed by workers that are
//! killed at random points and resume from their checkpoints (a kill loses whatever was
//! not yet durable), with out-of-order and bad records, with a split (a parent shard and
//! its two children), for tumbling and hopping windows, arrival time and an event-time
//! field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chief_analytics::{
    App, Input, Parser, Partial, Resume, ShardAggregator, ShardProgress, Step, Window, complete,
    merge,
};

/// A small deterministic generator (the test's input must not depend on a crate's RNG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Rec {
    arrival_ms: i64,
    data: Vec<u8>,
}

const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];

/// A shard's records: times that mostly rise, some up to 20 s back (late past 5 s of
/// lateness once a window end is passed), one bad record in 97.
fn shard_records(rng: &mut Lcg, from_ms: i64, n: usize) -> Vec<Rec> {
    let mut t = from_ms;
    (0..n)
        .map(|i| {
            t += i64::try_from(rng.below(700)).unwrap_or(0);
            let back = if rng.below(10) == 0 {
                i64::try_from(rng.below(20_000)).unwrap_or(0)
            } else {
                0
            };
            let time = t - back;
            let data = if i % 97 == 13 {
                b"not json".to_vec()
            } else {
                format!(
                    r#"{{"level":"{}","bytes":{},"user":"u{}","time":{time},"pad":[1,{{"x":2}}]}}"#,
                    LEVELS[usize::try_from(rng.below(4)).unwrap_or(0)],
                    rng.below(5000),
                    rng.below(7),
                )
                .into_bytes()
            };
            Rec {
                arrival_ms: time,
                data,
            }
        })
        .collect()
}

fn app(slide_s: u64, time_field: bool) -> App {
    let time = if time_field {
        "[time]\nsource = \"field\"\nfield = \"time\"\nformat = \"epoch_millis\"\n"
    } else {
        ""
    };
    App::from_toml(&format!(
        r#"
name = "levels"
group_by = ["level"]
having = "count >= 2"
[parse]
format = "json"
{time}
[window]
size_s = 60
slide_s = {slide_s}
allowed_lateness_s = 5
[[aggregate]]
name = "count"
fn = "count"
[[aggregate]]
name = "bytes"
fn = "sum"
field = "bytes"
[[aggregate]]
name = "users"
fn = "count_distinct"
field = "user"
[[aggregate]]
name = "largest"
fn = "max"
field = "bytes"
"#
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What survives a kill: the stores (first write wins for partials, as the conditional
/// write does) and each shard's checkpoint.
#[derive(Default, PartialEq, Debug)]
struct Durable {
    partials: BTreeMap<(String, Window), Partial>,
    late: BTreeSet<(String, i64, Vec<Window>)>,
    bad: BTreeSet<(String, i64)>,
    checkpoints: HashMap<String, Resume<i64>>,
}

/// Processes one shard to its end in batches of up to 50 records; with `kills`, a worker
/// dies at random points (its undelivered steps lost) and a new one resumes from the
/// checkpoint.
fn process_shard(
    app: &Arc<App>,
    parser: &Arc<Parser>,
    shard: &str,
    records: &[Rec],
    durable: &mut Durable,
    rng: &mut Lcg,
    kills: bool,
) -> usize {
    let mut restarts = 0;
    loop {
        let resume = durable.checkpoints.get(shard).cloned().unwrap_or(Resume {
            position: -1,
            max_time: None,
        });
        let mut worker = ShardAggregator::new(app.clone(), parser.clone(), shard, resume.clone());
        let mut next = usize::try_from(resume.position + 1).unwrap_or(0);
        let mut killed = false;
        while next < records.len() {
            let batch = 1 + usize::try_from(rng.below(50)).unwrap_or(0);
            let mut steps = Vec::new();
            let end = (next + batch).min(records.len());
            for (i, r) in records.iter().enumerate().take(end).skip(next) {
                let position = i64::try_from(i).unwrap_or(0);
                worker.push(
                    Input {
                        data: &r.data,
                        arrival_ms: r.arrival_ms,
                        position: &position,
                    },
                    &mut steps,
                );
            }
            next = end;
            if kills && rng.below(8) == 0 {
                // Killed before the batch's steps were durable.
                killed = true;
                restarts += 1;
                break;
            }
            deliver(shard, steps, durable);
            durable
                .checkpoints
                .insert(shard.to_owned(), worker.resume_point().clone());
        }
        if killed {
            continue;
        }
        let mut steps = Vec::new();
        worker.finish(&mut steps);
        deliver(shard, steps, durable);
        durable
            .checkpoints
            .insert(shard.to_owned(), worker.resume_point().clone());
        return restarts;
    }
}

fn deliver(shard: &str, steps: Vec<Step<i64>>, durable: &mut Durable) {
    for step in steps {
        match step {
            Step::Partial(p) => {
                durable
                    .partials
                    .entry((p.shard.clone(), p.window))
                    .or_insert(p);
            }
            Step::Late {
                position, windows, ..
            } => {
                durable.late.insert((shard.to_owned(), position, windows));
            }
            Step::Bad { position, .. } => {
                durable.bad.insert((shard.to_owned(), position));
            }
        }
    }
}

/// A row's count, sum of bytes, distinct users and largest bytes.
type RowValues = (u64, i64, BTreeSet<String>, i64);

#[derive(Default, Debug, PartialEq)]
struct Expected {
    /// (window start, level) → (count, bytes, users, largest).
    rows: BTreeMap<(i64, String), RowValues>,
    late: BTreeSet<(String, i64, Vec<Window>)>,
    bad: BTreeSet<(String, i64)>,
}

/// The same computation written plainly from the rules: a record's windows are every
/// `[k·slide, k·slide + 60 s)` holding its time; it is late for a window whose end plus
/// 5 s is at or before the newest time seen before it in its shard.
fn expected(shards: &[(String, Vec<Rec>)], slide_ms: i64) -> Expected {
    let mut out = Expected::default();
    for (shard, records) in shards {
        let mut newest: Option<i64> = None;
        for (i, r) in records.iter().enumerate() {
            let position = i64::try_from(i).unwrap_or(0);
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.data) else {
                out.bad.insert((shard.clone(), position));
                continue;
            };
            let t = v["time"].as_i64().unwrap_or_default();
            let mut missed = Vec::new();
            let mut k = (t - 60_000).div_euclid(slide_ms);
            while k * slide_ms <= t {
                let start = k * slide_ms;
                k += 1;
                if !(start <= t && t < start + 60_000) {
                    continue;
                }
                let w = Window {
                    start_ms: start,
                    end_ms: start + 60_000,
                };
                if newest.is_some_and(|n| w.end_ms + 5_000 <= n) {
                    missed.push(w);
                    continue;
                }
                let row = out
                    .rows
                    .entry((start, v["level"].as_str().unwrap_or_default().to_owned()))
                    .or_insert((0, 0, BTreeSet::new(), i64::MIN));
                let bytes = v["bytes"].as_i64().unwrap_or_default();
                row.0 += 1;
                row.1 += bytes;
                row.2
                    .insert(v["user"].as_str().unwrap_or_default().to_owned());
                row.3 = row.3.max(bytes);
            }
            if !missed.is_empty() {
                out.late.insert((shard.clone(), position, missed));
            }
            newest = Some(newest.map_or(t, |n| n.max(t)));
        }
    }
    // `having = "count >= 2"`.
    out.rows.retain(|_, row| row.0 >= 2);
    out
}

fn results(app: &App, durable: &Durable) -> Expected {
    let mut out = Expected {
        late: durable.late.clone(),
        bad: durable.bad.clone(),
        ..Expected::default()
    };
    let windows: BTreeSet<Window> = durable.partials.keys().map(|(_, w)| *w).collect();
    for w in windows {
        let result = merge(
            app,
            w,
            durable
                .partials
                .iter()
                .filter(|((_, pw), _)| *pw == w)
                .map(|(_, p)| p),
        );
        for (_, doc) in result.documents(app) {
            let level = doc["level"].as_str().unwrap_or_default().to_owned();
            let row = result
                .rows
                .iter()
                .find(|r| r.group == [level.clone()])
                .unwrap_or_else(|| panic!("row {level}"));
            let users = match &row.values[2] {
                chief_analytics::aggregate::Acc::Distinct(set) => set.clone(),
                other => panic!("{other:?}"),
            };
            let users: BTreeSet<String> = users.into_iter().collect();
            assert_eq!(doc["users"].as_u64(), Some(users.len() as u64));
            out.rows.insert(
                (w.start_ms, level),
                (
                    doc["count"].as_u64().unwrap_or_default(),
                    doc["bytes"].as_i64().unwrap_or_default(),
                    users,
                    doc["largest"].as_i64().unwrap_or(i64::MIN),
                ),
            );
        }
    }
    out
}

fn run(seed: u64, slide_s: u64, time_field: bool) {
    let app = Arc::new(app(slide_s, time_field));
    let parser = Arc::new(Parser::new(&app).unwrap_or_else(|e| panic!("{e}")));
    let mut rng = Lcg(seed);
    let start = 1_796_428_800_000;
    // Two shards from the start; the first is split after 600 records into two children
    // that carry on from where it ended.
    let parent = shard_records(&mut rng, start, 600);
    let parent_end = parent.iter().map(|r| r.arrival_ms).max().unwrap_or(start);
    let shards = vec![
        ("shard-0".to_owned(), parent),
        ("shard-1".to_owned(), shard_records(&mut rng, start, 1_500)),
        (
            "shard-2".to_owned(),
            shard_records(&mut rng, parent_end, 450),
        ),
        (
            "shard-3".to_owned(),
            shard_records(&mut rng, parent_end, 450),
        ),
    ];
    let want = expected(&shards, i64::try_from(slide_s * 1000).unwrap_or(1));
    assert!(
        !want.late.is_empty() && !want.bad.is_empty(),
        "the input has late and bad records"
    );

    let mut calm = Durable::default();
    let mut stormy = Durable::default();
    let mut restarts = 0;
    for (shard, records) in &shards {
        process_shard(&app, &parser, shard, records, &mut calm, &mut rng, false);
        restarts += process_shard(&app, &parser, shard, records, &mut stormy, &mut rng, true);
    }
    assert!(
        restarts > 3,
        "the workers were killed ({restarts} restarts)"
    );
    let got = results(&app, &calm);
    assert_eq!(got.bad, want.bad, "bad records");
    assert_eq!(got.late, want.late, "late records");
    assert_eq!(got.rows.len(), want.rows.len(), "rows");
    assert_eq!(got, want, "window results");
    assert_eq!(stormy.partials, calm.partials, "kills change no partial");
    assert_eq!(stormy.late, calm.late, "kills change no late record");
    assert_eq!(stormy.bad, calm.bad);
}

#[test]
fn tumbling_windows_on_arrival_time_are_exact_through_kills_and_a_split() {
    for seed in 1..6 {
        run(seed, 60, false);
    }
}

#[test]
fn hopping_windows_on_an_event_time_field_are_exact_through_kills_and_a_split() {
    for seed in 11..14 {
        run(seed, 20, true);
    }
}

#[test]
fn a_window_completes_only_when_every_shard_is_past_it_finished_or_idle() {
    let app = app(60, false);
    let w = Window {
        start_ms: 0,
        end_ms: 60_000,
    };
    let shard = |max_time, finished, idle| ShardProgress {
        shard: "s".into(),
        max_time,
        finished,
        idle,
    };
    assert!(!complete(&app, &w, &[]), "no shard known");
    assert!(!complete(&app, &w, &[shard(Some(64_999), false, false)]));
    assert!(complete(&app, &w, &[shard(Some(65_000), false, false)]));
    let behind = shard(Some(10_000), false, false);
    assert!(!complete(
        &app,
        &w,
        &[shard(Some(65_000), false, false), behind.clone()]
    ));
    assert!(
        complete(
            &app,
            &w,
            &[
                shard(Some(65_000), false, false),
                shard(Some(10_000), false, true)
            ]
        ),
        "an idle shard holds nothing open"
    );
    assert!(
        complete(&app, &w, &[shard(None, true, false)]),
        "a finished shard"
    );
}
