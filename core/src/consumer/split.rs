//! Merging batches and cutting one at an item count: the two operations every batcher needs (the
//! `batch` processor and the exporters' `sending_queue::batch`), kept here so that both do them the
//! same way. OTLP nests items two or three levels deep (resource → scope → items, and metric → data
//! points), so a cut may fall inside a `ResourceSpans` or a `ScopeSpans`; the front part then gets a
//! copy of the resource and scope it came from, and the items themselves move.

use crate::otlp::logs::v1::{ResourceLogs, ScopeLogs};
use crate::otlp::metrics::v1::{
    metric::Data, ExponentialHistogram, Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics,
    Sum, Summary,
};
use crate::otlp::profiles::v1development::{
    Profile, ProfilesData, ProfilesDictionary, ResourceProfiles, ScopeProfiles,
};
use crate::otlp::trace::v1::{ResourceSpans, ScopeSpans};
use crate::telemetry::{metric_point_count, Signal, Telemetry};

/// Appends `data` to `pending`, moving its resources without a copy. Returns `data`'s signal if it
/// is not `pending`'s.
pub fn merge(pending: &mut Telemetry, data: Telemetry) -> Result<(), Signal> {
    match (pending, data) {
        (Telemetry::Traces(p), Telemetry::Traces(mut d)) => append(p, &mut d),
        (Telemetry::Metrics(p), Telemetry::Metrics(mut d)) => append(p, &mut d),
        (Telemetry::Logs(p), Telemetry::Logs(mut d)) => append(p, &mut d),
        (Telemetry::Profiles(p), Telemetry::Profiles(d)) => merge_profiles(p, d),
        (_, d) => return Err(d.signal()),
    }
    Ok(())
}

fn append<T>(pending: &mut Vec<T>, data: &mut Vec<T>) {
    if pending.is_empty() {
        // Adopt the incoming vector instead of moving its elements one by one.
        std::mem::swap(pending, data);
    } else {
        pending.append(data);
    }
}

/// Moves the first `n` items (spans, data points, log records) of `data` out into a batch of their
/// own, in order.
pub fn take_front_items(data: &mut Telemetry, n: usize) -> Telemetry {
    match data {
        Telemetry::Traces(v) => Telemetry::Traces(take_front(v, n)),
        Telemetry::Metrics(v) => Telemetry::Metrics(take_front(v, n)),
        Telemetry::Logs(v) => Telemetry::Logs(take_front(v, n)),
        // Both parts keep the whole dictionary: its entries are shared by index.
        Telemetry::Profiles(p) => Telemetry::Profiles(ProfilesData {
            resource_profiles: take_front(&mut p.resource_profiles, n),
            dictionary: p.dictionary.clone(),
        }),
    }
}

/// Appends the profiles of `d` to `p`. Each batch indexes its own dictionary, so `d`'s tables are
/// appended to `p`'s and every index in what moves over is shifted to match. A table's entry 0 is
/// the zero value by the spec ("unset"); when both batches agree on it, `d`'s is not copied and
/// index 0 keeps meaning unset. Nothing is deduplicated beyond that.
fn merge_profiles(p: &mut ProfilesData, mut d: ProfilesData) {
    if p.resource_profiles.is_empty() && p.dictionary.is_none() {
        *p = d;
        return;
    }
    let pd = p.dictionary.get_or_insert_with(ProfilesDictionary::default);
    let mut dd = d.dictionary.take().unwrap_or_default();
    let strings = Remap::append(&mut pd.string_table, std::mem::take(&mut dd.string_table));
    let attrs = Remap::append(
        &mut pd.attribute_table,
        std::mem::take(&mut dd.attribute_table),
    );
    let functions = Remap::append(
        &mut pd.function_table,
        std::mem::take(&mut dd.function_table),
    );
    let mappings = Remap::append(&mut pd.mapping_table, std::mem::take(&mut dd.mapping_table));
    let links = Remap::append(&mut pd.link_table, std::mem::take(&mut dd.link_table));
    let locations = Remap::append(
        &mut pd.location_table,
        std::mem::take(&mut dd.location_table),
    );
    let stacks = Remap::append(&mut pd.stack_table, std::mem::take(&mut dd.stack_table));
    // Rewrite what was just appended, in place.
    for a in &mut pd.attribute_table[attrs.start..] {
        strings.at(&mut a.key_strindex);
        strings.at(&mut a.unit_strindex);
    }
    for f in &mut pd.function_table[functions.start..] {
        strings.at(&mut f.name_strindex);
        strings.at(&mut f.system_name_strindex);
        strings.at(&mut f.filename_strindex);
    }
    for m in &mut pd.mapping_table[mappings.start..] {
        strings.at(&mut m.filename_strindex);
        attrs.all(&mut m.attribute_indices);
    }
    for l in &mut pd.location_table[locations.start..] {
        mappings.at(&mut l.mapping_index);
        attrs.all(&mut l.attribute_indices);
        for line in &mut l.lines {
            functions.at(&mut line.function_index);
        }
    }
    for s in &mut pd.stack_table[stacks.start..] {
        locations.all(&mut s.location_indices);
    }
    let profiles = d
        .resource_profiles
        .iter_mut()
        .flat_map(|r| &mut r.scope_profiles)
        .flat_map(|s| &mut s.profiles);
    for profile in profiles {
        for vt in profile
            .sample_type
            .iter_mut()
            .chain(profile.period_type.iter_mut())
        {
            strings.at(&mut vt.type_strindex);
            strings.at(&mut vt.unit_strindex);
        }
        attrs.all(&mut profile.attribute_indices);
        for sample in &mut profile.samples {
            stacks.at(&mut sample.stack_index);
            attrs.all(&mut sample.attribute_indices);
            links.at(&mut sample.link_index);
        }
    }
    append(&mut p.resource_profiles, &mut d.resource_profiles);
}

/// How the indices of one appended dictionary table move.
struct Remap {
    /// Where the appended entries start in the merged table.
    start: usize,
    /// Added to every moved index but 0 (when `keep_zero`) or every index.
    shift: i64,
    keep_zero: bool,
}

impl Remap {
    fn append<T: PartialEq>(table: &mut Vec<T>, mut more: Vec<T>) -> Remap {
        let base = table.len();
        let same_zero = base > 0 && !more.is_empty() && table[0] == more[0];
        if same_zero {
            more.remove(0);
        }
        table.append(&mut more);
        Remap {
            start: base,
            shift: if same_zero {
                base as i64 - 1
            } else {
                base as i64
            },
            keep_zero: same_zero,
        }
    }

    fn at(&self, i: &mut i32) {
        if *i == 0 && self.keep_zero {
            return;
        }
        *i = i32::try_from(i64::from(*i) + self.shift).unwrap_or(i32::MAX);
    }

    fn all(&self, v: &mut [i32]) {
        v.iter_mut().for_each(|i| self.at(i));
    }
}

impl Chunk for ResourceProfiles {
    fn items(&self) -> usize {
        self.scope_profiles.iter().map(Chunk::items).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceProfiles {
            resource: self.resource.clone(),
            scope_profiles: take_front(&mut self.scope_profiles, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeProfiles {
    fn items(&self) -> usize {
        self.profiles.iter().map(|p| p.samples.len()).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeProfiles {
            scope: self.scope.clone(),
            profiles: take_front(&mut self.profiles, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for Profile {
    fn items(&self) -> usize {
        self.samples.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        // Both halves keep the profile's own fields; only the samples are divided.
        let front_samples = self.samples.drain(..n).collect();
        let rest = std::mem::take(&mut self.samples);
        let mut front = self.clone();
        self.samples = rest;
        front.samples = front_samples;
        front
    }
}

/// Cuts `data` into batches of at most `max` items each (`0` means no limit), in order.
pub fn split_max(mut data: Telemetry, max: usize) -> Vec<Telemetry> {
    let mut parts = Vec::new();
    if max > 0 {
        while data.item_count() > max {
            parts.push(take_front_items(&mut data, max));
        }
    }
    parts.push(data);
    parts
}

/// One level of OTLP nesting that holds countable items.
pub trait Chunk: Sized {
    /// Spans, data points or log records inside.
    fn items(&self) -> usize;
    /// Moves the first `n` items out into a new value with the same envelope (resource, scope or metric
    /// description). Called only with `0 < n < self.items()`.
    fn split_front(&mut self, n: usize) -> Self;
}

/// Moves the first `n` items of `v` out, in order. Whole elements move without a copy; at most one
/// element per level is split, and only its envelope is cloned.
pub fn take_front<T: Chunk>(v: &mut Vec<T>, n: usize) -> Vec<T> {
    let mut taken = 0;
    let mut whole = 0;
    for c in v.iter() {
        let k = c.items();
        if taken + k > n {
            break;
        }
        taken += k;
        whole += 1;
    }
    let rest = v.split_off(whole);
    let mut front = std::mem::replace(v, rest);
    if taken < n {
        // The loop stopped at an element holding more than the remainder, so this split is partial.
        if let Some(first) = v.first_mut() {
            front.push(first.split_front(n - taken));
        }
    }
    front
}

impl Chunk for ResourceSpans {
    fn items(&self) -> usize {
        self.scope_spans.iter().map(|s| s.spans.len()).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceSpans {
            resource: self.resource.clone(),
            scope_spans: take_front(&mut self.scope_spans, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeSpans {
    fn items(&self) -> usize {
        self.spans.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeSpans {
            scope: self.scope.clone(),
            spans: self.spans.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ResourceLogs {
    fn items(&self) -> usize {
        self.scope_logs.iter().map(|s| s.log_records.len()).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceLogs {
            resource: self.resource.clone(),
            scope_logs: take_front(&mut self.scope_logs, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeLogs {
    fn items(&self) -> usize {
        self.log_records.len()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeLogs {
            scope: self.scope.clone(),
            log_records: self.log_records.drain(..n).collect(),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ResourceMetrics {
    fn items(&self) -> usize {
        self.scope_metrics.iter().map(Chunk::items).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ResourceMetrics {
            resource: self.resource.clone(),
            scope_metrics: take_front(&mut self.scope_metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for ScopeMetrics {
    fn items(&self) -> usize {
        self.metrics.iter().map(Chunk::items).sum()
    }

    fn split_front(&mut self, n: usize) -> Self {
        ScopeMetrics {
            scope: self.scope.clone(),
            metrics: take_front(&mut self.metrics, n),
            schema_url: self.schema_url.clone(),
        }
    }
}

impl Chunk for Metric {
    fn items(&self) -> usize {
        metric_point_count(self.data.as_ref())
    }

    fn split_front(&mut self, n: usize) -> Self {
        // Each data type keeps its own settings (temporality, monotonicity) on both halves.
        let data = match &mut self.data {
            Some(Data::Gauge(g)) => Some(Data::Gauge(Gauge {
                data_points: g.data_points.drain(..n).collect(),
            })),
            Some(Data::Sum(s)) => Some(Data::Sum(Sum {
                data_points: s.data_points.drain(..n).collect(),
                aggregation_temporality: s.aggregation_temporality,
                is_monotonic: s.is_monotonic,
            })),
            Some(Data::Histogram(h)) => Some(Data::Histogram(Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            })),
            Some(Data::ExponentialHistogram(h)) => {
                Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: h.data_points.drain(..n).collect(),
                    aggregation_temporality: h.aggregation_temporality,
                }))
            }
            Some(Data::Summary(s)) => Some(Data::Summary(Summary {
                data_points: s.data_points.drain(..n).collect(),
            })),
            None => None,
        };
        Metric {
            name: self.name.clone(),
            description: self.description.clone(),
            unit: self.unit.clone(),
            metadata: self.metadata.clone(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{get_str, kv_str};
    use crate::otlp::common::v1::InstrumentationScope;
    use crate::otlp::metrics::v1::{metric, AggregationTemporality, NumberDataPoint};
    use crate::otlp::resource::v1::Resource;
    use crate::otlp::trace::v1::Span;

    /// One resource per entry, named `r{i}`, with one scope per count, named `s{j}`, holding that
    /// many spans named `r{i}s{j}-{k}`.
    fn traces(shape: &[&[usize]]) -> Vec<ResourceSpans> {
        shape
            .iter()
            .enumerate()
            .map(|(i, scopes)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_str("service.name", format!("r{i}"))],
                    ..Default::default()
                }),
                scope_spans: scopes
                    .iter()
                    .enumerate()
                    .map(|(j, &count)| ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: format!("s{j}"),
                            ..Default::default()
                        }),
                        spans: (0..count)
                            .map(|k| Span {
                                name: format!("r{i}s{j}-{k}"),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: format!("url{i}"),
            })
            .collect()
    }

    fn span_names(rs: &[ResourceSpans]) -> Vec<String> {
        rs.iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    /// One profile whose single sample's stack resolves to function `name`, with its own
    /// dictionary laid out as a profiler writes it (entry 0 of each table the zero value).
    fn profile_batch(name: &str, extra_strings: usize) -> ProfilesData {
        use crate::otlp::profiles::v1development::{
            Function, Line, Location, Sample, Stack, ValueType,
        };
        let mut strings = vec![String::new()];
        strings.extend((0..extra_strings).map(|i| format!("pad{i}")));
        let name_at = strings.len() as i32;
        strings.push(name.to_string());
        strings.push("samples".to_string());
        let unit_at = strings.len() as i32 - 1;
        ProfilesData {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![Profile {
                        sample_type: Some(ValueType {
                            type_strindex: unit_at,
                            unit_strindex: 0,
                        }),
                        samples: vec![Sample {
                            stack_index: 1,
                            values: vec![7],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                string_table: strings,
                function_table: vec![
                    Function::default(),
                    Function {
                        name_strindex: name_at,
                        ..Default::default()
                    },
                ],
                location_table: vec![
                    Location::default(),
                    Location {
                        lines: vec![Line {
                            function_index: 1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    },
                ],
                stack_table: vec![
                    Stack::default(),
                    Stack {
                        location_indices: vec![1],
                    },
                ],
                ..Default::default()
            }),
        }
    }

    /// The function name each sample's stack leads to, through the dictionary.
    fn leaf_names(p: &ProfilesData) -> Vec<String> {
        let d = p.dictionary.as_ref().unwrap();
        p.resource_profiles
            .iter()
            .flat_map(|r| &r.scope_profiles)
            .flat_map(|s| &s.profiles)
            .flat_map(|pr| &pr.samples)
            .map(|s| {
                let stack = &d.stack_table[s.stack_index as usize];
                let loc = &d.location_table[stack.location_indices[0] as usize];
                let f = &d.function_table[loc.lines[0].function_index as usize];
                d.string_table[f.name_strindex as usize].clone()
            })
            .collect()
    }

    #[test]
    fn merged_profiles_keep_every_reference_and_split_back() {
        let mut t = Telemetry::Profiles(profile_batch("main", 0));
        merge(&mut t, Telemetry::Profiles(profile_batch("worker", 3))).unwrap();
        merge(&mut t, Telemetry::Profiles(profile_batch("gc", 1))).unwrap();
        let Telemetry::Profiles(p) = &t else { panic!() };
        assert_eq!(leaf_names(p), ["main", "worker", "gc"]);
        let d = p.dictionary.as_ref().unwrap();
        // Entry 0 of each table is shared, not repeated.
        assert_eq!(d.string_table.iter().filter(|s| s.is_empty()).count(), 1);
        assert_eq!(d.stack_table.len(), 4);
        let st = p.resource_profiles[1].scope_profiles[0].profiles[0]
            .sample_type
            .unwrap();
        assert_eq!(d.string_table[st.type_strindex as usize], "samples");
        assert_eq!(st.unit_strindex, 0);
        assert_eq!(t.item_count(), 3);

        let front = take_front_items(&mut t, 2);
        let (Telemetry::Profiles(f), Telemetry::Profiles(r)) = (&front, &t) else {
            panic!()
        };
        assert_eq!(leaf_names(f), ["main", "worker"]);
        assert_eq!(leaf_names(r), ["gc"]);
    }

    #[test]
    fn split_inside_a_resource_keeps_resource_and_scope() {
        let mut rs = traces(&[&[3, 3], &[3, 3]]);
        let f = take_front(&mut rs, 8);
        let r = rs;
        assert_eq!(
            span_names(&f),
            ["r0s0-0", "r0s0-1", "r0s0-2", "r0s1-0", "r0s1-1", "r0s1-2", "r1s0-0", "r1s0-1"]
        );
        assert_eq!(span_names(&r), ["r1s0-2", "r1s1-0", "r1s1-1", "r1s1-2"]);
        // The cut resource and scope appear on both sides with their identity intact.
        let res = |x: &ResourceSpans| {
            get_str(&x.resource.as_ref().unwrap().attributes, "service.name").map(str::to_string)
        };
        assert_eq!(res(&f[1]).as_deref(), Some("r1"));
        assert_eq!(res(&r[0]).as_deref(), Some("r1"));
        assert_eq!(
            (f[1].schema_url.as_str(), r[0].schema_url.as_str()),
            ("url1", "url1")
        );
        assert_eq!(f[1].scope_spans[0].scope.as_ref().unwrap().name, "s0");
        assert_eq!(r[0].scope_spans[0].scope.as_ref().unwrap().name, "s0");
        assert_eq!(r[0].scope_spans[1].scope.as_ref().unwrap().name, "s1");
    }

    #[test]
    fn split_max_and_merge_keep_order_and_content() {
        let whole = traces(&[&[7, 6], &[12]]);
        let parts = split_max(Telemetry::Traces(whole.clone()), 10);
        let sizes: Vec<usize> = parts.iter().map(Telemetry::item_count).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let mut back = Telemetry::empty(Signal::Traces);
        for p in parts {
            merge(&mut back, p).unwrap();
        }
        let Telemetry::Traces(back) = back else {
            unreachable!()
        };
        assert_eq!(span_names(&back), span_names(&whole));
        assert_eq!(split_max(Telemetry::Traces(whole), 0).len(), 1);
        let mut t = Telemetry::empty(Signal::Traces);
        assert_eq!(merge(&mut t, Telemetry::Logs(vec![])), Err(Signal::Logs));
    }

    #[test]
    fn split_inside_a_metric_keeps_its_settings() {
        let point = |v: i64| NumberDataPoint {
            value: Some(crate::otlp::metrics::v1::number_data_point::Value::AsInt(v)),
            ..Default::default()
        };
        let mut metrics = vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "requests".into(),
                    unit: "1".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: (0..5).map(point).collect(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }];
        let front = take_front(&mut metrics, 2);
        for (part, n) in [(&front, 2), (&metrics, 3)] {
            let m = &part[0].scope_metrics[0].metrics[0];
            assert_eq!((m.name.as_str(), m.unit.as_str()), ("requests", "1"));
            let Some(metric::Data::Sum(s)) = &m.data else {
                panic!("sum expected")
            };
            assert_eq!(s.data_points.len(), n);
            assert!(s.is_monotonic);
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
        }
    }
}
