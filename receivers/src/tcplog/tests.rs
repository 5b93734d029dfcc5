use super::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use vigil_core::{ConsumeError, Telemetry};

#[derive(Default)]
pub(crate) struct Sink(pub Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.lock().unwrap().push(data);
        Ok(())
    }
}

/// Every record the sink got: body text and attributes as `key=value` text.
pub(crate) fn records(sink: &Sink) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for t in sink.0.lock().unwrap().iter() {
        if let Telemetry::Logs(rls) = t {
            for rl in rls {
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        let body = match r.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        let attrs = r
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(AnyValue::StringValue(s)) => s.clone(),
                                    Some(AnyValue::BoolValue(b)) => b.to_string(),
                                    other => format!("{other:?}"),
                                };
                                format!("{}={v}", kv.key)
                            })
                            .collect();
                        out.push((body, attrs));
                    }
                }
            }
        }
    }
    out
}

pub(crate) async fn wait_for(sink: &Sink, n: usize) -> Vec<(String, Vec<String>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = records(sink);
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited for {n} records, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(id: &ComponentId) -> vigil_core::Settings {
    vigil_core::Settings::new(ComponentKind::Receiver, id)
}

fn common(cfg: Value) -> Common {
    let id = ComponentId::parse("tcplog").unwrap();
    let mut cfg = cfg;
    cfg["listen_address"] = json!("127.0.0.1:0");
    Arc::into_inner(load(&id, &cfg).unwrap().common).unwrap()
}

fn texts(recs: &[Rec]) -> Vec<(String, bool)> {
    recs.iter()
        .map(|r| (String::from_utf8_lossy(&r.bytes).into_owned(), r.truncated))
        .collect()
}

#[test]
fn lines_are_split_at_newlines_across_writes() {
    let c = common(json!({}));
    let mut r = Records::default();
    let mut out = Vec::new();
    r.feed(&c, b"one\r\ntw", &mut out);
    r.feed(&c, b"o\nthr", &mut out);
    r.feed(&c, b"ee", &mut out);
    assert_eq!(texts(&out), [("one".into(), false), ("two".into(), false)]);
    r.finish(&c, &mut out);
    assert_eq!(texts(&out)[2], ("three".into(), false));
}

/// A line over max_log_size is cut there, flagged, and the rest of it skipped up to its newline;
/// the next line is whole. Without the bound the buffer would hold the whole line.
#[test]
fn a_long_line_is_cut_and_the_rest_skipped() {
    let c = common(json!({"max_log_size": "64KiB"}));
    let mut r = Records::default();
    let mut out = Vec::new();
    let long = vec![b'x'; 200 * 1024];
    for part in long.chunks(16 * 1024) {
        r.feed(&c, part, &mut out);
        assert!(r.buf.len() <= c.max);
    }
    r.feed(&c, b"tail of the long line\nnext\n", &mut out);
    let got = texts(&out);
    assert_eq!(
        got.len(),
        2,
        "{:?}",
        got.iter().map(|g| g.0.len()).collect::<Vec<_>>()
    );
    assert_eq!(got[0].0.len(), 64 * 1024);
    assert!(got[0].1);
    assert_eq!(got[1], ("next".into(), false));
}

#[test]
fn multiline_joins_lines_from_a_start_pattern() {
    let c = common(json!({"multiline": {"line_start_pattern": "^\\d{4}-"}}));
    let mut r = Records::default();
    let mut out = Vec::new();
    r.feed(
        &c,
        b"2024-01-01 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)\n2024-01-01 INFO ok\n",
        &mut out,
    );
    assert_eq!(
        texts(&out),
        [(
            "2024-01-01 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)".into(),
            false
        )]
    );
    r.finish(&c, &mut out);
    assert_eq!(texts(&out)[1].0, "2024-01-01 INFO ok");
}

#[test]
fn config_errors_name_the_key() {
    let id = ComponentId::parse("tcp_log").unwrap();
    let e = load(&id, &json!({})).unwrap_err();
    assert!(e.to_string().contains("listen_address: required"), "{e}");
    let e = load(
        &id,
        &json!({"listen_address": "127.0.0.1:0", "max_log_size": 10}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("max_log_size: must be between"),
        "{e}"
    );
    let e = load(
        &id,
        &json!({"listen_address": "127.0.0.1:0", "listen_adress": "x"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid keys: listen_adress"), "{e}");
    let e = load(
        &id,
        &json!({"listen_address": "127.0.0.1:0", "tls": {"cert_file": "/nonexistent.pem"}}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("tls::cert_file: cannot read"), "{e}");
    let e = load(
        &id,
        &json!({"listen_address": "127.0.0.1:0", "operators": [{"type": "regex_parser", "regex": "("}]}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("operators::0"), "{e}");
}

/// Lines sent over a real TCP connection, split across writes, come out one record each with the
/// peer's net.* attributes, the configured attributes, and a regex_parser's fields; a line over
/// max_log_size is cut, flagged and counted.
#[tokio::test]
async fn lines_over_tcp_through_operators() {
    use metrics_util::debugging::DebuggingRecorder;
    let id = ComponentId::parse("tcplog").unwrap();
    let cfg = json!({
        "listen_address": "127.0.0.1:0",
        "add_attributes": true,
        "max_log_size": "64KiB",
        "attributes": {"source": "test"},
        "operators": [{"type": "regex_parser", "regex": "^(?P<sev>[A-Z]+) (?P<msg>.*)$"}],
    });
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Logs, sink.clone());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let r = metrics::with_local_recorder(&recorder, || {
        load(&id, &cfg).map(|c| TcpLogReceiver::new(settings(&id), c, next))
    })
    .unwrap();
    r.start(&Host::detached()).await.unwrap();
    let addr = r.local_addr().unwrap();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = sock.local_addr().unwrap();
    sock.write_all(b"INFO first line\nWARN sec").await.unwrap();
    sock.flush().await.unwrap();
    sock.write_all(b"ond line\n").await.unwrap();
    let mut long = b"ERROR ".to_vec();
    long.extend(std::iter::repeat_n(b'y', 100 * 1024));
    long.push(b'\n');
    sock.write_all(&long).await.unwrap();
    sock.write_all(b"INFO last, no newline").await.unwrap();
    drop(sock);
    let got = wait_for(&sink, 4).await;
    r.shutdown().await.unwrap();
    assert_eq!(got[0].0, "INFO first line");
    assert_eq!(got[1].0, "WARN second line");
    assert_eq!(got[2].0.len(), 64 * 1024);
    assert_eq!(got[3].0, "INFO last, no newline");
    let a = &got[1].1;
    for want in [
        "source=test".to_string(),
        "net.transport=IP.TCP".into(),
        "net.peer.ip=127.0.0.1".into(),
        format!("net.peer.port={}", client.port()),
        format!("net.host.port={}", addr.port()),
        "sev=WARN".into(),
        "msg=second line".into(),
    ] {
        assert!(a.contains(&want), "{want} not in {a:?}");
    }
    assert!(
        got[2].1.contains(&"log.truncated=true".to_string()),
        "{:?}",
        got[2].1
    );
    let truncated =
        vigil_core::testing::counter(&snapshotter, "vigil_tcplog_truncated_records", &[]);
    assert_eq!(truncated, 1);
}

/// one_log_per_packet: the whole connection is one record.
#[tokio::test]
async fn one_log_per_connection() {
    let id = ComponentId::parse("tcplog").unwrap();
    let cfg = json!({"listen_address": "127.0.0.1:0", "one_log_per_packet": true});
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Logs, sink.clone());
    let r = TcpLogReceiver::new(settings(&id), load(&id, &cfg).unwrap(), next);
    r.start(&Host::detached()).await.unwrap();
    let mut sock = tokio::net::TcpStream::connect(r.local_addr().unwrap())
        .await
        .unwrap();
    sock.write_all(b"a\nb\n").await.unwrap();
    sock.write_all(b"c").await.unwrap();
    drop(sock);
    let got = wait_for(&sink, 1).await;
    r.shutdown().await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "a\nb\nc");
}

/// Retrying with no wait would spin on a refusing pipeline: refused as filelog refuses it.
#[test]
fn retry_with_a_zero_initial_interval_is_refused() {
    let id = ComponentId::parse("tcplog").unwrap();
    let cfg = json!({
        "listen_address": "127.0.0.1:0",
        "retry_on_failure": {"enabled": true, "initial_interval": "0s"},
    });
    let Err(e) = load(&id, &cfg) else {
        panic!("initial_interval 0 with retry enabled was accepted")
    };
    let e = e.to_string();
    assert!(e.contains("retry_on_failure::initial_interval"), "{e}");
    let ok =
        json!({"listen_address": "127.0.0.1:0", "retry_on_failure": {"initial_interval": "0s"}});
    assert!(load(&id, &ok).is_ok(), "disabled retry keeps any interval");
}
