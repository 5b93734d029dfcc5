//! Unit tests of the `prometheus` receiver: config files under `testdata/prometheus`, the OTLP mapping
//! of every metric type, start times and staleness, and scrapes of in-test targets that misbehave
//! (garbage, 404, too slow, too big) which must all end in `up` = 0.

use super::config::{self, Job};
use super::convert::{LabelLimits, ScrapeSettings, TargetInfo, Translator, FLAG_NO_RECORDED_VALUE};
use super::discovery::Target;
use super::parse::Format;
use super::relabel::Labels;
use super::scrape::{self, LoopContext};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Metric, NumberDataPoint, ResourceMetrics,
};
use std::time::Duration;
use vigil_core::attrs::get_str;
use vigil_core::{ComponentId, NextConsumers};

fn id() -> ComponentId {
    ComponentId::parse("prometheus").unwrap()
}

fn load_yaml(yaml: &str) -> Result<config::Config, vigil_core::ConfigError> {
    let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    config::load(&id(), &v)
}

#[test]
fn defaults_are_prometheus_and_otelcol_defaults() {
    let c = load_yaml("config:\n  scrape_configs:\n  - job_name: a\n").unwrap();
    let j = &c.jobs[0];
    assert_eq!(j.interval, Duration::from_secs(60));
    assert_eq!(j.timeout, Duration::from_secs(10));
    assert_eq!(j.metrics_path, "/metrics");
    assert_eq!(j.scheme, "http");
    assert!(j.honor_timestamps);
    assert!(!j.honor_labels);
    // An inherited timeout is clamped to a shorter job interval.
    let c = load_yaml("config:\n  scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n")
        .unwrap();
    assert_eq!(c.jobs[0].timeout, Duration::from_secs(5));
}

fn target() -> TargetInfo {
    let mut labels: Labels = vec![
        ("instance".into(), "localhost:9100".into()),
        ("job".into(), "node".into()),
        ("zone".into(), "eu".into()),
    ];
    labels.sort();
    TargetInfo {
        labels,
        scheme: "http".into(),
    }
}

fn settings() -> ScrapeSettings<'static> {
    ScrapeSettings {
        honor_labels: false,
        honor_timestamps: true,
        metric_relabel: &[],
        sample_limit: 0,
        start_time_metric: None,
        label_limits: Default::default(),
    }
}

const T0: u64 = 1_700_000_000_000_000_000;

fn metrics(rms: &[ResourceMetrics]) -> Vec<&Metric> {
    rms.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn find<'a>(rms: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    metrics(rms)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

const NODE: &str = "# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n\
# TYPE node_cpu_seconds_total counter\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 100.5\n\
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 20\n\
# TYPE node_load1 gauge\n\
node_load1 0.25\n\
mystery_value{kind=\"x\"} 7\n\
# TYPE http_latency histogram\n\
http_latency_bucket{path=\"/\",le=\"0.1\"} 3\n\
http_latency_bucket{path=\"/\",le=\"1\"} 5\n\
http_latency_bucket{path=\"/\",le=\"+Inf\"} 6\n\
http_latency_sum{path=\"/\"} 2.5\n\
http_latency_count{path=\"/\"} 6\n\
# TYPE rpc_duration summary\n\
rpc_duration{quantile=\"0.5\"} 0.2\n\
rpc_duration{quantile=\"0.99\"} 0.9\n\
rpc_duration_sum 12\n\
rpc_duration_count 40\n";

/// `trim_metric_suffixes: true`: a counter's `_total` and the family's unit words go, as otelcol's
/// translator trims them; names that would be left with nothing keep their last word.
#[test]
fn trim_metric_suffixes_drops_total_and_unit_words() {
    let names = |tr: &mut Translator, body: &str, format: Format| -> Vec<String> {
        let out = tr
            .translate(body, format, T0, &target(), &settings())
            .unwrap();
        let mut n: Vec<String> = metrics(&out.resource_metrics)
            .iter()
            .map(|m| m.name.clone())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&mut Translator::trimming_suffixes(true), NODE, Format::Text),
        [
            "http_latency",
            "mystery_value",
            "node_cpu_seconds",
            "node_load1",
            "rpc_duration"
        ]
    );
    let om = "# TYPE req_duration_seconds histogram\n\
# UNIT req_duration_seconds seconds\n\
req_duration_seconds_bucket{le=\"1\"} 1\n\
req_duration_seconds_bucket{le=\"+Inf\"} 2\n\
req_duration_seconds_sum 3\n\
req_duration_seconds_count 2\n\
# TYPE req counter\n\
req_total 5\n\
# TYPE seconds gauge\n\
# UNIT seconds seconds\n\
seconds 1\n\
# EOF\n";
    assert_eq!(
        names(
            &mut Translator::trimming_suffixes(true),
            om,
            Format::OpenMetrics
        ),
        ["req", "req_duration", "seconds"]
    );
    assert_eq!(
        names(&mut Translator::new(), om, Format::OpenMetrics),
        ["req_duration_seconds", "req_total", "seconds"]
    );
    let c = load_yaml(
        "trim_metric_suffixes: true\nconfig:\n  scrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['h:1']}]\n",
    )
    .unwrap();
    assert!(c.jobs[0].trim_suffixes);
}

#[test]
fn maps_every_type_like_otelcol() {
    let mut tr = Translator::new();
    let out = tr
        .translate(NODE, Format::Text, T0, &target(), &settings())
        .unwrap();
    assert_eq!(out.counts.scraped, 13);
    assert_eq!(out.counts.post_relabel, 13);
    assert_eq!(out.counts.series_added, 6);
    let rms = &out.resource_metrics;
    assert_eq!(rms.len(), 1);
    let res = &rms[0].resource.as_ref().unwrap().attributes;
    assert_eq!(get_str(res, "service.name"), Some("node"));
    assert_eq!(get_str(res, "service.instance.id"), Some("localhost:9100"));
    assert_eq!(get_str(res, "server.address"), Some("localhost"));
    assert_eq!(get_str(res, "url.scheme"), Some("http"));
    assert_eq!(
        vigil_core::attrs::get(res, "server.port"),
        Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(9100))
    );

    let cpu = find(rms, "node_cpu_seconds_total");
    assert_eq!(cpu.description, "Seconds the CPUs spent in each mode.");
    let Some(Data::Sum(sum)) = &cpu.data else {
        panic!("counter must be a Sum: {cpu:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
    assert_eq!(sum.data_points.len(), 2);
    let p = &sum.data_points[0];
    assert_eq!(value(p), 100.5);
    assert_eq!(get_str(&p.attributes, "cpu"), Some("0"));
    assert_eq!(get_str(&p.attributes, "mode"), Some("idle"));
    // Target labels other than job/instance are point attributes, as in Prometheus.
    assert_eq!(get_str(&p.attributes, "zone"), Some("eu"));
    assert!(get_str(&p.attributes, "job").is_none());
    assert_eq!(p.start_time_unix_nano, T0, "first sight starts the series");
    assert_eq!(p.time_unix_nano, T0);

    assert!(matches!(find(rms, "node_load1").data, Some(Data::Gauge(_))));
    assert!(
        matches!(find(rms, "mystery_value").data, Some(Data::Gauge(_))),
        "untyped is a Gauge"
    );

    let Some(Data::Histogram(h)) = &find(rms, "http_latency").data else {
        panic!("histogram")
    };
    let hp = &h.data_points[0];
    assert_eq!(hp.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(hp.bucket_counts, vec![3, 2, 1]);
    assert_eq!(hp.count, 6);
    assert_eq!(hp.sum, Some(2.5));
    assert_eq!(get_str(&hp.attributes, "path"), Some("/"));
    assert!(get_str(&hp.attributes, "le").is_none());

    let Some(Data::Summary(s)) = &find(rms, "rpc_duration").data else {
        panic!("summary")
    };
    let sp = &s.data_points[0];
    assert_eq!(sp.count, 40);
    assert_eq!(sp.sum, 12.0);
    assert_eq!(sp.quantile_values.len(), 2);
    assert_eq!(sp.quantile_values[1].quantile, 0.99);
    assert_eq!(sp.quantile_values[1].value, 0.9);
}

#[test]
fn openmetrics_created_and_exemplars() {
    let body = "# TYPE req counter\n\
req_total{code=\"200\"} 10 # {trace_id=\"0102030405060708090a0b0c0d0e0f10\",span_id=\"0102030405060708\",user=\"u\"} 1 1700000000.5\n\
req_created{code=\"200\"} 1600000000.25\n\
# TYPE lat histogram\n\
lat_bucket{le=\"1\"} 1 # {trace_id=\"abc\"} 0.5\n\
lat_bucket{le=\"+Inf\"} 2\n\
lat_count 2\n\
lat_sum 3\n\
lat_created 1600000001\n\
# EOF\n";
    let mut tr = Translator::new();
    let out = tr
        .translate(body, Format::OpenMetrics, T0, &target(), &settings())
        .unwrap();
    let rms = &out.resource_metrics;
    let Some(Data::Sum(sum)) = &find(rms, "req_total").data else {
        panic!("counter named by its _total sample")
    };
    let p = &sum.data_points[0];
    assert_eq!(p.start_time_unix_nano, 1_600_000_000_250_000_000);
    let ex = &p.exemplars[0];
    assert_eq!(ex.trace_id, (1u8..=16).collect::<Vec<_>>());
    assert_eq!(ex.span_id, (1u8..=8).collect::<Vec<_>>());
    assert_eq!(get_str(&ex.filtered_attributes, "user"), Some("u"));
    assert_eq!(ex.time_unix_nano, 1_700_000_000_500_000_000);
    let Some(Data::Histogram(h)) = &find(rms, "lat").data else {
        panic!("histogram")
    };
    assert_eq!(
        h.data_points[0].start_time_unix_nano,
        1_600_000_001_000_000_000
    );
    assert_eq!(h.data_points[0].exemplars.len(), 1);
    // A trace id that is not 16 hex bytes is kept as an attribute.
    assert_eq!(
        get_str(
            &h.data_points[0].exemplars[0].filtered_attributes,
            "trace_id"
        ),
        Some("abc")
    );
}

#[test]
fn start_time_holds_then_resets_when_a_counter_goes_down() {
    let mut tr = Translator::new();
    let scrape = |tr: &mut Translator, v: f64, ts: u64| {
        let body = format!("# TYPE c counter\nc_total {v}\n");
        let out = tr
            .translate(&body, Format::Text, ts, &target(), &settings())
            .unwrap();
        let Some(Data::Sum(s)) = &find(&out.resource_metrics, "c_total").data else {
            panic!()
        };
        (
            s.data_points[0].start_time_unix_nano,
            out.counts.series_added,
        )
    };
    assert_eq!(scrape(&mut tr, 5.0, T0), (T0, 1));
    assert_eq!(scrape(&mut tr, 9.0, T0 + 10), (T0, 0));
    let (start, _) = scrape(&mut tr, 1.0, T0 + 20_000_000);
    assert!(start > T0 && start < T0 + 20_000_000, "{start}");
}

#[test]
fn a_series_that_disappears_gets_a_staleness_marker() {
    let mut tr = Translator::new();
    let first =
        "a 1\nb{x=\"1\"} 2\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n";
    tr.translate(first, Format::Text, T0, &target(), &settings())
        .unwrap();
    let out = tr
        .translate("a 1\n", Format::Text, T0 + 1, &target(), &settings())
        .unwrap();
    let rms = &out.resource_metrics;
    let Some(Data::Gauge(g)) = &find(rms, "b").data else {
        panic!("b's marker")
    };
    assert_eq!(g.data_points[0].flags, FLAG_NO_RECORDED_VALUE);
    assert_eq!(g.data_points[0].value, None);
    assert_eq!(get_str(&g.data_points[0].attributes, "x"), Some("1"));
    let Some(Data::Histogram(h)) = &find(rms, "h").data else {
        panic!("h's marker")
    };
    assert_eq!(h.data_points[0].flags, FLAG_NO_RECORDED_VALUE);
    // Markers are written once.
    let out = tr
        .translate("a 1\n", Format::Text, T0 + 2, &target(), &settings())
        .unwrap();
    assert_eq!(metrics(&out.resource_metrics).len(), 1);
    // A failed scrape marks everything stale.
    let stale = tr.all_stale(T0 + 3, "http");
    let Some(Data::Gauge(g)) = &find(&stale, "a").data else {
        panic!()
    };
    assert_eq!(g.data_points[0].flags, FLAG_NO_RECORDED_VALUE);
}

#[test]
fn honor_labels_and_metric_relabelling() {
    let body = "m{job=\"other\",zone=\"us\"} 1\ngo_gc 2\n";
    let mut tr = Translator::new();
    let out = tr
        .translate(body, Format::Text, T0, &target(), &settings())
        .unwrap();
    let Some(Data::Gauge(g)) = &find(&out.resource_metrics, "m").data else {
        panic!()
    };
    let a = &g.data_points[0].attributes;
    assert_eq!(get_str(a, "zone"), Some("eu"));
    assert_eq!(get_str(a, "exported_zone"), Some("us"));
    assert_eq!(get_str(a, "exported_job"), Some("other"));

    let cfg = load_yaml(
        "config:\n  scrape_configs:\n  - job_name: a\n    metric_relabel_configs:\n    - {action: drop, source_labels: [__name__], regex: 'go_.*'}\n",
    )
    .unwrap();
    let s = ScrapeSettings {
        honor_labels: true,
        metric_relabel: &cfg.jobs[0].metric_relabel,
        ..settings()
    };
    let mut tr = Translator::new();
    let out = tr.translate(body, Format::Text, T0, &target(), &s).unwrap();
    assert_eq!(out.counts.scraped, 2);
    assert_eq!(out.counts.post_relabel, 1);
    // With honor_labels the scraped job wins, so the sample has its own resource.
    let jobs: Vec<_> = out
        .resource_metrics
        .iter()
        .map(|r| get_str(&r.resource.as_ref().unwrap().attributes, "service.name").unwrap())
        .collect();
    assert_eq!(jobs, vec!["other"]);
}

#[test]
fn start_time_metric_and_sample_limit() {
    let body = "process_start_time_seconds 1600000000\n# TYPE c counter\nc_total 3\n";
    let re = regex::Regex::new("^(.+_)*process_start_time_seconds$").unwrap();
    let s = ScrapeSettings {
        start_time_metric: Some(&re),
        ..settings()
    };
    let out = Translator::new()
        .translate(body, Format::Text, T0, &target(), &s)
        .unwrap();
    let Some(Data::Sum(sum)) = &find(&out.resource_metrics, "c_total").data else {
        panic!()
    };
    assert_eq!(
        sum.data_points[0].start_time_unix_nano,
        1_600_000_000_000_000_000
    );

    let s = ScrapeSettings {
        sample_limit: 1,
        ..settings()
    };
    let e = Translator::new()
        .translate(body, Format::Text, T0, &target(), &s)
        .err()
        .unwrap();
    assert!(e.to_string().contains("sample limit"), "{e}");
}

/// `label_limit`, `label_name_length_limit` and `label_value_length_limit` fail the scrape on the
/// first series over them (after the target's labels are added), as Prometheus does.
#[test]
fn label_limits_fail_the_scrape() {
    let body = "# TYPE m gauge\nm{a=\"x\",longer_name=\"0123456789\"} 1\n";
    let run = |limits: LabelLimits| {
        let s = ScrapeSettings {
            label_limits: limits,
            ..settings()
        };
        Translator::new()
            .translate(body, Format::Text, T0, &target(), &s)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    // __name__, a, longer_name, and the target's instance, job and zone: 6 labels.
    run(LabelLimits {
        labels: 6,
        name_length: 11,
        value_length: 14,
    })
    .unwrap();
    let e = run(LabelLimits {
        labels: 5,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        e.contains("label_limit exceeded (metric: m, number of labels: 6, limit: 5)"),
        "{e}"
    );
    let e = run(LabelLimits {
        name_length: 10,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        e.contains("label_name_length_limit exceeded") && e.contains("longer_name"),
        "{e}"
    );
    let e = run(LabelLimits {
        value_length: 13,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.contains("label_value_length_limit exceeded"), "{e}");
}

// --- scraping in-test targets -------------------------------------------------------------

async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

fn ctx(job: Job) -> LoopContext {
    LoopContext {
        receiver: "prometheus".into(),
        client: scrape::client(&job).unwrap(),
        job: std::sync::Arc::new(job),
        next: NextConsumers::new(),
        start_time_metric: None,
        report_extra: true,
        obs: vigil_core::ReceiverObs::new(
            &vigil_core::ComponentId::new("prometheus", None),
            "http",
        ),
    }
}

fn job_for(addr: std::net::SocketAddr, path: &str, extra: &str) -> (Job, Target) {
    let cfg = load_yaml(&format!(
        "config:\n  scrape_configs:\n  - job_name: t\n    scrape_interval: 1s\n    scrape_timeout: 500ms\n    metrics_path: {path}\n    static_configs:\n    - targets: ['{addr}']\n{extra}"
    ))
    .unwrap();
    let job = cfg.jobs.into_iter().next().unwrap();
    let groups = vec![(None, job.static_groups[0].clone())];
    let t = super::discovery::targets(&job, &groups).remove(0);
    (job, t)
}

fn up_of(rms: &[ResourceMetrics]) -> f64 {
    let Some(Data::Gauge(g)) = &find(rms, "up").data else {
        panic!("up is a gauge")
    };
    value(&g.data_points[0])
}

#[tokio::test]
async fn bad_targets_give_up_zero_and_good_ones_up_one() {
    use axum::http::header::CONTENT_TYPE;
    use axum::routing::get;
    let big = "x".repeat(2 * 1024 * 1024);
    let app = axum::Router::new()
        .route(
            "/good",
            get(|headers: axum::http::HeaderMap| async move {
                let accept = headers
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    accept.starts_with("application/openmetrics-text"),
                    "{accept}"
                );
                (
                    [(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0")],
                    "# TYPE a counter\na_total 1\n# EOF\n",
                )
            }),
        )
        .route("/garbage", get(|| async { "{{{{ this is not metrics" }))
        .route(
            "/truncated-om",
            get(|| async {
                (
                    [(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0")],
                    "a 1\n",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "a 1\n"
            }),
        )
        .route("/big", get(move || async move { big.clone() }));
    let addr = serve(app).await;

    let (job, t) = job_for(addr, "/good", "");
    let c = ctx(job);
    let mut tr = Translator::new();
    let mut last = None;
    let rms = scrape::scrape_once(&c, &t, &mut tr, &mut last).await;
    assert_eq!(up_of(&rms), 1.0, "{last:?}");
    assert!(matches!(find(&rms, "a_total").data, Some(Data::Sum(_))));
    assert!(metrics(&rms)
        .iter()
        .any(|m| m.name == "scrape_duration_seconds"));
    assert!(metrics(&rms)
        .iter()
        .any(|m| m.name == "scrape_samples_scraped"));
    assert!(metrics(&rms)
        .iter()
        .any(|m| m.name == "scrape_series_added"));
    assert!(metrics(&rms)
        .iter()
        .any(|m| m.name == "scrape_body_size_bytes"));

    for (path, extra, want) in [
        ("/missing", "", "404"),
        ("/garbage", "", "parse error"),
        ("/truncated-om", "", "# EOF"),
        ("/slow", "", "timed out"),
        ("/big", "    body_size_limit: 1MB\n", "body size limit"),
    ] {
        let (job, t) = job_for(addr, path, extra);
        let c = ctx(job);
        let mut last = None;
        let rms = scrape::scrape_once(&c, &t, &mut Translator::new(), &mut last).await;
        assert_eq!(up_of(&rms), 0.0, "{path}");
        let err = last.unwrap_or_default();
        assert!(err.contains(want), "{path}: {err}");
    }

    // A target nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (job, t) = job_for(dead, "/metrics", "");
    let mut last = None;
    let rms = scrape::scrape_once(&ctx(job), &t, &mut Translator::new(), &mut last).await;
    assert_eq!(up_of(&rms), 0.0);
    assert!(last.is_some());
}

#[tokio::test]
async fn auth_headers_are_sent() {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(|headers: axum::http::HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if auth == "Bearer s3cret" || auth == "Basic dTpw" {
                (axum::http::StatusCode::OK, "a 1\n")
            } else {
                (axum::http::StatusCode::UNAUTHORIZED, "")
            }
        }),
    );
    let addr = serve(app).await;
    // Prometheus's older bearer_token(_file) keys become authorization with type Bearer.
    let token = std::env::temp_dir().join(format!("vigil-prom-token-{}", std::process::id()));
    std::fs::write(&token, "s3cret\n").unwrap();
    let from_file = format!("    bearer_token_file: {}\n", token.display());
    for extra in [
        "    authorization:\n      credentials: s3cret\n",
        "    basic_auth:\n      username: u\n      password: p\n",
        "    bearer_token: s3cret\n",
        from_file.as_str(),
    ] {
        let (job, t) = job_for(addr, "/metrics", extra);
        let mut last = None;
        let rms = scrape::scrape_once(&ctx(job), &t, &mut Translator::new(), &mut last).await;
        assert_eq!(up_of(&rms), 1.0, "{extra}: {last:?}");
    }
    let _ = std::fs::remove_file(&token);
    let both = load_yaml(&format!(
        "config:\n  scrape_configs:\n  - job_name: t\n    static_configs:\n    - targets: ['{addr}']\n    bearer_token: a\n    authorization:\n      credentials: b\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        both.contains("scrape_configs::0::bearer_token_file: at most one of"),
        "{both}"
    );
    let k8s = load_yaml(
        "config:\n  scrape_configs:\n  - job_name: t\n    kubernetes_sd_configs:\n    - role: pods\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        k8s.contains("scrape_configs::0::kubernetes_sd_configs::0::role: unknown Kubernetes SD role \"pods\""),
        "{k8s}"
    );
    let (job, t) = job_for(addr, "/metrics", "");
    let mut last = None;
    let rms = scrape::scrape_once(&ctx(job), &t, &mut Translator::new(), &mut last).await;
    assert_eq!(up_of(&rms), 0.0);
}

/// `tls_config::server_name`: the target is reached by IP, its certificate names only
/// `metrics.test`; with the name set the scrape verifies, without it the name does not match.
#[tokio::test]
async fn tls_server_name_is_the_name_verified() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["metrics.test".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(path("ca.crt"), ca.pem()).unwrap();
    std::fs::write(path("server.pem"), cert.pem()).unwrap();
    std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
    let settings = vigil_core::net::tls::TlsServerSettings {
        cert_file: Some(path("server.pem")),
        key_file: Some(path("server.key")),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(vigil_core::net::serve::serve(
        listener,
        axum::Router::new().route("/metrics", axum::routing::get(|| async { "a 1\n" })),
        vigil_core::net::serve::ServeOptions {
            tls: Some(settings.server(&[b"h2", b"http/1.1"]).unwrap()),
            ..Default::default()
        },
        vigil_core::net::serve::ConnCounters::new("receiver", "prometheus_tls_target", "http"),
        stop.clone(),
    ));
    let ca_file = path("ca.crt");
    for (server_name, want) in [("      server_name: metrics.test\n", 1.0), ("", 0.0)] {
        let extra =
            format!("    scheme: https\n    tls_config:\n      ca_file: {ca_file}\n{server_name}");
        let (job, t) = job_for(addr, "/metrics", &extra);
        let mut last = None;
        let rms = scrape::scrape_once(&ctx(job), &t, &mut Translator::new(), &mut last).await;
        assert_eq!(up_of(&rms), want, "{server_name:?}: {last:?}");
    }
    stop.cancel();
    let e = load_yaml(
        "config:\n  scrape_configs:\n  - job_name: t\n    tls_config:\n      server_name: 'not a name!'\n    static_configs: [{targets: ['h:1']}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("scrape_configs::0::tls_config::server_name"),
        "{e}"
    );
}

// --- Kubernetes discovery against a local API server -----------------------------------------

/// A stand-in API server (a cluster cannot run here) that answers pod lists as the Kubernetes API
/// documents them, only to the bearer token it was given, and records each query string.
async fn api_server(
    pods: serde_json::Value,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/api/v1/namespaces/{ns}/pods",
        axum::routing::get(move |headers: HeaderMap, uri: Uri| {
            let pods = pods.clone();
            let log = log.clone();
            async move {
                log.lock()
                    .unwrap()
                    .push(format!("{}?{}", uri.path(), uri.query().unwrap_or("")));
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                if auth != Some("Bearer t0k") {
                    return (StatusCode::UNAUTHORIZED, String::new());
                }
                let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "1"}, "items": pods});
                (StatusCode::OK, list.to_string())
            }
        }),
    );
    (serve(app).await, seen)
}

#[tokio::test]
async fn kubernetes_pods_become_targets_after_relabelling() {
    let metrics = serve(axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { "requests_total 7\n" }),
    ))
    .await;
    let pod = |name: &str, scrape: &str| {
        serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": name},
                "annotations": {"prometheus.io/scrape": scrape}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "a:1",
                "ports": [{"name": "metrics", "containerPort": metrics.port()}]}]},
            "status": {"podIP": "127.0.0.1", "phase": "Running"}
        })
    };
    let (api, seen) = api_server(serde_json::json!([pod("web", "true"), pod("db", "false")])).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0k\n").unwrap();
    let cfg = load_yaml(&format!(
        "config:\n  scrape_configs:\n  - job_name: pods\n    kubernetes_sd_configs:\n    - role: pod\n      api_server: http://{api}\n      bearer_token_file: {}\n      namespaces: {{names: [shop]}}\n      selectors:\n      - role: pod\n        field: spec.nodeName=node-1\n    relabel_configs:\n    - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n      action: keep\n      regex: true\n    - source_labels: [__meta_kubernetes_pod_name]\n      target_label: pod\n",
        token.display()
    ))
    .unwrap();
    let job = cfg.jobs.into_iter().next().unwrap();
    let groups = super::kubernetes::discover(&job.kubernetes_sd[0])
        .await
        .unwrap();
    assert_eq!(groups.len(), 2, "both pods are discovered: {groups:?}");
    let groups: Vec<_> = groups.into_iter().map(|g| (None, g)).collect();
    let targets = super::discovery::targets(&job, &groups);
    assert_eq!(targets.len(), 1, "relabelling keeps the annotated pod only");
    let t = &targets[0];
    assert_eq!(
        t.url,
        format!("http://127.0.0.1:{}/metrics", metrics.port())
    );
    assert_eq!(super::relabel::get_label(&t.info.labels, "pod"), "web");
    let query = seen.lock().unwrap()[0].clone();
    assert!(
        query.starts_with("/api/v1/namespaces/shop/pods?")
            && query.contains("resourceVersion=0")
            && query.contains("fieldSelector=spec.nodeName%3Dnode-1"),
        "{query}"
    );
    let mut last = None;
    let rms = scrape::scrape_once(&ctx(job.clone()), t, &mut Translator::new(), &mut last).await;
    assert_eq!(up_of(&rms), 1.0, "{last:?}");

    // A refused list is an error naming the request, not an empty target set.
    std::fs::write(&token, "wrong").unwrap();
    let e = super::kubernetes::discover(&job.kubernetes_sd[0])
        .await
        .unwrap_err();
    assert!(e.contains("HTTP status 401"), "{e}");
}

/// Lists of every kind the `endpointslice` and `ingress` roles read, each served at its API group's
/// path as the API server does (`kind`/`apiVersion` of the list, `items`).
#[tokio::test]
async fn kubernetes_endpointslice_and_ingress_roles_list_their_api_groups() {
    use axum::http::Uri;
    use axum::routing::get;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let list = |kind: &'static str, version: &'static str, items: serde_json::Value| {
        let log = seen.clone();
        get(move |uri: Uri| {
            let items = items.clone();
            let log = log.clone();
            async move {
                log.lock().unwrap().push(uri.path().to_string());
                serde_json::json!({"kind": kind, "apiVersion": version,
                    "metadata": {"resourceVersion": "7"}, "items": items})
                .to_string()
            }
        })
    };
    let slice = serde_json::json!({"metadata": {"name": "web-x1", "namespace": "shop",
        "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}],
        "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"}]});
    let pod = serde_json::json!({"metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "a:1",
            "ports": [{"name": "metrics", "containerPort": 9100}]}]},
        "status": {"podIP": "10.0.0.7", "phase": "Running"}});
    let svc = serde_json::json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}});
    let ing = serde_json::json!({"metadata": {"name": "web", "namespace": "shop"},
        "spec": {"rules": [{"host": "web.example.com"}]}});
    let app = axum::Router::new()
        .route(
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
            list(
                "EndpointSliceList",
                "discovery.k8s.io/v1",
                serde_json::json!([slice]),
            ),
        )
        .route(
            "/api/v1/namespaces/shop/pods",
            list("PodList", "v1", serde_json::json!([pod])),
        )
        .route(
            "/api/v1/namespaces/shop/services",
            list("ServiceList", "v1", serde_json::json!([svc])),
        )
        .route(
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
            list(
                "IngressList",
                "networking.k8s.io/v1",
                serde_json::json!([ing]),
            ),
        );
    let api = serve(app).await;
    let cfg = load_yaml(&format!(
        "config:\n  scrape_configs:\n  - job_name: slices\n    kubernetes_sd_configs:\n    - role: endpointslice\n      api_server: http://{api}\n      namespaces: {{names: [shop]}}\n  - job_name: ingresses\n    kubernetes_sd_configs:\n    - role: ingress\n      api_server: http://{api}\n      namespaces: {{names: [shop]}}\n"
    ))
    .unwrap();
    let slices = super::kubernetes::discover(&cfg.jobs[0].kubernetes_sd[0])
        .await
        .unwrap();
    assert_eq!(slices.len(), 1, "{slices:?}");
    assert_eq!(slices[0].targets, ["10.0.0.7:9100"]);
    assert_eq!(slices[0].labels["__meta_kubernetes_service_name"], "web");
    assert_eq!(slices[0].labels["__meta_kubernetes_pod_name"], "web-1");
    let ingresses = super::kubernetes::discover(&cfg.jobs[1].kubernetes_sd[0])
        .await
        .unwrap();
    assert_eq!(ingresses[0].targets, ["web.example.com"]);
    assert_eq!(
        ingresses[0].labels["__meta_kubernetes_ingress_scheme"],
        "http"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
            "/api/v1/namespaces/shop/pods",
            "/api/v1/namespaces/shop/services",
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses",
        ]
    );
}

#[test]
fn kubernetes_off_cluster_fails_discovery_not_validation() {
    // Validation accepts an in-cluster entry anywhere, as otelcol's does; discovery then says
    // why it cannot reach the API.
    let cfg = load_yaml(
        "config:\n  scrape_configs:\n  - job_name: t\n    kubernetes_sd_configs:\n    - role: node\n",
    )
    .unwrap();
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(super::kubernetes::discover(&cfg.jobs[0].kubernetes_sd[0]))
            .unwrap_err();
        assert!(e.contains("KUBERNETES_SERVICE_HOST"), "{e}");
    }
}
