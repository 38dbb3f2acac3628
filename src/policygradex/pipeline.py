"""The whole run: stages with on-disk artifacts, resumed when present, written atomically.

    meta_train -> features -> surrogate -> affinity -> cluster -> report

A stage whose artifacts exist is loaded, not recomputed; a stage that is recomputed forces every later stage to be
recomputed too. ``config.json`` pins the configuration: resuming with a different one is an error.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from sklearn.metrics import normalized_mutual_info_score

from . import __version__
from .affinity import affinity_matrix, split_half_reliability
from .artifacts import (
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
from .clustering import EXACT_MAX_N, cluster, groups_from_labels, labels_from_groups
from .confidence import GRADIENT_MIN, bootstrap_groups, gradient_reliability, verdict
from .config import RunConfig
from .errors import PolicyGradExError
from .families import MultiTaskVectorEnv, TaskFamily, load_family
from .features import (RandomProjection, collect_transitions, fit_rows, logistic_targets, normalize_advantages,
                       projected_gradients)
from .networks import flat_params, make_network
from .ppo import train_ppo
from .progress import make_progress, status
from .surrogate import FeatureSet, default_num_subsets, default_subset_size, run_surrogate, sample_subsets
from .threads import thread_limit

STAGES = ("meta_train", "features", "surrogate", "affinity", "cluster")
BOOTSTRAP_REPS = 200
"""Resamples of the subsets behind each group's stability (a quarter of it above the exact-search limit)."""


@dataclass
class RunDir:
    """Paths of a run's artifacts."""

    path: Path
    new_record: dict[str, Any] | None = None
    """Set by :func:`open_run_dir` when only clustering options changed: the config.json to write under the lock."""

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    config = property(lambda self: self.path / "config.json")
    timings = property(lambda self: self.path / "timings.json")
    theta_star = property(lambda self: self.path / "theta_star.pt")
    checkpoint = property(lambda self: self.path / "theta_star.checkpoint.pt")
    curve = property(lambda self: self.path / "meta_train_curve.csv")
    features_dir = property(lambda self: self.path / "features")
    subsets = property(lambda self: self.path / "subsets.json")
    surrogate_v = property(lambda self: self.path / "surrogate_v.npy")
    affinity = property(lambda self: self.path / "affinity.npy")
    affinity_csv = property(lambda self: self.path / "affinity.csv")
    affinity_directed = property(lambda self: self.path / "affinity_directed.npy")
    groups = property(lambda self: self.path / "groups.json")
    heatmap = property(lambda self: self.path / "affinity.png")
    curve_png = property(lambda self: self.path / "meta_train_curve.png")
    report = property(lambda self: self.path / "report.md")

    def task_features(self, i: int) -> Path:
        return self.features_dir / f"task_{i:03d}.npz"


def config_record(cfg: RunConfig, family: TaskFamily) -> dict[str, Any]:
    return {
        "policygradex_version": __version__,
        "config": cfg.to_dict(),
        "family": {"name": family.name, "tasks": [{"name": t.name, "params": dict(t.params)} for t in family.tasks]},
    }


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        a, b = list(a), list(b)
    return [] if a == b else [f"{prefix[:-1]}: {a!r} -> {b!r}"]


def open_run_dir(out: Path, cfg: RunConfig, family: TaskFamily) -> RunDir:
    """Create the run directory, or check that an existing one was made with the same configuration (clustering
    options may differ: the run is then reclustered without retraining)."""
    rd = RunDir(out)
    if rd.path.exists() and not rd.path.is_dir():
        raise PolicyGradExError(f"--out {rd.path} exists and is not a directory")
    record = config_record(cfg, family)
    if rd.config.exists():
        old = load_json(rd.config)
        if not isinstance(old, dict) or "config" not in old:
            raise PolicyGradExError(f"{rd.config} is not a policygradex config; use another --out or delete the directory")
        # compare configs only, not the version: resuming across patch releases is allowed
        diffs = _diff(old.get("config"), record["config"]) + _diff(old.get("family"), record["family"])
        if diffs and all(d.startswith("cluster.") for d in diffs):
            # only clustering options changed: every earlier stage is reused; the affinity and cluster stages see
            # the options they were computed with in their own artifacts and recompute what depends on them.
            # config.json is rewritten by run_pipeline once it holds the directory's lock.
            rd.new_record = {**old, "config": record["config"]}
        elif diffs:
            raise PolicyGradExError(
                f"{rd.path} holds a run with a different configuration ({'; '.join(diffs[:4])}); "
                "use another --out, or the same options to resume"
            )
    elif rd.path.exists() and any(rd.path.iterdir()):
        raise PolicyGradExError(f"--out {rd.path} is not empty and has no config.json: not a policygradex run directory")
    else:
        try:
            atomic_write_json(rd.config, record)
        except OSError as exc:
            raise PolicyGradExError(f"--out {rd.path} cannot be written ({exc.strerror or exc})") from None
    return rd


@contextlib.contextmanager
def run_lock(rd: RunDir) -> Iterator[None]:
    """Hold an exclusive lock on the run directory (``.lock``, released when the process ends, even on a crash):
    a second run into the same directory at the same time is refused instead of interleaving its writes."""
    path = rd.path / ".lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise PolicyGradExError(f"{rd.path} is in use by another policygradex run (pid {holder}); wait for it to "
                                    "finish or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


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
def stage_meta_train(st: RunState) -> None:
    cfg, rd = st.cfg, st.rd
    probe = MultiTaskVectorEnv(st.family, [0], 1, 0, cfg.network.task_id)
    obs_dim, action_space = probe.obs_dim, probe.single_action_space
    probe.close()
    if not st.stale("meta_train", rd.theta_star, rd.curve):
        blob = load_torch(rd.theta_star)
        model = make_network(obs_dim, action_space, cfg.network)
        try:
            model.load_state_dict(blob["state_dict"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise PolicyGradExError(f"{rd.theta_star} does not match this configuration ({exc}); delete it to retrain") from None
        st.model, st.curve = model, _read_curve(rd.curve)
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
    atomic_torch_save({"state_dict": result.model.state_dict(), "obs_dim": obs_dim,
                       "policy_parameter_names": result.model.policy_parameter_names()}, rd.theta_star)
    _write_curve(rd.curve, result.curve)
    rd.checkpoint.unlink(missing_ok=True)
    st.model, st.curve = result.model, result.curve
    st.done("meta_train", computed=True, seconds=time.perf_counter() - t0)


def _write_curve(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _read_curve(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    except (OSError, ValueError) as exc:
        raise PolicyGradExError(f"{path} is unreadable ({exc}); delete it and theta_star.pt to retrain") from None


def projection_for(cfg: RunConfig, model: torch.nn.Module) -> RandomProjection:
    p = flat_params(model, model.policy_parameter_names()).numel()
    fc = cfg.features
    return RandomProjection(p, fc.projection_dim, cfg.projection_seed, fc.projection_block_rows, fc.projection_cache_mb)


def stage_features(st: RunState) -> None:
    cfg, rd, n = st.cfg, st.rd, st.family.n
    fc = cfg.features
    paths = [rd.task_features(i) for i in range(n)]
    if not st.stale("features", *paths):
        arrays = [load_npz(p) for p in paths]
        st.features = feature_set(arrays, fc.holdout_fraction, paths)
        st.feature_meta = load_json(rd.features_dir / "meta.json") if (rd.features_dir / "meta.json").exists() else {}
        st.done("features", computed=False)
        return
    assert st.model is not None
    t0 = time.perf_counter()
    recompute_all = any(st.status.get(s) == "computed" for s in ("meta_train",))
    todo = [i for i in range(n) if recompute_all or not paths[i].exists()]
    transitions = collect_transitions(st.family, st.model, fc, cfg.ppo, cfg.feature_seed, cfg.network.task_id)
    advantages = normalize_advantages([t.advantages for t in transitions], fc.advantage_normalization)
    projection = projection_for(cfg, st.model)
    with make_progress(st.console) as progress:
        bar = progress.add_task("gradient features", total=n, info=f"p={projection.p} d={projection.d}")
        progress.update(bar, completed=n - len(todo))
        for i in todo:
            tr = transitions[i]
            feats = projected_gradients(st.model, tr.obs, tr.actions, projection, fc)
            labels, weights = logistic_targets(advantages[i])
            atomic_save_npz(paths[i], features=feats.numpy().astype(np.float32), labels=labels, weights=weights,
                            advantages=tr.advantages.astype(np.float32),
                            episode_returns=np.asarray(tr.episode_returns, dtype=np.float32))
            progress.advance(bar)
    meta = {"p": projection.p, "d": projection.d, "N": fc.transitions_per_task,
            "mean_episode_return": {st.family.tasks[i].name: float(np.mean(t.episode_returns)) if t.episode_returns
                                    else None for i, t in enumerate(transitions)}}
    atomic_write_json(rd.features_dir / "meta.json", meta)
    st.feature_meta = meta
    st.features = feature_set([load_npz(p) for p in paths], fc.holdout_fraction, paths)
    st.done("features", computed=True, seconds=time.perf_counter() - t0)


def feature_set(arrays: list[dict[str, np.ndarray]], holdout: float, paths: list[Path]) -> FeatureSet:
    for a, p in zip(arrays, paths):
        if not {"features", "labels", "weights"} <= set(a):
            raise PolicyGradExError(f"{p} lacks features/labels/weights; delete it to recompute the features")
    shapes = {a["features"].shape for a in arrays}
    if len(shapes) != 1:
        raise PolicyGradExError(f"feature files disagree in shape {sorted(shapes)}; delete {paths[0].parent} to recompute")
    return FeatureSet(
        features=torch.from_numpy(np.stack([a["features"] for a in arrays])),
        labels=torch.from_numpy(np.stack([a["labels"] for a in arrays])),
        weights=torch.from_numpy(np.stack([a["weights"] for a in arrays])),
        n_fit=fit_rows(arrays[0]["features"].shape[0], holdout),
    )


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
    stats_path = rd.path / "affinity_stats.json"
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
    split = load_json(st.rd.path / "affinity_stats.json").get("split_half")
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


def run_pipeline(cfg: RunConfig, out: Path, console: Console | None = None, threads: int = 1) -> RunState:
    """Run (or resume) every stage into ``out``; returns the final state. Writes report.md and the plots.

    ``threads``: torch / BLAS threads for the whole run (:func:`~policygradex.threads.thread_limit`); results are
    identical for any OMP_NUM_THREADS, but not across values of ``threads`` (results/bench_threads.md)."""
    from .report import write_report

    if threads < 1:
        raise PolicyGradExError(f"--threads must be >= 1, got {threads}")
    console = console or Console(stderr=True)
    family = load_family(cfg.family)
    _validate(cfg, family)
    rd = open_run_dir(out, cfg, family)
    with run_lock(rd), thread_limit(threads):
        if rd.new_record is not None:
            atomic_write_json(rd.config, rd.new_record)
        torch.manual_seed(cfg.seed)
        st = RunState(cfg, family, rd, console)
        if rd.timings.exists():
            st.timings = {k: float(v) for k, v in load_json(rd.timings).items()}
        for stage in (stage_meta_train, stage_features, stage_surrogate, stage_affinity, stage_cluster):
            stage(st)
        write_report(st)
    return st


def _validate(cfg: RunConfig, family: TaskFamily) -> None:
    n = family.n
    k = cfg.cluster.k
    if k is not None and not 1 <= k <= n:
        raise PolicyGradExError(f"--k {k} is out of range: family {family.name!r} has {n} tasks, so 1 <= k <= {n}")
    if cfg.cluster.k is not None and cfg.cluster.lam is not None:
        raise PolicyGradExError("give either --k or --lam, not both")
    if cfg.cluster.lam is not None and not (math.isfinite(cfg.cluster.lam) and cfg.cluster.lam >= 0):
        raise PolicyGradExError(f"--lam must be a finite number >= 0, got {cfg.cluster.lam}")
    if not 0 <= cfg.seed < 2**32:
        raise PolicyGradExError(f"--seed must be an integer in [0, 2^32), got {cfg.seed}")
    if not cfg.ppo.learning_rate > 0:
        raise PolicyGradExError(f"--lr must be > 0, got {cfg.ppo.learning_rate}")
    if not cfg.surrogate.l2 >= 0:
        raise PolicyGradExError(f"--l2 must be >= 0, got {cfg.surrogate.l2}")
    a = cfg.surrogate.subset_size
    if a is not None and not 2 <= a <= n:
        raise PolicyGradExError(f"--subset-size {a} must be between 2 and the number of tasks ({n})")
    if cfg.surrogate.num_subsets is not None and cfg.surrogate.num_subsets < 1:
        raise PolicyGradExError(f"--num-subsets must be >= 1, got {cfg.surrogate.num_subsets}")
    if cfg.cluster.method in ("exact", "exhaustive") and n > EXACT_MAX_N:
        raise PolicyGradExError(f"--cluster-method {cfg.cluster.method} needs n <= {EXACT_MAX_N} tasks, family has {n}")
    if not 0.0 <= cfg.features.holdout_fraction < 1.0:
        raise PolicyGradExError(f"--holdout-fraction must be in [0, 1), got {cfg.features.holdout_fraction}")
    if cfg.features.holdout_fraction == 0.0 and cfg.surrogate.evaluation == "held_out":
        raise PolicyGradExError("--holdout-fraction 0 leaves nothing held out: raise it or use --evaluation in_sample")
    for name, value in [("--steps-per-task", cfg.ppo.steps_per_task), ("--transitions", cfg.features.transitions_per_task),
                        ("--projection-dim", cfg.features.projection_dim)]:
        if value < 1:
            raise PolicyGradExError(f"{name} must be >= 1, got {value}")


def load_run(out: Path) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """(config record, groups, affinity) of a finished run, with clear errors for anything missing."""
    rd = RunDir(out)
    if not rd.path.is_dir():
        raise PolicyGradExError(f"{rd.path} is not a directory")
    if not rd.config.exists():
        raise PolicyGradExError(f"{rd.path} has no config.json: not a policygradex run directory")
    record = load_json(rd.config)
    for p in (rd.groups, rd.affinity):
        if not p.exists():
            raise PolicyGradExError(f"{p} is missing: the run is unfinished; rerun `policygradex run` with --out {rd.path}")
    groups = load_json(rd.groups)
    U = load_npy(rd.affinity)
    ok = (isinstance(record, dict) and isinstance(record.get("family"), dict)
          and isinstance(record["family"].get("tasks"), list)
          and isinstance(groups, dict) and {"groups", "group_indices", "k"} <= set(groups))
    if not ok:
        raise PolicyGradExError(f"{rd.path}: config.json or groups.json is malformed; rerun into a fresh directory")
    return record, groups, U

