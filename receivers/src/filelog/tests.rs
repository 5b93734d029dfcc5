//! Unit tests of the tracker against real files in a temp dir, with an in-memory `Storage` and a sink
//! that records what it was given (and can refuse, to check that nothing moves on refusal).

use super::config;
use super::tracker::{Tracker, BATCH_RECORDS};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::storage::{Storage, StorageError, StorageOp};
use vigil_core::{ComponentId, ConsumeError};

#[derive(Default)]
struct MemStorage(Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl Storage for MemStorage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn batch(&self, ops: Vec<StorageOp>) -> Result<(), StorageError> {
        let mut m = self.0.lock().unwrap();
        for op in ops {
            match op {
                StorageOp::Set(k, v) => {
                    m.insert(k, v);
                }
                StorageOp::Delete(k) => {
                    m.remove(&k);
                }
            }
        }
        Ok(())
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[derive(Default)]
struct Collect {
    bodies: Vec<String>,
    batches: Vec<Vec<ResourceLogs>>,
    refuse: bool,
    slow: bool,
}

impl Collect {
    fn sink(&mut self) -> impl FnMut(Vec<ResourceLogs>) -> Result<(), ConsumeError> + '_ {
        move |b: Vec<ResourceLogs>| {
            if self.refuse {
                return Err(ConsumeError::retryable("full"));
            }
            if self.slow {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            for rl in &b {
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        match r.body.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Value::StringValue(s)) => self.bodies.push(s.clone()),
                            other => self.bodies.push(format!("{other:?}")),
                        }
                    }
                }
            }
            self.batches.push(b);
            Ok(())
        }
    }
}

fn tracker(dir: &Path, extra: serde_json::Value, storage: Option<Arc<dyn Storage>>) -> Tracker {
    let mut cfg = json!({
        "include": [format!("{}/*.log*", dir.display())],
        "start_at": "beginning",
    });
    if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    let id = ComponentId::parse("filelog/t").unwrap();
    let checked = config::load(&id, &cfg).unwrap();
    Tracker::new(
        Arc::new(checked),
        "filelog/t",
        storage,
        vigil_core::ReceiverObs::new(&id, "file"),
    )
}

fn append(path: &Path, lines: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in lines {
        writeln!(f, "line {i:06} some text to make the fingerprint distinct").unwrap();
    }
}

fn expect(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!("line {i:06} some text to make the fingerprint distinct"))
        .collect()
}

#[test]
fn rename_rotation_reads_every_line_once() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let mut t = tracker(d.path(), json!({}), None);
    let mut c = Collect::default();
    append(&log, 0..100);
    t.poll(&mut c.sink());
    append(&log, 100..150);
    std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
    append(&d.path().join("app.log.1"), 150..160); // the writer still holds the old file
    append(&log, 160..200);
    t.poll(&mut c.sink());
    t.poll(&mut c.sink());
    assert_eq!(c.bodies, expect(0..200));
}

#[test]
fn copytruncate_and_recreate_read_every_line_once() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let mut t = tracker(d.path(), json!({}), None);
    let mut c = Collect::default();
    append(&log, 0..100);
    t.poll(&mut c.sink());
    append(&log, 100..120);
    std::fs::copy(&log, d.path().join("app.log.1")).unwrap();
    // A poll between copy and truncate sees two files with the same fingerprint.
    t.poll(&mut c.sink());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, 120..130);
    t.poll(&mut c.sink());
    std::fs::remove_file(&log).unwrap();
    append(&log, 130..140);
    t.poll(&mut c.sink());
    let mut got = c.bodies.clone();
    got.sort();
    assert_eq!(got, expect(0..140));
}

#[test]
fn start_at_end_skips_what_was_there() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("a.log");
    append(&log, 0..10);
    let mut t = tracker(d.path(), json!({"start_at": "end"}), None);
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    append(&log, 10..12);
    append(&d.path().join("b.log"), 50..51);
    t.poll(&mut c.sink());
    let mut got = c.bodies.clone();
    got.sort();
    assert_eq!(
        got,
        expect(10..12)
            .into_iter()
            .chain(expect(50..51))
            .collect::<Vec<_>>()
    );
}

#[test]
fn checkpoint_resumes_and_refusal_moves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let store: Arc<dyn Storage> = Arc::new(MemStorage::default());
    append(&log, 0..(BATCH_RECORDS + 10));
    let mut c = Collect::default();
    {
        let mut t = tracker(d.path(), json!({}), Some(store.clone()));
        c.refuse = true;
        assert_eq!(t.poll(&mut c.sink()), 0);
        c.refuse = false;
        assert_eq!(t.poll(&mut c.sink()), BATCH_RECORDS + 10);
    }
    append(&log, (BATCH_RECORDS + 10)..(BATCH_RECORDS + 20));
    let mut t = tracker(d.path(), json!({"start_at": "end"}), Some(store));
    t.poll(&mut c.sink());
    assert_eq!(c.bodies, expect(0..(BATCH_RECORDS + 20)));
}

#[test]
fn bad_input_is_survived() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("bin.log"), b"\x7fELF\x00\x00\x01binary\n").unwrap();
    std::fs::write(d.path().join("latin.log"), b"caf\xe9 ok\n").unwrap();
    let long = "x".repeat(5000);
    std::fs::write(d.path().join("long.log"), format!("{long}\nshort\n")).unwrap();
    let mut t = tracker(d.path(), json!({"max_log_size": 1000}), None);
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    assert_eq!(c.bodies.len(), 3, "{:?}", c.bodies);
    assert_eq!(c.bodies[0], "caf\u{fffd} ok");
    assert_eq!(c.bodies[1].len(), 1000);
    assert_eq!(c.bodies[2], "short");
    let truncated = &c.batches[1][0].scope_logs[0].log_records[0];
    assert!(truncated
        .attributes
        .iter()
        .any(|kv| kv.key == "log.truncated"));
    // A directory that vanishes is no error.
    drop(d);
    t.poll(&mut c.sink());
}

#[test]
fn multiline_and_partial_tail() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    std::fs::write(
        &log,
        "2024 start one\n  at a\n  at b\n2024 start two\n  at c\n",
    )
    .unwrap();
    let mut t = tracker(
        d.path(),
        json!({"multiline": {"line_start_pattern": "^2024"}, "force_flush_period": "1ms"}),
        None,
    );
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    assert_eq!(c.bodies, vec!["2024 start one\n  at a\n  at b".to_string()]);
    // The last record has no successor yet: it is sent once the file stops growing for the flush period.
    std::thread::sleep(std::time::Duration::from_millis(5));
    t.poll(&mut c.sink());
    t.poll(&mut c.sink());
    assert_eq!(c.bodies.len(), 2, "{:?}", c.bodies);
    assert_eq!(c.bodies[1], "2024 start two\n  at c");
}

#[test]
fn file_name_and_path_attributes() {
    let d = tempfile::tempdir().unwrap();
    append(&d.path().join("x.log"), 0..1);
    let mut t = tracker(d.path(), json!({"include_file_path": true}), None);
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    let r = &c.batches[0][0].scope_logs[0].log_records[0];
    assert_eq!(
        vigil_core::attrs::get_str(&r.attributes, "log.file.name"),
        Some("x.log")
    );
    assert!(vigil_core::attrs::get_str(&r.attributes, "log.file.path")
        .is_some_and(|p| p.ends_with("/x.log")));
}

/// Line `i` of the load tests: about 100 bytes, and distinct enough that each file's fingerprint is.
fn numbered(i: usize) -> String {
    format!("line {i:07} payload that keeps the fingerprint of each file distinct and the line near 100 bytes")
}

/// Every numbered line below `total` arrived, and none twice.
fn assert_each_line_once(bodies: &[String], total: usize) {
    let got: std::collections::HashSet<&String> = bodies.iter().collect();
    let missing: Vec<usize> = (0..total)
        .filter(|i| !got.contains(&numbered(*i)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(bodies.len(), total, "duplicates");
}

/// Many polls over large files, with lines written in pieces and copytruncate rotations between
/// polls: every line arrives once.
#[test]
fn copytruncate_under_load() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let mut t = tracker(d.path(), json!({}), None);
    let mut c = Collect::default();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let total = 60_000;
    let mut rotations = 0;
    for i in 0..total {
        let l = format!("{}\n", numbered(i));
        let (a, b) = l.as_bytes().split_at(13);
        f.write_all(a).unwrap();
        if i % 997 == 0 {
            t.poll(&mut c.sink());
        }
        f.write_all(b).unwrap();
        if i % 17_000 == 16_999 {
            rotations += 1;
            for k in (1..rotations).rev() {
                std::fs::rename(
                    d.path().join(format!("app.log.{k}")),
                    d.path().join(format!("app.log.{}", k + 1)),
                )
                .unwrap();
            }
            std::fs::copy(&log, d.path().join("app.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
    }
    t.poll(&mut c.sink());
    t.poll(&mut c.sink());
    assert_each_line_once(&c.bodies, total);
}

/// A writer appends on another thread while the tracker polls: reads that end mid-growth lose nothing.
#[test]
fn concurrent_writer_loses_nothing() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let mut t = tracker(d.path(), json!({}), None);
    let mut c = Collect {
        slow: true,
        ..Default::default()
    };
    let total = 40_000;
    let wlog = log.clone();
    let w = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&wlog)
            .unwrap();
        for i in 0..total {
            writeln!(f, "{}", numbered(i)).unwrap();
            if i % 2000 == 1999 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    });
    while !w.is_finished() {
        t.poll(&mut c.sink());
    }
    t.poll(&mut c.sink());
    assert_each_line_once(&c.bodies, total);
}

/// copytruncate lands while a file is being read, and the new content grows past the reader's offset
/// before its next chunk: those bytes are not taken for the old file's, and the copy supplies the rest.
#[test]
fn copytruncate_mid_read_is_detected() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let first = 8_000; // more than one read chunk
    append(&log, 0..first);
    let mut t = tracker(d.path(), json!({}), None);
    let mut bodies: Vec<String> = Vec::new();
    let mut rotated = false;
    let dir = d.path().to_path_buf();
    let mut sink = |b: Vec<ResourceLogs>| -> Result<(), ConsumeError> {
        if !rotated {
            rotated = true;
            let log = dir.join("app.log");
            std::fs::copy(&log, dir.join("app.log.1")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&log)
                .unwrap()
                .set_len(0)
                .unwrap();
            append(&log, 100_000..(100_000 + first));
        }
        for rl in &b {
            for r in &rl.scope_logs[0].log_records {
                if let Some(Value::StringValue(s)) = r.body.as_ref().and_then(|v| v.value.as_ref())
                {
                    bodies.push(s.clone());
                }
            }
        }
        Ok(())
    };
    t.poll(&mut sink);
    t.poll(&mut sink);
    let mut got = bodies.clone();
    got.sort();
    let mut want = expect(0..first);
    want.extend(expect(100_000..(100_000 + first)));
    want.sort();
    assert_eq!(got.len(), want.len(), "lost or repeated lines");
    assert!(got == want);
}

/// A Java stack trace written in two parts, with a poll between: recombine holds the open record
/// across polls (the next read starts after it, so nothing is fed twice), the checkpoint never
/// passes a held line, and the record goes out whole once its successor arrives.
#[test]
fn recombine_joins_a_stack_trace_across_polls_and_holds_the_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    let store: Arc<dyn Storage> = Arc::new(MemStorage::default());
    // Without it stanza trims each line, the stack frames' tabs included, as otelcol does.
    let ops = json!({"preserve_leading_whitespaces": true, "operators": [{
        "type": "recombine",
        "combine_field": "body",
        "is_first_entry": "body matches \"^\\\\d{4}-\\\\d{2}-\\\\d{2} \"",
        "source_identifier": "attributes[\"log.file.name\"]",
    }]});
    std::fs::write(
        &log,
        "2024-03-01 10:00:00 ERROR request failed\n\
         java.lang.IllegalStateException: boom\n\
         \tat com.example.Foo.bar(Foo.java:42)\n",
    )
    .unwrap();
    let mut c = Collect::default();
    {
        let mut t = tracker(d.path(), ops.clone(), Some(store.clone()));
        t.poll(&mut c.sink());
        assert!(c.bodies.is_empty(), "{:?}", c.bodies);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(
            b"Caused by: java.io.IOException: disk\n\
              \tat com.example.Disk.read(Disk.java:7)\n\
              \t... 2 more\n\
              2024-03-01 10:00:01 INFO next request\n",
        )
        .unwrap();
        t.poll(&mut c.sink());
        assert_eq!(
            c.bodies,
            vec!["2024-03-01 10:00:00 ERROR request failed\n\
                  java.lang.IllegalStateException: boom\n\
                  \tat com.example.Foo.bar(Foo.java:42)\n\
                  Caused by: java.io.IOException: disk\n\
                  \tat com.example.Disk.read(Disk.java:7)\n\
                  \t... 2 more"
                .to_string()]
        );
    }
    // The INFO line is still held: a restart from the checkpoint reads it again, not the trace.
    let mut t = tracker(d.path(), ops, Some(store));
    let mut c2 = Collect::default();
    t.poll(&mut c2.sink());
    drop(t);
    assert!(c2.bodies.is_empty(), "{:?}", c2.bodies);
}

/// A pipeline that refuses its first `refusals` batches as retryable, then takes everything.
struct Flaky {
    refusals: std::sync::atomic::AtomicUsize,
    attempts: std::sync::atomic::AtomicUsize,
    accepted: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl vigil_core::Consumer for Flaky {
    async fn consume(&self, data: vigil_core::Telemetry) -> Result<(), ConsumeError> {
        use std::sync::atomic::Ordering;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let left = self.refusals.load(Ordering::SeqCst);
        if left > 0 {
            self.refusals.store(left - 1, Ordering::SeqCst);
            return Err(ConsumeError::retryable("queue full"));
        }
        let vigil_core::Telemetry::Logs(rls) = data else {
            return Ok(());
        };
        let mut got = self.accepted.lock().unwrap();
        for rl in rls {
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    if let Some(Value::StringValue(s)) = r.body.and_then(|b| b.value) {
                        got.push(s);
                    }
                }
            }
        }
        Ok(())
    }
}

/// With retry_on_failure, the running receiver meets refusals by backing off and sending the same
/// records again: once the pipeline accepts, every line has arrived exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_failure_resends_the_same_records_until_accepted() {
    use vigil_core::Signal;
    let d = tempfile::tempdir().unwrap();
    append(&d.path().join("app.log"), 0..50);
    let cfg = json!({
        "include": [format!("{}/*.log", d.path().display())],
        "start_at": "beginning",
        "poll_interval": "10ms",
        "retry_on_failure": {"enabled": true, "initial_interval": "5ms", "max_interval": "20ms"},
    });
    let flaky = Arc::new(Flaky {
        refusals: 3.into(),
        attempts: 0.into(),
        accepted: Mutex::new(Vec::new()),
    });
    let mut next = vigil_core::NextConsumers::new();
    next.insert(Signal::Logs, flaky.clone());
    let id = ComponentId::parse("filelog/retry").unwrap();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let r = metrics::with_local_recorder(&recorder, || super::factory().create(&id, &cfg, next))
        .unwrap();
    r.start(&vigil_core::Host::detached()).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while flaky.accepted.lock().unwrap().len() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "lines not delivered: {:?}",
            flaky.accepted.lock().unwrap().len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    r.shutdown().await.unwrap();
    assert_eq!(*flaky.accepted.lock().unwrap(), expect(0..50));
    // Three refusals, then the accepted attempt, all inside one send: the reader never saw a
    // refusal (without retry_on_failure it counts 150 refused and re-reads at later polls).
    assert_eq!(flaky.attempts.load(std::sync::atomic::Ordering::SeqCst), 4);
    // One snapshot: taking one resets the debugging recorder's counters.
    let snap = snapshotter.snapshot().into_vec();
    let count = |name: &str| {
        snap.iter()
            .find(|(k, ..)| k.key().name() == name)
            .map(|(.., v)| v)
    };
    use metrics_util::debugging::DebugValue;
    assert_eq!(
        count("otelcol_receiver_accepted_log_records"),
        Some(&DebugValue::Counter(50))
    );
    assert_eq!(
        count("otelcol_receiver_refused_log_records"),
        Some(&DebugValue::Counter(0))
    );
}

#[test]
fn retry_on_failure_keys_and_defaults() {
    let id = ComponentId::parse("filelog/x").unwrap();
    let c = config::load(
        &id,
        &json!({"include": ["a"], "retry_on_failure": {"enabled": true}}),
    )
    .unwrap();
    let r = &c.raw.retry_on_failure;
    assert!(r.enabled);
    assert_eq!(r.initial_interval, std::time::Duration::from_secs(1));
    assert_eq!(r.max_interval, std::time::Duration::from_secs(30));
    assert_eq!(r.max_elapsed_time, std::time::Duration::from_secs(300));
    let e = config::load(
        &id,
        &json!({"include": ["a"], "retry_on_failure": {"enabled": true, "initial_interval": "0s"}}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("filelog/x::retry_on_failure::initial_interval: must be greater than 0"),
        "{e}"
    );
}

/// The attributes of every record the sink got, in order.
fn attrs_of(c: &Collect) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    for b in &c.batches {
        for rl in b {
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    out.push(
                        r.attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(Value::StringValue(s)) => s.clone(),
                                    Some(Value::IntValue(i)) => i.to_string(),
                                    other => format!("{other:?}"),
                                };
                                (kv.key.clone(), v)
                            })
                            .collect(),
                    );
                }
            }
        }
    }
    out
}

#[test]
fn fileconsumer_trim_record_number_offset_and_age() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("a.log");
    std::fs::write(&log, "  first record of a distinct file  \n\n   \nsecond\n").unwrap();
    let mut t = tracker(
        d.path(),
        json!({"include_file_record_number": true, "include_file_record_offset": true,
               "include_file_name": false}),
        None,
    );
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    // Trimmed by default; blank lines are not sent but still count as records, as in stanza.
    assert_eq!(c.bodies, ["first record of a distinct file", "second"]);
    let attrs = attrs_of(&c);
    let get = |i: usize, k: &str| {
        attrs[i]
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(0, "log.file.record_number").as_deref(), Some("1"));
    assert_eq!(get(0, "log.file.record_offset").as_deref(), Some("0"));
    assert_eq!(get(1, "log.file.record_number").as_deref(), Some("4"));
    assert_eq!(get(1, "log.file.record_offset").as_deref(), Some("41"));

    // preserve_* keeps the whitespace.
    let d2 = tempfile::tempdir().unwrap();
    std::fs::write(d2.path().join("b.log"), "  padded line of another file \n").unwrap();
    let mut t = tracker(
        d2.path(),
        json!({"preserve_leading_whitespaces": true, "preserve_trailing_whitespaces": true}),
        None,
    );
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    assert_eq!(c.bodies, ["  padded line of another file "]);

    // exclude_older_than leaves out a file last written long ago.
    let d3 = tempfile::tempdir().unwrap();
    let old = d3.path().join("old.log");
    append(&old, 0..3);
    let f = std::fs::OpenOptions::new().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    append(&d3.path().join("new.log"), 10..12);
    let mut t = tracker(d3.path(), json!({"exclude_older_than": "1h"}), None);
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    assert_eq!(c.bodies, expect(10..12));
}

/// A file of RFC 5424 lines through `syslog_parser` and a `key_value_parser` on the message, as
/// published filelog configs chain them: the records leave with the header's time and severity
/// and the pairs as attributes.
#[test]
fn syslog_and_key_value_parsers_read_a_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("app.log"),
        "<165>1 2003-10-11T22:14:15.003Z web01 shop 42 - - user=alice action=\"add to cart\"\n\
         <163>1 2003-10-11T22:14:16.000Z web01 shop 42 - - user=bob action=checkout\n",
    )
    .unwrap();
    let ops = json!({"operators": [
        {"type": "syslog_parser", "protocol": "rfc5424"},
        {"type": "key_value_parser", "parse_from": "attributes.message", "parse_to": "attributes.kv"},
    ]});
    let mut t = tracker(d.path(), ops, None);
    let mut c = Collect::default();
    t.poll(&mut c.sink());
    let recs: Vec<_> = c
        .batches
        .iter()
        .flatten()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].time_unix_nano, 1_065_910_455_003_000_000);
    assert_eq!(
        (recs[0].severity_number, recs[0].severity_text.as_str()),
        (10, "notice")
    );
    assert_eq!(
        (recs[1].severity_number, recs[1].severity_text.as_str()),
        (17, "err")
    );
    assert_eq!(
        vigil_core::attrs::get_str(&recs[0].attributes, "appname"),
        Some("shop")
    );
    let Some(Value::KvlistValue(kv)) = vigil_core::attrs::get(&recs[0].attributes, "kv") else {
        panic!("{:?}", recs[0].attributes)
    };
    assert_eq!(
        vigil_core::attrs::get_str(&kv.values, "action"),
        Some("add to cart")
    );
}
