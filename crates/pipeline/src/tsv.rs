//! Rows as MySQL/MariaDB `LOAD DATA` (and Aurora `LOAD DATA FROM S3`) reads them with
//! its defaults: `FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\'
//! LINES TERMINATED BY '\n'`.
//!
//! Each field is written with these escapes, and nothing else changed:
//!
//! | byte | written as |
//! |---|---|
//! | `\` | `\\` |
//! | tab | `\t` |
//! | newline | `\n` |
//! | carriage return | `\r` |
//! | NUL | `\0` |
//! | (SQL `NULL`) | `\N` |
//!
//! so a field never contains a raw separator, and data can never read back as `NULL`
//! (a literal `\N` in the data is written `\\N`). Fields are bytes: UTF-8 text passes
//! through unchanged, emoji included.
//!
//! The two row shapes of chief's tables:
//! - `orders (orderid, orderdata)`: [`write_order_row`], `orderdata` being the record's
//!   JSON exactly as received;
//! - `jobresults (orderid, userid, factoryid, robotid, jobstatus, timestamp)`:
//!   [`write_job_result_row`], the timestamp in `DATETIME` shape.

use crate::model::{JobResult, OrderId};

/// The content type of an object of rows.
pub const CONTENT_TYPE: &str = "text/tab-separated-values; charset=utf-8";

/// Appends `field` to `out`, escaped as `LOAD DATA` expects.
pub fn write_field(out: &mut Vec<u8>, field: &[u8]) {
    out.reserve(field.len());
    let mut start = 0;
    for (i, byte) in field.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => b"\\0",
            _ => continue,
        };
        out.extend_from_slice(&field[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&field[start..]);
}

/// Appends one line: the fields (`None` = SQL `NULL`) separated by tabs, ended by `\n`.
pub fn write_row(out: &mut Vec<u8>, fields: &[Option<&[u8]>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match field {
            Some(bytes) => write_field(out, bytes),
            None => out.extend_from_slice(b"\\N"),
        }
    }
    out.push(b'\n');
}

/// Appends an `orders` line: `orderid`, then `orderdata` = the record's raw JSON bytes.
pub fn write_order_row(out: &mut Vec<u8>, orderid: &OrderId, raw_json: &[u8]) {
    write_row(out, &[Some(orderid.as_str().as_bytes()), Some(raw_json)]);
}

/// Appends a `jobresults` line: `orderid, userid, factoryid, robotid, jobstatus,
/// timestamp`, the timestamp as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn write_job_result_row(out: &mut Vec<u8>, job: &JobResult) {
    let timestamp = job.mysql_timestamp();
    write_row(
        out,
        &[
            Some(job.orderid.as_str().as_bytes()),
            Some(job.userid.as_bytes()),
            Some(job.factoryid.as_bytes()),
            Some(job.robotid.as_bytes()),
            Some(job.jobstatus.as_str().as_bytes()),
            Some(timestamp.as_bytes()),
        ],
    );
}

/// A field of a row read back: `None` is SQL `NULL`.
pub type Field = Option<Vec<u8>>;

/// Reads rows back the way `LOAD DATA` does with the defaults above: lines end at an
/// unescaped newline, fields at an unescaped tab; `\N` alone is `NULL`; `\t`, `\n`,
/// `\r`, `\0`, `\\` are unescaped and any other escaped byte stands for itself (as
/// in MySQL). The inverse of [`write_row`]; the executors' tests and the loader's checks
/// use it to compare what was written with what was sent.
pub fn read_rows(data: &[u8]) -> Vec<Vec<Field>> {
    let mut rows = Vec::new();
    let mut row: Vec<Field> = Vec::new();
    let mut field = Vec::new();
    let mut null = false;
    let mut bytes = data.iter().copied();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\\' => match bytes.next() {
                Some(b'N') if field.is_empty() => null = true,
                Some(b't') => field.push(b'\t'),
                Some(b'n') => field.push(b'\n'),
                Some(b'r') => field.push(b'\r'),
                Some(b'0') => field.push(0),
                Some(other) => field.push(other),
                None => field.push(b'\\'),
            },
            b'\t' => {
                row.push((!null).then(|| std::mem::take(&mut field)));
                field.clear();
                null = false;
            }
            b'\n' => {
                row.push((!null).then(|| std::mem::take(&mut field)));
                field.clear();
                null = false;
                rows.push(std::mem::take(&mut row));
            }
            other => field.push(other),
        }
    }
    if !field.is_empty() || !row.is_empty() || null {
        row.push((!null).then_some(field));
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_rows_inverts_write_row_for_hostile_bytes() {
        let hostile: &[&[u8]] = &[
            b"plain",
            b"tab\there",
            b"new\nline\r\n",
            b"back\\slash \\N \\",
            b"\\N",
            b"nul\0byte",
            "emoji \u{1F600} ok".as_bytes(),
            b"",
        ];
        let mut out = Vec::new();
        for pair in hostile.windows(2) {
            write_row(&mut out, &[Some(pair[0]), None, Some(pair[1])]);
        }
        let rows = read_rows(&out);
        assert_eq!(rows.len(), hostile.len() - 1);
        for (row, pair) in rows.iter().zip(hostile.windows(2)) {
            assert_eq!(
                row,
                &vec![Some(pair[0].to_vec()), None, Some(pair[1].to_vec())]
            );
        }
    }
    use proptest::prelude::*;

    use super::*;

    /// A reader that follows MySQL's `LOAD DATA` rules for the default options
    /// (sql/sql_load.cc `READ_INFO`): `\` escapes the next byte (`0` → NUL, `b` →
    /// backspace, `n` → newline, `r` → CR, `t` → tab, `Z` → 0x1A, `N` alone in a field →
    /// NULL, any other byte → itself); an unescaped tab ends a field, an unescaped
    /// newline ends a line.
    fn load_data(input: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut field = Vec::new();
        // Whether the field so far is exactly the escape `\N`.
        let mut null = false;
        let mut bytes = input.iter();
        while let Some(&b) = bytes.next() {
            match b {
                b'\\' => {
                    let next = *bytes.next().expect("escape at end of input");
                    if next == b'N' && field.is_empty() && !null {
                        null = true;
                        continue;
                    }
                    if null {
                        // `\N` followed by more: MySQL reads the N as a letter.
                        field.push(b'N');
                        null = false;
                    }
                    field.push(match next {
                        b'0' => 0,
                        b'b' => 8,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'Z' => 0x1a,
                        other => other,
                    });
                }
                b'\t' | b'\n' => {
                    let value = if null {
                        None
                    } else {
                        Some(std::mem::take(&mut field))
                    };
                    field.clear();
                    null = false;
                    row.push(value);
                    if b == b'\n' {
                        rows.push(std::mem::take(&mut row));
                    }
                }
                other => {
                    if null {
                        field.push(b'N');
                        null = false;
                    }
                    field.push(other);
                }
            }
        }
        assert!(
            field.is_empty() && row.is_empty(),
            "input does not end with a newline"
        );
        rows
    }

    fn encode(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        write_row(&mut out, fields);
        out
    }

    #[test]
    fn golden_lines() {
        assert_eq!(encode(&[Some(b"a"), Some(b"b")]), b"a\tb\n");
        assert_eq!(
            encode(&[Some(b"tab\there"), Some(b"line\nbreak\r\n")]),
            b"tab\\there\tline\\nbreak\\r\\n\n"
        );
        assert_eq!(
            encode(&[Some(b"back\\slash"), Some(b"nul\0byte")]),
            b"back\\\\slash\tnul\\0byte\n"
        );
        assert_eq!(encode(&[None, Some(b"\\N"), Some(b"")]), b"\\N\t\\\\N\t\n");
        assert_eq!(
            encode(&[Some("emoji 🦀 ü".as_bytes())]),
            "emoji 🦀 ü\n".as_bytes()
        );
    }

    #[test]
    fn order_row_keeps_the_raw_json() {
        let raw = br#"{"orderid":"o-1","note":"a\tb\\c","x":"\n"}"#;
        let mut out = Vec::new();
        write_order_row(&mut out, &OrderId::new("o-1").expect("id"), raw);
        let mut expected = b"o-1\t".to_vec();
        expected.extend_from_slice(br#"{"orderid":"o-1","note":"a\\tb\\\\c","x":"\\n"}"#);
        expected.push(b'\n');
        assert_eq!(out, expected);
        assert_eq!(
            load_data(&out),
            vec![vec![Some(b"o-1".to_vec()), Some(raw.to_vec())]]
        );
    }

    #[test]
    fn job_result_row_has_six_columns_and_a_datetime() {
        let job = JobResult::parse(
            br#"{"orderid":"o-1","userid":"user-000042","factoryid":"factory-03",
                "robotid":"robot-017","jobstatus":"completed",
                "timestamp":"2024-01-01T09:00:05.250+09:00"}"#,
        )
        .expect("job result");
        let mut out = Vec::new();
        write_job_result_row(&mut out, &job);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "o-1\tuser-000042\tfactory-03\trobot-017\tcompleted\t2024-01-01 00:00:05\n"
        );
    }

    #[test]
    fn the_reader_in_this_test_follows_mysql_on_known_lines() {
        assert_eq!(
            load_data(b"\\N\t\\Nx\t\\\\N\ta\\Zb\\bc\n"),
            vec![vec![
                None,
                Some(b"Nx".to_vec()),
                Some(b"\\N".to_vec()),
                Some(b"a\x1ab\x08c".to_vec()),
            ]]
        );
    }

    proptest! {
        #[test]
        fn any_fields_round_trip_through_load_data(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::option::weighted(0.9, prop_oneof![
                        any::<Vec<u8>>(),
                        ".*".prop_map(String::into_bytes),
                        "[\\\\\t\n\r\0N a]*".prop_map(String::into_bytes),
                    ]),
                    1..6,
                ),
                0..5,
            )
        ) {
            let mut out = Vec::new();
            for row in &rows {
                let fields: Vec<Option<&[u8]>> = row.iter().map(|f| f.as_deref()).collect();
                write_row(&mut out, &fields);
            }
            prop_assert_eq!(out.iter().filter(|b| **b == b'\n').count(), rows.len());
            prop_assert_eq!(load_data(&out), rows);
        }
    }
}
