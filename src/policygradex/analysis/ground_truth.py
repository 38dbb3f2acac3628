"""``policygradex ground-truth RUN_DIR``: the surrogate against real subset training (paper Table 3).

For the subsets the surrogate used (all of them, or the first ``max_subsets``), fine-tune theta_star with PPO on
each subset's tasks at a fixed budget and measure the real f(S):

- ``return`` (default target, as in the paper): mean episodic return of the fine-tuned policy on S's tasks;
- ``ppo``: the negative PPO loss (clipped objective) on the held-out transitions of S's tasks;
- ``logistic``: the surrogate's own weighted logistic objective, evaluated at the real fine-tuned policy.

U_true is eq. 5 on f, clustered with the run's k and the same routine. Reported: NMI between the run's groups and
the true groups (with the NMI of random groupings of the same sizes as the floor), Spearman between f^ and f over
the subsets, ||std(U) - std(U_true)|| / ||std(U_true)|| (std: the standardisation the SDP sees), and the speedup of
the surrogate over real training, in FLOPs (torch's FlopCounterMode) and in single-thread wall-clock seconds, both
measured in this command. Meta-training theta_star is common to both and counted in neither.

A run with earlier expansion points (``--expansion-points``) clusters their combined U (affinity.npy), while real
fine-tuning starts from theta_star, so the truth is theta_star's. Compared: the run's groups (from the combined U)
with the true groups, as for any run; theta_star's *own* estimate with f and U_true: the Spearman of its f^
(subsets.npz), the split halves, the test-retest and both evaluations of f^ from its subsets table, and the
relative error of its own U (affinity_theta_star.npy). Reported beside them, so both are seen: the relative error of
the combined U, and the NMI of the groups clustered from theta_star's own U alone (the run's k, the routine that
clusters U_true). The surrogate's cost is summed over the points (collection, gradients and fits at each); an earlier
point's own meta-training (``--expansion-policy retrain``) is counted in neither. Group points (``--group-points``)
are points like the earlier ones: their surrogates are summed into the cost, and their fine-tunings, like meta-training,
are counted in neither.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from rich.console import Console
from scipy.stats import spearmanr
from sklearn.metrics import normalized_mutual_info_score
from torch.utils.flop_counter import FlopCounterMode

from policygradex.analysis.context import (
    RunContext,
    ensure_transitions,
    job_seed,
    load_context,
    own_affinity,
    point_contexts,
    ppo_dict,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import (
    interaction_spearman,
    random_nmi,
    relative_error,
    score_against_truth,
    test_retest,
)
from policygradex.common.artifacts import atomic_save_npy, atomic_write_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import plot_heatmaps, save_figure
from policygradex.common.progress import status
from policygradex.common.threads import thread_limit
from policygradex.pipeline.affinity import split_half_reliability, subset_affinity
from policygradex.pipeline.clustering import cluster, standardize
from policygradex.pipeline.features import build_feature_set, projection_for, run_transitions
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.partitions import groups_from_labels, labels_from_groups
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.surrogate import pair_counts, run_surrogate
from policygradex.rl.config import PPOConfig
from policygradex.rl.ppo import train_ppo

TARGETS = ("return", "ppo", "logistic")


@dataclass(frozen=True)
class GroundTruthConfig:
    """Options of the ground-truth evaluation."""

    steps_per_task: int = 20_000
    """PPO fine-tuning budget per task of each subset."""
    learning_rate: float | None = None
    """Fine-tuning learning rate (None: the run's meta-training rate)."""
    max_subsets: int | None = None
    """Train only the first this many of the surrogate's subsets (None: all); every pair must stay covered."""
    eval_episodes: int = 10
    """Evaluation episodes per task for the return of each fine-tuned policy."""
    seeds_per_subset: int = 1
    """Independent fine-tunings per subset; f(S) is their mean (more seeds: a less noisy ground truth)."""
    target: Literal["return", "ppo", "logistic"] = "return"
    """Which real f(S) builds U_true and its groups (all three are measured and reported)."""
    seed: int = 0
    """Seed of the fine-tuning jobs."""
    random_draws: int = 1000
    """Random groupings drawn for the NMI floor."""


def surrogate_variants(table: SubsetTable, subsets: list[list[int]], f_true: np.ndarray, U_true: np.ndarray,
                       groups_true: list[list[int]], k: int, n: int, solver: str) -> dict[str, dict[str, float]]:
    """Both ways of evaluating f^ that the run stored, held-out and in-sample (the paper's L^), each turned into U by
    eq. 5 over all the run's subsets and clustered with k, scored against the ground truth by
    :func:`score_against_truth`."""
    all_subsets = table.subsets
    truth_labels = labels_from_groups(groups_true, n)
    out = {}
    for name in ("held_out", "in_sample"):
        f_hat = getattr(table, f"f_hat_{name}")
        if not np.isfinite(f_hat).all():
            continue
        labels = cluster(subset_affinity(all_subsets, f_hat, n), k=k, solver=solver, exhaustive_check=False).labels
        out[name] = score_against_truth(f_hat, labels, all_subsets, subsets, f_true, U_true, truth_labels)
    return out


def measure_cost(ctx: RunContext, subsets: list[list[int]], gt: GroundTruthConfig, ppo: dict[str, Any],
                 points: list[RunContext] | None = None) -> dict[str, Any]:
    """FLOPs and single-thread seconds of the surrogate (collect, gradients + projection, fits) for these subsets,
    and FLOPs of one PPO fine-tuning job, extrapolated from one measured iteration. ``points``: every expansion
    point of the run (:func:`~policygradex.analysis.context.point_contexts`, theta_star's ``ctx`` first; None: it
    alone), whose surrogates, each at its policy and configuration, are summed."""
    cfg = ctx.cfg
    with thread_limit(1):
        t_collect = t_grad = t_fit = 0.0
        flops_collect = flops_grad = flops_fit = 0
        for point in points or [ctx]:
            t0 = time.perf_counter()
            with FlopCounterMode(display=False) as fc_collect:
                trans = run_transitions(point.cfg, point.family, point.model)
            t_collect += time.perf_counter() - t0
            projection = projection_for(point.cfg, point.model)
            t0 = time.perf_counter()
            with FlopCounterMode(display=False) as fc_grad:
                features = build_feature_set(point.model, trans, projection, point.cfg.features)
            t_grad += time.perf_counter() - t0
            t0 = time.perf_counter()
            with FlopCounterMode(display=False) as fc_fit:
                run_surrogate(features, subsets, point.cfg.surrogate)
            t_fit += time.perf_counter() - t0
            flops_collect += fc_collect.get_total_flops()
            flops_grad += fc_grad.get_total_flops()
            flops_fit += fc_fit.get_total_flops()
        # one PPO iteration on a subset of the usual size, counted, then scaled to the job's iterations
        p = PPOConfig(**ppo)
        per_iter = p.envs_per_task * p.num_steps
        one = PPOConfig(**{**ppo, "steps_per_task": per_iter})
        iterations = max(1, p.steps_per_task // per_iter)
        flops_train = 0.0
        for s in subsets[: min(3, len(subsets))]:
            with FlopCounterMode(display=False) as fc_ppo:
                train_ppo(ctx.family, s, cfg.network, one, 0, init_state=ctx.model.state_dict())
            flops_train += fc_ppo.get_total_flops() * iterations
        flops_train *= len(subsets) / min(3, len(subsets))
    return {
        "surrogate_seconds": {"collect": t_collect, "gradients_projection": t_grad, "fits": t_fit,
                              "total": t_collect + t_grad + t_fit},
        "surrogate_flops": {"collect": flops_collect, "gradients_projection": flops_grad, "fits": flops_fit,
                            "total": flops_collect + flops_grad + flops_fit},
        "training_flops": flops_train,
    }


def ground_truth(run_dir: Path, gt: GroundTruthConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    """Fine-tune theta_star on the run's subsets (launcher jobs, cached), score the run's estimate against the
    result and write ground_truth.json, groups_true.json, affinity_true.npy, ground_truth.md and two figures under
    ``RUN_DIR/ground_truth``; returns the record."""
    ctx = load_context(run_dir, need=("subsets", "groups", "affinity"))
    points = point_contexts(ctx)  # theta_star alone, or every expansion point (the surrogate's cost)
    several = len(points) > 1
    own_path = own_affinity(ctx)
    n, names = ctx.family.n, ctx.names
    if gt.target not in TARGETS:
        raise PolicyGradExError(f"--target must be one of {', '.join(TARGETS)}, got {gt.target!r}")
    if gt.steps_per_task < 1 or gt.eval_episodes < 1 or gt.seeds_per_subset < 1:
        raise PolicyGradExError("--steps-per-task, --eval-episodes and --seeds-per-subset must be >= 1")
    table = SubsetTable.load(ctx.rd.subsets)
    groups_run = Groups.load(ctx.rd.groups, ctx.family.n)
    all_subsets = table.subsets
    m = len(all_subsets) if gt.max_subsets is None else min(gt.max_subsets, len(all_subsets))
    if m < 1:
        raise PolicyGradExError(f"--max-subsets must be >= 1, got {gt.max_subsets}")
    subsets = all_subsets[:m]
    f_hat = table.f_hat[:m]
    counts = pair_counts(subsets, n)
    if (counts == 0).any():
        i, j = np.argwhere(counts == 0)[0]
        raise PolicyGradExError(f"the first {m} subsets never hold tasks {names[i]!r} and {names[j]!r} together; "
                                "raise --max-subsets (or leave it out to train all subsets)")
    transitions = ensure_transitions(ctx, console)
    ppo = ppo_dict(ctx.cfg.ppo, steps_per_task=gt.steps_per_task,
                   learning_rate=gt.learning_rate or ctx.cfg.ppo.learning_rate)
    common = {"config": ctx.cfg.to_dict(), "theta_sha": ctx.theta_sha, "ppo": ppo, "eval_episodes": gt.eval_episodes,
              "objectives": True, "init": "theta_star"}
    paths = {"run_dir": str(ctx.rd.path), "transitions": str(transitions)}
    # replicate r of subset S: replicate 0 keeps the seed of single-replicate runs, so their cache stays valid
    def seed_of(s: list[int], r: int) -> int:
        return job_seed("ground-truth", gt.seed, tuple(s)) if r == 0 else job_seed("ground-truth", gt.seed, tuple(s), r)

    specs = [JobSpec("policygradex.analysis.context:train_job", {**common, "task_ids": s}, seed=seed_of(s, r),
                     label=",".join(names[i] for i in s), paths=paths)
             for r in range(gt.seeds_per_subset) for s in subsets]
    flat = run_jobs(specs, ctx.rd.path / "jobs", launcher, console,
                    f"ground truth: fine-tune {m} subsets x {gt.seeds_per_subset} seeds")
    replicates = [flat[r * m:(r + 1) * m] for r in range(gt.seeds_per_subset)]
    results = replicates[0]
    per_replicate = {"return": np.array([[r["mean_return"] for r in rep] for rep in replicates]),
                     "ppo": np.array([[r["objectives"]["ppo"] for r in rep] for rep in replicates]),
                     "logistic": np.array([[r["objectives"]["logistic"] for r in rep] for rep in replicates])}
    f_true = {t: v.mean(axis=0) for t, v in per_replicate.items()}

    U = load_npy(ctx.rd.affinity)  # what the run clustered: with expansion points, their combined U
    U_own = load_npy(own_path) if several else U  # theta_star's own
    U_same = subset_affinity(subsets, f_hat, n)
    k = groups_run.k
    labels_est = labels_from_groups(groups_run.index_lists(), n)
    cc = ctx.cfg.cluster
    labels_own = cluster(U_own, k=k, solver=cc.solver, exhaustive_check=False).labels if several else labels_est
    out_dir = ctx.rd.path / "ground_truth"
    per_target: dict[str, Any] = {}
    for target in TARGETS:
        U_true = subset_affinity(subsets, f_true[target], n)
        res = cluster(U_true, k=k, solver=cc.solver, exhaustive_check=False)
        labels_true = res.labels
        rho = spearmanr(f_hat, f_true[target]).statistic if np.std(f_true[target]) > 0 else float("nan")
        per_target[target] = {
            "U_true": U_true,
            "groups_true": groups_from_labels(labels_true),
            "nmi": float(normalized_mutual_info_score(labels_true, labels_est)),
            "spearman": float(rho),
            "spearman_interaction": interaction_spearman(subsets, f_hat, f_true[target], n),
            "reliability_true": _reliability(split_half_reliability(subsets, f_true[target], n)),
            "relative_error": relative_error(U_own, U_true),
            "relative_error_same_subsets": relative_error(U_same, U_true),
            "test_retest": test_retest(subsets, f_hat, per_replicate[target], labels_est, k, cc.solver)
            if gt.seeds_per_subset >= 2 else None,
        }
        if several:  # what the combined U gets, and what theta_star's own U alone would have
            per_target[target]["relative_error_combined"] = relative_error(U, U_true)
            per_target[target]["nmi_theta_star"] = float(normalized_mutual_info_score(labels_true, labels_own))
    main = per_target[gt.target]
    variants = surrogate_variants(table, subsets, f_true[gt.target], main["U_true"], main["groups_true"], k, n,
                                  cc.solver)
    sizes = [len(g) for g in groups_run.index_lists()]
    floor_mean, floor_std = random_nmi(labels_from_groups(main["groups_true"], n), sizes, gt.random_draws, gt.seed)

    with status(console, "measuring FLOPs and single-thread time of the surrogate"):
        cost = measure_cost(ctx, subsets, gt, ppo, points)
    train_seconds = float(sum(r["train_seconds"] for r in results))
    cost["training_seconds"] = train_seconds
    cost["speedup_flops"] = cost["training_flops"] / max(cost["surrogate_flops"]["total"], 1)
    cost["speedup_seconds"] = train_seconds / cost["surrogate_seconds"]["total"]

    record = {
        "family": ctx.family.name,
        "config": asdict(gt),
        "num_subsets": m,
        "k": k,
        "groups_estimated": [list(g) for g in groups_run.names],
        "groups_true": [[names[i] for i in g] for g in main["groups_true"]],
        "nmi": main["nmi"],
        "nmi_random": {"mean": floor_mean, "std": floor_std},
        "spearman": main["spearman"],
        "spearman_interaction": main["spearman_interaction"],
        "reliability_true": main["reliability_true"],
        "reliability_estimated": _reliability(split_half_reliability(subsets, f_hat, n)),
        "distinct_subsets": len({tuple(sorted(s)) for s in subsets}),
        "relative_error": main["relative_error"],
        "relative_error_same_subsets": main["relative_error_same_subsets"],
        "test_retest": main["test_retest"],
        "surrogate_variants": variants,
        "run_evaluation": ctx.cfg.surrogate.evaluation,
        "targets": {t: {k2: v for k2, v in d.items() if k2 != "U_true"} for t, d in per_target.items()},
        "cost": cost,
        "subsets": [{"tasks": s, "f_hat": float(f_hat[j]), **{f"f_{t}": float(f_true[t][j]) for t in TARGETS},
                     "relative_distance": results[j]["relative_distance"]} for j, s in enumerate(subsets)],
    }
    if several:
        record["expansion_points"] = list(ctx.cfg.features.expansion_points)
        if ctx.cfg.features.group_points is not None:
            record["group_points"] = [p.point_name for p in points if p.group is not None]
        record["nmi_theta_star"] = main["nmi_theta_star"]
        record["relative_error_combined"] = main["relative_error_combined"]
        record["groups_theta_star"] = [[names[i] for i in g] for g in groups_from_labels(labels_own)]
    atomic_save_npy(out_dir / "affinity_true.npy", main["U_true"])
    atomic_write_json(out_dir / "groups_true.json",
                      {"groups": record["groups_true"], "group_indices": main["groups_true"], "k": k,
                       "target": gt.target})
    atomic_write_json(out_dir / "ground_truth.json", record)
    estimated = ([(standardize(U_own), "theta_star's own U", "RdBu_r"),
                  (standardize(U), "combined U of the expansion points (clustered)", "RdBu_r")] if several
                 else [(standardize(U), "estimated U (PolicyGradEx)", "RdBu_r")])
    plot_heatmaps([*estimated, (standardize(main["U_true"]), f"true U (fine-tuning, f = {gt.target})", "RdBu_r")],
                  names, main["groups_true"], out_dir / "affinity_vs_true.png",
                  "standardised affinity, ordered by the true groups")
    _scatter(f_hat, f_true[gt.target], gt.target, main["spearman"], out_dir / "f_hat_vs_f.png")
    write_markdown(out_dir / "ground_truth.md", markdown(record))
    return record


def _scatter(f_hat: np.ndarray, f: np.ndarray, target: str, rho: float, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=110)
    ax.scatter(f_hat, f, s=10, alpha=0.7)
    ax.set_xlabel("surrogate f^(S)")
    ax.set_ylabel(f"real f(S) ({target})")
    ax.set_title(f"subsets: Spearman {rho:.2f}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _reliability(split: dict[str, Any] | None) -> float | None:
    """The Spearman-Brown reliability of a :func:`split_half_reliability` result (None when it had none)."""
    return None if split is None else float(split["reliability"])


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def markdown(record: dict[str, Any]) -> str:
    c = record["cost"]
    gt = record["config"]
    points = record.get("expansion_points")
    own = "theta_star's own " if points else ""
    lines = [
        f"# Ground truth: {record['family']}", "",
        f"{record['num_subsets']} subsets fine-tuned from theta_star with PPO ({gt['steps_per_task']} steps per task, "
        f"{gt.get('seeds_per_subset', 1)} seed(s) each); "
        f"true groups from U_true with f = {gt['target']}, k = {record['k']}.", "",
    ]
    if points:
        groups = record.get("group_points")
        also = f" and of group points {', '.join(groups)}" if groups else ""
        listed = ", ".join(f"{f:g}" for f in points)
        lines += [f"The run clusters the combined U of expansion points {listed}{also}: its groups are "
                  "those compared with the true groups. The truth fine-tunes theta_star, so f^, its split "
                  "halves and the relative error of U are theta_star's own (subsets.npz, affinity_theta_star.npy); "
                  "the combined U's relative error and the groups of theta_star's own U are shown beside them. The "
                  "surrogate's cost is summed over the points.", ""]
    estimated = "the run's groups, from the combined U," if points else "estimated"
    lines += ["| metric | value |", "|---|---|", f"| NMI ({estimated} vs true groups) | {record['nmi']:.3f} |"]
    if points:
        lines.append(f"| NMI of the groups of theta_star's own U (clustered with k) vs true groups | "
                     f"{record['nmi_theta_star']:.3f} |")
    lines += [
        f"| NMI of random groupings (floor) | {record['nmi_random']['mean']:.3f} ± {record['nmi_random']['std']:.3f} |",
        f"| Spearman({own}f^, f) over subsets | {record['spearman']:.3f} |",
        f"| same, after removing additive per-task effects | {record['spearman_interaction']:.3f} |",
        f"| split-half reliability of U_true / of {own}U (same subsets; halves of the "
        f"{record.get('distinct_subsets', record['num_subsets'])} distinct subsets) | {_num(record['reliability_true'])} / "
        f"{_num(record['reliability_estimated'])} |",
        f"| relative error of {own}U (standardised) | {record['relative_error']:.3f} |",
        f"| same, U from the same subsets only | {record['relative_error_same_subsets']:.3f} |",
    ]
    if points:
        lines.append(f"| relative error of the combined U (standardised) | {record['relative_error_combined']:.3f} |")
    lines += [
        f"| speedup in FLOPs | {c['speedup_flops']:.1f}x ({c['training_flops']:.3g} vs {c['surrogate_flops']['total']:.3g}) |",
        f"| speedup in seconds (1 thread) | {c['speedup_seconds']:.1f}x ({c['training_seconds']:.1f} s vs "
        f"{c['surrogate_seconds']['total']:.1f} s) |", "",
    ]
    tr = record.get("test_retest")
    if tr:
        half = gt["seeds_per_subset"] // 2
        lines += [
            f"How reproducible the ground truth is: the {gt['seeds_per_subset']} seeds per subset split into two halves "
            f"(even / odd seeds, about {half} each), each giving its own U_true and groups. The surrogate is compared "
            "with each half on the same footing as the halves with each other.", "",
            "| | half vs half (real training vs itself) | PolicyGradEx vs a half |", "|---|---|---|",
            f"| NMI of the groups | {tr['nmi_halves']:.3f} | {tr['nmi_estimated_vs_halves']:.3f} |",
            f"| Spearman of f over subsets | {tr['spearman_halves']:.3f} | {tr['spearman_estimated_vs_halves']:.3f} |",
            f"| same, after removing additive per-task effects | {tr['spearman_interaction_halves']:.3f} | "
            f"{tr['spearman_interaction_estimated_vs_halves']:.3f} |", "",
            f"Seed-to-seed reliability of U_true (the two halves' standardised U, stepped up to all seeds): "
            f"{_num(tr['reliability_seeds'])}.", "",
        ]
    if record.get("surrogate_variants"):
        lines += [f"Both evaluations of {own}f^ the run stored (held-out transitions, or in-sample as the paper's "
                  "L^), each through eq. 5 and the clustering, against this ground truth:", "",
                  "| f^ evaluated | NMI with the true groups | Spearman with f | same, additive task effects removed | "
                  "corr(std U, std U_true) |", "|---|---|---|---|---|"]
        for name, v in record["surrogate_variants"].items():
            mark = " (the run's)" if name == record.get("run_evaluation") else ""
            lines.append(f"| {name}{mark} | {v['nmi']:.3f} | {v['spearman']:.3f} | {v['spearman_interaction']:.3f} | "
                         f"{v['corr_standardized_U']:.3f} |")
        lines += [""]
    lines += [
        "Other choices of the real f(S):", "",
        "| f | NMI | Spearman | Spearman (interaction) | reliability of U_true | relative error | NMI half vs half |"
        + (" NMI of theta_star's own groups | relative error of the combined U |" if points else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if points else ""),
    ]
    for t, d in record["targets"].items():
        halves = d.get("test_retest")
        lines.append(f"| {t} | {d['nmi']:.3f} | {d['spearman']:.3f} | {d['spearman_interaction']:.3f} | "
                     f"{_num(d['reliability_true'])} | {d['relative_error']:.3f} | "
                     f"{_num(halves['nmi_halves']) if halves else 'n/a'} |"
                     + (f" {d['nmi_theta_star']:.3f} | {d['relative_error_combined']:.3f} |" if points else ""))
    lines += ["", f"Estimated groups{' (the combined U)' if points else ''}: "
              + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_estimated"])]
    if points:
        lines += ["", "Groups of theta_star's own U: "
                  + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_theta_star"])]
    lines += ["", "True groups: " + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_true"]), "",
              "Surrogate cost breakdown (FLOPs / seconds): " + ", ".join(
                  f"{k} {c['surrogate_flops'][k]:.3g} / {c['surrogate_seconds'][k]:.2f} s"
                  for k in ("collect", "gradients_projection", "fits")),
              "", "![estimated vs true](affinity_vs_true.png) ![f^ vs f](f_hat_vs_f.png)"]
    return "\n".join(lines)
