//! Tailing the files of a flow without losing or repeating lines.
//!
//! A file is known by its device and inode while chief holds it open, and by a
//! fingerprint — its first bytes, up to [`FINGERPRINT_BYTES`] — across renames, copies and
//! restarts. Every file the pattern matches is opened once and read through its open
//! descriptor, so a file renamed away (`create` rotation) or deleted is still read to its
//! end. A file that shrinks below what was read was truncated in place (`copytruncate`):
//! its copy — a file that starts with the same bytes — carries on from the same offset,
//! and the truncated file starts again from 0 as a new file. Only whole lines are handed
//! out; a last line without its newline waits until it has one, or until its file is gone
//! for good.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many leading bytes identify a file.
pub const FINGERPRINT_BYTES: usize = 4096;

/// How long a file that the pattern no longer matches (renamed away, deleted) is kept
/// open after it was last read to its end.
pub const GONE_GRACE: Duration = Duration::from_secs(5);

/// A logical file: what offsets in checkpoints and acknowledgements refer to.
pub type FileKey = u64;

/// A file's identity on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Inode {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

/// Where a known file was read up to: what a checkpoint holds per file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    /// The path it was last seen at.
    pub path: PathBuf,
    /// Its inode.
    pub inode: Inode,
    /// Its first bytes (base64 in the checkpoint file).
    #[serde(with = "b64")]
    pub fingerprint: Vec<u8>,
    /// Bytes of it already delivered (the end of the last acknowledged line).
    pub offset: u64,
    /// Bytes of it that may have been sent: lines after `offset` up to here are sent
    /// again after a crash, and counted as replayed.
    #[serde(default)]
    pub sent: u64,
}

/// How far past what it has read a checkpoint says a file may have been sent, so that
/// the file is rewritten once per this many bytes at most.
pub const SENT_LOOKAHEAD: u64 = 1024 * 1024;

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// One whole line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The logical file.
    pub file: FileKey,
    /// The line without its newline (`\n`, or `\r\n`).
    pub text: Vec<u8>,
    /// Its 1-based number in its file (0 when the file was entered mid-way).
    pub number: u64,
    /// The offset just past it: where reading resumes once it is delivered.
    pub end: u64,
    /// Whether it may have been sent before a restart (at-least-once).
    pub replayed: bool,
}

/// What a tailer reports besides lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A file is being read from `offset`.
    Opened {
        /// The logical file.
        file: FileKey,
        /// Where.
        path: PathBuf,
        /// From.
        offset: u64,
    },
    /// A file was truncated in place; its copy carries on.
    Truncated {
        /// The logical file (now read from the copy, if one was found).
        file: FileKey,
        /// The copy, if one was found.
        copy: Option<PathBuf>,
        /// Bytes read of it that no copy holds (lost unless already read).
        missing: u64,
    },
    /// A file was read to its end and is gone from the pattern: closed.
    Closed {
        /// The logical file.
        file: FileKey,
    },
}

#[derive(Debug)]
struct Tracked {
    key: FileKey,
    path: PathBuf,
    inode: Inode,
    file: File,
    fingerprint: Vec<u8>,
    /// Bytes handed out as lines (or skipped as headers).
    offset: u64,
    /// Line number of the next line (0: unknown).
    next_line: u64,
    /// Bytes read past `offset` that do not yet end with a newline.
    pending: Vec<u8>,
    /// Whether the pattern matched it at the last scan.
    matched: bool,
    /// When it was last read to its end with nothing new.
    idle_since: Option<Instant>,
    /// Header lines still to skip.
    skip: u64,
    /// Where it started: what is delivered of it before any acknowledgement.
    start: u64,
    /// The `sent` of the last checkpoint written.
    sent_mark: u64,
    /// Lines ending at or before this were perhaps sent before a restart.
    replay_until: u64,
    /// No longer starts with its fingerprint: truncated and written again since the last
    /// scan; not read until the next scan takes it as truncated.
    suspect: bool,
}

/// The tailer of one flow's pattern.
#[derive(Debug)]
pub struct Tailer {
    dir: PathBuf,
    pattern: String,
    files: Vec<Tracked>,
    /// Files known from a checkpoint (or closed): by fingerprint and inode.
    known: Vec<FilePosition>,
    /// New files that start like an open one, held back since (see [`COPY_GRACE`]).
    parked: HashMap<Inode, Instant>,
    next_key: FileKey,
    start_at_end: bool,
    first_scan: bool,
    skip_header_lines: u64,
    chunk: Vec<u8>,
}

/// A `filePattern` split into its directory and a glob on file names (`*`, `?`).
///
/// # Errors
/// A pattern with a wildcard in a directory part, or without a file name.
pub fn split_pattern(pattern: &str) -> Result<(PathBuf, String), String> {
    let path = Path::new(pattern);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("filePattern `{pattern}` names no file"))?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    if dir.to_string_lossy().contains(['*', '?', '[']) {
        return Err(format!(
            "filePattern `{pattern}`: wildcards are supported in the file name only"
        ));
    }
    Ok((dir.to_path_buf(), name.to_owned()))
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn inode(meta: &std::fs::Metadata) -> Inode {
    Inode {
        dev: meta.dev(),
        ino: meta.ino(),
    }
}

fn read_prefix(file: &mut File, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; len];
    let mut filled = 0;
    file.seek(SeekFrom::Start(0))?;
    while filled < len {
        let n = file.read(&mut out[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    out.truncate(filled);
    Ok(out)
}

/// Whether `t`'s file (now `size` bytes) no longer starts with its fingerprint: it was
/// truncated and written again past the offset read before the truncation was seen.
fn rewritten(t: &mut Tracked, size: u64) -> io::Result<bool> {
    let n = usize::try_from(size)
        .unwrap_or(usize::MAX)
        .min(t.fingerprint.len());
    if n == 0 {
        return Ok(false);
    }
    let start = read_prefix(&mut t.file, n)?;
    Ok(start[..] != t.fingerprint[..n])
}

/// Whether two files agree on the bytes both have of their starts.
fn similar(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    n > 0 && a[..n] == b[..n]
}

/// How long a new file that starts like an open one is held back, in case it is that
/// file's copy and the original is about to be truncated (`copytruncate` copies first).
pub const COPY_GRACE: Duration = Duration::from_secs(5);

impl Tailer {
    /// A tailer of `pattern` (see [`split_pattern`]); files found at the first scan
    /// start at their end when `start_at_end` (the agent's `END_OF_FILE`), others at 0;
    /// `known` are the checkpoint's positions; the first `skip_header_lines` lines of
    /// every file read from its start are skipped.
    ///
    /// # Errors
    /// A bad pattern.
    pub fn new(
        pattern: &str,
        start_at_end: bool,
        skip_header_lines: u64,
        known: Vec<FilePosition>,
    ) -> Result<Self, String> {
        let (dir, pattern) = split_pattern(pattern)?;
        Ok(Self {
            dir,
            pattern,
            files: Vec::new(),
            known,
            parked: HashMap::new(),
            next_key: 1,
            start_at_end,
            first_scan: true,
            skip_header_lines,
            chunk: vec![0; 256 * 1024],
        })
    }

    /// The position of every open file, and of files known but not open (closed, or from
    /// the checkpoint and not yet seen): what to checkpoint once `delivered` says how far
    /// each open file's lines are delivered.
    pub fn positions(&mut self, delivered: impl Fn(FileKey) -> Option<u64>) -> Vec<FilePosition> {
        let mut out: Vec<FilePosition> = self
            .files
            .iter_mut()
            .map(|t| {
                t.sent_mark = t.sent_mark.max(t.offset + SENT_LOOKAHEAD);
                FilePosition {
                    path: t.path.clone(),
                    inode: t.inode,
                    fingerprint: t.fingerprint.clone(),
                    offset: delivered(t.key).unwrap_or(t.start),
                    sent: t.sent_mark,
                }
            })
            .collect();
        out.extend(self.known.iter().cloned());
        out
    }

    /// Whether lines past what the last checkpoint says may be sent have been read: the
    /// checkpoint must be written before they are sent.
    pub fn needs_checkpoint_before_sending(&self) -> bool {
        self.files.iter().any(|t| t.offset > t.sent_mark)
    }

    /// Whether a file read since the last scan no longer starts as it did (truncated and
    /// written again): the next scan should come now.
    pub fn wants_scan(&self) -> bool {
        self.files.iter().any(|t| t.suspect)
    }

    /// Open files.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    fn matched_paths(&self) -> io::Result<Vec<(PathBuf, std::fs::Metadata)>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            // The directory may appear later.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !glob_match(&self.pattern, name) {
                continue;
            }
            let path = entry.path();
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => out.push((path, meta)),
                _ => {}
            }
        }
        // Oldest first: rotated files before the one being written.
        out.sort_by_key(|(_, m)| m.modified().ok());
        Ok(out)
    }

    /// Looks for new, rotated and truncated files.
    ///
    /// # Errors
    /// The directory or a file cannot be read.
    pub fn scan(&mut self, events: &mut Vec<Event>) -> io::Result<()> {
        let paths = self.matched_paths()?;
        for t in &mut self.files {
            t.matched = false;
        }
        let mut fresh = Vec::new();
        for (path, meta) in &paths {
            let id = inode(meta);
            if let Some(t) = self.files.iter_mut().find(|t| t.inode == id) {
                t.matched = true;
                t.path.clone_from(path);
                continue;
            }
            fresh.push((path.clone(), meta.clone()));
        }
        // Truncated in place (copytruncate): the copy carries on. Shorter than what was
        // read, or — written again past that point before this scan — no longer starting
        // with the bytes it started with.
        let mut copies: Vec<PathBuf> = Vec::new();
        for i in 0..self.files.len() {
            let size = self.files[i].file.metadata()?.len();
            let read_to = self.files[i].offset + self.files[i].pending.len() as u64;
            if size >= read_to && !rewritten(&mut self.files[i], size)? {
                self.files[i].suspect = false;
                continue;
            }
            let t = &self.files[i];
            let mut copy = None;
            for (path, _) in &fresh {
                if copies.contains(path) {
                    continue;
                }
                let mut f = File::open(path)?;
                let size = f.metadata()?.len();
                let start = read_prefix(&mut f, FINGERPRINT_BYTES)?;
                if similar(&t.fingerprint, &start) && size >= t.offset {
                    copy = Some((path.clone(), f));
                    break;
                }
            }
            let old_key = t.key;
            let missing;
            match copy {
                Some((path, file)) => {
                    copies.push(path.clone());
                    let meta = file.metadata()?;
                    self.parked.remove(&inode(&meta));
                    missing = 0;
                    let key = self.files[i].key;
                    let offset = self.files[i].offset;
                    let fingerprint = self.files[i].fingerprint.clone();
                    let next_line = self.files[i].next_line;
                    // The copy carries on the original's delivery as well as its reading:
                    // the lines read from the original may still be in flight, so what is
                    // delivered of the copy is what was of the original (its key), and
                    // until the first acknowledgement, where the original began — never
                    // the offset read so far.
                    let (start, sent_mark, replay_until) = (
                        self.files[i].start,
                        self.files[i].sent_mark,
                        self.files[i].replay_until,
                    );
                    self.files.push(Tracked {
                        key,
                        path: path.clone(),
                        inode: inode(&meta),
                        file,
                        fingerprint,
                        offset,
                        next_line,
                        pending: Vec::new(),
                        matched: true,
                        idle_since: None,
                        skip: 0,
                        start,
                        sent_mark,
                        replay_until,
                        suspect: false,
                    });
                    events.push(Event::Truncated {
                        file: key,
                        copy: Some(path),
                        missing,
                    });
                }
                None => {
                    missing = read_to.saturating_sub(size);
                    events.push(Event::Truncated {
                        file: old_key,
                        copy: None,
                        missing,
                    });
                }
            }
            // The truncated file is a new one from 0.
            let key = self.next_key;
            self.next_key += 1;
            let t = &mut self.files[i];
            t.key = key;
            t.offset = 0;
            t.next_line = 1;
            t.pending.clear();
            t.fingerprint = read_prefix(&mut t.file, FINGERPRINT_BYTES)?;
            t.skip = self.skip_header_lines;
            t.idle_since = None;
            t.start = 0;
            t.sent_mark = 0;
            t.replay_until = 0;
            t.suspect = false;
            events.push(Event::Opened {
                file: key,
                path: t.path.clone(),
                offset: 0,
            });
        }
        for (path, meta) in fresh {
            if copies.contains(&path) {
                continue;
            }
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Rotated away between the listing and now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let id = inode(&meta);
            let start = read_prefix(&mut file, FINGERPRINT_BYTES)?;
            // Perhaps a copy of an open file whose original is about to be truncated: its
            // bytes are being read from the original. Held back a moment; a file that
            // merely starts the same (a CSV header) is read once the moment has passed.
            if self
                .files
                .iter()
                .any(|t| similar(&t.fingerprint, &start) && t.inode != id)
            {
                let since = *self.parked.entry(id).or_insert_with(Instant::now);
                if since.elapsed() < COPY_GRACE {
                    continue;
                }
            }
            self.parked.remove(&id);
            // Known from the checkpoint (or read before and closed): resume. By inode; by
            // content alone (a copy made while the agent was down) only on a whole
            // fingerprint.
            let known = self.known.iter().position(|k| {
                (k.inode == id && (k.fingerprint.is_empty() || similar(&k.fingerprint, &start)))
                    || (k.fingerprint.len() == FINGERPRINT_BYTES && k.fingerprint == start)
            });
            let (offset, next_line, skip, replay_until) = match known {
                Some(i) => {
                    let k = self.known.remove(i);
                    (k.offset.min(meta.len()), 0, 0, k.sent)
                }
                None if self.first_scan && self.start_at_end => (meta.len(), 0, 0, 0),
                None => (0, 1, self.skip_header_lines, 0),
            };
            let key = self.next_key;
            self.next_key += 1;
            events.push(Event::Opened {
                file: key,
                path: path.clone(),
                offset,
            });
            self.files.push(Tracked {
                key,
                path,
                inode: id,
                file,
                fingerprint: start,
                offset,
                next_line,
                pending: Vec::new(),
                matched: true,
                idle_since: None,
                skip,
                start: offset,
                sent_mark: 0,
                replay_until,
                suspect: false,
            });
        }
        self.first_scan = false;
        Ok(())
    }

    /// Reads what is new in every open file, up to about `max_bytes`: whole lines, oldest
    /// file first. Files gone from the pattern and idle for [`GONE_GRACE`] are closed
    /// (their last line, even without a newline, is handed out first) and remembered once
    /// `delivered` says every line of them is delivered.
    ///
    /// # Errors
    /// A file cannot be read.
    pub fn read(
        &mut self,
        max_bytes: usize,
        delivered: impl Fn(FileKey) -> Option<u64>,
        lines: &mut Vec<Line>,
        events: &mut Vec<Event>,
    ) -> io::Result<()> {
        let mut budget = max_bytes;
        let mut closed = Vec::new();
        for (i, t) in self.files.iter_mut().enumerate() {
            if budget == 0 {
                break;
            }
            let mut got_any = false;
            while !t.suspect {
                let want = budget.min(self.chunk.len());
                if want == 0 {
                    break;
                }
                t.file
                    .seek(SeekFrom::Start(t.offset + t.pending.len() as u64))?;
                let n = t.file.read(&mut self.chunk[..want])?;
                if n == 0 {
                    break;
                }
                // The bytes are the file's continuation only if it still starts as it did:
                // truncated and written again past the offset since the last scan
                // (copytruncate under a slow reader), they are the new content's, and the
                // original's rest is in its copy. Checked after the read, so that a
                // truncation between the two costs only a read again.
                let size = t.file.metadata()?.len();
                if size < t.offset + t.pending.len() as u64 + n as u64 || rewritten(t, size)? {
                    t.suspect = true;
                    break;
                }
                got_any = true;
                budget = budget.saturating_sub(n);
                t.pending.extend_from_slice(&self.chunk[..n]);
                split_lines(t, lines);
            }
            if got_any {
                t.idle_since = None;
                if t.fingerprint.len() < FINGERPRINT_BYTES {
                    // The file grew: its fingerprint takes in what is new of its start.
                    t.fingerprint = read_prefix(&mut t.file, FINGERPRINT_BYTES)?;
                }
            } else {
                let idle = *t.idle_since.get_or_insert_with(Instant::now);
                if !t.matched && idle.elapsed() >= GONE_GRACE {
                    if !t.pending.is_empty() {
                        // Gone and read out: its last line goes even without a newline.
                        let text = std::mem::take(&mut t.pending);
                        t.offset += text.len() as u64;
                        emit(t, text, lines);
                    } else if delivered(t.key).unwrap_or(t.start) >= t.offset {
                        // Closed once every line of it is delivered.
                        closed.push(i);
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            let t = self.files.remove(i);
            events.push(Event::Closed { file: t.key });
            self.known.push(FilePosition {
                path: t.path,
                inode: t.inode,
                fingerprint: t.fingerprint,
                offset: t.offset,
                sent: t.offset,
            });
        }
        // Known files no longer on disk are forgotten.
        let paths: Vec<PathBuf> = self.known.iter().map(|k| k.path.clone()).collect();
        let mut keep = Vec::new();
        for (k, path) in self.known.drain(..).zip(paths) {
            if path.exists() {
                keep.push(k);
            }
        }
        self.known = keep;
        Ok(())
    }
}

fn emit(t: &mut Tracked, mut text: Vec<u8>, lines: &mut Vec<Line>) {
    if text.last() == Some(&b'\n') {
        text.pop();
        if text.last() == Some(&b'\r') {
            text.pop();
        }
    }
    let number = t.next_line;
    if t.next_line > 0 {
        t.next_line += 1;
    }
    if t.skip > 0 {
        t.skip -= 1;
        return;
    }
    lines.push(Line {
        file: t.key,
        text,
        number,
        end: t.offset,
        replayed: t.offset <= t.replay_until,
    });
}

fn split_lines(t: &mut Tracked, lines: &mut Vec<Line>) {
    let mut start = 0;
    while let Some(pos) = memchr(b'\n', &t.pending[start..]) {
        let end = start + pos + 1;
        let text = t.pending[start..end].to_vec();
        t.offset += (end - start) as u64;
        emit(t, text, lines);
        start = end;
    }
    t.pending.drain(..start);
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("chief-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_default();
        d
    }

    fn texts(t: &mut Tailer) -> Vec<String> {
        let (mut lines, mut events) = (Vec::new(), Vec::new());
        t.scan(&mut events).unwrap_or_default();
        t.read(1 << 20, |_| None, &mut lines, &mut events)
            .unwrap_or_default();
        lines
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l.text).into_owned())
            .collect()
    }

    #[test]
    fn files_that_start_alike_are_both_read_whole_lines_only() {
        let d = dir("alike");
        let header = "VendorID,tpep_pickup_datetime,tpep_dropoff_datetime\n";
        std::fs::write(d.join("a.csv"), format!("{header}1,x,y\n2,x,y\n")).unwrap_or_default();
        let mut t = Tailer::new(&format!("{}/*.csv", d.display()), false, 1, Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&mut t), vec!["1,x,y", "2,x,y"], "header skipped");
        // A second file that so far is just the same header: held back a moment (a
        // copytruncate copy would look like this), then read as a file of its own.
        std::fs::write(d.join("b.csv"), header).unwrap_or_default();
        assert!(texts(&mut t).is_empty());
        assert_eq!(t.open_files(), 1, "held back");
        t.parked.values_mut().for_each(|since| *since -= COPY_GRACE);
        assert!(texts(&mut t).is_empty(), "its header is skipped");
        assert_eq!(t.open_files(), 2);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(d.join("b.csv"))
            .unwrap_or_else(|e| panic!("{e}"));
        std::io::Write::write_all(&mut f, b"3,x,y\n4,x").unwrap_or_default();
        assert_eq!(texts(&mut t), vec!["3,x,y"], "a partial last line waits");
        std::io::Write::write_all(&mut f, b",y\r\n").unwrap_or_default();
        assert_eq!(texts(&mut t), vec!["4,x,y"], "CRLF ends a line too");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_renamed_file_is_read_to_its_end() {
        let d = dir("renamed");
        let path = d.join("app.log");
        std::fs::write(&path, "one\n").unwrap_or_default();
        let mut t = Tailer::new(&format!("{}/app.log", d.display()), false, 0, Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&mut t), vec!["one"]);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&path, d.join("app.log.1")).unwrap_or_default();
        std::fs::write(&path, "three\n").unwrap_or_default();
        // Written after the rename, through the old descriptor, as a logger does.
        std::io::Write::write_all(&mut f, b"two\n").unwrap_or_default();
        let mut got = texts(&mut t);
        got.sort();
        assert_eq!(got, vec!["three", "two"]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_truncated_and_written_again_past_the_offset_read_is_read_from_its_start() {
        let d = dir("rewritten");
        let path = d.join("app.log");
        let batch = |from: usize| -> String {
            (from..from + 100)
                .map(|n| format!("line {n:06}\n"))
                .collect()
        };
        std::fs::write(&path, batch(0)).unwrap_or_default();
        let mut t = Tailer::new(&format!("{}/app.log*", d.display()), false, 0, Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&mut t).len(), 100);
        // copytruncate's copy, the truncation, and as many bytes written again as were
        // read, all between two scans: the size alone does not tell.
        std::fs::copy(&path, d.join("app.log.1")).unwrap_or_default();
        std::fs::write(&path, batch(100)).unwrap_or_default();
        let mut got = texts(&mut t);
        got.sort();
        let want: Vec<String> = (100..200).map(|n| format!("line {n:06}")).collect();
        assert_eq!(got, want, "the new lines, from the start, and none twice");
        assert_eq!(t.open_files(), 2, "the original and its copy");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_truncated_and_written_past_the_offset_between_two_scans_is_not_read_on() {
        // The loss a loaded run showed: the reader, slow, had read 100 lines; copytruncate
        // copied and truncated the file and 150 new lines were written before the next
        // read, which — scans come every 500 ms, reads all the time — went on at the old
        // offset in the new content, skipping the copy's lines from there.
        let d = dir("read-past");
        let path = d.join("app.log");
        let batch = |from: usize, n: usize| -> String {
            (from..from + n).map(|n| format!("line {n:06}\n")).collect()
        };
        std::fs::write(&path, batch(0, 100)).unwrap_or_default();
        let mut t = Tailer::new(&format!("{}/app.log*", d.display()), false, 0, Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&mut t).len(), 100);
        std::fs::write(&path, batch(0, 200)).unwrap_or_default();
        std::fs::copy(&path, d.join("app.log.1")).unwrap_or_default();
        std::fs::write(&path, batch(1000, 150)).unwrap_or_default();
        let (mut lines, mut events) = (Vec::new(), Vec::new());
        t.read(1 << 20, |_| None, &mut lines, &mut events)
            .unwrap_or_default();
        assert!(
            lines.is_empty(),
            "{} lines read on in the new content",
            lines.len()
        );
        assert!(t.wants_scan(), "the next scan is due now");
        let mut got = texts(&mut t);
        got.sort();
        let mut want: Vec<String> = (100..200)
            .chain(1000..1150)
            .map(|n| format!("line {n:06}"))
            .collect();
        want.sort();
        assert_eq!(
            got, want,
            "the copy's rest and the new content whole, each once"
        );
        assert!(!t.wants_scan());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_copytruncate_copy_is_not_checkpointed_past_what_was_delivered_of_the_original() {
        let d = dir("copy-delivered");
        let path = d.join("app.log");
        let lines: String = (0..100).map(|n| format!("line {n:06}\n")).collect();
        std::fs::write(&path, &lines).unwrap_or_default();
        let mut t = Tailer::new(&format!("{}/app.log*", d.display()), false, 0, Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(texts(&mut t).len(), 100, "read, none acknowledged yet");
        std::fs::copy(&path, d.join("app.log.1")).unwrap_or_default();
        std::fs::write(&path, "").unwrap_or_default();
        let (mut events, mut read) = (Vec::new(), Vec::new());
        t.scan(&mut events).unwrap_or_default();
        t.read(1 << 20, |_| None, &mut read, &mut events)
            .unwrap_or_default();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Truncated { copy: Some(_), .. })),
            "{events:?}"
        );
        // Nothing acknowledged: a crash now must read every line again, from the copy.
        let positions = t.positions(|_| None);
        let copy = positions
            .iter()
            .find(|p| p.path.ends_with("app.log.1"))
            .unwrap_or_else(|| panic!("the copy: {positions:?}"));
        assert_eq!(copy.offset, 0, "{positions:?}");
        // Once the original's lines are acknowledged, the copy is delivered that far.
        let key = copy_key(&t);
        let positions = t.positions(|k| (k == key).then_some(600));
        let copy = positions
            .iter()
            .find(|p| p.path.ends_with("app.log.1"))
            .unwrap_or_else(|| panic!("the copy: {positions:?}"));
        assert_eq!(copy.offset, 600);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn copy_key(t: &Tailer) -> FileKey {
        t.files
            .iter()
            .find(|f| f.path.ends_with("app.log.1"))
            .map(|f| f.key)
            .unwrap_or_else(|| panic!("no copy"))
    }

    #[test]
    fn globs() {
        assert!(glob_match("access_log*", "access_log"));
        assert!(glob_match("access_log*", "access_log.1"));
        assert!(glob_match("*.csv", "taxi-1.csv"));
        assert!(!glob_match("*.csv", "taxi-1.csv.gz"));
        assert!(glob_match("app-?.log", "app-1.log"));
        assert!(!glob_match("app-?.log", "app-12.log"));
        assert!(split_pattern("/var/*/x.log").is_err());
        assert_eq!(
            split_pattern("/tmp/app.log*"),
            Ok((PathBuf::from("/tmp"), "app.log*".to_owned()))
        );
    }
}
