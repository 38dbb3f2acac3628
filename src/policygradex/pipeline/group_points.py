"""Group points (``--group-points F``): expansion points at each group's own policy.

An affinity from one policy's first-order expansion sees a conflict only where that policy's states show it. Two
groups of CartPole tasks paid for keeping the cart at 0 m and at +1.2 m want the same thing wherever a policy for
all tasks keeps the cart (left of 0, pulled by a larger group at -1.2 m): their gradients there point the same way
and they merge (results/reward-geometry.md). A policy serving one group goes where that group is paid, and there
the two want different things. So after a first clustering of the usual points' combined U, this stage fine-tunes
theta_star on each group's tasks alone (F of the meta-training budget per task, its own seed), then runs the
feature, surrogate and affinity stages of every task at that policy (``points/groupJ``), exactly as at an earlier
expansion point. The affinity stage then combines theta_star's U, the earlier points' and the group points' (with
``--point-weights``), and the cluster stage clusters that and resamples every point for the confidence. One pass:
the group points come from the first pass's groups, which the final groups need not equal
(results/group-points.md).

Resuming: ``points/first_pass.json`` keeps the first clustering with the inputs it was made from, and
``points/groupJ/members.json`` records the tasks, F and theta_star's sha256 its policy was trained for; a point whose
record differs (a changed first pass) is trained again and its later stages recomputed, and the folder of a group
the first pass no longer has is removed.

Cost, for k first-pass groups: the fine-tunings add F of meta-training in all (each task is in one group), and the
k feature stages k times theta_star's (O(k n N) transitions and gradients); memory as for k more expansion points.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from typing import Any

import numpy as np

from policygradex.common.artifacts import atomic_write_json, file_sha, load_json
from policygradex.common.progress import make_progress, status
from policygradex.pipeline.clustering import combine
from policygradex.pipeline.partitions import groups_from_labels
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.stages import (
    RunState,
    cluster_by,
    load_policy,
    measure_point_weights,
    own_affinity,
    read_curve,
    return_info,
    save_theta,
    stage_affinity,
    stage_features,
    stage_surrogate,
    write_curve,
)
from policygradex.rl.ppo import train_ppo

SEED_OFFSET = 1000
"""A group's fine-tuning runs with seed ``seed + SEED_OFFSET`` (one seed for every group: their tasks differ)."""


def first_pass(st: RunState) -> list[list[int]]:
    """The groups of the first clustering: theta_star's U and the earlier points' (``st.points``) combined as the
    affinity stage combines them, clustered with the run's options (no confidence). O(P n^2) beyond the clustering,
    and with ``--point-weights reliability`` one pass over each point's feature files for the weights (the affinity
    stage reuses what it read). Kept in ``points/first_pass.json`` with its inputs (:func:`first_pass_key`): a
    resumed run whose inputs are the same reads it instead (no feature file is read), and a changed clustering
    option or point moves the groups."""
    U, _ = own_affinity(st)
    assert all(p.U is not None for p in st.points)  # every earlier point's affinity stage has run
    Us = [U] + [p.U for p in st.points if p.U is not None]
    key = first_pass_key(st, Us)
    path = st.rd.first_pass
    if path.exists():
        record = load_json(path)
        if record.get("key") == key:
            return [[int(i) for i in g] for g in record["groups"]]
    weighting = measure_point_weights(st)
    U = combine(Us, None if weighting is None else weighting["weights"]) if st.points else U
    groups = [list(g) for g in groups_from_labels(cluster_by(U, st.cfg.cluster).labels)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"key": key, "groups": groups, "point_weights": weighting})
    return groups


def first_pass_key(st: RunState, Us: list[np.ndarray]) -> Any:
    """What the first clustering is a function of: the clustering options (the point weights' rule among them) and,
    for theta_star and each earlier point, its U's sha256 and its feature stage's record (features/meta.json: N, p,
    d, the store; rewritten whenever the stage reruns), from whose files the reliability weights are measured. As
    JSON reads it back, so that a stored key compares equal."""
    points = [{"point": s.name, "U_sha256": hashlib.sha256(np.ascontiguousarray(u).tobytes()).hexdigest(),
               "features": load_json(s.rd.features_meta) if s.rd.features_meta.exists() else None}
              for s, u in zip([st, *st.points], Us)]
    return json.loads(json.dumps({"cluster": dataclasses.asdict(st.cfg.cluster), "points": points}))


def fine_tune(st: RunState, rd: RunDir, group: int, tasks: list[int]) -> None:
    """theta_star fine-tuned on ``tasks`` for ``group_points`` of the budget per task, into ``rd`` (theta_star.pt
    and its curve; resumable from its checkpoint)."""
    cfg = st.cfg
    fraction = cfg.features.group_points
    assert fraction is not None and st.model is not None
    ppo = dataclasses.replace(cfg.ppo, steps_per_task=max(1, round(fraction * cfg.ppo.steps_per_task)))
    with make_progress(st.console) as progress:
        bar = progress.add_task(f"fine-tune PPO for group {group}'s point", total=ppo.iterations, info="")
        result = train_ppo(st.family, tasks, cfg.network, ppo, cfg.seed + SEED_OFFSET,
                           init_state=st.model.state_dict(), checkpoint_path=rd.checkpoint,
                           on_iteration=lambda i, total, row: progress.update(bar, completed=i, info=return_info(row)))
    save_theta(st, result.model, rd.theta_star)
    write_curve(rd.curve, result.curve)
    rd.checkpoint.unlink(missing_ok=True)


def stage_group_points(st: RunState) -> None:
    """With ``features.group_points``: the first pass's groups, each group's point (trained or loaded) and its
    feature, surrogate and affinity stages, appended to ``st.points`` after the earlier expansion points; nothing
    without the option."""
    fraction = st.cfg.features.group_points
    if fraction is None:
        return
    with status(st.console, "first clustering, for the group points"):
        groups = first_pass(st)
    theta_sha = file_sha(st.rd.theta_star)
    for j, tasks in enumerate(groups):
        rd = st.rd.group_point(j)
        record = {"tasks": tasks, "fraction": fraction, "theta_star_sha256": theta_sha}
        members = rd.path / "members.json"
        stale = not members.exists() or load_json(members) != record
        if stale and rd.path.exists():
            shutil.rmtree(rd.path)  # another group, fraction or theta_star: nothing of it can be kept
        point = RunState(st.cfg, st.family, rd, st.console, launcher=st.launcher, point=fraction, group=j)
        if stale or not rd.theta_star.exists() or not rd.curve.exists():
            rd.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(members, record)
            t0 = time.perf_counter()
            fine_tune(st, rd, j, tasks)
            point.status["meta_train"] = "computed"
            st.timings[f"meta_train at group {j}'s point"] = time.perf_counter() - t0
            atomic_write_json(st.rd.timings, st.timings)
        else:
            point.status["meta_train"] = "loaded"
        point.model, point.curve = load_policy(st.cfg, st.family, rd.theta_star), read_curve(rd.curve)
        if rd.timings.exists():
            point.timings = {k: float(v) for k, v in load_json(rd.timings).items()}
        for stage in (stage_features, stage_surrogate, stage_affinity):
            stage(point)
        point.features = None  # one point's stacked features in memory at a time (the exact surrogate's)
        st.points.append(point)
    j = len(groups)
    while st.rd.group_point(j).path.exists():  # a point of a group the first pass no longer has
        shutil.rmtree(st.rd.group_point(j).path)
        j += 1

