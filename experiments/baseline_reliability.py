r"""results/baseline-reliability.md: does the split-half reliability of the gradient signal predict a fresh sample?

The report's "gradient signal reliability" splits each task's transitions into two halves in time and correlates the
gradient interaction G G^T of the halves (stepped up by Spearman-Brown). With ``--baseline per_task`` the
advantages come from a value function fitted on the very transitions of both halves, so the halves share that fit's
error. This script measures, from one theta_star, K independent collections of transitions (the feature stage's
collection with seeds s, s + 1000, ...) and for each baseline:

- ``split-half``: the report's statistic within each collection (mean over collections);
- ``test-retest``: the correlation of G G^T between two collections (mean over pairs), the reliability that the
  split-half statistic estimates;

under these baselines: theta_star's value head (``policy``), each task's value function fitted on all the
transitions (``per_task``, what the feature stage does), the same fitted on one half in time and applied to the
other (``per_task, cross-fitted``; about the halves of the fitting rows, the split-half statistic's), and fitted on
each half apart for that half's advantages (``per_task, halves fitted apart``: two independent half-size samples,
as the split-half statistic assumes; its test-retest column is per_task's, the features a run uses). The last is
what the feature stage stores and the report reads since this page found the joint fit's excess
(``features.split_advantages``, called here on the same transitions).

    python experiments/baseline_reliability.py runs/demo/cartpole --n 4096,16384 --collections 4 \
        --out results/baseline-reliability.md

O(K N n d) time: K collections of N transitions per task and their projected gradients; O(n N d) memory, the
projected gradients of one collection at one N (a diagnostic for n of about 10, not for large n).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import versions  # noqa: E402

from policygradex.analysis.context import load_context  # noqa: E402
from policygradex.envs.vector import MultiTaskVectorEnv  # noqa: E402
from policygradex.pipeline.clustering import standardized_corr  # noqa: E402
from policygradex.pipeline.confidence import gradient_halves, interaction_reliability  # noqa: E402
from policygradex.pipeline.features import (fit_rows, logistic_targets, normalize_advantages,  # noqa: E402
                                            projection_for, split_advantages, task_baselines)
from policygradex.pipeline.gradients import projected_gradients  # noqa: E402
from policygradex.rl.baseline import fit_task_values  # noqa: E402
from policygradex.rl.gae import add_advantages, compute_gae  # noqa: E402
from policygradex.rl.rollout import Rollout, collect_rollout  # noqa: E402

MODES = ("policy", "per_task", "per_task, cross-fitted", "per_task, halves fitted apart")
RETEST_OF = {"per_task, halves fitted apart": "per_task"}
"""The halves fitted apart are a way to measure the split-half statistic only: their test-retest column is that of
the features the run uses (per_task, fitted on all the transitions)."""


def collection_halves(ctx, seed: int, Ns: list[int]) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """One collection of max(Ns) transitions per task from ``seed``; for each N (its first N in time) and baseline,
    each task's G over the two halves of its fitting rows."""
    cfg, model, fam = ctx.cfg, ctx.model, ctx.family
    fc, gamma, lam = cfg.features, cfg.ppo.gamma, cfg.ppo.gae_lambda
    torch.manual_seed(seed)
    env = MultiTaskVectorEnv(fam, list(range(fam.n)), fc.envs_per_task, seed, cfg.network.task_id)
    steps = math.ceil(max(Ns) / fc.envs_per_task * 1.1) + 8
    with torch.no_grad():
        ro, last_obs = collect_rollout(env, model, env.reset(), steps)
    env.close()
    cols = [torch.as_tensor(np.flatnonzero(env.env_task == i)) for i in range(fam.n)]
    raw = env.obs_dim - env.task_id_dim
    projection = projection_for(cfg, model)
    out = {}
    for N in Ns:
        T = min(steps, math.ceil(N / fc.envs_per_task * 1.1) + 8)
        r, v, term, trunc, valid = ro.rewards[:T], ro.values[:T], ro.terminated[:T], ro.truncated[:T], ro.valid[:T]
        nv = ro.values[T] if T < steps else ro.next_value
        nxt = (ro.obs[T] if T < steps else torch.as_tensor(np.asarray(last_obs, dtype=np.float32)))[:, :raw]
        obs = ro.obs[:T, :, :raw]
        returns = compute_gae(r, v, nv, term, trunc, gamma, 1.0) + v
        m = fit_rows(N, fc.holdout_fraction)
        first = torch.zeros(T, 1, dtype=torch.bool)  # the steps of the first half of the fitting rows (about)
        first[: round(T * m / (2 * N))] = True
        advantages = {"policy": compute_gae(r, v, nv, term, trunc, gamma, lam)}
        # per_task exactly as the feature stage fits it (features.task_baselines), on the first T steps, and its
        # halves fitted apart as the feature stage now stores them for the report (features.split_advantages)
        head = Rollout(obs=ro.obs[:T], actions=ro.actions[:T], logprobs=ro.logprobs[:T], rewards=r, values=v.clone(),
                       terminated=term, truncated=trunc, valid=valid, next_value=nv)
        after = ro.obs[T].numpy() if T < steps else last_obs
        apart = split_advantages(head, after, env, range(fam.n), gamma, lam, m // 2)
        task_baselines(head, after, env, range(fam.n), gamma)
        add_advantages(head, gamma, lam)
        advantages["per_task"] = head.advantages
        on_first, _ = fit_task_values(obs, nxt, returns, (valid & first).float(), cols)
        on_second, next_second = fit_task_values(obs, nxt, returns, (valid & ~first).float(), cols)
        crossed = torch.where(first, on_second, on_first)
        advantages["per_task, cross-fitted"] = compute_gae(r, crossed, next_second, term, trunc, gamma, lam)
        advantages["per_task, halves fitted apart"] = apart
        keep = [valid[:, c].reshape(-1) for c in cols]
        features = np.stack([projected_gradients(model, ro.obs[:T, c].reshape(-1, ro.obs.shape[-1])[k][:N],
                                                 ro.actions[:T, c].reshape(-1, *ro.actions.shape[2:])[k][:N],
                                                 projection, fc).numpy().astype(np.float32)
                             for c, k in zip(cols, keep)])
        for mode, A in advantages.items():
            per_task = normalize_advantages([A[:, c].reshape(-1)[k][:N].numpy().astype(np.float64)
                                             for c, k in zip(cols, keep)], fc.advantage_normalization)
            labels, weights = zip(*(logistic_targets(a) for a in per_task))
            out[(N, mode)] = gradient_halves(features[:, :m], np.stack(labels)[:, :m], np.stack(weights)[:, :m])
    return out


def measure(run: Path, Ns: list[int], K: int) -> list[str]:
    ctx = load_context(run)
    seed = ctx.cfg.feature_block_seed(0)
    collections = []
    for j in range(K):
        print(f"{run}: collection {j + 1}/{K}", file=sys.stderr, flush=True)
        collections.append(collection_halves(ctx, seed + 1000 * j, Ns))
    lines = [f"## `{run}`", "", f"`{ctx.cfg.family}`, {ctx.family.n} tasks, {K} collections.", "",
             "| N | baseline | split-half (mean ± SE over collections) | test-retest (mean ± SE over pairs) |",
             "|---|---|---|---|"]
    for N in Ns:
        for mode in MODES:
            halves = [c[(N, mode)] for c in collections]
            split = [interaction_reliability(*h) for h in halves]
            whole = [(a + b) / 2 for a, b in (c[(N, RETEST_OF.get(mode, mode))] for c in collections)]
            retest = [standardized_corr(whole[a] @ whole[a].T, whole[b] @ whole[b].T)
                      for a, b in itertools.combinations(range(K), 2)]

            def cell(xs: list[float]) -> str:
                xs = [x for x in xs if x is not None and np.isfinite(x)]
                return f"{np.mean(xs):+.2f} ± {np.std(xs, ddof=1) / np.sqrt(len(xs)):.2f}" if len(xs) > 1 else "-"

            lines.append(f"| {N:,} | {mode} | {cell(split)} | {cell(retest)} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--n", default="4096,16384", help="transitions per task, comma-separated")
    ap.add_argument("--collections", type=int, default=4)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    Ns = [int(x) for x in args.n.split(",")]
    command = (f"python experiments/baseline_reliability.py {' '.join(map(str, args.runs))} --n {args.n} "
               f"--collections {args.collections} --out {args.out}")
    lines = ["# Does the split-half reliability of the gradient signal predict a fresh sample?", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2].replace("\n", " "), "",
             "Both statistics correlate the off-diagonal part of the standardised G G^T that the SDP sees. The "
             "split-half one is stepped up by Spearman-Brown to the fitting rows of one collection, which is what "
             "the test-retest one correlates between collections, so where the split-half statistic is unbiased "
             "the two agree on average. The standard error over pairs treats the pairs as independent, which they "
             "are not (each collection is in K - 1 of them): it is too small, a guide only.", "",
             f"Package versions: {versions()}.", "", "```", command, "```", ""]
    for run in args.runs:
        lines += measure(run, Ns, args.collections)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
