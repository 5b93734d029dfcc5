//! The `recombine` operator: joins consecutive entries of one source into one, as stanza's does, so
//! that a Java stack trace or a CRI partial line arrives as one record. An entry that matches
//! `is_first_entry` starts a new record (the batch before it goes out); one that matches
//! `is_last_entry` ends one. A batch also goes out at `max_batch_size` entries, past
//! `max_log_size` bytes, at `max_unmatched_batch_size` entries before any match, and
//! `force_flush_period` after its first entry (the input polls for that; see `Pipeline::flush_due`).
//!
//! Batches are per source (`source_identifier`, the file path by default) and there are at most
//! `max_sources` of them: a new source beyond that flushes every batch first, as stanza does. Each
//! batch remembers the file offset of its first entry, so the reader never checkpoints past a
//! record that has not gone out.

use super::expr::Expr;
use crate::stanza::entry::{Entry, Field};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use vigil_core::otlp::common::v1::any_value::Value;

/// stanza's name for the batch of entries that carry no source identifier.
const DEFAULT_SOURCE: &str = "DefaultSourceIdentifier";

/// A compiled `recombine`.
#[derive(Debug, Clone)]
pub struct RecombineOp {
    /// `is_first_entry` (true) or `is_last_entry` (false).
    pub first: bool,
    pub expr: Expr,
    pub combine_field: Field,
    pub combine_with: String,
    /// 0: no limit.
    pub max_batch_size: usize,
    /// 0: no limit.
    pub max_unmatched_batch_size: usize,
    pub max_sources: usize,
    /// `overwrite_with: newest`: the newest entry's other fields are kept, not the oldest's.
    pub newest: bool,
    pub force_flush_period: Duration,
    pub source_identifier: Field,
    /// 0: no limit.
    pub max_log_size: usize,
}

#[derive(Debug)]
struct Batch {
    base: Entry,
    entries: usize,
    text: String,
    since: Instant,
    matched: bool,
    offset: u64,
}

/// The open batches of one `recombine`, per source.
#[derive(Debug, Default)]
pub struct RecombineState {
    batches: HashMap<String, Batch>,
}

impl RecombineState {
    /// The lowest file offset of an entry still in a batch.
    pub fn held_from(&self) -> Option<u64> {
        self.batches.values().map(|b| b.offset).min()
    }
}

impl RecombineOp {
    /// Takes `e` into its batch; what goes out (zero, one or two entries) is pushed to `out`. An
    /// expression that cannot be evaluated is an error and leaves `e` with the caller, for
    /// `on_error`.
    pub fn apply(
        &self,
        e: &mut Entry,
        offset: u64,
        st: &mut RecombineState,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let matches = self.expr.eval(e).map_err(|x| format!("recombine: {x}"))?;
        let source = match self.source_identifier.get_str(e) {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => DEFAULT_SOURCE.to_string(),
        };
        let e = std::mem::replace(e, Entry::text(String::new(), 0));
        if matches && self.first {
            self.flush_source(&source, st, out);
            self.add(e, offset, source, matches, st, out);
        } else if matches {
            self.add(e, offset, source.clone(), matches, st, out);
            self.flush_source(&source, st, out);
        } else {
            self.add(e, offset, source, matches, st, out);
        }
        Ok(())
    }

    fn add(
        &self,
        e: Entry,
        offset: u64,
        source: String,
        matches: bool,
        st: &mut RecombineState,
        out: &mut Vec<Entry>,
    ) {
        if !st.batches.contains_key(&source) && st.batches.len() >= self.max_sources.max(1) {
            tracing::warn!(
                max_sources = self.max_sources,
                "recombine: too many sources; flushing every batch (consider raising max_sources)"
            );
            self.flush_all(st, out);
        }
        let text = self.combine_field.get_str(&e).map(str::to_string);
        if text.is_none() {
            tracing::debug!(field = %self.combine_field, "recombine: the entry has no string combine_field");
        }
        let batch = match st.batches.entry(source.clone()) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let b = o.into_mut();
                b.entries += 1;
                if self.newest {
                    b.base = e;
                }
                b
            }
            std::collections::hash_map::Entry::Vacant(v) => v.insert(Batch {
                base: e,
                entries: 1,
                text: String::new(),
                since: Instant::now(),
                matched: false,
                offset,
            }),
        };
        batch.matched |= matches;
        if let Some(t) = text {
            if !batch.text.is_empty() {
                batch.text.push_str(&self.combine_with);
            }
            batch.text.push_str(&t);
        }
        let full = (self.max_log_size > 0 && batch.text.len() > self.max_log_size)
            || (self.max_batch_size > 0 && batch.entries >= self.max_batch_size)
            || (!batch.matched
                && self.max_unmatched_batch_size > 0
                && batch.entries >= self.max_unmatched_batch_size);
        if full {
            self.flush_source(&source, st, out);
        }
    }

    fn flush_source(&self, source: &str, st: &mut RecombineState, out: &mut Vec<Entry>) {
        if let Some(b) = st.batches.remove(source) {
            out.push(self.finish(b));
        }
    }

    fn finish(&self, b: Batch) -> Entry {
        let mut e = b.base;
        self.combine_field.set(&mut e, Value::StringValue(b.text));
        e
    }

    /// Every open batch, oldest first.
    pub fn flush_all(&self, st: &mut RecombineState, out: &mut Vec<Entry>) {
        let mut all: Vec<Batch> = st.batches.drain().map(|(_, b)| b).collect();
        all.sort_by_key(|b| b.since);
        out.extend(all.into_iter().map(|b| self.finish(b)));
    }

    /// The batches whose first entry came `force_flush_period` or more before `now`.
    pub fn flush_due(&self, now: Instant, st: &mut RecombineState, out: &mut Vec<Entry>) {
        let due: Vec<String> = st
            .batches
            .iter()
            .filter(|(_, b)| now.duration_since(b.since) >= self.force_flush_period)
            .map(|(k, _)| k.clone())
            .collect();
        let mut batches: Vec<Batch> = due.iter().filter_map(|k| st.batches.remove(k)).collect();
        batches.sort_by_key(|b| b.since);
        out.extend(batches.into_iter().map(|b| self.finish(b)));
    }
}
