//! Fuzzes the `prometheus` receiver's exposition parser and the OTLP translation behind it: the first
//! byte picks text 0.0.4 or OpenMetrics, the rest is the body. Nothing a target serves may panic the
//! agent, so both steps run on every input, twice, so that the cross-scrape state (start times,
//! staleness) is exercised as well.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_receivers::prometheus::convert::{ScrapeSettings, TargetInfo, Translator};
use vigil_receivers::prometheus::parse::{Format, Parser};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 { Format::Text } else { Format::OpenMetrics };
    let text = String::from_utf8_lossy(body);
    for entry in Parser::new(&text, format) {
        if entry.is_err() {
            break;
        }
    }
    let target = TargetInfo {
        labels: vec![
            ("instance".into(), "127.0.0.1:9100".into()),
            ("job".into(), "fuzz".into()),
        ],
        scheme: "http".into(),
    };
    let settings = ScrapeSettings {
        honor_labels: selector & 2 != 0,
        honor_timestamps: selector & 4 != 0,
        metric_relabel: &[],
        sample_limit: 0,
        start_time_metric: None,
        label_limits: Default::default(),
    };
    let mut tr = Translator::new();
    let _ = tr.translate(&text, format, 1, &target, &settings);
    let _ = tr.translate(&text, format, 2, &target, &settings);
    let _ = tr.all_stale(3, "http");
});
