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

A run with earlier expansion points (``--expansion-points``) clusters their combined U, so every resample does what
the pipeline did at every point: it recollects fresh transitions at each point's policy (theta_star and each
``points/F/theta_star.pt``; a job per resample and point, pinned by that policy's sha256, all points of a resample on
one seed as the pipeline's points share the feature seed), fits each point's f^ on the same subsets with that
point's N and baseline (``--transitions`` overrides N at every point), builds each point's U and combines them as
affinity.npy is (:func:`~policygradex.pipeline.clustering.combine`, theta_star first). The tables, co-clustering and
groups above are then the combined U's (the run's own entry is its affinity.npy and groups.json), also for the other
evaluation of f^; each point's own U's correlations are listed too (``per_point``). Pooling is per point, then
combined: each point's U averaged over the run and the resamples (the run's own only when every point is resampled
at the N it ran with), and the points' pooled U's combined; ``f_hat_pooled`` is theta_star's. Against a ground truth
(which fine-tunes theta_star) f^ is theta_star's own and the groups the combined U's, whose own correlation with
U_true is added. A run without earlier points gives the same jobs and files as before the points existed.

A run with group points (``--group-points``) resamples them like the earlier points (``points/groupJ``, combined
after them with the run's point weights), each group point's policy fixed as every point's is: a resample does not
redo the first clustering or the fine-tunings, so the spread measured is the transitions', at the run's policies,
not the whole method's (which would retrain the group points whenever a resample's first clustering moves).
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
    RunContext,
    job_context,
    job_seed,
    load_context,
    own_affinity,
    point_contexts,
    write_markdown,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import score_against_truth
from policygradex.common.artifacts import atomic_write_json, load_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.common.plots import plot_heatmaps
from policygradex.pipeline.affinity import affinity_matrix, subset_affinity
from policygradex.pipeline.clustering import cluster, combine, standardize, standardized_corr
from policygradex.pipeline.features import (
    build_feature_set,
    collect_transitions,
    projection_for,
)
from policygradex.pipeline.group_record import Groups
from policygradex.pipeline.partitions import groups_from_labels, labels_from_groups
from policygradex.pipeline.stages import recorded_point_weights
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
    """Collect fresh transitions with ``seed``, project them with the run's P, fit the run's subsets; return f^.

    The policy is ``theta_star.pt`` of ``args["run_dir"]``: the run's, or an earlier expansion point's
    (``points/F``), whose sha256 ``args["theta_sha"]`` pins."""
    cfg, family, model = job_context(args)
    fc = replace(cfg.features, transitions_per_task=int(args["transitions_per_task"]))
    transitions = collect_transitions(family, model, fc, cfg.ppo, seed, cfg.network.task_id)
    data = build_feature_set(model, transitions, projection_for(cfg, model), fc)
    result = run_surrogate(data, [list(s) for s in args["subsets"]], cfg.surrogate)
    return {"f_hat": result.f_hat.tolist(), "f_hat_in_sample": result.f_hat_in_sample.tolist(),
            "f_hat_held_out": result.f_hat_held_out.tolist(),
            "task_loss": np.nan_to_num(result.task_loss, nan=0.0).tolist()}


def resample_spec(point: RunContext, N: int, subsets: list[list[int]], r: int, seed: int,
                  several: bool) -> JobSpec:
    """Resample ``r`` at one expansion point: :func:`resample_job` with that point's configuration (its N and
    baseline, or ``N`` when ``--transitions`` overrides it) and the sha256 of its policy, so that a cached result
    is one of this policy's. Every point of a resample shares its seed, as the pipeline's points share the feature
    stage's. theta_star's spec has the form it had before expansion points existed, so a run without them keeps its
    cached jobs (``several``, whether the run has earlier points, only names the point in the label); an earlier
    point's also holds its fraction, a group point its group."""
    args: dict[str, Any] = {"config": point.cfg.to_dict(), "theta_sha": point.theta_sha, "subsets": subsets,
                            "transitions_per_task": N, "version": JOB_VERSION}
    if point.group is not None:
        args["group_point"] = point.group
    elif point.fraction != 1.0:
        args["expansion_point"] = point.fraction
    return JobSpec("policygradex.analysis.stability:resample_job", args, seed=job_seed("stability", seed, r),
                   label=f"resample {r}" + (f" at point {_name(point.point_name)}" if several else ""),
                   paths={"run_dir": str(point.rd.path)})


Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray | None], dict[str, float]]


def _truth_scorer(run: Path, subsets: list[list[int]]) -> tuple[dict[str, Any], Scorer] | None:
    """When ``policygradex ground-truth`` has run on these subsets: its target and size, and a function scoring an
    estimate (f^ over all subsets, its groups, and with expansion points the combined U they were clustered from)
    against it (:func:`~policygradex.analysis.scores.score_against_truth`, plus ``corr_standardized_U_combined``
    when a combined U is given). None without a ground truth or when it used other subsets."""
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

    def score(f_hat: np.ndarray, labels: np.ndarray, U_combined: np.ndarray | None = None) -> dict[str, float]:
        out = score_against_truth(f_hat, labels, subsets, subsets[:m], f_true, U_true, labels_true)
        if U_combined is not None:
            out["corr_standardized_U_combined"] = standardized_corr(U_combined, U_true)
        return out

    return {"target": target, "num_subsets": m}, score


def _scored(score: Scorer, f_hats: list[np.ndarray], labels: list[np.ndarray], f_pooled: np.ndarray,
            labels_pooled: np.ndarray, Us: list[np.ndarray] | None = None,
            U_pooled: np.ndarray | None = None) -> dict[str, Any]:
    """The run's estimate (entry 0), each resample's (mean over them) and the pooled one, scored; ``Us`` and
    ``U_pooled``: their combined U's in a run with expansion points (None otherwise)."""
    combined: list[np.ndarray | None] = list(Us) if Us is not None else [None] * len(f_hats)
    singles = [score(f, lab, U) for f, lab, U in zip(f_hats[1:], labels[1:], combined[1:])]
    return {"run": score(f_hats[0], labels[0], combined[0]),
            "resamples": {key: float(np.mean([x[key] for x in singles])) for key in singles[0]},
            "pooled": score(f_pooled, labels_pooled, U_pooled)}


def _agreement(Us: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, dict[str, float] | None]:
    """Agreement of the standardised U (:func:`standardized_corr`) and of the groups; entry 0 is the run's, the rest
    the resamples'."""
    among = list(itertools.combinations(range(1, len(Us)), 2))
    rest = range(1, len(Us))
    return {
        **_correlations(Us),
        "nmi_among_resamples": _pairs_mean([normalized_mutual_info_score(labels[i], labels[j]) for i, j in among])
        if among else None,
        "nmi_with_run": _pairs_mean([normalized_mutual_info_score(labels[0], labels[i]) for i in rest]),
    }


def _correlations(Us: list[np.ndarray]) -> dict[str, dict[str, float] | None]:
    """The correlation of the standardised U (:func:`standardized_corr`) among the resamples (None with one) and
    of each resample with the run; entry 0 is the run's, the rest the resamples'."""
    among = list(itertools.combinations(range(1, len(Us)), 2))
    return {
        "corr_among_resamples": _pairs_mean([standardized_corr(Us[i], Us[j]) for i, j in among]) if among else None,
        "corr_with_run": _pairs_mean([standardized_corr(Us[0], Us[i]) for i in range(1, len(Us))]),
    }


def _pairs_mean(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def _combined(per_point: list[list[np.ndarray]], weights: list[float] | None) -> list[np.ndarray]:
    """Estimate by estimate (the run's, then each resample's), the points' U's combined as affinity.npy is
    (:func:`combine` with the run's point ``weights``: one point's U as it is); ``per_point[j][e]`` is point j's U
    of estimate e."""
    return [combine([Us[e] for Us in per_point], weights) for e in range(len(per_point[0]))]


def stability(run_dir: Path, sc: StabilityConfig, launcher: LauncherConfig, console: Console) -> dict[str, Any]:
    """Resample the run's transitions ``sc.resamples`` times at every expansion point (launcher jobs, cached) and
    write stability.json, stability.md and coclustering.png under ``RUN_DIR/stability``; returns the record."""
    ctx = load_context(run_dir, need=("subsets", "groups", "affinity"))
    points = point_contexts(ctx, need=("subsets", "affinity"))
    several = len(points) > 1
    cfg, n, names = ctx.cfg, ctx.family.n, ctx.names
    if sc.resamples < 1:
        raise PolicyGradExError(f"--resamples must be >= 1, got {sc.resamples}")
    Ns = [sc.transitions_per_task or p.cfg.features.transitions_per_task for p in points]
    for N_point in Ns:
        if N_point < 8:
            raise PolicyGradExError(f"--transitions must be >= 8, got {N_point}")
    N = Ns[0]
    tables = [SubsetTable.load(p.rd.subsets) for p in points]
    run_subsets = tables[0]
    subsets = run_subsets.subsets
    for p, t in zip(points[1:], tables[1:]):
        if t.subsets != subsets:
            raise PolicyGradExError(f"{p.rd.subsets} holds other subsets than theta_star's; rerun the pipeline")
    groups_run = Groups.load(ctx.rd.groups, ctx.family.n)
    k = groups_run.k
    specs = [resample_spec(p, N_point, subsets, r, sc.seed, several)
             for r in range(sc.resamples) for p, N_point in zip(points, Ns)]
    at = f" at each of {len(points)} expansion points" if several else ""
    flat = run_jobs(specs, ctx.rd.path / "jobs", launcher, console,
                    f"stability: {sc.resamples} fresh samples of {_n_phrase(Ns)} transitions per task{at}")
    # results[j][r]: point j's resample r
    results = [flat[j::len(points)] for j in range(len(points))]

    kind, interaction = cfg.cluster.affinity, cfg.cluster.interaction == "subsets"
    own = [load_npy(own_affinity(ctx))] + [load_npy(p.rd.affinity) for p in points[1:]]
    point_Us = [[U_run] + [affinity_matrix(kind, subsets, np.asarray(res["f_hat"]), np.asarray(res["task_loss"]), n,
                                           interaction=interaction)[0] for res in point_results]
                for U_run, point_results in zip(own, results)]
    # the points weigh what they weigh in the run (--point-weights): a resample keeps the run's weights
    weights = recorded_point_weights(ctx.rd) if several else None
    Us = [load_npy(ctx.rd.affinity)] + _combined(point_Us, weights)[1:]  # the run's: the U it clustered
    labels = [labels_from_groups(groups_run.index_lists(), n)]
    labels += [cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels for U in Us[1:]]
    table = _agreement(Us, labels)
    # the same for the other evaluation of f^ (held-out <-> in-sample), which every resample computes too; through
    # eq. 5 whatever the run's affinity kind, as per-task losses exist for one evaluation only
    other = "in_sample" if cfg.surrogate.evaluation == "held_out" else "held_out"
    f_others = [[getattr(t, f"f_hat_{other}")] + [np.asarray(r[f"f_hat_{other}"]) for r in point_results]
                for t, point_results in zip(tables, results)]
    U_other = _combined([[subset_affinity(subsets, f, n, interaction) for f in f_other] for f_other in f_others],
                        weights)
    labels_other = [cluster(U, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels for U in U_other]
    table_other = {"evaluation": other, **_agreement(U_other, labels_other)}
    together = np.mean([lab[:, None] == lab[None, :] for lab in labels], axis=0)
    # U depends on N systematically (the held-out loss of a v_S fitted on few transitions carries an overfitting
    # penalty that shrinks with N), so only estimates with the same N are pooled: the run's own join the pool when
    # every point is resampled at the N it ran with
    same_n = all(N_point == p.cfg.features.transitions_per_task for N_point, p in zip(Ns, points))
    first = 0 if same_n else 1
    # pooled per point (its U averaged over the estimates), then the points combined
    pooled = combine([np.mean(point_U[first:], axis=0) for point_U in point_Us], weights)
    f_hats_points = [[t.f_hat] + [np.asarray(r["f_hat"]) for r in point_results]
                     for t, point_results in zip(tables, results)]
    f_hats = f_hats_points[0]  # theta_star's
    f_hat_pooled = np.mean(f_hats[first:], axis=0)
    pooled_labels = cluster(pooled, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels
    pooled_groups = groups_from_labels(pooled_labels)
    vs_truth = None
    truth = _truth_scorer(ctx.rd.path, subsets)
    if truth is not None:
        # the ground truth fine-tunes theta_star: f^ (Spearman, its U) is theta_star's own; the groups are the
        # combined U's, which with expansion points is also scored itself
        head, score = truth
        f_other_pooled = [np.mean(f_other[first:], axis=0) for f_other in f_others]
        U_other_pooled = combine([subset_affinity(subsets, f, n, interaction) for f in f_other_pooled], weights)
        other_pooled_labels = cluster(U_other_pooled, k=k, solver=cfg.cluster.solver, exhaustive_check=False).labels
        vs_truth = {**head, "evaluation": cfg.surrogate.evaluation,
                    **_scored(score, f_hats, labels, f_hat_pooled, pooled_labels,
                              *((Us, pooled) if several else ())),
                    "other": {"evaluation": other,
                              **_scored(score, f_others[0], labels_other, f_other_pooled[0], other_pooled_labels,
                                        *((U_other, U_other_pooled) if several else ()))}}
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
    if several:
        record["per_point"] = [
            {"point": p.point_name, "fraction": p.fraction, "transitions_per_task": N_point,
             "run_transitions_per_task": p.cfg.features.transitions_per_task,
             **_correlations(point_U),
             "f_hat_pooled": np.mean(f_hats_point[first:], axis=0).tolist()}
            for p, N_point, point_U, f_hats_point in zip(points, Ns, point_Us, f_hats_points)]
    out_dir = ctx.rd.path / "stability"
    atomic_write_json(out_dir / "stability.json", record)
    what = f"{sc.resamples} fresh transition samples" + (" at every expansion point" if several else "")
    plot_heatmaps([(together, "how often i and j share a group", "viridis"),
                   (standardize(pooled), "pooled U (standardised)", "RdBu_r")],
                  names, pooled_groups, out_dir / "coclustering.png",
                  f"{ctx.family.name}: the run and {what}, ordered by the pooled groups")
    write_markdown(out_dir / "stability.md", markdown(record))
    return record


def _n_phrase(Ns: list[int], points: list[float | str] | None = None) -> str:
    """N per task over the expansion points (theta_star's first): one number when they agree, else each point's,
    followed by the ``points``' names when given."""
    if len(set(Ns)) == 1:
        return str(Ns[0])
    return " / ".join(str(x) for x in Ns) + ("" if points is None else
                                              " at points " + " / ".join(_name(p) for p in points))


def _name(point: float | str) -> str:
    """A point's name in text: its fraction (``0.5``) or ``groupJ``."""
    return point if isinstance(point, str) else f"{point:g}"


def _point_of(entry: dict[str, Any]) -> float | str:
    """A ``per_point`` entry's point (records made before group points name it by its fraction alone)."""
    return entry.get("point", entry["fraction"])


def _stat(d: dict[str, float] | None) -> str:
    if d is None:
        return "n/a (one resample)"
    return f"{d['mean']:.3f} ± {d['std']:.3f} (min {d['min']:.3f}, max {d['max']:.3f})"


def _points_n(points: list[dict[str, Any]], key: str) -> str:
    """:func:`_n_phrase` of the record's ``per_point`` entries' ``key``, naming the points where they differ."""
    return _n_phrase([p[key] for p in points], [_point_of(p) for p in points])


def markdown(record: dict[str, Any]) -> str:
    sc = record["config"]
    points = record.get("per_point")
    if points:
        earlier = [_name(_point_of(p)) for p in points[1:] if not isinstance(_point_of(p), str)]
        groups = [_point_of(p) for p in points[1:] if isinstance(_point_of(p), str)]
        named = ", ".join(filter(None, [f"the earlier points {', '.join(earlier)}" if earlier else "",
                                        f"the group points {', '.join(map(str, groups))} (not retrained: the first "
                                        "clustering and the fine-tunings are the run's)" if groups else ""]))
        intro = (f"Every expansion point's policy fixed (theta_star, {named}), with the "
                 f"projection, the subsets and the surrogate; transitions recollected {sc['resamples']} times with "
                 f"fresh seeds at every point, {_points_n(points, 'transitions_per_task')} per task (the run used "
                 f"{_points_n(points, 'run_transitions_per_task')}); each point's U built as the run builds it and "
                 "the points combined as affinity.npy is (the mean of their standardised U's); groups of the "
                 f"combined U with the run's k = {record['k']}. Mean ± std over pairs.")
    else:
        intro = (f"theta_star, the projection, the subsets and the surrogate fixed; transitions recollected "
                 f"{sc['resamples']} times with fresh seeds, {record['transitions_per_task']} per task (the run used "
                 f"{record['run_transitions_per_task']}); groups with the run's k = {record['k']}. "
                 "Mean ± std over pairs.")
    lines = [f"# Stability across transition samples: {record['family']}", "", intro, "",
             "| f^ evaluated | | among the resamples | each resample vs the run |", "|---|---|---|---|"]
    blocks = [(f"{record['evaluation']} (the run's)", record)]
    if record.get("other_evaluation"):
        blocks.append((record["other_evaluation"]["evaluation"], record["other_evaluation"]))
    what = "the standardised combined U" if points else "the standardised U"
    for ev, t in blocks:
        lines += [f"| {ev} | correlation of {what} | {_stat(t['corr_among_resamples'])} | "
                  f"{_stat(t['corr_with_run'])} |",
                  f"| {ev} | NMI of the groups | {_stat(t['nmi_among_resamples'])} | {_stat(t['nmi_with_run'])} |"]
    if points:
        lines += ["", f"Each point's own U (f^ {record['evaluation']}, standardised), before the points are "
                  "combined:", "", "| expansion point | correlation among the resamples | each resample vs the run's |",
                  "|---|---|---|"]
        lines += [f"| {_name(_point_of(p))}{' (theta_star)' if _point_of(p) == 1 else ''} | "
                  f"{_stat(p['corr_among_resamples'])} | {_stat(p['corr_with_run'])} |" for p in points]
    pooled_from = ("the run and every resample" if record["pooled_includes_run"]
                   else "every resample; the run's N differs, so it is left out")
    pooled_what = (f"each point's U averaged over {pooled_from}, then the points combined" if points
                   else f"U averaged over {pooled_from}")
    lines += ["", "Run's groups: " + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_run"]), "",
              f"Pooled groups ({pooled_what}): "
              + "; ".join("{" + ", ".join(g) + "}" for g in record["groups_pooled"])
              + f" (NMI with the run's groups {record['nmi_pooled_vs_run']:.3f})", "",
              "![co-clustering](coclustering.png)"]
    vs = record.get("vs_ground_truth")
    if vs:
        combined = "corr_standardized_U_combined" in vs["run"]
        lines += ["", f"Against the ground truth (real fine-tuning of the first {vs['num_subsets']} subsets, "
                  f"f = {vs['target']}):", ""]
        if combined:
            lines += ["The ground truth fine-tunes theta_star: f^ and its U are theta_star's own; the groups are "
                      "those of the combined U, also correlated with U_true itself (last column).", ""]
        lines += ["| estimate | NMI with the true groups | Spearman with f | same, additive task effects removed | "
                  "corr(std U, std U_true) |" + (" corr(std combined U, std U_true) |" if combined else ""),
                  "|---|---|---|---|---|" + ("---|" if combined else "")]
        blocks = [(vs["evaluation"], vs)] + ([(vs["other"]["evaluation"], vs["other"])] if vs.get("other") else [])
        for ev, block in blocks:
            for key, label in (("run", "the run's transitions"), ("resamples", "one resample (mean over resamples)"),
                               ("pooled", "pooled")):
                a = block[key]
                lines.append(f"| f^ {ev}, {label} | {a['nmi']:.3f} | {a['spearman']:.3f} | "
                             f"{a['spearman_interaction']:.3f} | {a['corr_standardized_U']:.3f} |"
                             + (f" {a['corr_standardized_U_combined']:.3f} |" if combined else ""))
    return "\n".join(lines)
