//! The Numenta Anomaly Benchmark: loading its corpus layout and scoring detections with NAB's own rules.
//! `vigil eval nab` uses it so that our numbers mean what NAB's scoreboard means: labelled windows, the
//! scaled sigmoid, the three cost profiles, the probationary period, corpus-wide threshold optimisation and
//! normalisation between the null and the perfect detector (numenta/NAB `nab/sweeper.py`, `nab/runner.py`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::series::{DetectorConfig, Observation, SeriesDetector, DEFAULT_THRESHOLD};

/// Why a NAB corpus could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file or directory could not be read.
    // The I/O error is part of the message rather than a `source`, so that error chains do not print it
    // twice.
    #[error("{path}: {error}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A row of a series CSV is malformed.
    #[error("{path}:{line}: {reason}")]
    Row {
        /// The series file.
        path: PathBuf,
        /// The 1-based line number in the file.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The labels file is not what NAB writes.
    #[error("{path}: {reason}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// One labelled series of the corpus, ready to feed to a detector.
#[derive(Debug, Clone)]
pub struct NabSeries {
    /// The path relative to `data/`, as NAB names it (`realKnownCause/nyc_taxi.csv`).
    pub name: String,
    /// Seconds since the Unix epoch (the files carry no time zone; UTC is assumed).
    pub timestamps: Vec<i64>,
    /// The observed values.
    pub values: Vec<f64>,
    /// Anomaly windows as inclusive row ranges, in time order.
    pub windows: Vec<(usize, usize)>,
}

impl NabSeries {
    /// The category folder (`realKnownCause`) and file name (`nyc_taxi.csv`).
    pub fn category_and_file(&self) -> (&str, &str) {
        self.name.rsplit_once('/').unwrap_or(("", &self.name))
    }

    /// Whether row `i` lies inside an anomaly window (NAB's `label` column).
    pub fn label(&self, i: usize) -> bool {
        self.windows.iter().any(|&(s, e)| (s..=e).contains(&i))
    }
}

/// Loads every series that has an entry in `labels/combined_windows.json` under `dir`, sorted by name.
///
/// `dir` has NAB's layout: `data/<category>/*.csv` with a `timestamp,value` header and
/// `labels/combined_windows.json`. Series without a labels entry are skipped, as NAB does.
pub fn load_corpus(dir: &Path) -> Result<Vec<NabSeries>, NabError> {
    let labels_path = dir.join("labels").join("combined_windows.json");
    let labels = load_labels(&labels_path)?;
    let mut names: Vec<&String> = labels.keys().collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join("data").join(name);
        let (timestamps, values) = load_series(&path)?;
        let mut windows = Vec::new();
        for &(start, end) in &labels[name] {
            // The first row at a window's start, then the first row at its end from there on: with
            // repeated timestamps this is the row NAB's scorer picks.
            let s = timestamps.iter().position(|&x| x == start);
            let e = s.and_then(|s| {
                timestamps[s..]
                    .iter()
                    .position(|&x| x == end)
                    .map(|e| s + e)
            });
            let (Some(s), Some(e)) = (s, e) else {
                return Err(NabError::Labels {
                    path: labels_path.clone(),
                    reason: format!(
                        "window [{}, {}] of {name} does not start and end on timestamps of the series",
                        format_timestamp(start),
                        format_timestamp(end)
                    ),
                });
            };
            windows.push((s, e));
        }
        windows.sort_unstable();
        out.push(NabSeries {
            name: name.clone(),
            timestamps,
            values,
            windows,
        });
    }
    Ok(out)
}

fn load_labels(path: &Path) -> Result<HashMap<String, Vec<(i64, i64)>>, NabError> {
    let text = std::fs::read_to_string(path).map_err(|error| NabError::Io {
        path: path.to_owned(),
        error,
    })?;
    let bad = |reason: String| NabError::Labels {
        path: path.to_owned(),
        reason,
    };
    let raw: HashMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let mut out = HashMap::with_capacity(raw.len());
    for (name, windows) in raw {
        let mut parsed = Vec::with_capacity(windows.len());
        for w in windows {
            let [start, end] = w.as_slice() else {
                return Err(bad(format!(
                    "{name}: a window must be [start, end], got {w:?}"
                )));
            };
            let t = |s: &str| parse_timestamp(s).map_err(|r| bad(format!("{name}: {r}")));
            parsed.push((t(start)?, t(end)?));
        }
        out.insert(name, parsed);
    }
    Ok(out)
}

/// Where a detector run outside this crate keeps one file's scores: `dir/<category>__<file>.txt`, one score a
/// line, one line per row of the file (the layout `nab_baselines` writes with `DUMP_DIR` and reads with
/// `SCORES_DIR`).
pub fn score_file(dir: &Path, s: &NabSeries) -> PathBuf {
    dir.join(format!("{}.txt", s.name.replace('/', "__")))
}

/// Reads the scores [`score_file`] names for `s`: exactly one number for each of the file's rows. Errors name
/// the file and the line.
pub fn read_scores(dir: &Path, s: &NabSeries) -> Result<Vec<f64>, String> {
    let path = score_file(dir, s);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let scores = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            l.trim()
                .parse::<f64>()
                .map_err(|e| format!("{} line {}: {l:?}: {e}", path.display(), i + 1))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if scores.len() != s.values.len() {
        return Err(format!(
            "{} has {} scores, expected one for each of the file's {} rows",
            path.display(),
            scores.len(),
            s.values.len()
        ));
    }
    Ok(scores)
}

/// Reads one `timestamp,value` CSV, every row in file order (repeated and earlier timestamps included).
/// Errors name the file and the line.
pub fn load_series(path: &Path) -> Result<(Vec<i64>, Vec<f64>), NabError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(error) => NabError::Io {
                path: path.to_owned(),
                error,
            },
            other => NabError::Row {
                path: path.to_owned(),
                line: 1,
                reason: format!("{other:?}"),
            },
        })?;
    let mut timestamps = Vec::new();
    let mut values = Vec::new();
    for record in reader.records() {
        let row_err = |line: u64, reason: String| NabError::Row {
            path: path.to_owned(),
            line,
            reason,
        };
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            row_err(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let (Some(ts), Some(v)) = (record.get(0), record.get(1)) else {
            return Err(row_err(
                line,
                "expected two columns: timestamp,value".into(),
            ));
        };
        let ts = parse_timestamp(ts).map_err(|r| row_err(line, r))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| row_err(line, format!("value {v:?} is not a number")))?;
        // Real series repeat timestamps and step back (daylight-saving changes, clock resets); NAB
        // scores rows in file order, so every row is kept where it is.
        timestamps.push(ts);
        values.push(v);
    }
    Ok((timestamps, values))
}

/// Parses NAB's `YYYY-MM-DD HH:MM:SS[.ffffff]` into seconds since the epoch (UTC).
///
/// Written by hand because the format is fixed and zone-free: a date crate would be a new dependency for
/// ten lines of civil-calendar arithmetic.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let err = || format!("timestamp {s:?} is not YYYY-MM-DD HH:MM:SS");
    let s = s.trim();
    let (date, time) = s.split_once(' ').ok_or_else(err)?;
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let next = |it: &mut dyn Iterator<Item = Result<i64, _>>| -> Result<i64, String> {
        it.next().ok_or_else(err)?.map_err(|_| err())
    };
    let (y, mo, da) = (next(&mut d)?, next(&mut d)?, next(&mut d)?);
    let (h, mi, se) = (next(&mut t)?, next(&mut t)?, next(&mut t)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(err());
    }
    Ok(days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats seconds since the epoch the way NAB's data files do.
pub fn format_timestamp(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// Howard Hinnant's proleptic Gregorian day count, the standard closed form.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A NAB application profile: the weights of its cost matrix (`config/profiles.json`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// The profile's name as NAB reports it.
    pub name: &'static str,
    /// Reward for a detected window.
    pub tp_weight: f64,
    /// Cost of a detection outside every window.
    pub fp_weight: f64,
    /// Cost of a missed window.
    pub fn_weight: f64,
}

/// NAB's three profiles, in the order it reports them.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fp_weight: 0.22,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 2.0,
    },
];

/// The number of leading rows NAB leaves unscored: 15% of the file, at most 750.
pub fn probationary_length(rows: usize) -> usize {
    ((rows as f64 * 0.15).floor()).min(0.15 * 5000.0) as usize
}

/// NAB's scaled sigmoid of a relative position: about 1 at a window's left edge, 0 at its right edge and
/// towards -1 far past it.
pub fn scaled_sigmoid(position: f64) -> f64 {
    if position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * position).exp()) - 1.0
    }
}

/// One scorable row: what a detection there would be worth.
#[derive(Debug, Clone, Copy)]
struct SweepRow {
    score: f64,
    /// The weighted value of a detection at this row.
    value: f64,
    /// The corpus-wide window id, or `None` outside every window.
    window: Option<usize>,
}

/// Rows after the probationary period with the value of a detection at each (NAB's `calcSweepScore`).
fn sweep_rows(
    series: &NabSeries,
    scores: &[f64],
    profile: &Profile,
    window_base: usize,
    out: &mut Vec<SweepRow>,
) {
    let max_tp = scaled_sigmoid(-1.0);
    let probation = probationary_length(scores.len());
    let mut prev: Option<(usize, usize)> = None; // (right index, width) of the last window passed
    let mut next_window = 0;
    let mut current: Option<(usize, usize, usize)> = None; // (id, right index, width)
    for (i, &score) in scores.iter().enumerate() {
        if current.is_none() {
            if let Some(&(s, e)) = series.windows.get(next_window) {
                if s == i {
                    current = Some((window_base + next_window, e, e - s + 1));
                    next_window += 1;
                }
            }
        }
        let (value, window) = match current {
            Some((id, right, width)) => {
                let position = -((right as f64) - (i as f64) + 1.0) / width as f64;
                (
                    scaled_sigmoid(position) * profile.tp_weight / max_tp,
                    Some(id),
                )
            }
            None => {
                let unweighted = match prev {
                    // A one-row window would divide by zero in NAB; treat it as far away.
                    Some((right, width)) if width > 1 => {
                        scaled_sigmoid((i - right) as f64 / (width - 1) as f64)
                    }
                    _ => -1.0,
                };
                (unweighted * profile.fp_weight, None)
            }
        };
        if i >= probation {
            out.push(SweepRow {
                score,
                value,
                window,
            });
        }
        if let Some((_, right, width)) = current {
            if right == i {
                prev = Some((right, width));
                current = None;
            }
        }
    }
}

/// A corpus score at one threshold, with NAB's point counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdScore {
    /// Rows with an anomaly score at or above this count as detections.
    pub threshold: f64,
    /// The raw (unnormalised) NAB score.
    pub score: f64,
    /// Detected rows inside windows.
    pub tp: usize,
    /// Detected rows outside windows.
    pub fp: usize,
}

/// The detector output for one series: `scores[i]` in [0, 1] for row `i`.
pub type Scores<'a> = (&'a NabSeries, &'a [f64]);

fn collect_rows(results: &[Scores<'_>], profile: &Profile) -> (Vec<SweepRow>, usize) {
    let mut rows = Vec::new();
    let mut windows = 0;
    for (series, scores) in results {
        assert_eq!(
            series.values.len(),
            scores.len(),
            "one score per row of {}",
            series.name
        );
        sweep_rows(series, scores, profile, windows, &mut rows);
        windows += series.windows.len();
    }
    (rows, windows)
}

/// The raw NAB score of the corpus when rows scoring at or above `threshold` are detections.
pub fn score_at(results: &[Scores<'_>], profile: &Profile, threshold: f64) -> ThresholdScore {
    let (rows, windows) = collect_rows(results, profile);
    let mut best = vec![-profile.fn_weight; windows];
    let (mut fp_sum, mut tp, mut fp) = (0.0, 0, 0);
    for r in rows.iter().filter(|r| r.score >= threshold) {
        match r.window {
            Some(w) => {
                best[w] = best[w].max(r.value);
                tp += 1;
            }
            None => {
                fp_sum += r.value;
                fp += 1;
            }
        }
    }
    ThresholdScore {
        threshold,
        score: fp_sum + best.iter().sum::<f64>(),
        tp,
        fp,
    }
}

/// NAB's threshold optimisation: sweeps every distinct anomaly score of the whole corpus from the top
/// down and returns the threshold with the highest raw score (the highest threshold among ties).
pub fn optimize(results: &[Scores<'_>], profile: &Profile) -> ThresholdScore {
    let (mut rows, windows) = collect_rows(results, profile);
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut best_in_window = vec![-profile.fn_weight; windows];
    let mut window_sum = -profile.fn_weight * windows as f64;
    let (mut fp_sum, mut tp, mut fp) = (0.0, 0, 0);
    // Above every score nothing is detected: NAB starts its sweep at 1.1.
    let mut best = ThresholdScore {
        threshold: 1.1,
        score: window_sum,
        tp: 0,
        fp: 0,
    };
    let mut i = 0;
    while i < rows.len() {
        let threshold = rows[i].score;
        while i < rows.len() && rows[i].score == threshold {
            let r = rows[i];
            match r.window {
                Some(w) if r.value > best_in_window[w] => {
                    window_sum += r.value - best_in_window[w];
                    best_in_window[w] = r.value;
                    tp += 1;
                }
                Some(_) => tp += 1,
                None => {
                    fp_sum += r.value;
                    fp += 1;
                }
            }
            i += 1;
        }
        let score = window_sum + fp_sum;
        if score > best.score {
            best = ThresholdScore {
                threshold,
                score,
                tp,
                fp,
            };
        }
    }
    best
}

/// The normalised score of one profile, as NAB's scoreboard reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileScore {
    /// The profile.
    pub profile: Profile,
    /// The threshold used.
    pub threshold: f64,
    /// The raw score at that threshold.
    pub raw: f64,
    /// `100 * (raw - null) / (perfect - null)`.
    pub normalized: f64,
}

/// Scores the corpus for every profile: at NAB's optimised threshold when `threshold` is `None`, else at
/// the given fixed threshold. The null detector (a constant 0.5, itself threshold-optimised) maps to 0 and
/// the perfect detector (one detection at each window's first row) to 100.
pub fn score_corpus(results: &[Scores<'_>], threshold: Option<f64>) -> Vec<ProfileScore> {
    let null_scores: Vec<Vec<f64>> = results
        .iter()
        .map(|(s, _)| vec![0.5; s.values.len()])
        .collect();
    let null: Vec<Scores<'_>> = results
        .iter()
        .zip(&null_scores)
        .map(|((s, _), n)| (*s, n.as_slice()))
        .collect();
    let windows: usize = results.iter().map(|(s, _)| s.windows.len()).sum();
    PROFILES
        .iter()
        .map(|profile| {
            let null_raw = optimize(&null, profile).score;
            let perfect = windows as f64 * profile.tp_weight;
            let at = match threshold {
                Some(t) => score_at(results, profile, t),
                None => optimize(results, profile),
            };
            ProfileScore {
                profile: *profile,
                threshold: at.threshold,
                raw: at.score,
                normalized: 100.0 * (at.score - null_raw) / (perfect - null_raw),
            }
        })
        .collect()
}

impl fmt::Display for ProfileScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:.1} (raw {:.3} at threshold {:.4})",
            self.profile.name, self.normalized, self.raw, self.threshold
        )
    }
}

/// Scores per category folder (`realKnownCause`), each normalised on its own files: at the optimised
/// threshold of that category and at `threshold`. Sorted by category.
pub fn score_by_category(
    results: &[Scores<'_>],
    threshold: f64,
) -> Vec<(String, Vec<ProfileScore>, Vec<ProfileScore>)> {
    let mut names: Vec<&str> = results
        .iter()
        .map(|(s, _)| s.category_and_file().0)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|c| {
            let part: Vec<Scores<'_>> = results
                .iter()
                .filter(|(s, _)| s.category_and_file().0 == c)
                .copied()
                .collect();
            (
                c.to_owned(),
                score_corpus(&part, None),
                score_corpus(&part, Some(threshold)),
            )
        })
        .collect()
}

/// The default detector's output on one series.
#[derive(Debug, Clone)]
pub struct FileRun {
    /// The series as loaded.
    pub series: NabSeries,
    /// One observation per row.
    pub observations: Vec<Observation>,
    /// Rows whose timestamp repeated or stepped back, as the detector counted them.
    pub out_of_order: u32,
}

impl FileRun {
    /// The anomaly score of every row, as NAB's results files carry it.
    pub fn scores(&self) -> Vec<f64> {
        self.observations.iter().map(|o| o.score).collect()
    }
}

/// Scores of a whole corpus run.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Per-file output.
    pub runs: Vec<FileRun>,
    /// Scores at NAB's optimised threshold, per profile.
    pub optimized: Vec<ProfileScore>,
    /// Scores at the shipped [`DEFAULT_THRESHOLD`], per profile.
    pub default_threshold: Vec<ProfileScore>,
    /// Points through [`SeriesDetector::observe`] per second of detection time (one thread).
    pub points_per_sec: f64,
}

/// Runs a fresh default [`SeriesDetector`] over every series point by point, as the pipeline would, and
/// scores the result with NAB's rules.
pub fn evaluate(corpus: Vec<NabSeries>, config: &DetectorConfig) -> Evaluation {
    evaluate_with(corpus, || SeriesDetector::new(config))
}

/// [`evaluate`] with detectors made by `make` (the cross-validation varies the score constants).
#[doc(hidden)]
pub fn evaluate_with(corpus: Vec<NabSeries>, make: impl Fn() -> SeriesDetector) -> Evaluation {
    let mut runs = Vec::with_capacity(corpus.len());
    let mut points = 0usize;
    let mut busy = 0.0f64;
    for series in corpus {
        let mut detector = make();
        let started = Instant::now();
        let observations: Vec<Observation> = series
            .timestamps
            .iter()
            .zip(&series.values)
            .map(|(&t, &v)| detector.observe(t as f64, v))
            .collect();
        busy += started.elapsed().as_secs_f64();
        points += observations.len();
        runs.push(FileRun {
            series,
            observations,
            out_of_order: detector.out_of_order(),
        });
    }
    let scores: Vec<Vec<f64>> = runs.iter().map(FileRun::scores).collect();
    let results: Vec<Scores<'_>> = runs
        .iter()
        .zip(&scores)
        .map(|(r, s)| (&r.series, s.as_slice()))
        .collect();
    let optimized = score_corpus(&results, None);
    let default_threshold = score_corpus(&results, Some(DEFAULT_THRESHOLD));
    Evaluation {
        optimized,
        default_threshold,
        points_per_sec: points as f64 / busy.max(1e-9),
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rows: usize, windows: Vec<(usize, usize)>) -> NabSeries {
        NabSeries {
            name: "test/x.csv".into(),
            timestamps: (0..rows as i64).map(|i| i * 300).collect(),
            values: vec![0.0; rows],
            windows,
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_timestamp("2014-04-10 16:15:00.000000").unwrap();
        assert_eq!(format_timestamp(t), "2014-04-10 16:15:00");
        assert_eq!(parse_timestamp("1970-01-01 00:00:00").unwrap(), 0);
        assert_eq!(parse_timestamp("2000-03-01 00:00:01").unwrap(), 951_868_801);
        assert!(parse_timestamp("2014-13-01 00:00:00").is_err());
        assert!(parse_timestamp("yesterday").is_err());
    }

    // Two of NAB's own files repeat a timestamp or step back; every row stays, in file order, and a
    // window still resolves to rows.
    #[test]
    fn repeated_and_backward_timestamps_are_kept_in_file_order() {
        let dir = std::env::temp_dir().join(format!("vigil-nab-order-{}", std::process::id()));
        let data = dir.join("data").join("cat");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(dir.join("labels")).unwrap();
        std::fs::write(
            data.join("x.csv"),
            "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n\
             2014-01-01 00:05:00,3\n2014-01-01 00:00:00,4\n2014-01-01 00:10:00,5\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("labels").join("combined_windows.json"),
            r#"{"cat/x.csv": [["2014-01-01 00:05:00.000000", "2014-01-01 00:10:00.000000"]]}"#,
        )
        .unwrap();
        let corpus = load_corpus(&dir);
        std::fs::remove_dir_all(&dir).ok();
        let corpus = corpus.unwrap();
        let s = &corpus[0];
        assert_eq!(s.values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        let t0 = parse_timestamp("2014-01-01 00:00:00").unwrap();
        assert_eq!(s.timestamps, vec![t0, t0 + 300, t0 + 300, t0, t0 + 600]);
        assert_eq!(s.windows, vec![(1, 4)]);
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(18050), 750);
    }

    #[test]
    fn null_scores_zero_and_perfect_scores_hundred() {
        let a = series(1000, vec![(400, 449)]);
        let b = series(2000, vec![(700, 799), (1500, 1599)]);
        let null_a = vec![0.5; 1000];
        let null_b = vec![0.5; 2000];
        let null = [(&a, null_a.as_slice()), (&b, null_b.as_slice())];
        for p in score_corpus(&null, None) {
            assert!(p.normalized.abs() < 1e-9, "{p}");
        }
        let mut perfect_a = vec![0.0; 1000];
        perfect_a[400] = 1.0;
        let mut perfect_b = vec![0.0; 2000];
        perfect_b[700] = 1.0;
        perfect_b[1500] = 1.0;
        let perfect = [(&a, perfect_a.as_slice()), (&b, perfect_b.as_slice())];
        for p in score_corpus(&perfect, None) {
            assert!((p.normalized - 100.0).abs() < 1e-9, "{p}");
        }
        for p in score_corpus(&perfect, Some(0.5)) {
            assert!((p.normalized - 100.0).abs() < 1e-9, "{p}");
        }
    }

    #[test]
    fn hand_computed_small_case() {
        // 100 rows: probation 15, one window at rows 40..=49 (width 10).
        let s = series(100, vec![(40, 49)]);
        let mut scores = vec![0.0; 100];
        scores[5] = 0.9; // inside probation: ignored
        scores[20] = 0.8; // before any window: costs the full FP weight
        scores[45] = 0.9; // in the window: position -(49-45+1)/10 = -0.5
        scores[47] = 0.95; // later in the same window: only the earliest counts
        scores[59] = 0.7; // 10 rows past the right edge: position 10/9
        let p = PROFILES[0];
        let tp = (2.0 / (1.0 + (-2.5f64).exp()) - 1.0) / (2.0 / (1.0 + (-5.0f64).exp()) - 1.0);
        let fp_after = 0.11 * (2.0 / (1.0 + (5.0 * 10.0 / 9.0f64).exp()) - 1.0);
        let at = score_at(&[(&s, &scores)], &p, 0.7);
        assert!((at.score - (tp - 0.11 + fp_after)).abs() < 1e-12, "{at:?}");
        assert_eq!((at.tp, at.fp), (2, 2));
        // Above 0.8 the FP before the window no longer counts; above 0.95 nothing does.
        let at = score_at(&[(&s, &scores)], &p, 0.85);
        assert!((at.score - tp).abs() < 1e-12);
        let at = score_at(&[(&s, &scores)], &p, 0.96);
        assert!((at.score + 1.0).abs() < 1e-12);
        // The optimiser picks 0.85..0.9: the window, no FP.
        let best = optimize(&[(&s, &scores)], &p);
        assert_eq!(best.threshold, 0.9);
        assert!((best.score - tp).abs() < 1e-12);
    }

    /// NAB's published per-file result for the Numenta HTM detector on
    /// `realAWSCloudwatch/ec2_cpu_utilization_ac20cd.csv` (results/numenta/numenta_standard_scores.csv):
    /// threshold 0.5126953125, score 0.875727409493, TP 1, FP 0. The file has 4032 rows and one window at
    /// rows 3374..=3776. In results/numenta/realAWSCloudwatch/numenta_ec2_cpu_utilization_ac20cd.csv the
    /// only row at or above the threshold after the probationary period is row 3566
    /// (2014-04-15 00:04:00, score 0.99975); earlier ones (rows 2, 3, 6, ...) fall in probation.
    #[test]
    fn matches_published_numenta_result() {
        let s = series(4032, vec![(3374, 3776)]);
        let mut scores = vec![0.03; 4032];
        for i in [2, 3, 6, 8, 12, 68, 164, 181] {
            scores[i] = 1.0;
        }
        scores[3566] = 0.999_752_584_659;
        scores[3565] = 0.129_781_416_628;
        let at = score_at(&[(&s, &scores)], &PROFILES[0], 0.512_695_312_5);
        assert!((at.score - 0.875_727_409_493).abs() < 1e-9, "{at:?}");
        assert_eq!((at.tp, at.fp), (1, 0));
    }
}
