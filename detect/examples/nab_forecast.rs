//! Forecast accuracy of `Forecaster` on NAB series at a 1-hour horizon, against seasonal-naive.
//! Usage: `cargo run --release -p vigil-detect --example nab_forecast -- <NAB_DIR>`.
//!
//! Rolling origins: about 30 per series, spread over the part after the first 15%. At each origin the
//! forecaster sees up to its `max_history` points before it and forecasts the next hour. MASE divides the
//! mean absolute error over the hour by the in-sample mean absolute error of the one-step seasonal-naive
//! forecast (season = one day in points) on the same history, as Hyndman & Koehler define it. The
//! seasonal-naive forecast itself (each point = the value one day earlier) is scored the same way.

use vigil_detect::forecast::{ForecastConfig, Forecaster};
use vigil_detect::nab;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: nab_forecast <NAB_DIR>")?;
    let corpus = nab::load_corpus(std::path::Path::new(&dir))?;
    let config = ForecastConfig::default();
    let (mut sum_ours, mut sum_naive, mut files) = (0.0, 0.0, 0);
    for s in &corpus {
        let y = &s.values;
        let mut gaps: Vec<i64> = s.timestamps.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        let step = gaps[gaps.len() / 2].max(1) as f64;
        let h = ((3600.0 / step).round() as usize).max(1);
        let m = ((86_400.0 / step).round() as usize).max(1);
        let first = (y.len() * 15 / 100).max(m + 16);
        let stride = ((y.len() - first) / 30).max(h);
        let (mut ours, mut naive, mut n) = (0.0, 0.0, 0);
        let mut origin = first;
        while origin + h < y.len() {
            let lo = origin.saturating_sub(config.max_history);
            let hist = &y[lo..origin];
            let scale = hist
                .windows(m + 1)
                .map(|w| (w[m] - w[0]).abs())
                .sum::<f64>()
                / (hist.len() - m) as f64;
            if scale > 0.0 {
                let mut f = Forecaster::new(config);
                for (&t, &v) in s.timestamps[lo..origin].iter().zip(hist) {
                    f.push(t as f64, v);
                }
                let band = f.forecast(h)?;
                let mae = (0..h)
                    .map(|k| (band.point[k] - y[origin + k]).abs())
                    .sum::<f64>()
                    / h as f64;
                let mae_naive = (0..h)
                    .map(|k| (y[origin + k - m] - y[origin + k]).abs())
                    .sum::<f64>()
                    / h as f64;
                ours += mae / scale;
                naive += mae_naive / scale;
                n += 1;
            }
            origin += stride;
        }
        if n > 0 {
            let (o, nv) = (ours / n as f64, naive / n as f64);
            println!(
                "{:55} h={h:>2} origins={n:>2} MASE forecaster {o:.3} seasonal-naive {nv:.3}",
                s.name
            );
            sum_ours += o;
            sum_naive += nv;
            files += 1;
        }
    }
    println!(
        "mean over {files} series: MASE forecaster {:.3}, seasonal-naive {:.3}",
        sum_ours / files as f64,
        sum_naive / files as f64
    );
    Ok(())
}
