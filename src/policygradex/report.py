"""Pictures and the Markdown report of a run: affinity heatmap ordered by group, meta-training curve, report.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .artifacts import _atomic  # noqa: E402
from .confidence import stability_word  # noqa: E402

if TYPE_CHECKING:
    from .pipeline import RunState


def plot_affinity(U: np.ndarray, names: list[str], groups: list[list[int]], path: Path, title: str = "") -> None:
    """Two heatmaps ordered by group, white lines between groups: U of eq. 5 (``--interaction subsets``: from f^ less
    its per-task fit), and its standardised interaction part (additive per-task effects removed, diagonal zeroed),
    which is what the SDP clusters."""
    from .clustering import standardize

    plot_heatmaps([(U, "affinity U (eq. 5; per-task part of f^ removed)", "viridis"),
                   (standardize(U), "interaction (std units, clustered)", "RdBu_r")],
                  names, groups, path, title or "task affinity, ordered by group")


def plot_heatmaps(panels: list[tuple[np.ndarray, str, str]], names: list[str], groups: list[list[int]], path: Path,
                  title: str) -> None:
    """Heatmaps (matrix, panel title, colormap) side by side, rows and columns ordered by ``groups``, with lines
    between groups; diverging colormaps are centred on 0."""
    order = [i for g in groups for i in g]
    n = len(names)
    labels = [names[i] for i in order]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + (1.0 + 0.9 * n) * len(panels) / 2, 1.2 + 0.42 * n), dpi=110)
    for ax, (M, label, cmap) in zip(np.atleast_1d(axes), panels):
        M = M[np.ix_(order, order)]
        lim = float(np.abs(M).max()) or 1.0
        kwargs = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
        im = ax.imshow(M, cmap=cmap, **kwargs)
        ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        edge = -0.5
        for g in groups[:-1]:
            edge += len(g)
            ax.axhline(edge, color="white" if cmap == "viridis" else "black", lw=2)
            ax.axvline(edge, color="white" if cmap == "viridis" else "black", lw=2)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure atomically as PNG and close it."""
    _atomic(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def plot_curve(curve: list[dict[str, Any]], names: list[str], path: Path, title: str = "") -> None:
    """Mean episodic return per task over meta-training (NaN iterations skipped)."""
    if not curve:
        return
    x = [row["env_steps_per_task"] for row in curve]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        y = np.array([row.get(f"return/{name}", np.nan) for row in curve], dtype=float)
        ok = ~np.isnan(y)
        ax.plot(np.array(x)[ok], y[ok], color=cmap(i / max(1, len(names) - 1)), lw=1, alpha=0.8, label=name)
    ax.set_xlabel("environment steps per task")
    ax.set_ylabel("episodic return")
    ax.set_title(title or "meta-training on all tasks", fontsize=10)
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.4g}"
    return str(x)


def markdown_matrix(U: np.ndarray, names: list[str]) -> str:
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, U):
        lines.append(f"| **{name}** | " + " | ".join(f"{x:.3g}" for x in row) + " |")
    return "\n".join(lines)


def partition_sentence(groups: dict[str, Any]) -> str:
    """How the groups were found and how far from the best partition they can be, in one paragraph."""
    out = []
    method, k = groups.get("method"), groups["k"]
    if method == "exact":
        out.append(f"These groups are the best partition into k = {k} groups of the objective the SDP relaxes (exact "
                   "search over all partitions).")
    check = groups.get("exhaustive_check")
    if check:
        verdict = "optimal" if check["sdp_is_optimal"] else "NOT optimal"
        out.append(f"Exhaustive check over all partitions with k = {check['k']}: the SDP groups are {verdict} "
                   f"(objective {check['sdp_objective']:.4f} vs best {check['optimal_objective']:.4f} on standardised U).")
    rel = groups.get("relaxation")
    if rel:
        tight = "the relaxation is tight: no partition does better" if rel["gap"] < 1e-3 else (
            "the relaxation is not tight here, so the bound is loose" if method == "exact" else
            "no partition can beat this one by more than the gap")
        out.append(f"Relaxation gap: SDP value {rel['sdp_value']:.4f} vs this partition's {rel['partition_value']:.4f} "
                   f"(gap {rel['gap']:.4f}; {tight}).")
    return " ".join(out)


def confidence_lines(groups: dict[str, Any], names: list[str]) -> list[str]:
    """How sure the groups are (see :mod:`policygradex.confidence`): the verdict, then one line per group."""
    conf = groups.get("confidence")
    if not conf:
        return []
    out = [f"**How sure:** {conf['verdict']}"]
    grad = conf.get("gradient_reliability")
    if grad is not None:
        out.append(f"Gradient signal over transitions (split-half reliability of the gradient interaction): {grad:.2f}.")
    if groups.get("nmi_planted") is not None:
        out.append(f"NMI with the family's planted groups: {groups['nmi_planted']:.2f}.")
    jac = conf.get("group_jaccard")
    if jac:
        out += ["", f"| group | tasks | stays together (Jaccard over {conf['reps']} resamples of the subsets) |",
                "|---|---|---|"]
        for gi, (g, j) in enumerate(zip(groups["group_indices"], jac)):
            out.append(f"| {gi + 1} | {', '.join(names[i] for i in g)} | {j:.2f} ({stability_word(j)}) |")
    return out


def write_report(st: "RunState") -> None:
    from .artifacts import atomic_write_text

    cfg, rd, fam = st.cfg, st.rd, st.family
    names = fam.task_names
    groups_idx = st.groups["group_indices"]
    assert st.U is not None
    plot_affinity(st.U, names, groups_idx, rd.heatmap, f"{fam.name}: affinity, {len(groups_idx)} groups")
    plot_curve(st.curve, names, rd.curve_png, f"{fam.name}: meta-training (theta_star)")
    sur = st.surrogate
    dists = [s["relative_distance"] for s in sur["subsets"]]
    f_hat = np.array([s["f_hat"] for s in sur["subsets"]])
    last = st.curve[-1] if st.curve else {}
    lines = [
        f"# PolicyGradEx run: {fam.name}",
        "",
        f"{fam.n} tasks, seed {cfg.seed}. Stages this invocation: "
        + ", ".join(f"{k} {v}" for k, v in st.status.items()) + ".",
        "",
        "## Groups",
        "",
        f"k = {st.groups['k']} ({st.groups['selection']}"
        + (f", lambda = {st.groups['lam']:.3g}" if st.groups.get("lam") is not None else "") + ")",
        "",
    ]
    for gi, g in enumerate(st.groups["groups"]):
        lines.append(f"- group {gi + 1}: {', '.join(g)}")
    lines += ["", partition_sentence(st.groups)]
    lines += ["", *confidence_lines(st.groups, names)]
    stats_path = rd.path / "affinity_stats.json"
    split = json.loads(stats_path.read_text()).get("split_half") if stats_path.exists() else None
    if split is not None:
        rel = split["reliability"]
        hint = "groups are mostly noise: raise the budget, N or m" if rel < 0.3 else (
            "moderate" if rel < 0.7 else "reproducible over subsets")
        lines += ["", f"Split-half reliability of the affinity: {rel:.2f} ({hint}). Mean over {split['splits']} random "
                  f"halvings of the {split['distinct_subsets']} distinct subsets (r = {split['r_mean']:.2f} +- "
                  f"{split['r_sd']:.2f} between halves, stepped up by Spearman-Brown); each half holds "
                  f"{split['pair_min']} to ~{split['pair_median']:.0f} (median) subsets per pair of tasks. Both "
                  "halves use the same transitions; `policygradex stability` measures how much U and the groups "
                  "change with a fresh sample of transitions."]
    lines += ["", "![affinity](affinity.png)", "", "## Timings", "", "| stage | seconds |", "|---|---|"]
    for stage in ("meta_train", "features", "surrogate", "affinity", "cluster"):
        lines.append(f"| {stage} | {_fmt(st.timings.get(stage, float('nan')))} |")
    lines.append(f"| total | {_fmt(sum(st.timings.values()))} |")
    lines += [
        "",
        "## Meta-training",
        "",
        f"{cfg.ppo.steps_per_task} steps per task, {cfg.ppo.envs_per_task} envs x {cfg.ppo.num_steps} steps per task "
        f"per rollout, network {cfg.network.name} {list(cfg.network.hidden_sizes)}, "
        + ("with" if cfg.network.task_id else "without") + " a task id.",
        f"Final mean episodic return (last iteration): {_fmt(last.get('mean_return', float('nan')))}.",
        "theta_star's mean return per task, on the episodes behind the features: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in st.feature_meta.get("mean_episode_return", {}).items())
        + ". `policygradex compare DIR --single` trains each task alone and warns where one policy for all falls far "
        "below it.",
        "",
        "![curve](meta_train_curve.png)",
        "",
        "## Surrogate",
        "",
        f"N = {cfg.features.transitions_per_task} transitions per task (p = {st.feature_meta.get('p', '?')}, "
        f"d = {cfg.features.projection_dim}), advantages normalised {cfg.features.advantage_normalization}, "
        f"{cfg.features.holdout_fraction:.0%} held out.",
        f"m = {sur['num_subsets']} distinct subsets of size alpha = {sur['subset_size']} "
        + (f"(all C(n, alpha) = {sur['possible_subsets']} possible subsets, each once: {sur['requested_subsets']} were "
           "asked for)" if sur.get("all_subsets") else
           f"(of {sur.get('possible_subsets', '?')} possible; {sur['topped_up']} added to cover all pairs)")
        + f"; l2 = {cfg.surrogate.l2}; f^ evaluated {sur['evaluation']}.",
        f"Batched L-BFGS: {sur['solver']['iterations']} iterations, {sur['solver']['converged']}/{sur['num_subsets']} "
        f"converged (max |grad| {sur['solver']['max_grad_inf_norm']:.2e}).",
        f"f^ range {f_hat.min():.4f} .. {f_hat.max():.4f}; adapted theta distance ||P v|| / ||theta_star||: "
        f"median {np.median(dists):.2%}, max {np.max(dists):.2%}.",
        "",
        "## Affinity matrix",
        "",
        markdown_matrix(st.U, names),
        "",
    ]
    atomic_write_text(rd.report, "\n".join(lines))
