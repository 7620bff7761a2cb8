//! Lines as `LOAD DATA … FIELDS TERMINATED BY '\t' ENCLOSED BY '' ESCAPED BY '\\' LINES
//! TERMINATED BY '\n'` reads them: a `\` escapes the byte after it (so `\` + newline does
//! not end a line, nor `\` + tab a field), every other newline ends a line, and a last
//! line without a newline is still a line.
//!
//! Local mode uses this to put a load's objects into one file, sorted by the first field
//! when that is the table's only unique key ([`stage`]), and both modes to count rows.

use std::io::Write;
use std::ops::Range;
use std::path::Path;

/// Counts lines over a body that arrives in chunks.
#[derive(Debug, Default, Clone)]
pub struct LineCounter {
    lines: u64,
    escaped: bool,
    open: bool,
}

impl LineCounter {
    /// Feeds the next chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        for &byte in chunk {
            if self.escaped {
                self.escaped = false;
                self.open = true;
                continue;
            }
            match byte {
                b'\\' => {
                    self.escaped = true;
                    self.open = true;
                }
                b'\n' => {
                    self.lines += 1;
                    self.open = false;
                }
                _ => self.open = true,
            }
        }
    }

    /// The lines, counting a last one without a newline.
    pub fn finish(&self) -> u64 {
        self.lines + u64::from(self.open)
    }
}

/// The lines of `body`, each range without its newline.
pub fn split(body: &[u8]) -> Vec<Range<usize>> {
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'\n' => {
                lines.push(start..i);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < body.len() {
        lines.push(start..body.len());
    }
    lines
}

/// The length of the first field of `line` (up to the first unescaped tab).
pub fn first_field_len(line: &[u8]) -> usize {
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b'\t' => return i,
            _ => i += 1,
        }
    }
    line.len()
}

/// Where a line of a staged file came from: the object's index in the load and the
/// line's number in it (from 1).
pub type Origin = (usize, u64);

/// Writes the lines of `bodies` (in order: object by object, line by line) to `path`,
/// each ended by a newline, and returns the origin of every written line.
///
/// With `sort_by_first_field`, the lines are stably sorted by their first field (its raw
/// bytes, trailing spaces left out): InnoDB then inserts in primary-key order, one sweep
/// of the B-tree instead of a random page per row. Stability keeps the first copy of an
/// id ahead of its repeats, so `IGNORE` keeps the same row as when the objects are loaded
/// one after another, as Aurora does (provided the first field is the only unique key and
/// compares byte-wise, which the caller checks).
pub fn stage(
    bodies: &[Vec<u8>],
    sort_by_first_field: bool,
    path: &Path,
) -> std::io::Result<Vec<Origin>> {
    struct Line {
        object: usize,
        number: u64,
        range: Range<usize>,
        key_len: usize,
    }
    let mut lines = Vec::new();
    for (object, body) in bodies.iter().enumerate() {
        for (i, range) in split(body).into_iter().enumerate() {
            let line = &body[range.clone()];
            let mut key_len = first_field_len(line);
            while key_len > 0 && line[key_len - 1] == b' ' {
                key_len -= 1;
            }
            lines.push(Line {
                object,
                number: i as u64 + 1,
                range,
                key_len,
            });
        }
    }
    if sort_by_first_field {
        let key = |l: &Line| &bodies[l.object][l.range.start..l.range.start + l.key_len];
        lines.sort_by(|a, b| key(a).cmp(key(b)));
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for line in &lines {
        out.write_all(&bodies[line.object][line.range.clone()])?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(lines.iter().map(|l| (l.object, l.number)).collect())
}

/// The row number a MySQL warning names (`… at row 3`, `Row 4 was truncated …`).
pub fn warning_row(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let at = lower.rfind("row ")?;
    let digits: String = lower[at + 4..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> u64 {
        let mut counter = LineCounter::default();
        for chunk in chunks {
            counter.feed(chunk);
        }
        counter.finish()
    }

    #[test]
    fn lines_follow_the_escape_rules() {
        assert_eq!(count(&[b""]), 0);
        assert_eq!(count(&[b"a\tb\n", b"c\n"]), 2);
        assert_eq!(count(&[b"a\tb\nc"]), 2);
        // An escaped newline is data, also across a chunk boundary.
        assert_eq!(count(&[b"a\\", b"\nb\n"]), 1);
        assert_eq!(count(&[b"a\\\\", b"\nb\n"]), 2);
        assert_eq!(split(b"a\\\nb\nc\\\\\nd"), vec![0..4, 5..8, 9..10]);
        assert_eq!(first_field_len(b"ab\\\tc\td"), 5);
        assert_eq!(first_field_len(b"abc"), 3);
    }

    #[test]
    fn staging_sorts_stably_by_the_first_field() {
        let dir = std::env::temp_dir().join(format!("chief-loader-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("staged.tsv");
        let bodies = vec![
            b"b\tfirst b\na\tfirst a\n".to_vec(),
            b"a \tsecond a (trailing space)\nc\tc\na\tthird a".to_vec(),
        ];
        let origins = stage(&bodies, true, &path).expect("stage");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            b"a\tfirst a\na \tsecond a (trailing space)\na\tthird a\nb\tfirst b\nc\tc\n"
        );
        assert_eq!(origins, vec![(0, 2), (1, 1), (1, 3), (0, 1), (1, 2)]);
        let origins = stage(&bodies, false, &path).expect("stage");
        assert_eq!(origins, vec![(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn warning_rows_are_found() {
        assert_eq!(
            warning_row("Row 4 doesn't contain data for all columns"),
            Some(4)
        );
        assert_eq!(
            warning_row("Data too long for column 'orderid' at row 12"),
            Some(12)
        );
        assert_eq!(warning_row("Duplicate entry 'a' for key 'PRIMARY'"), None);
    }
}
