//! `postgresql`: PostgreSQL's statistics views, scraped as otelcol's receiver scrapes them. Every
//! `collection_interval` it connects to the `postgres` database for the server-wide numbers
//! (database list, sizes, backends, commits, bgwriter, max connections, WAL and replication), then
//! to each database for its tables and indexes, and reports otelcol's metrics with its resource
//! model (otelcol's default, before its `useOTelSemconv` gate): one resource per database
//! (`postgresql.database.name`), per table (plus `postgresql.table.name`, `schema.table`) and per
//! index (plus `postgresql.index.name`), and the server-wide metrics under an empty resource.
//! Connections are made for a scrape and closed after it (otelcol's pool keeps them; the server
//! sees more connections, the numbers are the same). The client is tokio-postgres over rustls.

use crate::hostmetrics::config::{MetricToggle, Toggles};
use crate::scrape::{self, gauge, sum, Builder, MetricDef, Schedule, Scrape, Scraped};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vigil_core::attrs::kv_str;
use vigil_core::config::duration;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

#[cfg(test)]
mod tests;

/// The instrumentation scope otelcol's receiver reports under.
pub const SCOPE: &str =
    "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/postgresqlreceiver";

/// The database every scrape starts from (otelcol's `defaultPostgreSQLDatabase`).
const LIST_DATABASE: &str = "postgres";

/// Bound on connecting to one database, so an unreachable server fails a scrape rather than
/// holding it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// otelcol's metadata: every metric, its unit, type and default.
pub const METRICS: &[MetricDef] = &[
    sum("postgresql.backends", "The number of backends.", "1", false, true),
    sum("postgresql.bgwriter.buffers.allocated", "Number of buffers allocated.", "{buffers}", true, true),
    sum("postgresql.bgwriter.buffers.writes", "Number of buffers written.", "{buffers}", true, true),
    sum("postgresql.bgwriter.checkpoint.count", "The number of checkpoints performed.", "{checkpoints}", true, true),
    sum("postgresql.bgwriter.duration", "Total time spent writing and syncing files to disk by checkpoints.", "ms", true, true),
    sum("postgresql.bgwriter.maxwritten", "Number of times the background writer stopped a cleaning scan because it had written too many buffers.", "1", true, true),
    sum("postgresql.blocks_read", "The number of blocks read.", "1", true, true),
    sum("postgresql.commits", "The number of commits.", "1", true, true),
    gauge("postgresql.connection.max", "Configured maximum number of client connections allowed", "{connections}", true),
    sum("postgresql.database.count", "Number of user databases.", "{databases}", false, true),
    sum("postgresql.db_size", "The database disk usage.", "By", false, true),
    sum("postgresql.index.scans", "The number of index scans on a table.", "{scans}", true, true),
    gauge("postgresql.index.size", "The size of the index on disk.", "By", true),
    sum("postgresql.operations", "The number of db row operations.", "1", true, true),
    gauge("postgresql.replication.data_delay", "The amount of data delayed in replication.", "By", true),
    sum("postgresql.rollbacks", "The number of rollbacks.", "1", true, true),
    sum("postgresql.rows", "The number of rows in the database.", "1", false, true),
    sum("postgresql.table.count", "Number of user tables in a database.", "{table}", false, true),
    sum("postgresql.table.size", "Disk space used by a table.", "By", false, true),
    sum("postgresql.table.vacuum.count", "Number of times a table has manually been vacuumed.", "{vacuum}", true, true),
    gauge("postgresql.wal.age", "Age of the oldest WAL file.", "s", true),
    gauge("postgresql.wal.lag", "Time between flushing recent WAL locally and receiving notification that the standby server has completed an operation with it.", "s", true),
    sum("postgresql.blks_hit", "Number of times disk blocks were found already in the buffer cache.", "{blks_hit}", true, false),
    sum("postgresql.blks_read", "Number of disk blocks read in this database.", "{blks_read}", true, false),
    gauge("postgresql.database.locks", "The number of database locks.", "{lock}", false),
    sum("postgresql.deadlocks", "The number of deadlocks.", "{deadlock}", true, false),
    sum("postgresql.function.calls", "The number of calls made to a function. Requires `track_functions=pl|all` in Postgres config.", "{call}", true, false),
    sum("postgresql.query.conflicts", "Number of queries canceled due to conflicts with recovery on this database.", "{query}", true, false),
    sum("postgresql.query.execution.time", "The total execution time of SQL statements currently tracked by pg_stat_statements for the database.", "s", true, false),
    sum("postgresql.sequential_scans", "The number of sequential scans.", "{sequential_scan}", true, false),
    sum("postgresql.temp.io", "Total amount of data written to temporary files by queries.", "By", true, false),
    sum("postgresql.temp_files", "The number of temp files.", "{temp_file}", true, false),
    sum("postgresql.tup_deleted", "Number of rows deleted by queries in the database.", "{tup_deleted}", true, false),
    sum("postgresql.tup_fetched", "Number of rows fetched by queries in the database.", "{tup_fetched}", true, false),
    sum("postgresql.tup_inserted", "Number of rows inserted by queries in the database.", "{tup_inserted}", true, false),
    sum("postgresql.tup_returned", "Number of rows returned by queries in the database.", "{tup_returned}", true, false),
    sum("postgresql.tup_updated", "Number of rows updated by queries in the database.", "{tup_updated}", true, false),
    sum("postgresql.vector.insert.duration", "The cumulative execution time of statements that insert vectors into pgvector tables.", "s", true, false),
    sum("postgresql.vector.insert.rows", "The number of vectors inserted into pgvector tables.", "{vectors}", true, false),
    sum("postgresql.vector.search.calls", "The number of vector similarity search operations executed.", "{search}", true, false),
    sum("postgresql.vector.search.duration", "The cumulative execution time of vector similarity searches.", "s", true, false),
    sum("postgresql.vector.search.rows_returned", "The cumulative number of rows returned by vector similarity searches.", "{rows}", true, false),
    gauge("postgresql.wal.delay", "Time between flushing recent WAL locally and receiving notification that the standby server has completed an operation with it.", "s", false),
];

/// Optional metrics vigil does not measure yet: enabling one is refused, not ignored.
const NOT_BUILT: &[&str] = &[
    "postgresql.vector.insert.duration",
    "postgresql.vector.insert.rows",
    "postgresql.vector.search.calls",
    "postgresql.vector.search.duration",
    "postgresql.vector.search.rows_returned",
];

/// otelcol's resource attributes and their defaults. The last five belong to otelcol's alpha
/// `useOTelSemconv` resource model, which vigil (like otelcol by default) does not use: they are
/// accepted and never set.
pub const RESOURCE_ATTRIBUTES: &[(&str, bool)] = &[
    ("postgresql.database.name", true),
    ("postgresql.index.name", true),
    ("postgresql.schema.name", true),
    ("postgresql.table.name", true),
    ("server.address", true),
    ("server.port", true),
    ("service.instance.id", true),
    ("service.name", false),
    ("service.namespace", false),
];

/// otelcol's log events (query samples, top queries): not built, enabling one is refused.
const EVENTS: &[(&str, bool)] = &[
    ("db.server.query_sample", false),
    ("db.server.top_query", false),
];

/// `tls` as otelcol's postgresql receiver defaults it: TLS on, the certificate not verified
/// (`insecure_skip_verify: true`), so `sslmode=require`; `insecure: true` is `sslmode=disable`,
/// `insecure_skip_verify: false` is `verify-full`.
/// `server_name_override`, `min_version` and `max_version` are refused, as otelcol refuses them
/// (its driver cannot set them).
pub type PgTls = scrape::ScraperTls<PgTlsDefaults>;

#[derive(Debug, Clone)]
pub struct PgTlsDefaults;

impl scrape::TlsDefaults for PgTlsDefaults {
    fn insecure() -> bool {
        false
    }
    fn insecure_skip_verify() -> bool {
        true
    }
}

/// `receivers::postgresql` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresqlConfig {
    /// Time between two scrapes (otelcol: 10s).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first scrape (scraperhelper: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// scraperhelper's bound on one scrape; 0 (the default) means none.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    /// `host:port`; with `transport: unix`, host is the socket's directory without its leading
    /// slash, as otelcol reads it (`var/run/postgresql:5432`).
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `tcp` (default) or `unix`.
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// Databases to scrape; empty means every database that is not a template.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Databases left out (of the list above or of the server's).
    #[serde(default)]
    pub exclude_databases: Vec<String>,
    #[serde(default)]
    pub tls: PgTls,
    /// `{ <metric>: { enabled: bool } }`, mdatagen's toggles.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricToggle>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, MetricToggle>,
    /// otelcol's log events; enabling one is refused (not built).
    #[serde(default)]
    pub events: BTreeMap<String, MetricToggle>,
    /// Settings of otelcol's query-sample events, which vigil does not build; accepted so that
    /// a config naming them loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_sample_collection: Option<serde_json::Value>,
    /// Settings of otelcol's top-query events (not built); accepted as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_query_collection: Option<serde_json::Value>,
}

impl Default for PostgresqlConfig {
    fn default() -> Self {
        PostgresqlConfig {
            collection_interval: default_interval(),
            initial_delay: default_initial_delay(),
            timeout: Duration::ZERO,
            endpoint: default_endpoint(),
            transport: default_transport(),
            username: String::new(),
            password: String::new(),
            databases: Vec::new(),
            exclude_databases: Vec::new(),
            tls: PgTls::default(),
            metrics: BTreeMap::new(),
            resource_attributes: BTreeMap::new(),
            events: BTreeMap::new(),
            query_sample_collection: None,
            top_query_collection: None,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_endpoint() -> String {
    "localhost:5432".into()
}
fn default_transport() -> String {
    "tcp".into()
}

fn err(id: &ComponentId, path: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path.into(), msg)
}

/// Where to connect.
#[derive(Debug, Clone)]
enum Target {
    Tcp(String, u16),
    /// The socket's directory and the port in its name (`.s.PGSQL.<port>`).
    Unix(String, u16),
}

/// A checked config, ready to connect.
struct Checked {
    target: Target,
    metrics: Toggles,
    resource_attrs: Toggles,
}

fn split_host_port(endpoint: &str) -> Option<(String, u16)> {
    let (host, port) = endpoint.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port.parse().ok()?))
}

fn check(id: &ComponentId, c: &PostgresqlConfig) -> Result<Checked, ConfigError> {
    vigil_core::config::check_interval(c.collection_interval)
        .map_err(|m| err(id, "collection_interval", m))?;
    if c.username.is_empty() {
        return Err(err(id, "username", "invalid config: missing username"));
    }
    if c.password.is_empty() {
        return Err(err(id, "password", "invalid config: missing password"));
    }
    for (key, v) in [
        ("server_name_override", &c.tls.server_name_override),
        ("min_version", &c.tls.min_version),
        ("max_version", &c.tls.max_version),
    ] {
        if v.is_some() {
            return Err(err(
                id,
                format!("tls::{key}"),
                "not supported by the postgresql receiver (as in otelcol)",
            ));
        }
    }
    if c.tls.cert_file.is_some() != c.tls.key_file.is_some() {
        return Err(err(id, "tls", "cert_file and key_file go together"));
    }
    let (host, port) = split_host_port(&c.endpoint).ok_or_else(|| {
        err(
            id,
            "endpoint",
            format!(
                "{:?}: invalid config: 'endpoint' must be in the form <host>:<port> no matter what 'transport' is configured",
                c.endpoint
            ),
        )
    })?;
    let target = match c.transport.as_str() {
        "tcp" => Target::Tcp(host, port),
        // otelcol gives lib/pq the host with a leading slash: a directory holding the socket.
        "unix" => Target::Unix(format!("/{}", host.trim_start_matches('/')), port),
        other => {
            return Err(err(
                id,
                "transport",
                format!("{other:?}: invalid config: 'transport' must be 'tcp' or 'unix'"),
            ))
        }
    };
    let metrics = Toggles::build(&scrape::known(METRICS), &c.metrics, |p, m| err(id, p, m))?;
    for name in NOT_BUILT {
        if metrics.on(name) {
            return Err(err(
                id,
                format!("metrics::{name}::enabled"),
                "vigil does not measure this metric yet",
            ));
        }
    }
    let resource_attrs = scrape::toggles_under(
        "resource_attributes",
        "resource attribute",
        RESOURCE_ATTRIBUTES,
        &c.resource_attributes,
        |p, m| err(id, p, m),
    )?;
    let events = scrape::toggles_under("events", "event", EVENTS, &c.events, |p, m| err(id, p, m))?;
    for (name, _) in EVENTS {
        if events.on(name) {
            return Err(err(
                id,
                format!("events::{name}::enabled"),
                "vigil does not build the postgresql receiver's log events yet",
            ));
        }
    }
    Ok(Checked {
        target,
        metrics,
        resource_attrs,
    })
}

/// The `postgresql` receiver factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    scrape::factory(scrape::Spec::<PostgresqlConfig, PgScraper> {
        type_name: "postgresql",
        stability: scrape::BETA,
        check: |id, cfg| check(id, cfg).map(|_| ()),
        build,
        schedule: |cfg| Schedule {
            collection_interval: cfg.collection_interval,
            initial_delay: cfg.initial_delay,
            timeout: cfg.timeout,
        },
        receiver: scrape::run,
    })
}

/// The scraper of a section: checks it and builds the TLS configuration (reading its files).
fn build(id: &ComponentId, cfg: &PostgresqlConfig) -> Result<PgScraper, ConfigError> {
    let checked = check(id, cfg)?;
    // `check` has refused min_version and max_version, so the client offers the default versions.
    let tls = match cfg.tls.client() {
        None => None,
        Some(t) => Some(vigil_core::net::client_tls::client_config(
            &t,
            &[],
            |k, m| err(id, k, m),
        )?),
    };
    Ok(PgScraper {
        target: checked.target,
        username: cfg.username.clone(),
        password: cfg.password.clone(),
        databases: cfg.databases.clone(),
        exclude: cfg.exclude_databases.clone(),
        tls,
        metrics: checked.metrics,
        resource_attrs: checked.resource_attrs,
        start: scrape::unix_nanos(SystemTime::now()),
    })
}

struct PgScraper {
    target: Target,
    username: String,
    password: String,
    databases: Vec<String>,
    exclude: Vec<String>,
    /// `None`: plaintext (`insecure: true`).
    tls: Option<Arc<rustls::ClientConfig>>,
    metrics: Toggles,
    resource_attrs: Toggles,
    /// Start time of the cumulative sums.
    start: u64,
}

/// The error's text with the server's message (tokio-postgres shows a server error as "db error").
fn pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// One row's `i64` column; NULL (a view's column with no value yet) reads as 0.
fn int(row: &tokio_postgres::Row, i: usize) -> i64 {
    row.try_get::<_, Option<i64>>(i).ok().flatten().unwrap_or(0)
}

fn float(row: &tokio_postgres::Row, i: usize) -> f64 {
    row.try_get::<_, Option<f64>>(i)
        .ok()
        .flatten()
        .unwrap_or(0.0)
}

fn text(row: &tokio_postgres::Row, i: usize) -> String {
    row.try_get::<_, Option<String>>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Tables and indexes under an exclusive lock are skipped, as otelcol skips them: reading their
/// size would wait behind the lock.
const TABLES: &str = "SELECT s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, s.n_tup_ins, \
    s.n_tup_upd, s.n_tup_del, s.n_tup_hot_upd, s.seq_scan, pg_relation_size(s.relid), \
    s.vacuum_count, io.heap_blks_read, io.heap_blks_hit, io.idx_blks_read, io.idx_blks_hit, \
    io.toast_blks_read, io.toast_blks_hit, io.tidx_blks_read, io.tidx_blks_hit \
    FROM pg_stat_user_tables s JOIN pg_statio_user_tables io ON io.relid = s.relid \
    WHERE NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = s.relid AND l.locktype = 'relation' \
    AND l.mode = 'AccessExclusiveLock' AND l.granted) ORDER BY 1, 2";

const INDEXES: &str =
    "SELECT s.schemaname, s.relname, s.indexrelname, pg_relation_size(s.indexrelid), \
    s.idx_scan FROM pg_stat_user_indexes s WHERE NOT EXISTS (SELECT 1 FROM pg_locks l \
    WHERE l.relation = s.indexrelid AND l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
    AND l.granted) ORDER BY 1, 2, 3";

/// Per-function calls; an overloaded name gets its argument names appended, as otelcol names them.
const FUNCTIONS: &str = "SELECT CASE WHEN (SELECT count(*) FROM pg_stat_user_functions o \
    WHERE o.funcname = s.funcname) > 1 AND p.proargnames IS NOT NULL \
    THEN p.proname || '_' || array_to_string(p.proargnames, '_') ELSE p.proname END, s.calls \
    FROM pg_stat_user_functions s JOIN pg_proc p ON p.oid = s.funcid ORDER BY 1";

/// Per-database numbers read from the `postgres` connection.
#[derive(Default)]
struct DbStats {
    backends: BTreeMap<String, i64>,
    sizes: BTreeMap<String, i64>,
    /// commits, rollbacks, deadlocks, temp_files, temp_bytes, tup_updated, tup_returned,
    /// tup_fetched, tup_inserted, tup_deleted, blks_hit, blks_read.
    stats: BTreeMap<String, [i64; 12]>,
    /// tablespace, lock, snapshot, bufferpin, deadlock.
    conflicts: BTreeMap<String, [i64; 5]>,
    exec_seconds: BTreeMap<String, f64>,
}

/// Runs `sql`, whose first column is a database's name, and keeps what `read` takes of each row of
/// a database in `dbs`; a failed query is an error named `what`, and leaves the map empty.
async fn per_db<T>(
    c: &tokio_postgres::Client,
    sql: &str,
    what: &str,
    dbs: &[String],
    errors: &mut Vec<String>,
    read: impl Fn(&tokio_postgres::Row) -> T,
) -> BTreeMap<String, T> {
    match c.query(sql, &[]).await {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                let n = text(r, 0);
                dbs.contains(&n).then(|| (n, read(r)))
            })
            .collect(),
        Err(e) => {
            errors.push(format!("{what}: {}", pg_error(&e)));
            BTreeMap::new()
        }
    }
}

impl PgScraper {
    async fn connect(&self, db: &str) -> Result<tokio_postgres::Client, String> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.user(&self.username)
            .password(&self.password)
            .dbname(db)
            .application_name("vigil")
            .connect_timeout(CONNECT_TIMEOUT);
        match &self.target {
            Target::Tcp(h, p) => {
                cfg.host(h).port(*p);
            }
            Target::Unix(dir, p) => {
                cfg.host_path(dir).port(*p);
            }
        }
        let what = |e: tokio_postgres::Error| {
            format!("cannot connect to database {db:?}: {}", pg_error(&e))
        };
        match &self.tls {
            None => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.map_err(what)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Some(tls) => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, conn) = cfg.connect(tls).await.map_err(what)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    async fn databases(&self, c: &tokio_postgres::Client) -> Result<Vec<String>, String> {
        let mut dbs = if self.databases.is_empty() {
            c.query(
                "SELECT datname FROM pg_database WHERE datistemplate = false ORDER BY datname",
                &[],
            )
            .await
            .map_err(|e| format!("cannot list databases: {}", pg_error(&e)))?
            .iter()
            .map(|r| text(r, 0))
            .collect()
        } else {
            self.databases.clone()
        };
        dbs.retain(|d| !self.exclude.contains(d));
        Ok(dbs)
    }

    async fn db_stats(
        &self,
        c: &tokio_postgres::Client,
        dbs: &[String],
        errors: &mut Vec<String>,
    ) -> DbStats {
        let mut out = DbStats {
            backends: per_db(
                c,
                "SELECT datname, count(*) FROM pg_stat_activity WHERE datname IS NOT NULL GROUP BY datname",
                "pg_stat_activity",
                dbs,
                errors,
                |r| int(r, 1),
            )
            .await,
            sizes: per_db(
                c,
                "SELECT datname, pg_database_size(datname) FROM pg_database WHERE datistemplate = false",
                "pg_database_size",
                dbs,
                errors,
                |r| int(r, 1),
            )
            .await,
            stats: per_db(
                c,
                "SELECT datname, xact_commit, xact_rollback, deadlocks, temp_files, temp_bytes, \
                 tup_updated, tup_returned, tup_fetched, tup_inserted, tup_deleted, blks_hit, \
                 blks_read FROM pg_stat_database WHERE datname IS NOT NULL",
                "pg_stat_database",
                dbs,
                errors,
                |r| std::array::from_fn(|i| int(r, i + 1)),
            )
            .await,
            ..DbStats::default()
        };
        if self.metrics.on("postgresql.query.conflicts") {
            out.conflicts = per_db(
                c,
                "SELECT datname, confl_tablespace, confl_lock, confl_snapshot, confl_bufferpin, \
                 confl_deadlock FROM pg_stat_database_conflicts",
                "pg_stat_database_conflicts",
                dbs,
                errors,
                |r| std::array::from_fn(|i| int(r, i + 1)),
            )
            .await;
        }
        if self.metrics.on("postgresql.query.execution.time") {
            out.exec_seconds = per_db(
                c,
                "SELECT d.datname, (sum(s.total_exec_time) / 1000)::float8 FROM pg_stat_statements s \
                 JOIN pg_database d ON s.dbid = d.oid GROUP BY d.datname",
                "pg_stat_statements (is the extension created?)",
                dbs,
                errors,
                |r| float(r, 1),
            )
            .await;
        }
        out
    }

    /// One database's tables, indexes and functions; returns how many tables it has.
    async fn collect_db(&self, b: &mut Builder<'_>, db: &str, errors: &mut Vec<String>) -> i64 {
        let c = match self.connect(db).await {
            Ok(c) => c,
            Err(e) => {
                errors.push(e);
                return 0;
            }
        };
        let mut tables = 0;
        match c.query(TABLES, &[]).await {
            Ok(rows) => {
                tables = rows.len() as i64;
                for r in &rows {
                    let (schema, table) = (text(r, 0), text(r, 1));
                    b.int("postgresql.rows", int(r, 3), vec![kv_str("state", "dead")]);
                    b.int("postgresql.rows", int(r, 2), vec![kv_str("state", "live")]);
                    for (i, op) in [(4, "ins"), (6, "del"), (5, "upd"), (7, "hot_upd")] {
                        b.int(
                            "postgresql.operations",
                            int(r, i),
                            vec![kv_str("operation", op)],
                        );
                    }
                    b.int("postgresql.table.size", int(r, 9), vec![]);
                    b.int("postgresql.table.vacuum.count", int(r, 10), vec![]);
                    b.int("postgresql.sequential_scans", int(r, 8), vec![]);
                    for (i, src) in [
                        (11, "heap_read"),
                        (12, "heap_hit"),
                        (13, "idx_read"),
                        (14, "idx_hit"),
                        (15, "toast_read"),
                        (16, "toast_hit"),
                        (17, "tidx_read"),
                        (18, "tidx_hit"),
                    ] {
                        b.int(
                            "postgresql.blocks_read",
                            int(r, i),
                            vec![kv_str("source", src)],
                        );
                    }
                    b.emit_for_resource(vec![
                        kv_str("postgresql.database.name", db),
                        kv_str("postgresql.table.name", format!("{schema}.{table}")),
                    ]);
                }
            }
            Err(e) => errors.push(format!("tables of {db:?}: {}", pg_error(&e))),
        }
        if b.on("postgresql.index.scans") || b.on("postgresql.index.size") {
            match c.query(INDEXES, &[]).await {
                Ok(rows) => {
                    for r in &rows {
                        b.int("postgresql.index.scans", int(r, 4), vec![]);
                        b.int("postgresql.index.size", int(r, 3), vec![]);
                        b.emit_for_resource(vec![
                            kv_str("postgresql.database.name", db),
                            kv_str("postgresql.table.name", text(r, 1)),
                            kv_str("postgresql.index.name", text(r, 2)),
                        ]);
                    }
                }
                Err(e) => errors.push(format!("indexes of {db:?}: {}", pg_error(&e))),
            }
        }
        if b.on("postgresql.function.calls") {
            match c.query(FUNCTIONS, &[]).await {
                Ok(rows) => {
                    for r in &rows {
                        b.int(
                            "postgresql.function.calls",
                            int(r, 1),
                            vec![kv_str("function", text(r, 0))],
                        );
                    }
                }
                Err(e) => errors.push(format!("functions of {db:?}: {}", pg_error(&e))),
            }
        }
        tables
    }

    /// Server-wide numbers, recorded under the empty resource.
    async fn collect_server(
        &self,
        b: &mut Builder<'_>,
        c: &tokio_postgres::Client,
        errors: &mut Vec<String>,
    ) {
        let version = match c
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
        {
            Ok(r) => r.try_get::<_, i32>(0).unwrap_or(0),
            Err(e) => {
                errors.push(format!("server_version_num: {}", pg_error(&e)));
                0
            }
        };
        // PostgreSQL 17 moved the checkpointer's numbers to pg_stat_checkpointer and the backends'
        // writes to pg_stat_io; those two sources are not reported there, as in otelcol.
        let bg = if version >= 170000 {
            "SELECT cp.num_requested, cp.num_timed, cp.write_time, cp.sync_time, bg.buffers_clean, \
             NULL::int8, NULL::int8, cp.buffers_written, bg.buffers_alloc, bg.maxwritten_clean \
             FROM pg_stat_bgwriter bg, pg_stat_checkpointer cp"
        } else {
            "SELECT checkpoints_req, checkpoints_timed, checkpoint_write_time, checkpoint_sync_time, \
             buffers_clean, buffers_backend, buffers_backend_fsync, buffers_checkpoint, \
             buffers_alloc, maxwritten_clean FROM pg_stat_bgwriter"
        };
        match c.query_one(bg, &[]).await {
            Ok(r) => {
                b.int("postgresql.bgwriter.buffers.allocated", int(&r, 8), vec![]);
                let writes = "postgresql.bgwriter.buffers.writes";
                b.int(writes, int(&r, 4), vec![kv_str("source", "bgwriter")]);
                if version < 170000 {
                    b.int(writes, int(&r, 5), vec![kv_str("source", "backend")]);
                }
                b.int(writes, int(&r, 7), vec![kv_str("source", "checkpoints")]);
                if version < 170000 {
                    b.int(writes, int(&r, 6), vec![kv_str("source", "backend_fsync")]);
                }
                let cp = "postgresql.bgwriter.checkpoint.count";
                b.int(cp, int(&r, 0), vec![kv_str("type", "requested")]);
                b.int(cp, int(&r, 1), vec![kv_str("type", "scheduled")]);
                let d = "postgresql.bgwriter.duration";
                b.double(d, float(&r, 3), vec![kv_str("type", "sync")]);
                b.double(d, float(&r, 2), vec![kv_str("type", "write")]);
                b.int("postgresql.bgwriter.maxwritten", int(&r, 9), vec![]);
            }
            Err(e) => errors.push(format!("pg_stat_bgwriter: {}", pg_error(&e))),
        }
        if b.on("postgresql.wal.age") {
            match c
                .query_one(
                    "SELECT EXTRACT(EPOCH FROM (now() - last_archived_time))::int8 FROM pg_stat_archiver",
                    &[],
                )
                .await
            {
                // No archive yet: no point, and no error (as in otelcol).
                Ok(r) => {
                    if let Ok(Some(age)) = r.try_get::<_, Option<i64>>(0) {
                        b.int("postgresql.wal.age", age, vec![]);
                    }
                }
                Err(e) => errors.push(format!("pg_stat_archiver: {}", pg_error(&e))),
            }
        }
        match c
            .query(
                "SELECT COALESCE(client_addr::text, 'unix'), \
                 COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::int8, -1), \
                 COALESCE(EXTRACT(EPOCH FROM write_lag)::float8, -1), \
                 COALESCE(EXTRACT(EPOCH FROM replay_lag)::float8, -1), \
                 COALESCE(EXTRACT(EPOCH FROM flush_lag)::float8, -1) FROM pg_stat_replication",
                &[],
            )
            .await
        {
            Ok(rows) => {
                for r in &rows {
                    let client = text(r, 0);
                    let at = |k: &str, v: &str| {
                        vec![kv_str(k, v), kv_str("replication_client", &client)]
                    };
                    if int(r, 1) >= 0 {
                        b.int(
                            "postgresql.replication.data_delay",
                            int(r, 1),
                            vec![kv_str("replication_client", &client)],
                        );
                    }
                    // otelcol's `preciselagmetrics` gate (beta, on by default) replaces
                    // `postgresql.wal.lag` with `postgresql.wal.delay`.
                    for (i, op) in [(2, "write"), (3, "replay"), (4, "flush")] {
                        if float(r, i) >= 0.0 {
                            b.double("postgresql.wal.delay", float(r, i), at("operation", op));
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("pg_stat_replication: {}", pg_error(&e))),
        }
        match c
            .query_one("SELECT current_setting('max_connections')::int8", &[])
            .await
        {
            Ok(r) => b.int("postgresql.connection.max", int(&r, 0), vec![]),
            Err(e) => errors.push(format!("max_connections: {}", pg_error(&e))),
        }
        if b.on("postgresql.database.locks") {
            match c
                .query(
                    "SELECT COALESCE(c.relname, ''), l.mode, l.locktype, count(*) FROM pg_locks l \
                     LEFT JOIN pg_class c ON l.relation = c.oid GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
                    &[],
                )
                .await
            {
                Ok(rows) => {
                    for r in &rows {
                        b.int(
                            "postgresql.database.locks",
                            int(r, 3),
                            vec![
                                kv_str("relation", text(r, 0)),
                                kv_str("mode", text(r, 1)),
                                kv_str("lock_type", text(r, 2)),
                            ],
                        );
                    }
                }
                Err(e) => errors.push(format!("pg_locks: {}", pg_error(&e))),
            }
        }
    }
}

#[async_trait]
impl Scrape for PgScraper {
    async fn scrape(&self) -> Scraped {
        let mut errors = Vec::new();
        let main = match self.connect(LIST_DATABASE).await {
            Ok(c) => c,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![e],
                }
            }
        };
        let dbs = match self.databases(&main).await {
            Ok(d) => d,
            Err(e) => {
                return Scraped {
                    metrics: Vec::new(),
                    errors: vec![e],
                }
            }
        };
        let stats = self.db_stats(&main, &dbs, &mut errors).await;
        let mut b = Builder::new(
            METRICS,
            &self.metrics,
            &self.resource_attrs,
            SCOPE,
            self.start,
        );
        for db in &dbs {
            let tables = self.collect_db(&mut b, db, &mut errors).await;
            b.int("postgresql.table.count", tables, vec![]);
            if let Some(n) = stats.backends.get(db) {
                b.int("postgresql.backends", *n, vec![]);
            }
            if let Some(n) = stats.sizes.get(db) {
                b.int("postgresql.db_size", *n, vec![]);
            }
            if let Some(s) = stats.stats.get(db) {
                for (i, name) in [
                    (0, "postgresql.commits"),
                    (1, "postgresql.rollbacks"),
                    (2, "postgresql.deadlocks"),
                    (3, "postgresql.temp_files"),
                    (4, "postgresql.temp.io"),
                    (5, "postgresql.tup_updated"),
                    (6, "postgresql.tup_returned"),
                    (7, "postgresql.tup_fetched"),
                    (8, "postgresql.tup_inserted"),
                    (9, "postgresql.tup_deleted"),
                    (10, "postgresql.blks_hit"),
                    (11, "postgresql.blks_read"),
                ] {
                    b.int(name, s[i], vec![]);
                }
            }
            if let Some(s) = stats.conflicts.get(db) {
                for (i, t) in ["tablespace", "lock", "snapshot", "bufferpin", "deadlock"]
                    .iter()
                    .enumerate()
                {
                    b.int(
                        "postgresql.query.conflicts",
                        s[i],
                        vec![kv_str("postgresql.conflict.type", *t)],
                    );
                }
            }
            if let Some(s) = stats.exec_seconds.get(db) {
                b.double("postgresql.query.execution.time", *s, vec![]);
            }
            b.emit_for_resource(vec![kv_str("postgresql.database.name", db.as_str())]);
        }
        b.int("postgresql.database.count", dbs.len() as i64, vec![]);
        self.collect_server(&mut b, &main, &mut errors).await;
        let no_resource: Vec<KeyValue> = Vec::new();
        Scraped {
            metrics: b.finish(no_resource),
            errors,
        }
    }
}
