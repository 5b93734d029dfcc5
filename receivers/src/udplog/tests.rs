use super::*;
use crate::tcplog::tests::{wait_for, Sink};

use serde_json::json;
use std::time::Duration;
use vigil_core::{ComponentKind, ConsumeError, Consumer, Telemetry};

fn settings(id: &ComponentId) -> vigil_core::Settings {
    vigil_core::Settings::new(ComponentKind::Receiver, id)
}

fn receiver(cfg: Value, next: Arc<dyn Consumer>) -> UdpLogReceiver {
    let id = ComponentId::parse("udp_log").unwrap();
    let mut n = NextConsumers::new();
    n.insert(Signal::Logs, next);
    UdpLogReceiver::new(settings(&id), load(&id, &cfg).unwrap(), n)
}

/// Each datagram's lines are records (its trailing newline dropped); net.* attributes name the
/// sender and the listener.
#[tokio::test]
async fn datagrams_are_split_into_lines() {
    let sink = Arc::new(Sink::default());
    let r = receiver(
        json!({"listen_address": "127.0.0.1:0", "add_attributes": true}),
        sink.clone(),
    );
    r.start(&Host::detached()).await.unwrap();
    let addr = r.local_addr().unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"first\nsecond\n", addr).unwrap();
    let got = wait_for(&sink, 2).await;
    sock.send_to(b"  third  \0\0", addr).unwrap();
    let got3 = wait_for(&sink, 3).await;
    r.shutdown().await.unwrap();
    assert_eq!(got[0].0, "first");
    assert_eq!(got[1].0, "second");
    assert_eq!(got3[2].0, "third");
    let port = sock.local_addr().unwrap().port();
    for want in [
        "net.transport=IP.UDP".to_string(),
        "net.peer.ip=127.0.0.1".into(),
        format!("net.peer.port={port}"),
        format!("net.host.port={}", addr.port()),
    ] {
        assert!(got[0].1.contains(&want), "{want} not in {:?}", got[0].1);
    }
}

#[tokio::test]
async fn one_log_per_packet_keeps_the_datagram_whole() {
    let sink = Arc::new(Sink::default());
    let r = receiver(
        json!({"listen_address": "127.0.0.1:0", "one_log_per_packet": true,
               "operators": [{"type": "regex_parser", "regex": "^(?P<first>\\w+)"}]}),
        sink.clone(),
    );
    r.start(&Host::detached()).await.unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"one\ntwo\n", r.local_addr().unwrap())
        .unwrap();
    let got = wait_for(&sink, 1).await;
    r.shutdown().await.unwrap();
    assert_eq!(got[0].0, "one\ntwo");
    assert!(
        got[0].1.contains(&"first=one".to_string()),
        "{:?}",
        got[0].1
    );
}

/// A consumer that holds every call until released.
struct Gate {
    open: tokio::sync::Semaphore,
    inner: Sink,
}

#[async_trait]
impl Consumer for Gate {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let _p = self.open.acquire().await;
        self.inner.consume(data).await
    }
}

/// With `async`, the queue holds max_queue_length datagrams while the pipeline is stuck; the
/// rest are dropped and counted, and the queued ones go through once it moves.
#[tokio::test]
async fn the_async_queue_is_bounded_and_counts_drops() {
    use metrics_util::debugging::DebuggingRecorder;
    let gate = Arc::new(Gate {
        open: tokio::sync::Semaphore::new(0),
        inner: Sink::default(),
    });
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let cfg = json!({"listen_address": "127.0.0.1:0",
                     "async": {"readers": 1, "processors": 1, "max_queue_length": 2}});
    let r = metrics::with_local_recorder(&recorder, || receiver(cfg, gate.clone()));
    r.start(&Host::detached()).await.unwrap();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = r.local_addr().unwrap();
    // A snapshot reads and resets the counter, so the reads are summed.
    let mut total = 0;
    let mut dropped = || {
        total += vigil_core::testing::counter(&snapshotter, "vigil_udplog_queue_full_dropped", &[]);
        total
    };
    // One datagram held by the processor in the stuck pipeline, two queued, the rest dropped.
    // Datagrams are sent until drops show, so the test does not depend on timing.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    while dropped() < 3 {
        assert!(std::time::Instant::now() < deadline, "no drops counted");
        sock.send_to(format!("m{sent}").as_bytes(), addr).unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(crate::tcplog::tests::records(&gate.inner).is_empty());
    gate.open.add_permits(1000);
    // Every datagram sent is either delivered or counted as dropped; none is lost unseen.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let n = crate::tcplog::tests::records(&gate.inner).len() as u64;
        let d = dropped();
        if n + d == sent {
            assert!(n >= 3, "the queued datagrams were not delivered: {n}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} delivered + {d} dropped != {sent} sent"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.shutdown().await.unwrap();
}
