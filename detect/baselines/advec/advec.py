"""Twitter's AnomalyDetectionVec (Seasonal Hybrid ESD) run the way NAB ran its `twitterADVec` detector,
writing one score per CSV row in the layout `nab_baselines` reads with SCORES_DIR.

NAB called the R package once per file on the whole value column (a batch detector: it sees the whole
file, future included) with alpha 0.05, period 150, max_anoms 0.002 and direction "both", and turned the
result into a binary score: 1.0 on every row the package returned, 0.0 elsewhere. NAB's file minimum,
maximum and probationary period are not used by the detector (NAB's R script passes none of them); the
scorer still ignores the probationary rows.

Two implementations of the same test, chosen with --impl:
  own          (default) this file's S-H-ESD, written from the paper (Hochenbaum, Vallis, Kejariwal 2017)
               and the R package's documented behaviour: statsmodels' STL (the same loess algorithm as R's
               stl Fortran) with the parameters R's stl(s.window="periodic", robust=TRUE) derives, R's
               periodic post-step (each cycle position's seasonal replaced by its mean), the residual
               value - seasonal - median(values), then generalised ESD with the median and R's mad
               (constant 1.4826) on it.
  pyculiarity  the PyPI port of the R package (pyculiarity 0.0.7 with rstl's port of R's stl), called as
               NAB called AnomalyDetectionVec. Kept as a check: rstl leaves out R's periodic post-step,
               which on some files moves the seasonal by half the series' range (README.md).
Usage: python advec.py [--impl own|pyculiarity] OUT_DIR CORPUS_DIR...
"""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import t as student_t

# NAB's settings for twitterADVec (its R script); the README of NAB's twitter detector says period and
# max_anoms were tuned by hand on NAB's 58 files for the best final score.
PERIOD = 150
MAX_ANOMS = 0.002
ALPHA = 0.05
DIRECTION = "both"
# --period and --max-anoms replace PERIOD and MAX_ANOMS for a sensitivity check (the same values for every
# file of every corpus, as NAB did).


def detect_pyculiarity(values):
    """Row indices (0-based) that pyculiarity's detect_vec flags with NAB's settings."""
    from pyculiarity import detect_vec

    with warnings.catch_warnings():
        # pandas 1.5 warns about the DataFrame.append and Int64Index that pyculiarity 0.0.7 uses.
        warnings.simplefilter("ignore", FutureWarning)
        res = detect_vec(
            pd.Series(values),
            max_anoms=MAX_ANOMS,
            alpha=ALPHA,
            period=PERIOD,
            direction=DIRECTION,
        )
    anoms = res["anoms"]
    if anoms is None or len(anoms) == 0:
        return []
    return [int(i) for i in anoms["timestamp"]]


def _next_odd(x):
    x = int(round(x))
    return x + 1 if x % 2 == 0 else x


def r_stl_periodic_seasonal(values, period):
    """The seasonal component of R's stl(ts(values, frequency=period), s.window="periodic", robust=TRUE)."""
    from statsmodels.tsa.seasonal import STL

    n = len(values)
    # R's stl: "periodic" means s.window = 10 n + 1 with s.degree 0; t.window, l.window and the jumps
    # follow its documented defaults; robust means 1 inner and 15 outer iterations.
    s_window = 10 * n + 1
    t_window = _next_odd(math.ceil(1.5 * period / (1 - 1.5 / s_window)))
    l_window = _next_odd(period)
    fit = STL(
        values,
        period=period,
        seasonal=s_window,
        trend=t_window,
        low_pass=l_window,
        seasonal_deg=0,
        trend_deg=1,
        low_pass_deg=1,
        robust=True,
        seasonal_jump=math.ceil(s_window / 10),
        trend_jump=math.ceil(t_window / 10),
        low_pass_jump=math.ceil(l_window / 10),
    ).fit(inner_iter=1, outer_iter=15)
    seasonal = np.asarray(fit.seasonal, dtype=float)
    # R replaces a periodic seasonal by the mean of each cycle position (tapply(seasonal, cycle, mean)).
    # R's mean sums in order in long double, divides, then adds the mean deviation from that; copied here
    # because on two-valued series (NAB's art_increase_spike_density) whether the MAD of the residual is
    # exactly 0 (no anomalies) or 1e-16 (the top max_anoms) hangs on the last bit of these means.
    cycle = np.arange(n) % period
    means = np.empty(period)
    for pos in range(period):
        xs = seasonal[pos::period].astype(np.longdouble)
        m = np.cumsum(xs)[-1] / len(xs)
        m += np.cumsum(xs - m)[-1] / len(xs)
        means[pos] = float(m)
    return means[cycle]


def detect_own(values):
    """Row indices (0-based) flagged by S-H-ESD with NAB's settings, written from the paper and R docs."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2 * PERIOD:
        raise ValueError(f"advec: {n} rows, S-H-ESD needs at least two periods ({2 * PERIOD})")
    max_anoms = max(MAX_ANOMS, 1.0 / n)
    resid = x - r_stl_periodic_seasonal(x, PERIOD) - np.median(x)
    max_outliers = math.trunc(n * max_anoms)
    idx = np.arange(n)
    picked = []
    num_anoms = 0
    for i in range(1, max_outliers + 1):
        med = np.median(resid)
        sigma = 1.4826 * np.median(np.abs(resid - med))
        if sigma == 0:
            # A constant remainder: R stops testing here.
            break
        ares = np.abs(resid - med) / sigma
        j = int(np.argmax(ares))  # first of equal maxima, as R's which(...)[1]
        r_stat = ares[j]
        picked.append(int(idx[j]))
        resid = np.delete(resid, j)
        idx = np.delete(idx, j)
        # Two-sided critical value (direction "both").
        p = 1 - ALPHA / (2 * (n - i + 1))
        t = student_t.ppf(p, n - i - 1)
        lam = t * (n - i) / math.sqrt((n - i - 1 + t**2) * (n - i + 1))
        if r_stat > lam:
            num_anoms = i
    return picked[:num_anoms]


def main():
    global PERIOD, MAX_ANOMS
    ap = argparse.ArgumentParser(
        description="Twitter ADVec (S-H-ESD) with NAB's settings; one score per CSV row in OUT_DIR."
    )
    ap.add_argument("--impl", choices=["own", "pyculiarity"], default="own")
    ap.add_argument("out_dir")
    ap.add_argument("corpora", nargs="+")
    ap.add_argument("--period", type=int, default=PERIOD, help="NAB: 150")
    ap.add_argument("--max-anoms", type=float, default=MAX_ANOMS, help="NAB: 0.002")
    args = ap.parse_args()
    PERIOD, MAX_ANOMS = args.period, args.max_anoms
    detect = detect_pyculiarity if args.impl == "pyculiarity" else detect_own
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for corpus in args.corpora:
        files = sorted(Path(corpus, "data").glob("*/*.csv"))
        if not files:
            sys.exit(f"advec: no data/<category>/<file>.csv under {corpus}")
        for f in files:
            start = time.time()
            values = pd.read_csv(f)["value"].astype(float).to_numpy()
            if np.isnan(values).any():
                sys.exit(f"advec: {f} has missing values; S-H-ESD (and NAB's run) expects none")
            flagged = detect(values)
            scores = np.zeros(len(values))
            scores[flagged] = 1.0
            name = f"{f.parent.name}__{f.name}.txt"
            (out / name).write_text("".join("1.0\n" if s else "0.0\n" for s in scores))
            print(
                f"{f.parent.name}/{f.name}: {len(values)} rows, {len(flagged)} flagged, "
                f"{time.time() - start:.1f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
