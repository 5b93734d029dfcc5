//! Synthetic-series tests of the detector and the episode layer: each anomaly kind must open an episode at
//! the right place, and the same series without the anomaly must open none.

use super::*;

/// Deterministic standard-normal-ish noise (sum of uniforms from an xorshift generator).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        let mut s = 0.0;
        for _ in 0..12 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s += (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        }
        s - 6.0
    }
}

/// Runs the default detector and an episode tracker that announces at the first anomalous point (these
/// tests are about where the detector fires; confirmation has its own test); returns the rows where
/// episodes started and ended.
fn episodes(values: &[f64]) -> (Vec<usize>, Vec<usize>) {
    episodes_with(values, unconfirmed())
}

fn unconfirmed() -> EpisodeConfig {
    EpisodeConfig {
        confirm_points: 1,
        ..EpisodeConfig::default()
    }
}

fn episodes_with(values: &[f64], config: EpisodeConfig) -> (Vec<usize>, Vec<usize>) {
    let mut d = SeriesDetector::default();
    let mut e = EpisodeTracker::new(config);
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for (i, &v) in values.iter().enumerate() {
        let t = i as f64 * 60.0;
        let o = d.observe(t, v);
        assert!((0.0..=1.0).contains(&o.score), "score {} at {i}", o.score);
        assert!(o.lower <= o.expected && o.expected <= o.upper);
        match e.update(t, v, &o) {
            Some(EpisodeEvent::Started(_)) => starts.push(i),
            Some(EpisodeEvent::Ended(ep)) => ends.push((ep.end / 60.0) as usize),
            None => {}
        }
    }
    (starts, ends)
}

fn noisy(n: usize, seed: u64, f: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..n).map(|i| f(i) + noise.next()).collect()
}

fn assert_one_episode_near(values: &[f64], at: usize, within: usize) {
    let (starts, _) = episodes(values);
    assert!(
        starts.len() == 1 && (at..=at + within).contains(&starts[0]),
        "expected one episode starting in {at}..={}, got starts at {starts:?}",
        at + within
    );
}

fn assert_clean(values: &[f64]) {
    let (starts, _) = episodes(values);
    assert!(
        starts.is_empty(),
        "clean series opened episodes at {starts:?}"
    );
}

#[test]
fn spike() {
    let base = |_| 50.0;
    assert_clean(&noisy(1500, 1, base));
    let mut v = noisy(1500, 1, base);
    v[900] += 60.0;
    assert_one_episode_near(&v, 900, 0);
}

#[test]
fn level_shift() {
    assert_clean(&noisy(1500, 2, |_| 10.0));
    let v = noisy(1500, 2, |i| if i >= 900 { 20.0 } else { 10.0 });
    assert_one_episode_near(&v, 900, 10);
}

// A change of spread alone (noise 8 times wider from row 900) is found with the default settings: each
// cue is judged against its own recent maximum, so points far wider than any seen before stand out. On
// clean noise a lone point now and then beats the recent maximum; confirmation keeps it quiet.
#[test]
fn variance_change() {
    let sensitive = EpisodeConfig::default();
    let (starts, _) = episodes_with(&noisy(1500, 3, |_| 0.0), sensitive);
    assert!(
        starts.is_empty(),
        "clean series opened episodes at {starts:?}"
    );
    let mut noise = Noise(3);
    let v: Vec<f64> = (0..1500)
        .map(|i| noise.next() * if i >= 900 { 8.0 } else { 1.0 })
        .collect();
    let (starts, _) = episodes_with(&v, sensitive);
    assert!(
        !starts.is_empty() && (900..=960).contains(&starts[0]),
        "variance change at 900 not found first: {starts:?}"
    );
}

#[test]
fn seasonal_missed_peak() {
    // A 48-point cycle with a sharp peak at phase 20; the peak of cycle 30 (row 1460) is missing. The
    // missing peak lies well within the series' overall range: only a seasonal baseline can see it.
    let cycle = |i: usize| {
        let phase = i % 48;
        let peak = if (19..=21).contains(&phase) {
            60.0
        } else {
            0.0
        };
        100.0 + 20.0 * (2.0 * std::f64::consts::PI * phase as f64 / 48.0).sin() + peak
    };
    let clean = noisy(2000, 4, cycle);
    assert_clean(&clean);
    let missed = noisy(2000, 4, |i| {
        if (1459..=1461).contains(&i) {
            cycle(i) - 60.0
        } else {
            cycle(i)
        }
    });
    assert_one_episode_near(&missed, 1459, 2);
    let mut d = SeriesDetector::default();
    for (i, &v) in clean.iter().enumerate() {
        d.observe(i as f64, v);
    }
    assert_eq!(d.period(), Some(48));
}

// A series whose deviations persist (AR(1) noise, lag-1 correlation 0.9, so a spread of 2.3 around the
// level) takes a step of 6 for five points at row 900: no larger than its usual swings, but six times the
// part of a point that the previous one does not predict. The autoregressive cue scores the first point
// of the step at the threshold on 36 of these 40 series; without it, 18 do.
#[test]
fn onset_on_a_persistent_series() {
    static WITHOUT: Tuning = Tuning {
        ar_weight: 0.0,
        ..DEFAULT_TUNING
    };
    let (mut with_cue, mut without) = (0, 0);
    for seed in 1..=40u64 {
        let mut noise = Noise(seed);
        let mut x = 0.0;
        let mut a = SeriesDetector::default();
        let mut b = SeriesDetector::with_tuning(&DetectorConfig::default(), &WITHOUT);
        for i in 0..=900 {
            x = 0.9 * x + noise.next();
            let v = 50.0 + x + if i == 900 { 6.0 } else { 0.0 };
            let (oa, ob) = (a.observe(i as f64, v), b.observe(i as f64, v));
            if i == 900 {
                with_cue += usize::from(oa.score >= DEFAULT_THRESHOLD);
                without += usize::from(ob.score >= DEFAULT_THRESHOLD);
            }
        }
    }
    assert!(
        with_cue >= 32 && without <= 24,
        "onset found on {with_cue} of 40 series with the autoregressive cue, {without} without"
    );
}

// A one-point spike on a smooth series (two slow sines), half the size of the series' own swings from
// its level, is found at once or one point late with the spike cue, and hardly ever without it; the cue
// adds no false alarms on the swings (cross-validation step 47).
#[test]
fn sharp_spike_on_a_smooth_series() {
    static WITHOUT: Tuning = Tuning {
        spike_weight: 0.0,
        ..DEFAULT_TUNING
    };
    let (mut with_cue, mut without) = (0, 0);
    let (mut false_with, mut false_without) = (0, 0);
    for seed in 1..=40u64 {
        let mut noise = Noise(seed);
        let mut a = SeriesDetector::default();
        let mut b = SeriesDetector::with_tuning(&DetectorConfig::default(), &WITHOUT);
        let (mut hit_a, mut hit_b) = (false, false);
        for i in 0..=1500 {
            let t = i as f64;
            let swing = 3.0 * (t / 9.0).sin() + 2.0 * (t / 23.7).sin();
            let v = 50.0 + swing + 0.05 * noise.next() + if i == 1200 { 1.5 } else { 0.0 };
            let (oa, ob) = (a.observe(t, v), b.observe(t, v));
            if i == 1200 || i == 1201 {
                hit_a |= oa.score >= DEFAULT_THRESHOLD;
                hit_b |= ob.score >= DEFAULT_THRESHOLD;
            } else if i > 600 {
                false_with += usize::from(oa.score >= DEFAULT_THRESHOLD);
                false_without += usize::from(ob.score >= DEFAULT_THRESHOLD);
            }
        }
        with_cue += usize::from(hit_a);
        without += usize::from(hit_b);
    }
    assert!(
        with_cue >= 36 && without <= 8 && false_with <= false_without + 4,
        "spike found on {with_cue} of 40 series with the spike cue, {without} without; points over the \
         threshold elsewhere {false_with} with, {false_without} without"
    );
}

#[test]
fn trend() {
    let ramp = |i: usize| 0.05 * i as f64;
    assert_clean(&noisy(1500, 5, ramp));
    // The ramp breaks: the series drops back by 40 at row 1000 and keeps climbing from there.
    let v = noisy(1500, 5, |i| ramp(i) - if i >= 1000 { 40.0 } else { 0.0 });
    assert_one_episode_near(&v, 1000, 10);
}

#[test]
fn constant() {
    assert_clean(&[5.0; 800]);
    let v: Vec<f64> = (0..800).map(|i| if i >= 500 { 6.0 } else { 5.0 }).collect();
    assert_one_episode_near(&v, 500, 0);
}

#[test]
fn episode_reports_start_end_peak_and_duration() {
    let mut v = noisy(800, 6, |_| 0.0);
    for x in &mut v[600..603] {
        *x += 60.0;
    }
    let mut d = SeriesDetector::default();
    let mut e = EpisodeTracker::new(unconfirmed());
    let mut done = None;
    for (i, &x) in v.iter().enumerate() {
        let o = d.observe(i as f64, x);
        if let Some(EpisodeEvent::Ended(ep)) = e.update(i as f64, x, &o) {
            done = Some(ep);
        }
    }
    let ep = done.expect("the episode ended");
    assert_eq!(ep.start, 600.0);
    assert!((600.0..=602.0).contains(&ep.end), "{ep:?}");
    assert!(ep.peak_score >= DEFAULT_THRESHOLD);
    assert_eq!(ep.duration_secs(), ep.end - ep.start);
    assert_ne!(ep.part(), Part::None);
}

// With the default confirmation, a one-point blip on a flat series (the first error of a quiet error
// ratio) is dropped, while a lasting level shift is announced, with its start at the first point.
#[test]
fn confirmation_drops_blips_and_keeps_shifts() {
    let mut blip = vec![0.0; 300];
    blip[200] = 0.05;
    let (starts, _) = episodes_with(&blip, EpisodeConfig::default());
    assert!(
        starts.is_empty(),
        "a one-point blip was announced at {starts:?}"
    );
    let (starts, _) = episodes(&blip);
    assert_eq!(
        starts,
        vec![200],
        "without confirmation the blip is an episode"
    );

    let shift: Vec<f64> = (0..300).map(|i| if i >= 200 { 0.5 } else { 0.0 }).collect();
    let mut d = SeriesDetector::default();
    let mut e = EpisodeTracker::new(EpisodeConfig::default());
    let mut started = None;
    for (i, &v) in shift.iter().enumerate() {
        let o = d.observe(i as f64, v);
        if let Some(EpisodeEvent::Started(ep)) = e.update(i as f64, v, &o) {
            started = Some((i, ep.start));
            break;
        }
    }
    let (at, start) = started.expect("the shift is announced");
    assert_eq!(start, 200.0);
    assert!((201..=212).contains(&at), "announced at {at}");
}

#[test]
fn state_stays_small() {
    let mut d = SeriesDetector::new(&DetectorConfig {
        seasonality: false,
        ..DetectorConfig::default()
    });
    for (i, v) in noisy(3000, 7, |_| 1.0).into_iter().enumerate() {
        d.observe(i as f64, v);
    }
    assert!(d.memory_bytes() <= 2048, "{} bytes", d.memory_bytes());
    let mut d = SeriesDetector::default();
    for (i, v) in noisy(3000, 7, |_| 1.0).into_iter().enumerate() {
        d.observe(i as f64, v);
    }
    // While it searches (the retry over 4-point means runs to point 3,072) the buffer stays within its
    // 768 bytes, and it is released once the search gives up.
    let mut d = SeriesDetector::default();
    let v = noisy(3200, 7, |_| 1.0);
    for (i, &x) in v.iter().enumerate() {
        d.observe(i as f64, x);
        assert!(
            d.memory_bytes() <= std::mem::size_of::<SeriesDetector>() + 768,
            "{} bytes at {i}",
            d.memory_bytes()
        );
    }
    assert_eq!(d.period(), None);
    assert_eq!(d.memory_bytes(), std::mem::size_of::<SeriesDetector>());
}

// A daily cycle at one-minute data (1,440 points) is longer than half the 768-point search buffer: the
// first search cannot see it; the retry over 4-point means finds it, somewhat short (1,368 here): the
// periodogram's longest bin is 254 samples and a candidate is refined only up to 1.35 times its bin (343
// samples, 1,372 points), so a day at one-minute data is found 5% short (BENCHMARKS.md, step 144).
#[test]
fn daily_period_at_one_minute_found_by_the_retry() {
    static WITHOUT: Tuning = Tuning {
        season_retry: 0.0,
        ..DEFAULT_TUNING
    };
    let v = noisy(3200, 9, |i| {
        100.0 + 20.0 * (2.0 * std::f64::consts::PI * i as f64 / 1440.0).sin()
    });
    let config = DetectorConfig::default();
    let mut with_retry = SeriesDetector::new(&config);
    let mut without = SeriesDetector::with_tuning(&config, &WITHOUT);
    for (i, &x) in v.iter().enumerate() {
        with_retry.observe(i as f64 * 60.0, x);
        without.observe(i as f64 * 60.0, x);
    }
    assert_eq!(without.period(), None);
    let p = with_retry.period();
    assert!(
        p.is_some_and(|p| (1296..=1584).contains(&p) && p % 4 == 0),
        "{p:?}"
    );
}

// A daily cycle of 48 points around 100.
fn cycle48(i: usize) -> f64 {
    100.0 + 20.0 * (2.0 * std::f64::consts::PI * (i % 48) as f64 / 48.0).sin()
}

// Feeds `(timestamp, value)` rows to `d` and returns the rows where an unconfirmed episode starts.
fn unconfirmed_starts(d: &mut SeriesDetector, rows: &[(f64, f64)]) -> Vec<usize> {
    let mut e = EpisodeTracker::new(unconfirmed());
    let mut starts = Vec::new();
    for (i, &(t, x)) in rows.iter().enumerate() {
        let o = d.observe(t, x);
        if let Some(EpisodeEvent::Started(_)) = e.update(t, x, &o) {
            starts.push(i);
        }
    }
    starts
}

// A repeated timestamp or a step back in time (a daylight-saving change, a clock reset) neither breaks
// nor resets the series: it is counted, scored as the next sample, and the seasonal phase, the baseline
// and the period found so far carry on.
#[test]
fn repeated_and_backward_timestamps_do_not_reset() {
    let v = noisy(2400, 8, cycle48);
    // At row 1500 the clock goes back an hour (12 rows repeat the timestamps of 1488..1500) and runs on
    // from there; row 2000 repeats the timestamp of row 1999.
    let rows: Vec<(f64, f64)> = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let t = match i {
                0..1500 => i as f64 * 300.0,
                2000 => (1999 - 12) as f64 * 300.0,
                _ => (i - 12) as f64 * 300.0,
            };
            (t, x)
        })
        .collect();
    let mut d = SeriesDetector::default();
    let starts = unconfirmed_starts(&mut d, &rows);
    assert_eq!(d.out_of_order(), 13);
    assert_eq!(d.points(), 2400);
    assert_eq!(d.period(), Some(48));
    assert!(starts.is_empty(), "episodes at {starts:?}");
}

// Timestamps jittered by up to a fifth of the interval either way (gaps of 0.6 to 1.4 intervals) and
// rows sent twice (same timestamp and value, every 97th row) are the same series in time: the seasonal
// period is found and no episode opens. Counting intervals from the smallest gap read most ordinary gaps
// as two steps, and the period search saw a slipping season.
#[test]
fn jittered_timestamps_keep_the_seasonal_phase() {
    let v = noisy(3000, 9, cycle48);
    let mut jitter = Noise(10);
    let rows: Vec<(f64, f64)> = v
        .iter()
        .enumerate()
        .flat_map(|(i, &x)| {
            let u = (jitter.next() / 2.0).clamp(-1.0, 1.0);
            let t = (i as f64 + 0.2 * u) * 300.0;
            let copies = if i % 97 == 50 { 2 } else { 1 };
            std::iter::repeat_n((t, x), copies)
        })
        .collect();
    let mut d = SeriesDetector::default();
    let starts = unconfirmed_starts(&mut d, &rows);
    assert_eq!(d.out_of_order(), 31);
    assert_eq!(d.period(), Some(48));
    assert!(starts.is_empty(), "episodes at rows {starts:?}");
}

// The latest point sent again (same timestamp and value: a retried write, a duplicated row) is no time:
// the seasonal phase stays. A new value at a repeated timestamp, or an earlier timestamp, is the next
// sample (a stuck clock, a daylight-saving change) and moves the phase on one step. Moving it on for a
// re-sent point too slipped the season by one step per duplicate (1 % of rows sent twice cost asd 19
// points).
#[test]
fn a_resent_point_keeps_the_seasonal_phase() {
    let v = noisy(2000, 11, cycle48);
    let mut d = SeriesDetector::default();
    for (i, &x) in v.iter().enumerate() {
        d.observe(i as f64 * 60.0, x);
    }
    assert_eq!(d.period(), Some(48));
    let phase = |d: &SeriesDetector| match d.season {
        seasonal::Season::Found { phase, .. } => phase,
        _ => u32::MAX,
    };
    let (t, x) = (1999.0 * 60.0, v[1999]);
    let p = phase(&d);
    d.observe(t, x);
    assert_eq!(phase(&d), p, "a re-sent point moved the phase");
    d.observe(t, x + 1.0);
    assert_eq!(
        phase(&d),
        (p + 1) % 48,
        "a new value at the same timestamp is the next sample"
    );
    d.observe(t - 60.0, x);
    assert_eq!(
        phase(&d),
        (p + 2) % 48,
        "an earlier timestamp is the next sample"
    );
    assert_eq!(d.out_of_order(), 3);
}

// A persistent series (AR(1), lag-1 correlation 0.9) with a half-hour outage every 200 points: the first
// point after each gap is as far from the last one as the series' whole spread allows, and judged as one
// step on from it (the last deviation predicting 0.9 of it, against the one-step spread) it looked like
// news. Judged as 31 steps on, it is ordinary.
#[test]
fn the_first_point_after_a_gap_is_not_news() {
    let mut noise = Noise(12);
    let mut x = 0.0;
    let mut d = SeriesDetector::default();
    let (mut t, mut after_gap, mut loud) = (0.0, 0, Vec::new());
    for i in 0..6000 {
        x = 0.9 * x + noise.next();
        let gap = i % 200 == 199;
        t += if gap { 31.0 * 60.0 } else { 60.0 };
        if gap {
            // The series runs on while nobody looks.
            for _ in 0..30 {
                x = 0.9 * x + noise.next();
            }
        }
        let o = d.observe(t, 100.0 + x);
        if gap && i > 1000 {
            after_gap += 1;
            if o.score >= DEFAULT_THRESHOLD {
                loud.push(i);
            }
        }
    }
    assert_eq!(after_gap, 25);
    assert!(loud.is_empty(), "points after a gap at {loud:?}");
}

// A level step that stays changed keeps its episode open (issue #20: it used to end a few points after
// the start, once the detector had re-anchored); the episode ends once the series is back in its band.
#[test]
fn shifted_episode_lasts_until_the_series_is_back() {
    let v = noisy(2000, 9, |i| {
        if (1000..1300).contains(&i) {
            30.0
        } else {
            10.0
        }
    });
    let mut d = SeriesDetector::default();
    let mut e = EpisodeTracker::new(EpisodeConfig::default());
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for (i, &x) in v.iter().enumerate() {
        let t = i as f64;
        let o = d.observe(t, x);
        match e.update(t, x, &o) {
            Some(EpisodeEvent::Started(ep)) => starts.push(ep.start as usize),
            Some(EpisodeEvent::Ended(ep)) => ends.push(ep.end as usize),
            None => {}
        }
    }
    assert_eq!(starts.first().copied(), Some(1000), "starts {starts:?}");
    assert!(
        ends.first()
            .is_some_and(|&end| (1299..=1330).contains(&end)),
        "the first episode ended at {ends:?}; the series was shifted over 1000..1300"
    );
}

// The band respects the series' domain (issue #19): a series that has never been negative (an error
// ratio, a queue length) gets no negative lower edge, however spiky it is; one that has been negative
// keeps its symmetric band.
#[test]
fn band_stays_in_the_domain() {
    let mut noise = Noise(10);
    let ratio: Vec<f64> = (0..1500)
        .map(|i| {
            let base = (0.01 + 0.005 * noise.next()).max(0.0);
            if i % 97 == 0 {
                base + 0.3
            } else {
                base
            }
        })
        .collect();
    let mut d = SeriesDetector::default();
    for (i, &v) in ratio.iter().enumerate() {
        let o = d.observe(i as f64, v);
        assert!(o.lower >= 0.0, "lower edge {} at row {i}", o.lower);
        assert!(o.lower <= o.expected && o.expected <= o.upper);
    }
    let mut d = SeriesDetector::default();
    let mut lowest = f64::INFINITY;
    for (i, &v) in ratio.iter().enumerate() {
        lowest = lowest.min(d.observe(i as f64, v - 0.02).lower);
    }
    assert!(
        lowest < -0.02,
        "a series that went negative keeps its band: {lowest}"
    );
}

// A slow drift (white noise around 100, then, from row 2,400, after the coarse scale's young period, a
// ramp of 0.01 scale units per point, 6 units over 600 points) is absorbed by the per-point level, which lags a ramp by only slope / rate (0.2 units); the
// coarse scale's means of the last 32 points, against a baseline that lags by about 3 units, find it on
// a point that closes a hop (every 8 points), within 150 points (a rise of 1.5 units). The per-point cues alone find it later or never
// (or earlier, by chance, on the noise: 6 of the 20 series).
#[test]
fn slow_drift_found_on_the_coarse_scale() {
    static WITHOUT: Tuning = Tuning {
        coarse_k: 0.0,
        ..DEFAULT_TUNING
    };
    let config = DetectorConfig {
        seasonality: false,
        ..DetectorConfig::default()
    };
    let hop = (DEFAULT_TUNING.coarse_k / DEFAULT_TUNING.coarse_hops) as usize;
    let (mut early_with, mut early_without) = (0, 0);
    let mut delays = Vec::new();
    for seed in 1..=20u64 {
        let mut noise = Noise(seed);
        let mut a = SeriesDetector::with_tuning(&config, &DEFAULT_TUNING);
        let mut b = SeriesDetector::with_tuning(&config, &WITHOUT);
        let (mut first_a, mut first_b) = (None, None);
        for i in 0..3000usize {
            let drift = if i >= 2400 {
                0.01 * (i - 2400) as f64
            } else {
                0.0
            };
            let v = 100.0 + drift + noise.next();
            let (oa, ob) = (a.observe(i as f64, v), b.observe(i as f64, v));
            if i < 2400 {
                continue;
            }
            let (hit_a, hit_b) = (oa.score >= DEFAULT_THRESHOLD, ob.score >= DEFAULT_THRESHOLD);
            if hit_a && !hit_b && first_a.is_none() && first_b.is_none() {
                // Scored points start after the warm-up (row 30); a hop closes on every 8th of them.
                assert_eq!(
                    (i + 1 - config.warmup as usize) % hop,
                    0,
                    "seed {seed}: row {i} inside a hop"
                );
            }
            if hit_a && first_a.is_none() {
                first_a = Some(i - 2400);
            }
            if hit_b && first_b.is_none() {
                first_b = Some(i - 2400);
            }
        }
        delays.push((first_a, first_b));
        early_with += usize::from(first_a.is_some_and(|d| d <= 150));
        early_without += usize::from(first_b.is_some_and(|d| d <= 150));
    }
    assert!(
        early_with >= 18 && early_without <= 8,
        "drift found within 150 points on {early_with} of 20 series with the coarse scale, \
         {early_without} without: {delays:?}"
    );
}

// On white noise the block means wander only as far as the noise explains, so the coarse scale must not
// report the records of that wander: with the default settings white noise scores over the threshold
// about as often as without the coarse scale at all (within 5%), and without `coarse_noise_floor` more
// (17.1 against 12.1 points per 10,000 in nab_cv's measure, 20 series of 20,000 points).
#[test]
fn white_noise_does_not_wake_the_coarse_scale() {
    static WITHOUT_COARSE: Tuning = Tuning {
        coarse_k: 0.0,
        ..DEFAULT_TUNING
    };
    static WITHOUT_NOISE_FLOOR: Tuning = Tuning {
        coarse_noise_floor: 0.0,
        ..DEFAULT_TUNING
    };
    let hits = |tuning: &'static Tuning| -> usize {
        let mut n = 0;
        for seed in 1..=10u64 {
            let mut d = SeriesDetector::with_tuning(&DetectorConfig::default(), tuning);
            for (i, v) in noisy(10_000, seed, |_| 100.0).into_iter().enumerate() {
                let o = d.observe(i as f64 * 300.0, v);
                n += usize::from(i >= 1000 && o.score >= DEFAULT_THRESHOLD);
            }
        }
        n
    };
    let (shipped, without_coarse, without_floor) = (
        hits(&DEFAULT_TUNING),
        hits(&WITHOUT_COARSE),
        hits(&WITHOUT_NOISE_FLOOR),
    );
    assert!(
        shipped <= without_coarse + without_coarse / 20 && without_floor > shipped + shipped / 5,
        "points over the threshold on white noise: {shipped} shipped, {without_coarse} without the \
         coarse scale, {without_floor} without its noise floor"
    );
}

// A count with a burst of the same size every day (tweets, requests): after a quiet stretch the burst
// beats the decaying memories, but most days of the last week matched it, so on a count it is ordinary
// traffic (BENCHMARKS.md, steps 166 to 175). The same series off the integers is not a count and keeps
// reporting it; a burst several times the daily size is reported on both.
#[test]
fn a_counts_daily_burst_is_ordinary_traffic() {
    let day = 288;
    // Level 10, spread about sqrt(10): dispersed as arrivals are.
    let counts = daily_bursts(day, 10.0, 10f64.sqrt(), 11);
    let count = daily_peaks(&counts, &DEFAULT_TUNING, |v| v);
    let fraction = daily_peaks(&counts, &DEFAULT_TUNING, |v| v + 0.5);
    // Until four days have closed nothing differs.
    assert_eq!(count[..4], fraction[..4]);
    assert!(
        fraction[1..13].iter().all(|&s| s >= DEFAULT_THRESHOLD),
        "{fraction:?}"
    );
    // From then on the count reports its daily burst on far fewer days.
    assert!(
        fired(&count) + 3 <= fired(&fraction),
        "{count:?} against {fraction:?}"
    );
    // A burst five times the daily size is news on both.
    assert!(count[13] >= DEFAULT_THRESHOLD && fraction[13] >= DEFAULT_THRESHOLD);
    // The count recorded in hundreds is the same count: its unit is the step between its values.
    let hundreds = daily_peaks(&counts, &DEFAULT_TUNING, |v| v * 100.0);
    assert_eq!(
        fired(&hundreds),
        fired(&count),
        "{hundreds:?} against {count:?}"
    );
}

// A metric that happens to be integer-valued is not therefore a count: a rounded percentage or a
// quantised KPI resting at 50 with a spread of one unit is far less dispersed than arrivals at that
// level, and the corpora that record such metrics label every repeated burst (BENCHMARKS.md, steps 226
// to 231: rounded aiops18-kpi lost 17.8 points at the default to the damping). It keeps reporting its
// daily burst as the same series off the integers does, and so does the metric recorded in hundreds,
// whose spread is large in its own units but one step of its grid. Without the dispersion gate (the
// rule before step 229) both are damped.
#[test]
fn an_integer_metric_that_is_not_dispersed_like_a_count_is_not_damped() {
    static UNGATED: Tuning = Tuning {
        burst_fano: 0.0,
        ..DEFAULT_TUNING
    };
    let day = 288;
    let kpi = daily_bursts(day, 50.0, 1.0, 17);
    let fraction = fired(&daily_peaks(&kpi, &DEFAULT_TUNING, |v| v + 0.5));
    for scale in [1.0, 100.0] {
        let gated = fired(&daily_peaks(&kpi, &DEFAULT_TUNING, |v| v * scale));
        let ungated = fired(&daily_peaks(&kpi, &UNGATED, |v| v * scale));
        assert!(
            gated + 1 >= fraction && ungated + 3 <= gated,
            "x{scale}: {gated} days fired with the gate, {ungated} without, {fraction} off the integers"
        );
    }
}

// Fourteen days of 5-minute integers around `level` with Gaussian spread `spread`, a burst of 30 over
// three points at noon each day and of 150 on the last.
fn daily_bursts(day: usize, level: f64, spread: f64, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..14 * day)
        .map(|i| {
            let burst = match (i / day, i % day) {
                (13, 144..=146) => 150.0,
                (_, 144..=146) => 30.0,
                _ => 0.0,
            };
            (level + spread * noise.next()).round().max(0.0) + burst
        })
        .collect()
}

// Each day's highest score, the values mapped by `f`, without seasonality.
fn daily_peaks(values: &[f64], tuning: &'static Tuning, f: impl Fn(f64) -> f64) -> Vec<f64> {
    let config = DetectorConfig {
        seasonality: false,
        ..DetectorConfig::default()
    };
    let day = 288;
    let mut d = SeriesDetector::with_tuning(&config, tuning);
    let mut per_day = vec![0.0f64; values.len().div_ceil(day)];
    for (i, &v) in values.iter().enumerate() {
        let o = d.observe(i as f64 * 300.0, f(v));
        per_day[i / day] = per_day[i / day].max(o.score);
    }
    per_day
}

// Days 4 to 12 (after the ring holds four days, before the large burst) whose peak reached the default.
fn fired(peaks: &[f64]) -> usize {
    peaks[4..13]
        .iter()
        .filter(|&&s| s >= DEFAULT_THRESHOLD)
        .count()
}

// An hourly job on 5-minute data: a 12-point cycle whose one-point run (70 over a base of 30) comes a
// point late on every 25th cycle from the 100th and is skipped on the 230th. Against the current
// phase's offset alone each slip or skip is an outlier as large as the job; near the profile's one-phase
// peak the point is judged against the span of the offsets around it, and none is news. A spike of the
// same size where the job never runs still is.
#[test]
fn a_periodic_jobs_slips_are_not_news() {
    static WITHOUT: Tuning = Tuning {
        season_slip: 0.0,
        ..DEFAULT_TUNING
    };
    let job = |i: usize| -> f64 {
        let cycle = i / 12;
        let at = if cycle >= 100 && cycle.is_multiple_of(25) {
            10
        } else {
            9
        };
        if i % 12 == at && cycle != 230 {
            70.0
        } else {
            0.0
        }
    };
    let mut noise = Noise(12);
    let mut v: Vec<f64> = (0..3000).map(|i| 30.0 + job(i) + noise.next()).collect();
    // Phase 7 of cycle 233.
    v[2803] += 70.0;
    let detections = |t: &'static Tuning| -> Vec<usize> {
        let mut d = SeriesDetector::with_tuning(&DetectorConfig::default(), t);
        let found: Vec<usize> = v
            .iter()
            .enumerate()
            .filter(|&(i, &x)| d.observe(i as f64 * 300.0, x).score >= DEFAULT_THRESHOLD)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(d.period(), Some(12));
        found
    };
    let slip = |i: &usize| {
        let cycle = i / 12;
        cycle == 230 || (cycle >= 100 && cycle.is_multiple_of(25))
    };
    let with = detections(&DEFAULT_TUNING);
    let without = detections(&WITHOUT);
    assert!(
        without.iter().filter(|i| slip(i)).count() >= 4,
        "without the rule the slips should be outliers: {without:?}"
    );
    assert!(
        !with.iter().any(slip),
        "a slip or skip of the job was reported: {with:?}"
    );
    assert!(
        with.contains(&2803),
        "the spike off the job's phase: {with:?}"
    );
}

// A resource metric recorded in steps of 0.01 (smd's `machine-2-2`: 98 % zeros, blips of one to four
// steps; here one step either way from a resting value): between blips its scale shrinks towards zero,
// and without the resolution floor a few one-step blips in a row read as a lasting deviation of 12 scale
// units a point. With it they are rounding; a jump of 30 steps is still news. A two-level series (0 or
// 20, an on/off signal) keeps the scores it had without the floor: its one step is its signal.
#[test]
fn one_step_blips_on_a_quantised_series_are_rounding() {
    static WITHOUT: Tuning = Tuning {
        step_floor: 0.0,
        ..DEFAULT_TUNING
    };
    let config = DetectorConfig {
        seasonality: false,
        ..DetectorConfig::default()
    };
    let n = 6000;
    let mut noise = Noise(5);
    let mut last = 0.0;
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let x = noise.next();
            // About one point in 60 blips one step up or down, for a point or a few.
            let v = if (5800..5820).contains(&i) {
                0.3
            } else if last != 0.0 && x > 1.0 {
                last
            } else if x > 2.1 {
                if i % 2 == 0 {
                    0.01
                } else {
                    -0.01
                }
            } else {
                0.0
            };
            last = v;
            0.01 + v
        })
        .collect();
    // Scores, and the rows reported by the lasting-deviation or level-shift cues.
    let run = |tuning: &'static Tuning, values: &[f64]| -> (Vec<f64>, usize) {
        let mut d = SeriesDetector::with_tuning(&config, tuning);
        let mut shifts = 0;
        let scores = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let o = d.observe(i as f64 * 60.0, v);
                if (1500..5800).contains(&i) && o.score >= DEFAULT_THRESHOLD {
                    shifts += usize::from(o.part == Part::LevelShift);
                }
                o.score
            })
            .collect();
        (scores, shifts)
    };
    let over = |s: &[f64], r: std::ops::Range<usize>| {
        s[r].iter().filter(|&&x| x >= DEFAULT_THRESHOLD).count()
    };
    let (with, with_shifts) = run(&DEFAULT_TUNING, &values);
    let (without, without_shifts) = run(&WITHOUT, &values);
    // Runs of one-step blips no longer read as lasting deviations; a lone blip after a long quiet
    // spell can still reach the outlier cue's floor (3 scale units, 0.75 steps at `step_floor` 0.25).
    assert_eq!(
        with_shifts, 0,
        "blips read as lasting deviations with the floor"
    );
    assert!(
        without_shifts >= 4,
        "the test needs blips that do so without it: {without_shifts}"
    );
    let (fired, unfloored) = (over(&with, 1500..5800), over(&without, 1500..5800));
    assert!(
        2 * fired <= unfloored,
        "{fired} reports with the floor, {unfloored} without"
    );
    // The jump is reported at once with the floor (without it, here, a blip's hold hides it).
    assert!(with[5800] >= DEFAULT_THRESHOLD, "{:?}", &with[5800..5820]);
    let on_off: Vec<f64> = (0..n)
        .map(|i| {
            if i % 97 == 0 || (5800..5830).contains(&i) && i % 3 == 0 {
                20.0
            } else {
                0.0
            }
        })
        .collect();
    assert_eq!(run(&DEFAULT_TUNING, &on_off).0, run(&WITHOUT, &on_off).0);
}
