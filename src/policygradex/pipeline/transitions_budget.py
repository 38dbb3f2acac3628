"""How many transitions per task the feature stage collects when ``--target-reliability`` asks for a gradient signal
of a given reliability instead of a fixed N (:attr:`~.config.FeatureConfig.target_reliability`).

The feature stage collects N transitions per task, measures the split-half reliability r over transitions of the
gradient interaction G G^T (:func:`.confidence.interaction_reliability`, the number the report prints) and, while r
is below the target r_t, collects again at a larger N. The next N comes from Spearman-Brown: a measure whose
reliability is r at N has reliability m r / (1 + (m - 1) r) at m N, so reaching r_t takes

    m = r_t (1 - r) / (r (1 - r_t)),

rounded up to a power of two (at least 2, so every step makes progress) and capped at :func:`transitions_cap`;
r <= 0 (no signal to project from) goes straight to the cap. The projection is a guide, not a promise: the halves
are the first and the second half of each task's transitions in time, so r also carries how the two stretches of
rollouts differ, and it is itself estimated from one sample: it can even fall from one N to the next
(results/adaptive-transitions.md has such a run). So the stage measures again at every new N and stops at the
target or at the cap. Everything here is O(1) or reads one array of a file; the cost is the feature stage run
again, O(n N d) in time, at each step.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from policygradex.common.artifacts import load_npz
from policygradex.pipeline.config import FeatureConfig
from policygradex.pipeline.features import fit_rows


CAP_FACTOR = 4
"""The default cap on N as a multiple of ``transitions_per_task`` (``max_transitions_per_task`` None): at 4 x every
tuning seed of the planted suite's objective kind recovered its groups, though not all of them reached the target
(results/adaptive-transitions.md)."""


def transitions_cap(fc: FeatureConfig) -> int:
    """The largest N that ``target_reliability`` may grow to: ``max_transitions_per_task``, or by default
    :data:`CAP_FACTOR` x ``transitions_per_task``."""
    cap = fc.max_transitions_per_task
    return cap if cap is not None else CAP_FACTOR * fc.transitions_per_task


def spearman_brown_factor(r: float, target: float) -> float:
    """m such that Spearman-Brown takes reliability r at N to ``target`` at m N (r, target in (0, 1))."""
    return target * (1.0 - r) / (r * (1.0 - target))


def next_transitions(N: int, reliability: float | None, fc: FeatureConfig) -> int | None:
    """The N to collect next, or None to keep N: the target is off or met, N is at the cap, or the reliability
    could not be measured (fewer than 3 tasks or 2 blocks: nothing to grow towards)."""
    target, cap = fc.target_reliability, transitions_cap(fc)
    if target is None or reliability is None or reliability >= target or N >= cap:
        return None
    if reliability <= 0.0:
        return cap
    m = spearman_brown_factor(reliability, target)
    factor = 2 ** max(1, math.ceil(math.log2(m) - 1e-9))  # m = 4.0000001 from rounding is 4
    return min(cap, N * factor)


def holds_transitions(path: Path, statistics: bool, N: int, holdout_fraction: float) -> bool:
    """Whether the feature file (``statistics``: a block's statistics file) was made from N transitions per task."""
    if not path.exists():
        return False
    if statistics:
        return int(load_npz(path, ("rows",))["rows"]) == fit_rows(N, holdout_fraction)
    return int(load_npz(path, ("labels",))["labels"].shape[0]) == N


def growth_line(growth: list[dict[str, Any]], fc: FeatureConfig) -> str:
    """One sentence for the report: how N grew, with the reliability at each step, and why it stopped."""
    steps = ", ".join(f"{g['reliability']:.2f} at N = {g['N']:,}" if g["reliability"] is not None
                      else f"not measurable at N = {g['N']:,}" for g in growth)
    final = growth[-1]
    if final["reliability"] is None:
        why = "not measurable (fewer than 3 tasks), so N was not grown."
    elif fc.target_reliability is not None and final["reliability"] >= fc.target_reliability:
        why = "target reached."
    else:
        why = f"still below the target at the cap, N = {transitions_cap(fc):,}."
    return f"--target-reliability {fc.target_reliability:g}: gradient signal reliability {steps}; {why}"
