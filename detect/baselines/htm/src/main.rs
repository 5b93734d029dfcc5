//! NAB's "numenta" HTM detector rebuilt on mokosh (a Rust port of htm.core) as a baseline for issue #13.
//!
//! Usage: `vigil-htm-baseline OUT_DIR CORPUS_DIR...` writes each file's scores to
//! `OUT_DIR/<category>__<file>.txt` (one a line, one per row), the layout `nab_baselines`' `SCORES_DIR`
//! reads. Files whose score file already exists are skipped, so an interrupted run resumes. `ONLY=a,b`
//! runs only files whose NAB name contains one of the strings; `ROWS=n` stops each file after n rows
//! (timing only: the score file is then not written). `VARIANT=numentaTM` runs NAB's numentaTM detector
//! instead (NuPIC's tm_cpp parameters, no spatial-anomaly override). See README.md for the parameters and how far they
//! follow NAB.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use mokosh::algorithms::{AnomalyMode, TemporalMemory, TemporalMemoryParams};
use mokosh::encoders::{Encoder, Rdse, RdseParams};
use mokosh::types::Sdr;
use vigil_detect::nab::{self, NabSeries};

/// The value encoder's width and active bits, and how many buckets the padded range is cut into
/// (NuPIC's best single-metric anomaly parameters, which NAB's detector loads).
const RDSE_SIZE: u32 = 400;
const RDSE_ACTIVE: u32 = 21;
const RDSE_BUCKETS: f64 = 130.0;
const RDSE_MIN_RESOLUTION: f64 = 0.001;
/// The time-of-day encoder: 21 active bits, radius 9.49 hours, periodic over 24 hours.
const TOD_ACTIVE: usize = 21;
const TOD_RADIUS: f64 = 9.49;
/// A value this far (as a share of the range seen so far) outside that range scores 1 (NAB's
/// SPATIAL_TOLERANCE).
const SPATIAL_TOLERANCE: f64 = 0.05;

/// NuPIC's periodic scalar encoder over the hour of the day, as NAB's DateEncoder(timeOfDay=(21, 9.49))
/// builds it: the bucket width is radius / w, so ceil(24 / (9.49 / 21)) = 54 bits with 21 active
/// around the value's bucket, wrapping at midnight. Written here because mokosh's date encoder sizes
/// its time-of-day field differently.
struct TimeOfDay {
    n: usize,
}

impl TimeOfDay {
    fn new() -> Self {
        let resolution = TOD_RADIUS / TOD_ACTIVE as f64;
        Self {
            n: (24.0 / resolution).ceil() as usize,
        }
    }

    /// The active bits for a timestamp (seconds since the epoch; NAB's files carry local wall time,
    /// which vigil's loader reads as UTC, so the hour of the day is the file's own).
    fn encode(&self, ts: i64, offset: u32, out: &mut Vec<u32>) {
        let hour = ts.rem_euclid(86_400) as f64 / 3600.0;
        let center = ((hour * self.n as f64 / 24.0) as usize).min(self.n - 1);
        let half = (TOD_ACTIVE - 1) / 2;
        for i in 0..TOD_ACTIVE {
            let bit = (center + self.n - half + i) % self.n;
            out.push(offset + bit as u32);
        }
    }
}

/// Spatial pooler settings (NuPIC's best single-metric anomaly parameters).
const SP_COLUMNS: usize = 2048;
const SP_ACTIVE: usize = 40;
const SP_POTENTIAL_PCT: f64 = 0.8;
const SP_CONNECTED: f32 = 0.2;
const SP_INC: f32 = 0.003;
const SP_DEC: f32 = 0.0005;
const SP_MIN_PCT_OVERLAP_DUTY: f32 = 0.001;
const SP_DUTY_PERIOD: f32 = 1000.0;
const SP_UPDATE_PERIOD: u64 = 50;

/// SplitMix64: the pooler's initial wiring needs only reproducible uniform draws.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// NuPIC's spatial pooler with global inhibition, no boosting and every column's potential pool drawn
/// from the whole input (what NAB's parameters amount to), written here on dense per-column permanence
/// rows because mokosh's pooler spends about 6 ms a row in its synapse maps (measured: 10 ms/row in
/// all, 62% of it in its pooler) and the corpora have 590k rows.
///
/// Initial permanences as NuPIC draws them: half the potential synapses just above the connected
/// threshold (connected + (1 - connected) * u), half below (connected * u), truncated to 5 decimals,
/// those under the trim threshold (inc / 2) set to 0. Learning: active columns raise their potential
/// synapses on active inputs by `inc` and lower the rest by `dec` (trimmed, clipped to [0, 1]); columns
/// whose overlap duty cycle falls under 0.1% of the largest are raised by connected / 10; the minimum is
/// refreshed every 50 rows.
struct SpatialPooler {
    inputs: usize,
    /// Column-major rows: `perm[c * inputs + i]`, negative where input `i` is outside `c`'s pool.
    perm: Vec<f32>,
    overlap_duty: Vec<f32>,
    min_overlap_duty: f32,
    iteration: u64,
    overlaps: Vec<u32>,
    order: Vec<u32>,
    active_input: Vec<bool>,
}

impl SpatialPooler {
    fn new(inputs: usize) -> Self {
        let mut rng = SplitMix(1956);
        let trim = SP_INC / 2.0;
        let mut perm = vec![-1.0f32; SP_COLUMNS * inputs];
        let pool = (inputs as f64 * SP_POTENTIAL_PCT).round() as usize;
        let mut idx: Vec<usize> = (0..inputs).collect();
        for c in 0..SP_COLUMNS {
            // A partial Fisher-Yates shuffle picks the column's pool.
            for k in 0..pool {
                let j = k + ((rng.next_f64() * (inputs - k) as f64) as usize).min(inputs - k - 1);
                idx.swap(k, j);
            }
            for &i in &idx[..pool] {
                let u = rng.next_f64();
                let p = if rng.next_f64() <= 0.5 {
                    SP_CONNECTED as f64 + (1.0 - SP_CONNECTED as f64) * u
                } else {
                    SP_CONNECTED as f64 * u
                };
                let p = ((p * 100_000.0).floor() / 100_000.0) as f32;
                perm[c * inputs + i] = if p < trim { 0.0 } else { p };
            }
        }
        Self {
            inputs,
            perm,
            overlap_duty: vec![0.0; SP_COLUMNS],
            min_overlap_duty: 0.0,
            iteration: 0,
            overlaps: vec![0; SP_COLUMNS],
            order: (0..SP_COLUMNS as u32).collect(),
            active_input: vec![false; inputs],
        }
    }

    /// Learns from `input` (sorted active bits) and writes the active columns (sorted) to `out`.
    fn compute(&mut self, input: &[u32], out: &mut Vec<u32>) {
        self.iteration += 1;
        let n = self.inputs;
        for (c, o) in self.overlaps.iter_mut().enumerate() {
            let row = &self.perm[c * n..(c + 1) * n];
            *o = input
                .iter()
                .filter(|&&i| row[i as usize] >= SP_CONNECTED)
                .count() as u32;
        }
        // Top 40 by overlap; ties go to the lower column index (NuPIC breaks them with its own order).
        let overlaps = &self.overlaps;
        self.order.sort_unstable_by(|&a, &b| {
            overlaps[b as usize]
                .cmp(&overlaps[a as usize])
                .then(a.cmp(&b))
        });
        out.clear();
        out.extend(
            self.order
                .iter()
                .take(SP_ACTIVE)
                .filter(|&&c| self.overlaps[c as usize] > 0),
        );
        out.sort_unstable();

        self.active_input.iter_mut().for_each(|a| *a = false);
        for &i in input {
            self.active_input[i as usize] = true;
        }
        let trim = SP_INC / 2.0;
        for &c in out.iter() {
            let row = &mut self.perm[c as usize * n..(c as usize + 1) * n];
            for (p, &on) in row.iter_mut().zip(&self.active_input) {
                if *p < 0.0 {
                    continue;
                }
                let mut v = if on { *p + SP_INC } else { *p - SP_DEC };
                if v < trim {
                    v = 0.0;
                }
                *p = v.clamp(0.0, 1.0);
            }
        }
        let period = SP_DUTY_PERIOD.min(self.iteration as f32);
        for (d, &o) in self.overlap_duty.iter_mut().zip(&self.overlaps) {
            *d = (*d * (period - 1.0) + if o > 0 { 1.0 } else { 0.0 }) / period;
        }
        for c in 0..SP_COLUMNS {
            if self.overlap_duty[c] < self.min_overlap_duty {
                for p in self.perm[c * n..(c + 1) * n].iter_mut() {
                    if *p >= 0.0 {
                        *p = (*p + SP_CONNECTED / 10.0).min(1.0);
                    }
                }
            }
        }
        if self.iteration.is_multiple_of(SP_UPDATE_PERIOD) {
            let max = self.overlap_duty.iter().copied().fold(0.0f32, f32::max);
            self.min_overlap_duty = SP_MIN_PCT_OVERLAP_DUTY * max;
        }
    }
}

/// NuPIC's AnomalyLikelihood as NAB's detector configures it: learning period L = floor(P / 2),
/// estimation samples P - L, re-estimation every 100 records, a history of 8,640 raw scores. For the
/// first P records it reports 0.5. Then every 100 records it fits a normal to the 10-record moving
/// average of the raw scores in the history (skipping what is still in the learning period; mean at
/// least 0.03, variance at least 0.0003; a null distribution when the metric itself is flat), and each
/// record's likelihood is 1 - the tail probability of its moving average, with NuPIC's filter that
/// holds a second consecutive red (< 1e-5) tail at the yellow level (1e-3).
struct Likelihood {
    learning: usize,
    probation: usize,
    iteration: usize,
    /// (metric value, raw score), newest last; at most HISTORY entries.
    history: VecDeque<(f64, f64)>,
    dist: Option<Dist>,
    /// The moving average's window (raw scores) and the last unfiltered tail probabilities.
    avg_window: VecDeque<f64>,
    recent_tails: VecDeque<f64>,
}

#[derive(Clone, Copy)]
struct Dist {
    mean: f64,
    stdev: f64,
}

const HISTORY: usize = 8640;
const REESTIMATE: usize = 100;
const AVG_WINDOW: usize = 10;
const RED: f64 = 1.0 - 0.99999;
const YELLOW: f64 = 1.0 - 0.999;

impl Likelihood {
    fn new(probation: usize) -> Self {
        let learning = probation / 2;
        Self {
            learning,
            probation: learning + (probation - learning),
            iteration: 0,
            history: VecDeque::with_capacity(HISTORY),
            dist: None,
            avg_window: VecDeque::with_capacity(AVG_WINDOW),
            recent_tails: VecDeque::with_capacity(AVG_WINDOW),
        }
    }

    fn tail(x: f64, d: Dist) -> f64 {
        let x = if x < d.mean { 2.0 * d.mean - x } else { x };
        let z = (x - d.mean) / d.stdev;
        // NuPIC divides by 1.4142, not sqrt 2; kept so the tail matches.
        #[allow(clippy::approx_constant)]
        let sqrt2 = 1.4142;
        0.5 * erfc(z / sqrt2)
    }

    /// Re-fits the distribution from the history, as estimateAnomalyLikelihoods does, and resets the
    /// moving-average and recent-tail state to what that pass ends with.
    fn estimate(&mut self) {
        let shifted = self.iteration.saturating_sub(HISTORY);
        let skip = self.iteration.min(self.learning.saturating_sub(shifted));
        let mut window: VecDeque<f64> = VecDeque::with_capacity(AVG_WINDOW);
        let mut total = 0.0;
        let mut averages = Vec::with_capacity(self.history.len());
        for &(_, raw) in &self.history {
            if window.len() == AVG_WINDOW {
                total -= window.pop_front().unwrap_or(0.0);
            }
            window.push_back(raw);
            total += raw;
            averages.push(total / window.len() as f64);
        }
        let null = Dist {
            mean: 0.5,
            stdev: 1e3,
        };
        let dist = if averages.len() <= skip {
            null
        } else {
            let (mean, var) = mean_var(&averages[skip..]);
            let values: Vec<f64> = self.history.iter().skip(skip).map(|&(v, _)| v).collect();
            let (_, metric_var) = mean_var(&values);
            if metric_var < 1.5e-5 {
                null
            } else {
                Dist {
                    mean: mean.max(0.03),
                    stdev: var.max(0.0003).sqrt(),
                }
            }
        };
        self.recent_tails = averages
            .iter()
            .rev()
            .take(AVG_WINDOW)
            .rev()
            .map(|&a| Self::tail(a, dist))
            .collect();
        self.avg_window = window;
        self.dist = Some(dist);
    }

    /// The anomaly likelihood of this record (then the record joins the history).
    fn probability(&mut self, value: f64, raw: f64) -> f64 {
        let likelihood = if self.iteration < self.probation {
            0.5
        } else {
            if self.dist.is_none() || self.iteration.is_multiple_of(REESTIMATE) {
                self.estimate();
            }
            let dist = self.dist.unwrap_or(Dist {
                mean: 0.5,
                stdev: 1e3,
            });
            if self.avg_window.len() == AVG_WINDOW {
                self.avg_window.pop_front();
            }
            self.avg_window.push_back(raw);
            let avg = self.avg_window.iter().sum::<f64>() / self.avg_window.len() as f64;
            let tail = Self::tail(avg, dist);
            // The filter compares with the previous unfiltered tail.
            let filtered = match self.recent_tails.back() {
                Some(&prev) if tail <= RED && prev <= RED => YELLOW,
                _ => tail,
            };
            if self.recent_tails.len() == AVG_WINDOW {
                self.recent_tails.pop_front();
            }
            self.recent_tails.push_back(tail);
            1.0 - filtered
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((value, raw));
        self.iteration += 1;
        likelihood
    }
}

/// NuPIC's log scale of a likelihood: 0.5 maps to about 0.03, 1 - 1e-10 to 1.
fn log_likelihood(p: f64) -> f64 {
    (1.000_000_000_1 - p).ln() / -23.025_850_847_200_09
}

/// Population mean and variance (numpy's mean and var).
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// The complementary error function. No special-function crate for one call: the Chebyshev fit from
/// Numerical Recipes (fractional error below 1.2e-7), ample for a tail probability that is log-scaled.
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// One file's scores (the HTM's log likelihood, or 1 for a value outside the range seen so far) and the
/// mean raw anomaly score of the second half of the rows, logged to show how much the memory learnt.
fn run_file(s: &NabSeries, rows: usize, numenta_tm: bool) -> Result<(Vec<f64>, f64), String> {
    let name = &s.name;
    let (lo, hi) = s
        .values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = (hi - lo).abs() * 0.2;
    let resolution = RDSE_MIN_RESOLUTION.max(((hi + pad) - (lo - pad)) / RDSE_BUCKETS);
    let rdse = Rdse::new(RdseParams {
        size: RDSE_SIZE,
        active_bits: RDSE_ACTIVE,
        resolution: resolution as f32,
        seed: 42,
        ..Default::default()
    })
    .map_err(|e| format!("htm: {name}: value encoder (resolution {resolution}): {e}"))?;
    let tod = TimeOfDay::new();
    let input_size = RDSE_SIZE + tod.n as u32;
    let mut sp = SpatialPooler::new(input_size as usize);
    let tm_params = if numenta_tm {
        // NAB's "numentaTM" detector: NuPIC's tm_cpp parameter set, for the TM algorithm mokosh has.
        TemporalMemoryParams {
            activation_threshold: 20,
            initial_permanence: 0.24,
            min_threshold: 13,
            max_synapses_per_segment: 128,
            max_new_synapse_count: 31,
            permanence_increment: 0.04,
            permanence_decrement: 0.008,
            predicted_segment_decrement: 0.001,
            ..TemporalMemoryParams::default()
        }
    } else {
        // NAB's "numenta" detector: the backtracking TM's parameter set.
        TemporalMemoryParams {
            activation_threshold: 13,
            initial_permanence: 0.21,
            min_threshold: 10,
            max_synapses_per_segment: 32,
            max_new_synapse_count: 20,
            permanence_increment: 0.1,
            permanence_decrement: 0.1,
            predicted_segment_decrement: 0.0,
            ..TemporalMemoryParams::default()
        }
    };
    let mut tm = TemporalMemory::new(TemporalMemoryParams {
        column_dimensions: vec![2048],
        cells_per_column: 32,
        connected_permanence: 0.5,
        max_segments_per_cell: 128,
        seed: 1960,
        anomaly_mode: AnomalyMode::Raw,
        ..tm_params
    })
    .map_err(|e| format!("htm: {name}: temporal memory: {e}"))?;
    let mut likelihood = Likelihood::new(nab::probationary_length(s.values.len()));

    let mut value_sdr = Sdr::new(&[RDSE_SIZE]);
    let mut active_cols: Vec<u32> = Vec::with_capacity(SP_ACTIVE);
    let mut columns = Sdr::new(&[2048]);
    let mut bits: Vec<u32> = Vec::with_capacity((RDSE_ACTIVE as usize) + TOD_ACTIVE);
    let (mut seen_lo, mut seen_hi): (Option<f64>, Option<f64>) = (None, None);
    let mut out = Vec::with_capacity(s.values.len());
    let mut raws = Vec::with_capacity(s.values.len());
    for (&ts, &v) in s.timestamps.iter().zip(&s.values).take(rows) {
        // mokosh's bucket index is `(value / resolution) as u32`, which saturates negative values to
        // bucket 0 and loses f32 precision far from zero; measuring from the padded minimum keeps every
        // value of the file positive and small.
        rdse.encode((v - (lo - pad)) as f32, &mut value_sdr)
            .map_err(|e| format!("htm: {name}: encoding value {v}: {e}"))?;
        bits.clear();
        bits.extend(value_sdr.get_sparse());
        tod.encode(ts, RDSE_SIZE, &mut bits);
        bits.sort_unstable();
        bits.dedup();
        sp.compute(&bits, &mut active_cols);
        columns
            .set_sparse(&active_cols)
            .map_err(|e| format!("htm: {name}: active columns: {e}"))?;
        tm.compute(&columns, true);
        let raw = tm.anomaly() as f64;
        raws.push(raw);

        let spatial = match (seen_lo, seen_hi) {
            (Some(a), Some(b)) if a != b => {
                let tol = (b - a) * SPATIAL_TOLERANCE;
                v > b + tol || v < a - tol
            }
            _ => false,
        };
        seen_lo = Some(seen_lo.map_or(v, |a| a.min(v)));
        seen_hi = Some(seen_hi.map_or(v, |b| b.max(v)));
        let score = log_likelihood(likelihood.probability(v, raw));
        // numentaTM has no spatial-anomaly override.
        out.push(if spatial && !numenta_tm { 1.0 } else { score });
    }
    let late = &raws[raws.len() / 2..];
    let late_mean = late.iter().sum::<f64>() / late.len().max(1) as f64;
    Ok((out, late_mean))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((out_dir, corpora)) = args.split_first() else {
        return Err("usage: vigil-htm-baseline OUT_DIR CORPUS_DIR...".to_string());
    };
    let out_dir = PathBuf::from(out_dir);
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("htm: creating {}: {e}", out_dir.display()))?;
    let only: Option<Vec<String>> = std::env::var("ONLY")
        .ok()
        .map(|o| o.split(',').map(str::to_string).collect());
    let rows: Option<usize> = match std::env::var("ROWS") {
        Ok(r) => Some(
            r.parse()
                .map_err(|e| format!("htm: ROWS: {r:?} is not a row count: {e}"))?,
        ),
        Err(_) => None,
    };
    let numenta_tm = match std::env::var("VARIANT").as_deref() {
        Ok("numentaTM") => true,
        Ok("numenta") | Err(_) => false,
        Ok(other) => {
            return Err(format!(
                "htm: VARIANT: {other:?}, expected numenta (the default) or numentaTM"
            ))
        }
    };
    for dir in corpora {
        let series = nab::load_corpus(Path::new(dir))
            .map_err(|e| format!("htm: loading corpus {dir}: {e}"))?;
        for s in &series {
            if only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|x| s.name.contains(x.as_str())))
            {
                continue;
            }
            let path = out_dir.join(format!("{}.txt", s.name.replace('/', "__")));
            if rows.is_none() && path.exists() {
                continue;
            }
            let started = Instant::now();
            let (scores, late_raw) = run_file(s, rows.unwrap_or(usize::MAX), numenta_tm)?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{}: {} rows in {:.1} s ({:.2} ms/row), mean raw score of the second half {:.3}",
                s.name,
                scores.len(),
                secs,
                1e3 * secs / scores.len().max(1) as f64,
                late_raw
            );
            if rows.is_none() {
                let text: String = scores.iter().map(|v| format!("{v:?}\n")).collect();
                // Written whole, then renamed, so a killed run leaves no partial file to be skipped.
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text)
                    .map_err(|e| format!("htm: writing {}: {e}", tmp.display()))?;
                std::fs::rename(&tmp, &path)
                    .map_err(|e| format!("htm: renaming to {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}
