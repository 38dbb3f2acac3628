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
import math
import shutil
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
    file_sha,
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
from policygradex.common.launcher import LauncherConfig, cache_path, run_jobs
from policygradex.common.progress import make_progress, status
from policygradex.envs.base import TaskFamily
from policygradex.envs.vector import family_spaces
from policygradex.nets.base import flat_params
from policygradex.pipeline.affinity import affinity_matrix, split_half_reliability
from policygradex.pipeline.baseline_choice import baseline_line, choose_baseline, effective_baseline
from policygradex.pipeline.clustering import Clustering, cluster, combine
from policygradex.pipeline.confidence import (
    GRADIENT_MIN,
    bootstrap_groups,
    gradient_halves_from_blocks,
    interaction_reliability,
    is_noise,
    resampled_stability,
    task_fitting_halves,
    task_signal,
    transition_replicate,
    transition_split_half,
    verdict,
)
from policygradex.pipeline.config import ClusterConfig, RunConfig
from policygradex.pipeline.feature_blocks import (
    block_normalization,
    block_specs,
    feature_block_job,
    renormalise_batch,
    returns_of_files,
)
from policygradex.pipeline.features import FeatureSet, feature_set, projection_for, task_blocks
from policygradex.pipeline.group_record import Confidence, ExhaustiveCheck, GridRow, Groups, Relaxation
from policygradex.pipeline.gradient_statistics import merge_block_statistics, resolve_store, returns_of_statistics
from policygradex.pipeline.partitions import EXACT_MAX_N, groups_from_labels, labels_from_groups
from policygradex.pipeline.rundir import RunDir
from policygradex.pipeline.closed_form import CurvatureTerms, affinity, curvature_terms
from policygradex.pipeline.statistics import (
    Statistics,
    compute_statistics,
    rows_of_feature_set,
    rows_of_files,
    statistics_of_files,
)
from policygradex.pipeline.subset_table import SubsetTable
from policygradex.pipeline.transitions_budget import holds_transitions, next_transitions
from policygradex.pipeline.surrogate import (
    default_num_subsets,
    default_subset_size,
    resolve_surrogate,
    run_newton,
    run_surrogate,
    sample_subsets,
)
from policygradex.rl.config import PPOConfig
from policygradex.rl.ppo import RETURN_WINDOW, network_for, train_ppo

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
    """All tasks' features stacked (n, N, d): built on first use by :meth:`feature_data`, only by the exact surrogate
    and its confidence; the statistics-based surrogates stream the feature files instead."""
    feature_paths: list[Path] = field(default_factory=list)
    feature_meta: dict[str, Any] = field(default_factory=dict)
    stats: Statistics | None = None
    """Per-task sufficient statistics (``closed_form``), loaded from or written to statistics.npz."""
    terms: CurvatureTerms | None = None
    """``closed_form`` with ``curvature = first_order``: the per-task curvature terms (also in statistics.npz)."""
    surrogate: dict[str, Any] = field(default_factory=dict)
    """The surrogate stage's record (surrogate.json)."""
    subsets: SubsetTable | None = None
    """The exact and Newton surrogates' subsets and per-subset values (subsets.npz)."""
    U: np.ndarray | None = None
    groups: Groups | None = None
    """The cluster stage's record (groups.json)."""
    launcher: LauncherConfig = field(default_factory=lambda: LauncherConfig(backend="sequential"))
    """Where the feature stage's blocks of tasks run (``run --backend``; default: one by one in this process)."""
    points: list["RunState"] = field(default_factory=list)
    """With ``--expansion-points``: the states of the earlier points (:mod:`.expansion`), each with its own run
    directory ``points/F`` and its snapshot as ``model``; empty for theta_star alone and inside a point."""
    point: float | None = None
    """Inside an earlier expansion point: its fraction of meta-training (shown in the stage messages); inside a
    group point (:mod:`.group_points`): the fraction of the budget its policy fine-tuned for."""
    group: int | None = None
    """Inside a group point: the number of the first pass's group whose policy it is."""
    new_points: set[float] = field(default_factory=set)
    """The earlier expansion points whose policy this invocation trained (their later stages are recomputed)."""
    signal_halves: list[tuple[np.ndarray, np.ndarray] | None] = field(default_factory=list)
    """:func:`final_signal_halves` once computed (one entry), so that the point weights and the confidence read the
    feature files once."""

    @property
    def name(self) -> float | str:
        """How records name this state's point: 1.0 for theta_star, F for an earlier expansion point, ``groupJ`` for
        group J's point."""
        return f"group{self.group}" if self.group is not None else 1.0 if self.point is None else float(self.point)

    @property
    def surrogate_method(self) -> str:
        """The surrogate this run uses (``auto`` resolved by the number of tasks)."""
        return resolve_surrogate(self.cfg.surrogate.method, self.family.n)

    @property
    def store(self) -> str:
        """What the feature stage stores for this run: ``features`` or ``statistics`` (``auto`` resolved)."""
        return resolve_store(self.cfg, self.family.n)

    def feature_data(self) -> FeatureSet:
        """The stacked features of every task (loaded once; O(n N d) memory)."""
        if self.store == "statistics":
            raise PolicyGradExError("this run stored statistics, not features (--store statistics); rerun into a new "
                                    "--out with --store features")
        if self.features is None:
            self.features = feature_set([load_npz(p) for p in self.feature_paths], self.cfg.features.holdout_fraction,
                                        self.feature_paths)
        return self.features

    def statistics(self, per_task: bool = False) -> Statistics:
        """The statistics of the features, task by task: from the stacked features when :meth:`feature_data` has
        already loaded them (no second read of the files), else streamed from the files; ``per_task`` (Newton)
        keeps every H_k."""
        sc = self.cfg.surrogate
        if self.stats is None and self.store == "statistics":
            self.stats = merge_block_statistics(self.feature_paths, self.family.n)
        elif self.stats is None or (per_task and self.stats.H is None):
            if self.features is not None:
                self.stats = compute_statistics(rows_of_feature_set(self.features), self.features.n_fit, sc.blocks,
                                                sc.curvature_rows, per_task)
            else:
                self.stats = statistics_of_files(self.feature_paths, self.cfg.features.holdout_fraction, sc.blocks,
                                                 sc.curvature_rows, per_task)
        return self.stats

    def earlier_computed(self, stage: str) -> bool:
        """True when a stage before ``stage`` was recomputed in this run (so ``stage``'s artifacts are out of date);
        every stage an earlier expansion point ran (up to its affinity) comes before theta_star's affinity."""
        before = STAGES[: STAGES.index(stage)]
        mine = any(self.status.get(s) == "computed" for s in before)
        return mine or ("affinity" in before or stage == "affinity") and any(
            p.status.get(s) == "computed" for p in self.points for s in STAGES[: STAGES.index("affinity") + 1])

    def stale(self, stage: str, *paths: Path) -> bool:
        """True when the stage must run: an artifact is missing or an earlier stage was recomputed."""
        return self.earlier_computed(stage) or not all(p.exists() for p in paths)

    def done(self, stage: str, computed: bool, seconds: float | None = None) -> None:
        self.status[stage] = "computed" if computed else "loaded"
        if computed and seconds is not None:
            self.timings[stage] = seconds
            atomic_write_json(self.rd.timings, self.timings)
        verb = "computed" if computed else "loaded from disk"
        extra = f" in {seconds:.1f}s" if computed and seconds is not None else ""
        where = ("" if self.point is None else f" at expansion point {self.point:g}" if self.group is None
                 else f" at group {self.group}'s point")
        self.console.print(f"[green]stage {stage}[/green]{where}: {verb}{extra}")


# ----------------------------------------------------------------------------------------------- stages
def make_model(cfg: RunConfig, family: TaskFamily) -> nn.Module:
    """A fresh network of the run's configuration for this family (load theta_star into it to get the run's)."""
    return network_for(family, cfg.network)


def load_policy(cfg: RunConfig, family: TaskFamily, path: Path) -> nn.Module:
    """The policy saved at ``path`` (theta_star.pt, or an expansion point's snapshot) in a network of the run's
    configuration."""
    blob = load_torch(path)
    model = make_model(cfg, family)
    try:
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise PolicyGradExError(f"{path} does not match this configuration ({exc}); delete it to retrain") from None
    return model


def stage_meta_train(st: RunState) -> None:
    """theta_star: PPO on every task. With earlier expansion points, their policies too: snapshots of this
    meta-training (``expansion_policy = snapshot``) or meta-trainings of their own on the shorter budget
    (``retrain``, each resumable from its own checkpoint); ``st.new_points`` says which of them are new."""
    cfg, rd = st.cfg, st.rd
    snapshot = cfg.features.expansion_policy == "snapshot"
    snapshots = {it: rd.point(f) for f, it in cfg.earlier_points.items()} if snapshot else {}
    if st.stale("meta_train", rd.theta_star, rd.curve, *(p.theta_star for p in snapshots.values())):
        t0 = time.perf_counter()
        st.model, st.curve = meta_train(st, cfg.ppo, rd, snapshots)
        st.done("meta_train", computed=True, seconds=time.perf_counter() - t0)
        st.new_points = set(cfg.earlier_points) if snapshot else set()
    else:
        st.model, st.curve = load_policy(cfg, st.family, rd.theta_star), read_curve(rd.curve)
        st.done("meta_train", computed=False)
    for fraction in cfg.earlier_points if not snapshot else ():
        point = rd.point(fraction)
        if point.theta_star.exists() and point.curve.exists():
            continue
        t0 = time.perf_counter()
        steps = max(1, round(fraction * cfg.ppo.steps_per_task))
        point.path.mkdir(parents=True, exist_ok=True)
        meta_train(st, dataclasses.replace(cfg.ppo, steps_per_task=steps), point, {}, f" for point {fraction:g}")
        st.new_points.add(fraction)
        st.timings[f"meta_train at point {fraction:g}"] = time.perf_counter() - t0
        atomic_write_json(rd.timings, st.timings)


def meta_train(st: RunState, ppo: PPOConfig, rd: RunDir, snapshots: dict[int, RunDir],
               label: str = "") -> tuple[nn.Module, list[dict[str, Any]]]:
    """PPO on every task with ``ppo`` into ``rd`` (theta_star.pt and its curve, resumable from its checkpoint),
    saving the policy after each iteration in ``snapshots`` as that point's theta_star.pt."""
    cfg = st.cfg
    with make_progress(st.console) as progress:
        bar = progress.add_task(f"meta-train PPO{label}", total=ppo.iterations, info="")

        def on_iteration(i: int, total: int, row: dict[str, Any]) -> None:
            progress.update(bar, completed=i, info=return_info(row))

        def keep_snapshot(i: int, model: nn.Module) -> None:
            if i in snapshots:  # an earlier expansion point (one taken before a resumed checkpoint is on disk)
                snapshots[i].path.mkdir(parents=True, exist_ok=True)
                save_theta(st, model, snapshots[i].theta_star)

        result = train_ppo(st.family, range(st.family.n), cfg.network, ppo, cfg.seed,
                           checkpoint_path=rd.checkpoint, on_iteration=on_iteration,
                           after_iteration=keep_snapshot if snapshots else None)
    save_theta(st, result.model, rd.theta_star)
    write_curve(rd.curve, result.curve)
    for i, point in snapshots.items():
        if not point.theta_star.exists():
            raise PolicyGradExError(f"meta-training stopped after {len(result.curve)} iterations, before expansion "
                                    f"point {point.path.name} (iteration {i}): lower --expansion-points")
        write_curve(point.curve, result.curve[:i])
    rd.checkpoint.unlink(missing_ok=True)
    return result.model, result.curve


def save_theta(st: RunState, model: nn.Module, path: Path) -> None:
    """A policy as the run keeps it (theta_star.pt, and every point's): its state_dict, the observation size and
    the names of the policy's parameters, written atomically."""
    obs_dim, _ = family_spaces(st.family, st.cfg.network.task_id)
    atomic_torch_save({"state_dict": model.state_dict(), "obs_dim": obs_dim,
                       "policy_parameter_names": model.policy_parameter_names()}, path)


def return_info(row: dict[str, Any]) -> str:
    """A progress line's return: over each task's last RETURN_WINDOW episodes, or that none has ended yet."""
    if not row.get("episodes"):
        return "no episode has ended yet"
    return f"return {row['mean_return']:.1f} (last {RETURN_WINDOW} episodes a task)"


def write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    # a value not there yet (a task none of whose episodes has ended) is an empty cell, not "nan"
    writer.writerows({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()} for row in rows)
    atomic_write_text(path, buf.getvalue())


def read_curve(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [{k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()}
                    for row in csv.DictReader(f)]
    except (OSError, ValueError) as exc:
        raise PolicyGradExError(f"{path} is unreadable ({exc}); delete it and theta_star.pt to retrain") from None


def stage_features(st: RunState) -> None:
    """Stage 2 in blocks of tasks (:mod:`.feature_blocks`): the blocks with a missing file (all of them after a new
    theta_star) run one by one in this process (progress counts tasks), or as jobs on a process pool or Ray with
    ``run --backend`` (progress counts blocks); the files are the same either way.

    With ``--target-reliability`` the stage then measures the gradient signal's split-half reliability and, while it
    is below the target, collects again at a larger N (:mod:`.transitions_budget`). Each measurement is written to
    features.json before the next collection starts, so an interrupted run resumes at the N it was growing to, with
    the blocks already collected at that N kept."""
    cfg, rd = st.cfg, st.rd
    fc = cfg.features
    prior = load_json(rd.features_meta) if rd.features_meta.exists() else {}
    new_theta = st.earlier_computed("features")
    growth: list[dict[str, Any]] = []
    if fc.target_reliability is not None and not new_theta and prior.get("target_reliability") == fc.target_reliability:
        growth = list(prior.get("growth", []))
    N = fc.transitions_per_task
    if growth:
        N = next_transitions(growth[-1]["N"], growth[-1]["reliability"], fc) or growth[-1]["N"]

    def record() -> dict[str, Any]:
        return {} if fc.target_reliability is None else {"target_reliability": fc.target_reliability, "growth": growth}

    t0 = time.perf_counter()
    computed = collect_features(st, N, recompute_all=new_theta, check_rows=bool(growth), growth=record())
    keep_baseline(st)
    while fc.target_reliability is not None:
        if growth and growth[-1]["N"] == N:
            reliability = growth[-1]["reliability"]
        else:
            with status(st.console, f"gradient signal reliability at N = {N:,}"):
                reliability = gradient_signal_reliability(st)
            growth.append({"N": N, "reliability": reliability})
            st.feature_meta = {**st.feature_meta, **record()}
            atomic_write_json(rd.features_meta, st.feature_meta)
        grown = next_transitions(N, reliability, fc)
        if grown is None:
            break
        shown = "not measurable" if reliability is None else f"{reliability:.2f}"
        st.console.print(f"gradient signal reliability {shown} at N = {N:,} is below --target-reliability "
                         f"{fc.target_reliability:g}: collecting N = {grown:,} transitions per task")
        for path in st.feature_paths:
            path.unlink(missing_ok=True)
        st.features, st.stats, st.terms = None, None, None
        N = grown
        computed = collect_features(st, N, recompute_all=True, check_rows=False, growth=record()) or computed
        keep_baseline(st)
    st.done("features", computed=computed, seconds=time.perf_counter() - t0 if computed else None)


def keep_baseline(st: RunState) -> None:
    """``--baseline auto``: keep the baseline whose gradient signal is more reliable (:mod:`.baseline_choice`),
    recorded in features/meta.json; nothing for the other baselines."""
    if st.cfg.features.baseline != "auto":
        return
    with status(st.console, "--baseline auto: the gradient signal's reliability under each baseline"):
        record = choose_baseline(st.feature_paths, st.cfg.features.holdout_fraction, st.feature_meta, st.store)
    if st.feature_meta.get("baseline") != record:
        st.feature_meta = {**st.feature_meta, "baseline": record}
        atomic_write_json(st.rd.features_meta, st.feature_meta)
    st.console.print(baseline_line(record))


def gradient_signal_halves(st: RunState) -> tuple[np.ndarray, np.ndarray] | None:
    """Each task's G over the first and the second half (in time) of its fitting transitions, (n, d) each: from the
    statistics under ``--store statistics`` and for ``closed_form`` with the policy's value head; otherwise task by
    task, from the stacked features when they are loaded, else streamed from the feature files (O(N d) memory beyond
    the halves, never the (n, N, d) stack).

    With ``--baseline per_task`` (or ``auto`` keeping it) each half's advantages come from a baseline fitted on that
    half alone (the split labels and weights of the feature files, or the statistics' ``split_sums``): a baseline
    fitted on both halves shares its error between them and overstates the reliability
    (results/baseline-reliability.md). Feature files made before the split was stored have none; they give the
    joint fit's halves, an upper bound."""
    per_task = effective_baseline(st.cfg.features.baseline, st.feature_meta) == "per_task"
    if st.store == "statistics" or (st.surrogate_method == "closed_form" and not per_task):
        return gradient_halves_from_blocks(st.statistics())
    rows = (rows_of_feature_set(st.features, split=per_task) if st.features is not None
            else rows_of_files(st.feature_paths, split=per_task))
    first, second = [], []
    for F, y, w in rows:
        halves = task_fitting_halves(F.numpy(), y.numpy(), w.numpy(), st.cfg.features.holdout_fraction)
        if halves is None:
            return None
        first.append(halves[0])
        second.append(halves[1])
    return np.stack(first), np.stack(second)


def gradient_signal_reliability(st: RunState) -> float | None:
    """Split-half reliability over transitions of the gradient interaction G G^T, the number the report prints;
    None below 3 tasks or 2 halves."""
    return signal_reliability(gradient_signal_halves(st), st.family.n)


def signal_reliability(halves: tuple[np.ndarray, np.ndarray] | None, n: int) -> float | None:
    """:func:`.confidence.interaction_reliability` of one point's halves; None without halves or below 3 tasks."""
    return None if halves is None or n < 3 else interaction_reliability(*halves)


def final_signal_halves(st: RunState) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`gradient_signal_halves` of the run's final features, computed once (``st.signal_halves``) for the
    point weights and the confidence, which both run after the feature stage has collected its last N (its growth
    loop under ``--target-reliability`` measures each N afresh)."""
    if not st.signal_halves:
        st.signal_halves.append(gradient_signal_halves(st))
    return st.signal_halves[0]


def measure_point_weights(st: RunState) -> dict[str, Any] | None:
    """The weights of theta_star and each earlier point, in the order the U's are combined (theta_star first, then
    ``st.points``), under ``--point-weights`` (:attr:`.config.ClusterConfig.point_weights`), as affinity_stats.json
    records them: ``points`` (fractions), ``reliability`` (each point's :func:`gradient_signal_reliability`, with
    ``reliability``) and ``weights`` (None: equal). None without earlier points. With ``reliability`` each weight is
    max(r, 0), r each point's :func:`gradient_signal_reliability`; where any r cannot be measured or every r is
    <= 0 the weights are equal. O(P n N d) for P points: one pass over each point's feature files (or its
    statistics), whose halves the confidence then reuses."""
    if not st.points:
        return None
    states = [st, *st.points]
    record: dict[str, Any] = {"rule": st.cfg.cluster.point_weights,
                              "points": [s.name for s in states]}
    if st.cfg.cluster.point_weights == "equal":
        return {**record, "weights": None}
    halves = [final_signal_halves(s) for s in states]
    rel = [signal_reliability(h, st.family.n) for h in halves]
    weights = None if any(r is None for r in rel) else [max(float(r), 0.0) for r in rel if r is not None]
    if weights is not None and sum(weights) <= 0:
        weights = None
    return {**record, "reliability": rel, "weights": weights}


def recorded_points(rd: RunDir) -> list[float | str] | None:
    """The points the run's combined U was made from, by name, as the affinity stage recorded them (None: not
    recorded, as in runs made before the record, whose point weights, when not equal, name them too)."""
    stats = load_json(rd.affinity_stats) if rd.affinity_stats.exists() else {}
    return stats.get("points") or (stats.get("point_weights") or {}).get("points")


def recorded_point_weights(rd: RunDir) -> list[float] | None:
    """The combined U's point weights as the affinity stage recorded them (None: equal, or a single point)."""
    record = load_json(rd.affinity_stats).get("point_weights") if rd.affinity_stats.exists() else None
    return None if not record else record.get("weights")


def collect_features(st: RunState, N: int, recompute_all: bool, check_rows: bool,
                     growth: dict[str, Any] | None = None) -> bool:
    """Collect and write the feature files of every block that lacks one (every block with ``recompute_all``; with
    ``check_rows``, also those whose file was made from another N), at N transitions per task; returns whether any
    block ran. Sets ``st.feature_paths`` and ``st.feature_meta``; ``growth`` (the target and the measurements so
    far) is kept in features.json, so that a resumed run knows which N its files are at."""
    growth = growth or {}
    cfg, rd, n = st.cfg, st.rd, st.family.n
    if N != cfg.features.transitions_per_task:
        cfg = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, transitions_per_task=N))
    fc = cfg.features
    blocks = task_blocks(n, fc.task_block)
    statistics = st.store == "statistics"
    paths = [rd.block_statistics(b) for b in range(len(blocks))] if statistics else [rd.task_features(i) for i in range(n)]
    st.feature_paths = paths

    def held(path: Path) -> bool:
        return path.exists() and (not check_rows or holds_transitions(path, statistics, N, fc.holdout_fraction))

    if statistics:
        todo = [b for b in range(len(blocks)) if recompute_all or not held(paths[b])]
    else:
        todo = [b for b, ids in enumerate(blocks) if recompute_all or not all(held(paths[i]) for i in ids)]
    if not todo:
        st.feature_meta = load_json(rd.features_meta) if rd.features_meta.exists() else {}
        return False
    assert st.model is not None
    t0 = time.perf_counter()
    specs = block_specs(cfg, n, todo, rd.path, file_sha(rd.theta_star))
    cache = rd.path / "features" / "jobs"
    projection = projection_for(cfg, st.model)
    if st.launcher.backend == "sequential":  # here, with progress per task
        with make_progress(st.console) as progress:
            what = "gradient statistics" if statistics else "gradient features"
            bar = progress.add_task(what, total=n, info=f"p={projection.p} d={projection.d} N={N}")
            progress.update(bar, completed=n - sum(len(blocks[b]) for b in todo))
            results = [feature_block_job({**spec.args, **spec.paths}, spec.seed, lambda: progress.advance(bar))
                       for spec in specs]
    else:  # jobs on a process pool or Ray, with progress per block
        for spec in specs:  # a block is recomputed because a file is missing: never answered from the cache
            cache_path(cache, spec).unlink(missing_ok=True)
        launcher = dataclasses.replace(st.launcher, threads_per_job=torch.get_num_threads())
        results = run_jobs(specs, cache, launcher, st.console,
                           description=f"gradient {'statistics' if statistics else 'features'} "
                                       f"({len(blocks)} blocks of {fc.task_block} tasks)")
    if not statistics and block_normalization(cfg, n) != fc.advantage_normalization:
        with status(st.console, "batch advantage normalisation over all tasks"):
            renormalise_batch(paths)
    shutil.rmtree(cache, ignore_errors=True)
    # the blocks just run report their tasks' returns; the others' are read from their files (that key only)
    returns: dict[str, float | None] = {}
    for r in results:
        returns.update(r["mean_episode_return"])
    ran = set(todo)
    kept = [i for b, ids in enumerate(blocks) if b not in ran for i in ids]
    if statistics:
        stored = returns_of_statistics([paths[b] for b in range(len(blocks)) if b not in ran])
        returns.update({st.family.task_names[i]: stored[i] for i in kept})
    else:
        returns.update(returns_of_files([paths[i] for i in kept], [st.family.task_names[i] for i in kept]))
    rollouts = sum(r["rollout_seconds"] for r in results)
    meta = {"p": projection.p, "d": projection.d, "N": N, "blocks": len(blocks), "store": st.store,
            "seconds": {"rollouts": rollouts, "gradients_and_files": time.perf_counter() - t0 - rollouts},
            "mean_episode_return": {name: returns[name] for name in st.family.task_names}, **growth}
    atomic_write_json(rd.features_meta, meta)
    st.feature_meta = meta
    return True


def stage_surrogate(st: RunState) -> None:
    if st.surrogate_method == "closed_form":
        stage_statistics(st)
        return
    cfg, rd, n = st.cfg, st.rd, st.family.n
    sc = cfg.surrogate
    if not st.stale("surrogate", rd.subsets, rd.surrogate_record, rd.surrogate_v):
        st.subsets = SubsetTable.load(rd.subsets)
        st.surrogate = load_json(rd.surrogate_record)
        if not isinstance(st.surrogate, dict) or st.surrogate.get("num_subsets") != st.subsets.m:
            raise PolicyGradExError(f"{rd.surrogate_record} does not describe {rd.subsets}; delete both to refit")
        st.done("surrogate", computed=False)
        return
    assert st.model is not None
    t0 = time.perf_counter()
    alpha = subset_size(cfg, n)
    m = sc.num_subsets or default_num_subsets(n)
    sample = sample_subsets(n, alpha, m, cfg.subset_seed)
    subsets, topped_up = sample.subsets, sample.topped_up
    d = cfg.features.projection_dim
    if st.surrogate_method == "newton":
        with status(st.console, f"Newton-step surrogate on {len(subsets)} subsets (per-task statistics, d={d})"):
            res = run_newton(st.statistics(per_task=True), subsets, sc, topped_up)
    else:
        with status(st.console, f"fitting {len(subsets)} subset surrogates (batched L-BFGS, d={d})"):
            res = run_surrogate(st.feature_data(), subsets, sc, topped_up)
    projection = projection_for(cfg, st.model)
    theta_star = flat_params(st.model, st.model.policy_parameter_names())
    rel = [float(projection.lift(torch.as_tensor(v, dtype=torch.float32)).norm() / theta_star.norm()) for v in res.v]
    record = {
        "method": st.surrogate_method,
        "subset_size": alpha,
        "num_subsets": len(subsets),
        "topped_up": topped_up,
        "requested_subsets": m,
        "possible_subsets": sample.possible,
        "all_subsets": sample.exhaustive,
        "evaluation": sc.evaluation,
        "solver": {"iterations": res.info.iterations, "converged": int(res.info.converged.sum()),
                   "max_grad_inf_norm": float(res.info.grad_inf_norm.max())},
        "relative_distance": {"median": float(np.median(rel)), "max": float(np.max(rel))},
        "f_hat": {"min": float(res.f_hat.min()), "max": float(res.f_hat.max())},
    }
    table = SubsetTable.from_result(subsets, res.f_hat, res.f_hat_in_sample, res.f_hat_held_out,
                                    res.loss_at_theta_star, np.asarray(rel), res.task_loss)
    atomic_save_npy(rd.surrogate_v, res.v.astype(np.float32))
    table.save(rd.subsets)
    atomic_write_json(rd.surrogate_record, record)
    st.surrogate, st.subsets = record, table
    st.done("surrogate", computed=True, seconds=time.perf_counter() - t0)


def subset_size(cfg: RunConfig, n: int) -> int:
    """alpha: the configured subset size, or the default for n tasks."""
    return cfg.surrogate.subset_size or default_subset_size(n)


def first_order(cfg: RunConfig) -> bool:
    """Whether the closed form adds the per-task curvature terms (only for the in-sample f^ they model)."""
    return cfg.surrogate.curvature == "first_order" and cfg.surrogate.evaluation == "in_sample"


def stage_statistics(st: RunState) -> None:
    """The surrogate stage of ``closed_form``: per-task statistics streamed from the feature files (statistics.npz)
    and a record of them (surrogate.json); no subsets."""
    cfg, rd = st.cfg, st.rd
    sc = cfg.surrogate
    if not st.stale("surrogate", rd.statistics, rd.surrogate_record):
        arrays = load_npz(rd.statistics)
        st.stats = Statistics.from_arrays({k: v for k, v in arrays.items() if not k.startswith("terms_")},
                                          str(rd.statistics))
        st.terms = CurvatureTerms.from_arrays(arrays)
        if st.terms is None and first_order(cfg):
            raise PolicyGradExError(f"{rd.statistics} lacks the curvature terms; delete it to recompute")
        st.surrogate = load_json(rd.surrogate_record)
        st.done("surrogate", computed=False)
        return
    assert st.model is not None
    t0 = time.perf_counter()
    source = "the feature stage's blocks" if st.store == "statistics" else "features (streamed)"
    with status(st.console, f"per-task statistics of {st.family.n} tasks from {source}, d={cfg.features.projection_dim}"):
        stats = st.statistics()
    terms = None
    if first_order(cfg):
        with status(st.console, f"per-task curvature terms of {st.family.n} tasks (a second streamed pass)"):
            terms = curvature_terms(rows_of_files(st.feature_paths), stats, sc.l2)
    # how far the closed form's adapted policies sit from theta_star: one task alone, and all tasks together
    A = np.linalg.inv(stats.curvature + sc.l2 * np.eye(stats.d))
    V = np.concatenate([stats.b, stats.b.mean(0, keepdims=True)]) @ A
    projection = projection_for(cfg, st.model)
    theta_star = flat_params(st.model, st.model.policy_parameter_names())
    lifted = projection.lift(torch.as_tensor(V.T, dtype=torch.float32))  # (p, n + 1)
    rel = (lifted.norm(dim=0) / theta_star.norm()).numpy()
    record = {
        "method": "closed_form",
        "curvature": "first_order" if terms is not None else "shared",
        "subset_size": subset_size(cfg, st.family.n),
        "evaluation": sc.evaluation,
        "rows_per_task": stats.rows,
        "curvature_rows_per_task": stats.curvature_rows,
        "blocks": stats.blocks,
        "relative_distance": {"single_task_median": float(np.median(rel[:-1])), "single_task_max": float(rel[:-1].max()),
                              "all_tasks": float(rel[-1])},
        "loss_at_theta_star": {"min": float(stats.c.min()), "max": float(stats.c.max())},
    }
    atomic_save_npz(rd.statistics, **stats.arrays(), **(terms.arrays() if terms is not None else {}))
    atomic_write_json(rd.surrogate_record, record)
    st.stats, st.terms, st.surrogate = stats, terms, record
    st.done("surrogate", computed=True, seconds=time.perf_counter() - t0)


def stage_affinity(st: RunState) -> None:
    """U (affinity.npy, .csv) and its split-half reliability. With earlier expansion points (``st.points``, their
    own affinity stages run first) theta_star's own U goes to affinity_theta_star.npy and affinity.npy holds the
    points' combined U (:func:`.clustering.combine`), whose split halves halve every point."""
    cfg, rd, n = st.cfg, st.rd, st.family.n
    options: dict[str, Any] = {"affinity": cfg.cluster.affinity, "interaction": cfg.cluster.interaction}
    if st.points:
        options["expansion_points"] = list(cfg.features.expansion_points)
        if cfg.features.group_points is not None:
            options["group_points"] = cfg.features.group_points
        if cfg.cluster.point_weights != "equal":  # equal: the options (and files) of runs before the option
            options["point_weights"] = cfg.cluster.point_weights
    stats_path = rd.affinity_stats
    fresh = not st.stale("affinity", rd.affinity, rd.affinity_csv, stats_path,
                         *([rd.affinity_theta_star] if st.points else []))
    if fresh and load_json(stats_path).get("options") == options:
        st.U = load_npy(rd.affinity)
        if st.U.shape != (n, n):
            raise PolicyGradExError(f"{rd.affinity} has shape {st.U.shape}, expected ({n}, {n}); delete it to recompute")
        st.done("affinity", computed=False)
        return
    t0 = time.perf_counter()
    weighting = measure_point_weights(st)
    weights = None if weighting is None else weighting["weights"]
    U, directed = own_affinity(st)
    if st.surrogate_method == "closed_form":
        assert all(p.stats is not None for p in st.points)
        point_stats = [st.stats] + [p.stats for p in st.points if p.stats is not None]
        reliability = transition_split_half(point_stats, cfg.surrogate.l2, subset_size(cfg, n), seed=cfg.seed,
                                            weights=weights)
    else:
        assert st.subsets is not None
        subsets, f_hat, task_loss = st.subsets.subsets, st.subsets.f_hat, st.subsets.task_loss_matrix(n)
        f_hats = [f_hat] + [point_subsets(p, subsets).f_hat for p in st.points]
        reliability = split_half_reliability(subsets, f_hats if st.points else f_hat, n, cfg.cluster.affinity,
                                             task_loss, seed=cfg.seed, interaction=cfg.cluster.interaction == "subsets",
                                             weights=weights)
    if st.points:
        assert all(p.U is not None for p in st.points)
        atomic_save_npy(rd.affinity_theta_star, U)
        U = combine([U] + [p.U for p in st.points if p.U is not None], weights)
    # the points combined, by name (theta_star first), which analyses check a run's points against
    atomic_write_json(stats_path, {"split_half": reliability, "options": options,
                                   **({"points": [s.name for s in (st, *st.points)]} if st.points else {}),
                                   **({"point_weights": weighting} if weighting is not None and
                                      weighting["rule"] != "equal" else {})})
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


def own_affinity(st: RunState) -> tuple[np.ndarray, np.ndarray | None]:
    """This state's own U (theta_star's, or one expansion point's) from its surrogate, and the directed U of
    ``--affinity per_target`` (else None): O(n^2) beyond the surrogate's outputs."""
    cfg, n = st.cfg, st.family.n
    if st.surrogate_method == "closed_form":
        assert st.stats is not None
        return affinity(st.stats, cfg.surrogate.l2, subset_size(cfg, n), cfg.surrogate.evaluation, st.terms), None
    assert st.subsets is not None
    return affinity_matrix(cfg.cluster.affinity, st.subsets.subsets, st.subsets.f_hat, st.subsets.task_loss_matrix(n),
                           n, interaction=cfg.cluster.interaction == "subsets")


def cluster_by(U: np.ndarray, cc: ClusterConfig) -> Clustering:
    """:func:`.clustering.cluster` of ``U`` with every option of ``cc`` (the cluster stage's call)."""
    return cluster(U, k=cc.k, lam=cc.lam, solver=cc.solver, method=cc.method, grid_size=cc.lam_grid_size,
                   exhaustive_check=cc.exhaustive_check, min_silhouette=cc.min_silhouette)


def point_subsets(point: RunState, subsets: list[list[int]]) -> SubsetTable:
    """An earlier expansion point's subset table, checked to hold theta_star's subsets (both are drawn from the
    run's subset seed, so they do unless a file was replaced)."""
    assert point.subsets is not None
    if point.subsets.subsets != subsets:
        raise PolicyGradExError(f"{point.rd.subsets} holds other subsets than theta_star's; delete it to refit")
    return point.subsets


def _cluster_options(recorded: dict[str, Any]) -> dict[str, Any] | None:
    """The clustering options a groups.json was made with, a field it lacks (added since) at its default, which is
    what such a run ran with (no ClusterConfig default has changed: :data:`.config.LEGACY_VALUES` holds none), so
    that a new option does not recluster every earlier run; None for a record with a field ClusterConfig lacks."""
    try:
        return dataclasses.asdict(dataclasses.replace(ClusterConfig(), **recorded))
    except TypeError:
        return None


def stage_cluster(st: RunState) -> None:
    cfg, rd = st.cfg, st.rd
    cc = cfg.cluster
    options = dataclasses.asdict(cc)
    if not st.stale("cluster", rd.groups):
        st.groups = Groups.load(rd.groups, st.family.n)
        if _cluster_options(st.groups.cluster_config) == options:
            st.done("cluster", computed=False)
            return
    assert st.U is not None
    t0 = time.perf_counter()
    with status(st.console, "clustering the affinity matrix"):
        res = cluster_by(st.U, cc)
    names = st.family.task_names
    groups = groups_from_labels(res.labels)
    nmi = None
    if st.family.planted_groups is not None:
        truth = labels_from_groups([list(g) for g in st.family.planted_groups], st.family.n)
        nmi = float(normalized_mutual_info_score(truth, res.labels))
    st.groups = Groups(
        names=tuple(tuple(names[i] for i in g) for g in groups),
        indices=tuple(tuple(g) for g in groups),
        k=res.k,
        selection="fixed k" if cc.k else ("given lambda" if cc.lam is not None else "lambda grid, best silhouette"),
        cluster_config=options,
        lam=res.lam,
        method=res.method,
        objective=res.objective,
        grid=tuple(GridRow.from_json(r) for r in res.grid),
        exhaustive_check=None if res.check is None else ExhaustiveCheck.from_json(res.check),
        relaxation=None if res.relaxation is None else Relaxation.from_json(res.relaxation),
        confidence=group_confidence(st, res.labels),
        nmi_planted=nmi,
    )
    st.groups.save(rd.groups)
    st.done("cluster", computed=True, seconds=time.perf_counter() - t0)


def bootstrap_method(method: str, n: int) -> str:
    """The clustering path of each bootstrap resample: ``auto`` is exact for n <= EXACT_MAX_N and fast above."""
    if method == "auto":
        return "exact" if n <= EXACT_MAX_N else "fast"
    return method


def group_confidence(st: RunState, labels: np.ndarray) -> Confidence:
    """Bootstrap of the groups (over the subsets, or over blocks of transitions for ``closed_form``), gradient
    reliability and each task's own signal over transitions, and the verdict."""
    cc, n = st.cfg.cluster, st.family.n
    closed = st.surrogate_method == "closed_form"
    states = [st, *st.points]  # every expansion point, theta_star first
    where = "at the expansion points" if st.points else "at theta_star"
    weights = recorded_point_weights(st.rd) if st.points else None
    halves = [final_signal_halves(s) for s in states]
    firsts, seconds = [h[0] for h in halves if h is not None], [h[1] for h in halves if h is not None]
    grad_rel = None if len(firsts) < len(states) or n < 3 else interaction_reliability(firsts, seconds, weights)
    # a task is placeable when its signal reproduces at any point: the combined U carries each point's
    signal = () if len(firsts) < len(states) else tuple(
        float(x) for x in np.max([task_signal(a, b) for a, b in zip(firsts, seconds)], axis=0))
    split = load_json(st.rd.affinity_stats).get("split_half")
    split_rel = None if split is None else split["reliability"]
    k = int(labels.max() + 1)
    resampled = "transitions" if closed else "subsets"
    reps = BOOTSTRAP_REPS if n <= EXACT_MAX_N else BOOTSTRAP_REPS // 4
    method = bootstrap_method(cc.bootstrap_method, n)
    if (closed or cc.affinity == "subset") and 1 < k < n:
        with status(st.console, f"bootstrap of the groups over the {resampled} ({reps} resamples)"):
            l2, alpha = st.cfg.surrogate.l2, subset_size(st.cfg, n)
            if closed:
                assert all(s.stats is not None for s in states)
                boot = resampled_stability([transition_replicate(s.statistics(), l2, alpha, s.terms) for s in states],
                                           n, labels, reps=reps, seed=st.cfg.seed, weights=weights, method=method,
                                           solver=cc.solver)
            else:
                assert st.subsets is not None
                subsets, f_hat = st.subsets.subsets, st.subsets.f_hat
                f_hats = [f_hat] + [point_subsets(p, subsets).f_hat for p in st.points]
                boot = bootstrap_groups(subsets, f_hats, n, labels, reps=reps, seed=st.cfg.seed,
                                        interaction=cc.interaction == "subsets", weights=weights, method=method,
                                        solver=cc.solver)
        trans: tuple[float, ...] = ()
        if not closed and st.store == "features":
            # the subset bootstrap sees only which subsets were drawn; a second bootstrap over blocks of each task's
            # transitions (through the closed form) sees the sampling noise of the gradients themselves
            with status(st.console, f"bootstrap of the groups over the transitions ({reps} resamples)"):
                tb = resampled_stability([transition_replicate(s.statistics(), l2, alpha) for s in states], n, labels,
                                         reps=reps, seed=st.cfg.seed, weights=weights, method=method, solver=cc.solver)
            trans = tuple(float(j) for j in tb["group_jaccard"])
        jac = tuple(float(j) for j in boot["group_jaccard"])
        both = [min(a, b) for a, b in zip(jac, trans)] if trans else list(jac)
        co = boot.get("coclustering")
        return Confidence(verdict(both, split_rel, grad_rel, resampled, "subsets and transitions" if trans else None,
                                  where),
                          grad_rel, split_rel, resampled, int(boot["reps"]), jac,
                          None if co is None else np.asarray(co, dtype=np.float64), signal,
                          is_noise(both, split_rel, grad_rel), trans, reps if trans else 0)
    if grad_rel is not None and grad_rel < GRADIENT_MIN:
        return Confidence(verdict([], split_rel, grad_rel, resampled, where=where), grad_rel, split_rel,
                          task_signal=signal, noise=True)
    return Confidence("One group (or per-target affinity): no bootstrap of the groups.", grad_rel, split_rel,
                      task_signal=signal)