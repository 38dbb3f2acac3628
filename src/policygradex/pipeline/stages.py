"""The five stages of a run, in the order of the paper's Algorithm 1, as they read and write the run directory.

    meta_train -> features -> surrogate -> affinity -> cluster

Each ``stage_*`` takes the :class:`RunState` built so far. A stage whose artifacts exist (and were made with the
same options) is loaded, not recomputed; a stage that is recomputed forces every later stage to be recomputed too.
The numerical work lives in the stage's own module (features, surrogate, affinity, clustering); these functions
only connect it to the artifacts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from policygradex.common.artifacts import (
    atomic_save_npy,
    atomic_save_npz,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    load_json,
    load_npy,
    load_npz,
    load_torch,
)
from policygradex.common.errors import PolicyGradExError
from policygradex.common.progress import make_progress, status
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import family_spaces
from policygradex.nets.base import flat_params
from policygradex.pipeline.affinity import affinity_matrix, split_half_reliability
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.confidence import GRADIENT_MIN, bootstrap_groups, gradient_reliability, verdict
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.features import (
    FeatureSet,
    feature_arrays,
    feature_set,
    normalize_advantages,
    projection_for,
    run_transitions,
)
from policygradex.pipeline.partitions import EXACT_MAX_N, groups_from_labels, labels_from_groups
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.surrogate import default_num_subsets, default_subset_size, run_surrogate, sample_subsets
from policygradex.rl.ppo import network_for, train_ppo

STAGES = ("meta_train", "features", "surrogate", "affinity", "cluster")
BOOTSTRAP_REPS = 200
"""Resamples of the subsets behind each group's stability (a quarter of it above the exact-search limit)."""


@dataclass
class RunState:
    """What a run has computed or loaded, stage by stage."""

    cfg: RunConfig
    family: TaskFamily
    rd: RunDir
    console: Console
    status: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: torch.nn.Module | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    features: FeatureSet | None = None
    feature_meta: dict[str, Any] = field(default_factory=dict)
    surrogate: dict[str, Any] = field(default_factory=dict)
    U: np.ndarray | None = None
    groups: dict[str, Any] = field(default_factory=dict)

    def stale(self, stage: str, *paths: Path) -> bool:
        """True when the stage must run: an artifact is missing or an earlier stage was recomputed."""
        earlier = STAGES[: STAGES.index(stage)]
        return any(self.status.get(s) == "computed" for s in earlier) or not all(p.exists() for p in paths)

    def done(self, stage: str, computed: bool, seconds: float | None = None) -> None:
        self.status[stage] = "computed" if computed else "loaded"
        if computed and seconds is not None:
            self.timings[stage] = seconds
            atomic_write_json(self.rd.timings, self.timings)
        verb = "computed" if computed else "loaded from disk"
        extra = f" in {seconds:.1f}s" if computed and seconds is not None else ""
        self.console.print(f"[green]stage {stage}[/green]: {verb}{extra}")


# ----------------------------------------------------------------------------------------------- stages
def make_model(cfg: RunConfig, family: TaskFamily) -> nn.Module:
    """A fresh network of the run's configuration for this family (load theta_star into it to get the run's)."""
    return network_for(family, cfg.network)


def stage_meta_train(st: RunState) -> None:
    cfg, rd = st.cfg, st.rd
    if not st.stale("meta_train", rd.theta_star, rd.curve):
        blob = load_torch(rd.theta_star)
        model = make_model(cfg, st.family)
        try:
            model.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise PolicyGradExError(f"{rd.theta_star} does not match this configuration ({exc}); delete it to retrain") from None
        st.model, st.curve = model, read_curve(rd.curve)
        st.done("meta_train", computed=False)
        return
    t0 = time.perf_counter()
    iterations = max(1, cfg.ppo.steps_per_task // (cfg.ppo.envs_per_task * cfg.ppo.num_steps))
    with make_progress(st.console) as progress:
        bar = progress.add_task("meta-train PPO", total=iterations, info="")

        def on_iteration(i: int, total: int, row: dict[str, Any]) -> None:
            progress.update(bar, completed=i, info=f"return {row['mean_return']:.1f}")

        result = train_ppo(st.family, range(st.family.n), cfg.network, cfg.ppo, cfg.seed,
                           checkpoint_path=rd.checkpoint, on_iteration=on_iteration)
    obs_dim, _ = family_spaces(st.family, cfg.network.task_id)
    atomic_torch_save({"state_dict": result.model.state_dict(), "obs_dim": obs_dim,
                       "policy_parameter_names": result.model.policy_parameter_names()}, rd.theta_star)
    write_curve(rd.curve, result.curve)
    rd.checkpoint.unlink(missing_ok=True)
    st.model, st.curve = result.model, result.curve
    st.done("meta_train", computed=True, seconds=time.perf_counter() - t0)


def write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_curve(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError) as exc:
        raise PolicyGradExError(f"{path} is unreadable ({exc}); delete it and theta_star.pt to retrain") from None


def stage_features(st: RunState) -> None:
    cfg, rd, n = st.cfg, st.rd, st.family.n
    fc = cfg.features
    paths = [rd.task_features(i) for i in range(n)]
    if not st.stale("features", *paths):
        arrays = [load_npz(p) for p in paths]
        st.features = feature_set(arrays, fc.holdout_fraction, paths)
        st.feature_meta = load_json(rd.features_meta) if (rd.features_meta).exists() else {}
        st.done("features", computed=False)
        return
    assert st.model is not None
    t0 = time.perf_counter()
    recompute_all = any(st.status.get(s) == "computed" for s in ("meta_train",))
    todo = [i for i in range(n) if recompute_all or not paths[i].exists()]
    transitions = run_transitions(cfg, st.family, st.model)
    advantages = normalize_advantages([t.advantages for t in transitions], fc.advantage_normalization)
    projection = projection_for(cfg, st.model)
    with make_progress(st.console) as progress:
        bar = progress.add_task("gradient features", total=n, info=f"p={projection.p} d={projection.d}")
        progress.update(bar, completed=n - len(todo))
        for i in todo:
            tr = transitions[i]
            arrays = feature_arrays(st.model, tr.obs, tr.actions, advantages[i], projection, fc)
            atomic_save_npz(paths[i], **arrays, advantages=tr.advantages.astype(np.float32),
                            episode_returns=np.asarray(tr.episode_returns, dtype=np.float32))
            progress.advance(bar)
    meta = {"p": projection.p, "d": projection.d, "N": fc.transitions_per_task,
            "mean_episode_return": {st.family.tasks[i].name: float(np.mean(t.episode_returns)) if t.episode_returns
                                    else None for i, t in enumerate(transitions)}}
    atomic_write_json(rd.features_meta, meta)
    st.feature_meta = meta
    st.features = feature_set([load_npz(p) for p in paths], fc.holdout_fraction, paths)
    st.done("features", computed=True, seconds=time.perf_counter() - t0)


def stage_surrogate(st: RunState) -> None:
    cfg, rd, n = st.cfg, st.rd, st.family.n
    sc = cfg.surrogate
    if not st.stale("surrogate", rd.subsets, rd.surrogate_v):
        st.surrogate = load_json(rd.subsets)
        if not isinstance(st.surrogate, dict) or "subsets" not in st.surrogate:
            raise PolicyGradExError(f"{rd.subsets} is not a subsets file; delete it to refit the surrogate")
        st.done("surrogate", computed=False)
        return
    assert st.features is not None and st.model is not None
    t0 = time.perf_counter()
    alpha = sc.subset_size or default_subset_size(n)
    m = sc.num_subsets or default_num_subsets(n)
    sample = sample_subsets(n, alpha, m, cfg.subset_seed)
    subsets, topped_up = sample.subsets, sample.topped_up
    with status(st.console, f"fitting {len(subsets)} subset surrogates (batched L-BFGS, d={st.features.features.shape[2]})"):
        res = run_surrogate(st.features, subsets, sc, topped_up)
        projection = projection_for(cfg, st.model)
        theta_star = flat_params(st.model, st.model.policy_parameter_names())
        rel = [float(projection.lift(torch.as_tensor(v, dtype=torch.float32)).norm() / theta_star.norm()) for v in res.v]
    record = {
        "subset_size": alpha,
        "num_subsets": len(subsets),
        "topped_up": topped_up,
        "requested_subsets": m,
        "possible_subsets": sample.possible,
        "all_subsets": sample.exhaustive,
        "evaluation": sc.evaluation,
        "solver": {"iterations": res.info.iterations, "converged": int(res.info.converged.sum()),
                   "max_grad_inf_norm": float(res.info.grad_inf_norm.max())},
        "subsets": [
            {"tasks": s, "task_names": [st.family.tasks[i].name for i in s], "f_hat": float(res.f_hat[j]),
             "f_hat_in_sample": float(res.f_hat_in_sample[j]), "f_hat_held_out": float(res.f_hat_held_out[j]),
             "loss_at_theta_star": float(res.loss_at_theta_star[j]), "relative_distance": rel[j],
             "task_loss": {str(i): float(res.task_loss[j, i]) for i in s}}
            for j, s in enumerate(subsets)
        ],
    }
    atomic_save_npy(rd.surrogate_v, res.v.astype(np.float32))
    atomic_write_json(rd.subsets, record)
    st.surrogate = record
    st.done("surrogate", computed=True, seconds=time.perf_counter() - t0)


def stage_affinity(st: RunState) -> None:
    cfg, rd, n = st.cfg, st.rd, st.family.n
    options = {"affinity": cfg.cluster.affinity, "interaction": cfg.cluster.interaction}
    stats_path = rd.affinity_stats
    fresh = not st.stale("affinity", rd.affinity, rd.affinity_csv, stats_path)
    if fresh and load_json(stats_path).get("options") == options:
        st.U = load_npy(rd.affinity)
        if st.U.shape != (n, n):
            raise PolicyGradExError(f"{rd.affinity} has shape {st.U.shape}, expected ({n}, {n}); delete it to recompute")
        st.done("affinity", computed=False)
        return
    t0 = time.perf_counter()
    subsets = [s["tasks"] for s in st.surrogate["subsets"]]
    f_hat = np.array([s["f_hat"] for s in st.surrogate["subsets"]])
    task_loss = np.full((len(subsets), n), np.nan)
    for j, s in enumerate(st.surrogate["subsets"]):
        for i, v in s["task_loss"].items():
            task_loss[j, int(i)] = v
    U, directed = affinity_matrix(cfg.cluster.affinity, subsets, f_hat, task_loss, n,
                                  interaction=cfg.cluster.interaction == "subsets")
    reliability = split_half_reliability(subsets, f_hat, n, cfg.cluster.affinity, task_loss, seed=cfg.seed)
    atomic_write_json(stats_path, {"split_half": reliability, "options": options})
    if directed is not None:
        atomic_save_npy(rd.affinity_directed, directed)
    atomic_save_npy(rd.affinity, U)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["task", *st.family.task_names])
    for name, row in zip(st.family.task_names, U):
        writer.writerow([name, *[f"{x:.6g}" for x in row]])
    atomic_write_text(rd.affinity_csv, buf.getvalue())
    st.U = U
    st.done("affinity", computed=True, seconds=time.perf_counter() - t0)


def stage_cluster(st: RunState) -> None:
    cfg, rd = st.cfg, st.rd
    cc = cfg.cluster
    options = dataclasses.asdict(cc)
    if not st.stale("cluster", rd.groups):
        st.groups = load_json(rd.groups)
        if not isinstance(st.groups, dict) or "groups" not in st.groups:
            raise PolicyGradExError(f"{rd.groups} is not a groups file; delete it to recluster")
        if st.groups.get("cluster_config") == options:
            st.done("cluster", computed=False)
            return
    assert st.U is not None and st.features is not None
    t0 = time.perf_counter()
    with status(st.console, "clustering the affinity matrix"):
        res = cluster(st.U, k=cc.k, lam=cc.lam, solver=cc.solver, method=cc.method, grid_size=cc.lam_grid_size,
                      exhaustive_check=cc.exhaustive_check, min_silhouette=cc.min_silhouette)
    names = st.family.task_names
    groups = groups_from_labels(res.labels)
    confidence = group_confidence(st, res.labels)
    st.groups = {
        "groups": [[names[i] for i in g] for g in groups],
        "group_indices": groups,
        "k": res.k,
        "lam": res.lam,
        "method": res.method,
        "selection": "fixed k" if cc.k else ("given lambda" if cc.lam is not None else "lambda grid, best silhouette"),
        "grid": res.grid,
        "exhaustive_check": res.check,
        "objective": res.objective,
        "relaxation": res.relaxation,
        "confidence": confidence,
        "cluster_config": options,
    }
    if st.family.planted_groups is not None:
        truth = labels_from_groups([list(g) for g in st.family.planted_groups], st.family.n)
        st.groups["nmi_planted"] = float(normalized_mutual_info_score(truth, res.labels))
    atomic_write_json(rd.groups, st.groups)
    st.done("cluster", computed=True, seconds=time.perf_counter() - t0)


def group_confidence(st: RunState, labels: np.ndarray) -> dict[str, Any]:
    """Bootstrap of the groups over the subsets, gradient reliability over transitions, and the verdict."""
    cc, n = st.cfg.cluster, st.family.n
    X, y, w = (t.numpy() for t in st.features.part(held_out=False))
    grad_rel = gradient_reliability(X, y, w)
    split = load_json(st.rd.affinity_stats).get("split_half")
    out: dict[str, Any] = {"gradient_reliability": grad_rel,
                           "split_half_reliability": None if split is None else split["reliability"]}
    k = int(labels.max() + 1)
    if cc.affinity == "subset" and 1 < k < n:
        subsets = [s["tasks"] for s in st.surrogate["subsets"]]
        f_hat = np.array([s["f_hat"] for s in st.surrogate["subsets"]])
        reps = BOOTSTRAP_REPS if n <= EXACT_MAX_N else BOOTSTRAP_REPS // 4
        with status(st.console, f"bootstrap of the groups over the subsets ({reps} resamples)"):
            boot = bootstrap_groups(subsets, f_hat, n, labels, reps=reps, seed=st.cfg.seed,
                                    interaction=cc.interaction == "subsets", method=cc.method, solver=cc.solver)
        out.update(boot)
        out["verdict"] = verdict(boot["group_jaccard"], out["split_half_reliability"], grad_rel)
    elif grad_rel is not None and grad_rel < GRADIENT_MIN:
        out["verdict"] = verdict([], out["split_half_reliability"], grad_rel)
    else:
        out["verdict"] = "One group (or per-target affinity): no bootstrap of the groups."
    return out
