"""``policygradex stability RUN_DIR``: would the groups come out the same from another sample of transitions?

The run's affinity U is computed from one sample of N transitions per task, collected by theta_star. Its split-half
reliability (in ``report.md``) splits the *subsets* but reuses those transitions, so it cannot see how much of U is
sampling noise in the per-transition gradients. This command keeps everything else fixed (theta_star, the projection
P, the subsets, the surrogate) and recollects the transitions ``resamples`` times with fresh seeds (optionally with
another N), each a launcher job (parallel, cached, resumable). It reports:

- the correlation of the standardised U (the part the SDP sees) between resamples, and with the run's U;
- the NMI between the groups of the resamples (the run's k), and with the run's groups;
- both of the above for the other evaluation of f^ too (held-out <-> in-sample), through eq. 5;
- the co-clustering matrix: how often tasks i and j share a group, over the run and its resamples;
- pooled groups: the clustering of U averaged over the run and all resamples, an estimate from (resamples + 1) N
  transitions per task (the same subsets, so the average is eq. 5 on the averaged f^).

Stable groups have co-clustering entries near 0 or 1 and pairwise NMI near 1.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.console import Console
from sklearn.metrics import normalized_mutual_info_score

from policygradex.analysis.context import (
    job_context,
    job_seed,
    load_context,
    refuse_expansion_points,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import score_against_truth
from policygradex.common.artifacts import atomic_write_json, load_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import plot_heatmaps
from policygradex.pipeline.affinity import affinity_matrix, subset_affinity
from policygradex.pipeline.clustering import cluster, standardize, standardized_corr
from policygradex.pipeline.features import (
    build_feature_set,
    collect_transitions,
    projection_for,
)
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.partitions import groups_from_labels, labels_from_groups
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.surrogate import run_surrogate

JOB_VERSION = 2
"""Part of every resample job's spec: bump it when what a job returns changes, so cached results are recomputed."""


@dataclass(frozen=True)
class StabilityConfig:
    """Options of the stability analysis."""

    resamples: int = 5
    """Fresh transition samples, each giving its own U and groups."""
    transitions_per_task: int | None = None
    """N per task in each resample (None: the run's N); a larger N shows what more data would buy."""
    seed: int = 0
    """Seed from which the resamples' collection seeds are derived."""


def resample_job(args: dict[str, Any], seed: int) -> dict[str, Any]:
    """Collect fresh transitions with ``seed``, project them with the run's P, fit the run's subsets; return f^."""
    cfg, family, model = job_context(args)
    fc = replace(cfg.features, transitions_per_task=int(args["transitions_per_task"]))
    transitions = collect_transitions(family, model, fc, cfg.ppo, seed, cfg.network.task_id)
    data = build_feature_set(model, transitions, projection_for(cfg, model), fc)
    result = run_surrogate(data, [list(s) for s in args["subsets"]], cfg.surrogate)
    return {"f_hat": result.f_hat.tolist(), "f_hat_in_sample": result.f_hat_in_sample.tolist(),
            "f_hat_held_out": result.f_hat_held_out.tolist(),
            "task_loss": np.nan_to_num(result.task_loss, nan=0.0).tolist()}


Scorer = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def _truth_scorer(run: Path, subsets: list[list[int]]) -> tuple[dict[str, Any], Scorer] | None:
    """When ``policygradex ground-truth`` has run on these subsets: its target and size, and a function scoring an
    estimate (f^ over all subsets, its groups) against it (:func:`~policygradex.analysis.scores.score_against_truth`). None without a
    ground truth or when it used other subsets."""
    gt_path, groups_path = run / "ground_truth" / "ground_truth.json", run / "ground_truth" / "groups_true.json"
    if not gt_path.exists() or not groups_path.exists():
        return None
    truth = load_json(gt_path)
    m = int(truth["num_subsets"])
    if [s["tasks"] for s in truth["subsets"]] != subsets[:m]:
        return None
    target = truth["config"]["target"]
    f_true = np.array([s[f"f_{target}"] for s in truth["subsets"]])
    U_true = load_npy(run / "ground_truth" / "affinity_true.npy")
    labels_true = labels_from_groups(load_json(groups_path)["group_indices"], len(U_true))

    def score(f_hat: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        return score_against_truth(f_hat, labels, subsets, subsets[:m], f_true, U_true, labels_true)

    return {"target": target, "num_subsets": m}, score


def _scored(score: Scorer, f_hats: list[np.ndarray], labels: list[np.ndarray], f_pooled: np.ndarray,
            labels_pooled: np.ndarray) -> dict[str, Any]:
    """The run's estimate (entry 0), each resample's (mean over them) and the pooled one, scored."""
    singles = [score(f, lab) for f, lab in zip(f_hats[1:], labels[1:])]
    return {"run": score(f_hats[0], labels[0]),
            "resamples": {key: float(np.mean([x[key] for x in singles])) for key in singles[0]},
            "pooled": score(f_pooled, labels_pooled)}


def _agreement(Us: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, dict[str, float] | None]:
    """Agreement of the standardised U (:func:`standardized_corr`) and of the groups; entry 0 is the run's, the rest
    the resamples'."""
    among = list(itertools.combinations(range(1, len(Us)), 2))
    rest = range(1, len(Us))
    return {
        "corr_among_resamples": _pairs_mean([standardized_corr(Us[i], Us[j]) for i, j in among]) if among else None,
        "corr_with_run": _pairs_mean([standardized_corr(Us[0], Us[i]) for i in rest]),
        "nmi_among_resamples": _pairs_mean([normalized_mutual_info_score(labels[i], labels[j]) for i, j in among])
        if among else None,
        "nmi_with_run": _pairs_mean([normalized_mutual_info_score(labels[0], labels[i]) for i in rest]),
    }


def _pairs_mean(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def stability(run_dir: Path, sc: StabilityConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    ctx = load_context(run_dir, need=("subsets", "groups", "affinity"))
    refuse_expansion_points(ctx, "stability")
    cfg, n, names = ctx.cfg, ctx.family.n, ctx.names
    if sc.resamples < 1:
        raise PolicyGradExError(f"--resamples must be >= 1, got {sc.resamples}")
    N = sc.transitions_per_task or cfg.features.transitions_per_task
    if N < 8:
        raise PolicyGradExError(f"--transitions must be >= 8, got {N}")
    run_subsets = SubsetTable.load(ctx.rd.subsets)
    subsets = run_subsets.subsets
    groups_run = Groups.load(ctx.rd.groups, ctx.family.n)
    k = groups_run.k
    common = {"config": cfg.to_dict(), "theta_sha": ctx.theta_sha, "subsets": subsets,
              "transitions_per_task": N, "version": JOB_VERSION}
    specs = [JobSpec("policygradex.analysis.stability:resample_job", common, seed=job_seed("stability", sc.seed, r),
                     label=f"resample {r}", paths={"run_dir": str(ctx.rd.path)}) for r in range(sc.resamples)]
    results = run_jobs(specs, ctx.rd.path / "jobs", launcher, console,
                       f"stability: {sc.resamples} fresh samples of {N} transitions per task")

    kind = cfg.cluster.affinity
    Us = [load_npy(ctx.rd.affinity)]
    for res in results:
        Us.append(affinity_matrix(kind, subsets, np.asarray(res["f_hat"]), np.asarray(res["task_loss"]), n)[0])
    labels = [labels_from_groups(groups_run.index_lists(), n)]
    labels += [cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels for U in Us[1:]]
    table = _agreement(Us, labels)
    # the same for the other evaluation of f^ (held-out <-> in-sample), which every resample computes too; through
    # eq. 5 whatever the run's affinity kind, as per-task losses exist for one evaluation only
    other = "in_sample" if cfg.surrogate.evaluation == "held_out" else "held_out"
    f_other = [getattr(run_subsets, f"f_hat_{other}")] + \
        [np.asarray(r[f"f_hat_{other}"]) for r in results]
    U_other = [subset_affinity(subsets, f, n) for f in f_other]
    labels_other = [cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels for U in U_other]
    table_other = {"evaluation": other, **_agreement(U_other, labels_other)}
    together = np.mean([lab[:, None] == lab[None, :] for lab in labels], axis=0)
    # U depends on N systematically (the held-out loss of a v_S fitted on few transitions carries an overfitting
    # penalty that shrinks with N), so only estimates with the same N are pooled
    same_n = N == cfg.features.transitions_per_task
    first = 0 if same_n else 1
    pooled = np.mean(Us[first:], axis=0)
    f_hats = [run_subsets.f_hat] + [np.asarray(r["f_hat"]) for r in results]
    f_hat_pooled = np.mean(f_hats[first:], axis=0)
    pooled_labels = cluster(pooled, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels
    pooled_groups = groups_from_labels(pooled_labels)
    vs_truth = None
    truth = _truth_scorer(ctx.rd.path, subsets)
    if truth is not None:
        head, score = truth
        f_other_pooled = np.mean(f_other[first:], axis=0)
        other_pooled_labels = cluster(subset_affinity(subsets, f_other_pooled, n), k=k, solver=cfg.cluster.solver,
                                      exhaustive_check=False).labels
        vs_truth = {**head, "evaluation": cfg.surrogate.evaluation,
                    **_scored(score, f_hats, labels, f_hat_pooled, pooled_labels),
                    "other": {"evaluation": other,
                              **_scored(score, f_other, labels_other, f_other_pooled, other_pooled_labels)}}
    record = {
        "family": ctx.family.name, "config": asdict(sc), "transitions_per_task": N,
        "run_transitions_per_task": cfg.features.transitions_per_task, "k": k, "task_names": names,
        "evaluation": cfg.surrogate.evaluation,
        **table,
        "other_evaluation": table_other,
        "nmi_pooled_vs_run": float(normalized_mutual_info_score(labels[0], labels_from_groups(pooled_groups, n))),
        "groups_run": [list(g) for g in groups_run.names],
        "groups_resamples": [[[names[i] for i in g] for g in groups_from_labels(lab)] for lab in labels[1:]],
        "groups_pooled": [[names[i] for i in g] for g in pooled_groups],
        "group_indices_pooled": pooled_groups,
        "pooled_includes_run": same_n,
        "f_hat_pooled": f_hat_pooled.tolist(),
        "coclustering": together.tolist(),
        "vs_ground_truth": vs_truth,
    }
    out_dir = ctx.rd.path / "stability"
    atomic_write_json(out_dir / "stability.json", record)
    plot_heatmaps([(together, "how often i and j share a group", "viridis"),
                   (standardize(pooled), "pooled U (standardised)", "RdBu_r")],
                  names, pooled_groups, out_dir / "coclustering.png",
                  f"{ctx.family.name}: the run and {sc.resamples} fresh transition samples, ordered by the pooled groups")
    write_markdown(out_dir / "stability.md", markdown(record))
    return record


def _stat(d: dict[str, float] | None) -> str:
    if d is None:
        return "n/a (one resample)"
    return f"{d['mean']:.3f} ± {d['std']:.3f} (min {d['min']:.3f}, max {d['max']:.3f})"


def markdown(record: dict[str, Any]) -> str:
    sc = record["config"]
    lines = [f"# Stability across transition samples: {record['family']}", "",
             f"theta_star, the projection, the subsets and the surrogate fixed; transitions recollected {sc['resamples']} "
             f"times with fresh seeds, {record['transitions_per_task']} per task (the run used "
             f"{record['run_transitions_per_task']}); groups with the run's k = {record['k']}. Mean ± std over pairs.", "",
             "| f^ evaluated | | among the resamples | each resample vs the run |", "|---|---|---|---|"]
    blocks = [(f"{record['evaluation']} (the run's)", record)]
    if record.get("other_evaluation"):
        blocks.append((record["other_evaluation"]["evaluation"], record["other_evaluation"]))
    for ev, t in blocks:
        lines += [f"| {ev} | correlation of the standardised U | {_stat(t['corr_among_resamples'])} | "
                  f"{_stat(t['corr_with_run'])} |",
                  f"| {ev} | NMI of the groups | {_stat(t['nmi_among_resamples'])} | {_stat(t['nmi_with_run'])} |"]
    pooled_from = ("the run and every resample" if record["pooled_includes_run"]
                   else "every resample; the run's N differs, so it is left out")
    lines += ["", "Run's groups: " + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_run"]), "",
              f"Pooled groups (U averaged over {pooled_from}): "
              + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_pooled"])
              + f" (NMI with the run's groups {record['nmi_pooled_vs_run']:.3f})", "",
              "![co-clustering](coclustering.png)"]
    vs = record.get("vs_ground_truth")
    if vs:
        lines += ["", f"Against the ground truth (real fine-tuning of the first {vs['num_subsets']} subsets, "
                  f"f = {vs['target']}):", "",
                  "| estimate | NMI with the true groups | Spearman with f | same, additive task effects removed | "
                  "corr(std U, std U_true) |", "|---|---|---|---|---|"]
        blocks = [(vs["evaluation"], vs)] + ([(vs["other"]["evaluation"], vs["other"])] if vs.get("other") else [])
        for ev, block in blocks:
            for key, label in (("run", "the run's transitions"), ("resamples", "one resample (mean over resamples)"),
                               ("pooled", "pooled")):
                a = block[key]
                lines.append(f"| f^ {ev}, {label} | {a['nmi']:.3f} | {a['spearman']:.3f} | "
                             f"{a['spearman_interaction']:.3f} | {a['corr_standardized_U']:.3f} |")
    return "\n".join(lines)
