//! A load the server would have altered: rolled back by the caller, its objects held in
//! `load_rejects` here.

use super::{MAX_MESSAGES, TableReport, TableRun};
use crate::objects::ReadObject;
use crate::session::Warnings;
use crate::{LoaderError, history};

impl TableRun<'_> {
    /// After a load with `warnings` was rolled back: holds the objects the warnings are
    /// about in `load_rejects` (`place` turns a warning's row into an object of `read`
    /// and its line), or every object of the load when no warning names a row.
    pub(super) async fn refuse(
        &mut self,
        report: &mut TableReport,
        read: &[ReadObject],
        warnings: &Warnings,
        place: impl Fn(u64) -> Option<(usize, u64)>,
    ) -> Result<(), LoaderError> {
        let table = self.spec.table.as_str();
        let mut rejects: Vec<history::Reject> = Vec::new();
        for (_, message) in &warnings.stored {
            let placed = crate::lines::warning_row(message)
                .and_then(&place)
                .and_then(|(object, line)| Some((read.get(object)?, line)));
            let described = match placed {
                Some((object, line)) => format!("{} line {line}: {message}", object.key),
                None => message.clone(),
            };
            if report.warning_messages.len() < MAX_MESSAGES {
                report.warning_messages.push(described);
            }
            if let Some((object, line)) = placed
                && !rejects.iter().any(|r| r.key == object.key)
            {
                rejects.push(history::Reject {
                    key: object.key.clone(),
                    etag: object.etag.clone(),
                    line: Some(line),
                    reason: message.clone(),
                });
            }
        }
        if rejects.is_empty() {
            let reason = warnings.stored.first().map_or_else(
                || format!("{} warnings other than duplicate keys", warnings.total),
                |(_, message)| message.clone(),
            );
            rejects = read
                .iter()
                .map(|object| history::Reject {
                    key: object.key.clone(),
                    etag: object.etag.clone(),
                    line: None,
                    reason: reason.clone(),
                })
                .collect();
        }
        history::reject(self.conn, table, &rejects).await?;
        for reject in &rejects {
            tracing::error!(table, key = %reject.key, line = ?reject.line, reason = %reject.reason,
                "LOAD DATA would have altered a row: load rolled back, object held in load_rejects");
        }
        report.warnings += warnings.total;
        report.rejected.extend(rejects);
        Ok(())
    }
}
