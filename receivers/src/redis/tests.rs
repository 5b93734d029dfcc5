//! Tests against a real `redis-server` from Debian's package, started on an ephemeral port in a
//! temporary directory and stopped when the test ends.

use super::*;
use crate::test_servers::{attr_of, free_port, points, run_as, Server};
use serde_json::json;
use std::path::Path;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, NumberDataPoint};

const SETUP: &str =
    "install Debian's `redis-server` package (scripts/test.sh, step 1, installs it)";

/// A `redis-server` with `args`, persistence off; `tls` picks the TLS port for the port.
fn start_redis(dir: &Path, args: &[&str], tls: bool) -> (u16, Server) {
    let port = free_port();
    let mut cmd = run_as::command(Path::new("/usr/bin/redis-server"), "redis", SETUP);
    let p = port.to_string();
    if tls {
        cmd.args(["--port", "0", "--tls-port", &p]);
    } else {
        cmd.args(["--port", &p]);
    }
    cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--dir", dir.to_str().unwrap()])
        .args(args);
    run_as::prepare(dir, "redis", SETUP);
    let server = Server::spawn(cmd, &dir.join("redis.log"), port, libc::SIGTERM);
    (port, server)
}

fn load(v: serde_json::Value) -> Result<RedisConfig, ConfigError> {
    let id = ComponentId::parse("redis").unwrap();
    let c: RedisConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    check(&id, &c)?;
    Ok(c)
}

fn scraper(v: serde_json::Value) -> RedisScraper {
    build(
        &ComponentId::parse("redis").unwrap(),
        &load(v).expect("config"),
    )
    .expect("scraper")
}

/// Runs commands on a fresh connection of `s` (authenticated as it is).
async fn run(s: &RedisScraper, cmds: &[&[&str]]) {
    let mut c = s.connect().await.expect("connect");
    for args in cmds {
        send(&mut c, args).await.expect("send");
        reply(&mut c).await.expect("reply");
    }
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int point: {p:?}"),
    }
}

fn double(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        _ => panic!("not a double point: {p:?}"),
    }
}

/// Keys written, read (hits and misses) and given a TTL on a real server, then scraped: otelcol's
/// default metrics with their values and types, per-database keys, the `redis.version` resource,
/// start times at the server's start, and the optional per-command metrics from `INFO all`.
#[tokio::test]
async fn scrapes_a_real_server_as_otelcol_does() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = start_redis(dir.path(), &[], false);
    let s = scraper(json!({
        "endpoint": format!("127.0.0.1:{port}"),
        "metrics": {
            "redis.cmd.calls": {"enabled": true},
            "redis.role": {"enabled": true},
            "redis.maxmemory": {"enabled": true},
            "redis.uptime": {"enabled": false},
        },
        "resource_attributes": {"server.port": {"enabled": true}},
    }));
    run(
        &s,
        &[
            &["SET", "a", "1"],
            &["SET", "b", "2", "EX", "1000"],
            &["SELECT", "3"],
            &["SET", "c", "3"],
            &["SELECT", "0"],
            &["GET", "a"],
            &["GET", "a"],
            &["GET", "missing"],
        ],
    )
    .await;
    let got = s.scrape().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let rms = got.metrics;
    assert_eq!(rms.len(), 1);
    let res = &rms[0].resource.as_ref().unwrap().attributes;
    assert_eq!(
        vigil_core::attrs::get_str(res, "redis.version"),
        Some(redis_version().as_str())
    );
    assert_eq!(
        vigil_core::attrs::get_str(res, "server.port"),
        Some(port.to_string().as_str())
    );
    assert_eq!(vigil_core::attrs::get_str(res, "server.address"), None);
    let one = |name: &str| {
        let p = points(&rms, name);
        assert_eq!(p.len(), 1, "{name}: {p:?}");
        p[0].clone()
    };
    assert_eq!(int(&one("redis.keyspace.hits")), 2);
    assert_eq!(int(&one("redis.keyspace.misses")), 1);
    assert!(int(&one("redis.clients.connected")) >= 1);
    assert!(int(&one("redis.memory.used")) > 0);
    assert!(int(&one("redis.commands.processed")) >= 8);
    assert!(int(&one("redis.connections.received")) >= 2);
    assert_eq!(int(&one("redis.maxmemory")), 0);
    assert!(points(&rms, "redis.uptime").is_empty(), "disabled");
    let keys = points(&rms, "redis.db.keys");
    let db = |d: &str| {
        keys.iter()
            .find(|p| attr_of(p, "db") == Some(d))
            .map(|p| int(p))
    };
    assert_eq!((db("0"), db("3")), (Some(2), Some(1)));
    let expires = points(&rms, "redis.db.expires");
    assert_eq!(
        int(expires
            .iter()
            .find(|p| attr_of(p, "db") == Some("0"))
            .unwrap()),
        1
    );
    let ttl = points(&rms, "redis.db.avg_ttl");
    let ttl0 = double(ttl.iter().find(|p| attr_of(p, "db") == Some("0")).unwrap());
    // Redis estimates avg_ttl in its expiry cycle, so a fresh key may still read 0.
    assert!((0.0..=1000.0).contains(&ttl0), "avg_ttl in seconds: {ttl0}");
    let cpu = points(&rms, "redis.cpu.time");
    for state in [
        "sys",
        "user",
        "sys_children",
        "user_children",
        "sys_main_thread",
        "user_main_thread",
    ] {
        assert!(
            cpu.iter().any(|p| attr_of(p, "state") == Some(state)),
            "{state}"
        );
    }
    assert_eq!(attr_of(&one("redis.role"), "role"), Some("primary"));
    let calls = points(&rms, "redis.cmd.calls");
    assert_eq!(
        int(calls
            .iter()
            .find(|p| attr_of(p, "cmd") == Some("get"))
            .unwrap()),
        3
    );
    // Types and units as otelcol's metadata; sums start at the server's start.
    let metric = |name: &str| {
        rms[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .clone()
    };
    let hits = metric("redis.keyspace.hits");
    assert_eq!(hits.unit, "{hit}");
    match hits.data {
        Some(Data::Sum(s)) => {
            assert!(s.is_monotonic);
            let p = &s.data_points[0];
            let up = p.time_unix_nano - p.start_time_unix_nano;
            assert!(
                up < 60_000_000_000,
                "start is the server's start: {up} ns ago"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        metric("redis.memory.used").data,
        Some(Data::Gauge(_))
    ));
    assert_eq!(rms[0].scope_metrics[0].scope.as_ref().unwrap().name, SCOPE);
    // The connection is kept: a second scrape does not open another.
    let before = int(&one("redis.connections.received"));
    let again = s.scrape().await.metrics;
    assert_eq!(int(points(&again, "redis.connections.received")[0]), before);
}

fn redis_version() -> String {
    let out = std::process::Command::new("/usr/bin/redis-server")
        .arg("--version")
        .output()
        .expect("redis-server --version");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or_default()
        .to_string()
}

/// `password` alone (requirepass), `username` with `password` (an ACL user), and the errors of a
/// wrong password and of none, as the server gives them.
#[tokio::test]
async fn authenticates_with_password_and_acl_user() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = start_redis(
        dir.path(),
        &[
            "--requirepass",
            "s3cret",
            "--user",
            "otel",
            "on",
            ">otelpw",
            "~*",
            "&*",
            "+@all",
        ],
        false,
    );
    let ep = format!("127.0.0.1:{port}");
    for (cfg, ok, text) in [
        (json!({"endpoint": ep, "password": "s3cret"}), true, ""),
        (
            json!({"endpoint": ep, "username": "otel", "password": "otelpw"}),
            true,
            "",
        ),
        (
            json!({"endpoint": ep, "password": "nope"}),
            false,
            "WRONGPASS",
        ),
        (json!({"endpoint": ep}), false, "NOAUTH"),
    ] {
        let got = scraper(cfg.clone()).scrape().await;
        assert_eq!(got.errors.is_empty(), ok, "{cfg}: {:?}", got.errors);
        if !ok {
            assert!(got.errors[0].contains(text), "{cfg}: {:?}", got.errors);
        }
    }
}

/// TLS with `insecure: false`: the server's certificate must chain to `ca_file`; with
/// `insecure_skip_verify` any certificate is taken; the default (`insecure: true`) speaks plaintext
/// and fails against a TLS port.
#[tokio::test]
async fn tls_with_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (port, _server) = start_redis(
        dir.path(),
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
        ],
        true,
    );
    let ca = cert.to_str().unwrap();
    for (cfg, ok) in [
        (
            json!({"endpoint": format!("localhost:{port}"), "tls": {"insecure": false, "ca_file": ca}}),
            true,
        ),
        (
            json!({"endpoint": format!("127.0.0.1:{port}"), "tls": {"insecure": false, "insecure_skip_verify": true}}),
            true,
        ),
        (
            json!({"endpoint": format!("localhost:{port}"), "tls": {"insecure": false}}),
            false,
        ),
        (json!({"endpoint": format!("127.0.0.1:{port}")}), false),
    ] {
        let got = scraper(cfg.clone()).scrape().await;
        assert_eq!(got.errors.is_empty(), ok, "{cfg}: {:?}", got.errors);
        if ok {
            assert!(!points(&got.metrics, "redis.memory.used").is_empty());
        }
    }
}

/// The receiver's loop sends batches on its interval.
#[tokio::test]
async fn receiver_scrapes_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = start_redis(dir.path(), &[], false);
    let got = crate::test_servers::run_receiver(
        factory(),
        "redis",
        json!({"endpoint": format!("127.0.0.1:{port}"), "collection_interval": "100ms", "initial_delay": "0s"}),
        2,
    )
    .await;
    assert!(points(&got, "redis.uptime").len() >= 2);
}

#[test]
fn config_errors_name_the_key() {
    let e = load(json!({})).unwrap_err().to_string();
    assert!(e.contains("redis::endpoint: must be specified"), "{e}");
    let e = load(json!({"endpoint": "localhost"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis::endpoint"), "{e}");
    let e = load(json!({"endpoint": "a:1", "transport": "udp"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis::transport"), "{e}");
    let e = load(json!({"endpoint": "a:1", "metrics": {"redis.nope": {"enabled": true}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("metrics::redis.nope"), "{e}");
    let e = load(json!({"endpoint": "a:1", "resource_attributes": {"x": {"enabled": true}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("resource_attributes::x"), "{e}");
    let c = load(json!({"endpoint": "valkey-cart:6379", "username": "valkey"})).unwrap();
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    assert!(c.tls.insecure);
}

#[test]
fn parses_info_text() {
    let info = parse_info("# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=5000,subexpiry=0\r\n");
    assert_eq!(info.get("redis_version"), Some(&"7.0.15"));
    let f: Vec<_> = fields(info["db0"]).collect();
    assert_eq!(
        f[..3],
        [("keys", "2"), ("expires", "1"), ("avg_ttl", "5000")]
    );
}
