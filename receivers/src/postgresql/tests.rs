//! Tests against a real PostgreSQL server from Debian's `postgresql` package: a throwaway cluster
//! made with `initdb` in a temporary directory, started on an ephemeral port (run as the
//! `postgres` user when the tests run as root, since PostgreSQL refuses root) and stopped when
//! the test ends.

use super::*;
use crate::test_servers::{attr_of, free_port, points, run_as, Server};
use serde_json::json;
use std::path::{Path, PathBuf};
use vigil_core::otlp::metrics::v1::{number_data_point, NumberDataPoint, ResourceMetrics};

const SETUP: &str = "install Debian's `postgresql` package (scripts/test.sh, step 1, installs it)";

/// The newest `bin` directory of Debian's PostgreSQL server packages.
fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = glob::glob("/usr/lib/postgresql/*/bin/postgres")
        .map(|g| g.filter_map(Result::ok).collect())
        .unwrap_or_default();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(Path::parent)
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    match dirs.pop() {
        Some(p) => p.parent().expect("bin").to_path_buf(),
        None => panic!("no PostgreSQL server under /usr/lib/postgresql/*/bin: {SETUP}"),
    }
}

struct Pg {
    port: u16,
    dir: tempfile::TempDir,
    _server: Server,
}

/// A fresh cluster with user `vigil` (password `s3cret`, scram-sha-256), `extra` server settings
/// (`-c key=value`), and `setup` run on the written data directory before start.
fn start_pg(extra: &[&str], setup: impl FnOnce(&Path)) -> Pg {
    let bin = pg_bin();
    let dir = tempfile::Builder::new()
        .prefix("vigil-pg-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let data = dir.path().join("data");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").expect("password file");
    run_as::prepare(dir.path(), "postgres", SETUP);
    let out = run_as::command(&bin.join("initdb"), "postgres", SETUP)
        .args([
            "-D",
            data.to_str().unwrap(),
            "-U",
            "vigil",
            "--auth=scram-sha-256",
        ])
        .arg(format!("--pwfile={}", pw.display()))
        .args(["--no-sync", "--no-locale", "-E", "UTF8"])
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    setup(&data);
    run_as::prepare(dir.path(), "postgres", SETUP);
    let port = free_port();
    let mut cmd = run_as::command(&bin.join("postgres"), "postgres", SETUP);
    cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
        .args(["-k", dir.path().to_str().unwrap()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
    for e in extra {
        cmd.args(["-c", e]);
    }
    let server = Server::spawn(cmd, &dir.path().join("postgres.log"), port, libc::SIGINT);
    Pg {
        port,
        dir,
        _server: server,
    }
}

fn config(port: u16, extra: serde_json::Value) -> PostgresqlConfig {
    let mut v = json!({
        "endpoint": format!("127.0.0.1:{port}"),
        "username": "vigil",
        "password": "s3cret",
        "tls": {"insecure": true},
    });
    if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            m.insert(k.clone(), x.clone());
        }
    }
    load(v).expect("config")
}

fn load(v: serde_json::Value) -> Result<PostgresqlConfig, ConfigError> {
    let id = ComponentId::parse("postgresql").unwrap();
    let c: PostgresqlConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    check(&id, &c)?;
    Ok(c)
}

fn scraper(c: &PostgresqlConfig) -> PgScraper {
    build(&ComponentId::parse("postgresql").unwrap(), c).expect("scraper")
}

async fn sql(port: u16, db: &str, statements: &str) {
    let s = scraper(&config(port, json!({})));
    // The port is open before the server accepts sessions ("the database system is starting up").
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let c = loop {
        match s.connect(db).await {
            Ok(c) => break c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.batch_execute(statements).await.expect("setup SQL");
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int point: {p:?}"),
    }
}

/// The points of `name` under the resource whose attributes are exactly `res`.
fn under<'a>(
    rms: &'a [ResourceMetrics],
    res: &[(&str, &str)],
    name: &str,
) -> Vec<&'a NumberDataPoint> {
    rms.iter()
        .filter(|r| {
            let a = &r.resource.as_ref().expect("resource").attributes;
            a.len() == res.len()
                && res
                    .iter()
                    .all(|(k, v)| vigil_core::attrs::get_str(a, k) == Some(v))
        })
        .flat_map(|r| points(std::slice::from_ref(r), name))
        .collect()
}

fn by(points: &[&NumberDataPoint], key: &str, value: &str) -> i64 {
    let p = points
        .iter()
        .find(|p| attr_of(p, key) == Some(value))
        .unwrap_or_else(|| panic!("no point with {key}={value} in {points:?}"));
    int(p)
}

/// A real server with a database, a table and its indexes after known writes: otelcol's default
/// metrics with its resource model (database, table `schema.table`, index), the server-wide ones
/// under the empty resource, `exclude_databases`, an optional metric turned on and a default one
/// turned off.
#[tokio::test]
async fn scrapes_a_real_server_as_otelcol_does() {
    let pg = start_pg(&["max_connections=37", "track_functions=all"], |_| {});
    sql(pg.port, "postgres", "CREATE DATABASE otel").await;
    sql(
        pg.port,
        "otel",
        "CREATE TABLE items (id int PRIMARY KEY, name text);
         CREATE INDEX items_name ON items (name);
         INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 10) g;
         UPDATE items SET name = 'x' WHERE id <= 2;
         DELETE FROM items WHERE id = 10;
         SET enable_seqscan = off;
         SELECT * FROM items WHERE id = 3;
         CREATE FUNCTION twice(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 2 * x; END $$;
         SELECT twice(1); SELECT twice(2);",
    )
    .await;
    // VACUUM cannot run in the implicit transaction of a multi-statement query.
    sql(pg.port, "otel", "VACUUM items").await;
    let cfg = config(
        pg.port,
        json!({
            "exclude_databases": ["postgres"],
            "metrics": {
                "postgresql.tup_inserted": {"enabled": true},
                "postgresql.function.calls": {"enabled": true},
                "postgresql.bgwriter.maxwritten": {"enabled": false},
            },
        }),
    );
    let s = scraper(&cfg);
    // A session on otel while scraping: postgresql.backends counts it.
    let _session = s.connect("otel").await.expect("connect");
    // The cumulative statistics reach the views when the writing backend has flushed them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rms = loop {
        let got = s.scrape().await;
        assert!(got.errors.is_empty(), "{:?}", got.errors);
        let table = [
            ("postgresql.database.name", "otel"),
            ("postgresql.table.name", "public.items"),
        ];
        let ops = under(&got.metrics, &table, "postgresql.operations");
        let vacuumed = under(&got.metrics, &table, "postgresql.table.vacuum.count");
        if !ops.is_empty()
            && by(&ops, "operation", "ins") == 10
            && vacuumed.first().is_some_and(|p| int(p) == 1)
        {
            break got.metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "statistics never showed the writes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let db = [("postgresql.database.name", "otel")];
    assert_eq!(int(under(&rms, &db, "postgresql.table.count")[0]), 1);
    assert!(int(under(&rms, &db, "postgresql.commits")[0]) > 0);
    assert!(int(under(&rms, &db, "postgresql.db_size")[0]) > 1_000_000);
    assert!(!under(&rms, &db, "postgresql.rollbacks").is_empty());
    assert!(int(under(&rms, &db, "postgresql.backends")[0]) >= 1);
    assert!(int(under(&rms, &db, "postgresql.tup_inserted")[0]) >= 10);
    assert_eq!(
        by(
            &under(&rms, &db, "postgresql.function.calls"),
            "function",
            "twice"
        ),
        2
    );
    let table = [
        ("postgresql.database.name", "otel"),
        ("postgresql.table.name", "public.items"),
    ];
    let ops = under(&rms, &table, "postgresql.operations");
    assert_eq!(
        ["ins", "upd", "del", "hot_upd"].map(|o| by(&ops, "operation", o))[..3],
        [10, 2, 1]
    );
    let rows = under(&rms, &table, "postgresql.rows");
    assert_eq!(
        (by(&rows, "state", "live"), by(&rows, "state", "dead")),
        (9, 0)
    );
    assert_eq!(
        int(under(&rms, &table, "postgresql.table.vacuum.count")[0]),
        1
    );
    assert!(int(under(&rms, &table, "postgresql.table.size")[0]) > 0);
    assert_eq!(under(&rms, &table, "postgresql.blocks_read").len(), 8);
    let idx = [
        ("postgresql.database.name", "otel"),
        ("postgresql.table.name", "items"),
        ("postgresql.index.name", "items_pkey"),
    ];
    assert!(int(under(&rms, &idx, "postgresql.index.scans")[0]) >= 1);
    assert!(int(under(&rms, &idx, "postgresql.index.size")[0]) > 0);
    // Server-wide, under the empty resource.
    assert_eq!(int(under(&rms, &[], "postgresql.database.count")[0]), 1);
    assert_eq!(int(under(&rms, &[], "postgresql.connection.max")[0]), 37);
    assert_eq!(
        under(&rms, &[], "postgresql.bgwriter.buffers.writes").len(),
        4
    );
    assert_eq!(
        under(&rms, &[], "postgresql.bgwriter.checkpoint.count").len(),
        2
    );
    assert!(under(&rms, &[], "postgresql.bgwriter.maxwritten").is_empty());
    // The excluded database has no resource, and nothing but otel's and the server's exist.
    assert!(rms.iter().all(|r| {
        vigil_core::attrs::get_str(
            &r.resource.as_ref().unwrap().attributes,
            "postgresql.database.name",
        )
        .is_none_or(|d| d == "otel")
    }));
    let m = rms
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .find(|s| s.metrics.iter().any(|m| m.name == "postgresql.db_size"))
        .unwrap();
    assert_eq!(m.scope.as_ref().unwrap().name, SCOPE);
    let size = m
        .metrics
        .iter()
        .find(|m| m.name == "postgresql.db_size")
        .unwrap();
    assert_eq!(size.unit, "By");
}

/// TLS as otelcol sets it: by default TLS without verification (sslmode=require); with
/// `insecure_skip_verify: false` the server's certificate must chain to `ca_file` and name the
/// host (verify-full); a plaintext-only server refuses a TLS config; a wrong password fails the
/// scrape with the server's answer.
#[tokio::test]
async fn tls_modes_and_auth_errors() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    let pg = start_pg(
        &[
            "ssl=on",
            "ssl_cert_file=server.crt",
            "ssl_key_file=server.key",
        ],
        |data| {
            std::fs::write(data.join("server.crt"), &cert_pem).unwrap();
            std::fs::write(data.join("server.key"), &key_pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        },
    );
    let ca = pg.dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();
    let at = |host: &str, tls: serde_json::Value| {
        let mut c = config(pg.port, json!({"tls": tls}));
        c.endpoint = format!("{host}:{}", pg.port);
        scraper(&c)
    };
    // Wait for the server to accept connections.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while at("127.0.0.1", json!({"insecure": true}))
        .connect("postgres")
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (host, tls, ok) in [
        ("127.0.0.1", json!({}), true),
        (
            "localhost",
            json!({"insecure_skip_verify": false, "ca_file": ca}),
            true,
        ),
        ("localhost", json!({"insecure_skip_verify": false}), false),
        (
            "127.0.0.1",
            json!({"insecure_skip_verify": false, "ca_file": ca}),
            false,
        ),
    ] {
        let got = at(host, tls.clone()).scrape().await;
        assert_eq!(got.errors.is_empty(), ok, "{host} {tls}: {:?}", got.errors);
        if ok {
            assert!(!under(&got.metrics, &[], "postgresql.connection.max").is_empty());
        } else {
            assert!(got.errors[0].contains("cannot connect"), "{:?}", got.errors);
        }
    }
    let mut bad = config(pg.port, json!({}));
    bad.password = "wrong".into();
    bad.tls.insecure = true;
    let got = scraper(&bad).scrape().await;
    assert!(got.metrics.is_empty());
    assert!(
        got.errors[0].contains("password authentication failed"),
        "{:?}",
        got.errors
    );
}

/// The receiver's loop: started with a metrics pipeline it scrapes after `initial_delay` and on
/// every interval, and sends the batches on.
#[tokio::test]
async fn receiver_scrapes_on_its_interval() {
    let pg = start_pg(&[], |_| {});
    let cfg = config(
        pg.port,
        json!({"collection_interval": "200ms", "initial_delay": "0s"}),
    );
    let got = crate::test_servers::run_receiver(
        factory(),
        "postgresql",
        serde_json::to_value(&cfg).unwrap(),
        2,
    )
    .await;
    assert!(got
        .iter()
        .any(|r| !points(std::slice::from_ref(r), "postgresql.database.count").is_empty()));
}

#[test]
fn config_errors_name_the_key() {
    let e = load(json!({})).unwrap_err().to_string();
    assert!(
        e.contains("postgresql::username: invalid config: missing username"),
        "{e}"
    );
    let e = load(json!({"username": "u"})).unwrap_err().to_string();
    assert!(e.contains("postgresql::password"), "{e}");
    let ok = json!({"username": "u", "password": "p"});
    let with = |k: &str, v: serde_json::Value| {
        let mut o = ok.clone();
        o[k] = v;
        load(o).unwrap_err().to_string()
    };
    assert!(with("endpoint", json!("localhost")).contains("postgresql::endpoint"));
    assert!(with("transport", json!("udp")).contains("'transport' must be 'tcp' or 'unix'"));
    assert!(with("tls", json!({"min_version": "1.3"})).contains("tls::min_version"));
    assert!(
        with("metrics", json!({"postgresql.nope": {"enabled": true}}))
            .contains("metrics::postgresql.nope")
    );
    assert!(with(
        "metrics",
        json!({"postgresql.vector.search.calls": {"enabled": true}})
    )
    .contains("does not measure"));
    assert!(with("events", json!({"db.server.top_query": {"enabled": true}})).contains("events::"));
    let c = load(ok).unwrap();
    assert_eq!(c.collection_interval, Duration::from_secs(10));
    assert_eq!(c.endpoint, "localhost:5432");
    assert!(c.tls.insecure_skip_verify && !c.tls.insecure);
    let c = load(json!({"username": "u", "password": "p", "transport": "unix", "endpoint": "var/run/postgresql:5432"})).unwrap();
    let id = ComponentId::parse("postgresql").unwrap();
    assert!(
        matches!(check(&id, &c).unwrap().target, Target::Unix(ref d, 5432) if d == "/var/run/postgresql")
    );
}
