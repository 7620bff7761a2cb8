//! The executors' object keys, `<prefix>/YYYY/MM/DD/HH/<name>` (see
//! `chief_pipeline::archive::batch_key`), and where a run starts listing them.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

/// The UTC hour a key of `prefix` was written in, when the key has the executors' shape
/// `<prefix>/YYYY/MM/DD/HH/<name>` (`name` non-empty, without `/`).
pub fn key_hour(prefix: &str, key: &str) -> Option<DateTime<Utc>> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('/')?;
    let mut parts = rest.splitn(5, '/');
    let year = number(parts.next()?, 4)?;
    let month = number(parts.next()?, 2)?;
    let day = number(parts.next()?, 2)?;
    let hour = number(parts.next()?, 2)?;
    let name = parts.next()?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let time = date.and_hms_opt(hour, 0, 0)?;
    Some(Utc.from_utc_datetime(&time))
}

fn number(text: &str, digits: usize) -> Option<u32> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `<prefix>/YYYY/MM/DD/HH` of `hour`: every key of that hour and of later hours sorts
/// after it, every key of earlier hours before it (S3 lists keys in byte order), so it
/// is the `StartAfter` of a listing that begins at `hour`.
pub fn hour_start_after(prefix: &str, hour: DateTime<Utc>) -> String {
    format!("{prefix}/{}", hour.format("%Y/%m/%d/%H"))
}

/// Where listing begins: `rescan_hours` before the hour of the newest loaded key, or the
/// beginning of the prefix when nothing is loaded yet (`None`).
pub fn listing_start(
    prefix: &str,
    newest_loaded_key: Option<&str>,
    rescan_hours: u32,
) -> Option<String> {
    let hour = key_hour(prefix, newest_loaded_key?)?;
    let start = hour.checked_sub_signed(Duration::hours(i64::from(rescan_hours)))?;
    Some(hour_start_after(prefix, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn keys_of_the_executors_shape_have_an_hour() {
        assert_eq!(
            key_hour(
                "ChiefOrderS3",
                "ChiefOrderS3/2017/10/18/16/shardId-000000000001-4958-3"
            ),
            Some(hour(2017, 10, 18, 16))
        );
        for bad in [
            "ChiefOrderS3/2017/10/18/16/",
            "ChiefOrderS3/2017/10/18/16",
            "ChiefOrderS3/2017/10/18/16/a/b",
            "ChiefOrderS3/2017/13/18/16/a",
            "ChiefOrderS3/2017/10/18/24/a",
            "ChiefOrderS3/17/10/18/16/a",
            "ChiefOrderS3X/2017/10/18/16/a",
            "ChiefOrderS3/2017/1/18/16/a",
            "Other/2017/10/18/16/a",
        ] {
            assert_eq!(key_hour("ChiefOrderS3", bad), None, "{bad}");
        }
    }

    #[test]
    fn listing_starts_rescan_hours_before_the_newest_loaded_hour() {
        assert_eq!(listing_start("P", None, 3), None);
        assert_eq!(
            listing_start("P", Some("P/2024/03/01/01/shard-9"), 3),
            Some("P/2024/02/29/22".to_owned())
        );
        assert_eq!(
            listing_start("P", Some("P/2024/03/01/01/shard-9"), 0),
            Some("P/2024/03/01/01".to_owned())
        );
        // The bound sorts between the hours.
        let bound = hour_start_after("P", hour(2024, 3, 1, 1));
        assert!("P/2024/03/01/00/zzzz" < bound.as_str());
        assert!("P/2024/03/01/01/0" > bound.as_str());
        assert!("P/2024/03/01/02/0" > bound.as_str());
    }
}
