//! Benchmark of the OTTL engine (not a test): items per CPU-second for a filter-style condition, a
//! transform-style group of statements, a routing-style condition per record, and stanza's expr
//! dialect, on one thread. Run it in release mode: `cargo run --release -p vigil-ottl --example
//! bench_ottl`. Figures go to `BENCHMARKS.md` ("OTTL").

use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value, AnyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::Telemetry;
use vigil_ottl::pdata::{visit, Item};
use vigil_ottl::{parse_condition, parse_expr, parse_statement, Context, StatementOptions, Target};

const RECORDS: usize = 10_000;
const ROUNDS: usize = 20;

/// 10,000 log records under 10 resources: a JSON body on every fourth, five attributes each.
fn batch() -> Telemetry {
    Telemetry::Logs(
        (0..10)
            .map(|r| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv_str("service.name", format!("svc-{r}")),
                        kv_str("tenant", if r % 2 == 0 { "acme" } else { "ecorp" }),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: (0..RECORDS / 10)
                        .map(|i| LogRecord {
                            severity_number: (i % 24) as i32 + 1,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(if i % 4 == 0 {
                                    format!(r#"{{"level":"WARN","user":"u{i}","ms":{i}}}"#)
                                } else {
                                    format!("GET /users/{i} 200 {i}ms user{i}@example.com")
                                })),
                            }),
                            attributes: vec![
                                kv_str("http.route", "/users/{id}"),
                                kv_i64("http.status", if i % 10 == 0 { 503 } else { 200 }),
                                kv_str("user.email", format!("user{i}@example.com")),
                                kv_str("host", "node-1"),
                                kv_i64("i", i as i64),
                            ],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    )
}

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f` over a fresh copy of the batch `ROUNDS` times; returns items per CPU-second (the copy
/// is made outside the timed part).
fn measure(ctx: Context, f: &mut dyn FnMut(&mut Item<'_>) -> bool) -> f64 {
    let base = batch();
    let mut cpu = 0.0;
    let mut items = 0usize;
    for _ in 0..ROUNDS {
        let mut data = base.clone();
        let t0 = cpu_seconds();
        visit(&mut data, ctx, f);
        cpu += cpu_seconds() - t0;
        items += RECORDS;
    }
    items as f64 / cpu
}

fn main() {
    let cond = parse_condition(
        Context::Log,
        r#"severity_number < SEVERITY_NUMBER_WARN and attributes["http.status"] < 500 and IsMatch(body, "^GET /health")"#,
    )
    .expect("condition");
    let filter = measure(Context::Log, &mut |it| !cond.eval(it).unwrap_or(false));

    let opts = StatementOptions::default();
    let group: Vec<_> = [
        r#"merge_maps(attributes, ParseJSON(body), "upsert") where IsMatch(body, "^\\{")"#,
        r#"replace_pattern(body, "user\\d+@\\S+", "[email]")"#,
        r#"set(attributes["user.email"], SHA256(attributes["user.email"]))"#,
        r#"set(severity_number, SEVERITY_NUMBER_ERROR) where attributes["http.status"] >= 500"#,
        r#"delete_key(attributes, "host")"#,
    ]
    .iter()
    .map(|s| parse_statement(Context::Log, s, opts).expect("statement"))
    .collect();
    let transform = measure(Context::Log, &mut |it| {
        for s in &group {
            let _ = s.execute(it);
        }
        true
    });

    let route = parse_condition(
        Context::Log,
        r#"resource.attributes["tenant"] == "acme" or attributes["http.status"] >= 500"#,
    )
    .expect("route condition");
    let routing = measure(Context::Log, &mut |it| {
        let _ = route.eval(it);
        true
    });

    // The expr dialect, on the same records through a minimal target.
    struct Rec<'a>(&'a LogRecord);
    impl Target for Rec<'_> {
        fn get(&self, p: &vigil_ottl::Path) -> Result<vigil_ottl::Value, String> {
            match p.field {
                vigil_ottl::Field::Body => vigil_ottl::get_in_any(self.0.body.as_ref(), &p.keys),
                _ => vigil_ottl::get_in_kvs(&self.0.attributes, &p.keys),
            }
        }
    }
    let expr =
        parse_expr(r#"attributes["http.status"] == 503 && body matches "^GET""#).expect("expr");
    let expr_rate = measure(Context::Log, &mut |it| {
        if let Some(l) = it.log.as_deref() {
            let _ = expr.matches(&Rec(l));
        }
        true
    });

    println!("items per CPU-second, {RECORDS} log records x {ROUNDS} rounds");
    println!("filter condition (3 comparisons, 1 regex):   {filter:>12.0}");
    println!("transform group (5 statements):              {transform:>12.0}");
    println!("routing condition (per log record):          {routing:>12.0}");
    println!("expr dialect (filelog router):               {expr_rate:>12.0}");
}
