//! Forecasting for chosen series: a point forecast with a prediction band over a horizon, and the time
//! until the series crosses a threshold ("filesystem 90% full in about 6 h"). Models are `augurs` AutoETS,
//! or MSTL with an AutoETS trend when the history has a strong period; they fit in batch, so a
//! [`Forecaster`] keeps a bounded history and fits when asked, which the caller does now and then.

use std::collections::VecDeque;

use augurs::ets::trend::AutoETSTrendModel;
use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Forecast, Predict};

use crate::series::detect_period;

/// Why no forecast could be made.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    /// Too little history to fit a model.
    #[error("need at least {need} points of history, have {have}")]
    NotEnoughData {
        /// Points required.
        need: usize,
        /// Points held.
        have: usize,
    },
    /// The model failed to fit or predict.
    #[error("forecast model failed: {0}")]
    Model(String),
}

/// Settings of a [`Forecaster`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastConfig {
    /// The most points of history kept (and fitted on).
    pub max_history: usize,
    /// The band's coverage, e.g. 0.95.
    pub level: f64,
    /// Look for a seasonal period in the history.
    pub seasonality: bool,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            max_history: 2048,
            level: 0.95,
            seasonality: true,
        }
    }
}

/// A forecast over `point.len()` future steps of `step_secs` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Timestamp (seconds) of the last observed point; step `k` (1-based) is at `origin + k·step_secs`.
    pub origin: f64,
    /// The sampling interval.
    pub step_secs: f64,
    /// Point forecasts.
    pub point: Vec<f64>,
    /// Lower edge of the prediction band.
    pub lower: Vec<f64>,
    /// Upper edge of the prediction band.
    pub upper: Vec<f64>,
    /// The seasonal period used, if any.
    pub period: Option<usize>,
}

/// When a forecast crosses a threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crossing {
    /// Seconds from the last observation until the point forecast crosses.
    pub eta_secs: f64,
    /// The earliest the band allows (the near edge of the band crosses).
    pub earliest_secs: f64,
    /// The latest the band allows, if the far edge crosses within the horizon.
    pub latest_secs: Option<f64>,
}

/// Keeps a bounded history of one series and forecasts it on demand.
#[derive(Debug, Clone)]
pub struct Forecaster {
    config: ForecastConfig,
    times: VecDeque<f64>,
    values: VecDeque<f64>,
}

impl Forecaster {
    /// An empty forecaster.
    pub fn new(config: ForecastConfig) -> Self {
        Self {
            config,
            times: VecDeque::new(),
            values: VecDeque::new(),
        }
    }

    /// Adds one observation (in time order). Non-finite values are skipped.
    pub fn push(&mut self, timestamp_secs: f64, value: f64) {
        if !value.is_finite() {
            return;
        }
        if self.values.len() >= self.config.max_history.max(8) {
            self.times.pop_front();
            self.values.pop_front();
        }
        self.times.push_back(timestamp_secs);
        self.values.push_back(value);
    }

    /// Points of history held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no history is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    // The sampling interval: the median gap of the history, robust to the odd missing point.
    fn step_secs(&self) -> f64 {
        let mut gaps: Vec<f64> = self
            .times
            .iter()
            .zip(self.times.iter().skip(1))
            .map(|(a, b)| b - a)
            .collect();
        if gaps.is_empty() {
            return 1.0;
        }
        let mid = gaps.len() / 2;
        *gaps.select_nth_unstable_by(mid, f64::total_cmp).1
    }

    /// Fits on the history and forecasts `horizon` steps ahead with a band.
    pub fn forecast(&self, horizon: usize) -> Result<Band, ForecastError> {
        let need = 16;
        if self.values.len() < need {
            return Err(ForecastError::NotEnoughData {
                need,
                have: self.values.len(),
            });
        }
        let y: Vec<f64> = self.values.iter().copied().collect();
        let period = if self.config.seasonality {
            detect_period(&y)
        } else {
            None
        };
        let f = fit_predict(&y, period, horizon, self.config.level)?;
        let (lower, upper) = match f.intervals {
            Some(i) => (i.lower, i.upper),
            None => (f.point.clone(), f.point.clone()),
        };
        Ok(Band {
            origin: self.times.back().copied().unwrap_or(0.0),
            step_secs: self.step_secs(),
            point: f.point,
            lower,
            upper,
            period,
        })
    }

    /// When the series is forecast to cross `threshold` within `horizon` steps, if it is. The direction is
    /// towards the threshold from the last observed value.
    pub fn time_to_cross(
        &self,
        threshold: f64,
        horizon: usize,
    ) -> Result<Option<Crossing>, ForecastError> {
        let band = self.forecast(horizon)?;
        Ok(crossing(
            &band,
            self.values.back().copied().unwrap_or(0.0),
            threshold,
        ))
    }
}

/// Where `band` crosses `threshold`, starting from `last` (pure so that it can be tested without a fit).
pub fn crossing(band: &Band, last: f64, threshold: f64) -> Option<Crossing> {
    let rising = threshold >= last;
    let crossed = |v: f64| {
        if rising {
            v >= threshold
        } else {
            v <= threshold
        }
    };
    let at = |k: usize| (k + 1) as f64 * band.step_secs;
    let first = |xs: &[f64]| xs.iter().position(|&v| crossed(v));
    let (near, far) = if rising {
        (&band.upper, &band.lower)
    } else {
        (&band.lower, &band.upper)
    };
    let eta = first(&band.point)?;
    let earliest = first(near).unwrap_or(eta);
    Some(Crossing {
        eta_secs: at(eta),
        earliest_secs: at(earliest.min(eta)),
        latest_secs: first(far).map(at),
    })
}

/// Fits MSTL+AutoETS (with a period) or AutoETS (without) and predicts `horizon` steps with a band.
pub fn fit_predict(
    y: &[f64],
    period: Option<usize>,
    horizon: usize,
    level: f64,
) -> Result<Forecast, ForecastError> {
    let err = |e: &dyn std::fmt::Display| ForecastError::Model(e.to_string());
    match period {
        Some(p) if y.len() >= 2 * p => {
            let trend = AutoETSTrendModel::from(AutoETS::non_seasonal());
            let fitted = MSTLModel::new(vec![p], trend).fit(y).map_err(|e| err(&e))?;
            fitted.predict(horizon, level).map_err(|e| err(&e))
        }
        _ => {
            let fitted = AutoETS::non_seasonal().fit(y).map_err(|e| err(&e))?;
            fitted.predict(horizon, level).map_err(|e| err(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_growth_crosses_when_expected() {
        // A disk filling by 0.1 points per minute from 50%: 90% is 400 minutes after the last point.
        let mut f = Forecaster::new(ForecastConfig::default());
        for i in 0..300 {
            let noise = if i % 2 == 0 { 0.02 } else { -0.02 };
            f.push(i as f64 * 60.0, 20.0 + 0.1 * i as f64 + noise);
        }
        let last = 20.0 + 0.1 * 299.0;
        let c = f.time_to_cross(90.0, 1000).unwrap().expect("a crossing");
        let expect = (90.0 - last) / 0.1 * 60.0;
        assert!(
            (c.eta_secs - expect).abs() < 0.1 * expect,
            "{c:?} vs {expect}"
        );
        assert!(c.earliest_secs <= c.eta_secs);
        assert!(f.time_to_cross(1e6, 100).unwrap().is_none());
    }

    #[test]
    fn seasonal_history_uses_its_period() {
        let mut f = Forecaster::new(ForecastConfig::default());
        for i in 0..1200 {
            let x = i as f64;
            f.push(
                x * 300.0,
                10.0 + 5.0 * (2.0 * std::f64::consts::PI * x / 48.0).sin() + 0.1 * (x * 7.7).sin(),
            );
        }
        let band = f.forecast(48).unwrap();
        assert_eq!(band.period, Some(48));
        // One period ahead, the forecast repeats the cycle.
        let truth =
            |k: usize| 10.0 + 5.0 * (2.0 * std::f64::consts::PI * (1199 + k) as f64 / 48.0).sin();
        for k in [1usize, 12, 24, 36] {
            assert!(
                (band.point[k - 1] - truth(k)).abs() < 0.5,
                "step {k}: {}",
                band.point[k - 1]
            );
            assert!(
                band.lower[k - 1] <= band.point[k - 1] && band.point[k - 1] <= band.upper[k - 1]
            );
        }
    }

    #[test]
    fn crossing_reads_the_band() {
        let band = Band {
            origin: 0.0,
            step_secs: 10.0,
            point: vec![1.0, 2.0, 3.0, 4.0],
            lower: vec![0.5, 1.0, 1.5, 2.0],
            upper: vec![2.0, 3.0, 4.0, 5.0],
            period: None,
        };
        let c = crossing(&band, 0.0, 3.0).unwrap();
        assert_eq!(c.eta_secs, 30.0);
        assert_eq!(c.earliest_secs, 20.0);
        assert_eq!(c.latest_secs, None);
    }
}
