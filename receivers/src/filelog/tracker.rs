//! File discovery, identity and reading for `filelog`. A file is known by a fingerprint of its first
//! bytes, not by its path, so a rotated file keeps its reader (and offset) under its new name, a
//! truncated or recreated file gets a new one, and a copy of a known file is not read twice.
//!
//! Each poll: find paths, fingerprint them, match them to known readers, read every match from its
//! committed offset to the end, and hand batches to a sink. The offset moves (and the checkpoint is
//! written) only after the sink accepted a batch, so a refused batch is read again at the next poll.

use crate::filelog::config::{Checked, Encoding, Split};
use crate::stanza::entry::Entry;
use crate::stanza::operators::PipelineState;
use metrics::Counter;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vigil_core::attrs::{kv, kv_str};
use vigil_core::obs::ReceiverObs;
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::storage::Storage;
use vigil_core::{ConsumeError, Signal};

/// Records per batch handed to the sink. One batch is also the most that a crash between
/// acceptance and checkpoint can duplicate.
pub const BATCH_RECORDS: usize = 1024;
const CHUNK: usize = 256 * 1024;
/// Polls a reader survives without its file being seen, so that a file that is briefly unreadable
/// (or mid-rename) keeps its offset.
const POLLS_TO_FORGET: u32 = 3;
const CHECKPOINT_KEY: &[u8] = b"file_input.knownFiles";

/// Where batches go; the receiver blocks on its pipeline here.
pub trait Sink {
    fn send(&mut self, batch: Vec<ResourceLogs>) -> Result<(), ConsumeError>;
}

impl<F: FnMut(Vec<ResourceLogs>) -> Result<(), ConsumeError>> Sink for F {
    fn send(&mut self, batch: Vec<ResourceLogs>) -> Result<(), ConsumeError> {
        self(batch)
    }
}

/// The counters a tracker updates: otelcol's receiver counts through [`ReceiverObs`], and vigil's
/// own, labelled with the receiver id.
pub struct Counters {
    pub obs: ReceiverObs,
    pub invalid_utf8: Counter,
    pub truncated: Counter,
}

impl Counters {
    pub fn new(id: &str, obs: ReceiverObs) -> Counters {
        let l = [
            ("receiver", id.to_string()),
            ("transport", "file".to_string()),
        ];
        Counters {
            obs,
            invalid_utf8: metrics::counter!("vigil_filelog_invalid_utf8_records", &l),
            truncated: metrics::counter!("vigil_filelog_truncated_records", &l),
        }
    }
}

struct Reader {
    fp: Vec<u8>,
    /// Position after the last record the sink accepted (or the first one an operator holds): what
    /// is checkpointed.
    offset: u64,
    /// Where the next read starts: after the last record handed to the operators. Ahead of
    /// `offset` while an operator (recombine, container) holds records; back to `offset` when the
    /// operators' state is dropped.
    read_to: u64,
    path: PathBuf,
    file: Option<File>,
    state: PipelineState,
    /// An unterminated tail seen at this end of file, and when: flushed after `force_flush_period`.
    tail_seen: Option<(u64, Instant)>,
    missed_polls: u32,
    matched: bool,
    /// Records up to `offset` (`include_file_record_number`), and up to `read_to`.
    records: u64,
    read_records: u64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    fp: String,
    offset: u64,
    path: String,
    /// Absent in checkpoints written before record numbers were counted.
    #[serde(default)]
    records: u64,
}

struct Candidate {
    path: PathBuf,
    file: File,
    fp: Vec<u8>,
    len: u64,
}

/// Every file the receiver knows, and how to read them.
pub struct Tracker {
    cfg: Arc<Checked>,
    id: String,
    readers: Vec<Reader>,
    first_poll: bool,
    warned_binary: HashSet<PathBuf>,
    unreadable: HashSet<PathBuf>,
    storage: Option<Arc<dyn Storage>>,
    storage_failing: bool,
    counters: Counters,
    extra_attrs: Vec<KeyValue>,
    extra_resource: Vec<KeyValue>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn json_kvs(m: &std::collections::HashMap<String, serde_json::Value>) -> Vec<KeyValue> {
    let mut v: Vec<KeyValue> = m
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => kv_str(k, s.clone()),
            other => kv(k, crate::stanza::entry::json_to_value(other.clone())),
        })
        .collect();
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v
}

/// A record cut out of a file: its bytes and where it starts and ends.
struct Record {
    start: u64,
    end: u64,
    bytes: Vec<u8>,
    truncated: bool,
}

impl Tracker {
    /// A tracker; with storage, the offsets of a previous run are loaded from it.
    pub fn new(
        cfg: Arc<Checked>,
        id: &str,
        storage: Option<Arc<dyn Storage>>,
        obs: ReceiverObs,
    ) -> Tracker {
        let mut t = Tracker {
            extra_attrs: json_kvs(&cfg.raw.attributes),
            extra_resource: json_kvs(&cfg.raw.resource),
            cfg,
            id: id.to_string(),
            readers: Vec::new(),
            first_poll: true,
            warned_binary: HashSet::new(),
            unreadable: HashSet::new(),
            storage,
            storage_failing: false,
            counters: Counters::new(id, obs),
        };
        t.restore();
        t
    }

    fn restore(&mut self) {
        let Some(s) = &self.storage else { return };
        match s.get(CHECKPOINT_KEY) {
            Ok(Some(bytes)) => match serde_json::from_slice::<Vec<Saved>>(&bytes) {
                Ok(saved) => {
                    for r in saved {
                        let Ok(fp) = hex::decode(&r.fp) else { continue };
                        self.readers.push(Reader {
                            fp,
                            offset: r.offset,
                            read_to: r.offset,
                            path: PathBuf::from(r.path),
                            file: None,
                            state: PipelineState::default(),
                            tail_seen: None,
                            missed_polls: 0,
                            matched: false,
                            records: r.records,
                            read_records: r.records,
                        });
                    }
                    tracing::info!(receiver = %self.id, files = self.readers.len(), "filelog resumes from its checkpoint");
                }
                Err(e) => {
                    tracing::warn!(receiver = %self.id, error = %e, "filelog checkpoint is unreadable; starting without it")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(receiver = %self.id, error = %e, "cannot read the filelog checkpoint; starting without it")
            }
        }
    }

    fn checkpoint(&mut self) {
        let Some(s) = &self.storage else { return };
        let saved: Vec<Saved> = self
            .readers
            .iter()
            .map(|r| Saved {
                fp: hex::encode(&r.fp),
                offset: r.offset,
                path: r.path.display().to_string(),
                records: r.records,
            })
            .collect();
        let bytes = serde_json::to_vec(&saved).unwrap_or_default();
        match s.set(CHECKPOINT_KEY, &bytes) {
            Ok(()) => self.storage_failing = false,
            Err(e) => {
                if !self.storage_failing {
                    tracing::error!(receiver = %self.id, error = %e, "cannot write the filelog checkpoint; offsets after a restart may repeat lines");
                }
                self.storage_failing = true;
            }
        }
    }

    /// How many files are known (for tests and diagnostics).
    pub fn known_files(&self) -> usize {
        self.readers.len()
    }

    fn find_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let max_age = self.cfg.raw.exclude_older_than;
        let now = SystemTime::now();
        for pat in &self.cfg.include {
            // A directory that vanished, or one we may not list, yields nothing: that is no error.
            let Ok(paths) = glob::glob(pat.as_str()) else {
                continue;
            };
            for p in paths.flatten() {
                if self.cfg.exclude.iter().any(|x| x.matches_path(&p)) {
                    continue;
                }
                if !max_age.is_zero() {
                    let modified = std::fs::metadata(&p).and_then(|m| m.modified());
                    // As fileconsumer: a file whose age cannot be read is kept.
                    if modified.is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > max_age))
                    {
                        continue;
                    }
                }
                out.push(p);
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn open(&mut self, path: PathBuf) -> Option<Candidate> {
        // Look before opening: opening a FIFO would block the reader until someone writes to it.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                if self.unreadable.insert(path.clone()) {
                    tracing::error!(receiver = %self.id, path = %path.display(), error = %e, "cannot open log file; will retry at each poll");
                }
                return None;
            }
        };
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        let mut fp = vec![0u8; self.cfg.raw.fingerprint_size.0];
        let n = match read_full_at(&file, &mut fp, 0) {
            Ok(n) => n,
            Err(e) => {
                if self.unreadable.insert(path.clone()) {
                    tracing::error!(receiver = %self.id, path = %path.display(), error = %e, "cannot read log file; will retry at each poll");
                }
                return None;
            }
        };
        self.unreadable.remove(&path);
        fp.truncate(n);
        if fp.is_empty() {
            return None;
        }
        if !matches!(self.cfg.encoding, Encoding::Nop) && fp.contains(&0) {
            if self.warned_binary.insert(path.clone()) {
                tracing::warn!(receiver = %self.id, path = %path.display(), "skipping a binary file (it holds NUL bytes); set encoding: nop to read it as bytes");
            }
            return None;
        }
        Some(Candidate {
            path,
            file,
            fp,
            len: meta.len(),
        })
    }

    /// One poll: discover, match, read. Returns the number of records the sink accepted.
    pub fn poll(&mut self, sink: &mut dyn Sink) -> usize {
        let paths = self.find_paths();
        let mut cands: Vec<Candidate> = paths.into_iter().filter_map(|p| self.open(p)).collect();
        for r in &mut self.readers {
            r.matched = false;
        }
        let mut assign: Vec<Option<usize>> = vec![None; cands.len()];
        // First the path a reader had, then any path: a file renamed by rotation keeps its reader.
        for (ci, c) in cands.iter().enumerate() {
            if let Some(ri) = self
                .readers
                .iter()
                .position(|r| !r.matched && r.path == c.path && c.fp.starts_with(&r.fp))
            {
                self.readers[ri].matched = true;
                assign[ci] = Some(ri);
            }
        }
        for (ci, c) in cands.iter().enumerate() {
            if assign[ci].is_some() {
                continue;
            }
            if let Some(ri) = self
                .readers
                .iter()
                .position(|r| !r.matched && c.fp.starts_with(&r.fp))
            {
                self.readers[ri].matched = true;
                assign[ci] = Some(ri);
            }
        }
        let mut new_readers = Vec::new();
        for (ci, c) in cands.iter().enumerate() {
            if assign[ci].is_some() {
                continue;
            }
            // A copy of a known file (copytruncate's copy, possibly still being written) is not new.
            let dup = self
                .readers
                .iter()
                .any(|r| r.fp.starts_with(&c.fp) || c.fp.starts_with(&r.fp))
                || cands.iter().enumerate().any(|(j, o)| {
                    j != ci
                        && (assign[j].is_some() || j < ci)
                        && (o.fp.starts_with(&c.fp) || c.fp.starts_with(&o.fp))
                });
            if dup {
                continue;
            }
            new_readers.push(ci);
        }
        for ci in new_readers {
            let c = &cands[ci];
            let offset = if self.first_poll && !self.cfg.start_at_beginning {
                c.len
            } else {
                0
            };
            self.readers.push(Reader {
                fp: c.fp.clone(),
                offset,
                read_to: offset,
                path: c.path.clone(),
                file: None,
                state: PipelineState::default(),
                tail_seen: None,
                missed_polls: 0,
                matched: true,
                records: 0,
                read_records: 0,
            });
            assign[ci] = Some(self.readers.len() - 1);
        }
        self.first_poll = false;

        let mut accepted = 0;
        // Files that left the glob (renamed away or deleted) are read to their end first: their lines
        // are older than whatever replaced them.
        for ri in 0..self.readers.len() {
            if self.readers[ri].matched {
                continue;
            }
            self.readers[ri].missed_polls += 1;
            if self.readers[ri].file.is_some() {
                accepted += self.read(ri, sink);
                self.readers[ri].file = None;
            }
        }
        let held_limit = self.cfg.raw.max_concurrent_files.max(1);
        let mut held = 0;
        let mut delete = Vec::new();
        // Known files before new ones: a rotated file's lines come before its successor's.
        let mut order: Vec<(usize, Candidate)> = cands
            .drain(..)
            .enumerate()
            .filter_map(|(ci, c)| assign[ci].map(|ri| (ri, c)))
            .collect();
        order.sort_by_key(|(ri, _)| *ri);
        for (ri, c) in order {
            let r = &mut self.readers[ri];
            r.missed_polls = 0;
            r.path = c.path;
            if c.fp.len() > r.fp.len() {
                r.fp = c.fp;
            }
            if c.len < r.read_to {
                // Same first bytes but shorter than what we read: truncated and rewritten.
                r.offset = 0;
                r.read_to = 0;
                r.records = 0;
                r.read_records = 0;
                r.state = PipelineState::default();
            }
            r.file = Some(c.file);
            let (n, at_end) = self.read_inner(ri, sink);
            accepted += n;
            let r = &mut self.readers[ri];
            if self.cfg.raw.delete_after_read && at_end {
                delete.push(ri);
            }
            held += 1;
            if held > held_limit {
                r.file = None;
            }
        }
        for ri in delete.into_iter().rev() {
            let r = self.readers.remove(ri);
            if let Err(e) = std::fs::remove_file(&r.path) {
                tracing::warn!(receiver = %self.id, path = %r.path.display(), error = %e, "delete_after_read: cannot delete the file");
            }
        }
        let before = self.readers.len();
        self.readers.retain(|r| r.missed_polls <= POLLS_TO_FORGET);
        if self.readers.len() != before {
            self.checkpoint();
        }
        accepted
    }

    fn read(&mut self, ri: usize, sink: &mut dyn Sink) -> usize {
        self.read_inner(ri, sink).0
    }

    /// Reads one file from its committed offset to its end. Returns the accepted records and whether
    /// everything up to the end was accepted.
    fn read_inner(&mut self, ri: usize, sink: &mut dyn Sink) -> (usize, bool) {
        let Some(file) = self.readers[ri].file.take() else {
            return (0, false);
        };
        let res = self.read_file(ri, &file, sink);
        self.readers[ri].file = Some(file);
        res
    }

    fn read_file(&mut self, ri: usize, file: &File, sink: &mut dyn Sink) -> (usize, bool) {
        let cfg = Arc::clone(&self.cfg);
        let max = cfg.raw.max_log_size.0;
        let path_str = self.readers[ri].path.display().to_string();
        let file_attrs = self.file_attrs(&self.readers[ri].path);
        let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
        let mut buf_start = self.readers[ri].read_to;
        let mut pos = buf_start;
        let mut scan = 0usize; // bytes of buf already searched for a newline
        let mut truncating: Option<Record> = None;
        let mut multi: Option<Record> = None;
        let mut batch = Batch::default();
        let mut accepted = 0;
        let mut records: Vec<Record> = Vec::new();
        let mut out: Vec<Entry> = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        let mut replaced = false;
        loop {
            let n = match file.read_at(&mut chunk, pos) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(receiver = %self.id, path = %path_str, error = %e, "read failed; will retry at the next poll");
                    return (accepted, false);
                }
            };
            // copytruncate reuses the inode: if the file was truncated and rewritten since the
            // fingerprint was taken, these bytes belong to new content and our offset means nothing
            // here. Stop without them; the copy carries the rest under the same fingerprint.
            if n > 0 && !self.same_start(ri, file) {
                replaced = true;
                break;
            }
            let eof = n == 0;
            buf.extend_from_slice(&chunk[..n]);
            pos += n as u64;
            // Cut complete lines out of the buffer.
            let mut line_start = 0usize;
            while let Some(i) = memchr::memchr(b'\n', &buf[scan..]) {
                let nl = scan + i;
                let mut line_end = nl;
                if line_end > line_start && buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                let start_off = buf_start + line_start as u64;
                let end_off = buf_start + nl as u64 + 1;
                if let Some(mut t) = truncating.take() {
                    t.end = end_off;
                    records.push(t);
                } else {
                    let bytes = &buf[line_start..line_end];
                    let (bytes, truncated) = if bytes.len() > max {
                        (&bytes[..max], true)
                    } else {
                        (bytes, false)
                    };
                    split_line(
                        &cfg.split,
                        &mut multi,
                        &mut records,
                        start_off,
                        end_off,
                        bytes,
                        truncated,
                        max,
                    );
                }
                line_start = nl + 1;
                scan = line_start;
            }
            // A line longer than max_log_size: keep its first max bytes and drop the rest as it comes.
            if truncating.is_none() && buf.len() - line_start > max {
                truncating = Some(Record {
                    start: buf_start + line_start as u64,
                    end: 0,
                    bytes: buf[line_start..line_start + max].to_vec(),
                    truncated: true,
                });
            }
            if truncating.is_some() {
                buf_start += buf.len() as u64;
                buf.clear();
                scan = 0;
            } else {
                buf.drain(..line_start);
                buf_start += line_start as u64;
                scan = buf.len();
            }
            // Turn records into entries and batches; send full batches.
            for rec in records.drain(..) {
                self.make_entries(ri, rec, &file_attrs, &path_str, &mut out, &mut batch);
                for e in out.drain(..) {
                    batch.push(e);
                }
                if batch.len >= BATCH_RECORDS {
                    match self.send(ri, &mut batch, sink) {
                        Some(n) => accepted += n,
                        None => return (accepted, false),
                    }
                }
            }
            if eof {
                break;
            }
        }
        // The unterminated tail: a partial last line, an open multiline record or a long line being cut.
        let tail: Option<Record> = if replaced {
            None
        } else if let Some(t) = truncating.take() {
            Some(Record { end: pos, ..t })
        } else {
            let mut pending = multi.take();
            if !buf.is_empty() {
                let mut bytes = &buf[..];
                if bytes.last() == Some(&b'\r') {
                    bytes = &bytes[..bytes.len() - 1];
                }
                let start_off = buf_start;
                let mut tmp = Vec::new();
                split_line(
                    &cfg.split,
                    &mut pending,
                    &mut tmp,
                    start_off,
                    pos,
                    bytes,
                    false,
                    max,
                );
                // Lines mode puts the tail out as a record; a multiline split may also close one.
                for r in tmp {
                    if r.end == pos && matches!(cfg.split, Split::Lines) {
                        pending = Some(r);
                    } else {
                        records.push(r);
                    }
                }
            }
            pending
        };
        let mut at_end = !replaced;
        if replaced {
            self.readers[ri].tail_seen = None;
        } else if let Some(t) = tail {
            let r = &mut self.readers[ri];
            let flush = match r.tail_seen {
                Some((seen_end, since)) => {
                    seen_end == pos && since.elapsed() >= cfg.raw.force_flush_period
                }
                None => false,
            };
            if flush {
                records.push(t);
                r.tail_seen = None;
            } else {
                if r.tail_seen.is_none_or(|(e, _)| e != pos) {
                    r.tail_seen = Some((pos, Instant::now()));
                }
                at_end = false;
            }
        } else {
            self.readers[ri].tail_seen = None;
        }
        for rec in records.drain(..) {
            self.make_entries(ri, rec, &file_attrs, &path_str, &mut out, &mut batch);
            for e in out.drain(..) {
                batch.push(e);
            }
        }
        if at_end && self.readers[ri].state.held_from().is_some() {
            // Partial container lines at the very end: wait for their end like any other tail.
            at_end = false;
        }
        // Records an operator held past their time (recombine's force_flush_period) go out now.
        let r = &mut self.readers[ri];
        cfg.pipeline
            .flush_due(Some(&path_str), &mut r.state, &mut out);
        batch.end = batch.end.max(r.read_to);
        for e in out.drain(..) {
            batch.push(e);
        }
        if batch.len > 0 || batch.end > self.readers[ri].offset {
            match self.send(ri, &mut batch, sink) {
                Some(n) => accepted += n,
                None => return (accepted, false),
            }
        }
        (accepted, at_end)
    }

    /// Whether the file still starts with the reader's fingerprint.
    fn same_start(&self, ri: usize, file: &File) -> bool {
        let fp = &self.readers[ri].fp;
        let mut now = vec![0u8; fp.len()];
        matches!(read_full_at(file, &mut now, 0), Ok(n) if n == fp.len() && now == *fp)
    }

    fn file_attrs(&self, path: &Path) -> Vec<KeyValue> {
        let raw = &self.cfg.raw;
        let mut v = self.extra_attrs.clone();
        if raw.include_file_name {
            if let Some(n) = path.file_name() {
                v.push(kv_str("log.file.name", n.to_string_lossy()));
            }
        }
        if raw.include_file_path {
            v.push(kv_str("log.file.path", path.display().to_string()));
        }
        if raw.include_file_name_resolved || raw.include_file_path_resolved {
            if let Ok(real) = std::fs::canonicalize(path) {
                if raw.include_file_name_resolved {
                    if let Some(n) = real.file_name() {
                        v.push(kv_str("log.file.name_resolved", n.to_string_lossy()));
                    }
                }
                if raw.include_file_path_resolved {
                    v.push(kv_str("log.file.path_resolved", real.display().to_string()));
                }
            }
        }
        if raw.include_file_owner_name || raw.include_file_owner_group_name {
            use std::os::unix::fs::MetadataExt;
            if let Ok(m) = std::fs::metadata(path) {
                if raw.include_file_owner_name {
                    if let Some(n) = id_name("/etc/passwd", m.uid()) {
                        v.push(kv_str("log.file.owner.name", n));
                    }
                }
                if raw.include_file_owner_group_name {
                    if let Some(n) = id_name("/etc/group", m.gid()) {
                        v.push(kv_str("log.file.owner.group.name", n));
                    }
                }
            }
        }
        v
    }

    fn make_entries(
        &mut self,
        ri: usize,
        rec: Record,
        file_attrs: &[KeyValue],
        path: &str,
        out: &mut Vec<Entry>,
        batch: &mut Batch,
    ) {
        let raw = &self.cfg.raw;
        let r = &mut self.readers[ri];
        r.read_records += 1;
        let record_number = r.read_records;
        let mut bytes = rec.bytes;
        // stanza trims every token unless told to preserve (or the encoding is nop); an empty
        // token is not sent.
        let nop = matches!(self.cfg.encoding, Encoding::Nop);
        if !raw.preserve_trailing_whitespaces && !nop {
            let keep = bytes.trim_ascii_end().len();
            bytes.truncate(keep);
        }
        if !raw.preserve_leading_whitespaces && !nop {
            let cut = bytes.len() - bytes.trim_ascii_start().len();
            bytes.drain(..cut);
        }
        if bytes.is_empty() {
            batch.end = rec.end;
            r.read_to = rec.end;
            return;
        }
        let body = match self.cfg.encoding {
            Encoding::Utf8 => match String::from_utf8(bytes) {
                Ok(s) => Value::StringValue(s),
                Err(e) => {
                    self.counters.invalid_utf8.increment(1);
                    Value::StringValue(String::from_utf8_lossy(e.as_bytes()).into_owned())
                }
            },
            Encoding::Nop => Value::BytesValue(bytes),
            Encoding::Other(enc) => {
                Value::StringValue(enc.decode_without_bom_handling(&bytes).0.into_owned())
            }
        };
        let mut e = Entry {
            body,
            attributes: file_attrs.to_vec(),
            resource: self.extra_resource.clone(),
            timestamp: 0,
            observed: batch.observed(),
            ..Entry::text(String::new(), 0)
        };
        if rec.truncated {
            self.counters.truncated.increment(1);
            e.attributes
                .push(kv("log.truncated", Value::BoolValue(true)));
        }
        if self.cfg.raw.include_file_record_number {
            e.attributes.push(kv(
                "log.file.record_number",
                Value::IntValue(record_number as i64),
            ));
        }
        if self.cfg.raw.include_file_record_offset {
            e.attributes.push(kv(
                "log.file.record_offset",
                Value::IntValue(rec.start as i64),
            ));
        }
        batch.end = rec.end;
        let r = &mut self.readers[ri];
        r.read_to = rec.end;
        if self.cfg.pipeline.is_empty() {
            out.push(e);
        } else {
            self.cfg
                .pipeline
                .process(e, rec.start, Some(path), &mut r.state, out);
        }
    }

    /// Hands the batch to the sink. On acceptance the reader's offset moves to the batch's end (or to
    /// the first byte an operator still holds) and the checkpoint is written; on refusal nothing moves.
    fn send(&mut self, ri: usize, batch: &mut Batch, sink: &mut dyn Sink) -> Option<usize> {
        let n = batch.len;
        let end = batch.end;
        let data = batch.take();
        let result = if n == 0 { Ok(()) } else { sink.send(data) };
        self.counters.obs.end_op(Signal::Logs, n, &result);
        match result {
            Ok(()) => {}
            Err(ConsumeError::Permanent { reason, .. }) => {
                // Bad data no retry can fix: count it and move on, or the file would be stuck forever.
                tracing::warn!(receiver = %self.id, %reason, records = n, "pipeline rejected log records");
            }
            Err(ConsumeError::Retryable { reason, .. }) => {
                tracing::debug!(receiver = %self.id, %reason, "pipeline refused log records; re-reading them at the next poll");
                let r = &mut self.readers[ri];
                r.state = PipelineState::default();
                r.read_to = r.offset;
                r.read_records = r.records;
                r.tail_seen = None;
                return None;
            }
        }
        let r = &mut self.readers[ri];
        let commit = match r.state.held_from() {
            Some(h) => end.min(h),
            None => end,
        };
        if commit > r.offset {
            r.offset = commit;
        }
        // Records an operator still holds are counted as committed: after a restart they are read
        // again under the next numbers, a gap rather than a repeat.
        r.records = r.read_records;
        self.checkpoint();
        Some(n)
    }
}

/// Consecutive records, grouped by resource and scope, and where they end in the file.
#[derive(Default)]
struct Batch {
    groups: crate::stanza::Grouper,
    len: usize,
    end: u64,
    observed: Option<u64>,
}

impl Batch {
    fn observed(&mut self) -> u64 {
        *self.observed.get_or_insert_with(now_nanos)
    }

    fn push(&mut self, e: Entry) {
        self.groups.push(e);
        self.len += 1;
    }

    fn take(&mut self) -> Vec<ResourceLogs> {
        self.len = 0;
        self.observed = None;
        self.groups.take()
    }
}

/// Feeds one line to the record splitter; complete records are pushed to `out`.
#[allow(clippy::too_many_arguments)]
fn split_line(
    split: &Split,
    cur: &mut Option<Record>,
    out: &mut Vec<Record>,
    start: u64,
    end: u64,
    line: &[u8],
    truncated: bool,
    max: usize,
) {
    let append = |r: &mut Record, line: &[u8]| {
        if r.bytes.len() + 1 + line.len() > max {
            r.truncated = true;
        } else {
            r.bytes.push(b'\n');
            r.bytes.extend_from_slice(line);
        }
        r.end = end;
    };
    match split {
        Split::Lines => out.push(Record {
            start,
            end,
            bytes: line.to_vec(),
            truncated,
        }),
        Split::Start(re) => {
            if re.is_match(line) {
                if let Some(r) = cur.take() {
                    out.push(r);
                }
                *cur = Some(Record {
                    start,
                    end,
                    bytes: line.to_vec(),
                    truncated,
                });
            } else {
                match cur {
                    Some(r) => append(r, line),
                    None => {
                        *cur = Some(Record {
                            start,
                            end,
                            bytes: line.to_vec(),
                            truncated,
                        })
                    }
                }
            }
        }
        Split::End(re) => {
            match cur {
                Some(r) => append(r, line),
                None => {
                    *cur = Some(Record {
                        start,
                        end,
                        bytes: line.to_vec(),
                        truncated,
                    })
                }
            }
            if re.is_match(line) {
                if let Some(r) = cur.take() {
                    out.push(r);
                }
            }
        }
    }
}

fn read_full_at(f: &File, buf: &mut [u8], mut off: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], off) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                off += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The name of `id` in a passwd- or group-format file (`name:x:id:...`), as Go's os/user reads
/// them without cgo. Hand-written: the format is one split per line and no crate in the tree reads it.
fn id_name(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_string())
    })
}
