//! CloudWatch Logs' `PutLogEvents`, shared by `awsemf` and `awscloudwatchlogs` as otelcol's
//! `internal/aws/cwlogs` is shared by its two exporters: events checked and cut into calls at
//! CloudWatch's limits, the calls made with the group and stream created when missing, and a
//! request that remembers how many calls went through, so a retry never duplicates an event.
//!
//! Where vigil differs from otelcol's pusher, on purpose: an event whose time is outside
//! CloudWatch's window, or whose message is empty, is dropped and counted instead of failing the
//! whole export (otelcol's error makes exporterhelper resend the events already put); a stream's
//! events are sorted before they are cut (otelcol sorts within each call), so a call spans as little
//! time as it can; and the batch byte limit is `PutLogEvents`' 1 MiB (otelcol's pusher compares with
//! the 256 KiB event limit).

use crate::helper::aws::{ApiError, JsonApi};
use crate::helper::queue::Persist;
use crate::helper::SendError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use vigil_core::ConfigError;

/// Events in one `PutLogEvents` call.
pub const MAX_EVENTS: usize = 10_000;
/// Bytes of one call: the messages plus [`EVENT_OVERHEAD`] each.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch counts for each event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// One event, its overhead included; a longer message is cut and ends in [`TRUNCATED`].
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// What a cut message ends in (otelcol's suffix).
pub const TRUNCATED: &str = "[Truncated...]";
/// The most time between the first and last event of one call.
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
/// CloudWatch refuses events older than this (or than the group's retention)...
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// ... and events further than this in the future.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// CloudWatch's retention periods, in days (0: never expire).
pub const RETENTION_DAYS: &[i64] = &[
    0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Checks `log_retention` against CloudWatch's periods.
pub fn validate_retention(days: i64) -> Result<(), ConfigError> {
    if RETENTION_DAYS.contains(&days) {
        return Ok(());
    }
    Err(ConfigError::at(
        "log_retention",
        format!("{days} is not one of CloudWatch's retention periods: {RETENTION_DAYS:?} (0: never expire)"),
    ))
}

/// Checks `tags` as `CreateLogGroup` takes them: at most 50; keys of 1 to 128 and values of at
/// most 256 characters, letters, digits, spaces and `_.:/=+-@`.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if tags.len() > 50 {
        return Err(ConfigError::at(
            "tags",
            format!("has {} tags; CloudWatch Logs takes at most 50", tags.len()),
        ));
    }
    let allowed = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
    for (k, v) in tags {
        let at = |m: String| ConfigError::at(format!("tags::{k}"), m);
        if k.is_empty() || k.chars().count() > 128 || !k.chars().all(allowed) {
            return Err(at(
                "a tag key must have 1 to 128 letters, digits, spaces or _.:/=+-@".into(),
            ));
        }
        if v.chars().count() > 256 || !v.chars().all(allowed) {
            return Err(at(format!(
                "{v:?}: a tag value must have at most 256 letters, digits, spaces or _.:/=+-@"
            )));
        }
    }
    Ok(())
}

/// One `PutLogEvents` call: events as (milliseconds, message), in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    pub group: String,
    pub stream: String,
    pub events: Vec<(i64, String)>,
}

/// Counters of events that are changed or left out before they are sent.
#[derive(Clone)]
pub struct EventCounters {
    /// Messages cut to [`MAX_EVENT_BYTES`].
    pub truncated: metrics::Counter,
    /// Events outside CloudWatch's time window, or with an empty message.
    pub dropped: metrics::Counter,
}

/// Cuts one stream's events into calls, as otelcol's pusher does: a message over
/// [`MAX_EVENT_BYTES`] is cut (at a character boundary) and ends in [`TRUNCATED`], a zero time
/// becomes `now_ms`, an empty message or a time more than 14 days old or 2 hours ahead is dropped;
/// a call holds at most [`MAX_EVENTS`] events, [`MAX_BATCH_BYTES`] and [`MAX_SPAN_MS`] of time.
/// Returns the calls and how many events were dropped.
pub fn split(
    group: &str,
    stream: &str,
    events: Vec<(i64, String)>,
    now_ms: i64,
    counters: &EventCounters,
) -> (Vec<LogBatch>, u64) {
    let mut kept = Vec::with_capacity(events.len());
    let mut dropped = 0u64;
    for (t, mut m) in events {
        let t = if t == 0 { now_ms } else { t };
        if m.is_empty() || now_ms - t > MAX_AGE_MS || t - now_ms > MAX_AHEAD_MS {
            dropped += 1;
            continue;
        }
        if m.len() + EVENT_OVERHEAD > MAX_EVENT_BYTES {
            let mut cut = MAX_EVENT_BYTES - EVENT_OVERHEAD - TRUNCATED.len();
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push_str(TRUNCATED);
            counters.truncated.increment(1);
        }
        kept.push((t, m));
    }
    if dropped > 0 {
        counters.dropped.increment(dropped);
        tracing::warn!(
            group,
            stream,
            dropped,
            "log events with an empty message, older than 14 days or more than 2 hours ahead were \
             dropped: CloudWatch Logs refuses them"
        );
    }
    // Stable: events of the same millisecond keep the order they came in.
    kept.sort_by_key(|e| e.0);
    let mut out: Vec<LogBatch> = Vec::new();
    let mut bytes = 0;
    for e in kept {
        let size = e.1.len() + EVENT_OVERHEAD;
        let full = out.last().is_none_or(|b| {
            b.events.len() >= MAX_EVENTS
                || bytes + size > MAX_BATCH_BYTES
                || b.events.first().is_some_and(|f| e.0 - f.0 > MAX_SPAN_MS)
        });
        if full {
            out.push(LogBatch {
                group: group.into(),
                stream: stream.into(),
                events: Vec::new(),
            });
            bytes = 0;
        }
        bytes += size;
        if let Some(b) = out.last_mut() {
            b.events.push(e);
        }
    }
    (out, dropped)
}

/// A batch's calls and how many went through.
pub struct CwRequest {
    pub batches: Vec<LogBatch>,
    pub done: AtomicUsize,
    /// Events left out before sending; reported once, with the delivery.
    pub dropped: u64,
}

impl CwRequest {
    pub fn new(batches: Vec<LogBatch>, dropped: u64) -> CwRequest {
        CwRequest {
            batches,
            done: AtomicUsize::new(0),
            dropped,
        }
    }

    /// The events still to send.
    pub fn events(&self) -> usize {
        let done = self.done.load(Ordering::SeqCst);
        self.batches.iter().skip(done).map(|b| b.events.len()).sum()
    }
}

/// Stored as the JSON of the calls not yet made.
impl Persist for CwRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let done = self.done.load(Ordering::SeqCst).min(self.batches.len());
        serde_json::to_vec(&self.batches[done..]).unwrap_or_default()
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(CwRequest::new(serde_json::from_slice(bytes).ok()?, 0))
    }
}

/// Groups this exporter created whose retention is not set yet, at most this many.
pub const MAX_PENDING_RETENTION: usize = 1000;

/// A CloudWatch Logs client for one exporter: the retention and tags of the groups it creates.
pub struct CwLogs {
    pub api: JsonApi,
    pub log_retention: i64,
    pub tags: BTreeMap<String, String>,
    /// Groups created whose `PutRetentionPolicy` has not gone through (the attempt failed or timed
    /// out after `CreateLogGroup`): the retry finds the group there and sets it then. Bounded by
    /// [`MAX_PENDING_RETENTION`]; past it a group keeps CloudWatch's default and a warning says so.
    pub pending_retention: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl CwLogs {
    pub fn new(api: JsonApi, log_retention: i64, tags: BTreeMap<String, String>) -> CwLogs {
        CwLogs {
            api,
            log_retention,
            tags,
            pending_retention: Default::default(),
        }
    }

    /// Sets the retention of a group this exporter created (none: nothing to set).
    async fn set_retention(&self, group: &str, created: bool) -> Result<(), SendError> {
        if self.log_retention <= 0 {
            return Ok(());
        }
        {
            let mut pending = vigil_core::lock(&self.pending_retention);
            if created {
                if pending.len() >= MAX_PENDING_RETENTION {
                    tracing::warn!(group, "too many log groups wait for their retention; this one keeps CloudWatch's default");
                    return Ok(());
                }
                pending.insert(group.to_string());
            } else if !pending.contains(group) {
                return Ok(());
            }
        }
        let r = json!({"logGroupName": group, "retentionInDays": self.log_retention});
        self.call("PutRetentionPolicy", &r)
            .await
            .map_err(|e| self.error("PutRetentionPolicy", e))?;
        vigil_core::lock(&self.pending_retention).remove(group);
        Ok(())
    }

    /// One CloudWatch Logs action (`target`, as in `Logs_20140328.{target}`). Every call says
    /// `x-amzn-logs-format: json/emf`, as otelcol's client does, so CloudWatch extracts the metrics
    /// of EMF events (other events are stored as they are).
    async fn call(&self, target: &str, body: &Value) -> Result<Value, ApiError> {
        let amz_target = format!("Logs_20140328.{target}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", amz_target.as_str()),
            ("x-amzn-logs-format", "json/emf"),
        ];
        self.api.post("", &headers, body).await
    }

    fn error(&self, call: &str, e: ApiError) -> SendError {
        e.send_error(self.api.name(), call)
    }

    /// Creates the stream, and when its group is missing too, the group (with tags and
    /// retention) first, as otelcol does; "already exists" is fine (another agent got there).
    async fn create(&self, b: &LogBatch) -> Result<(), SendError> {
        let stream = json!({"logGroupName": b.group, "logStreamName": b.stream});
        match self.call("CreateLogStream", &stream).await {
            Ok(_) => return Ok(()),
            Err(e) if e.error_type == "ResourceAlreadyExistsException" => return Ok(()),
            Err(e) if e.error_type == "ResourceNotFoundException" => {}
            Err(e) => return Err(self.error("CreateLogStream", e)),
        }
        let mut group = json!({"logGroupName": b.group});
        if !self.tags.is_empty() {
            group["tags"] = json!(self.tags);
        }
        match self.call("CreateLogGroup", &group).await {
            Ok(_) => self.set_retention(&b.group, true).await?,
            // Created by an attempt of ours that did not get to its retention, or by someone else.
            Err(e) if e.error_type == "ResourceAlreadyExistsException" => {
                self.set_retention(&b.group, false).await?
            }
            Err(e) => return Err(self.error("CreateLogGroup", e)),
        }
        match self.call("CreateLogStream", &stream).await {
            Ok(_) => Ok(()),
            Err(e) if e.error_type == "ResourceAlreadyExistsException" => Ok(()),
            Err(e) => Err(self.error("CreateLogStream", e)),
        }
    }

    /// One call; the events CloudWatch refused for their time (`rejectedLogEventsInfo`), which
    /// are final and not retried.
    async fn put(&self, b: &LogBatch) -> Result<u64, SendError> {
        let events: Vec<Value> = b
            .events
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": m}))
            .collect();
        let body = json!({"logGroupName": b.group, "logStreamName": b.stream, "logEvents": events});
        let answer = match self.call("PutLogEvents", &body).await {
            Ok(a) => a,
            Err(e) if e.error_type == "ResourceNotFoundException" => {
                self.create(b).await?;
                self.call("PutLogEvents", &body)
                    .await
                    .map_err(|e| self.error("PutLogEvents", e))?
            }
            Err(e) => return Err(self.error("PutLogEvents", e)),
        };
        Ok(rejected(&answer, b.events.len()))
    }

    /// Makes the calls of `req` not yet made, remembering each that went through; the events
    /// CloudWatch refused for their time.
    pub async fn send(&self, req: &CwRequest) -> Result<u64, SendError> {
        let mut rejected = 0;
        let start = req.done.load(Ordering::SeqCst);
        for (i, b) in req.batches.iter().enumerate().skip(start) {
            rejected += self.put(b).await?;
            req.done.store(i + 1, Ordering::SeqCst);
        }
        Ok(rejected)
    }
}

/// The events of a call of `n` that `rejectedLogEventsInfo` names: the too-new ones from their
/// start index, the too-old and expired ones up to their end index (they overlap).
fn rejected(answer: &Value, n: usize) -> u64 {
    let info = &answer["rejectedLogEventsInfo"];
    let n = n as i64;
    let mut new = 0;
    if let Some(i) = info["tooNewLogEventStartIndex"].as_i64() {
        new = (n - i).clamp(0, n);
    }
    let mut old = 0;
    if let Some(i) = info["tooOldLogEventEndIndex"].as_i64() {
        old = (i + 1).clamp(0, n);
    }
    if let Some(i) = info["expiredLogEventEndIndex"].as_i64() {
        old = old.max((i + 1).clamp(0, n));
    }
    (new + old).min(n) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_930_000_000;

    fn counters() -> EventCounters {
        EventCounters {
            truncated: metrics::Counter::noop(),
            dropped: metrics::Counter::noop(),
        }
    }

    fn events(n: usize, size: usize) -> Vec<(i64, String)> {
        (0..n).map(|i| (NOW + i as i64, "x".repeat(size))).collect()
    }

    #[test]
    fn a_call_holds_at_most_ten_thousand_events() {
        let (b, dropped) = split("g", "s", events(20_001, 1), NOW, &counters());
        assert_eq!(dropped, 0);
        let sizes: Vec<usize> = b.iter().map(|b| b.events.len()).collect();
        assert_eq!(sizes, [MAX_EVENTS, MAX_EVENTS, 1]);
    }

    #[test]
    fn a_call_holds_at_most_one_mebibyte_with_the_overhead() {
        // 1000 + 26 bytes each: 1022 fit in 1 048 576 (1 048 572), the 1023rd would not.
        let (b, _) = split("g", "s", events(1023, 1000), NOW, &counters());
        let sizes: Vec<usize> = b.iter().map(|b| b.events.len()).collect();
        assert_eq!(sizes, [1022, 1]);
        let bytes: usize = b[0].events.iter().map(|e| e.1.len() + EVENT_OVERHEAD).sum();
        assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        // Without the overhead all 1023 (1 023 000 bytes) would have fitted.
        const { assert!(1023 * 1000 <= MAX_BATCH_BYTES) };
    }

    #[test]
    fn a_call_spans_at_most_a_day_and_is_in_time_order() {
        let hour = 3600 * 1000;
        let evs = vec![
            (NOW, "c".to_string()),
            (NOW - 13 * 24 * hour, "a".to_string()),
            (NOW - 13 * 24 * hour, "a2".to_string()),
            (NOW - 12 * 24 * hour + 1, "b".to_string()),
            (NOW - 12 * 24 * hour, "b0".to_string()),
        ];
        let (b, _) = split("g", "s", evs, NOW, &counters());
        let msgs: Vec<Vec<&str>> = b
            .iter()
            .map(|b| b.events.iter().map(|e| e.1.as_str()).collect())
            .collect();
        // "b0" is exactly 24 h after "a" and may share its call; "b" is 1 ms further.
        assert_eq!(msgs, [vec!["a", "a2", "b0"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn an_event_over_256_kib_is_cut_as_otelcol_cuts_it() {
        let long = "é".repeat(200 * 1024); // 400 KiB of two-byte characters
        let (b, _) = split(
            "g",
            "s",
            vec![(NOW, long), (NOW, "ok".into())],
            NOW,
            &counters(),
        );
        assert_eq!(b.len(), 1);
        let m = &b[0].events[0].1;
        assert!(m.ends_with(TRUNCATED));
        assert!(m.len() + EVENT_OVERHEAD <= MAX_EVENT_BYTES, "{}", m.len());
        assert!(
            m.len() + EVENT_OVERHEAD >= MAX_EVENT_BYTES - 1,
            "cut no shorter than needed"
        );
        assert_eq!(b[0].events[1].1, "ok");
        // Exactly at the limit is kept whole.
        let exact = "y".repeat(MAX_EVENT_BYTES - EVENT_OVERHEAD);
        let (b, _) = split("g", "s", vec![(NOW, exact.clone())], NOW, &counters());
        assert_eq!(b[0].events[0].1, exact);
    }

    #[test]
    fn events_cloudwatch_would_refuse_are_dropped_and_a_zero_time_is_now() {
        let day = 24 * 3600 * 1000;
        let evs = vec![
            (NOW - 15 * day, "old".to_string()),
            (NOW + 3 * 3600 * 1000, "ahead".to_string()),
            (NOW, String::new()),
            (0, "untimed".to_string()),
        ];
        let (b, dropped) = split("g", "s", evs, NOW, &counters());
        assert_eq!(dropped, 3);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].events, [(NOW, "untimed".to_string())]);
    }

    #[test]
    fn a_stored_request_keeps_only_the_calls_not_yet_made() {
        let batch = |s: &str| LogBatch {
            group: "g".into(),
            stream: s.into(),
            events: vec![(1, "{}".into())],
        };
        let req = CwRequest::new(vec![batch("a"), batch("b"), batch("c")], 0);
        req.done.store(1, Ordering::SeqCst);
        assert_eq!(req.events(), 2);
        let back = CwRequest::from_bytes(&req.to_bytes()).unwrap();
        let streams: Vec<&str> = back.batches.iter().map(|b| b.stream.as_str()).collect();
        assert_eq!(streams, ["b", "c"]);
        assert_eq!(back.done.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn rejected_events_are_read_from_the_answer() {
        let a = json!({"rejectedLogEventsInfo": {"tooNewLogEventStartIndex": 8, "tooOldLogEventEndIndex": 1, "expiredLogEventEndIndex": 2}});
        assert_eq!(rejected(&a, 10), 2 + 3);
        assert_eq!(rejected(&json!({}), 10), 0);
    }

    #[test]
    fn tags_and_retention_are_checked() {
        assert!(validate_retention(7).is_ok());
        assert!(validate_retention(8)
            .unwrap_err()
            .to_string()
            .contains("log_retention"));
        let mut t = BTreeMap::new();
        t.insert("team".to_string(), "obs-1".to_string());
        assert!(validate_tags(&t).is_ok());
        t.insert("bad!".to_string(), "x".to_string());
        assert!(validate_tags(&t)
            .unwrap_err()
            .to_string()
            .contains("tags::bad!"));
    }
}
