"""Earlier expansion points (``--expansion-points``): the feature, surrogate and affinity stages at policies from
earlier in meta-training, each in its own run directory ``points/F``.

PolicyGradEx expands every task's loss around theta_star. A group that theta_star already serves has a small
gradient there, mostly sampling noise, and the method cannot place it; a policy from earlier in meta-training has
not yet settled on any group, so every group still pulls it its own way (results/expansion-points.md). With
``features.expansion_points = (F_1, ..., 1)`` the meta-training stage also gives a policy at each earlier fraction
(:attr:`.config.RunConfig.earlier_points`): a snapshot of itself, or a meta-training of its own on that fraction of
the budget (``expansion_policy``); this module runs the stages at each such policy exactly as at theta_star
(same seeds: the same subsets and, with common random numbers, the same environment seeds), and theta_star's
affinity stage then clusters the mean of every point's standardised U (:func:`.clustering.combine`). The confidence
resamples every point (:func:`.stages.group_confidence`). ``(0.5, 1)`` is the default
(results/expansion-defaults.md); with ``(1,)``, theta_star alone, this module does nothing.

Cost: each point adds a feature stage (O(n N) rollouts and gradients), a surrogate and an affinity stage. Memory:
one point's stacked (n, N, d) features at a time (the exact surrogate's, dropped after its stages), but every
point keeps its n x n U and its per-task statistics (O(n d) each, O(n d^2) with the Newton step's per-task
curvatures) until the confidence has resampled them all: P points hold P times theta_star's. A point resumes like
theta_star: its files are kept. A new snapshot (a new meta-training under ``snapshot``) or a new policy of its own
(``retrain``) recomputes that point's stages.
"""

from __future__ import annotations

from policygradex.common.artifacts import load_json
from policygradex.pipeline.stages import (
    RunState,
    load_policy,
    read_curve,
    stage_affinity,
    stage_features,
    stage_surrogate,
)


def stage_points(st: RunState) -> None:
    """Run (or load) the feature, surrogate and affinity stages at every earlier expansion point, into
    ``st.points``, in the order of the fractions; nothing for theta_star alone."""
    st.points = []
    for fraction in st.cfg.earlier_points:
        rd = st.rd.point(fraction)
        point = RunState(st.cfg, st.family, rd, st.console, launcher=st.launcher, point=fraction)
        point.status["meta_train"] = "computed" if fraction in st.new_points else "loaded"
        point.model, point.curve = load_policy(st.cfg, st.family, rd.theta_star), read_curve(rd.curve)
        if rd.timings.exists():
            point.timings = {k: float(v) for k, v in load_json(rd.timings).items()}
        for stage in (stage_features, stage_surrogate, stage_affinity):
            stage(point)
        point.features = None  # the stacked features (exact surrogate): one point's in memory at a time
        st.points.append(point)
