//! Fake orders and job results for chief: the seed's Python generators, in Rust.
//!
//! A [`Generator`] is an endless [`Iterator`] of [`Order`]s or [`JobResult`]s:
//!
//! - **Deterministic.** Everything, UUIDs included, comes from a ChaCha8 RNG seeded
//!   with the seed you give, and timestamps from a simulated clock that starts at
//!   [`DEFAULT_START`], so the same seed gives the same records, byte for byte (for a
//!   given build: `fake`'s name lists may change between its versions).
//! - **Orders and job results line up.** For one seed, the n-th fresh job result is the
//!   outcome of the n-th fresh order: same `orderid`, `userid` and `factoryid`, a later
//!   timestamp. Duplicates are drawn from an RNG stream of their own, so this holds
//!   whatever the duplicate ratio.
//! - **Duplicates.** With probability `duplicate_ratio` a record repeats one of the
//!   last [`DEFAULT_POOL_CAPACITY`] distinct records (chosen uniformly): same
//!   `orderid`, same body, so byte-identical JSON, which is what a producer retry or an
//!   at-least-once redelivery looks like downstream. The pool is bounded, so memory
//!   stays flat however many records are drawn.
//! - **Plausible ids.** Users `user-000001`..`user-050000` (a user's name is the same
//!   in every order and every run), factories `factory-01`..`factory-08`, fifteen
//!   robots per factory `robot-001`..`robot-120`, statuses about 90 % completed, 7 %
//!   failed, 3 % cancelled.
//!
//! [`write_json_lines`] writes records one JSON object per line; the `chief-datagen`
//! binary is a thin CLI over it. [`lines`] has the text lines of the agent seeds:
//! Apache access logs, NYC taxi CSV rows, application logs.

pub mod etl;
pub mod lines;

use std::io::{self, Write};

use chief_pipeline::model::{JobResult, JobStatus, Order, OrderId, OrderItem, Timestamp, User};
use fake::Fake;
use fake::faker::name::en::Name;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// How many distinct records a generator keeps as candidates for repetition: the last
/// 10,000.
pub const DEFAULT_POOL_CAPACITY: usize = 10_000;

/// Where the simulated clock starts, in milliseconds since the Unix epoch:
/// 2024-01-01T00:00:00Z.
pub const DEFAULT_START: i64 = 1_704_067_200_000;

/// Number of users ids are drawn from (`user-000001`..`user-050000`).
pub const USER_COUNT: u32 = 50_000;

/// Number of factories (`factory-01`..`factory-08`).
pub const FACTORY_COUNT: u32 = 8;

/// Robots per factory; factory `f` has robots `(f-1)*15+1 ..= f*15`.
pub const ROBOTS_PER_FACTORY: u32 = 15;

/// Most items in one order.
pub const MAX_ITEMS_PER_ORDER: usize = 4;

/// Most units of one item.
pub const MAX_QUANTITY: u32 = 10;

/// Longest simulated gap between two consecutive fresh records, in milliseconds.
pub const MAX_GAP_MILLIS: i64 = 250;

/// Shortest and longest simulated time from an order to its job result, in
/// milliseconds.
pub const JOB_DURATION_MILLIS: (i64, i64) = (5_000, 600_000);

/// The product catalogue orders draw from: SKU, product name, unit price in cents.
pub const CATALOGUE: &[(&str, &str, u64)] = &[
    ("SKU-1001", "Servo motor", 4_999),
    ("SKU-1002", "Stepper motor", 2_450),
    ("SKU-1003", "Planetary gearbox", 18_900),
    ("SKU-1004", "Harmonic drive", 62_000),
    ("SKU-1005", "Linear actuator", 12_999),
    ("SKU-1006", "Pneumatic gripper", 34_500),
    ("SKU-1007", "Vacuum suction cup", 899),
    ("SKU-1008", "Six-axis force sensor", 249_000),
    ("SKU-1009", "Proximity sensor", 1_575),
    ("SKU-1010", "Rotary encoder", 3_820),
    ("SKU-1011", "Machine vision camera", 89_900),
    ("SKU-1012", "Safety light curtain", 54_000),
    ("SKU-1013", "Cable carrier chain", 2_199),
    ("SKU-1014", "Timing belt", 1_249),
    ("SKU-1015", "Ball screw", 15_600),
    ("SKU-1016", "Motor controller board", 27_500),
    ("SKU-1017", "Emergency stop button", 1_999),
    ("SKU-1018", "Tool changer", 129_000),
    ("SKU-1019", "Welding torch", 45_900),
    ("SKU-1020", "Conveyor roller", 3_300),
];

/// Salt for the RNG that names users, so a user's name depends on the user id alone.
const USER_NAME_SALT: u64 = 0x6368_6965_665f_7573; // "chief_us"
/// ChaCha stream of the duplicate decisions, apart from the records' stream (0).
const DUPLICATE_STREAM: u64 = 1;

/// Why a generator could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatagenError {
    /// The duplicate ratio is not a number in `[0, 1)`.
    #[error("duplicate ratio {0} is not in [0, 1)")]
    InvalidDuplicateRatio(f64),
    /// The duplicate ratio is not a number at all.
    #[error("duplicate ratio `{0}` is not a number")]
    UnparsableDuplicateRatio(String),
    /// The candidate pool for duplicates must hold at least one record.
    #[error("duplicate pool capacity must be at least 1")]
    EmptyPool,
    /// The clock start is outside what a [`Timestamp`] holds.
    #[error("clock start {0} ms since the Unix epoch is not a valid timestamp")]
    InvalidStart(i64),
}

/// Checks a duplicate ratio: a finite number in `[0, 1)`.
///
/// # Errors
/// [`DatagenError::InvalidDuplicateRatio`].
pub fn check_duplicate_ratio(ratio: f64) -> Result<f64, DatagenError> {
    if (0.0..1.0).contains(&ratio) {
        Ok(ratio)
    } else {
        Err(DatagenError::InvalidDuplicateRatio(ratio))
    }
}

/// Parses and checks a duplicate ratio given as text (what `--duplicate-ratio` takes).
///
/// # Errors
/// [`DatagenError::UnparsableDuplicateRatio`] or
/// [`DatagenError::InvalidDuplicateRatio`].
pub fn parse_duplicate_ratio(text: &str) -> Result<f64, DatagenError> {
    let ratio = text
        .trim()
        .parse::<f64>()
        .map_err(|_| DatagenError::UnparsableDuplicateRatio(text.to_owned()))?;
    check_duplicate_ratio(ratio)
}

/// Counts of what a generator has produced so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Records produced (`distinct + duplicates`).
    pub total: u64,
    /// Fresh records, each with a new `orderid` (two random v4 UUIDs: a collision is
    /// as likely as guessing 244 random bits).
    pub distinct: u64,
    /// Records that repeat an earlier one.
    pub duplicates: u64,
}

/// A record a [`Generator`] can make: [`Order`] or [`JobResult`]. Sealed.
pub trait FakeRecord: Clone + private::Fabricate {}

impl FakeRecord for Order {}
impl FakeRecord for JobResult {}

mod private {
    use super::*;

    /// The draws shared by an order and the job result for it, in a fixed order, so
    /// that both kinds of generator stay in step.
    pub struct Common {
        pub orderid: OrderId,
        pub user_number: u32,
        pub factory_number: u32,
        pub timestamp: Timestamp,
    }

    pub trait Fabricate: Sized {
        /// Makes one fresh record from its own RNG, advancing the clock.
        fn fabricate(rng: &mut ChaCha8Rng, clock: &mut i64) -> Self;
    }

    pub fn common(rng: &mut ChaCha8Rng, clock: &mut i64) -> Common {
        let first = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let second = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let id = format!("{}-{}", first.hyphenated(), second.hyphenated());
        let orderid = match OrderId::new(id) {
            Ok(orderid) => orderid,
            // Two hyphenated UUIDs are 73 ASCII characters, never empty or too long.
            Err(err) => unreachable!("generated orderid rejected: {err}"),
        };
        let user_number = rng.random_range(1..=USER_COUNT);
        let factory_number = rng.random_range(1..=FACTORY_COUNT);
        *clock += rng.random_range(0..=MAX_GAP_MILLIS);
        Common {
            orderid,
            user_number,
            factory_number,
            timestamp: timestamp(*clock),
        }
    }

    /// The clock was checked at construction and moves at most a few hundred ms per
    /// record, so it stays far inside the years 0000-9999 for any count anyone runs.
    pub fn timestamp(millis: i64) -> Timestamp {
        match Timestamp::from_unix_millis(millis) {
            Ok(ts) => ts,
            Err(err) => panic!("simulated clock ran out of range: {err}"),
        }
    }

    impl Fabricate for Order {
        fn fabricate(rng: &mut ChaCha8Rng, clock: &mut i64) -> Self {
            let common = common(rng, clock);
            let item_count = rng.random_range(1..=MAX_ITEMS_PER_ORDER);
            let items = (0..item_count)
                .map(|_| {
                    let (sku, product, unit_price_cents) =
                        CATALOGUE[rng.random_range(0..CATALOGUE.len())];
                    OrderItem {
                        sku: sku.to_owned(),
                        product: product.to_owned(),
                        quantity: rng.random_range(1..=MAX_QUANTITY),
                        unit_price_cents,
                    }
                })
                .collect();
            Order {
                orderid: common.orderid,
                user: User {
                    userid: user_id(common.user_number),
                    name: user_name(common.user_number),
                },
                factoryid: factory_id(common.factory_number),
                items,
                timestamp: common.timestamp,
            }
        }
    }

    impl Fabricate for JobResult {
        fn fabricate(rng: &mut ChaCha8Rng, clock: &mut i64) -> Self {
            let common = common(rng, clock);
            let robot = (common.factory_number - 1) * ROBOTS_PER_FACTORY
                + rng.random_range(1..=ROBOTS_PER_FACTORY);
            let jobstatus = match rng.random_range(0..100u32) {
                0..90 => JobStatus::Completed,
                90..97 => JobStatus::Failed,
                _ => JobStatus::Cancelled,
            };
            let duration = rng.random_range(JOB_DURATION_MILLIS.0..=JOB_DURATION_MILLIS.1);
            JobResult {
                orderid: common.orderid,
                userid: user_id(common.user_number),
                factoryid: factory_id(common.factory_number),
                robotid: format!("robot-{robot:03}"),
                jobstatus,
                timestamp: timestamp(common.timestamp.unix_millis() + duration),
            }
        }
    }

    fn user_id(number: u32) -> String {
        format!("user-{number:06}")
    }

    fn factory_id(number: u32) -> String {
        format!("factory-{number:02}")
    }

    fn user_name(number: u32) -> String {
        let mut rng = ChaCha8Rng::seed_from_u64(USER_NAME_SALT ^ u64::from(number));
        Name().fake_with_rng(&mut rng)
    }
}

/// An endless, deterministic stream of fake records of kind `R` ([`Order`] or
/// [`JobResult`]), with a share of byte-identical duplicates.
///
/// ```
/// use chief_datagen::Generator;
/// use chief_pipeline::model::Order;
///
/// let mut orders = Generator::<Order>::new(7, 0.1)?;
/// let first: Vec<Order> = orders.by_ref().take(100).collect();
/// assert_eq!(first.len(), 100);
/// assert_eq!(orders.stats().total, 100);
/// # Ok::<(), chief_datagen::DatagenError>(())
/// ```
#[derive(Debug)]
pub struct Generator<R> {
    /// Draws one seed per fresh record.
    records: ChaCha8Rng,
    /// Draws the duplicate decisions and picks.
    duplicates: ChaCha8Rng,
    duplicate_ratio: f64,
    clock: i64,
    pool: Vec<R>,
    pool_capacity: usize,
    /// Where the next fresh record goes once the pool is full.
    pool_next: usize,
    stats: Stats,
}

impl<R: FakeRecord> Generator<R> {
    /// A generator for `seed` that repeats an earlier record with probability
    /// `duplicate_ratio`, with a pool of [`DEFAULT_POOL_CAPACITY`] and the clock at
    /// [`DEFAULT_START`].
    ///
    /// # Errors
    /// [`DatagenError::InvalidDuplicateRatio`] unless `0 <= duplicate_ratio < 1`.
    pub fn new(seed: u64, duplicate_ratio: f64) -> Result<Self, DatagenError> {
        let duplicate_ratio = check_duplicate_ratio(duplicate_ratio)?;
        let records = ChaCha8Rng::seed_from_u64(seed);
        let mut duplicates = ChaCha8Rng::seed_from_u64(seed);
        duplicates.set_stream(DUPLICATE_STREAM);
        Ok(Generator {
            records,
            duplicates,
            duplicate_ratio,
            clock: DEFAULT_START,
            pool: Vec::new(),
            pool_capacity: DEFAULT_POOL_CAPACITY,
            pool_next: 0,
            stats: Stats::default(),
        })
    }

    /// Keeps the last `capacity` distinct records as candidates for repetition
    /// instead of [`DEFAULT_POOL_CAPACITY`]. Call before drawing records.
    ///
    /// # Errors
    /// [`DatagenError::EmptyPool`] if `capacity` is 0.
    pub fn with_pool_capacity(mut self, capacity: usize) -> Result<Self, DatagenError> {
        if capacity == 0 {
            return Err(DatagenError::EmptyPool);
        }
        self.pool_capacity = capacity;
        self.pool.truncate(capacity);
        self.pool_next = 0;
        Ok(self)
    }

    /// Starts the simulated clock at `unix_millis` instead of [`DEFAULT_START`].
    /// Call before drawing records.
    ///
    /// # Errors
    /// [`DatagenError::InvalidStart`] if that is not a valid [`Timestamp`], or too
    /// close to the year 10000 to leave room for the clock to run.
    pub fn with_start(mut self, unix_millis: i64) -> Result<Self, DatagenError> {
        // Leave ~1000 years of headroom for the clock and job durations.
        let headroom = 1_000 * 366 * 24 * 3_600 * 1_000;
        if Timestamp::from_unix_millis(unix_millis).is_err()
            || Timestamp::from_unix_millis(unix_millis.saturating_add(headroom)).is_err()
        {
            return Err(DatagenError::InvalidStart(unix_millis));
        }
        self.clock = unix_millis;
        Ok(self)
    }

    /// What has been produced so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The duplicate ratio this generator was built with.
    pub fn duplicate_ratio(&self) -> f64 {
        self.duplicate_ratio
    }

    /// The next record, and whether it repeats an earlier one.
    pub fn next_record(&mut self) -> (R, bool) {
        // Always draw the decision, so the duplicate stream's position does not depend
        // on the pool's state.
        let repeat = self.duplicates.random::<f64>() < self.duplicate_ratio;
        self.stats.total += 1;
        if repeat && !self.pool.is_empty() {
            let pick = self.duplicates.random_range(0..self.pool.len());
            self.stats.duplicates += 1;
            return (self.pool[pick].clone(), true);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.records.random());
        let record = R::fabricate(&mut rng, &mut self.clock);
        self.stats.distinct += 1;
        if self.duplicate_ratio > 0.0 {
            if self.pool.len() < self.pool_capacity {
                self.pool.push(record.clone());
            } else {
                self.pool[self.pool_next] = record.clone();
                self.pool_next = (self.pool_next + 1) % self.pool_capacity;
            }
        }
        (record, false)
    }
}

impl<R: FakeRecord> Iterator for Generator<R> {
    type Item = R;

    fn next(&mut self) -> Option<R> {
        Some(self.next_record().0)
    }
}

/// Writes `count` records from `generator` to `out`, one JSON object per line, and
/// flushes. Returns the generator's [`Stats`] (for all records it has produced).
///
/// `out` should be buffered (a `BufWriter`): this makes one small write per field.
///
/// # Errors
/// The first I/O error from `out` (a closed pipe shows as
/// [`io::ErrorKind::BrokenPipe`]).
pub fn write_json_lines<R, W>(
    generator: &mut Generator<R>,
    count: u64,
    out: &mut W,
) -> io::Result<Stats>
where
    R: FakeRecord + serde::Serialize,
    W: Write,
{
    for _ in 0..count {
        let record = generator.next_record().0;
        serde_json::to_writer(&mut *out, &record).map_err(io::Error::from)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(generator.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_bounds() {
        assert!(check_duplicate_ratio(0.0).is_ok());
        assert!(check_duplicate_ratio(0.999).is_ok());
        for bad in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
            assert!(check_duplicate_ratio(bad).is_err(), "{bad}");
            assert!(Generator::<Order>::new(1, bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duplicate_ratio(" 0.25 ").expect("valid"), 0.25);
        assert!(matches!(
            parse_duplicate_ratio("lots"),
            Err(DatagenError::UnparsableDuplicateRatio(_))
        ));
        assert!(matches!(
            parse_duplicate_ratio("1"),
            Err(DatagenError::InvalidDuplicateRatio(_))
        ));
    }

    #[test]
    fn pool_is_bounded() {
        let mut generator = Generator::<Order>::new(3, 0.5)
            .expect("valid")
            .with_pool_capacity(16)
            .expect("valid");
        for _ in 0..1_000 {
            generator.next();
        }
        assert_eq!(generator.pool.len(), 16);
        assert!(
            Generator::<Order>::new(3, 0.5)
                .expect("valid")
                .with_pool_capacity(0)
                .is_err()
        );
    }

    #[test]
    fn no_pool_without_duplicates() {
        let mut generator = Generator::<JobResult>::new(3, 0.0).expect("valid");
        for _ in 0..100 {
            generator.next();
        }
        assert!(generator.pool.is_empty());
    }

    #[test]
    fn clock_start_is_checked() {
        assert!(
            Generator::<Order>::new(1, 0.0)
                .expect("valid")
                .with_start(i64::MAX)
                .is_err()
        );
        let mut generator = Generator::<Order>::new(1, 0.0)
            .expect("valid")
            .with_start(0)
            .expect("valid");
        let order = generator.next().expect("endless");
        assert!(order.timestamp.unix_millis() <= MAX_GAP_MILLIS);
    }
}
