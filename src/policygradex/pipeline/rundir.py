"""A run directory: its artifacts' paths, the configuration it pins, its lock, and reading a finished run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policygradex import __version__
from policygradex.common.artifacts import atomic_write_json, load_json, load_npy
from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import TaskFamily
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.group_record import Groups


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
    subsets = property(lambda self: self.path / "subsets.npz")
    surrogate_v = property(lambda self: self.path / "surrogate_v.npy")
    statistics = property(lambda self: self.path / "statistics.npz")
    surrogate_record = property(lambda self: self.path / "surrogate.json")
    affinity = property(lambda self: self.path / "affinity.npy")
    affinity_csv = property(lambda self: self.path / "affinity.csv")
    affinity_directed = property(lambda self: self.path / "affinity_directed.npy")
    affinity_stats = property(lambda self: self.path / "affinity_stats.json")
    features_meta = property(lambda self: self.path / "features" / "meta.json")
    groups = property(lambda self: self.path / "groups.json")
    heatmap = property(lambda self: self.path / "affinity.png")
    curve_png = property(lambda self: self.path / "meta_train_curve.png")
    report = property(lambda self: self.path / "report.md")

    affinity_theta_star = property(lambda self: self.path / "affinity_theta_star.npy")
    """With several expansion points: theta_star's own U (affinity.npy holds the points' combined U)."""

    def point(self, fraction: float) -> "RunDir":
        """The run directory of an earlier expansion point (``points/F``): its snapshot of the policy as
        theta_star.pt, and that point's features, surrogate and affinity."""
        return RunDir(self.path / "points" / f"{fraction:g}")

    def group_point(self, group: int) -> "RunDir":
        """The run directory of group ``group``'s point (``points/groupJ``, :mod:`.group_points`): theta_star
        fine-tuned on that group's tasks, members.json (the tasks), and that point's features, surrogate and
        affinity."""
        return RunDir(self.path / "points" / f"group{group}")

    first_pass = property(lambda self: self.path / "points" / "first_pass.json")
    """The first clustering of a run with group points, with the inputs it was made from (:mod:`.group_points`)."""

    def group_point_tasks(self) -> list[list[int]]:
        """The first clustering's groups of a run with group points, from their members.json, in group order."""
        out: list[list[int]] = []
        while (self.group_point(len(out)).path / "members.json").exists():
            out.append([int(i) for i in load_json(self.group_point(len(out)).path / "members.json")["tasks"]])
        return out

    def task_features(self, i: int) -> Path:
        return self.features_dir / f"task_{i:03d}.npz"

    def block_statistics(self, b: int) -> Path:
        """``--store statistics``: the closed form's statistics of the feature stage's block b of tasks."""
        return self.features_dir / f"statistics_{b:04d}.npz"


def config_record(cfg: RunConfig, family: TaskFamily) -> dict[str, Any]:
    return {
        "policygradex_version": __version__,
        "config": cfg.to_dict(),
        "family": {"name": family.name, "tasks": [{"name": t.name, "params": dict(t.params)} for t in family.tasks]},
    }


def without_idle_options(config: dict[str, Any]) -> dict[str, Any]:
    """A config record without the options that have no effect under it, for comparing two runs' configurations:
    the cap on N (``features.max_transitions_per_task``) without a target reliability (runs made before the cap
    became a multiple of N recorded 65,536 there), and where the earlier expansion points' policies come from
    (``features.expansion_policy``) without earlier points."""
    features = config.get("features")
    if not isinstance(features, dict):
        return config
    if len(features.get("expansion_points") or (1.0,)) == 1:
        features = {**features, "expansion_policy": None}
    if features.get("target_reliability") is None:
        features = {**features, "max_transitions_per_task": None}
    return {**config, "features": features}


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Every leaf where two config records differ, as ``section.field: old -> new`` (lists and tuples alike)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += config_diff(a.get(key), b.get(key), f"{prefix}{key}.")
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
        # compare configs only, not the version: resuming across patch releases is allowed. Options added since the
        # run was made take the value it ran with (RunConfig.from_dict: their default, or the earlier behaviour where
        # the default has changed since), so an older run directory resumes under the options it was made with.
        old_config = old.get("config")
        if isinstance(old_config, dict):
            old_config = without_idle_options(RunConfig.from_dict(old_config).to_dict())
        diffs = (config_diff(old_config, without_idle_options(record["config"]))
                 + config_diff(old.get("family"), record["family"]))
        if diffs and all(d.startswith(("cluster.", "features.group_points:")) for d in diffs):
            # only clustering options (or the group points, which add stages) changed: every earlier stage is
            # reused; the affinity and cluster stages see the options they were computed with in their own
            # artifacts and recompute what depends on them.
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


def load_run(out: Path) -> tuple[dict[str, Any], Groups, np.ndarray]:
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
    if not (isinstance(record, dict) and isinstance(record.get("family"), dict)
            and isinstance(record["family"].get("tasks"), list)):
        raise PolicyGradExError(f"{rd.path}: config.json is malformed; rerun into a fresh directory")
    groups = Groups.load(rd.groups, len(record["family"]["tasks"]))
    U = load_npy(rd.affinity)
    return record, groups, U
