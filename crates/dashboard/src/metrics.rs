//! Metric names (label `source`: `orders` or `jobresults`).

/// The label of the stream a record came from.
pub const SOURCE: &str = "source";
/// Unique records counted.
pub const UNIQUE_RECORDS: &str = "DashboardUniqueRecords";
/// Records dropped as duplicates.
pub const DUPLICATES: &str = "DuplicatesDropped";
/// Records that did not parse.
pub const BAD_RECORDS: &str = "DashboardBadRecords";
/// Per shard (label `shard_id`): how far its last batch was behind.
pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
/// The number of the last event sent to browsers.
pub const LAST_EVENT_ID: &str = "DashboardLastEventId";
/// Browsers connected to `/events`.
pub const CLIENTS: &str = "DashboardClients";
/// Browsers told to reload because they fell behind the event queue.
pub const CLIENTS_LAGGED: &str = "DashboardClientsLagged";
