//! Metric names (Prometheus at `/metrics`), each labelled with the application.

/// The label: the application's name.
pub const APP: &str = "app";
/// Records taken by the first stage.
pub const RECORDS: &str = "AnalyticsRecords";
/// Partials stored.
pub const PARTIALS: &str = "AnalyticsPartials";
/// Records later than their window allows (in the late output).
pub const LATE_RECORDS: &str = "AnalyticsLateRecords";
/// Records that do not parse (in the bad-record output).
pub const BAD_RECORDS: &str = "AnalyticsBadRecords";
/// Window results written.
pub const WINDOWS: &str = "AnalyticsWindows";
/// Partials stored after their window's result was written.
pub const LATE_PARTIALS: &str = "AnalyticsLatePartials";
/// Alerts sent.
pub const ALERTS: &str = "AnalyticsAlerts";
/// Alerts claimed and never confirmed sent (a crash between the claim and the send).
pub const ALERTS_UNCONFIRMED: &str = "AnalyticsAlertsUnconfirmed";
