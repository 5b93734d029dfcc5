//! Reads vigil's own metrics back from the Prometheus text the pull endpoint serves, so that the pages
//! show exactly the numbers a scrape would.

use std::collections::BTreeMap;

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// `name{k="v",…}`, as the text format writes it.
    pub fn key(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let l: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name, l.join(","))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// False when own metrics are turned off (`service::telemetry::metrics::level: none`).
    pub on: bool,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn off() -> Metrics {
        Metrics::default()
    }

    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Metrics { on: true, samples }
    }

    /// The sum over every sample of `name` whose labels include all of `want`; `None` when there is
    /// no such sample (a component that does not count this).
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut found = None;
        for s in self.samples.iter().filter(|s| s.name == name) {
            if want
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            {
                *found.get_or_insert(0.0) += s.value;
            }
        }
        found
    }

    /// Every metric that has `label` = `value`, summed over its other labels, by name.
    pub fn by_label(&self, label: &str, value: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in &self.samples {
            if s.labels.get(label).map(String::as_str) == Some(value) {
                *out.entry(s.name.clone()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let end = loop {
            // key="value", with \" \\ \n escapes inside the value
            let mut key = String::new();
            let mut c = chars.next();
            while let Some((_, ch)) = c {
                if ch == '=' || ch == '}' {
                    break;
                }
                if ch != ',' && !ch.is_whitespace() {
                    key.push(ch);
                }
                c = chars.next();
            }
            match c {
                Some((i, '}')) => break i,
                Some((_, '=')) => {}
                _ => return None,
            }
            if chars.next().map(|(_, ch)| ch) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, '"') => break,
                    (_, ch) => value.push(ch),
                }
            }
            labels.insert(key, value);
        };
        &body[end + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_text_format() {
        let m = Metrics::parse(
            "# TYPE otelcol_receiver_accepted_spans counter\n\
             otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 12\n\
             otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"http\"} 3\n\
             vigil_anomaly_series_live{connector=\"anomalydetection\"} 7\n\
             odd{k=\"a \\\"q\\\" b\\\\\"} 1.5\n\
             otelcol_process_uptime 42\n",
        );
        assert!(m.on);
        assert_eq!(
            m.sum("otelcol_receiver_accepted_spans", &[("receiver", "otlp")]),
            Some(15.0)
        );
        assert_eq!(
            m.sum("otelcol_receiver_accepted_spans", &[("receiver", "x")]),
            None
        );
        assert_eq!(m.sum("otelcol_process_uptime", &[]), Some(42.0));
        assert_eq!(m.sum("odd", &[("k", "a \"q\" b\\")]), Some(1.5));
        let by = m.by_label("connector", "anomalydetection");
        assert_eq!(by.get("vigil_anomaly_series_live"), Some(&7.0));
    }
}
