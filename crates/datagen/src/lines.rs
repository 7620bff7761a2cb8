//! Text lines for the agent seeds, deterministic for a seed:
//!
//! - [`ApacheLog`]: combined log format lines as Fake-Apache-Log-Generator writes them
//!   (seed 001): status 200/404/500/301 with probabilities .9/.04/.02/.04, verbs
//!   GET/POST/DELETE/PUT .6/.1/.1/.2, a simulated clock.
//! - [`TaxiCsv`]: NYC yellow-taxi trips, the 17 columns of seed 002, comma-separated
//!   ([`TAXI_COLUMNS`] is the header line).
//! - [`AppLog`]: log4j-style application lines with levels INFO/WARN/ERROR/DEBUG (seed
//!   003).
//!
//! Each is an endless [`Iterator`] of lines without their newline.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The 17 columns of seed 002's taxi trips, in order.
pub const TAXI_COLUMNS: [&str; 17] = [
    "VendorID",
    "tpep_pickup_datetime",
    "tpep_dropoff_datetime",
    "passenger_count",
    "trip_distance",
    "RatecodeID",
    "store_and_fwd_flag",
    "PULocationID",
    "DOLocationID",
    "payment_type",
    "fare_amount",
    "extra",
    "mta_tax",
    "tip_amount",
    "tolls_amount",
    "improvement_surcharge",
    "total_amount",
];

/// Civil date and time of `millis` since the epoch (UTC): (year, month, day, h, m, s).
pub(crate) fn civil(millis: i64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn pick<'a>(rng: &mut ChaCha8Rng, weighted: &[(&'a str, u32)]) -> &'a str {
    let total: u32 = weighted.iter().map(|(_, w)| w).sum();
    let mut n = rng.random_range(0..total);
    for (item, weight) in weighted {
        if n < *weight {
            return item;
        }
        n -= weight;
    }
    weighted[0].0
}

/// Apache combined log lines (seed 001).
#[derive(Debug)]
pub struct ApacheLog {
    rng: ChaCha8Rng,
    clock: i64,
}

impl ApacheLog {
    /// Lines from `seed`, the clock starting at `start` (ms since the epoch).
    pub fn new(seed: u64, start: i64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: start,
        }
    }
}

const RESOURCES: [&str; 8] = [
    "/list",
    "/wp-content",
    "/wp-admin",
    "/explore",
    "/search/tag/list",
    "/app/main/posts",
    "/posts/posts/explore",
    "/apps/cart.jsp?appID=",
];

const USER_AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Opera/9.80 (Windows NT 6.1; U; en) Presto/2.10.229 Version/11.62",
];

impl Iterator for ApacheLog {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let rng = &mut self.rng;
        self.clock += rng.random_range(0..1_000);
        let (y, mo, d, h, mi, s) = civil(self.clock);
        let ip = format!(
            "{}.{}.{}.{}",
            rng.random_range(1..224),
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        );
        let verb = pick(rng, &[("GET", 6), ("POST", 1), ("DELETE", 1), ("PUT", 2)]);
        let mut resource = RESOURCES[rng.random_range(0..RESOURCES.len())].to_owned();
        if resource.ends_with('=') {
            resource.push_str(&rng.random_range(1_000..10_000).to_string());
        }
        let status = pick(rng, &[("200", 90), ("404", 4), ("500", 2), ("301", 4)]);
        let bytes = 4_900 + rng.random_range(0..200);
        let referer = format!(
            "http://www.example{}.com/{}",
            rng.random_range(0..100),
            RESOURCES[rng.random_range(0..RESOURCES.len())].trim_start_matches('/')
        );
        let agent = USER_AGENTS[rng.random_range(0..USER_AGENTS.len())];
        Some(format!(
            "{ip} - - [{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02} +0000] \"{verb} {resource} HTTP/1.0\" {status} {bytes} \"{referer}\" \"{agent}\"",
            MONTHS[(mo - 1) as usize]
        ))
    }
}

/// NYC taxi trip rows (seed 002), without the header ([`TAXI_COLUMNS`]).
#[derive(Debug)]
pub struct TaxiCsv {
    rng: ChaCha8Rng,
    clock: i64,
}

impl TaxiCsv {
    /// Rows from `seed`, pick-ups starting at `start` (ms since the epoch).
    pub fn new(seed: u64, start: i64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: start,
        }
    }
}

fn datetime(millis: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(millis);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

impl Iterator for TaxiCsv {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let rng = &mut self.rng;
        self.clock += rng.random_range(0..2_000);
        let pickup = self.clock;
        let minutes = rng.random_range(2..60);
        let dropoff = pickup + minutes * 60_000 + rng.random_range(0..60_000);
        let distance = f64::from(rng.random_range(10_u32..2_500)) / 100.0;
        let fare_cents = 250 + (distance * 250.0) as u32 + minutes as u32 * 35;
        let extra_cents = *[0_u32, 50, 100].get(rng.random_range(0..3)).unwrap_or(&0);
        let payment = rng.random_range(1..5);
        let tip_cents = if payment == 1 {
            fare_cents * rng.random_range(0..30) / 100
        } else {
            0
        };
        let tolls_cents = if rng.random_range(0..10) == 0 { 576 } else { 0 };
        let total = fare_cents + extra_cents + 50 + tip_cents + tolls_cents + 30;
        let cents = |c: u32| format!("{}.{:02}", c / 100, c % 100);
        Some(format!(
            "{},{},{},{},{distance:.2},{},{},{},{},{payment},{},{},0.50,{},{},0.30,{}",
            rng.random_range(1..3),
            datetime(pickup),
            datetime(dropoff),
            rng.random_range(1..7),
            if rng.random_range(0..20) == 0 { 2 } else { 1 },
            if rng.random_range(0..50) == 0 {
                "Y"
            } else {
                "N"
            },
            rng.random_range(1..266),
            rng.random_range(1..266),
            cents(fare_cents),
            cents(extra_cents),
            cents(tip_cents),
            cents(tolls_cents),
            cents(total),
        ))
    }
}

/// log4j-style application lines (seed 003).
#[derive(Debug)]
pub struct AppLog {
    rng: ChaCha8Rng,
    clock: i64,
}

impl AppLog {
    /// Lines from `seed`, the clock starting at `start` (ms since the epoch).
    pub fn new(seed: u64, start: i64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: start,
        }
    }
}

impl Iterator for AppLog {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        let rng = &mut self.rng;
        self.clock += rng.random_range(0..500);
        let (y, mo, d, h, mi, s) = civil(self.clock);
        let millis = self.clock.rem_euclid(1000);
        let level = pick(
            rng,
            &[("INFO", 70), ("DEBUG", 15), ("WARN", 10), ("ERROR", 5)],
        );
        let (logger, message) = match level {
            "ERROR" => (
                "com.example.orders.PaymentService",
                format!(
                    "payment {} failed: gateway timeout after {} ms",
                    rng.random_range(10_000..99_999),
                    rng.random_range(1_000..30_000)
                ),
            ),
            "WARN" => (
                "com.example.orders.InventoryClient",
                format!(
                    "slow response from inventory: {} ms",
                    rng.random_range(500..5_000)
                ),
            ),
            "DEBUG" => (
                "com.example.http.RequestLogger",
                format!("GET /api/orders/{} 200", rng.random_range(1..100_000)),
            ),
            _ => (
                "com.example.orders.OrderService",
                format!(
                    "order {} placed by user-{:06}",
                    rng.random_range(100_000..999_999),
                    rng.random_range(1..50_000)
                ),
            ),
        };
        Some(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02},{millis:03} {level:<5} [worker-{}] {logger} - {message}",
            rng.random_range(1..9)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_704_067_200_000), (2024, 1, 1, 0, 0, 0));
        assert_eq!(civil(1_709_164_800_000 + 3_723_000), (2024, 2, 29, 1, 2, 3));
    }

    #[test]
    fn apache_lines_have_the_statuses_in_proportion() {
        let lines: Vec<String> = ApacheLog::new(1, 1_704_067_200_000).take(20_000).collect();
        assert_eq!(
            lines,
            ApacheLog::new(1, 1_704_067_200_000)
                .take(20_000)
                .collect::<Vec<_>>(),
            "deterministic"
        );
        let share = |status: &str| {
            lines
                .iter()
                .filter(|l| l.contains(&format!("\" {status} ")))
                .count() as f64
                / 20_000.0
        };
        assert!((share("200") - 0.90).abs() < 0.01, "{}", share("200"));
        assert!((share("404") - 0.04).abs() < 0.005);
        assert!((share("500") - 0.02).abs() < 0.005);
        assert!((share("301") - 0.04).abs() < 0.005);
        assert!(
            lines[0].contains(" - - [01/Jan/2024:00:00:"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn taxi_rows_have_17_columns() {
        for row in TaxiCsv::new(7, 1_704_067_200_000).take(1_000) {
            assert_eq!(row.split(',').count(), TAXI_COLUMNS.len(), "{row}");
        }
        let first = TaxiCsv::new(7, 1_704_067_200_000)
            .next()
            .unwrap_or_default();
        assert!(first.contains(",2024-01-01 00:"), "{first}");
    }

    #[test]
    fn app_lines_have_levels() {
        let lines: Vec<String> = AppLog::new(3, 1_704_067_200_000).take(1_000).collect();
        for level in ["INFO ", "WARN ", "ERROR", "DEBUG"] {
            assert!(lines.iter().any(|l| l.contains(level)), "{level}");
        }
    }
}
