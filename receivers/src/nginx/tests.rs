//! Tests against a real nginx from Debian's `nginx` package: one process (`master_process off`)
//! with a config under a temporary directory, listening on an ephemeral port with `stub_status`,
//! stopped when the test ends.

use super::*;
use crate::test_servers::{attr_of, free_port, points, run_as, Server};
use serde_json::json;
use std::path::Path;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, NumberDataPoint};

const SETUP: &str = "install Debian's `nginx` package (scripts/test.sh, step 1, installs it)";

fn start_nginx(dir: &Path) -> (u16, Server) {
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location = /status {{ stub_status; }}\n\
             location / {{ return 200 \"ok\"; }}\n  }}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = run_as::command(Path::new("/usr/sbin/nginx"), "root", SETUP);
    cmd.args(["-p", &d.to_string(), "-e", &format!("{d}/error.log")])
        .args(["-c", &format!("{d}/nginx.conf")]);
    let server = Server::spawn(cmd, &dir.join("nginx.out"), port, libc::SIGTERM);
    (port, server)
}

fn load(v: serde_json::Value) -> Result<NginxConfig, ConfigError> {
    let id = ComponentId::parse("nginx").unwrap();
    let c: NginxConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    check(&id, &c)?;
    Ok(c)
}

fn scraper(v: serde_json::Value) -> NginxScraper {
    build(
        &ComponentId::parse("nginx").unwrap(),
        &load(v).expect("config"),
    )
    .expect("scraper")
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int point: {p:?}"),
    }
}

/// Three requests on three connections, then a scrape on a fourth: requests 4, accepted and
/// handled 5 (with the readiness probe's connection), the scrape's own connection active and writing; otelcol's types and units.
#[tokio::test]
async fn scrapes_a_real_nginx_stub_status() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = start_nginx(dir.path());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let r = client
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    let s = scraper(json!({"endpoint": format!("http://127.0.0.1:{port}/status")}));
    let got = s.scrape().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let rms = got.metrics;
    let one = |n: &str| int(points(&rms, n)[0]);
    assert_eq!(one("nginx.requests"), 4);
    // One more connection than requests: the test's readiness probe connected and sent nothing.
    assert_eq!(one("nginx.connections_accepted"), 5);
    assert_eq!(one("nginx.connections_handled"), 5);
    let current = points(&rms, "nginx.connections_current");
    let state = |s: &str| {
        int(current
            .iter()
            .find(|p| attr_of(p, "state") == Some(s))
            .unwrap())
    };
    assert!(state("active") >= 1 && state("writing") >= 1, "{current:?}");
    assert_eq!(state("reading"), 0);
    let m = &rms[0].scope_metrics[0];
    assert_eq!(m.scope.as_ref().unwrap().name, SCOPE);
    let cur = m
        .metrics
        .iter()
        .find(|m| m.name == "nginx.connections_current")
        .unwrap();
    assert!(matches!(&cur.data, Some(Data::Sum(s)) if !s.is_monotonic));
    let req = m
        .metrics
        .iter()
        .find(|m| m.name == "nginx.requests")
        .unwrap();
    assert_eq!(req.unit, "requests");
    assert!(matches!(&req.data, Some(Data::Sum(s)) if s.is_monotonic));
    // A page that is not stub_status, and a missing one, fail the scrape with what was wrong.
    let e = scraper(json!({"endpoint": format!("http://127.0.0.1:{port}/")}))
        .scrape()
        .await;
    assert!(
        e.errors[0].contains("not an nginx stub_status page"),
        "{:?}",
        e.errors
    );
    let e = scraper(json!({"endpoint": format!("http://127.0.0.1:{}/status", free_port())}))
        .scrape()
        .await;
    assert!(
        e.errors[0].contains("GET http://127.0.0.1"),
        "{:?}",
        e.errors
    );
}

/// The receiver's loop sends batches on its interval, with a metric turned off.
#[tokio::test]
async fn receiver_scrapes_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _server) = start_nginx(dir.path());
    let got = crate::test_servers::run_receiver(
        factory(),
        "nginx",
        json!({
            "endpoint": format!("http://127.0.0.1:{port}/status"),
            "collection_interval": "100ms",
            "initial_delay": "0s",
            "metrics": {"nginx.connections_handled": {"enabled": false}},
        }),
        2,
    )
    .await;
    let req: Vec<i64> = points(&got, "nginx.requests")
        .iter()
        .map(|p| int(p))
        .collect();
    assert!(req.len() >= 2 && req[1] > req[0], "{req:?}");
    assert!(points(&got, "nginx.connections_handled").is_empty());
}

#[test]
fn parses_and_refuses() {
    let page = "Active connections: 2 \nserver accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 1 \n";
    assert_eq!(
        parse_stub(page).unwrap(),
        Stub {
            active: 2,
            accepted: 5,
            handled: 5,
            requests: 9,
            reading: 0,
            writing: 1,
            waiting: 1
        }
    );
    assert!(parse_stub("<html>").is_err());
    let c = load(json!({})).unwrap();
    assert_eq!(c.endpoint, "http://localhost:80/status");
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    let e = load(json!({"endpoint": "localhost/status"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nginx::endpoint"), "{e}");
    let e = load(json!({"metrics": {"nginx.up": {"enabled": true}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("metrics::nginx.up"), "{e}");
}
