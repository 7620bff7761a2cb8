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
//! - Unknown fields are ignored on input (producers may add fields), but they are not
//!   kept: a sink that must archive a record as it came should keep the raw bytes.
//! - `orderid` is required, non-empty and at most [`ORDER_ID_MAX_LEN`] characters
//!   (the width of the `orderid` column); [`Order::parse`], [`JobResult::parse`] and
//!   [`OrderId::from_json`] say which of these a record breaks ([`ModelError`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most characters an `orderid` may have: the width of the `orderid` column
/// (`VARCHAR(73)`), which holds two hyphenated UUIDs joined by `-` (36 + 1 + 36).
pub const ORDER_ID_MAX_LEN: usize = 73;

/// The most characters the other id and status columns of `jobresults` hold
/// (`VARCHAR(255)`).
pub const JOB_RESULT_FIELD_MAX_LEN: usize = 255;

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
    /// A timestamp is not RFC 3339, or outside the years 0000 to 9999.
    #[error("timestamp `{value}` is not an RFC 3339 date-time in the years 0000-9999: {reason}")]
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
    /// every other field: what a sink that passes the payload through needs.
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

/// A point in time in UTC with millisecond precision, between the years 0000 and 9999.
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
    /// [`ModelError::InvalidTimestamp`] if it falls outside the years 0000-9999.
    pub fn from_unix_millis(millis: i64) -> Result<Self, ModelError> {
        let invalid = |reason: &str| ModelError::InvalidTimestamp {
            value: format!("{millis} ms since the Unix epoch"),
            reason: reason.to_owned(),
        };
        let datetime = DateTime::from_timestamp_millis(millis)
            .ok_or_else(|| invalid("out of the representable range"))?;
        Self::checked(datetime).ok_or_else(|| invalid("outside the years 0000-9999"))
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
        let datetime = DateTime::parse_from_rfc3339(text)
            .map_err(|e| invalid(e.to_string()))?
            .with_timezone(&Utc);
        let truncated = DateTime::from_timestamp_millis(datetime.timestamp_millis())
            .ok_or_else(|| invalid("out of the representable range".to_owned()))?;
        Self::checked(truncated).ok_or_else(|| invalid("outside the years 0000-9999".to_owned()))
    }

    fn checked(datetime: DateTime<Utc>) -> Option<Self> {
        (0..=9999)
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
        Ok(Order {
            orderid: OrderId::new(orderid)?,
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
        let raw: RawOrder = serde_json::from_slice(bytes)
            .map_err(|source| json_error(RecordKind::Order, source))?;
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
        let raw: RawJobResult = serde_json::from_slice(bytes)
            .map_err(|source| json_error(RecordKind::JobResult, source))?;
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
        for input in [&b"not json"[..], b"", b"{\"orderid\":", b"\xff\xfe"] {
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
        assert!(matches!(err, ModelError::Malformed { .. }), "{err:?}");
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
        // A leap second becomes the first millisecond of the next minute.
        let leap = Timestamp::parse("2016-12-31T23:59:60.5Z").expect("valid");
        assert_eq!(leap.to_string(), "2017-01-01T00:00:00.500Z");
        let early = Timestamp::parse("0001-02-03T04:05:06.007Z").expect("valid");
        assert_eq!(early.to_string(), "0001-02-03T04:05:06.007Z");
        assert_eq!(early.to_mysql_datetime(), "0001-02-03 04:05:06");
    }

    #[test]
    fn invalid_timestamps_are_rejected() {
        for text in [
            "",
            "2024-01-02",
            "2024-01-02 03:04:05",
            "2024-13-01T00:00:00Z",
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
}
