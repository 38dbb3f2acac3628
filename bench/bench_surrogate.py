"""Benchmark of the surrogate fits: one batched L-BFGS over all subsets against scikit-learn, one fit per subset.

``pipeline.surrogate.fit_logistic_batched`` (all m subsets in one batched L-BFGS, what ``run_surrogate`` and the
surrogate stage run) against scikit-learn's ``LogisticRegression``, one fit per subset, at sklearn's default tol and
at a tight tol, on the benchmark run's data (bench_stages.py's run directory, produced here if missing): its feature
files (``features.feature_set``) and the subsets of its subsets.npz. Agreement of coefficients, of f_hat on
held-out rows and of the objective reached; ``run_surrogate``'s f_hat against the run's subsets.npz.

Usage (from the repository root):

    .venv/bin/python bench/bench_surrogate.py --out results/bench_surrogate.md      # full run
    .venv/bin/python bench/bench_surrogate.py --quick --out /tmp/bench_surrogate.md # smoke test

The markdown written to --out is also printed to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
from common import (
    LoadMonitor,
    add_arguments,
    bench_config,
    bench_run,
    fmt_load,
    fmt_s,
    header,
    log,
    machine_info,
    run_dir_for,
    table,
    timed,
    write_report,
)

from policygradex.analysis.context import load_context
from policygradex.common.artifacts import load_npz
from policygradex.common.threads import thread_limit
from policygradex.pipeline.config import SurrogateConfig
from policygradex.pipeline.features import FeatureSet, feature_set
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.surrogate import fit_logistic_batched, run_surrogate

BUDGET_S = {"quick": (8.0, 8.0), "full": (45.0, 60.0)}
"""Seconds of sklearn fits per setting (default tol, tight tol) before the rest of the m fits are extrapolated."""


def f_hat_np(Xh: np.ndarray, yh: np.ndarray, wh: np.ndarray, subset: list[int], v: np.ndarray) -> float:
    """-(weighted mean loss) on held-out rows of the subset's tasks: -(1/|D_S^held|) sum w log(1 + exp(-y g.v))."""
    total, count = 0.0, 0
    for i in subset:
        margin = -yh[i] * (Xh[i] @ v)
        total += float(np.sum(wh[i] * np.logaddexp(0.0, margin)))
        count += Xh[i].shape[0]
    return -total / count


def objective_np(X: np.ndarray, y: np.ndarray, w: np.ndarray, subset: list[int], v: np.ndarray, l2: float) -> float:
    """Our objective (1/|D_S|) sum w log(1 + exp(-y g.v)) + l2/2 ||v||^2 on the fitting rows."""
    return -f_hat_np(X, y, w, subset, v) + 0.5 * l2 * float(v @ v)


def sklearn_fits(Xn: np.ndarray, yn: np.ndarray, wn: np.ndarray, subsets: list[list[int]], l2: float,
                 kw: dict[str, Any], budget: float) -> tuple[list[np.ndarray], list[float], list[int], int]:
    """One LogisticRegression per subset, in order, until ``budget`` seconds are spent: (coefficients, seconds,
    iterations, how many hit max_iter) of the fits done."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    coefs, times, n_iter, capped = [], [], [], 0
    t_start = time.perf_counter()
    for s in subsets:
        Xs, ys, ws = (np.concatenate([a[i] for i in s]) for a in (Xn, yn, wn))
        clf = LogisticRegression(fit_intercept=False, C=1.0 / (Xs.shape[0] * l2), **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(Xs, ys, sample_weight=ws)
            times.append(time.perf_counter() - t0)
        capped += any(issubclass(c.category, ConvergenceWarning) for c in caught)
        assert list(clf.classes_) == [-1.0, 1.0]
        coefs.append(clf.coef_.reshape(-1).astype(np.float64))
        n_iter.append(int(np.max(clf.n_iter_)))
        if time.perf_counter() - t_start > budget:
            break
    return coefs, times, n_iter, capped


def surrogate_vs_sklearn(fs: FeatureSet, subsets: list[list[int]], sc: SurrogateConfig, budgets: tuple[float, float],
                         stored_f_held: np.ndarray | None) -> dict[str, Any]:
    X, y, w = fs.part(held_out=False)
    Xn, yn, wn = (t.double().numpy() for t in (X, y, w))
    Xhn, yhn, whn = (t.double().numpy() for t in fs.part(held_out=True))
    m = len(subsets)
    out: dict[str, Any] = {"m": m, "d": X.shape[2], "n_fit": X.shape[1], "n_held": Xhn.shape[1],
                           "alpha": len(subsets[0]), "sk": []}

    log(f"surrogate vs sklearn: ours, batched L-BFGS over m={m}")
    t_run, res = timed(lambda: run_surrogate(fs, subsets, sc))  # the stage's call (fits + f_hat), also a warm-up
    out["run_surrogate_s"] = t_run[0]
    t_ours: list[float] = []
    ours_load: list[float] = []

    def ours_again() -> None:  # ours is re-timed between the sklearn settings: load from others hits both alike
        mon = LoadMonitor()
        t_ours.extend(timed(lambda: fit_logistic_batched(X, y, w, subsets, sc))[0])
        ours_load.append(mon.other_cores())

    ours_again()
    V, f_ours = res.v.astype(np.float64), res.f_hat_held_out
    out["f_hat_np_diff"] = float(np.abs(np.array([f_hat_np(Xhn, yhn, whn, s, V[j]) for j, s in enumerate(subsets)])
                                        - f_ours).max())
    out["f_hat_run_diff"] = None if stored_f_held is None else float(np.abs(f_ours - stored_f_held).max())
    settings = [("sklearn lbfgs, default tol=1e-4, max_iter=100", {"tol": 1e-4}, budgets[0]),
                ("sklearn lbfgs, tol=1e-8, max_iter=10000", {"tol": 1e-8, "max_iter": 10_000}, budgets[1])]
    for label, kw, budget in settings:
        log(f"surrogate vs sklearn: {label}, time budget {budget:.0f}s")
        mon = LoadMonitor()
        coefs, times, n_iter, capped = sklearn_fits(Xn, yn, wn, subsets, sc.l2, kw, budget)
        k = len(coefs)
        Vs = np.stack(coefs)
        rel = np.linalg.norm(V[:k] - Vs, axis=1) / np.maximum(np.linalg.norm(Vs, axis=1), 1e-300)
        f_sk = np.array([f_hat_np(Xhn, yhn, whn, subsets[j], Vs[j]) for j in range(k)])
        gap = np.array([objective_np(Xn, yn, wn, subsets[j], Vs[j], sc.l2)
                        - objective_np(Xn, yn, wn, subsets[j], V[j], sc.l2) for j in range(k)])
        per_fit = float(np.mean(times))
        out["sk"].append(dict(label=label, fits=k, per_fit=per_fit, measured_total=float(np.sum(times)),
                              median_fit=float(np.median(times)), load=mon.other_cores(), total=per_fit * m,
                              extrapolated=k < m, max_rel=float(rel.max()),
                              max_fdiff=float(np.abs(f_ours[:k] - f_sk).max()), obj_gap=float(gap.max()),
                              obj_gap_min=float(gap.min()), iters=f"{int(np.median(n_iter))} / {max(n_iter)}",
                              capped=capped))
        ours_again()
    out["f_range"] = float(np.ptp(f_ours))
    out["ours"] = dict(best=min(t_ours), median=statistics.median(t_ours), times=t_ours, load=max(ours_load),
                       iterations=res.info.iterations, converged=int(res.info.converged.sum()),
                       max_ginf=float(res.info.grad_inf_norm.max()))
    return out


def render(sur: dict[str, Any], sc: SurrogateConfig, data_line: str) -> list[str]:
    L = ["## Surrogate: batched L-BFGS vs scikit-learn, one fit at a time", ""]
    m, alpha, n_fit = sur["m"], sur["alpha"], sur["n_fit"]
    o = sur["ours"]
    L.append(f"{data_line} m={m} subsets of alpha={alpha} tasks, d={sur['d']}, N_fit={n_fit} rows per task, so "
             f"{alpha * n_fit} rows per fit; N_held={sur['n_held']} held-out rows per task. sklearn: "
             f"`LogisticRegression(fit_intercept=False, C=1/(|D_S|*l2))` with l2={sc.l2:g}, so "
             f"C={1 / (alpha * n_fit * sc.l2):.3g}; `fit(X_S, y_S, sample_weight=w_S)`, float64, the same minimiser "
             "as ours (sklearn scales the objective by |D_S|/sum(w), so its tol is on a differently scaled gradient). "
             f"Ours: `fit_logistic_batched`, {sc.dtype}, tol={sc.tol:g} on the gradient inf-norm, timed "
             f"{len(o['times'])} times (before and after each sklearn setting); the speedup is sklearn total / our "
             "best, in brackets sklearn (median s/fit x m) / our median (>1: ours is faster).")
    rows = [["ours (batched L-BFGS, all m at once)", str(m), fmt_s(o["best"] / m),
             f"{fmt_s(o['best'])} (median {fmt_s(o['median'])})", "",
             f"{o['iterations']} batched iterations; {o['converged']}/{m} converged; max grad inf-norm "
             f"{o['max_ginf']:.1e}", "", "", "", fmt_load(o["load"])]]
    for sk in sur["sk"]:
        tot = fmt_s(sk["total"]) + (f" (extrapolated from {sk['fits']} fits: {fmt_s(sk['measured_total'])} s measured)"
                                    if sk["extrapolated"] else "")
        rows.append([sk["label"], f"{sk['fits']}" + (" (subset)" if sk["extrapolated"] else ""),
                     f"{fmt_s(sk['per_fit'])} (median {fmt_s(sk['median_fit'])})", tot,
                     f"**{sk['total'] / o['best']:.1f}x** ({sk['median_fit'] * m / o['median']:.1f}x)",
                     f"iterations median / max {sk['iters']}; {sk['capped']} hit max_iter",
                     f"{sk['max_rel']:.1e}", f"{sk['max_fdiff']:.1e}",
                     f"{sk['obj_gap_min']:+.1e} .. {sk['obj_gap']:+.1e}", fmt_load(sk["load"])])
    L += ["", table(["solver", "fits timed", "s / fit", "total s for m fits", "speedup ours vs it", "notes",
                     "max rel coef diff", "max \\|f_hat diff\\|", "objective(sklearn) - objective(ours)",
                     "other load (cores)"], rows), ""]
    run_diff = ("not compared: --l2 differs from the run's" if sur["f_hat_run_diff"] is None
                else f"matches the run's subsets.npz to {sur['f_hat_run_diff']:.1e}")
    L.append(f"Rel coef diff = max over subsets of ||v_ours - v_sklearn|| / ||v_sklearn||. f_hat = -(weighted mean "
             f"loss) on the held-out rows of the subset's tasks; for scale, f_hat over the m subsets spans "
             f"{sur['f_range']:.2e}. Objective = ours, (1/|D_S|) sum w log(1+exp(-y g.v)) + l2/2 ||v||^2 on the "
             "fitting rows: a positive gap means sklearn stopped at a worse point than ours. Our held-out f_hat "
             f"(`run_surrogate`, the stage's call, {fmt_s(sur['run_surrogate_s'])} s with the f_hat evaluation) "
             f"{run_diff}; recomputed here in numpy it agrees to {sur['f_hat_np_diff']:.1e}.")
    return L + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap, "results/bench_surrogate.md", "torch / BLAS threads of the measurements (default: the "
                                                    "libraries' own defaults); the run, if produced here, uses 1")
    ap.add_argument("--l2", type=float, default=None,
                    help="surrogate L2 strength of the fits here (default: the run's, recorded in the report)")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    mon_all = LoadMonitor()
    info = machine_info()
    rd, run_line = bench_run(bench_config(args.family, args.seed, args.quick), run_dir_for(args), fresh=False)
    ctx = load_context(rd.path)
    cfg = ctx.cfg
    paths = [rd.task_features(i) for i in range(ctx.family.n)]
    fs = feature_set([load_npz(p) for p in paths], cfg.features.holdout_fraction, paths)
    table = SubsetTable.load(rd.subsets)
    subsets = table.subsets
    sc = cfg.surrogate if args.l2 is None else replace(cfg.surrogate, l2=args.l2)
    stored = table.f_hat_held_out if sc == cfg.surrogate else None
    with thread_limit(args.threads) if args.threads else contextlib.nullcontext():
        sur = surrogate_vs_sklearn(fs, subsets, sc, BUDGET_S["quick" if args.quick else "full"], stored)
    data_line = (f"The run's data: its {fs.n} feature files (`features.feature_set`) and the subsets of its "
                 "subsets.npz, the same for both solvers:")
    threads = f"set by --threads {args.threads} (torch and BLAS)" if args.threads else "the libraries' defaults"
    text = header("policygradex surrogate benchmark", args, info, time.perf_counter() - t_all, mon_all.other_cores(),
                  run_line, threads)
    write_report(args.out, "\n".join(text + render(sur, sc, data_line)), t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
