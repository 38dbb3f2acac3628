"""The Markdown report of a run (report.md) and its pictures."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policygradex.common.plots import plot_curve, plot_heatmaps
from policygradex.pipeline.baseline_choice import baseline_line
from policygradex.common.artifacts import load_json, load_npy
from policygradex.pipeline.clustering import standardize, standardized_corr
from policygradex.pipeline.confidence import WEAK_TASK
from policygradex.pipeline.group_record import Confidence, Groups
from policygradex.pipeline.transitions_budget import growth_line
from policygradex.rl.ppo import RETURN_WINDOW

if TYPE_CHECKING:
    from policygradex.pipeline.stages import RunState


def plot_affinity(U: np.ndarray, names: list[str], groups: list[list[int]], path: Path, title: str = "",
                  interaction: str = "subsets") -> None:
    """Two heatmaps ordered by group, white lines between groups: U of eq. 5 (``interaction="subsets"``: from f^ less
    its per-task fit; ``"matrix"``: from f^ itself, as the paper writes it), and its standardised interaction part
    (additive per-task effects removed, diagonal zeroed), which is what the SDP clusters."""
    first = ("affinity U (eq. 5; per-task part of f^ removed)" if interaction == "subsets" else
             "affinity U (eq. 5 on f^)")
    plot_heatmaps([(U, first, "viridis"),
                   (standardize(U), "interaction (std units, clustered)", "RdBu_r")],
                  names, groups, path, title or "task affinity, ordered by group")


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def markdown_matrix(U: np.ndarray, names: list[str]) -> str:
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, U):
        lines.append(f"| **{name}** | " + " | ".join(f"{x:.3g}" for x in row) + " |")
    return "\n".join(lines)


def partition_sentence(groups: Groups) -> str:
    """How the groups were found and how far from the best partition they can be, in one paragraph."""
    out = []
    method, k = groups.method, groups.k
    if method == "exact":
        out.append(f"These groups are the best partition into k = {k} groups of the objective the SDP relaxes (exact "
                   "search over all partitions).")
    check = groups.exhaustive_check
    if check:
        verdict = "optimal" if check.sdp_is_optimal else "NOT optimal"
        out.append(f"Exhaustive check over all partitions with k = {check.k}: the SDP groups are {verdict} "
                   f"(objective {check.sdp_objective:.4f} vs best {check.optimal_objective:.4f} on standardised U).")
    rel = groups.relaxation
    if rel and rel.bound == "spectral":
        out.append(f"Spectral bound (the relaxation without X >= 0, which is looser than the SDP): no partition into "
                   f"k = {rel.k} groups exceeds {rel.sdp_value:.4f}; this one scores {rel.partition_value:.4f} "
                   f"(gap {rel.gap:.4f}).")
    elif rel:
        tight = "the relaxation is tight: no partition does better" if rel.gap < 1e-3 else (
            "the relaxation is not tight here, so the bound is loose" if method == "exact" else
            "no partition can beat this one by more than the gap")
        out.append(f"Relaxation gap: SDP value {rel.sdp_value:.4f} vs this partition's {rel.partition_value:.4f} "
                   f"(gap {rel.gap:.4f}; {tight}).")
    return " ".join(out)


def confidence_lines(groups: Groups, names: list[str], baseline: str = "policy") -> list[str]:
    """How sure the groups are (see :mod:`policygradex.pipeline.confidence`): the verdict, then one line per group;
    ``baseline``: the run's ``--baseline`` (what the weak tasks' advice suggests)."""
    conf = groups.confidence
    if not conf:
        return []
    out = [f"**How sure:** {conf.verdict}"]
    grad = conf.gradient_reliability
    if grad is not None:
        out.append(f"Gradient signal over transitions (split-half reliability of the gradient interaction): {grad:.2f}.")
    if groups.nmi_planted is not None:
        out.append(f"NMI with the family's planted groups: {groups.nmi_planted:.2f}.")
    jac = conf.group_jaccard
    if jac and conf.transition_jaccard:
        out += ["", f"| group | tasks | stays together: Jaccard over {conf.reps} resamples of the {conf.resampled} | "
                    f"over {conf.transition_reps} resamples of the transitions | word (the lower) |",
                "|---|---|---|---|---|"]
        for gi, (g, j, t) in enumerate(zip(groups.indices, jac, conf.transition_jaccard)):
            out.append(f"| {gi + 1} | {', '.join(names[i] for i in g)} | {j:.2f} | {t:.2f} | {conf.word(gi)} |")
    elif jac:
        out += ["", f"| group | tasks | stays together (Jaccard over {conf.reps} resamples of the "
                    f"{conf.resampled}) |",
                "|---|---|---|"]
        for gi, (g, j) in enumerate(zip(groups.indices, jac)):
            out.append(f"| {gi + 1} | {', '.join(names[i] for i in g)} | {j:.2f} ({conf.word(gi)}) |")
    out += weak_task_lines(conf, names, baseline=baseline)
    return out


def weak_task_lines(conf: Confidence, names: list[str], limit: int = 20, baseline: str = "policy") -> list[str]:
    """One paragraph naming the tasks too weak to place (``Confidence.weak_tasks``), weakest first; none: [].
    ``baseline``: the run's ``--baseline``; the advice to try ``per_task`` is only for the value head's runs."""
    weak = sorted(conf.weak_tasks(), key=lambda i: conf.task_signal[i])
    if not weak:
        return []
    shown = ", ".join(f"{names[i]} ({conf.task_signal[i]:.2f})" for i in weak[:limit])
    more = f" and {len(weak) - limit} more" if len(weak) > limit else ""
    return ["", f"**Too weak to place:** {shown}{more}. Their own gradient direction does not reproduce across the "
                f"two halves of their transitions (signal below {WEAK_TASK}), so the group each is in is a guess. "
                "Raise --transitions (or have --target-reliability raise it)"
                + (", or, for tasks paid differently from the others, try --baseline per_task or auto."
                   if baseline == "policy" else ".")]


def final_return_line(last: dict[str, Any]) -> str:
    """The report's line on where meta-training ended: the mean return over each task's last episodes, or why
    there is none (curves written before the rolling window have no ``episodes`` column)."""
    ret = last.get("mean_return", float("nan"))
    if isinstance(ret, float) and math.isnan(ret):
        return "Final mean episodic return: no episode ended during meta-training."
    if "episodes" not in last:
        return f"Final mean episodic return (episodes that ended in the last iteration): {_fmt(ret)}."
    return (f"Final mean episodic return (each task's last {RETURN_WINDOW} episodes, tasks weighted equally): "
            f"{_fmt(ret)}.")


def write_report(st: "RunState") -> None:
    from policygradex.common.artifacts import atomic_write_text

    cfg, rd, fam = st.cfg, st.rd, st.family
    names = fam.task_names
    assert st.groups is not None
    groups_idx = st.groups.index_lists()
    assert st.U is not None
    plot_affinity(st.U, names, groups_idx, rd.heatmap, f"{fam.name}: affinity, {len(groups_idx)} groups",
                  st.cfg.cluster.interaction)
    plot_curve(st.curve, names, rd.curve_png, f"{fam.name}: meta-training (theta_star)")
    sur = st.surrogate
    last = st.curve[-1] if st.curve else {}
    lines = [
        f"# PolicyGradEx run: {fam.name}",
        "",
        f"{fam.n} tasks, seed {cfg.seed}. Stages this invocation: "
        + ", ".join(f"{k} {v}" for k, v in st.status.items()) + ".",
        "",
        "## Groups",
        "",
        f"k = {st.groups.k} ({st.groups.selection}"
        + (f", lambda = {st.groups.lam:.3g}" if st.groups.lam is not None else "") + ")",
        "",
    ]
    for gi, g in enumerate(st.groups.names):
        lines.append(f"- group {gi + 1}: {', '.join(g)}")
    lines += ["", partition_sentence(st.groups)]
    lines += ["", *confidence_lines(st.groups, names, baseline=cfg.features.baseline)]
    stats_path = rd.affinity_stats
    split = json.loads(stats_path.read_text()).get("split_half") if stats_path.exists() else None
    if split is not None and split.get("resampled") == "transitions":
        rel = split["reliability"]
        hint = "groups are mostly noise: raise the budget or N" if rel < 0.3 else (
            "moderate" if rel < 0.7 else "reproducible over transitions")
        lines += ["", f"Split-half reliability of the affinity over transitions: {rel:.2f} ({hint}). Mean over "
                  f"{split['splits']} random halvings of each task's {split['blocks']} blocks of transitions (r = "
                  f"{split['r_mean']:.2f} +- {split['r_sd']:.2f} between halves, stepped up by Spearman-Brown)."]
    elif split is not None:
        rel = split["reliability"]
        hint = "groups are mostly noise: raise the budget, N or m" if rel < 0.3 else (
            "moderate" if rel < 0.7 else "reproducible over subsets")
        lines += ["", f"Split-half reliability of the affinity: {rel:.2f} ({hint}). Mean over {split['splits']} random "
                  f"halvings of the {split['distinct_subsets']} distinct subsets (r = {split['r_mean']:.2f} +- "
                  f"{split['r_sd']:.2f} between halves, stepped up by Spearman-Brown); each half holds "
                  f"{split['pair_min']} to ~{split['pair_median']:.0f} (median) subsets per pair of tasks. Both "
                  "halves use the same transitions; `policygradex stability` measures how much U and the groups "
                  "change with a fresh sample of transitions."]
    lines += expansion_lines(st)
    lines += ["", "![affinity](affinity.png)", "", "## Timings", "", "| stage | seconds |", "|---|---|"]
    for stage in ("meta_train", "features", "surrogate", "affinity", "cluster"):
        lines.append(f"| {stage} | {_fmt(st.timings.get(stage, float('nan')))} |")
        for p in st.points if stage == "meta_train" else []:
            key = f"meta_train at point {p.point:g}" if p.group is None else f"meta_train at group {p.group}'s point"
            if p.group is not None or st.cfg.features.expansion_policy == "retrain":
                lines.append(f"| {key} | {_fmt(st.timings.get(key, float('nan')))} |")
        for p in st.points if stage in ("features", "surrogate", "affinity") else []:
            where = f"point {p.point:g}" if p.group is None else f"group {p.group}'s point"
            lines.append(f"| {stage} at {where} | {_fmt(p.timings.get(stage, float('nan')))} |")
    lines.append(f"| total | {_fmt(sum(st.timings.values()) + sum(sum(p.timings.values()) for p in st.points))} |")
    lines += [
        "",
        "## Meta-training",
        "",
        f"{cfg.ppo.budget_text()}, network {cfg.network.name} {list(cfg.network.hidden_sizes)}, "
        + ("with" if cfg.network.task_id else "without") + " a task id.",
        final_return_line(last),
        "theta_star's mean return per task, on the episodes behind the features: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in st.feature_meta.get("mean_episode_return", {}).items())
        + ". `policygradex compare DIR --single` trains each task alone and warns where one policy for all falls far "
        "below it.",
        "",
        "![curve](meta_train_curve.png)",
        "",
        "## Surrogate",
        "",
        f"N = {st.feature_meta.get('N', cfg.features.transitions_per_task)} transitions per task "
        f"(p = {st.feature_meta.get('p', '?')}, "
        f"d = {cfg.features.projection_dim}), advantages normalised {cfg.features.advantage_normalization}, "
        f"{cfg.features.holdout_fraction:.0%} held out, baseline {cfg.features.baseline}."
        + (f" {baseline_line(st.feature_meta['baseline'])}."
           if cfg.features.baseline == "auto" and isinstance(st.feature_meta.get("baseline"), dict) else "")
        + (" " + growth_line(st.feature_meta["growth"], cfg.features)
           if cfg.features.target_reliability is not None and st.feature_meta.get("growth") else ""),
        *surrogate_lines(cfg, sur),
        "",
        "## Affinity matrix",
        "",
        *(["affinity.csv holds the matrix.", "", "```", *affinity_summary(standardize(st.U), names, groups_idx),
           "```"] if fam.n > MATRIX_MAX_N else [markdown_matrix(st.U, names)]),
        "",
    ]
    atomic_write_text(rd.report, "\n".join(lines))


def expansion_lines(st: "RunState") -> list[str]:
    """With earlier expansion points: what the clustered U combines, and how each point's U agrees with it."""
    if not st.points:
        return []
    assert st.U is not None
    record = load_json(st.rd.affinity_stats).get("point_weights") if st.rd.affinity_stats.exists() else None
    weighted: dict[float | str, str] = {}
    if record and record.get("reliability"):
        w = record.get("weights")
        total = sum(w) if w else len(record["points"])
        for i, f in enumerate(record["points"]):
            r = record["reliability"][i]
            weighted[f if isinstance(f, str) else float(f)] = (
                f"weight {(w[i] if w else 1.0) / total:.2f}, gradient reliability {'-' if r is None else f'{r:.2f}'}; ")
    parts = []
    for p in [*st.points, st]:
        name = p.name
        split = load_json(p.rd.affinity_stats).get("split_half") if p.rd.affinity_stats.exists() else None
        U = load_npy(st.rd.affinity_theta_star) if p is st else p.U
        rel = "no split-half" if split is None else f"split-half reliability {split['reliability']:.2f}"
        ret = p.curve[-1].get("mean_return") if p.curve else None
        if isinstance(name, str):
            label = f"{name} (theta_star fine-tuned on group {p.group} for {p.point:g} of the budget"
        else:
            iteration = len(p.curve) if p.curve else st.cfg.earlier_points.get(name, st.cfg.ppo.iterations)
            label = f"{name:g} (iteration {iteration}"
        parts.append(f"{label}"
                     + (f", mean return {_fmt(ret)}" if ret is not None else "")
                     + f"; {weighted.get(name, '')}{rel}; r = {standardized_corr(U, st.U):.2f} with the "
                       "combined U)")
    how = ("each earlier one meta-trained on its own on that fraction of the budget"
           if st.cfg.features.expansion_policy == "retrain" else "each earlier one a snapshot of meta-training")
    mean = ("mean weighted by each point's gradient reliability (--point-weights reliability; equal where none "
            "is above 0)" if weighted else "mean")
    groups = (f" The group points' policies are theta_star fine-tuned on each group of a first clustering "
              f"(--group-points {st.cfg.features.group_points:g}): " + "; ".join(
                  f"group{p.group}: {', '.join(st.family.task_names[i] for i in members)}"
                  for p, members in zip([p for p in st.points if p.group is not None], st.rd.group_point_tasks())) + "."
              if st.cfg.features.group_points is not None else "")
    return ["", f"Expansion points: the U clustered is the {mean} of the standardised U's of the policies at "
            + "; ".join(parts) + f" ({how}). Each point's files are in points/F (points/groupJ); theta_star's own U "
            "is affinity_theta_star.npy." + groups]


def surrogate_lines(cfg: Any, sur: dict[str, Any]) -> list[str]:
    """The report's account of the surrogate: the subsets and their fits, or the closed form's statistics."""
    if sur.get("method") == "closed_form":
        rd_ = sur["relative_distance"]
        return [
            f"Closed-form surrogate (no subsets): per-task statistics b_k and a shared curvature over "
            f"{sur['curvature_rows_per_task']} of each task's {sur['rows_per_task']} fitting transitions; l2 = "
            f"{cfg.surrogate.l2}; f^ evaluated {sur['evaluation']}; confidence from {sur['blocks']} blocks of "
            "transitions per task.",
            f"Adapted theta distance ||P v|| / ||theta_star|| of the Newton step: one task alone median "
            f"{rd_['single_task_median']:.2%}, max {rd_['single_task_max']:.2%}; all tasks together "
            f"{rd_['all_tasks']:.2%}.",
        ]
    dist, f_hat = sur["relative_distance"], sur["f_hat"]
    method = sur.get("method", "exact")
    solver = (f"Batched L-BFGS: {sur['solver']['iterations']} iterations, {sur['solver']['converged']}/"
              f"{sur['num_subsets']} converged (max |grad| {sur['solver']['max_grad_inf_norm']:.2e})."
              if method == "exact" else "Newton-step surrogate: one Newton step per subset on per-task statistics.")
    return [
        f"m = {sur['num_subsets']} distinct subsets of size alpha = {sur['subset_size']} "
        + (f"(all C(n, alpha) = {sur['possible_subsets']} possible subsets, each once: {sur['requested_subsets']} were "
           "asked for)" if sur.get("all_subsets") else
           f"(of {sur.get('possible_subsets', '?')} possible; {sur['topped_up']} added to cover all pairs)")
        + f"; l2 = {cfg.surrogate.l2}; f^ evaluated {sur['evaluation']}.",
        solver,
        f"f^ range {f_hat['min']:.4f} .. {f_hat['max']:.4f}; adapted theta distance ||P v|| / ||theta_star||: "
        f"median {dist['median']:.2%}, max {dist['max']:.2%}.",
    ]


MATRIX_MAX_N = 30
"""Up to this many tasks report.md and ``show`` print the whole affinity matrix; above, :func:`affinity_summary`."""


def affinity_summary(U_std: np.ndarray, names: list[str], groups: list[list[int]], pairs: int = 10) -> list[str]:
    """What a large standardised U says, as plain lines instead of n^2 numbers: per group its size, the mean
    affinity within it and to the nearest other group (in standard deviations); then the ``pairs`` strongest pairs
    overall and the strongest pairs that the groups split. O(n^2) time, O(n^2) memory for U itself only."""
    n, k = len(names), len(groups)
    labels = np.empty(n, dtype=np.int64)
    for gi, g in enumerate(groups):
        labels[g] = gi
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    sums = onehot.T @ U_std @ onehot  # (k, k) block sums; the diagonal of U_std is 0
    sizes = onehot.sum(0)
    pair_counts = np.outer(sizes, sizes) - np.diag(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / pair_counts
    out = ["affinity in standard deviations, by group (within: mean over its pairs; nearest: the other group with "
           "the highest mean affinity to it):", ""]
    for gi in range(k):
        others = [(means[gi, gj], gj) for gj in range(k) if gj != gi]
        within = "n/a (one task)" if sizes[gi] < 2 else f"{means[gi, gi]:+.2f}"
        near = f"group {max(others)[1] + 1} at {max(others)[0]:+.2f}" if others else "none"
        out.append(f"  group {gi + 1}: {int(sizes[gi])} tasks, within {within}, nearest {near}")
    iu = np.triu_indices(n, 1)
    vals = U_std[iu]
    order = np.argsort(-vals, kind="stable")
    split = labels[iu[0]] != labels[iu[1]]

    def listed(idx: np.ndarray) -> list[str]:
        return [f"  {names[iu[0][j]]} + {names[iu[1][j]]}: {vals[j]:+.2f} (groups {labels[iu[0][j]] + 1}, "
                f"{labels[iu[1][j]] + 1})" for j in idx]

    out += ["", f"the {pairs} strongest pairs:", *listed(order[:pairs])]
    across = order[split[order]][:pairs]
    if len(across):
        out += ["", f"the {len(across)} strongest pairs that the groups split:", *listed(across)]
    return out


def matrix_text(U: np.ndarray, names: list[str], order: list[int], width: int = 80) -> str:
    """The standardised U (what is clustered) ordered by group as plain text that fits ``width`` columns: task
    names abbreviated to T1.. with a legend, 2 decimals, and the columns wrapped into blocks when they still do not
    fit. Nothing is truncated."""
    n = len(names)
    short = [f"T{i + 1}" for i in range(n)]
    cells = [[f"{U[i, j]:.2f}" for j in order] for i in order]
    cw = max(len(c) for row in cells for c in row) + 1
    cw = max(cw, max(len(s) for s in short) + 1)
    lw = max(len(short[i]) for i in order) + 1
    per_block = max(1, (width - lw) // cw)
    lines = textwrap.wrap("affinity U in standard deviations, as clustered (rows and columns ordered by group; "
                          "affinity.csv has the raw values):", width=width)
    for lo in range(0, n, per_block):
        cols = list(range(lo, min(n, lo + per_block)))
        lines.append(" " * lw + "".join(short[order[c]].rjust(cw) for c in cols))
        for r, i in enumerate(order):
            lines.append(short[i].ljust(lw) + "".join(cells[r][c].rjust(cw) for c in cols))
        lines.append("")
    legend = ", ".join(f"{short[i]} = {names[i]}" for i in range(n))
    lines.append(textwrap.fill("tasks: " + legend, width=width))
    return "\n".join(lines)
