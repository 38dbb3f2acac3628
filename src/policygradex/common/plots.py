"""Figures: task-by-task heatmaps ordered by group, training curves, and saving a figure atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from policygradex.common.artifacts import atomic_write


LABELLED_MAX_N = 30
"""Up to this many tasks a heatmap names every row and column; above, it numbers the groups instead."""
LEGEND_MAX_TASKS = 20
"""Up to this many tasks the meta-training curve draws one line per task; above, the median and a 10-90% band."""


def plot_heatmaps(panels: list[tuple[np.ndarray, str, str]], names: list[str], groups: list[list[int]], path: Path,
                  title: str) -> None:
    """Heatmaps (matrix, panel title, colormap) side by side, rows and columns ordered by ``groups``, with lines
    between groups; diverging colormaps are centred on 0. Above LABELLED_MAX_N tasks the figure keeps a fixed size
    (about 6 inches a panel), draws no task names and marks each group's centre with its number instead, and the
    group lines thin out; the matrix is drawn with one pixel per entry at most."""
    order = [i for g in groups for i in g]
    n = len(names)
    labelled = n <= LABELLED_MAX_N
    side = 1.0 + 0.42 * n if labelled else 6.0
    width = (1.0 + 0.9 * n) / 2 if labelled else 6.5
    fig, axes = plt.subplots(1, len(panels), figsize=(1.0 + width * len(panels), 1.2 + side), dpi=110)
    starts = np.cumsum([0] + [len(g) for g in groups])
    for ax, (M, label, cmap) in zip(np.atleast_1d(axes), panels):
        M = M[np.ix_(order, order)]
        lim = float(np.abs(M).max()) or 1.0
        kwargs = {"vmin": -lim, "vmax": lim} if cmap == "RdBu_r" else {}
        im = ax.imshow(M, cmap=cmap, interpolation="nearest" if labelled else "antialiased", **kwargs)
        if labelled:
            labels = [names[i] for i in order]
            ax.set_xticks(range(n), labels, rotation=60, ha="right", fontsize=8)
            ax.set_yticks(range(n), labels, fontsize=8)
        else:
            shown = range(0, len(groups), max(1, len(groups) // 20))  # at most ~20 group numbers per axis
            centres = [(starts[g] + starts[g + 1] - 1) / 2 for g in shown]
            ax.set_xticks(centres, [str(g + 1) for g in shown], fontsize=7)
            ax.set_yticks(centres, [str(g + 1) for g in shown], fontsize=7)
            ax.set_xlabel(f"{n} tasks, ordered by group (group numbers)", fontsize=8)
        lw = 2 if len(groups) <= 12 else (1 if len(groups) <= 40 else 0.4)
        for edge in starts[1:-1] - 0.5:
            ax.axhline(edge, color="white" if cmap == "viridis" else "black", lw=lw)
            ax.axvline(edge, color="white" if cmap == "viridis" else "black", lw=lw)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(label, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> None:
    """Write a matplotlib figure atomically as PNG and close it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def plot_curve(curve: list[dict[str, Any]], names: list[str], path: Path, title: str = "") -> None:
    """Mean episodic return per task over meta-training (NaN iterations skipped)."""
    if not curve:
        return
    x = [row["env_steps_per_task"] for row in curve]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    if len(names) <= LEGEND_MAX_TASKS:
        cmap = plt.get_cmap("viridis")
        for i, name in enumerate(names):
            y = np.array([row.get(f"return/{name}", np.nan) for row in curve], dtype=float)
            ok = ~np.isnan(y)
            ax.plot(np.array(x)[ok], y[ok], color=cmap(i / max(1, len(names) - 1)), lw=1, alpha=0.8, label=name)
        ax.legend(fontsize=7, ncol=2, loc="best")
    else:  # many tasks: the spread over tasks of each iteration's per-task mean return
        Y = np.array([[row.get(f"return/{name}", np.nan) for name in names] for row in curve], dtype=float)
        seen = ~np.isnan(Y).all(axis=1)
        xs = np.array(x, dtype=float)[seen]
        q10, q50, q90 = (np.nanpercentile(Y[seen], q, axis=1) for q in (10, 50, 90)) if seen.any() else ([],) * 3
        ax.fill_between(xs, q10, q90, alpha=0.3, label=f"10-90% of the {len(names)} tasks")
        ax.plot(xs, q50, lw=1.5, label="median task")
        ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("environment steps per task")
    ax.set_ylabel("episodic return")
    ax.set_title(title or "meta-training on all tasks", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
