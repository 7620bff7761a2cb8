//! Alerts on a window's result (`when = "ERROR > 1"`): an email through SES with the
//! window's report attached as a zip, or an SNS message — **one per window and alert**,
//! even across restarts and fail-over: the alert's id (`<app>-<alert>-<window start>`)
//! is claimed with a conditional write before it is sent, so a second claim (another
//! worker, or a restart after the send) sends nothing. A send that fails releases the
//! claim and is tried again at the next round. A crash between the claim and the send
//! loses that alert (it is never sent twice): the claim stays, marked unsent, and is
//! counted (`AnalyticsAlertsUnconfirmed`) and logged when seen again.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::condition::Condition;
use crate::merge::WindowResult;

/// `[[alert]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Its name: part of its id.
    pub name: String,
    /// The condition on a window's result (`ERROR > 1`, `count >= 100`).
    pub when: String,
    /// An email through SES.
    pub email: Option<EmailConfig>,
    /// A message to an SNS topic.
    pub sns: Option<SnsConfig>,
}

/// `[alert.email]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// The sender (an SES verified identity).
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// `[alert.sns]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnsConfig {
    /// The topic.
    pub topic_arn: String,
}

impl AlertConfig {
    /// Checks it.
    ///
    /// # Errors
    /// A sentence naming the setting.
    pub fn validate(&self) -> Result<Condition, String> {
        if self.name.is_empty() {
            return Err("alert.name is empty".into());
        }
        let condition = Condition::parse(&self.when)
            .map_err(|e| format!("alert `{}`: when: {e}", self.name))?;
        match (&self.email, &self.sns) {
            (None, None) => Err(format!("alert `{}`: set email or sns", self.name)),
            (Some(e), _) if e.from.is_empty() || e.to.is_empty() => Err(format!(
                "alert `{}`: email needs `from` and `to`",
                self.name
            )),
            (_, Some(s)) if s.topic_arn.is_empty() => {
                Err(format!("alert `{}`: sns needs `topic_arn`", self.name))
            }
            _ => Ok(condition),
        }
    }
}

/// One alert to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertMessage {
    /// `<app>-<alert>-<window start ms>`.
    pub id: String,
    /// The subject line.
    pub subject: String,
    /// The text.
    pub text: String,
    /// The report file's name in the zip (`<id>.csv`).
    pub report_name: String,
    /// The report: the window's rows as CSV.
    pub report: Vec<u8>,
}

impl AlertMessage {
    /// The alert `alert` raises on `result` of `app`, whose condition's value is `value`.
    pub fn new(app: &App, alert: &AlertConfig, result: &WindowResult, value: f64) -> Self {
        let id = format!("{}-{}-{}", app.name, alert.name, result.window.start_ms);
        let window = format!(
            "[{}, {})",
            result.window.start_text(),
            result.window.end_text()
        );
        let mut report = String::new();
        let header: Vec<&str> = app
            .group_by
            .iter()
            .map(String::as_str)
            .chain(app.aggregates.iter().map(|a| a.name.as_str()))
            .collect();
        report.push_str("window_start,window_end,");
        report.push_str(&header.join(","));
        report.push('\n');
        for row in &result.rows {
            let mut cells = vec![result.window.start_text(), result.window.end_text()];
            cells.extend(row.group.iter().map(|g| csv_cell(g)));
            cells.extend(row.values.iter().map(|v| v.value().to_string()));
            report.push_str(&cells.join(","));
            report.push('\n');
        }
        Self {
            subject: format!("[chief] {}: {} in {window}", app.name, alert.when),
            text: format!(
                "{} — {} holds ({} = {value}) in the window {window}: {} records.\nThe window's report is attached ({id}.zip).\n",
                alert.name,
                alert.when,
                alert.validate().map(|c| c.subject).unwrap_or_default(),
                result.records
            ),
            report_name: format!("{id}.csv"),
            report: report.into_bytes(),
            id,
        }
    }

    /// The attachment: a zip holding the report.
    pub fn zip(&self) -> Vec<u8> {
        zip_stored(&self.report_name, &self.report)
    }

    /// The email as raw MIME: the text, and the report zip attached.
    pub fn mime(&self, from: &str, to: &[String]) -> Vec<u8> {
        use base64::Engine as _;
        let boundary = format!("chief-{}", self.id);
        let attachment = base64::engine::general_purpose::STANDARD.encode(self.zip());
        let mut out = String::new();
        out.push_str(&format!("From: {from}\r\nTo: {}\r\n", to.join(", ")));
        out.push_str(&format!(
            "Subject: {}\r\nMIME-Version: 1.0\r\n",
            self.subject
        ));
        out.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
        ));
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
            self.text
        ));
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/zip; name=\"{id}.zip\"\r\nContent-Disposition: attachment; filename=\"{id}.zip\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            id = self.id
        ));
        for chunk in attachment.as_bytes().chunks(76) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push_str("\r\n");
        }
        out.push_str(&format!("--{boundary}--\r\n"));
        out.into_bytes()
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A zip archive of one file, stored (no compression): the report is small, and any unzip
/// reads it.
pub fn zip_stored(name: &str, data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let crc = crc.sum();
    let size = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    // 1980-01-01 00:00, the format's epoch.
    let (time, date) = (0u16, 0x21u16);
    let mut out = Vec::with_capacity(data.len() + 2 * name.len() + 100);
    let local = |out: &mut Vec<u8>| {
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra
    };
    local(&mut out);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let central_at = u32::try_from(out.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    out.extend_from_slice(&20u16.to_le_bytes()); // version needed
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&date.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&name_len.to_le_bytes());
    out.extend_from_slice(&[0; 12]); // extra, comment, disk, internal and external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    out.extend_from_slice(name.as_bytes());
    let central_len = u32::try_from(out.len()).unwrap_or(u32::MAX) - central_at;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&central_at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment
    out
}

/// Why an alert was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sending alert {id}: {message}")]
pub struct AlertError {
    /// The alert.
    pub id: String,
    /// Why.
    pub message: String,
    /// No retry can help (the identity or topic does not exist, access denied).
    pub fatal: bool,
}

/// Where alerts go.
pub trait AlertSender: Send + Sync {
    /// Sends `message` as `alert` says.
    fn send(
        &self,
        alert: &AlertConfig,
        message: &AlertMessage,
    ) -> impl Future<Output = Result<(), AlertError>> + Send;
}

/// SES (raw MIME) and SNS.
#[derive(Debug, Clone)]
pub struct AwsAlertSender {
    ses: aws_sdk_sesv2::Client,
    sns: aws_sdk_sns::Client,
}

impl AwsAlertSender {
    /// The sender on these clients.
    pub fn new(ses: aws_sdk_sesv2::Client, sns: aws_sdk_sns::Client) -> Self {
        Self { ses, sns }
    }
}

fn sdk_error<E, R>(id: &str, err: &aws_sdk_sesv2::error::SdkError<E, R>) -> AlertError
where
    E: aws_sdk_sesv2::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_sesv2::error::ProvideErrorMetadata as _;
    AlertError {
        id: id.to_owned(),
        fatal: err.code().is_some_and(|c| {
            chief_stream::is_fatal_code(c)
                || matches!(
                    c,
                    "MessageRejected" | "NotFoundException" | "NotFound" | "InvalidParameter"
                )
        }),
        message: match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => chief_stream::error_line(err),
        },
    }
}

impl AlertSender for AwsAlertSender {
    async fn send(&self, alert: &AlertConfig, message: &AlertMessage) -> Result<(), AlertError> {
        if let Some(email) = &alert.email {
            let raw = aws_sdk_sesv2::types::RawMessage::builder()
                .data(aws_sdk_sesv2::primitives::Blob::new(
                    message.mime(&email.from, &email.to),
                ))
                .build()
                .map_err(|e| AlertError {
                    id: message.id.clone(),
                    message: e.to_string(),
                    fatal: true,
                })?;
            self.ses
                .send_email()
                .from_email_address(&email.from)
                .destination(
                    aws_sdk_sesv2::types::Destination::builder()
                        .set_to_addresses(Some(email.to.clone()))
                        .build(),
                )
                .content(
                    aws_sdk_sesv2::types::EmailContent::builder()
                        .raw(raw)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(&message.id, &e))?;
        }
        if let Some(sns) = &alert.sns {
            self.sns
                .publish()
                .topic_arn(&sns.topic_arn)
                .subject(message.subject.chars().take(100).collect::<String>())
                .message(format!(
                    "{}\n{}",
                    message.text,
                    String::from_utf8_lossy(&message.report)
                ))
                .send()
                .await
                .map_err(|e| sdk_error(&message.id, &e))?;
        }
        Ok(())
    }
}

/// The in-memory twin: keeps what it was asked to send; can fail the next sends.
#[derive(Debug, Clone, Default)]
pub struct MemoryAlertSender {
    inner: Arc<Mutex<(Vec<AlertMessage>, usize)>>,
}

impl MemoryAlertSender {
    /// The messages sent.
    pub fn sent(&self) -> Vec<AlertMessage> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Fails the next `n` sends (a transient error).
    pub fn fail_next(&self, n: usize) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).1 = n;
    }
}

impl AlertSender for MemoryAlertSender {
    async fn send(&self, _alert: &AlertConfig, message: &AlertMessage) -> Result<(), AlertError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.1 > 0 {
            inner.1 -= 1;
            return Err(AlertError {
                id: message.id.clone(),
                message: "refused (a fault of the test)".into(),
                fatal: false,
            });
        }
        inner.0.push(message.clone());
        Ok(())
    }
}
