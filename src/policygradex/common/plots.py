"""Figures: task-by-task heatmaps ordered by group, training curves, and saving a figure atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from policygradex.common.artifacts import atomic_write


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
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
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
