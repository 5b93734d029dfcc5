//! An inline SVG of one series' recent values inside their expected band, and its score, with its
//! anomaly episodes shaded and each episode's peak value marked. The values come from the
//! `vigil.anomaly.observed` gauge that goes out with the band.

use super::page::esc;
use crate::observed::{Anomaly, BandPoint};
use std::fmt::Write;

const W: f64 = 560.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BAND_H: f64 = 150.0;
const GAP: f64 = 26.0;
const SCORE_H: f64 = 50.0;
const AXIS_H: f64 = 22.0;
const LEGEND_H: f64 = 22.0;

/// `HH:MM:SS` UTC of a time in nanoseconds since the epoch.
pub fn clock(t: u64) -> String {
    let s = t / 1_000_000_000 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.01..100_000.0).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Draws `points` (time-ordered) and the `episodes` of the same series. Empty when no point has a band.
pub fn band(series: &str, points: &[BandPoint], episodes: &[&Anomaly]) -> String {
    let banded: Vec<&BandPoint> = points
        .iter()
        .filter(|p| p.lower.is_finite() && p.upper.is_finite())
        .collect();
    let (Some(first), Some(last)) = (banded.first(), banded.last()) else {
        return String::new();
    };
    let (t0, mut t1) = (first.t, last.t);
    if t1 <= t0 {
        t1 = t0 + 1_000_000_000;
    }
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in &banded {
        lo = lo.min(p.lower);
        hi = hi.max(p.upper);
        if p.value.is_finite() {
            lo = lo.min(p.value);
            hi = hi.max(p.value);
        }
    }
    for a in episodes {
        if a.observed.is_finite() {
            lo = lo.min(a.observed);
            hi = hi.max(a.observed);
        }
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.01).max(1e-9);
    let (lo, hi) = (lo - pad, hi + pad);
    let plot_w = W - LEFT - RIGHT;
    let x = |t: u64| LEFT + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * plot_w;
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * BAND_H;
    let score_top = TOP + BAND_H + GAP;
    let ys = |s: f64| score_top + (1.0 - s.clamp(0.0, 1.0)) * SCORE_H;
    let h = score_top + SCORE_H + AXIS_H + LEGEND_H;

    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" role="img"><title>{}</title>"#,
        esc(series)
    );
    let _ = write!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{BAND_H}" fill="#fbfbfd" stroke="#ccc"/>"##
    );
    let _ = write!(
        o,
        r##"<rect x="{LEFT}" y="{score_top}" width="{plot_w}" height="{SCORE_H}" fill="#fbfbfd" stroke="#ccc"/>"##
    );
    // Episodes first, so that the band and the marks draw over them.
    for a in episodes {
        let from = x(a.started.clamp(t0, t1));
        let to = x(a.ended.unwrap_or(t1).clamp(t0, t1));
        let w = (to - from).max(2.0);
        let _ = write!(
            o,
            r##"<rect x="{from:.1}" y="{TOP}" width="{w:.1}" height="{BAND_H}" fill="#e5484d" fill-opacity="0.13"/>"##
        );
    }
    let mut upper = String::new();
    let mut lower = String::new();
    for p in &banded {
        let _ = write!(upper, "{:.1},{:.1} ", x(p.t), y(p.upper));
    }
    for p in banded.iter().rev() {
        let _ = write!(lower, "{:.1},{:.1} ", x(p.t), y(p.lower));
    }
    let _ = write!(
        o,
        r##"<polygon points="{upper}{lower}" fill="#3b82f6" fill-opacity="0.28" stroke="#3b82f6" stroke-width="1"/>"##
    );
    // The series itself, over its band.
    let values: String = banded
        .iter()
        .filter(|p| p.value.is_finite())
        .map(|p| format!("{:.1},{:.1} ", x(p.t), y(p.value)))
        .collect();
    if !values.is_empty() {
        let _ = write!(
            o,
            r##"<polyline class="observed" points="{values}" fill="none" stroke="#111827" stroke-width="1.5"/>"##
        );
    }
    // Score strip, with the default threshold.
    let _ = write!(
        o,
        r##"<line x1="{LEFT}" x2="{}" y1="{y5:.1}" y2="{y5:.1}" stroke="#e5484d" stroke-dasharray="4 3"/>"##,
        W - RIGHT,
        y5 = ys(0.5)
    );
    let score: String = points
        .iter()
        .filter(|p| p.score.is_finite())
        .map(|p| format!("{:.1},{:.1} ", x(p.t), ys(p.score)))
        .collect();
    if !score.is_empty() {
        let _ = write!(
            o,
            r##"<polyline points="{score}" fill="none" stroke="#6b21a8" stroke-width="1.5"/>"##
        );
    }
    for a in episodes {
        if a.observed.is_finite() {
            let cx = x(a.started.clamp(t0, t1));
            let cy = y(a.observed);
            let _ = write!(
                o,
                r##"<circle cx="{cx:.1}" cy="{cy:.1}" r="4" fill="#e5484d"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#b91c1c">peak {}</text>"##,
                (cx + 6.0).min(W - RIGHT - 70.0),
                (cy - 6.0).max(TOP + 10.0),
                esc(&num(a.observed))
            );
        }
    }
    // Axes: three values on the band, 0 / 0.5 / 1 on the score, four times below.
    for v in [lo + pad, (lo + hi) / 2.0, hi - pad] {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{}</text>"##,
            LEFT - 4.0,
            y(v) + 4.0,
            esc(&num(v))
        );
    }
    for s in [0.0, 0.5, 1.0] {
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{s}</text>"##,
            LEFT - 4.0,
            ys(s) + 4.0
        );
    }
    let _ = write!(
        o,
        r##"<text x="6" y="{:.1}" font-size="11" fill="#444">score</text>"##,
        score_top + SCORE_H / 2.0 + 4.0
    );
    let axis_y = score_top + SCORE_H + 15.0;
    for i in 0..4u64 {
        let t = if i == 3 { t1 } else { t0 + (t1 - t0) / 3 * i };
        let anchor = match i {
            0 => "start",
            3 => "end",
            _ => "middle",
        };
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{axis_y:.1}" font-size="11" text-anchor="{anchor}" fill="#444">{}</text>"##,
            x(t),
            clock(t)
        );
    }
    let ly = h - 8.0;
    let _ = write!(
        o,
        r##"<g font-size="11" fill="#333"><rect x="{LEFT}" y="{:.1}" width="14" height="9" fill="#3b82f6" fill-opacity="0.4"/><text x="{:.1}" y="{ly:.1}">expected band</text><rect x="{:.1}" y="{:.1}" width="14" height="9" fill="#e5484d" fill-opacity="0.25"/><text x="{:.1}" y="{ly:.1}">anomaly</text><circle cx="{:.1}" cy="{:.1}" r="4" fill="#e5484d"/><text x="{:.1}" y="{ly:.1}">peak value</text><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#6b21a8" stroke-width="1.5"/><text x="{:.1}" y="{ly:.1}">score (0.5 dashed)</text><line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#111827" stroke-width="1.5"/><text x="{:.1}" y="{ly:.1}">observed</text></g>"##,
        ly - 8.0,
        LEFT + 18.0,
        LEFT + 110.0,
        ly - 8.0,
        LEFT + 128.0,
        LEFT + 190.0,
        ly - 4.0,
        LEFT + 198.0,
        LEFT + 275.0,
        LEFT + 291.0,
        ly - 4.0,
        ly - 4.0,
        LEFT + 295.0,
        LEFT + 405.0,
        LEFT + 419.0,
        ly - 4.0,
        ly - 4.0,
        LEFT + 423.0
    );
    o.push_str("</svg>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: u64, lower: f64, upper: f64, score: f64) -> BandPoint {
        BandPoint {
            t: t * 1_000_000_000,
            lower,
            upper,
            score,
            value: (lower + upper) / 2.0,
        }
    }

    #[test]
    fn draws_band_episode_and_axes() {
        let pts = [
            p(10, 1.0, 2.0, 0.1),
            p(20, 1.0, 2.2, 0.9),
            p(30, 1.1, 2.0, 0.2),
        ];
        let a = Anomaly {
            series: "x".into(),
            observed: 9.0,
            started: 20_000_000_000,
            ..Default::default()
        };
        let svg = band("x<y>", &pts, &[&a]);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<polygon"), "{svg}");
        assert!(svg.contains("peak 9"), "{svg}");
        // The series' own values: one vertex per point, and a legend entry.
        let line = svg
            .split(r#"<polyline class="observed" points=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert_eq!(line.split_whitespace().count(), 3, "{svg}");
        assert!(svg.contains(">observed</text>"), "{svg}");
        assert!(
            svg.contains("00:00:10") && svg.contains("00:00:30"),
            "{svg}"
        );
        assert!(svg.contains("x&lt;y&gt;"), "{svg}");
        assert!(band("x", &[p(1, f64::NAN, 1.0, 0.0)], &[]).is_empty());
    }
}
