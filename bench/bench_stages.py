"""Benchmark of the PolicyGradEx pipeline stages, and of its two hot spots against the obvious alternatives.

One run, one data set (everything below reuses what the earlier sections produced):

1. Stage timings on a task family at a modest budget: meta-training PPO, transition collection, gradient
   features (vmap + projection), surrogate fits (batched L-BFGS), affinity, clustering (SDP lambda grid).
2. Per-transition gradients + projection: ``features.projected_gradients`` (vmap of grad, chunked by
   ``auto_grad_chunk``) vs a per-sample autograd loop (``features.loop_grads``) followed by the same projection,
   on the same transitions, for the default 64-64-64 MLP and a 256-256-256 MLP.
3. Surrogate: ``surrogate.fit_logistic_batched`` (all m subsets in one batched L-BFGS) vs scikit-learn's
   LogisticRegression, one fit per subset, on the same subsets and features, at sklearn's default tol and at a
   tight tol; agreement of coefficients and of f_hat on held-out rows.

Usage (from the repository root):

    .venv/bin/python bench/bench_stages.py --out results/bench.md            # full run (~5 min on 2 cores)
    .venv/bin/python bench/bench_stages.py --quick --out /tmp/bench.md       # smoke test (~30 s)

The markdown written to --out is also printed to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from policygradex.affinity import affinity_matrix
from policygradex.clustering import cluster
from policygradex.config import ClusterConfig, FeatureConfig, NetworkConfig, PPOConfig, RunConfig, SurrogateConfig
from policygradex.families import MultiTaskVectorEnv, load_family
from policygradex.features import (
    RandomProjection,
    auto_grad_chunk,
    collect_transitions,
    fit_rows,
    logistic_targets,
    loop_grads,
    normalize_advantages,
    per_sample_grad_fn,
    projected_gradients,
)
from policygradex.networks import flat_params, make_network
from policygradex.ppo import train_ppo
from policygradex.surrogate import FeatureSet, fit_logistic_batched, run_surrogate, sample_subsets


# ----------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn, repeats: int = 1):
    """Run fn() ``repeats`` times; return (list of seconds, last result)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def _busy_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, steal seconds) from /proc/stat; (nan, nan) where unavailable."""
    try:
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (vals + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tick, steal / tick


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMonitor:
    """CPU used on the machine by OTHER processes while a section ran, in cores (from /proc/stat minus our own
    CPU time). The benchmark cannot stop them, so it reports them next to the timings."""

    def __init__(self) -> None:
        self.t0, (self.busy0, self.steal0), self.own0 = time.perf_counter(), _busy_seconds(), _own_seconds()

    def other_cores(self) -> float:
        """nan for measurements shorter than 0.5 s (the kernel counts CPU time in 10 ms ticks)."""
        dt = time.perf_counter() - self.t0
        busy, _ = _busy_seconds()
        return max(0.0, (busy - self.busy0 - (_own_seconds() - self.own0)) / dt) if dt >= 0.5 else float("nan")

    def steal_cores(self) -> float:
        dt = time.perf_counter() - self.t0
        _, steal = _busy_seconds()
        return (steal - self.steal0) / dt if dt > 0 else float("nan")


def fmt_load(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def fmt_s(x: float) -> str:
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import scipy
    import sklearn

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": cpu,
        "nproc": str(affinity),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
    }


def git_state() -> str:
    """HEAD commit and the files under src/ that differ from it (others may be editing the working tree)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    files = sorted(line[3:].strip() for line in dirty if line.strip())
    return f"HEAD {head or 'unknown'}" + (f", with uncommitted changes in {', '.join(files)}" if files else ", clean src/")


def command_line() -> str:
    exe = sys.executable
    try:
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [exe, *sys.argv])


# ----------------------------------------------------------------------------------------------- settings
def settings(quick: bool) -> dict:
    if quick:
        return dict(thr_iters=2, thr_repeats=1, steps_per_task=2048, transitions=512, m=20, alpha=5, grid=6, cmp_rows=256,
                    vmap_repeats=2, loop_repeats=1, wide_vmap_repeats=1, wide_loop_repeats=1,
                    sk_budget_s=8.0, sk_tight_budget_s=8.0, sweep=False)
    return dict(thr_iters=4, thr_repeats=2, steps_per_task=20_000, transitions=2048, m=100, alpha=5, grid=25, cmp_rows=2048,
                vmap_repeats=5, loop_repeats=3, wide_vmap_repeats=3, wide_loop_repeats=2,
                sk_budget_s=45.0, sk_tight_budget_s=60.0, sweep=True)


# ----------------------------------------------------------------------------------------------- section 1
def run_stages(family, cfg: RunConfig, S: dict) -> dict:
    n = family.n
    res: dict = {"rows": []}
    mon_all = LoadMonitor()
    probe = MultiTaskVectorEnv(family, [0], 1, 0, cfg.network.task_id)
    res["obs_dim"], res["action_space"] = probe.obs_dim, probe.single_action_space
    probe.close()

    # stage 1: meta-training PPO
    log(f"stage meta_train: PPO, {cfg.ppo.steps_per_task} steps/task x {n} tasks")
    torch.manual_seed(cfg.seed)
    mon = LoadMonitor()
    t0 = time.perf_counter()
    tr = train_ppo(family, range(n), cfg.network, cfg.ppo, cfg.seed)
    t_ppo = time.perf_counter() - t0
    iters = max(1, cfg.ppo.steps_per_task // (cfg.ppo.envs_per_task * cfg.ppo.num_steps))
    env_steps = iters * cfg.ppo.envs_per_task * cfg.ppo.num_steps * n
    last = tr.curve[-1]
    secs = np.diff([0.0] + [r["seconds"] for r in tr.curve])
    res["model"] = tr.model
    res["rows"].append(["meta_train (PPO)", fmt_s(t_ppo), fmt_load(mon.other_cores()),
                        f"{iters} iterations, {env_steps:,} env-steps: **{env_steps / t_ppo:,.0f} env-steps/s** "
                        f"incl. updates; s/iteration min {secs.min():.2f} / median {np.median(secs):.2f} / max "
                        f"{secs.max():.2f}; final mean return {last['mean_return']:.1f}"])
    res["ppo_steps_per_s"] = env_steps / t_ppo

    # stage 2a: transition collection
    fc = cfg.features
    log(f"stage features: collecting N={fc.transitions_per_task} transitions per task")
    mon = LoadMonitor()
    t0 = time.perf_counter()
    transitions = collect_transitions(family, tr.model, fc, cfg.ppo, cfg.feature_seed, cfg.network.task_id)
    t_collect = time.perf_counter() - t0
    res["transitions"] = transitions
    res["rows"].append(["collect transitions", fmt_s(t_collect), fmt_load(mon.other_cores()),
                        f"N={fc.transitions_per_task} valid transitions x {n} tasks, rollouts + GAE"])

    # stage 2b: gradient features (fresh projection as in the pipeline: P is generated during the stage)
    names = tr.model.policy_parameter_names()
    p = flat_params(tr.model, names).numel()
    log(f"stage features: projected gradients, p={p}, d={fc.projection_dim}")
    mon = LoadMonitor()
    t0 = time.perf_counter()
    projection = RandomProjection(p, fc.projection_dim, cfg.projection_seed, fc.projection_block_rows,
                                  fc.projection_cache_mb)
    feats = [projected_gradients(tr.model, t.obs, t.actions, projection, fc) for t in transitions]
    t_feat = time.perf_counter() - t0
    res["rows"].append(["gradient features", fmt_s(t_feat), fmt_load(mon.other_cores()),
                        f"vmap + projection, p={p:,}, d={fc.projection_dim}, chunk={fc.grad_chunk or auto_grad_chunk(p)}, "
                        f"{n}x{fc.transitions_per_task} transitions (cold: includes first-call vmap set-up and "
                        "generating P)"])
    advantages = normalize_advantages([t.advantages for t in transitions], fc.advantage_normalization)
    labels, weights = zip(*(logistic_targets(a) for a in advantages))
    fs = FeatureSet(
        features=torch.stack([f.float() for f in feats]),
        labels=torch.from_numpy(np.stack(labels)),
        weights=torch.from_numpy(np.stack(weights)),
        n_fit=fit_rows(feats[0].shape[0], fc.holdout_fraction),
    )
    res["features"], res["p"] = fs, p

    # stage 3: surrogate
    sc = cfg.surrogate
    sample = sample_subsets(n, sc.subset_size, sc.num_subsets, cfg.subset_seed)
    subsets, topped = sample.subsets, sample.topped_up
    log(f"stage surrogate: {len(subsets)} subsets of {sc.subset_size}, d={fc.projection_dim}, N_fit={fs.n_fit}")
    mon = LoadMonitor()
    t0 = time.perf_counter()
    sr = run_surrogate(fs, subsets, sc, topped)
    t_sur = time.perf_counter() - t0
    res["subsets"], res["surrogate"] = subsets, sr
    res["rows"].append(["surrogate fits", fmt_s(t_sur), fmt_load(mon.other_cores()),
                        f"m={len(subsets)} (+{topped} top-up) subsets of {sc.subset_size}, batched L-BFGS "
                        f"({sr.info.iterations} iterations, {int(sr.info.converged.sum())}/{len(subsets)} converged "
                        f"to tol {sc.tol:g}), + f_hat in/out of sample"])

    # stage 4: affinity
    mon = LoadMonitor()
    t0 = time.perf_counter()
    U, _ = affinity_matrix(cfg.cluster.affinity, subsets, sr.f_hat, sr.task_loss, n)
    t_aff = time.perf_counter() - t0
    res["rows"].append(["affinity", fmt_s(t_aff), fmt_load(mon.other_cores()), f"eq. 5 ({cfg.cluster.affinity}), {n}x{n}"])

    # stage 5: clustering
    cc = cfg.cluster
    log(f"stage cluster: SDP on a {cc.lam_grid_size}-point lambda grid ({cc.solver})")
    mon = LoadMonitor()
    t0 = time.perf_counter()
    cl = cluster(U, k=cc.k, lam=cc.lam, solver=cc.solver, method=cc.method, grid_size=cc.lam_grid_size,
                 exhaustive_check=cc.exhaustive_check, min_silhouette=cc.min_silhouette)
    t_cl = time.perf_counter() - t0
    extra = ""
    if cl.check is not None:
        extra = f", exhaustive check: SDP optimal = {cl.check['sdp_is_optimal']}"
    res["rows"].append(["cluster (SDP)", fmt_s(t_cl), fmt_load(mon.other_cores()),
                        f"{cc.solver}, {cc.lam_grid_size}-point lambda grid{extra}; k={cl.k}"])
    total = t_ppo + t_collect + t_feat + t_sur + t_aff + t_cl
    res["rows"].append(["**total**", f"**{fmt_s(total)}**", fmt_load(mon_all.other_cores()), ""])
    res["stage_seconds"] = {"meta_train": t_ppo, "collect": t_collect, "features": t_feat, "surrogate": t_sur,
                            "affinity": t_aff, "cluster": t_cl}
    return res


def ppo_threads(family, cfg: RunConfig, S: dict) -> list[list[str]]:
    """Short PPO runs at torch threads = 1 and at the default, interleaved: env-steps/s of each."""
    default = torch.get_num_threads()
    if default == 1:
        return []
    short = replace(cfg.ppo, steps_per_task=S["thr_iters"] * cfg.ppo.envs_per_task * cfg.ppo.num_steps)
    env_steps = S["thr_iters"] * cfg.ppo.envs_per_task * cfg.ppo.num_steps * family.n
    res: dict[int, list[tuple[float, float]]] = {1: [], default: []}
    log(f"PPO threads check: {S['thr_iters']} iterations at torch threads 1 and {default}, x{S['thr_repeats']}")
    try:
        for _ in range(S["thr_repeats"]):
            for nt in (1, default):
                torch.set_num_threads(nt)
                mon = LoadMonitor()
                t, _ = timed(lambda: train_ppo(family, range(family.n), cfg.network, short, cfg.seed))
                res[nt].append((t[0], mon.other_cores()))
    finally:
        torch.set_num_threads(default)
    rows = []
    for nt, runs in res.items():
        best = min(t for t, _ in runs)
        rows.append([str(nt), " / ".join(fmt_s(t) for t, _ in runs), f"{env_steps / best:,.0f}",
                     " / ".join(fmt_load(x) for _, x in runs)])
    return rows


# ----------------------------------------------------------------------------------------------- section 2
def grads_vs_loop(stage: dict, seed: int, S: dict) -> dict:
    tr0 = stage["transitions"][0]
    rows = S["cmp_rows"]
    obs, actions = tr0.obs[:rows], tr0.actions[:rows]
    fc = FeatureConfig()  # defaults: grad_chunk=None (auto), project_rows=2048, d=400
    out = {"rows": [], "split_rows": [], "sweep_rows": [], "B": obs.shape[0], "speedups": []}
    nets = [("64-64-64 (default, meta-trained)", stage["model"], S["vmap_repeats"], S["loop_repeats"])]
    torch.manual_seed(seed)
    wide = make_network(stage["obs_dim"], stage["action_space"], NetworkConfig(hidden_sizes=(256, 256, 256)))
    nets.append(("256-256-256 (fresh init)", wide, S["wide_vmap_repeats"], S["wide_loop_repeats"]))
    for label, model, rv, rl in nets:
        mon = LoadMonitor()
        fn, p = per_sample_grad_fn(model)
        chunk = auto_grad_chunk(p)
        projection = RandomProjection(p, fc.projection_dim, seed + 2, fc.projection_block_rows, fc.projection_cache_mb)
        log(f"vmap vs loop: {label}, p={p}, chunk={chunk}, B={obs.shape[0]}")
        t0 = time.perf_counter()
        for b in range(projection.num_blocks):
            projection.block(b)
        t_genP = time.perf_counter() - t0

        def vmap_path(c: int | None = None) -> torch.Tensor:  # what the pipeline runs
            return projected_gradients(model, obs, actions, projection, replace(fc, grad_chunk=c) if c else fc)

        def loop_path() -> torch.Tensor:  # the alternative; like projected_gradients it frees its B x p buffer
            return projection.project(loop_grads(model, obs, actions))

        def vmap_grads(c: int = chunk) -> torch.Tensor:  # the gradient half of projected_gradients, same chunking
            return torch.cat([fn(obs[s : s + c], actions[s : s + c]) for s in range(0, obs.shape[0], c)])

        # warm-up: the first vmap call sets up / allocates (P is already cached); first loop call likewise
        projected_gradients(model, obs[: chunk * 2], actions[: chunk * 2], projection, fc)
        loop_grads(model, obs[:4], actions[:4])
        # repeats are interleaved (vmap, loop, vmap, loop, ...) so that load from other processes hits both alike
        t_vmap, t_loop, t_vg, t_vp, t_lg, t_lp = [], [], [], [], [], []
        feats_vmap = feats_loop = None
        for r in range(max(rv, rl)):
            if r < rv:
                ts, feats_vmap = timed(vmap_path)
                t_vmap += ts
            if r < rl:
                ts, feats_loop = timed(loop_path)
                t_loop += ts
        # the split, timed separately (these exclude freeing the B x p gradient buffer; the totals above include it)
        G_vmap = G_loop = None
        for r in range(rl):
            G_vmap = None
            ts, G_vmap = timed(vmap_grads)
            t_vg += ts
            t_vp += timed(lambda: projection.project(G_vmap))[0]
            G_loop = None
            ts, G_loop = timed(lambda: loop_grads(model, obs, actions))
            t_lg += ts
            t_lp += timed(lambda: projection.project(G_loop))[0]
        diff_proj = float((feats_vmap - feats_loop).abs().max())
        scale_proj = float(feats_loop.abs().max())
        diff_raw = float((G_vmap - G_loop).abs().max())
        scale_raw = float(G_loop.abs().max())
        del G_vmap, G_loop
        best_v, best_l = min(t_vmap), min(t_loop)
        med_v, med_l = statistics.median(t_vmap), statistics.median(t_loop)
        out["rows"].append([label, f"{p:,}", f"{chunk} (auto)", f"{fmt_s(best_v)} / {fmt_s(med_v)}",
                            f"{fmt_s(best_l)} / {fmt_s(med_l)}", f"**{best_l / best_v:.1f}x** ({med_l / med_v:.1f}x)",
                            f"{diff_proj:.1e} (max \\|g~\\| {scale_proj:.2g}); raw grads {diff_raw:.1e} "
                            f"(max \\|g\\| {scale_raw:.2g})", fmt_load(mon.other_cores())])
        out["split_rows"].append([label, f"{fmt_s(min(t_vg))} + {fmt_s(min(t_vp))}",
                                  f"{100 * min(t_vp) / (min(t_vg) + min(t_vp)):.0f}%",
                                  f"{fmt_s(min(t_lg))} + {fmt_s(min(t_lp))}",
                                  f"{100 * min(t_lp) / (min(t_lg) + min(t_lp)):.0f}%",
                                  f"{min(t_lg) / min(t_vg):.1f}x", fmt_s(t_genP)])
        out["speedups"].append((label, chunk, best_l / best_v, med_l / med_v))
        if S["sweep"]:
            mon = LoadMonitor()
            cand = sorted({max(8, chunk // 2), chunk, min(1024, chunk * 2), min(1024, chunk * 4)})
            for c in cand:
                vmap_grads(c)  # warm-up at this chunk size
            best = {c: float("inf") for c in cand}
            for _ in range(2 if p > 50_000 else 3):  # interleaved over chunk sizes
                for c in cand:
                    best[c] = min(best[c], timed(lambda: vmap_grads(c))[0][0])
            fastest = min(best, key=best.get)
            out["sweep_rows"].append([label, f"{p:,}", str(chunk)] + [
                f"{c}: {fmt_s(t)}" + (" (fastest)" if c == fastest else "") for c, t in best.items()]
                + [fmt_load(mon.other_cores())])
            if fastest != chunk:  # the whole vmap path again at the sweep's fastest chunk, vs the same loop timings
                mon = LoadMonitor()
                ts, _ = timed(lambda: vmap_path(fastest), 2)
                out["rows"].append([label, f"{p:,}", f"{fastest} (sweep's fastest)", f"{fmt_s(min(ts))} / "
                                    f"{fmt_s(statistics.median(ts))}", f"{fmt_s(best_l)} / {fmt_s(med_l)} (above)",
                                    f"**{best_l / min(ts):.1f}x** ({med_l / statistics.median(ts):.1f}x)", "",
                                    fmt_load(mon.other_cores())])
                out["speedups"].append((label, fastest, best_l / min(ts), med_l / statistics.median(ts)))
        del projection
    return out


# ----------------------------------------------------------------------------------------------- section 3
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


def surrogate_vs_sklearn(stage: dict, cfg: RunConfig, S: dict) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    fs: FeatureSet = stage["features"]
    subsets = stage["subsets"]
    sc = cfg.surrogate
    m = len(subsets)
    X, y, w = fs.part(held_out=False)
    Xh, yh, wh = fs.part(held_out=True)
    Xn, yn, wn = (t.double().numpy() for t in (X, y, w))
    Xhn, yhn, whn = (t.double().numpy() for t in (Xh, yh, wh))
    out: dict = {"m": m, "d": X.shape[2], "n_fit": X.shape[1], "n_held": Xh.shape[1], "alpha": sc.subset_size}

    log(f"surrogate vs sklearn: ours, batched L-BFGS over m={m}")
    fit_logistic_batched(X, y, w, subsets[: min(4, m)], replace(sc, max_iter=3))  # warm-up (allocations)
    mon = LoadMonitor()
    t_ours, (V, info) = timed(lambda: fit_logistic_batched(X, y, w, subsets, sc))
    ours_load = [mon.other_cores()]

    def ours_again() -> None:  # ours is re-timed between the sklearn settings: load from others hits both alike
        mon = LoadMonitor()
        t_ours.extend(timed(lambda: fit_logistic_batched(X, y, w, subsets, sc))[0])
        ours_load.append(mon.other_cores())

    V = V.numpy()
    f_ours = np.array([f_hat_np(Xhn, yhn, whn, s, V[j]) for j, s in enumerate(subsets)])
    # consistency with the pipeline's own f_hat (held-out) from section 1
    out["f_hat_pipeline_diff"] = float(np.abs(f_ours - stage["surrogate"].f_hat_held_out).max())

    settings_sk = [("sklearn lbfgs, default tol=1e-4, max_iter=100", dict(tol=1e-4), S["sk_budget_s"]),
                   ("sklearn lbfgs, tol=1e-8, max_iter=10000", dict(tol=1e-8, max_iter=10_000), S["sk_tight_budget_s"])]
    out["sk"] = []
    for label, kw, budget in settings_sk:
        log(f"surrogate vs sklearn: {label}, time budget {budget:.0f}s")
        mon = LoadMonitor()
        times, coefs, n_iter, capped = [], [], [], 0
        t_start = time.perf_counter()
        for j, s in enumerate(subsets):
            Xs = np.concatenate([Xn[i] for i in s])
            ys = np.concatenate([yn[i] for i in s])
            ws = np.concatenate([wn[i] for i in s])
            C = 1.0 / (Xs.shape[0] * sc.l2)
            clf = LogisticRegression(fit_intercept=False, C=C, **kw)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                t0 = time.perf_counter()
                clf.fit(Xs, ys, sample_weight=ws)
                times.append(time.perf_counter() - t0)
            if any(issubclass(c.category, ConvergenceWarning) for c in caught):
                capped += 1
            assert list(clf.classes_) == [-1.0, 1.0]
            coefs.append(clf.coef_.reshape(-1).astype(np.float64))
            n_iter.append(int(np.max(clf.n_iter_)))
            if time.perf_counter() - t_start > budget and j + 1 < m:
                break
        k = len(coefs)
        Vs = np.stack(coefs)
        rel = np.linalg.norm(V[:k] - Vs, axis=1) / np.maximum(np.linalg.norm(Vs, axis=1), 1e-300)
        f_sk = np.array([f_hat_np(Xhn, yhn, whn, subsets[j], Vs[j]) for j in range(k)])
        obj_ours = np.array([objective_np(Xn, yn, wn, subsets[j], V[j], sc.l2) for j in range(k)])
        obj_sk = np.array([objective_np(Xn, yn, wn, subsets[j], Vs[j], sc.l2) for j in range(k)])
        per_fit = float(np.mean(times))
        out["sk"].append(dict(label=label, fits=k, per_fit=per_fit, measured_total=float(np.sum(times)),
                              median_fit=float(np.median(times)), load=mon.other_cores(),
                              total=per_fit * m, extrapolated=k < m, max_rel=float(rel.max()),
                              max_fdiff=float(np.abs(f_ours[:k] - f_sk).max()),
                              f_range=float(np.ptp(f_ours)), obj_gap=float((obj_sk - obj_ours).max()),
                              obj_gap_min=float((obj_sk - obj_ours).min()),
                              iters=f"{int(np.median(n_iter))} / {max(n_iter)}", capped=capped))
        ours_again()
    out["ours"] = dict(best=min(t_ours), median=statistics.median(t_ours), times=t_ours, load=max(ours_load),
                       iterations=info.iterations, converged=int(info.converged.sum()),
                       max_ginf=float(info.grad_inf_norm.max()))
    return out


# ----------------------------------------------------------------------------------------------- report
def render(args, S: dict, cfg: RunConfig, info: dict, stage: dict, cmp: dict, sur: dict, wall: float,
           load_all: str) -> str:
    fam_n = stage["features"].n
    L = []
    L.append(f"# policygradex stage benchmark ({'quick smoke mode' if args.quick else 'full'})")
    L.append("")
    L.append(f"Produced by (from the repository root): `{command_line()}`")
    L.append("")
    L.append(f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    L.append(f"- machine: {info['cpu']}, nproc={info['nproc']}, torch {info['torch']} "
             f"(torch.get_num_threads()={info['torch.get_num_threads()']}), python {info['python']}, "
             f"numpy {info['numpy']}, scipy {info['scipy']}, scikit-learn {info['scikit-learn']}")
    L.append(f"- source: {git_state()}")
    L.append(f"- family `{args.family}` (n={fam_n} tasks), seed {args.seed}; whole benchmark wall time {wall:.0f} s")
    L.append("- all sections use the same data: the meta-trained policy, transitions and gradient features of section 1")
    L.append("- ratios are \"ours vs alternative, measured in the same run\" (alternative time / our time; >1: ours is faster)")
    L.append(f"- torch threads: {'set by --threads ' + str(args.threads) if args.threads else 'torch default'}; "
             f"\"other load (cores)\" columns: CPU time used by OTHER processes on this machine during that measurement "
             f"(/proc/stat busy time minus this process's CPU time, per second of wall time; {load_all} cores on "
             "average over the whole run). With 2 cores, anything above ~0.2 slows the measurement down, and torch's "
             "2-thread kernels are hit hardest")
    L.append("")
    L.append("## 1. Pipeline stages")
    L.append("")
    L.append(f"Budget: PPO steps_per_task={cfg.ppo.steps_per_task:,} (envs_per_task={cfg.ppo.envs_per_task}, "
             f"num_steps={cfg.ppo.num_steps}), N={cfg.features.transitions_per_task} transitions/task, "
             f"d={cfg.features.projection_dim}, m={cfg.surrogate.num_subsets} subsets of "
             f"alpha={cfg.surrogate.subset_size} (l2={cfg.surrogate.l2:g}, tol={cfg.surrogate.tol:g}), network {'-'.join(map(str, cfg.network.hidden_sizes))} MLP. "
             "Each stage is timed once, cold, as `policygradex run` executes it (artifact writing excluded).")
    L.append("")
    L.append(table(["stage", "seconds", "other load (cores)", "details"], stage["rows"]))
    if stage["threads_rows"]:
        L.append("")
        L.append(f"Meta-training throughput vs torch intra-op threads: short `train_ppo` runs of {S['thr_iters']} "
                 f"iterations ({S['thr_iters'] * cfg.ppo.envs_per_task * cfg.ppo.num_steps * fam_n:,} env-steps), "
                 "same config and seed, thread counts interleaved; env-steps/s from the best run.")
        L.append("")
        L.append(table(["torch threads", "seconds per run", "env-steps/s (best)", "other load (cores) per run"],
                       stage["threads_rows"]))
    L.append("")
    L.append("## 2. Per-transition gradients + projection: vmap vs per-sample autograd loop")
    L.append("")
    L.append(f"Same {cmp['B']} transitions of task 0 for both; d=400, FeatureConfig defaults (grad_chunk=auto, "
             "project_rows=2048). vmap = `features.projected_gradients`; loop = `features.loop_grads` + the same "
             "`RandomProjection.project`. One warm-up call first (P cached); times are best / median of "
             f"{S['vmap_repeats']} (64-wide) and {S['wide_vmap_repeats']} (256-wide) vmap repeats and "
             f"{S['loop_repeats']} / {S['wide_loop_repeats']} loop repeats.")
    L.append("")
    L.append(table(["network", "p", "vmap chunk", "vmap s (best / median)", "loop s (best / median)",
                    "speedup ours vs loop (best (median))", "agreement: max abs diff of projected features",
                    "other load (cores)"],
                   cmp["rows"]))
    L.append("")
    L.append("Time split (best of the repeats, timed separately from the totals above; unlike them it excludes freeing "
             "the B x p gradient buffer). \"project share\" is the projection's share of the path; \"P gen\" is "
             "generating the p x d projection once (cached afterwards; paid once per features stage).")
    L.append("")
    L.append(table(["network", "vmap: grads + project s", "project share", "loop: grads + project s", "project share",
                    "grad-only speedup", "P gen s"], cmp["split_rows"]))
    if cmp["sweep_rows"]:
        L.append("")
        L.append("vmap chunk-size sweep (gradients only, best of 2-3, same transitions); `auto` is "
                 "`features.auto_grad_chunk(p)`:")
        L.append("")
        width = max(len(r) for r in cmp["sweep_rows"])
        hdr = ["network", "p", "auto"] + [f"chunk: s" for k in range(width - 4)] + ["other load (cores)"]
        L.append(table(hdr, [r[:-1] + [""] * (width - len(r)) + r[-1:] for r in cmp["sweep_rows"]]))
    L.append("")
    L.append("## 3. Surrogate: batched L-BFGS vs scikit-learn, one fit at a time")
    L.append("")
    L.append(f"Same m={sur['m']} subsets of alpha={sur['alpha']} tasks, same features (d={sur['d']}, "
             f"N_fit={sur['n_fit']} rows per task, so {sur['alpha'] * sur['n_fit']} rows per fit; "
             f"N_held={sur['n_held']} held-out rows per task). sklearn: `LogisticRegression(fit_intercept=False, "
             f"C=1/(|D_S|*l2))` with l2={cfg.surrogate.l2:g}, so "
             f"C={1 / (sur['alpha'] * sur['n_fit'] * cfg.surrogate.l2):.3g}; "
             "`fit(X_S, y_S, sample_weight=w_S)`, float64, the same minimiser as ours "
             "(sklearn scales the objective by |D_S|/sum(w), so its tol is on a differently scaled gradient). "
             f"Ours: `fit_logistic_batched`, float64, tol={cfg.surrogate.tol:g} on the gradient inf-norm, "
             f"timed {len(sur['ours']['times'])} times (before and after each sklearn setting); the speedup is "
             "sklearn total / our best, in brackets sklearn (median s/fit x m) / our median.")
    L.append("")
    o = sur["ours"]
    rows = [["ours (batched L-BFGS, all m at once)", str(sur["m"]), fmt_s(o["best"] / sur["m"]),
             f"{fmt_s(o['best'])} (median {fmt_s(o['median'])})", "",
             f"{o['iterations']} batched iterations; {o['converged']}/{sur['m']} converged; "
             f"max grad inf-norm {o['max_ginf']:.1e}", "", "", "", fmt_load(o["load"])]]
    for sk in sur["sk"]:
        tot = fmt_s(sk["total"]) + (f" (extrapolated from {sk['fits']} fits: {fmt_s(sk['measured_total'])} s measured)"
                                    if sk["extrapolated"] else "")
        rows.append([sk["label"], f"{sk['fits']}" + (" (subset)" if sk["extrapolated"] else ""),
                     f"{fmt_s(sk['per_fit'])} (median {fmt_s(sk['median_fit'])})", tot,
                     f"**{sk['total'] / o['best']:.1f}x** ({sk['median_fit'] * sur['m'] / o['median']:.1f}x)",
                     f"iterations median / max {sk['iters']}; {sk['capped']} hit max_iter",
                     f"{sk['max_rel']:.1e}", f"{sk['max_fdiff']:.1e}",
                     f"{sk['obj_gap_min']:+.1e} .. {sk['obj_gap']:+.1e}", fmt_load(sk["load"])])
    L.append(table(["solver", "fits timed", "s / fit", "total s for m fits", "speedup ours vs it",
                    "notes", "max rel coef diff", "max \\|f_hat diff\\|", "objective(sklearn) - objective(ours)",
                    "other load (cores)"],
                   rows))
    L.append("")
    L.append(f"Rel coef diff = max over subsets of ||v_ours - v_sklearn|| / ||v_sklearn||. f_hat = -(weighted mean "
             f"loss) on the held-out rows of the subset's tasks; for scale, f_hat over the m subsets spans "
             f"{sur['sk'][0]['f_range']:.2e}. Objective = ours, (1/|D_S|) sum w log(1+exp(-y g.v)) + l2/2 ||v||^2 "
             "on the fitting rows: a positive gap means sklearn stopped at a worse point than ours. Our f_hat "
             f"recomputed here matches the pipeline's (section 1) to {sur['f_hat_pipeline_diff']:.1e}.")
    L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/bench.md"), help="markdown report (default results/bench.md)")
    ap.add_argument("--family", default="cartpole", help="task family (default cartpole)")
    ap.add_argument("--quick", action="store_true", help="short smoke mode (tiny budgets, ~30 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N) before anything runs (default: leave torch's default)")
    ap.add_argument("--l2", type=float, default=None,
                    help="surrogate L2 strength (default: SurrogateConfig's default, recorded in the report)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    S = settings(args.quick)
    t_all = time.perf_counter()
    family = load_family(args.family)
    n = family.n
    alpha = min(S["alpha"], n)
    cfg = RunConfig(
        family=args.family,
        seed=args.seed,
        ppo=replace(PPOConfig(), steps_per_task=S["steps_per_task"], checkpoint_every=0),
        features=replace(FeatureConfig(), transitions_per_task=S["transitions"]),
        surrogate=replace(SurrogateConfig(), subset_size=alpha, num_subsets=S["m"],
                          **({} if args.l2 is None else {"l2": args.l2})),
        cluster=replace(ClusterConfig(), lam_grid_size=S["grid"]),
    )
    info = machine_info()
    log(f"machine: {info}")
    mon = LoadMonitor()
    stage = run_stages(family, cfg, S)
    stage["threads_rows"] = ppo_threads(family, cfg, S)
    cmp = grads_vs_loop(stage, args.seed, S)
    sur = surrogate_vs_sklearn(stage, cfg, S)
    text = render(args, S, cfg, info, stage, cmp, sur, time.perf_counter() - t_all, fmt_load(mon.other_cores()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    log(f"wrote {args.out} ({time.perf_counter() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
