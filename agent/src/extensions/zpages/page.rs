//! The HTML of each page: plain tables with a little CSS, readable without JavaScript.

use super::plot;
use super::prom::Metrics;
use crate::config::{Config, Pipeline};
use crate::observed::{Anomaly, Snapshot};
use crate::service::status;
use std::fmt::Write;
use vigil_core::{ComponentId, Signal};

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const PAGES: [(&str, &str); 6] = [
    ("/debug/vigilz", "vigil status"),
    ("/debug/servicez", "service"),
    ("/debug/pipelinez", "pipelines"),
    ("/debug/extensionz", "extensions"),
    ("/debug/featurez", "features"),
    ("/debug/tracez", "traces"),
];

fn head(title: &str, refresh: bool) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{} · vigil</title>"#,
        esc(title)
    );
    if refresh {
        o.push_str(r#"<meta http-equiv="refresh" content="15">"#);
    }
    o.push_str(
        "<style>\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 24px 40px;color:#1f2328;max-width:1200px}\
nav{padding:10px 0;border-bottom:1px solid #ddd;margin-bottom:8px}nav a{margin-right:14px;color:#0b57d0;text-decoration:none}\
nav a.here{font-weight:600;color:#1f2328}h1{font-size:22px;margin:14px 0 4px}h2{font-size:17px;margin:22px 0 6px}\
table{border-collapse:collapse;margin:4px 0 8px}th,td{border:1px solid #d8dee4;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f5f7;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.muted{color:#656d76}.warn{color:#9a6700}.err{color:#cf222e;font-weight:600}.ok{color:#1a7f37;font-weight:600}\
code{font-size:12.5px;background:#f3f5f7;padding:0 3px;border-radius:3px}ol{margin:0;padding-left:20px}\
.plots{display:flex;flex-wrap:wrap;gap:14px}.plot-box{border:1px solid #d8dee4;padding:6px 8px}.plot-box h3{font-size:13px;margin:0 0 4px;font-weight:600;word-break:break-all;max-width:560px}\
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #d8dee4;border-radius:6px;padding:6px 12px;min-width:120px}.card b{display:block;font-size:20px}\
</style></head><body><nav>",
    );
    for (href, name) in PAGES {
        let class = if name == title { " class=\"here\"" } else { "" };
        let _ = write!(o, r#"<a href="{href}"{class}>{name}</a>"#);
    }
    o.push_str("</nav>");
    o
}

const TAIL: &str = "</body></html>";

fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s / 60 % 60),
    }
}

fn count(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => format!("{v:.3}"),
        None => "—".into(),
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

pub fn index() -> String {
    let mut o = head("zpages", false);
    o.push_str("<h1>vigil zPages</h1><ul>");
    for (href, name) in PAGES {
        let _ = write!(
            o,
            r#"<li><a href="{href}">{name}</a> <code>{href}</code></li>"#
        );
    }
    o.push_str("</ul>");
    o.push_str(TAIL);
    o
}

pub fn not_found() -> String {
    let mut o = head("not found", false);
    o.push_str("<h1>Not found</h1><p>See the pages listed above.</p>");
    o.push_str(TAIL);
    o
}

fn no_config(o: &mut String) {
    o.push_str("<p class=\"muted\">The service has not started a config yet.</p>");
}

fn state_line(o: &mut String) {
    let st = status::get();
    let (since, up) = status::up_since();
    let class = if st == status::Status::Ready {
        "ok"
    } else {
        "warn"
    };
    let _ = write!(
        o,
        r#"<p>State <span class="{class}">{}</span>{}; vigil {} ({} {}).</p>"#,
        st.as_str(),
        if since.is_empty() {
            String::new()
        } else {
            format!(", up {} since {since}", duration(up.as_secs_f64()))
        },
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    );
}

pub fn servicez(snap: &Snapshot, m: &Metrics) -> String {
    let mut o = head("service", true);
    o.push_str("<h1>Service</h1>");
    state_line(&mut o);
    o.push_str("<table><tr><th>build</th><th>value</th></tr>");
    let rows = [
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        (
            "profile",
            if cfg!(debug_assertions) {
                "debug".into()
            } else {
                "release".into()
            },
        ),
        (
            "platform",
            format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        ),
        ("process id", std::process::id().to_string()),
        (
            "command line",
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        ("started", status::up_since().0),
        ("uptime", duration(status::up_since().1.as_secs_f64())),
        (
            "memory (RSS)",
            m.sum("otelcol_process_memory_rss", &[])
                .map(|b| format!("{:.1} MiB", b / 1_048_576.0))
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "CPU time",
            m.sum("otelcol_process_cpu_seconds", &[])
                .map(|s| format!("{s:.0} s"))
                .unwrap_or_else(|| "—".into()),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(o, "<tr><td>{k}</td><td>{}</td></tr>", esc(&v));
    }
    let gates = super::feature_gates();
    let _ = write!(
        o,
        "<tr><td>feature gates</td><td><a href=\"/debug/featurez\">{}</a></td></tr>",
        if gates.is_empty() {
            "none requested".to_string()
        } else {
            format!("{} requested, none has an effect", gates.len())
        }
    );
    if let Some(cfg) = &snap.config {
        let _ = write!(
            o,
            "<tr><td>pipelines</td><td><a href=\"/debug/pipelinez\">{}</a></td></tr><tr><td>extensions</td><td><a href=\"/debug/extensionz\">{} running</a></td></tr>",
            cfg.pipelines.len(),
            cfg.service_extensions.len()
        );
    }
    o.push_str("</table>");
    if !m.on {
        o.push_str("<p class=\"muted\">Own metrics are turned off (<code>service::telemetry::metrics::level: none</code>), so counters show —.</p>");
    }
    o.push_str("<h2>Components of the running config</h2>");
    match &snap.config {
        None => no_config(&mut o),
        Some(cfg) => {
            o.push_str("<table><tr><th>kind</th><th>id</th><th>used in</th></tr>");
            let sections = [
                ("receiver", cfg.receivers.keys().collect::<Vec<_>>()),
                ("processor", cfg.processors.keys().collect()),
                ("exporter", cfg.exporters.keys().collect()),
                ("connector", cfg.connectors.keys().collect()),
            ];
            for (kind, ids) in sections {
                for id in ids {
                    let used: Vec<&str> = cfg
                        .pipelines
                        .iter()
                        .filter(|p| {
                            p.receivers.contains(id)
                                || p.processors.contains(id)
                                || p.exporters.contains(id)
                        })
                        .map(|p| p.id.as_str())
                        .collect();
                    let used = if used.is_empty() {
                        "<span class=\"muted\">no pipeline (not running)</span>".to_string()
                    } else {
                        esc(&used.join(", "))
                    };
                    let _ = write!(
                        o,
                        "<tr><td>{kind}</td><td><code>{}</code></td><td>{used}</td></tr>",
                        esc(&id.to_string())
                    );
                }
            }
            for id in cfg.extensions.keys() {
                let on = cfg.service_extensions.contains(id);
                let _ = write!(
                    o,
                    "<tr><td>extension</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&id.to_string()),
                    if on {
                        "service::extensions"
                    } else {
                        "<span class=\"muted\">not in service::extensions (not running)</span>"
                    }
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str(TAIL);
    o
}

/// The counter label each kind of component is counted under.
fn label(kind: &str) -> &'static str {
    match kind {
        "receiver" => "receiver",
        "processor" => "processor",
        "exporter" => "exporter",
        _ => "connector",
    }
}

fn component_counters(m: &Metrics, kind: &str, id: &ComponentId) -> String {
    let by = m.by_label(label(kind), &id.to_string());
    if by.is_empty() {
        return "<span class=\"muted\">—</span>".into();
    }
    by.iter()
        .map(|(k, v)| {
            let short = k.strip_prefix("otelcol_").unwrap_or(k);
            format!("{} <b>{}</b>", esc(short), esc(&count(Some(*v))))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

pub fn pipelinez(snap: &Snapshot, m: &Metrics) -> String {
    let mut o = head("pipelines", true);
    o.push_str("<h1>Pipelines</h1><p class=\"muted\">Counters are vigil's own metrics (as <code>service::telemetry::metrics</code> serves them), per component: a component in several pipelines shows its total in each.</p>");
    let Some(cfg) = &snap.config else {
        no_config(&mut o);
        o.push_str(TAIL);
        return o;
    };
    for p in &cfg.pipelines {
        let _ = write!(
            o,
            "<h2>{} <span class=\"muted\">({})</span></h2><table><tr><th>kind</th><th>id</th><th>counters</th></tr>",
            esc(&p.id),
            p.signal
        );
        let rows = p
            .receivers
            .iter()
            .map(|id| (kind_of(cfg, id, "receiver"), id))
            .chain(p.processors.iter().map(|id| ("processor", id)))
            .chain(
                p.exporters
                    .iter()
                    .map(|id| (kind_of(cfg, id, "exporter"), id)),
            );
        for (kind, id) in rows {
            let _ = write!(
                o,
                "<tr><td>{kind}</td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&id.to_string()),
                component_counters(m, kind, id)
            );
        }
        o.push_str("</table>");
    }
    o.push_str(TAIL);
    o
}

fn kind_of(cfg: &Config, id: &ComponentId, otherwise: &'static str) -> &'static str {
    if cfg.connectors.contains_key(id) {
        "connector"
    } else {
        otherwise
    }
}

pub fn extensionz(snap: &Snapshot) -> String {
    let mut o = head("extensions", true);
    o.push_str("<h1>Extensions</h1>");
    match &snap.config {
        None => no_config(&mut o),
        Some(cfg) if cfg.service_extensions.is_empty() => {
            o.push_str("<p>No extension runs.</p>");
        }
        Some(cfg) => {
            let running = status::get() == status::Status::Ready;
            o.push_str("<table><tr><th>id</th><th>type</th><th>status</th></tr>");
            for id in &cfg.service_extensions {
                let _ = write!(
                    o,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(&id.to_string()),
                    esc(id.type_name()),
                    if running {
                        "<span class=\"ok\">running</span>"
                    } else {
                        status::get().as_str()
                    }
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str(TAIL);
    o
}

/// The gates asked for with `--feature-gates`, as otelcol's page lists its registry: vigil has no
/// gate registry, so each requested gate is shown with what it does here (nothing).
pub fn featurez(gates: &[(String, bool)]) -> String {
    let mut o = head("features", false);
    o.push_str("<h1>Feature gates</h1><p>vigil has no feature gates: every behaviour is chosen in the config. otelcol's <code>--feature-gates</code> flag is accepted so that existing command lines run; the one gate it reads is <code>service.profilesSupport</code>, and only to refuse profiles pipelines when it is turned off (vigil runs them without the gate).</p>");
    if gates.is_empty() {
        o.push_str("<p class=\"muted\">No gate was requested on the command line.</p>");
    } else {
        o.push_str("<h2>Requested on the command line</h2><table><tr><th>id</th><th>requested</th><th>in vigil</th></tr>");
        for (id, on) in gates {
            let _ = write!(
                o,
                "<tr><td><code>{}</code></td><td>{}</td><td class=\"muted\">no such gate; no effect</td></tr>",
                esc(id),
                if *on { "enabled" } else { "disabled" }
            );
        }
        o.push_str("</table>");
    }
    o.push_str(TAIL);
    o
}

pub fn tracez() -> String {
    let mut o = head("traces", false);
    o.push_str("<h1>Traces</h1><p>vigil records no spans of its own, so there are no span samples to show. otelcol traces its own work through its instrumented gRPC and HTTP clients and servers; vigil's listeners and exporters count the same requests as metrics instead. Its own metrics (<code>service::telemetry::metrics</code>, by component on <a href=\"/debug/pipelinez\">pipelines</a>) and its logs (each line names its component) describe what it does.</p>");
    o.push_str(TAIL);
    o
}

fn items(s: Signal) -> &'static str {
    s.item_name()
}

/// The sum of `name_<items>` over the pipeline's components of `kind` (connectors do not count).
fn pipeline_sum(m: &Metrics, cfg: &Config, p: &Pipeline, kind: &str, name: &str) -> Option<f64> {
    let ids = if kind == "receiver" {
        &p.receivers
    } else {
        &p.exporters
    };
    let metric = format!("{name}_{}", items(p.signal));
    let mut total = None;
    for id in ids.iter().filter(|id| !cfg.connectors.contains_key(id)) {
        if let Some(v) = m.sum(&metric, &[(kind, &id.to_string())]) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

fn anomaly_row(o: &mut String, a: &Anomaly, now_ended: bool) {
    let band = format!("{} – {}", num(a.lower), num(a.upper));
    let when = if now_ended {
        format!(
            "{} → {} ({})",
            plot::clock(a.started),
            a.ended.map(plot::clock).unwrap_or_default(),
            esc(&a.end_reason)
        )
    } else {
        format!("since {}", plot::clock(a.started))
    };
    let class = if a.score >= 0.8 { "err" } else { "warn" };
    let _ = write!(
        o,
        "<tr title=\"{}\"><td><code>{}</code><br><span class=\"muted\">{} · {}</span></td><td class=\"n {class}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
        esc(&a.body),
        esc(&a.series),
        esc(&a.signal),
        esc(&a.metric),
        num(a.score),
        num(a.observed),
        num(a.expected),
        esc(&band),
        esc(&a.detector),
        when
    );
}

pub fn vigilz(snap: &Snapshot, m: &Metrics) -> String {
    let mut o = head("vigil status", true);
    o.push_str("<h1>What vigil sees now</h1>");
    state_line(&mut o);

    // Cards: the headline numbers.
    let live = m.sum("vigil_anomaly_series_live", &[]);
    let warming = m.sum("vigil_anomaly_series_warming", &[]);
    let open_inc = snap
        .incidents
        .iter()
        .filter(|i| i.status != "resolved")
        .count();
    o.push_str("<div class=\"cards\">");
    let cards = [
        ("series watched", count(live)),
        (
            "still warming up",
            if warming.is_some() {
                count(warming)
            } else {
                "—".into()
            },
        ),
        ("open anomalies", snap.anomalies.len().to_string()),
        ("open incidents", open_inc.to_string()),
        ("service-graph edges", snap.edges.len().to_string()),
        ("log patterns", snap.pattern_count.to_string()),
    ];
    for (k, v) in cards {
        let _ = write!(o, "<div class=\"card\">{k}<b>{}</b></div>", esc(&v));
    }
    o.push_str("</div>");
    if warming.is_none() && live.is_some() {
        o.push_str("<p class=\"muted\">Warm-up is not reported yet: <code>vigil_anomaly_series_warming</code> is set at the connector's first <code>interval</code> tick. A series is scored after its first 30 points.</p>");
    }
    if live.is_none() {
        o.push_str("<p class=\"muted\">No <code>anomalydetection</code> connector reports series");
        if !m.on {
            o.push_str(" (own metrics are turned off)");
        }
        o.push_str(".</p>");
    }

    // Incidents.
    let _ = write!(o, "<h2>Incidents ({open_inc} open)</h2>");
    if snap.incidents.is_empty() {
        o.push_str("<p class=\"muted\">None seen.</p>");
    } else {
        o.push_str("<table class=\"incidents\"><tr><th>incident</th><th>status</th><th>findings</th><th>services</th><th>root-cause candidates</th><th>first / last seen</th></tr>");
        for i in &snap.incidents {
            let class = match (i.status.as_str(), i.severity.as_str()) {
                ("resolved", _) => "muted",
                (_, "ERROR") => "err",
                _ => "warn",
            };
            let cands: String = i
                .candidates
                .iter()
                .map(|c| format!("<li>{}</li>", esc(c)))
                .collect();
            let members: String = i
                .members
                .iter()
                .map(|m| format!("<li>{}</li>", esc(m)))
                .collect();
            let merged = if i.merged_into.is_empty() {
                String::new()
            } else {
                format!(" (into {})", esc(&i.merged_into))
            };
            let _ = write!(
                o,
                "<tr title=\"{}\"><td><code>{}</code></td><td class=\"{class}\">{}{merged}</td><td class=\"n\">{}<details><summary>members</summary><ul>{members}</ul></details></td><td>{}{}</td><td><ol>{cands}</ol></td><td>{}<br>{}</td></tr>",
                esc(&i.body),
                esc(&i.id),
                esc(&i.status),
                i.member_count,
                esc(&i.services.join(", ")),
                if i.root_cause.is_empty() {
                    String::new()
                } else {
                    format!("<br>probably <b>{}</b>", esc(&i.root_cause))
                },
                esc(&i.first_seen),
                esc(&i.last_seen)
            );
        }
        o.push_str("</table>");
    }

    // Anomalies.
    let _ = write!(o, "<h2>Open anomalies ({})</h2>", snap.anomalies.len());
    let header = "<table><tr><th>series</th><th>score</th><th>observed</th><th>expected</th><th>band</th><th>detector</th><th>when (UTC)</th></tr>";
    if snap.anomalies.is_empty() {
        o.push_str("<p class=\"muted\">None.</p>");
    } else {
        o.push_str(header);
        for a in &snap.anomalies {
            anomaly_row(&mut o, a, false);
        }
        o.push_str("</table>");
    }
    // Plots.
    o.push_str("<h2>Series and their expected band</h2>");
    let mut plots = 0;
    let mut plot_html = String::new();
    for (series, pts) in &snap.bands {
        if plots == 4 {
            break;
        }
        let episodes: Vec<&Anomaly> = snap
            .anomalies
            .iter()
            .chain(&snap.ended)
            .filter(|a| &a.series == series)
            .collect();
        let svg = plot::band(series, pts, &episodes);
        if svg.is_empty() {
            continue;
        }
        plots += 1;
        let _ = write!(
            plot_html,
            "<div class=\"plot-box\"><h3>{}</h3>{svg}</div>",
            esc(series)
        );
    }
    if plots == 0 {
        o.push_str("<p class=\"muted\">No score gauges seen yet. They flow when a metrics pipeline takes the <code>anomalydetection</code> connector's output (and <code>emit_scores</code> is not false), once a series is past its warm-up.</p>");
    } else {
        let _ = write!(o, "<div class=\"plots\">{plot_html}</div><p class=\"muted\">Series with an open anomaly first, then recently ended ones, then by peak score; {} series kept (at most {}, {} points each).</p>", snap.series_tracked, snap.limits.series, snap.limits.points);
    }

    if !snap.ended.is_empty() {
        let _ = write!(
            o,
            "<h2>Recently ended anomalies ({})</h2>",
            snap.ended.len()
        );
        o.push_str(header);
        for a in &snap.ended {
            anomaly_row(&mut o, a, true);
        }
        o.push_str("</table>");
    }

    // Service graph.
    let _ = write!(o, "<h2>Service graph ({} edges)</h2>", snap.edges.len());
    if snap.edges.is_empty() {
        o.push_str("<p class=\"muted\">No <code>traces_service_graph_request_total</code> seen (a <code>servicegraph</code> connector feeding a metrics pipeline makes them).</p>");
    } else {
        o.push_str("<table><tr><th>client</th><th></th><th>server</th><th>requests</th><th>failed</th></tr>");
        for (c, s, e) in &snap.edges {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>→</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(c),
                esc(s),
                num(e.requests),
                num(e.failed)
            );
        }
        o.push_str("</table>");
    }

    // Patterns.
    let _ = write!(
        o,
        "<h2>Top log patterns ({} of {})</h2>",
        snap.patterns.len(),
        snap.pattern_count
    );
    if snap.patterns.is_empty() {
        o.push_str("<p class=\"muted\">None counted (a logs pipeline with a <code>logpattern</code> processor counts them).</p>");
    } else {
        o.push_str("<table><tr><th>pattern id</th><th>template</th><th>records</th></tr>");
        for p in &snap.patterns {
            let _ = write!(
                o,
                "<tr><td><code>{}</code>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
                esc(&p.id),
                if p.announced { " <span class=\"warn\">new</span>" } else { "" },
                esc(&p.template),
                p.count
            );
        }
        o.push_str("</table>");
    }
    // Pipelines.
    o.push_str("<h2>Pipelines</h2>");
    match &snap.config {
        None => no_config(&mut o),
        Some(cfg) => {
            o.push_str("<table><tr><th>pipeline</th><th>receivers</th><th>processors</th><th>exporters</th><th>accepted</th><th>refused</th><th>sent</th><th>failed</th></tr>");
            for p in &cfg.pipelines {
                let list = |ids: &[ComponentId]| {
                    esc(&ids
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "))
                };
                let _ = write!(
                    o,
                    "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&p.id),
                    list(&p.receivers),
                    list(&p.processors),
                    list(&p.exporters),
                    count(pipeline_sum(m, cfg, p, "receiver", "otelcol_receiver_accepted")),
                    count(pipeline_sum(m, cfg, p, "receiver", "otelcol_receiver_refused")),
                    count(pipeline_sum(m, cfg, p, "exporter", "otelcol_exporter_sent")),
                    count(pipeline_sum(m, cfg, p, "exporter", "otelcol_exporter_send_failed")),
                );
            }
            o.push_str("</table><p class=\"muted\">Items (spans, metric points, log records) counted by the pipeline's receivers and exporters; connectors do not count, so — means none of them does. Per component: <a href=\"/debug/pipelinez\">pipelines</a>.</p>");
        }
    }

    let d = snap.dropped;
    let l = snap.limits;
    let _ = write!(
        o,
        "<p class=\"muted\">Kept at most: {} open anomalies ({} dropped), {} incidents ({} dropped), {} patterns ({} dropped), {} edges ({} dropped), {} plotted series ({} refused); {} <code>vigil.pattern.new</code> events seen. Counted in <code>vigil_zpages_dropped</code>.</p>",
        l.anomalies, d.anomalies, l.incidents, d.incidents, l.patterns, d.patterns, l.edges, d.edges, l.series, d.series, snap.pattern_new_events
    );
    o.push_str(TAIL);
    o
}
