//! `vigil eval nab`: runs the default series detector over a NAB-layout directory and prints NAB's scores.
//! The detection and the scoring live in `vigil_detect::nab`; this file only parses flags and writes the
//! outputs (JSON, SVG plots, NAB results files).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;
use vigil_detect::nab::{self, FileRun, ProfileScore};
use vigil_detect::series::{DetectorConfig, DEFAULT_THRESHOLD};

#[derive(Debug, clap::Args)]
pub struct NabArgs {
    /// The benchmark's directory: `data/<category>/*.csv` and `labels/combined_windows.json`.
    #[arg(long)]
    pub data: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write one SVG per file (series, expected band, NAB windows, detections) into this directory.
    #[arg(long, value_name = "OUTDIR")]
    pub plot: Option<PathBuf>,
    /// Write NAB results files (`<category>/vigil_<file>.csv`) into this directory.
    #[arg(long, value_name = "OUTDIR")]
    pub results: Option<PathBuf>,
}

pub fn run(args: NabArgs) -> anyhow::Result<()> {
    let corpus = nab::load_corpus(&args.data)
        .with_context(|| format!("loading the NAB corpus in {}", args.data.display()))?;
    anyhow::ensure!(
        !corpus.is_empty(),
        "{} has no labelled series (expected labels/combined_windows.json and data/<category>/*.csv)",
        args.data.display()
    );
    let eval = nab::evaluate(corpus, &DetectorConfig::default());
    if let Some(dir) = &args.results {
        for run in &eval.runs {
            write_results(dir, run)?;
        }
    }
    if let Some(dir) = &args.plot {
        for run in &eval.runs {
            plot(dir, run)?;
        }
    }
    let scores: Vec<Vec<f64>> = eval.runs.iter().map(FileRun::scores).collect();
    let results: Vec<nab::Scores<'_>> = eval
        .runs
        .iter()
        .zip(&scores)
        .map(|(r, s)| (&r.series, s.as_slice()))
        .collect();
    let categories = nab::score_by_category(&results, DEFAULT_THRESHOLD);
    if args.json {
        let section = |scores: &[ProfileScore]| {
            let mut m = serde_json::Map::new();
            for s in scores {
                m.insert(s.profile.name.into(), serde_json::json!(s.normalized));
            }
            // NAB optimises each profile separately; the standard profile's threshold is the headline.
            m.insert("threshold".into(), serde_json::json!(scores[0].threshold));
            serde_json::Value::Object(m)
        };
        let mut by_category = serde_json::Map::new();
        for (name, o, d) in &categories {
            by_category.insert(
                name.clone(),
                serde_json::json!({"optimized": section(o), "default_threshold": section(d)}),
            );
        }
        let out = serde_json::json!({
            "files": eval.runs.len(),
            "categories": by_category,
            "optimized": section(&eval.optimized),
            "default_threshold": section(&eval.default_threshold),
            "points_per_sec": eval.points_per_sec,
        });
        println!("{out}");
    } else {
        println!(
            "NAB on {} files ({:.0} points/s)",
            eval.runs.len(),
            eval.points_per_sec
        );
        println!(
            "{:<22} {:>10} {:>10} {:>12}",
            "profile", "optimized", "threshold", "default 0.5"
        );
        for (o, d) in eval.optimized.iter().zip(&eval.default_threshold) {
            println!(
                "{:<22} {:>10.1} {:>10.4} {:>12.1}",
                o.profile.name, o.normalized, o.threshold, d.normalized
            );
        }
        // Each category is normalised on its own files and gets its own optimised threshold; a
        // category without windows has no score (its perfect and null detectors coincide).
        println!(
            "\n{:<30} {:>9} {:>10} {:>12} {:>12}",
            "standard profile by category", "optimized", "threshold", "default 0.5", "out-of-order"
        );
        for (name, o, d) in &categories {
            let disorder: u32 = eval
                .runs
                .iter()
                .filter(|r| r.series.category_and_file().0 == name)
                .map(|r| r.out_of_order)
                .sum();
            if o[0].normalized.is_finite() {
                println!(
                    "{:<30} {:>9.1} {:>10.4} {:>12.1} {:>12}",
                    name, o[0].normalized, o[0].threshold, d[0].normalized, disorder
                );
            } else {
                // Nothing to normalise against: what matters there is how often the default fires.
                let part: Vec<nab::Scores<'_>> = results
                    .iter()
                    .filter(|(s, _)| s.category_and_file().0 == name)
                    .copied()
                    .collect();
                let fp = nab::score_at(&part, &nab::PROFILES[0], DEFAULT_THRESHOLD).fp;
                println!(
                    "{:<30} {:>9} {:>10} {:>12} {:>12}   no windows: {fp} false positives at the default",
                    name, "-", "-", "-", disorder
                );
            }
        }
    }
    Ok(())
}

fn output_path(dir: &Path, run: &FileRun, ext: &str) -> anyhow::Result<PathBuf> {
    let (category, file) = run.series.category_and_file();
    let stem = file.strip_suffix(".csv").unwrap_or(file);
    let folder = dir.join(category);
    fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    Ok(folder.join(format!("vigil_{stem}.{ext}")))
}

/// NAB's results format, so that NAB's own scorer can check ours.
fn write_results(dir: &Path, run: &FileRun) -> anyhow::Result<()> {
    let path = output_path(dir, run, "csv")?;
    let mut w =
        csv::Writer::from_path(&path).with_context(|| format!("creating {}", path.display()))?;
    w.write_record(["timestamp", "value", "anomaly_score", "label"])?;
    for (i, o) in run.observations.iter().enumerate() {
        w.write_record([
            nab::format_timestamp(run.series.timestamps[i]),
            run.series.values[i].to_string(),
            o.score.to_string(),
            u8::from(run.series.label(i)).to_string(),
        ])?;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn plot(dir: &Path, run: &FileRun) -> anyhow::Result<()> {
    let path = output_path(dir, run, "svg")?;
    draw(&path, run).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn draw(path: &Path, run: &FileRun) -> Result<(), Box<dyn std::error::Error>> {
    let values = &run.series.values;
    let stamps = &run.series.timestamps;
    let n = values.len();
    let (mut lo, mut hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let pad = ((hi - lo) * 0.1).max(1e-9);
    lo -= pad;
    hi += pad;
    // Rows, not seconds, run along the x axis (a file may repeat or step back in time), labelled with
    // the time of the row.
    let time_of = |row: &usize| {
        stamps
            .get(*row)
            .and_then(|&t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let root = SVGBackend::new(path, (1400, 460)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&run.series.name, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0..n.max(1), lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("time (UTC)")
        .y_desc("value")
        .x_labels(8)
        .x_label_formatter(&time_of)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let window_color = RGBColor(255, 200, 120).mix(0.45);
    for (k, &(s, e)) in run.series.windows.iter().enumerate() {
        let drawn = chart.draw_series(std::iter::once(Rectangle::new(
            [(s, lo), (e, hi)],
            window_color.filled(),
        )))?;
        if k == 0 {
            drawn
                .label("labelled anomaly window")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], window_color.filled())
                });
        }
    }
    // The expected band, clipped to the plot so that a wide band does not flatten the series; rows in
    // warm-up have no band and are left out.
    let clip = |v: f64| v.clamp(lo, hi);
    let band_color = RGBColor(120, 190, 120).mix(0.35);
    let scored: Vec<(usize, f64, f64)> = run
        .observations
        .iter()
        .enumerate()
        .filter(|(_, o)| o.part != vigil_detect::series::Part::Warmup)
        .filter(|(_, o)| o.lower.is_finite() && o.upper.is_finite())
        .map(|(i, o)| (i, clip(o.lower), clip(o.upper)))
        .collect();
    if !scored.is_empty() {
        let outline: Vec<(usize, f64)> = scored
            .iter()
            .map(|&(i, _, u)| (i, u))
            .chain(scored.iter().rev().map(|&(i, l, _)| (i, l)))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(outline, band_color.filled())))?
            .label("expected band")
            .legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 16, y + 5)], band_color.filled())
            });
    }
    let line = RGBColor(40, 80, 180);
    chart
        .draw_series(LineSeries::new(
            values.iter().enumerate().map(|(i, &v)| (i, v)),
            line.stroke_width(1),
        ))?
        .label("value")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], line.stroke_width(2)));
    // A detection is a row whose score crosses the threshold after one that did not: NAB credits the
    // first one in a window, and a dot per row of a long episode hides the data.
    let onsets: Vec<usize> = run
        .observations
        .iter()
        .enumerate()
        .filter(|&(i, o)| {
            o.score >= DEFAULT_THRESHOLD
                && (i == 0 || run.observations[i - 1].score < DEFAULT_THRESHOLD)
        })
        .map(|(i, _)| i)
        .collect();
    chart
        .draw_series(
            onsets
                .iter()
                .map(|&i| Circle::new((i, values[i]), 5, RED.filled())),
        )?
        .label(format!("detection (score ≥ {DEFAULT_THRESHOLD})"))
        .legend(|(x, y)| Circle::new((x + 8, y), 5, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}
