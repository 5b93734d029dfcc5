//! Scores open-source detectors from NAB's scoreboard on NAB-layout corpora with the same scorer as
//! `vigil eval nab` (`vigil_detect::nab`), so that the shipped `SeriesDetector` can be compared with them on
//! the development corpora (issue #13: the held-out KPI corpus must beat the best of NAB's open-source
//! detectors there).
//!
//! The detectors (Windowed Gaussian, Relative Entropy, CAD OSE, KNN-CAD, Bayesian changepoint, ARTime) are
//! reimplemented here from their published descriptions and the documented behaviour of NAB's detectors
//! (NAB's detector documentation, Wang et al. 2011, the CAD and KNN-CAD READMEs, Ishimtsev et al. 2017,
//! Adams and MacKay 2007, the ARTimeNAB.jl README and code with the Wavelets.jl Haar filter it uses),
//! written anew rather than translated, so they are close to, not identical with, NAB's results;
//! BENCHMARKS.md says how close on the 32 NAB files where NAB's own figure is known. They are examples only,
//! never part of the shipped detector.
//!
//! Usage: `cargo run --release -p vigil-detect --example nab_baselines -- DIR...`; `DETECTORS=a,b` runs a
//! subset by NAB name (`windowedGaussian,relativeEntropy,contextOSE,knncad,bayesChangePt,ARTime`).
//! `DUMP_DIR=dir` also writes each file's scores there (`<category>__<file>.txt`, one a line).
//! `SCORES_DIR=dir` scores a detector run elsewhere that wrote its scores in that layout (`SCORES_NAME` names
//! it, `SCORES_THRESHOLDS=a,b` are its fixed thresholds, 0.5 by default); `DETECTORS=none` skips the rest.
//! `CAD_RANGE=probation` / `ARTIME_RANGE=probation` hand CAD OSE / ARTime only the probationary rows' range
//! instead of the whole file's (what a streaming detector could know).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use vigil_detect::nab::{self, NabSeries, ProfileScore};

/// The upper tail probability of the standard normal at `z`.
///
/// vigil-detect carries no special-function crate and an example is not worth adding one for: this is the
/// Chebyshev fit of erfc from Numerical Recipes (fractional error below 1.2e-7 everywhere), which is ample
/// for ranking scores.
fn normal_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    0.5 * erfc
}

/// NAB's "windowedGaussian": each value is scored by one minus the tail probability of its distance from
/// the mean of a window of earlier values, under a Gaussian with that window's mean and (population)
/// standard deviation. The window grows to 6,400 values, updating its statistics at every value; after
/// that it slides in steps of 100 values (the newest 100 replace the oldest 100). The first value, with an
/// empty window, scores 0; a window with no spread is given a tiny one (1e-6), as NAB documents.
fn windowed_gaussian(values: &[f64]) -> Vec<f64> {
    const WINDOW: usize = 6400;
    const STEP: usize = 100;
    let stats = |w: &[f64]| {
        let n = w.len() as f64;
        let mean = w.iter().sum::<f64>() / n;
        let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let sd = var.sqrt();
        (mean, if sd == 0.0 { 1e-6 } else { sd })
    };
    let mut window: Vec<f64> = Vec::with_capacity(WINDOW);
    let mut step: Vec<f64> = Vec::with_capacity(STEP);
    let (mut mean, mut sd) = (0.0, 1.0);
    values
        .iter()
        .map(|&v| {
            let score = if window.is_empty() {
                0.0
            } else {
                1.0 - normal_tail((v - mean).abs() / sd)
            };
            if window.len() < WINDOW {
                window.push(v);
                (mean, sd) = stats(&window);
            } else {
                step.push(v);
                if step.len() == STEP {
                    window.drain(..STEP);
                    window.append(&mut step);
                    (mean, sd) = stats(&window);
                }
            }
            score
        })
        .collect()
}

/// NAB's "relativeEntropy" (Wang et al. 2011, the relative-entropy test): values are quantised into 5 bins
/// spanning the file's minimum to maximum (NAB hands every detector the file's range); at every point the
/// histogram of the last 52 quantised values is compared with each hypothesis (a histogram seen before) by
/// the relative entropy D(window || hypothesis). `2 W D` is asymptotically chi-square with bins - 1
/// degrees of freedom under the hypothesis, so a window agrees with the hypothesis when it lies below that
/// distribution's 0.99 quantile (13.277 for 4 degrees of freedom); among the agreeing hypotheses the
/// closest is taken. A window that agrees with none becomes a new hypothesis and is anomalous (score 1); a
/// window whose agreeing hypothesis has, counting this window, agreed at most `c_th` times is anomalous too
/// (with NAB's `c_th` = 1 that never happens, so only new hypotheses score; `RE_C_TH` overrides it).
fn relative_entropy(values: &[f64]) -> Vec<f64> {
    const W: usize = 52;
    const BINS: usize = 5;
    // chi2.isf(0.01, 4)
    const T: f64 = 13.276_704_135_987_6;
    let c_th: u32 = std::env::var("RE_C_TH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let step = (max - min) / BINS as f64;
    // The bin of a value: ceil((v - min) / step), clamped to the last bin (a histogram of the ceilings over
    // [0, BINS] in BINS unit bins, the last one closed): bin 0 holds only the file's minimum and the top two
    // fifths of the range share the last bin. Odd, but it is what the described quantisation does.
    let bin = |v: f64| -> usize {
        if step <= 0.0 {
            return 0;
        }
        let c = ((v - min) / step).ceil();
        (c.max(0.0) as usize).min(BINS - 1)
    };
    let bins: Vec<usize> = values.iter().map(|&v| bin(v)).collect();
    let mut hypotheses: Vec<([f64; BINS], u32)> = Vec::new();
    let mut counts = [0usize; BINS];
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        counts[bins[i]] += 1;
        if i >= W {
            counts[bins[i - W]] -= 1;
        }
        if i + 1 < W {
            out.push(0.0);
            continue;
        }
        let p: [f64; BINS] = std::array::from_fn(|k| counts[k] as f64 / W as f64);
        let mut best: Option<(usize, f64)> = None;
        for (h, (q, _)) in hypotheses.iter().enumerate() {
            let mut d = 0.0;
            for k in 0..BINS {
                if p[k] > 0.0 {
                    d += if q[k] > 0.0 {
                        p[k] * (p[k] / q[k]).ln()
                    } else {
                        f64::INFINITY
                    };
                }
            }
            let stat = 2.0 * W as f64 * d;
            if stat < T && best.is_none_or(|(_, b)| stat < b) {
                best = Some((h, stat));
            }
        }
        let score = if hypotheses.is_empty() {
            // The first full window is the first hypothesis, not an anomaly.
            hypotheses.push((p, 1));
            0.0
        } else {
            match best {
                Some((h, _)) => {
                    hypotheses[h].1 += 1;
                    if hypotheses[h].1 <= c_th {
                        1.0
                    } else {
                        0.0
                    }
                }
                None => {
                    hypotheses.push((p, 1));
                    1.0
                }
            }
        };
        out.push(score);
    }
    out
}

/// Python 2.7's `hash` of a tuple of non-negative integers on a 64-bit build (an integer hashes to itself).
///
/// CAD OSE breaks ties between equally often active contexts by the hashes of their two fact tuples, so
/// which contexts become "neurons" depends on this function; NAB's published CAD OSE figures were made
/// under Python 2.7. The mixing (multiplier 1000003, its per-item increment 82520 + 2 x items left,
/// seed 0x345678, final 97531, -1 mapped to -2) is CPython's documented tuple hash of that version;
/// `main` checks it against values printed by Python 2.7.18 before scoring.
fn py2_tuple_hash(items: &[u64]) -> i64 {
    let mut x: i64 = 0x345678;
    let mut mult: i64 = 1_000_003;
    let mut left = items.len() as i64;
    for &item in items {
        left -= 1;
        x = (x ^ item as i64).wrapping_mul(mult);
        mult = mult.wrapping_add(82_520 + left + left);
    }
    x = x.wrapping_add(97_531);
    if x == -1 {
        -2
    } else {
        x
    }
}

/// Sensory facts of CAD OSE: bit `s` of the quantised value is the fact `SENSE + 2 s + bit`.
const CAD_SENSE: u64 = 65_536;
/// Facts that stand for an active context ("neuron") of the previous step: `NEURON + context id`.
const CAD_NEURON: u64 = 1 << 31;

/// One half of a context: a sorted set of facts, and which of them the current input holds.
struct SemiContext {
    facts: Vec<u64>,
    hash: i64,
    /// The facts of the last crossing's input that this semi-context holds (in input order, so sorted).
    crossed: Vec<u64>,
    /// Left halves only: the contexts this left half starts, as (right half, context), in the order NAB's
    /// code visits them, and the same keyed by right half for lookup.
    contexts: Vec<(usize, usize)>,
    by_right: HashMap<usize, usize>,
    /// The slots of the Python 2.7 dict NAB keeps them in (see `py2_dict_insert`).
    slots: Vec<Option<(usize, usize)>>,
}

/// Inserts a new integer key into an emulation of a Python 2.7 dict's hash table, whose slot order is the
/// order in which Python 2.7 iterates it.
///
/// CAD OSE visits a left semi-context's contexts in its dict's order, and that order decides the order in
/// which new contexts are learnt, so their ids, the neuron facts named after them and the hashes that
/// break ties. With creation order instead, scores on two of the 32 NAB files drift from NAB's code's
/// (`elb_request_count_8c0756` from row 2557, `ambient_temperature_system_failure` from row 1353). The rules are CPython 2.7's documented ones: an integer
/// hashes to itself; the first slot is `hash & mask`, then `i = 5 i + perturb + 1` with `perturb` starting
/// at the hash and shifted right 5 bits after each probe; the table starts at 8 slots and, once two thirds
/// are filled, is rebuilt at the smallest power of two above 4 x the entries, re-inserting in slot order.
fn py2_dict_insert(slots: &mut Vec<Option<(usize, usize)>>, used: usize, key: usize, value: usize) {
    fn place(slots: &mut [Option<(usize, usize)>], key: usize, value: usize) {
        let mask = slots.len() - 1;
        let (mut i, mut perturb) = (key, key);
        while slots[i & mask].is_some() {
            i = (i << 2)
                .wrapping_add(i)
                .wrapping_add(perturb)
                .wrapping_add(1);
            perturb >>= 5;
        }
        slots[i & mask] = Some((key, value));
    }
    if slots.is_empty() {
        slots.resize(8, None);
    }
    place(slots, key, value);
    if used * 3 >= slots.len() * 2 {
        let wanted = if used > 50_000 { 2 } else { 4 } * used;
        let mut size = 8;
        while size <= wanted {
            size <<= 1;
        }
        let old = std::mem::replace(slots, vec![None; size]);
        for (k, v) in old.into_iter().flatten() {
            place(slots, k, v);
        }
    }
}

/// A learnt context "these facts (left) were followed by those (right)", with its prediction record.
struct Context {
    right: usize,
    /// The sizes of its right half summed over the steps its left half was fully present.
    expected: u64,
    /// How many of those right facts then arrived.
    hits: u64,
    /// How often both halves were fully present.
    activations: u64,
    /// Whether it was ever seen whole as one step's (previous facts, current facts) pair.
    zero_level: bool,
    left_hash: i64,
    right_hash: i64,
}

/// One side's memory of semi-contexts (0 = left, 1 = right).
#[derive(Default)]
struct Side {
    semis: Vec<SemiContext>,
    by_facts: HashMap<Vec<u64>, usize>,
    by_fact: HashMap<u64, Vec<usize>>,
    /// Semi-contexts the last crossing touched, in creation order.
    crossed: Vec<usize>,
}

impl Side {
    fn get_or_add(&mut self, facts: &[u64]) -> usize {
        if let Some(&id) = self.by_facts.get(facts) {
            return id;
        }
        let id = self.semis.len();
        self.semis.push(SemiContext {
            facts: facts.to_vec(),
            hash: py2_tuple_hash(facts),
            crossed: Vec::new(),
            contexts: Vec::new(),
            by_right: HashMap::new(),
            slots: Vec::new(),
        });
        self.by_facts.insert(facts.to_vec(), id);
        for &f in facts {
            self.by_fact.entry(f).or_default().push(id);
        }
        id
    }

    /// Marks in every semi-context which of `facts` (sorted) it holds; remembers the touched ones.
    fn cross(&mut self, facts: &[u64]) {
        for &id in &self.crossed {
            self.semis[id].crossed.clear();
        }
        let mut touched = Vec::new();
        for &f in facts {
            for &id in self.by_fact.get(&f).map_or(&[][..], Vec::as_slice) {
                self.semis[id].crossed.push(f);
                touched.push(id);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        self.crossed = touched;
    }
}

/// NAB's "contextOSE": the Contextual Anomaly Detector, open-source edition (M. Smirnov, 2016), as NAB
/// runs it, reimplemented from the description of its behaviour.
///
/// Each value is quantised to 3 bits over the file's range (8 levels); each bit is a sensory fact. A step's
/// left facts are the previous step's sensory facts plus up to 15 "neuron" facts naming the contexts that
/// were fully active then. The pair (previous left facts, current sensory facts) is a zero-level context;
/// when it is new, the intersections of the previous step's partly matching zero-level contexts with the
/// current input (left halves of at most 7 facts) are learnt as further contexts. A context whose left half
/// was fully present is "selected" and records how much of its right half arrived; if all of it did it is
/// active (the most often active 15 become the next neuron facts). The contexts with the best record whose
/// left halves are fully present predict the next sensory facts.
///
/// Score: 0 when every sensory fact was predicted; else the mean of the share of selected contexts that
/// were not active and the share of potential new contexts that really were new (0 when the zero-level
/// context already existed). After a raw score reaches 0.75, outputs are 0 for `rest` steps (NAB: the
/// probationary period / 5). Memory grows with what it learns: unbounded, as in NAB (an example, not a
/// shipped detector).
///
/// Checked against NAB's own code run under Python 2.7.18 on the 32 NAB files in `../shared/data/nab`:
/// the same score on every row (BENCHMARKS.md, baseline detectors).
struct CadOse {
    min: f64,
    step: f64,
    bits: usize,
    rest: usize,
    max_left: usize,
    max_neurons: usize,
    threshold: f64,
    /// Breaks ties between equally active contexts by id (newest wins) instead of Python 2.7's hashes
    /// (`CAD_TIE=id`), to measure how much the tie-break detail moves the score.
    tie_by_id: bool,
    /// Visits each left semi-context's contexts in creation order instead of Python 2.7's dict order
    /// (`CAD_ORDER=creation`), to measure how much that detail moves the score.
    creation_order: bool,
    sides: [Side; 2],
    contexts: Vec<Context>,
    /// The zero-level context created this step, skipped when contexts are credited.
    new_context: Option<usize>,
    left_group: Vec<u64>,
    predicted: Vec<u64>,
    history: Vec<f64>,
}

impl CadOse {
    fn new(min: f64, max: f64, rest: usize) -> Self {
        let bits = 3;
        let top = ((1u32 << bits) - 1) as f64;
        let range = if max - min == 0.0 { top } else { max - min };
        Self {
            min,
            step: range / top,
            bits,
            rest,
            max_left: 7,
            max_neurons: 15,
            threshold: 0.75,
            tie_by_id: std::env::var("CAD_TIE").is_ok_and(|v| v == "id"),
            creation_order: std::env::var("CAD_ORDER").is_ok_and(|v| v == "creation"),
            sides: [Side::default(), Side::default()],
            contexts: Vec::new(),
            new_context: None,
            left_group: Vec::new(),
            predicted: Vec::new(),
            // Seeded with one high score, so the first `rest` outputs are 0.
            history: vec![1.0],
        }
    }

    /// Learns the contexts in `pairs` that are new; returns how many were.
    fn learn(&mut self, pairs: &[(Vec<u64>, Vec<u64>)], zero_level: bool) -> usize {
        let mut added = 0;
        for (left, right) in pairs {
            let l = self.sides[0].get_or_add(left);
            let r = self.sides[1].get_or_add(right);
            match self.sides[0].semis[l].by_right.get(&r) {
                Some(&c) => {
                    if zero_level {
                        self.contexts[c].zero_level = true;
                    }
                }
                None => {
                    let c = self.contexts.len();
                    self.contexts.push(Context {
                        right: r,
                        expected: 0,
                        hits: 0,
                        activations: 0,
                        zero_level,
                        left_hash: self.sides[0].semis[l].hash,
                        right_hash: self.sides[1].semis[r].hash,
                    });
                    let semi = &mut self.sides[0].semis[l];
                    semi.by_right.insert(r, c);
                    if self.creation_order {
                        semi.contexts.push((r, c));
                    } else {
                        py2_dict_insert(&mut semi.slots, semi.by_right.len(), r, c);
                        semi.contexts = semi.slots.iter().flatten().copied().collect();
                    }
                    added += 1;
                    if zero_level {
                        self.new_context = Some(c);
                    }
                }
            }
        }
        added
    }

    /// Credits the contexts whose left halves the previous step fully held with the current input;
    /// returns the active ones (id, activations, hashes), how many were selected, and the potential new
    /// contexts (when `new_zero` says this step's zero-level context was new).
    #[allow(clippy::type_complexity)]
    fn credit(
        &mut self,
        new_zero: bool,
    ) -> (
        Vec<(usize, u64, i64, i64)>,
        usize,
        Vec<(Vec<u64>, Vec<u64>)>,
    ) {
        let mut active = Vec::new();
        let mut selected = 0;
        let mut potential = Vec::new();
        // NAB compares context ids with a "no new context" flag that Python takes for 0, so context 0 is
        // skipped whenever no zero-level context was created this step; kept for fidelity.
        let skip = self.new_context.unwrap_or(0);
        let [left_side, right_side] = &self.sides;
        for &l in &left_side.crossed {
            let left = &left_side.semis[l];
            let full = left.crossed.len() == left.facts.len();
            for &(r, c) in &left.contexts {
                if c == skip {
                    continue;
                }
                let right = &right_side.semis[r];
                let (got, want) = (right.crossed.len() as u64, right.facts.len() as u64);
                let ctx = &mut self.contexts[c];
                let may_grow = ctx.zero_level && new_zero && left.crossed.len() <= self.max_left;
                if full {
                    selected += 1;
                    ctx.expected += want;
                    if got > 0 {
                        ctx.hits += got;
                        if got == want {
                            ctx.activations += 1;
                            active.push((c, ctx.activations, ctx.left_hash, ctx.right_hash));
                        } else if may_grow {
                            potential.push((left.crossed.clone(), right.crossed.clone()));
                        }
                    }
                } else if may_grow && got > 0 {
                    potential.push((left.crossed.clone(), right.crossed.clone()));
                }
            }
        }
        self.new_context = None;
        (active, selected, potential)
    }

    /// The sensory facts predicted by the best-recorded contexts whose left halves are fully present.
    fn predict(&self) -> Vec<u64> {
        let side = &self.sides[0];
        let mut best = 0.0;
        let mut chosen: Vec<usize> = Vec::new();
        for &l in &side.crossed {
            let semi = &side.semis[l];
            if semi.crossed.len() != semi.facts.len() {
                continue;
            }
            for &(_, c) in &semi.contexts {
                let ctx = &self.contexts[c];
                let w = if ctx.expected > 0 {
                    ctx.hits as f64 / ctx.expected as f64
                } else {
                    0.0
                };
                if w > best {
                    best = w;
                    chosen.clear();
                    chosen.push(c);
                } else if w == best {
                    chosen.push(c);
                }
            }
        }
        let mut facts: Vec<u64> = chosen
            .iter()
            .flat_map(|&c| {
                self.sides[1].semis[self.contexts[c].right]
                    .facts
                    .iter()
                    .copied()
            })
            .collect();
        facts.sort_unstable();
        facts.dedup();
        facts
    }

    fn score(&mut self, value: f64) -> f64 {
        let level = ((value - self.min) / self.step) as u64;
        let width = self.bits.max(64 - level.leading_zeros() as usize);
        let sensed: Vec<u64> = (0..width)
            .map(|s| CAD_SENSE + 2 * s as u64 + ((level >> s) & 1))
            .collect();
        let surprised = sensed
            .iter()
            .any(|f| self.predicted.binary_search(f).is_err());

        // The step: this step's zero-level context, crediting, neurons, learning and the next prediction.
        let zero = (!self.left_group.is_empty()).then(|| (self.left_group.clone(), sensed.clone()));
        let new_zero = match &zero {
            Some(pair) => self.learn(std::slice::from_ref(pair), true) > 0,
            None => false,
        };
        self.sides[1].cross(&sensed);
        let (mut active, selected, potential) = self.credit(new_zero);
        let mut unique: HashSet<&(Vec<u64>, Vec<u64>)> = potential.iter().collect();
        if let Some(pair) = &zero {
            unique.insert(pair);
        }
        let unique = unique.len();
        let active_share = if selected > 0 {
            active.len() as f64 / selected as f64
        } else {
            0.0
        };
        if self.tie_by_id {
            active.sort_unstable_by_key(|&(c, n, ..)| (n, c as i64, 0));
        } else {
            active.sort_unstable_by_key(|&(_, n, lh, rh)| (n, lh, rh));
        }
        let mut group: Vec<u64> = active
            .iter()
            .rev()
            .take(self.max_neurons)
            .map(|&(c, ..)| CAD_NEURON + c as u64)
            .chain(sensed.iter().copied())
            .collect();
        group.sort_unstable();
        group.dedup();
        self.left_group = group;
        let learnt = if potential.is_empty() {
            0
        } else {
            self.learn(&potential, false)
        };
        let left_group = std::mem::take(&mut self.left_group);
        self.sides[0].cross(&left_group);
        self.left_group = left_group;
        self.predicted = self.predict();
        let new_share = if new_zero && unique > 0 {
            (learnt + 1) as f64 / unique as f64
        } else {
            0.0
        };

        let raw = if surprised {
            (1.0 - active_share + new_share) / 2.0
        } else {
            0.0
        };
        let recent = if self.rest == 0 {
            &self.history[..]
        } else {
            &self.history[self.history.len().saturating_sub(self.rest)..]
        };
        let out = if recent.iter().all(|&h| h < self.threshold) {
            raw
        } else {
            0.0
        };
        self.history.push(raw);
        out
    }
}

/// CAD OSE with NAB's settings: the file's range, rest = the probationary period / 5 (truncated).
///
/// `CAD_RANGE=probation` gives it the range of the probationary rows only (what a streaming detector could
/// know; later values above it take more bits, below it level 0), to measure how much of its score comes
/// from being handed the whole file's range up front.
fn cad_ose(values: &[f64]) -> Vec<f64> {
    let probation = nab::probationary_length(values.len());
    let known = if std::env::var("CAD_RANGE").is_ok_and(|v| v == "probation") {
        &values[..probation.max(1).min(values.len())]
    } else {
        values
    };
    let min = known.iter().copied().fold(f64::INFINITY, f64::min);
    let max = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let rest = (probation as f64 / 5.0) as usize;
    let mut cad = CadOse::new(min, max, rest);
    values.iter().map(|&v| cad.score(v)).collect()
}

/// The inverse of a square matrix by Gauss-Jordan elimination with partial pivoting, or `None` when a
/// pivot is exactly zero (the case where LAPACK, and so numpy's `inv`, reports a singular matrix).
/// Hand-written because vigil-detect has no linear-algebra dependency and this is a 19 x 19 example.
fn invert<const N: usize>(m: &[[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut a = *m;
    let mut inv = [[0.0; N]; N];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..N {
        let pivot = (col..N).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col] == 0.0 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        for j in 0..N {
            a[col][j] /= p;
            inv[col][j] /= p;
        }
        for r in 0..N {
            if r != col && a[r][col] != 0.0 {
                let f = a[r][col];
                for j in 0..N {
                    a[r][j] -= f * a[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

/// `L^T` for the Cholesky factor `L` of the symmetric part of `m` (so `x^T m x = |L^T x|^2`), or `None`
/// when it is not numerically positive definite.
fn cholesky_upper<const N: usize>(m: &[[f64; N]; N]) -> Option<[[f64; N]; N]> {
    let mut l = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            let sym = 0.5 * (m[i][j] + m[j][i]);
            if i == j {
                let d = sym - s;
                if d <= 0.0 || !d.is_finite() {
                    return None;
                }
                l[i][i] = d.sqrt();
            } else {
                l[i][j] = (sym - s) / l[j][j];
            }
        }
    }
    let mut u = [[0.0; N]; N];
    for i in 0..N {
        for j in 0..N {
            u[i][j] = l[j][i];
        }
    }
    Some(u)
}

/// NAB's "knncad" (Ishimtsev et al. 2017, "Conformal k-NN anomaly detector for univariate data streams"),
/// with NAB's settings, reimplemented from its README and paper.
///
/// Each point is the vector of the last 19 values. During the probationary period `P` the vectors form the
/// training set. The non-conformity of a vector is the sum of its squared Mahalanobis distances to its 27
/// nearest training vectors, the metric being `(X^T X)^-1` of the training matrix `X`, re-estimated at
/// every multiple of `P` and of `P/2` (kept when singular). At the first scored point each training vector
/// is scored against the training set (itself included, so its 28 nearest) to form the calibration scores;
/// a new vector's score is the share of calibration scores strictly below its non-conformity. The scores
/// then slide: each new non-conformity replaces the oldest, and from `2 P` on each new vector enters a
/// calibration queue whose oldest member replaces the oldest training vector. A score of 0.9965 or more
/// is followed by `P/5` outputs of 0.5.
fn knn_cad(values: &[f64]) -> Vec<f64> {
    const K: usize = 27;
    const DIM: usize = 19;
    let p = nab::probationary_length(values.len());
    let half = p / 2;
    let hold = p / 5;
    let mut training: VecDeque<[f64; DIM]> = VecDeque::new();
    let mut calibration: VecDeque<[f64; DIM]> = VecDeque::new();
    let mut scores: VecDeque<f64> = VecDeque::new();
    // The metric: while `Sigma` has a Cholesky factor, training vectors are kept transformed by `L^T`
    // (`x^T Sigma x = |L^T x|^2`, 19 products a distance instead of 380); otherwise (a near-singular
    // training matrix) the quadratic form is computed directly. Identity until first estimated, as in NAB.
    let mut identity = [[0.0; DIM]; DIM];
    for (i, row) in identity.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    let mut sigma = identity;
    let mut factor = Some(identity);
    let mut mapped: VecDeque<[f64; DIM]> = VecDeque::new();
    let map = |factor: &Option<[[f64; DIM]; DIM]>, x: &[f64; DIM]| -> [f64; DIM] {
        match factor {
            Some(u) => std::array::from_fn(|i| u[i].iter().zip(x).map(|(a, b)| a * b).sum()),
            None => *x,
        }
    };
    let distance = |factor: &Option<[[f64; DIM]; DIM]>,
                    sigma: &[[f64; DIM]; DIM],
                    a: &[f64; DIM],
                    b: &[f64; DIM]| {
        let diff: [f64; DIM] = std::array::from_fn(|i| a[i] - b[i]);
        match factor {
            Some(_) => diff.iter().map(|d| d * d).sum::<f64>(),
            None => (0..DIM)
                .map(|i| diff[i] * (0..DIM).map(|j| sigma[i][j] * diff[j]).sum::<f64>())
                .sum(),
        }
    };
    let mut dists: Vec<f64> = Vec::new();
    // The sum of the `k` smallest distances from `item` (already mapped) to the (mapped) training set.
    let mut nonconformity = |factor: &Option<[[f64; DIM]; DIM]>,
                             sigma: &[[f64; DIM]; DIM],
                             mapped: &VecDeque<[f64; DIM]>,
                             item: &[f64; DIM],
                             k: usize| {
        dists.clear();
        dists.extend(mapped.iter().map(|t| distance(factor, sigma, t, item)));
        let k = k.min(dists.len());
        if k == 0 {
            return 0.0;
        }
        if k < dists.len() {
            dists.select_nth_unstable_by(k - 1, f64::total_cmp);
        }
        dists[..k].iter().sum::<f64>()
    };
    let mut pred = 0usize;
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let count = i + 1;
        if count < DIM {
            out.push(0.0);
            continue;
        }
        let item: [f64; DIM] = std::array::from_fn(|j| values[count - DIM + j]);
        if count < p || p == 0 {
            training.push_back(item);
            mapped.push_back(map(&factor, &item));
            out.push(0.0);
            continue;
        }
        let ost = count % p;
        if ost == 0 || ost == half {
            let mut xtx = [[0.0; DIM]; DIM];
            for t in &training {
                for a in 0..DIM {
                    for b in 0..DIM {
                        xtx[a][b] += t[a] * t[b];
                    }
                }
            }
            if let Some(inv) = invert(&xtx) {
                sigma = inv;
                factor = cholesky_upper(&sigma);
                mapped = training.iter().map(|t| map(&factor, t)).collect();
            }
        }
        if scores.is_empty() {
            let all: Vec<f64> = mapped
                .iter()
                .map(|t| nonconformity(&factor, &sigma, &mapped, t, K + 1))
                .collect();
            scores.extend(all);
        }
        let new = nonconformity(&factor, &sigma, &mapped, &map(&factor, &item), K);
        let result =
            scores.iter().filter(|&&s| s < new).count() as f64 / scores.len().max(1) as f64;
        if count >= 2 * p {
            training.pop_front();
            mapped.pop_front();
            if let Some(c) = calibration.pop_front() {
                mapped.push_back(map(&factor, &c));
                training.push_back(c);
            }
        }
        scores.pop_front();
        calibration.push_back(item);
        scores.push_back(new);
        out.push(if pred > 0 {
            pred -= 1;
            0.5
        } else {
            if result >= 0.9965 {
                pred = hold;
            }
            result
        });
    }
    out
}

/// `ln Gamma(x)` for `x > 0`: the Lanczos approximation (g = 7, 9 terms; relative error near 1e-15),
/// shifted up by one below 0.5. Hand-written because `f64::ln_gamma` is not stable Rust and the crate has
/// no special-function dependency; `main` checks it against Python's `math.lgamma`.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return ln_gamma(x + 1.0) - x.ln();
    }
    let x = x - 1.0;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, c)| a + c / (x + i as f64 + 1.0));
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// NAB's "bayesChangePt": Bayesian online changepoint detection (Adams and MacKay 2007) with NAB's
/// settings and NAB's own score, reimplemented from the paper and NAB's description.
///
/// Values are Gaussian with unknown mean and variance under a normal-gamma prior (mu 0, kappa 1, alpha
/// 0.1, beta 0.001), so each run length predicts the next value by a Student t; the hazard is constant,
/// 1/250. Run lengths are kept up to 500 (longer ones dropped). The score compares the most probable run
/// length now with the previous step's: `1 - now / before` when it fell, else 0 (so a sudden drop from a
/// long run scores near 1). NAB gives no threshold; 0.5 is the natural fixed one for a score in [0, 1].
fn bayes_changept(values: &[f64]) -> Vec<f64> {
    const MAX_RUN: usize = 500;
    const HAZARD: f64 = 1.0 / 250.0;
    const MU0: f64 = 0.0;
    const BETA0: f64 = 0.001;
    let alpha = |j: usize| 0.1 + 0.5 * j as f64;
    let kappa = |j: usize| 1.0 + j as f64;
    // The Student t's normalising constant depends only on the run length (its degrees of freedom 2 alpha).
    let log_norm: Vec<f64> = (0..=MAX_RUN)
        .map(|j| {
            let nu = 2.0 * alpha(j);
            ln_gamma((nu + 1.0) / 2.0) - ln_gamma(nu / 2.0) - 0.5 * (nu * std::f64::consts::PI).ln()
        })
        .collect();
    // Posterior mean and beta for each run length (index = run length); only 0..=MAX_RUN are ever used.
    let mut mu: Vec<f64> = vec![MU0];
    let mut beta: Vec<f64> = vec![BETA0];
    let mut old = vec![0.0; MAX_RUN + 2];
    let mut new = vec![0.0; MAX_RUN + 2];
    old[0] = 1.0;
    let mut previous_max = 1usize;
    let mut out = Vec::with_capacity(values.len());
    for (t, &x) in values.iter().enumerate() {
        if t > 0 {
            old.copy_from_slice(&new);
            new.fill(0.0);
        }
        let last = t.min(MAX_RUN);
        let mut change = 0.0;
        for j in 0..=last {
            let (a, k) = (alpha(j), kappa(j));
            let nu = 2.0 * a;
            let scale = (beta[j] * (k + 1.0) / (a * k)).sqrt();
            let z = (x - mu[j]) / scale;
            let pred = (log_norm[j] - (nu + 1.0) / 2.0 * (z * z / nu).ln_1p()).exp() / scale;
            let mass = old[j] * pred;
            new[j + 1] = mass * (1.0 - HAZARD);
            change += mass * HAZARD;
        }
        new[0] = change;
        let total: f64 = new.iter().sum();
        for p in &mut new {
            *p /= total;
        }
        // The posterior after x for run lengths 1..: each from the run one shorter; run length 0 is the prior.
        let keep = (mu.len() + 1).min(MAX_RUN + 1);
        let next_mu: Vec<f64> = std::iter::once(MU0)
            .chain((0..keep - 1).map(|j| (kappa(j) * mu[j] + x) / (kappa(j) + 1.0)))
            .collect();
        let next_beta: Vec<f64> = std::iter::once(BETA0)
            .chain(
                (0..keep - 1)
                    .map(|j| beta[j] + kappa(j) * (x - mu[j]).powi(2) / (2.0 * (kappa(j) + 1.0))),
            )
            .collect();
        mu = next_mu;
        beta = next_beta;
        // numpy's argmax: the first maximum, or the first NaN if any (a step where every prediction
        // underflowed leaves NaN, and NAB's detector then stays at run length 0).
        let argmax = new.iter().position(|p| p.is_nan()).unwrap_or_else(|| {
            new.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        });
        out.push(if argmax < previous_max {
            1.0 - argmax as f64 / previous_max as f64
        } else {
            0.0
        });
        previous_max = argmax;
    }
    out
}

/// The length of ARTime's feature vector: the Haar wavelet coefficients of the last 8 downsampled values,
/// then those 8 values themselves.
const ART_DIM: usize = 16;

/// Julia's `isless` order for floats with NaN above every number, reversed: the order in which ARTime's
/// fuzzy ART visits categories (`sortperm(M, rev=true)`, stable, so ties keep index order).
fn descending_nan_first(a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// Distributed dual-vigilance fuzzy ART as ARTime builds it (its compact copy of AdaptiveResonance.jl's
/// DVFA, with ARTime's own match function).
///
/// Inputs are complement coded (`x`, `1 - x`). A category's match is `fs^3 es^2`: `fs` the fuzzy
/// similarity `|min(x, w)| / |w|`, `es` the same over only the newest value and its complement (the
/// "energy"). Categories are visited best first: every one at or above the upper vigilance learns the
/// input (`w = min(x, w)`, so several may learn: "distributed"); if none did and the best is at or above
/// the lower vigilance, the input becomes a new category of that best category's cluster; otherwise it
/// becomes a new cluster, which is what ARTime treats as a possible anomaly. The first input of an empty
/// network creates an all-ones category and is not learnt.
struct Dvfa {
    rho_lb: f64,
    rho_ub: f64,
    weights: Vec<[f64; 2 * ART_DIM]>,
    matches: Vec<(f64, f64)>,
    order: Vec<usize>,
}

/// What one input did to the network.
struct Resonance {
    /// It started a new cluster (ARTime's category -1), or learning was off.
    novel: bool,
    /// The best match, 0 when every match is 0 (ARTime's `A`).
    sim: f64,
    /// The energy similarity of that best category (ARTime's `Ae`).
    energy: f64,
}

impl Dvfa {
    fn new(rho: f64) -> Self {
        Self {
            rho_lb: rho,
            rho_ub: rho,
            weights: Vec::new(),
            matches: Vec::new(),
            order: Vec::new(),
        }
    }

    fn train(&mut self, f: &[f64; ART_DIM], learning: bool) -> Resonance {
        let x: [f64; 2 * ART_DIM] = std::array::from_fn(|k| {
            if k < ART_DIM {
                f[k]
            } else {
                1.0 - f[k - ART_DIM]
            }
        });
        if self.weights.is_empty() {
            self.weights.push([1.0; 2 * ART_DIM]);
            return Resonance {
                novel: false,
                sim: 0.0,
                energy: 0.0,
            };
        }
        let (e1, e2) = (ART_DIM - 1, 2 * ART_DIM - 1);
        self.matches.clear();
        for w in &self.weights {
            let common: f64 = x.iter().zip(w).map(|(a, b)| a.min(*b)).sum();
            let size: f64 = w.iter().sum();
            let fs = common / if size == 0.0 { 0.001 } else { size };
            let es = (x[e1].min(w[e1]) + x[e2].min(w[e2])) / (w[e1] + w[e2]);
            self.matches.push((fs.powi(3) * es.powi(2), es));
        }
        self.order.clear();
        self.order.extend(0..self.weights.len());
        let matches = &self.matches;
        self.order
            .sort_by(|&a, &b| descending_nan_first(matches[a].0, matches[b].0));
        let (mut sim, mut energy) = (0.0, 0.0);
        let mut mismatch = true;
        for &j in &self.order {
            let (m, e) = self.matches[j];
            if m > sim {
                (sim, energy) = (m, e);
            }
            if !learning {
                continue;
            }
            if m >= self.rho_ub {
                let w = &mut self.weights[j];
                for (wk, xk) in w.iter_mut().zip(&x) {
                    *wk = wk.min(*xk);
                }
                mismatch = false;
            } else if m >= self.rho_lb && mismatch {
                self.weights.push(x);
                mismatch = false;
                break;
            } else {
                break;
            }
        }
        if mismatch && learning {
            self.weights.push(x);
        }
        Resonance {
            novel: mismatch,
            sim,
            energy,
        }
    }
}

/// Close to cosine similarity (ARTime's own): a zero vector's similarity is one minus the other's norm.
fn art_similarity(a: &[f64; ART_DIM], b: &[f64; ART_DIM]) -> f64 {
    let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    if na == 0.0 {
        1.0 - nb
    } else if nb == 0.0 {
        1.0 - na
    } else {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb)
    }
}

/// Scales `v` to [0, 1] by its own minimum and maximum (left shifted only when it is flat).
fn min_max_scale(v: &mut [f64]) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    v.iter_mut().for_each(|x| *x -= min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max != 0.0 {
        v.iter_mut().for_each(|x| *x /= max);
    }
}

/// The full periodic Haar DWT of 8 values in Wavelets.jl's layout: the approximation, then the details
/// coarsest first; each detail is (later - earlier) / sqrt 2, the sign Wavelets.jl's filters give.
fn haar_dwt8(x: &[f64; 8]) -> [f64; 8] {
    let mut out = [0.0; 8];
    let mut s = x.to_vec();
    let mut n = 8;
    while n > 1 {
        let half = n / 2;
        let next: Vec<f64> = (0..half)
            .map(|k| (s[2 * k] + s[2 * k + 1]) * std::f64::consts::FRAC_1_SQRT_2)
            .collect();
        for k in 0..half {
            out[half + k] = (s[2 * k + 1] - s[2 * k]) * std::f64::consts::FRAC_1_SQRT_2;
        }
        s = next;
        n = half;
    }
    out[0] = s[0];
    out
}

/// ARTime (Mark Hampton, 2021; NAB's "ARTime", the open-source ARTimeNAB.jl), reimplemented from its
/// published code and README.
///
/// NAB hands it the file's minimum, maximum and length. The probationary period P is 15% of the file (750
/// rows from 5,000 on), made even. Rows are downsampled by `sstep = max(1, P div 104)` (13 feature windows
/// of 8 per P): of each `sstep` rows the maximum or the minimum, whichever is further from a running
/// average of the block means, unless it is within 10% of the block mean (then the mean); normalised by
/// the file's range, rounded to 80 levels, and pulled to a running median level when within 0.075. The
/// last 8 such values, shifted and scaled to [0, 1], give 8 Haar wavelet coefficients (scaled to [0, 1]
/// too), and the features are those coefficients and the 8 values.
///
/// Detection is dual-vigilance fuzzy ART ([`Dvfa`]). At the end of P (`trend_window` = P / sstep
/// downsampled steps) the vigilance is set once: the probation's feature vectors are ordered from least to
/// most similar to the rest (summed cosine similarity), trained into a fresh network at vigilance 0.8, and
/// the mean best match over the second half becomes both vigilances; then the probation is replayed
/// through the real network. After P, an input that starts a new cluster is an anomaly unless masked:
/// within 12 steps of the last anomaly, or while new clusters keep appearing (until 12 steps without one),
/// only a best match below 0.9 (0.7 when only the second mask holds) of the last anomaly's stops the mask.
/// Its score is `0.35 ub + 0.65 lb + 1.5 (1 - energy)`, at most 1, where `ub` and `lb` are how far the
/// match falls below each vigilance relative to `1 - match`. The vigilances are retuned every
/// trend_window / 2 steps and 12 steps after an anomaly: the upper to the mean of every best match so far
/// (at most 0.97); the lower up by 19% of its gap to the smallest recent match, or else down by half the
/// mean recent shortfall below the upper (0.01 to 0.37) but not below the mean match of past anomalies.
/// Rows between downsampled steps score 0.
///
/// Checked only by its score: Julia is not available here, so ARTime's own code was not run. On the 32 NAB
/// files it scores 78.4 (standard, optimised), the figure NAB publishes for ARTime there; with the wavelet
/// details' sign flipped it scores 75.2, so the Haar convention (taken from Wavelets.jl's filters) matters.
struct ArTime {
    dmin: f64,
    dmax: f64,
    sstep: usize,
    trend_window: i64,
    mask: i64,
    /// Raw rows seen (1-based, as ARTime counts) and downsampled steps (1-based).
    i: usize,
    dsi: i64,
    art: Dvfa,
    last_anomaly_i: i64,
    last_anomaly_sim: f64,
    last_rho_update_i: i64,
    mask_after_cat: bool,
    no_new_cat_count: i64,
    probation: Vec<[f64; ART_DIM]>,
    anomaly_sims: Vec<f64>,
    sim_sum: f64,
    sim_count: usize,
    sim_window: VecDeque<f64>,
    shortfalls: VecDeque<f64>,
    ds_window: VecDeque<f64>,
    ds_average: f64,
    medbin: Vec<i64>,
    medlevel: usize,
    below_med: i64,
    above_med: i64,
    f_window: [f64; 8],
}

/// ARTime's settings (its defaults, as NAB runs it).
const ART_WINDOW: usize = 8;
const ART_WINDOWS_PER_PROBATION: usize = 13;
const ART_LEVELS: usize = 80;
const ART_CHOMP: f64 = 0.075;
const ART_INITIAL_RHO: f64 = 0.8;

impl ArTime {
    fn new(dmin: f64, dmax: f64, rows: usize) -> Self {
        let p = if rows < 5000 {
            (0.15 * rows as f64).floor() as usize
        } else {
            750
        };
        let p = p - p % 2;
        let sstep = (p / (ART_WINDOW * ART_WINDOWS_PER_PROBATION)).max(1);
        let trend_window = (p / sstep) as i64;
        Self {
            dmin,
            dmax,
            sstep,
            trend_window,
            mask: (ART_WINDOW as f64 * 1.5) as i64,
            i: 1,
            dsi: 1,
            art: Dvfa::new(0.0),
            last_anomaly_i: 0,
            last_anomaly_sim: 0.0,
            last_rho_update_i: 0,
            mask_after_cat: false,
            no_new_cat_count: 0,
            probation: Vec::new(),
            anomaly_sims: Vec::new(),
            sim_sum: 0.0,
            sim_count: 0,
            sim_window: std::iter::repeat_n(1.0, (trend_window / 2 + 1) as usize).collect(),
            shortfalls: std::iter::repeat_n(0.0, (trend_window + 1) as usize).collect(),
            ds_window: std::iter::repeat_n(0.0, sstep).collect(),
            ds_average: 0.0,
            medbin: vec![0; ART_LEVELS + 1],
            medlevel: 0,
            below_med: 0,
            above_med: 0,
            f_window: [0.0; 8],
        }
    }

    fn push(window: &mut VecDeque<f64>, v: f64) {
        window.pop_front();
        window.push_back(v);
    }

    fn sample(&mut self, value: f64) -> f64 {
        Self::push(&mut self.ds_window, value);
        let mut anomaly = 0.0;
        if self.i.is_multiple_of(self.sstep) {
            let n = self.ds_window.len() as f64;
            let mean = self.ds_window.iter().sum::<f64>() / n;
            let max = self
                .ds_window
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let min = self.ds_window.iter().copied().fold(f64::INFINITY, f64::min);
            if self.dsi == 1 {
                self.ds_average = mean;
            }
            self.ds_average = (self.ds_average + mean) / 2.0;
            let mut ds = max;
            if (max - self.ds_average).abs() < (min - self.ds_average).abs() {
                ds = min;
            }
            if (ds - mean).abs() < 0.1 * mean {
                ds = mean;
            }
            ds -= self.dmin;
            if self.dmax - self.dmin != 0.0 {
                ds /= self.dmax - self.dmin;
            }
            // Julia's round is half to even. NAB's range is the file's, so the level is in range; the clamp
            // only keeps a value outside it (which would stop ARTime with an index error) from panicking.
            let level =
                ((ds * ART_LEVELS as f64).round_ties_even().max(0.0) as usize).min(ART_LEVELS);
            let ds = level as f64 / ART_LEVELS as f64;
            self.levelize(level);
            let med = self.medlevel as f64 / ART_LEVELS as f64;
            let ds = if (ds - med).abs() < ART_CHOMP {
                med
            } else {
                ds
            };
            self.f_window.rotate_left(1);
            self.f_window[ART_WINDOW - 1] = ds;
            let mut features = [0.0; ART_DIM];
            if self.dsi >= ART_WINDOW as i64 {
                let mut dw = self.f_window;
                min_max_scale(&mut dw);
                let mut fw = haar_dwt8(&dw);
                min_max_scale(&mut fw);
                features[..8].copy_from_slice(&fw);
                features[8..].copy_from_slice(&self.f_window);
            }
            anomaly = self.features(features);
            self.dsi += 1;
        }
        self.i += 1;
        anomaly
    }

    /// ARTime's running median of the levels: moves one occupied level at a time toward the middle.
    fn levelize(&mut self, level: usize) {
        self.medbin[level] += 1;
        let medpos = self.dsi / 2;
        if self.dsi == 1 {
            self.medlevel = level;
        }
        if self.medlevel > level {
            self.below_med += 1;
        } else if self.medlevel < level {
            self.above_med += 1;
        }
        if medpos < self.above_med {
            self.below_med += self.medbin[self.medlevel];
            self.medlevel += 1;
            while self.medlevel < ART_LEVELS && self.medbin[self.medlevel] == 0 {
                self.medlevel += 1;
            }
            self.above_med -= self.medbin[self.medlevel];
        } else if medpos < self.below_med {
            self.above_med += self.medbin[self.medlevel];
            self.medlevel = self.medlevel.saturating_sub(1);
            while self.medlevel > 0 && self.medbin[self.medlevel] == 0 {
                self.medlevel -= 1;
            }
            self.below_med -= self.medbin[self.medlevel];
        }
    }

    fn features(&mut self, f: [f64; ART_DIM]) -> f64 {
        let i = self.dsi;
        if i > self.trend_window {
            return self.detect(&f, i);
        }
        self.probation.push(f);
        if i == self.trend_window {
            let rho = self.initial_rho();
            (self.art.rho_lb, self.art.rho_ub) = (rho, rho);
            let probation = std::mem::take(&mut self.probation);
            for (k, f) in probation.iter().enumerate() {
                self.detect(f, k as i64 + 1);
            }
        }
        0.0
    }

    /// The starting vigilance: the mean best match, over the second half, of the probation's full feature
    /// windows trained from least to most typical into a network at vigilance 0.8.
    fn initial_rho(&self) -> f64 {
        let cols = &self.probation[ART_WINDOW - 1..];
        let n = cols.len();
        let mut sum = vec![0.0; n];
        for a in 0..n {
            for b in 0..n {
                sum[a] += if a == b {
                    1.0
                } else {
                    art_similarity(&cols[a], &cols[b])
                };
            }
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| sum[a].total_cmp(&sum[b]));
        let mut art = Dvfa::new(ART_INITIAL_RHO);
        let sims: Vec<f64> = order
            .iter()
            .map(|&k| art.train(&cols[k], true).sim)
            .collect();
        let tail = &sims[((self.trend_window / 2) as usize).saturating_sub(1).min(n)..];
        // An empty tail (a file too short for a feature window) gives NaN, as Julia's mean of nothing.
        tail.iter().sum::<f64>() / tail.len() as f64
    }

    fn detect(&mut self, f: &[f64; ART_DIM], i: i64) -> f64 {
        let since_anomaly = i - self.last_anomaly_i;
        let update_after_anomaly = since_anomaly == self.mask;
        let update_for_trend = i - self.last_rho_update_i >= self.trend_window / 2;
        let mask_after_anomaly = since_anomaly <= self.mask;
        if i > self.trend_window + self.mask
            && self.mask_after_cat
            && self.no_new_cat_count >= self.mask
        {
            self.mask_after_cat = false;
        }
        // Inputs before the first full feature window go through the network without learning, which
        // keeps ARTime's per-step arrays aligned; they never count as new clusters' members.
        let learning = i >= ART_WINDOW as i64;
        let r = self.art.train(f, learning);
        let novel = !learning || r.novel;
        self.no_new_cat_count = if novel { 0 } else { self.no_new_cat_count + 1 };
        self.sim_sum += r.sim;
        self.sim_count += 1;
        Self::push(&mut self.sim_window, r.sim);
        Self::push(&mut self.shortfalls, self.art.rho_ub - r.sim);
        if since_anomaly < self.mask {
            if let Some(last) = self.anomaly_sims.last_mut() {
                if r.sim < *last {
                    *last = r.sim;
                }
            }
        }
        let masking = self.mask_after_cat || mask_after_anomaly;
        let scale = if mask_after_anomaly { 0.9 } else { 0.7 };
        let below_last = r.sim < self.last_anomaly_sim * scale;
        let mut anomaly = 0.0;
        if i > self.trend_window && novel && (!masking || below_last) {
            anomaly = self.confidence(r.sim, r.energy);
            self.anomaly_sims.push(r.sim);
            self.last_anomaly_sim = r.sim;
            self.last_anomaly_i = i;
        }
        self.mask_after_cat = novel || self.mask_after_cat;
        if i > self.trend_window && (update_after_anomaly || update_for_trend) {
            self.retune(i);
        }
        anomaly
    }

    fn retune(&mut self, i: i64) {
        let min_sim = self
            .sim_window
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let ub = (self.sim_sum / self.sim_count as f64).min(0.97);
        let prev = self.art.rho_lb;
        let mut lb = if prev <= min_sim {
            prev + (min_sim - prev) * 0.19
        } else {
            let mut decr = 0.0;
            if i > self.trend_window * 2 {
                let below: Vec<f64> = self
                    .shortfalls
                    .iter()
                    .filter(|&&d| d > 0.05)
                    .map(|&d| d.min(0.37))
                    .collect();
                if !below.is_empty() {
                    decr = below.iter().sum::<f64>() / below.len() as f64;
                }
            }
            let lb = prev - decr.max(0.01) / 2.0;
            if self.anomaly_sims.is_empty() {
                lb
            } else {
                let mean = self.anomaly_sims.iter().sum::<f64>() / self.anomaly_sims.len() as f64;
                mean.max(lb)
            }
        };
        lb = lb.min(ub);
        (self.art.rho_lb, self.art.rho_ub) = (lb, ub);
        self.last_rho_update_i = i;
        self.mask_after_cat = true;
    }

    fn confidence(&self, sim: f64, energy: f64) -> f64 {
        let sim = sim.min(0.999);
        let ub = ((1.0 - sim) - (1.0 - self.art.rho_ub)) / (1.0 - sim);
        let lb = ((1.0 - sim) - (1.0 - self.art.rho_lb)) / (1.0 - sim);
        let s = (ub * 0.35 + lb * 0.65 + (1.0 - energy) * 1.5).min(1.0);
        (s * 1e6).round_ties_even() / 1e6
    }
}

/// NAB's "ARTime" over one file, given the file's range and length as NAB's wrapper gives them.
fn artime(values: &[f64]) -> Vec<f64> {
    // `ARTIME_RANGE=probation`: only the probationary rows' range, as `CAD_RANGE` (what a streaming
    // detector could know; values past it are clamped to the end levels).
    let known = if std::env::var("ARTIME_RANGE").is_ok_and(|v| v == "probation") {
        &values[..nab::probationary_length(values.len())
            .max(1)
            .min(values.len())]
    } else {
        values
    };
    let min = known.iter().copied().fold(f64::INFINITY, f64::min);
    let max = known.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut det = ArTime::new(min, max, values.len());
    values.iter().map(|&v| det.sample(v)).collect()
}

struct Detector {
    name: &'static str,
    run: fn(&[f64]) -> Vec<f64>,
    /// Fixed thresholds to report besides NAB's optimised one, with why each is natural for the detector.
    defaults: &'static [(f64, &'static str)],
}

const DETECTORS: &[Detector] = &[
    Detector {
        name: "windowedGaussian",
        run: windowed_gaussian,
        defaults: &[
            (0.5, "0.5 (every score is >= 0.5)"),
            (0.998_650_1, "3 sigma (0.99865)"),
        ],
    },
    Detector {
        name: "relativeEntropy",
        run: relative_entropy,
        defaults: &[(0.5, "0.5 (scores are 0 or 1)")],
    },
    Detector {
        name: "contextOSE",
        run: cad_ose,
        defaults: &[(0.75, "0.75 (its own baseThreshold)"), (0.5, "0.5")],
    },
    Detector {
        name: "knncad",
        run: knn_cad,
        defaults: &[(0.9965, "0.9965 (its own alarm level)")],
    },
    Detector {
        name: "bayesChangePt",
        run: bayes_changept,
        defaults: &[(0.5, "0.5")],
    },
    Detector {
        name: "ARTime",
        run: artime,
        defaults: &[(0.5, "0.5"), (1e-6, "any detection (> 0)")],
    },
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    if dirs.is_empty() {
        return Err("usage: nab_baselines DIR... (NAB-layout corpora)".into());
    }
    let corpora: Vec<(String, Vec<NabSeries>)> = dirs
        .iter()
        .map(|d| {
            let p = Path::new(d);
            let name = p
                .file_name()
                .map_or(d.clone(), |n| n.to_string_lossy().into_owned());
            nab::load_corpus(p).map(|s| (name, s))
        })
        .collect::<Result<_, _>>()?;
    // The CAD OSE tie-break depends on Python 2.7's tuple hash; these values were printed by Python 2.7.18.
    for (tuple, want) in [
        (&[][..], 3_527_539_i64),
        (&[1, 2][..], 3_713_081_631_934_410_656),
        (&[65_536, 65_538][..], 3_784_025_191_587_926_781),
        (&[(1 << 31) + 5, 65_537][..], 4_135_042_769_108_775_065),
    ] {
        let got = py2_tuple_hash(tuple);
        if got != want {
            return Err(
                format!("py2_tuple_hash{tuple:?} = {got}, expected {want} (Python 2.7)").into(),
            );
        }
    }
    // Python 3.11's math.lgamma at these points.
    for (x, want) in [
        (0.1, 2.252_712_651_734_205_5),
        (0.6, 0.398_233_858_069_234_84),
        (1.1, -0.049_872_441_259_840_36),
        (3.0, std::f64::consts::LN_2), // Gamma(3) = 2
        (250.6, 1_131.836_167_488_015_2),
    ] {
        let got = ln_gamma(x);
        if (got - want).abs() > 1e-12 * want.abs().max(1.0) {
            return Err(
                format!("ln_gamma({x}) = {got}, expected {want} (Python math.lgamma)").into(),
            );
        }
    }
    let only = std::env::var("DETECTORS").ok();
    // Each file's scores, one a line, for comparison with a reference run of the original detector.
    let dump = std::env::var("DUMP_DIR").ok();
    for det in DETECTORS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == det.name))
        {
            continue;
        }
        let defaults: Vec<(f64, String)> = det
            .defaults
            .iter()
            .map(|&(t, why)| (t, why.to_string()))
            .collect();
        report(det.name, &defaults, &corpora, dump.as_deref(), |s| {
            Ok((det.run)(&s.values))
        })?;
    }
    // Detectors that cannot live in this example (another language, or a licence the workspace does not
    // take) write their scores in DUMP_DIR's layout; they are scored here with the same scorer.
    if let Ok(dir) = std::env::var("SCORES_DIR") {
        let name = std::env::var("SCORES_NAME").unwrap_or_else(|_| "external".to_string());
        let mut defaults = Vec::new();
        for t in std::env::var("SCORES_THRESHOLDS")
            .unwrap_or_else(|_| "0.5".to_string())
            .split(',')
        {
            let v: f64 = t
                .trim()
                .parse()
                .map_err(|e| format!("SCORES_THRESHOLDS: {t:?} is not a number: {e}"))?;
            defaults.push((v, format!("{v}")));
        }
        report(&name, &defaults, &corpora, None, |s| {
            nab::read_scores(Path::new(&dir), s).map_err(|e| format!("SCORES_DIR: {e}"))
        })?;
    }
    Ok(())
}

/// Scores one detector on every corpus and prints the optimised and fixed-threshold figures.
fn report(
    name: &str,
    defaults: &[(f64, String)],
    corpora: &[(String, Vec<NabSeries>)],
    dump: Option<&str>,
    run: impl Fn(&NabSeries) -> Result<Vec<f64>, String>,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("== {name}  [standard low_FP low_FN]");
    for (corpus, series) in corpora {
        let scores: Vec<Vec<f64>> = series.iter().map(&run).collect::<Result<_, _>>()?;
        if let Some(dir) = dump {
            for (s, sc) in series.iter().zip(&scores) {
                let path = nab::score_file(Path::new(dir), s);
                let text: String = sc.iter().map(|v| format!("{v:?}\n")).collect();
                std::fs::write(&path, text).map_err(|e| {
                    format!("nab_baselines: DUMP_DIR: writing {}: {e}", path.display())
                })?;
            }
        }
        let results: Vec<nab::Scores<'_>> = series
            .iter()
            .zip(&scores)
            .map(|(s, sc)| (s, sc.as_slice()))
            .collect();
        let line = |label: &str, o: &[ProfileScore]| {
            println!(
                "  {:<36} {:>6.1} {:>6.1} {:>6.1} @{:.4}",
                label, o[0].normalized, o[1].normalized, o[2].normalized, o[0].threshold
            )
        };
        println!("{corpus} ({} files)", series.len());
        line("all, optimised", &nab::score_corpus(&results, None));
        for (t, why) in defaults {
            line(
                &format!("all, at {why}"),
                &nab::score_corpus(&results, Some(*t)),
            );
        }
        let first = defaults.first().map_or(0.5, |d| d.0);
        let cats = nab::score_by_category(&results, first);
        if cats.len() > 1 {
            for (c, o, _) in &cats {
                if o[0].normalized.is_finite() {
                    line(&format!("{c}, optimised"), o);
                }
            }
        }
    }
    Ok(())
}
