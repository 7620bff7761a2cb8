//! The records that flow through chief: [`Order`]s on the orders stream and
//! [`JobResult`]s on the job-results stream, one JSON object per Kinesis user record.
//!
//! The JSON field names follow the Aurora tables (`orders`, `jobresults`):
//!
//! ```json
//! {"orderid":"<uuid>-<uuid>","user":{"userid":"user-000042","name":"Ada Lovelace"},
//!  "factoryid":"factory-03",
//!  "items":[{"sku":"SKU-1004","product":"Servo motor","quantity":2,"unit_price_cents":4999}],
//!  "timestamp":"2024-01-01T00:00:00.123Z"}
//!
//! {"orderid":"<uuid>-<uuid>","userid":"user-000042","factoryid":"factory-03",
//!  "robotid":"robot-017","jobstatus":"completed","timestamp":"2024-01-01T00:00:05.000Z"}
//! ```
//!
//! - Prices are integer cents (`unit_price_cents`), so they survive JSON exactly.
//! - Timestamps are RFC 3339 in UTC with millisecond precision ([`Timestamp`]); any
//!   RFC 3339 offset is accepted on input and converted to UTC.
//! - Unknown fields are allowed (producers may add fields) and are not kept in the
//!   parsed value: a sink that must archive a record as it came keeps the raw bytes.
//!
//! # The record contract
//!
//! [`Order::parse`] and [`JobResult::parse`] are the one rule every part of chief applies
//! (the producer's input check, every executor, the loader's expectations, the
//! Elasticsearch stand-in's tests). A record is valid when:
//! 1. its bytes are valid UTF-8 throughout, unknown fields included ([`ModelError::InvalidUtf8`]);
//! 2. they are one JSON document ([`ModelError::NotJson`]) that is an object
//!    ([`ModelError::NotAnObject`]), with no field name twice in any object
//!    ([`ModelError::DuplicateField`]) and no field name that Elasticsearch refuses
//!    (empty, a `.` at either end or `..`, a metadata field such as `_id` at the top;
//!    [`ModelError::InvalidFieldName`]), and every number representable;
//! 3. it has the record's fields with their types ([`ModelError::Malformed`]):
//!    `orderid` a string of 1 to [`ORDER_ID_MAX_LEN`] characters, any characters,
//!    compared byte for byte everywhere (executors, Elasticsearch `_id`, the database's
//!    `VARBINARY` key); ids and statuses that are `keyword`s in Elasticsearch and
//!    `VARCHAR(255)` columns at most [`KEYWORD_MAX_LEN`] characters; `quantity` in
//!    `0..=`[`QUANTITY_MAX`] (an Elasticsearch `integer`), `unit_price_cents` in
//!    `0..=`[`PRICE_MAX_CENTS`] (a `long`) ([`ModelError::OutOfRange`]); timestamps
//!    RFC 3339 with an upper-case `T`, seconds below 60, in the years 1000-9999 (what
//!    both a `DATETIME` column and an Elasticsearch `date` take).
//!
//! Everything else is refused with the reason: the producer writes it to its failed
//! file, each executor dead-letters it once, and it reaches no sink.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod document;
use document::check_document;

/// The most characters an `orderid` may have: two hyphenated UUIDs joined by `-`
/// (36 + 1 + 36), the seed's `VARCHAR(73)`. The column is `VARBINARY(292)` (73 characters
/// of up to 4 bytes), so that the database compares ids byte for byte as chief does.
pub const ORDER_ID_MAX_LEN: usize = 73;

/// The most characters the other id and status columns of `jobresults` hold
/// (`VARCHAR(255)`); the same bound applies to every `keyword` field of an order.
pub const JOB_RESULT_FIELD_MAX_LEN: usize = 255;

/// The most characters of a field that Elasticsearch indexes as a `keyword` (ids, SKUs):
/// [`JOB_RESULT_FIELD_MAX_LEN`], well under Lucene's 32,766-byte term limit.
pub const KEYWORD_MAX_LEN: usize = JOB_RESULT_FIELD_MAX_LEN;

/// The largest `quantity`: `quantity` is an `integer` (32-bit signed) in Elasticsearch.
pub const QUANTITY_MAX: u32 = i32::MAX as u32;

/// The largest `unit_price_cents`: a `long` (64-bit signed) in Elasticsearch.
pub const PRICE_MAX_CENTS: u64 = i64::MAX as u64;

/// The earliest year of a timestamp: `DATETIME` (MySQL, Aurora) starts at 1000.
pub const YEAR_MIN: i32 = 1000;

/// Which kind of record an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// An [`Order`].
    Order,
    /// A [`JobResult`].
    JobResult,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::Order => "order",
            RecordKind::JobResult => "job result",
        })
    }
}

/// Why a record could not be parsed or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The bytes are not valid UTF-8 (in any field, known or not).
    #[error("{kind} record is not valid UTF-8: invalid byte at offset {offset}")]
    InvalidUtf8 {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// The offset of the first byte that is not UTF-8.
        offset: usize,
    },
    /// The bytes are a JSON document, but not an object (an array, a string…).
    #[error("{kind} record is JSON but not an object (it is {found})")]
    NotAnObject {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// What it is instead: `an array`, `a string`, `a number`, `a boolean`, `null`.
        found: &'static str,
    },
    /// An object of the record holds the same field name twice.
    #[error("{kind} record has the field `{path}` twice")]
    DuplicateField {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// The field, dotted from the top (`user.name`).
        path: String,
    },
    /// A field name that Elasticsearch refuses.
    #[error("{kind} record has a field name Elasticsearch refuses: `{path}` ({reason})")]
    InvalidFieldName {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// The field, dotted from the top.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A number outside the range its sinks hold.
    #[error("`{field}` is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The JSON field name.
        field: &'static str,
        /// The value.
        value: u64,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// The bytes are not a JSON document (syntax error or truncated input).
    #[error("{kind} record is not valid JSON: {source}")]
    NotJson {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The bytes are JSON, but not of the record's shape: a required field other than
    /// `orderid` is missing, a field has the wrong type, or a timestamp is not RFC 3339.
    #[error("{kind} record does not have the expected fields: {source}")]
    Malformed {
        /// The kind of record that was being parsed.
        kind: RecordKind,
        /// What the JSON parser said (names the field).
        #[source]
        source: serde_json::Error,
    },
    /// The record has no `orderid` field, or it is `null`.
    #[error("{kind} record has no `orderid`")]
    MissingOrderId {
        /// The kind of record that was being parsed.
        kind: RecordKind,
    },
    /// The `orderid` is the empty string.
    #[error("`orderid` is empty")]
    EmptyOrderId,
    /// The `orderid` is longer than the `orderid` column holds.
    #[error("`orderid` is {len} characters long, longer than the {max} the `orderid` column holds")]
    OrderIdTooLong {
        /// Its length in characters.
        len: usize,
        /// [`ORDER_ID_MAX_LEN`].
        max: usize,
    },
    /// A string field is longer than its database column holds.
    #[error("`{field}` is {len} characters long, longer than the {max} its column holds")]
    FieldTooLong {
        /// The JSON field name.
        field: &'static str,
        /// Its length in characters.
        len: usize,
        /// The column width.
        max: usize,
    },
    /// A timestamp is not RFC 3339 as Elasticsearch reads it, or outside the years 1000 to 9999.
    #[error("timestamp `{value}` is not an RFC 3339 date-time in the years 1000-9999: {reason}")]
    InvalidTimestamp {
        /// The offending text (or number of milliseconds).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn json_error(kind: RecordKind, source: serde_json::Error) -> ModelError {
    match source.classify() {
        serde_json::error::Category::Data => ModelError::Malformed { kind, source },
        _ => ModelError::NotJson { kind, source },
    }
}

fn check_range(field: &'static str, value: u64, max: u64) -> Result<(), ModelError> {
    if value > max {
        return Err(ModelError::OutOfRange {
            field,
            value,
            min: 0,
            max,
        });
    }
    Ok(())
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), ModelError> {
    // Cheap path first: a string of at most `max` bytes has at most `max` characters.
    if value.len() <= max {
        return Ok(());
    }
    let len = value.chars().count();
    if len > max {
        return Err(ModelError::FieldTooLong { field, len, max });
    }
    Ok(())
}

/// The key every record is de-duplicated and stored by: non-empty and at most
/// [`ORDER_ID_MAX_LEN`] characters. chief's generator makes two v4 UUIDs joined by `-`,
/// but any string within those bounds is accepted.
///
/// Serialises as a plain JSON string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(#[serde(deserialize_with = "deserialize_order_id")] String);

fn deserialize_order_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let value = String::deserialize(deserializer)?;
    OrderId::new(value)
        .map(OrderId::into_string)
        .map_err(serde::de::Error::custom)
}

impl OrderId {
    /// Checks `value` and wraps it.
    ///
    /// # Errors
    /// [`ModelError::EmptyOrderId`] or [`ModelError::OrderIdTooLong`].
    pub fn new(value: impl Into<String>) -> Result<Self, ModelError> {
        let value = value.into();
        if value.is_empty() {
            return Err(ModelError::EmptyOrderId);
        }
        if value.len() > ORDER_ID_MAX_LEN {
            let len = value.chars().count();
            if len > ORDER_ID_MAX_LEN {
                return Err(ModelError::OrderIdTooLong {
                    len,
                    max: ORDER_ID_MAX_LEN,
                });
            }
        }
        Ok(OrderId(value))
    }

    /// Reads only the `orderid` of a JSON record (an order or a job result), ignoring
    /// every other field. **Not the record contract**: it does not check UTF-8 outside
    /// the id, the record's shape or its ranges, so it is never the gate in front of a
    /// sink — use [`Order::parse`] / [`JobResult::parse`]. For tools and tests that only
    /// need to know an id.
    ///
    /// # Errors
    /// [`ModelError::NotJson`], [`ModelError::Malformed`] (not an object, or `orderid`
    /// not a string), [`ModelError::MissingOrderId`] (reported as
    /// [`RecordKind::Order`]), [`ModelError::EmptyOrderId`],
    /// [`ModelError::OrderIdTooLong`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        #[derive(Deserialize)]
        struct OnlyOrderId {
            orderid: Option<String>,
        }
        let kind = RecordKind::Order;
        // A derived struct also reads a JSON array (`["x"]`): only an object is a record.
        if let Some(found) = bytes.iter().find(|b| !b.is_ascii_whitespace())
            && *found == b'['
        {
            let found = "an array";
            return Err(ModelError::NotAnObject { kind, found });
        }
        let only: OnlyOrderId =
            serde_json::from_slice(bytes).map_err(|source| json_error(kind, source))?;
        OrderId::new(only.orderid.ok_or(ModelError::MissingOrderId { kind })?)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OrderId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for OrderId {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderId::new(s)
    }
}

impl TryFrom<String> for OrderId {
    type Error = ModelError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        OrderId::new(value)
    }
}

/// A point in time in UTC with millisecond precision, between the years 1000 and 9999 (what a `DATETIME` holds).
///
/// Serialises as RFC 3339 with exactly three fractional digits and a `Z`
/// (`2024-01-01T00:00:00.123Z`); parses any RFC 3339 date-time (any offset, any number
/// of fractional digits), converts it to UTC and truncates it to milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// The timestamp `millis` milliseconds after the Unix epoch.
    ///
    /// # Errors
    /// [`ModelError::InvalidTimestamp`] if it falls outside the years 1000-9999.
    pub fn from_unix_millis(millis: i64) -> Result<Self, ModelError> {
        let invalid = |reason: &str| ModelError::InvalidTimestamp {
            value: format!("{millis} ms since the Unix epoch"),
            reason: reason.to_owned(),
        };
        let datetime = DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| invalid("out of the representable range"))?;
        Self::checked(datetime).ok_or_else(|| invalid("outside the years 1000-9999"))
    }

    /// Parses an RFC 3339 date-time, e.g. `2024-01-01T09:00:00.5+09:00`.
    ///
    /// # Errors
    /// [`ModelError::InvalidTimestamp`] saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let invalid = |reason: String| ModelError::InvalidTimestamp {
            value: text.to_owned(),
            reason,
        };
        // chrono also takes a lower-case `t`, a space and a leap second (`:60`), which
        // an Elasticsearch `date` (strict_date_optional_time) refuses.
        let bytes = text.as_bytes();
        if bytes.get(10).is_some_and(|b| *b != b'T') {
            return Err(invalid(
                "the date and the time must be separated by `T`".to_owned(),
            ));
        }
        if text.ends_with('z') {
            return Err(invalid("UTC must be written `Z`".to_owned()));
        }
        if bytes.get(17..19) == Some(b"60") {
            return Err(invalid(
                "second 60 (a leap second) is not accepted".to_owned(),
            ));
        }
        let datetime = DateTime::parse_from_rfc3339(text)
            .map_err(|e| invalid(e.to_string()))?
            .with_timezone(&Utc);
        let truncated = DateTime::from_timestamp_millis(datetime.timestamp_millis())
            .ok_or_else(|| invalid("out of the representable range".to_owned()))?;
        Self::checked(truncated).ok_or_else(|| invalid("outside the years 1000-9999".to_owned()))
    }

    fn checked(datetime: DateTime<Utc>) -> Option<Self> {
        (YEAR_MIN..=9999)
            .contains(&datetime.year())
            .then_some(Timestamp(datetime))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The same instant as a chrono `DateTime<Utc>`.
    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// The timestamp in MySQL `DATETIME` shape, `YYYY-MM-DD HH:MM:SS` (UTC, the
    /// milliseconds dropped), as `LOAD DATA` into the `timestamp` column wants it.
    /// (MySQL itself only accepts the years 1000-9999 in a `DATETIME`.)
    pub fn to_mysql_datetime(&self) -> String {
        let d = &self.0;
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, milliseconds: `2024-01-01T00:00:00.123Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // By hand rather than with a strftime string: this runs for every record
        // serialised, and the year is known to have four digits. Stored timestamps
        // are whole milliseconds and never leap seconds, so the fraction is 0..=999.
        let d = &self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.timestamp_subsec_millis()
        )
    }
}

impl FromStr for Timestamp {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timestamp::parse(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimestampVisitor;

        impl serde::de::Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time string")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TimestampVisitor)
    }
}

/// The customer who placed an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    /// The customer's id, e.g. `user-000042`; the same id a [`JobResult`] carries.
    pub userid: String,
    /// The customer's display name.
    pub name: String,
}

/// One line of an [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderItem {
    /// Stock-keeping unit, e.g. `SKU-1004`.
    pub sku: String,
    /// Product name, e.g. `Servo motor`.
    pub product: String,
    /// How many units.
    pub quantity: u32,
    /// Price of one unit in cents (an integer, so that it survives JSON exactly).
    pub unit_price_cents: u64,
}

impl OrderItem {
    /// `quantity * unit_price_cents`, or `None` on overflow.
    pub fn total_cents(&self) -> Option<u64> {
        self.unit_price_cents.checked_mul(u64::from(self.quantity))
    }
}

/// An order placed with a factory: the record on the orders stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawOrder")]
pub struct Order {
    /// The de-duplication and primary key.
    pub orderid: OrderId,
    /// Who placed the order.
    pub user: User,
    /// The factory that makes it, e.g. `factory-03`.
    pub factoryid: String,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// When the order was placed.
    pub timestamp: Timestamp,
}

/// [`Order`] as it comes off the wire, before `orderid` is checked.
#[derive(Deserialize)]
struct RawOrder {
    orderid: Option<String>,
    user: User,
    factoryid: String,
    items: Vec<OrderItem>,
    timestamp: Timestamp,
}

impl TryFrom<RawOrder> for Order {
    type Error = ModelError;

    fn try_from(raw: RawOrder) -> Result<Self, Self::Error> {
        let orderid = raw.orderid.ok_or(ModelError::MissingOrderId {
            kind: RecordKind::Order,
        })?;
        let orderid = OrderId::new(orderid)?;
        check_len("user.userid", &raw.user.userid, KEYWORD_MAX_LEN)?;
        check_len("factoryid", &raw.factoryid, KEYWORD_MAX_LEN)?;
        for item in &raw.items {
            check_len("items.sku", &item.sku, KEYWORD_MAX_LEN)?;
            check_range("items.quantity", item.quantity.into(), QUANTITY_MAX.into())?;
            check_range(
                "items.unit_price_cents",
                item.unit_price_cents,
                PRICE_MAX_CENTS,
            )?;
        }
        Ok(Order {
            orderid,
            user: raw.user,
            factoryid: raw.factoryid,
            items: raw.items,
            timestamp: raw.timestamp,
        })
    }
}

impl Order {
    /// Parses one JSON order. Unknown fields are ignored.
    ///
    /// # Errors
    /// A [`ModelError`] saying what is wrong: not JSON, a missing or mistyped field,
    /// a missing, empty or too long `orderid`, a bad timestamp.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let kind = RecordKind::Order;
        let text = check_document(kind, bytes)?;
        let raw: RawOrder =
            serde_json::from_str(text).map_err(|source| json_error(kind, source))?;
        Order::try_from(raw)
    }

    /// The order's total in cents, or `None` on overflow.
    pub fn total_cents(&self) -> Option<u64> {
        self.items
            .iter()
            .try_fold(0u64, |sum, item| sum.checked_add(item.total_cents()?))
    }
}

/// How a robot's job for an order ended.
///
/// Serialises as a lowercase string: `"completed"`, `"failed"`, `"cancelled"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// The job finished and the order was made.
    Completed,
    /// The job ended in an error.
    Failed,
    /// The job was cancelled before it finished.
    Cancelled,
}

impl JobStatus {
    /// Every status, in declaration order.
    pub const ALL: [JobStatus; 3] = [
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The status as it appears in JSON and in the `jobstatus` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a robot's job for an order: the record on the job-results stream,
/// one row of the `jobresults` table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawJobResult")]
pub struct JobResult {
    /// The order the job was for; the de-duplication and primary key.
    pub orderid: OrderId,
    /// The customer who placed the order.
    pub userid: String,
    /// The factory the robot stands in, e.g. `factory-03`.
    pub factoryid: String,
    /// The robot that did the job, e.g. `robot-017`.
    pub robotid: String,
    /// How the job ended.
    pub jobstatus: JobStatus,
    /// When the job ended.
    pub timestamp: Timestamp,
}

/// [`JobResult`] as it comes off the wire, before `orderid` and lengths are checked.
#[derive(Deserialize)]
struct RawJobResult {
    orderid: Option<String>,
    userid: String,
    factoryid: String,
    robotid: String,
    jobstatus: JobStatus,
    timestamp: Timestamp,
}

impl TryFrom<RawJobResult> for JobResult {
    type Error = ModelError;

    fn try_from(raw: RawJobResult) -> Result<Self, Self::Error> {
        let orderid = raw.orderid.ok_or(ModelError::MissingOrderId {
            kind: RecordKind::JobResult,
        })?;
        let orderid = OrderId::new(orderid)?;
        check_len("userid", &raw.userid, JOB_RESULT_FIELD_MAX_LEN)?;
        check_len("factoryid", &raw.factoryid, JOB_RESULT_FIELD_MAX_LEN)?;
        check_len("robotid", &raw.robotid, JOB_RESULT_FIELD_MAX_LEN)?;
        Ok(JobResult {
            orderid,
            userid: raw.userid,
            factoryid: raw.factoryid,
            robotid: raw.robotid,
            jobstatus: raw.jobstatus,
            timestamp: raw.timestamp,
        })
    }
}

impl JobResult {
    /// Parses one JSON job result. Unknown fields are ignored.
    ///
    /// # Errors
    /// A [`ModelError`] saying what is wrong: not JSON, a missing or mistyped field
    /// (an unknown `jobstatus` included), a missing, empty or too long `orderid`,
    /// an id longer than [`JOB_RESULT_FIELD_MAX_LEN`], a bad timestamp.
    pub fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let kind = RecordKind::JobResult;
        let text = check_document(kind, bytes)?;
        let raw: RawJobResult =
            serde_json::from_str(text).map_err(|source| json_error(kind, source))?;
        JobResult::try_from(raw)
    }

    /// The job's timestamp in MySQL `DATETIME` shape, `YYYY-MM-DD HH:MM:SS` (UTC), for
    /// the `timestamp` column of `jobresults`.
    pub fn mysql_timestamp(&self) -> String {
        self.timestamp.to_mysql_datetime()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0b8f8e4e-4c1e-4d51-9a5c-0a8d2f1e6b7c-7f3d2a10-9b1c-4e2f-8a6d-5c4b3a291807";

    fn order() -> Order {
        Order {
            orderid: OrderId::new(ID).expect("valid id"),
            user: User {
                userid: "user-000042".into(),
                name: "Ada Lovelace".into(),
            },
            factoryid: "factory-03".into(),
            items: vec![
                OrderItem {
                    sku: "SKU-1004".into(),
                    product: "Servo motor".into(),
                    quantity: 2,
                    unit_price_cents: 4999,
                },
                OrderItem {
                    sku: "SKU-1011".into(),
                    product: "Gripper \"XL\"".into(),
                    quantity: 1,
                    unit_price_cents: 125_000,
                },
            ],
            timestamp: Timestamp::parse("2024-01-02T03:04:05.678Z").expect("valid timestamp"),
        }
    }

    fn job_result() -> JobResult {
        JobResult {
            orderid: OrderId::new(ID).expect("valid id"),
            userid: "user-000042".into(),
            factoryid: "factory-03".into(),
            robotid: "robot-017".into(),
            jobstatus: JobStatus::Completed,
            timestamp: Timestamp::parse("2024-01-02T03:04:05.006Z").expect("valid timestamp"),
        }
    }

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).expect("serialises")
    }

    #[test]
    fn order_id_of_two_uuids_is_exactly_the_column_width() {
        assert_eq!(ID.len(), ORDER_ID_MAX_LEN);
        assert_eq!(OrderId::new(ID).expect("valid").as_str(), ID);
    }

    #[test]
    fn order_json_has_exact_field_names() {
        assert_eq!(
            json(&order()),
            format!(
                r#"{{"orderid":"{ID}","user":{{"userid":"user-000042","name":"Ada Lovelace"}},"factoryid":"factory-03","items":[{{"sku":"SKU-1004","product":"Servo motor","quantity":2,"unit_price_cents":4999}},{{"sku":"SKU-1011","product":"Gripper \"XL\"","quantity":1,"unit_price_cents":125000}}],"timestamp":"2024-01-02T03:04:05.678Z"}}"#
            )
        );
    }

    #[test]
    fn job_result_json_has_exact_field_names() {
        assert_eq!(
            json(&job_result()),
            format!(
                r#"{{"orderid":"{ID}","userid":"user-000042","factoryid":"factory-03","robotid":"robot-017","jobstatus":"completed","timestamp":"2024-01-02T03:04:05.006Z"}}"#
            )
        );
    }

    #[test]
    fn order_round_trips_byte_for_byte() {
        let text = json(&order());
        let parsed = Order::parse(text.as_bytes()).expect("parses");
        assert_eq!(parsed, order());
        assert_eq!(json(&parsed), text);
        // Plain serde goes through the same validation.
        let via_serde: Order = serde_json::from_str(&text).expect("parses");
        assert_eq!(via_serde, order());
    }

    #[test]
    fn job_result_round_trips_byte_for_byte() {
        let text = json(&job_result());
        let parsed = JobResult::parse(text.as_bytes()).expect("parses");
        assert_eq!(parsed, job_result());
        assert_eq!(json(&parsed), text);
        let via_serde: JobResult = serde_json::from_str(&text).expect("parses");
        assert_eq!(via_serde, job_result());
    }

    #[test]
    fn job_status_serialises_lowercase() {
        for status in JobStatus::ALL {
            assert_eq!(json(&status), format!("\"{}\"", status.as_str()));
            assert_eq!(status.to_string(), status.as_str());
        }
        assert_eq!(json(&JobStatus::Cancelled), r#""cancelled""#);
        assert!(serde_json::from_str::<JobStatus>(r#""Completed""#).is_err());
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let mut value = serde_json::to_value(job_result()).expect("to value");
        value["shift"] = serde_json::json!({"night": true});
        let text = value.to_string();
        assert_eq!(
            JobResult::parse(text.as_bytes()).expect("parses"),
            job_result()
        );

        let mut value = serde_json::to_value(order()).expect("to value");
        value["channel"] = "web".into();
        value["items"][0]["colour"] = "red".into();
        let text = value.to_string();
        assert_eq!(Order::parse(text.as_bytes()).expect("parses"), order());
    }

    #[test]
    fn not_json_is_reported_as_such() {
        for input in [&b"not json"[..], b"", b"{\"orderid\":", b"{} {}"] {
            let err = Order::parse(input).expect_err("must fail");
            assert!(
                matches!(
                    err,
                    ModelError::NotJson {
                        kind: RecordKind::Order,
                        ..
                    }
                ),
                "{input:?}: {err:?}"
            );
            let err = JobResult::parse(input).expect_err("must fail");
            assert!(
                matches!(
                    err,
                    ModelError::NotJson {
                        kind: RecordKind::JobResult,
                        ..
                    }
                ),
                "{input:?}: {err:?}"
            );
        }
    }

    fn without(value: impl Serialize, field: &str) -> Vec<u8> {
        let mut value = serde_json::to_value(value).expect("to value");
        value
            .as_object_mut()
            .expect("an object")
            .remove(field)
            .expect("field present");
        value.to_string().into_bytes()
    }

    fn with(value: impl Serialize, field: &str, new: serde_json::Value) -> Vec<u8> {
        let mut value = serde_json::to_value(value).expect("to value");
        value[field] = new;
        value.to_string().into_bytes()
    }

    #[test]
    fn missing_or_null_orderid_is_reported() {
        let err = Order::parse(&without(order(), "orderid")).expect_err("must fail");
        assert!(matches!(
            err,
            ModelError::MissingOrderId {
                kind: RecordKind::Order
            }
        ));
        assert_eq!(err.to_string(), "order record has no `orderid`");
        let err = JobResult::parse(&with(job_result(), "orderid", serde_json::Value::Null))
            .expect_err("must fail");
        assert!(matches!(
            err,
            ModelError::MissingOrderId {
                kind: RecordKind::JobResult
            }
        ));
        // Plain serde reports it too, as a message.
        let err =
            serde_json::from_slice::<Order>(&without(order(), "orderid")).expect_err("must fail");
        assert!(err.to_string().contains("no `orderid`"), "{err}");
    }

    #[test]
    fn empty_orderid_is_reported() {
        let err = Order::parse(&with(order(), "orderid", "".into())).expect_err("must fail");
        assert!(matches!(err, ModelError::EmptyOrderId), "{err:?}");
        let err =
            JobResult::parse(&with(job_result(), "orderid", "".into())).expect_err("must fail");
        assert!(matches!(err, ModelError::EmptyOrderId), "{err:?}");
    }

    #[test]
    fn too_long_orderid_is_reported() {
        let long = format!("{ID}x");
        let err = Order::parse(&with(order(), "orderid", long.clone().into())).expect_err("fail");
        assert!(
            matches!(err, ModelError::OrderIdTooLong { len: 74, max: 73 }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "`orderid` is 74 characters long, longer than the 73 the `orderid` column holds"
        );
        let err = JobResult::parse(&with(job_result(), "orderid", long.into())).expect_err("fail");
        assert!(matches!(err, ModelError::OrderIdTooLong { .. }), "{err:?}");
        // Characters, not bytes: 73 two-byte characters fit.
        let wide = "é".repeat(ORDER_ID_MAX_LEN);
        assert!(OrderId::new(wide.as_str()).is_ok());
        assert!(matches!(
            OrderId::new(format!("{wide}é")),
            Err(ModelError::OrderIdTooLong { len: 74, .. })
        ));
    }

    #[test]
    fn orderid_of_wrong_type_is_malformed() {
        let err = Order::parse(&with(order(), "orderid", 42.into())).expect_err("must fail");
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn other_missing_or_mistyped_fields_are_malformed_and_named() {
        let err = Order::parse(&without(order(), "items")).expect_err("must fail");
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("items"), "{err}");

        let err = JobResult::parse(&with(job_result(), "jobstatus", "exploded".into()))
            .expect_err("must fail");
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("exploded"), "{err}");

        let err = JobResult::parse(&with(job_result(), "timestamp", "yesterday".into()))
            .expect_err("must fail");
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("yesterday"), "{err}");

        let err = Order::parse(b"[1,2,3]").expect_err("must fail");
        assert!(
            matches!(
                err,
                ModelError::NotAnObject {
                    found: "an array",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn job_result_ids_longer_than_their_column_are_reported() {
        let long = "r".repeat(JOB_RESULT_FIELD_MAX_LEN + 1);
        let err =
            JobResult::parse(&with(job_result(), "robotid", long.into())).expect_err("must fail");
        assert!(
            matches!(
                err,
                ModelError::FieldTooLong {
                    field: "robotid",
                    len: 256,
                    max: 255
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn order_id_from_json_reads_only_the_id() {
        let id = OrderId::from_json(json(&order()).as_bytes()).expect("has an id");
        assert_eq!(id.as_str(), ID);
        let id = OrderId::from_json(br#"{"orderid":"abc","anything":[1]}"#).expect("has an id");
        assert_eq!(id.to_string(), "abc");
        assert!(matches!(
            OrderId::from_json(br#"{"other":1}"#),
            Err(ModelError::MissingOrderId { .. })
        ));
        assert!(matches!(
            OrderId::from_json(b"nope"),
            Err(ModelError::NotJson { .. })
        ));
    }

    #[test]
    fn order_id_deserialises_with_validation() {
        let id: OrderId = serde_json::from_str("\"abc\"").expect("valid");
        assert_eq!(id.as_ref(), "abc");
        assert!(serde_json::from_str::<OrderId>("\"\"").is_err());
        assert_eq!(json(&id), "\"abc\"");
    }

    #[test]
    fn timestamps_normalise_to_utc_milliseconds() {
        let ts = Timestamp::parse("2024-01-02T12:04:05.678901+09:00").expect("valid");
        assert_eq!(ts.to_string(), "2024-01-02T03:04:05.678Z");
        assert_eq!(json(&ts), "\"2024-01-02T03:04:05.678Z\"");
        let whole = Timestamp::parse("2024-01-02T03:04:05Z").expect("valid");
        assert_eq!(whole.to_string(), "2024-01-02T03:04:05.000Z");
        assert_eq!(whole.unix_millis(), 1_704_164_645_000);
        assert_eq!(
            Timestamp::from_unix_millis(1_704_164_645_678).expect("in range"),
            ts
        );
        assert_eq!(ts.datetime().timestamp_millis(), 1_704_164_645_678);
        assert_eq!(
            "1970-01-01T00:00:00Z"
                .parse::<Timestamp>()
                .expect("valid")
                .unix_millis(),
            0
        );
        let early = Timestamp::parse("1000-02-03T04:05:06.007Z").expect("valid");
        assert_eq!(early.to_string(), "1000-02-03T04:05:06.007Z");
        assert_eq!(early.to_mysql_datetime(), "1000-02-03 04:05:06");
        let late = Timestamp::parse("9999-12-31T23:59:59.999Z").expect("valid");
        assert_eq!(late.to_mysql_datetime(), "9999-12-31 23:59:59");
    }

    #[test]
    fn invalid_timestamps_are_rejected() {
        for text in [
            "",
            "2024-01-02",
            "2024-01-02 03:04:05",
            "2024-13-01T00:00:00Z",
            // What chrono takes and an Elasticsearch `date` or a `DATETIME` does not.
            "2024-01-02t03:04:05Z",
            "2024-01-02T03:04:05z",
            "2016-12-31T23:59:60.5Z",
            "0999-12-31T23:59:59.999Z",
            "0001-02-03T04:05:06.007Z",
        ] {
            assert!(
                matches!(
                    Timestamp::parse(text),
                    Err(ModelError::InvalidTimestamp { .. })
                ),
                "{text}"
            );
        }
        assert!(Timestamp::from_unix_millis(i64::MAX).is_err());
        // Year 10000.
        assert!(Timestamp::from_unix_millis(253_402_300_800_000).is_err());
        assert!(Timestamp::from_unix_millis(253_402_300_799_999).is_ok());
    }

    #[test]
    fn mysql_datetime_shape() {
        let result = job_result();
        assert_eq!(result.mysql_timestamp(), "2024-01-02 03:04:05");
        let ts = Timestamp::parse("1999-12-31T23:59:59.999-01:00").expect("valid");
        assert_eq!(ts.to_mysql_datetime(), "2000-01-01 00:59:59");
    }

    #[test]
    fn totals() {
        assert_eq!(order().total_cents(), Some(2 * 4999 + 125_000));
        let mut huge = order();
        huge.items[0].unit_price_cents = u64::MAX;
        assert_eq!(huge.total_cents(), None);
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let err = Order::parse(b"{").expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("order record is not valid JSON"),
            "{err}"
        );
        let err = JobResult::parse(br#"{"orderid":"a"}"#).expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("job result record does not have the expected fields"),
            "{err}"
        );
    }

    fn order_text() -> String {
        json(&order())
    }

    #[test]
    fn invalid_utf8_anywhere_is_refused_with_its_offset() {
        // The issue's case: a valid id, invalid bytes in `user.name`.
        let text = order_text();
        let at = text.find("Ada").expect("name");
        let mut bytes = text.into_bytes();
        bytes[at] = 0xff;
        bytes[at + 1] = 0xfe;
        let err = Order::parse(&bytes).expect_err("must fail");
        assert!(
            matches!(err, ModelError::InvalidUtf8 { kind: RecordKind::Order, offset } if offset == at),
            "{err:?}"
        );
        // In a field the record does not know, too.
        let mut bytes = with(job_result(), "extra", "x".into());
        let at = bytes.len() - 3;
        bytes[at] = 0xc3;
        let err = JobResult::parse(&bytes).expect_err("must fail");
        assert!(matches!(err, ModelError::InvalidUtf8 { .. }), "{err:?}");
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn a_kpl_aggregate_is_never_a_record() {
        // The KPL magic F3 89 9A C2 is not UTF-8 (C2 where a continuation byte must
        // be), so a corrupt aggregate the consumer hands over as it is gets dead-lettered.
        let corrupt = [0xf3, 0x89, 0x9a, 0xc2, b'{', b'}'];
        for err in [
            Order::parse(&corrupt).expect_err("order"),
            JobResult::parse(&corrupt).expect_err("job result"),
        ] {
            assert!(
                matches!(err, ModelError::InvalidUtf8 { offset: 0, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn only_an_object_is_a_record() {
        for (input, found) in [
            (&br#"["x"]"#[..], "an array"),
            (br#""x""#, "a string"),
            (b"42", "a number"),
            (b"true", "a boolean"),
            (b"null", "null"),
        ] {
            for err in [
                Order::parse(input).expect_err("order"),
                JobResult::parse(input).expect_err("job result"),
            ] {
                assert!(
                    matches!(&err, ModelError::NotAnObject { found: f, .. } if *f == found),
                    "{input:?}: {err:?}"
                );
            }
        }
    }

    #[test]
    fn a_field_twice_is_refused_at_any_depth() {
        let text = order_text();
        let twice = text.replacen("{", r#"{"orderid":"other","#, 1);
        let err = Order::parse(twice.as_bytes()).expect_err("must fail");
        assert!(
            matches!(&err, ModelError::DuplicateField { path, .. } if path == "orderid"),
            "{err:?}"
        );
        let nested = text.replacen(r#""name""#, r#""x":{"a":1,"a":2},"name""#, 1);
        let err = Order::parse(nested.as_bytes()).expect_err("must fail");
        assert!(
            matches!(&err, ModelError::DuplicateField { path, .. } if path == "user.x.a"),
            "{err:?}"
        );
        // The same name in two objects is fine.
        let apart = text.replacen("{", r#"{"extra":{"sku":1},"#, 1);
        assert!(Order::parse(apart.as_bytes()).is_ok());
    }

    #[test]
    fn field_names_elasticsearch_refuses_are_refused() {
        for (name, path) in [
            ("", ""),
            (".a", ".a"),
            ("a.", "a."),
            ("a..b", "a..b"),
            ("_id", "_id"),
            ("_source", "_source"),
        ] {
            let bytes = with(job_result(), name, 1.into());
            let err = JobResult::parse(&bytes).expect_err("must fail");
            assert!(
                matches!(&err, ModelError::InvalidFieldName { path: p, .. } if p == path),
                "{name:?}: {err:?}"
            );
        }
        // A metadata name below the top is an ordinary field; a dotted name is a path.
        let bytes = with(
            job_result(),
            "meta",
            serde_json::json!({"_id": 1, "a.b": 2}),
        );
        assert!(JobResult::parse(&bytes).is_ok());
    }

    #[test]
    fn numbers_must_fit_the_mapping() {
        let mut at_max = order();
        at_max.items[0].quantity = QUANTITY_MAX;
        at_max.items[0].unit_price_cents = PRICE_MAX_CENTS;
        let text = json(&at_max);
        assert_eq!(
            Order::parse(text.as_bytes()).expect("at the bounds"),
            at_max
        );
        assert_eq!(QUANTITY_MAX, 2_147_483_647);
        assert_eq!(PRICE_MAX_CENTS, 9_223_372_036_854_775_807);

        let over = text.replace("2147483647", "2147483648");
        let err = Order::parse(over.as_bytes()).expect_err("must fail");
        assert!(
            matches!(
                err,
                ModelError::OutOfRange {
                    field: "items.quantity",
                    value: 2_147_483_648,
                    ..
                }
            ),
            "{err:?}"
        );
        let over = text.replace("9223372036854775807", "9223372036854775808");
        let err = Order::parse(over.as_bytes()).expect_err("must fail");
        assert!(
            matches!(
                err,
                ModelError::OutOfRange {
                    field: "items.unit_price_cents",
                    ..
                }
            ),
            "{err:?}"
        );
        for bad in ["-1", "1.5", "1e3", "\"2\""] {
            let text = text.replace("2147483647", bad);
            let err = Order::parse(text.as_bytes()).expect_err("must fail");
            assert!(
                matches!(err, ModelError::Malformed { .. }),
                "{bad}: {err:?}"
            );
        }
        // An unknown number JSON cannot carry as a double.
        let huge = order_text().replacen("{", r#"{"x":1e400,"#, 1);
        assert!(Order::parse(huge.as_bytes()).is_err());
    }

    #[test]
    fn keyword_fields_of_an_order_are_bounded() {
        let mut long = order();
        long.items[1].sku = "🦀".repeat(KEYWORD_MAX_LEN);
        long.user.userid = "ü".repeat(KEYWORD_MAX_LEN);
        long.factoryid = "f".repeat(KEYWORD_MAX_LEN);
        assert!(Order::parse(json(&long).as_bytes()).is_ok());
        long.items[1].sku.push('x');
        let err = Order::parse(json(&long).as_bytes()).expect_err("must fail");
        assert!(
            matches!(
                err,
                ModelError::FieldTooLong {
                    field: "items.sku",
                    len: 256,
                    max: 255
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn lone_surrogates_are_refused() {
        let text = order_text().replace("Ada", "\\ud800Ada");
        let err = Order::parse(text.as_bytes()).expect_err("must fail");
        assert!(matches!(err, ModelError::NotJson { .. }), "{err:?}");
    }

    #[test]
    fn hostile_but_valid_text_is_kept_exactly() {
        let mut hostile = order();
        hostile.orderid = OrderId::new(" x\t\\N\u{0}é🦀 ").expect("valid id");
        hostile.user.name = "\\N\t\n\r\u{0}\u{1f}e\u{301}👩‍👩‍👧 ".into();
        let text = json(&hostile);
        let parsed = Order::parse(text.as_bytes()).expect("valid");
        assert_eq!(parsed, hostile);
        assert_eq!(json(&parsed), text);
        // Ids that differ only by trailing spaces are different ids.
        assert_ne!(
            OrderId::new("x").expect("valid"),
            OrderId::new("x ").expect("valid")
        );
    }
}
