"""The cluster stage's output as typed records: :class:`Groups` (``groups.json``) and what it holds.

Every reader of a run's groups (the report, ``show``, ``compare``, ``stability``, ``ground-truth``, ``meta``, the
generalization analysis, the results scripts) goes through :meth:`Groups.load`, which checks the file once, gives
one clear error for a foreign or malformed one, and returns frozen records with named fields instead of nested JSON
dicts. The layout on disk is :meth:`Groups.to_json`'s; files written before these records existed load too.

Size in n: the groups, labels and per-group stability are O(n); the only O(n^2) part is the bootstrap's
co-clustering matrix, which the confidence keeps only up to ``confidence.COCLUSTERING_MAX_N`` tasks, and the
lambda grid's rows (O(grid n)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policygradex.common.artifacts import atomic_write_json, load_json
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.confidence import WEAK_TASK, stability_word


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class Relaxation:
    """An upper bound on every partition's objective at the returned k, and the returned partition's gap to it."""

    k: int
    """The number of groups the bound is for."""
    sdp_value: float
    """The bound: the fixed-k SDP's value <U_std, X*>, or the spectral (Fan) bound (see ``bound``)."""
    partition_value: float
    """<U_std, X> of the returned partition."""
    gap: float
    """sdp_value - partition_value (0 up to solver accuracy proves the partition the best with k groups)."""
    solver: str
    """The SDP solver, or ``eigh`` for the spectral bound."""
    bound: str
    """``sdp`` or ``spectral`` (looser: a positive gap need not mean a better partition exists)."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Relaxation":
        return cls(int(d["k"]), float(d["sdp_value"]), float(d["partition_value"]), float(d["gap"]),
                   str(d.get("solver", "")), str(d.get("bound", "sdp")))

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "sdp_value": self.sdp_value, "partition_value": self.partition_value, "gap": self.gap,
                "solver": self.solver, "bound": self.bound}


@dataclass(frozen=True)
class ExhaustiveCheck:
    """For n <= the exact-search limit: the best partition with the same k, found by enumeration."""

    k: int
    optimal_labels: tuple[int, ...]
    """The enumerated optimum's group label per task."""
    optimal_objective: float
    sdp_objective: float
    """The returned groups' objective."""
    sdp_is_optimal: bool
    """Whether the returned groups reach the optimum."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ExhaustiveCheck":
        return cls(int(d["k"]), tuple(int(i) for i in d["optimal_labels"]), float(d["optimal_objective"]),
                   float(d["sdp_objective"]), bool(d["sdp_is_optimal"]))

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "optimal_labels": list(self.optimal_labels), "optimal_objective": self.optimal_objective,
                "sdp_objective": self.sdp_objective, "sdp_is_optimal": self.sdp_is_optimal}


@dataclass(frozen=True)
class GridRow:
    """One lambda of the lambda grid (selection without k): the partition it rounds to and its silhouette."""

    lam: float
    k: int
    labels: tuple[int, ...]
    silhouette: float | None = None
    """Only for the distinct partitions on the path (None where the silhouette is undefined or not computed)."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "GridRow":
        return cls(float(d["lam"]), int(d["k"]), tuple(int(i) for i in d["labels"]), _opt_float(d.get("silhouette")))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lam": self.lam, "k": self.k, "labels": list(self.labels)}
        if self.silhouette is not None:
            out["silhouette"] = self.silhouette
        return out


@dataclass(frozen=True)
class Confidence:
    """How sure the groups are (:mod:`.confidence`): the verdict and the numbers behind it."""

    verdict: str
    """One plain sentence (``confidence.verdict``)."""
    gradient_reliability: float | None
    """Split-half reliability, over transitions, of the gradient interaction G G^T (None below 3 tasks or 4 rows)."""
    split_half_reliability: float | None
    """Split-half reliability of U over the subsets or the transitions (None where it is undefined)."""
    resampled: str | None = None
    """What the bootstrap resampled: ``subsets`` or ``transitions``; None when there was no bootstrap."""
    reps: int = 0
    """Bootstrap resamples used (0: no bootstrap)."""
    group_jaccard: tuple[float, ...] = ()
    """Per group, the mean over resamples of its best Jaccard overlap with a resampled group (Hennig)."""
    coclustering: np.ndarray | None = field(default=None, compare=False)
    """(n, n) how often each pair of tasks shared a group over the resamples; None above COCLUSTERING_MAX_N."""
    task_signal: tuple[float, ...] = ()
    """Per task, the split-half (in time) reliability of its own gradient direction (``confidence.task_signal``);
    below ``confidence.WEAK_TASK`` the task is too weak to place. Empty in files written before it existed."""
    noise: bool = False
    """Whether the verdict calls the groups indistinguishable from noise (``confidence.is_noise``): then no group's
    word is "stable"."""
    transition_jaccard: tuple[float, ...] = ()
    """Runs that bootstrap the subsets: per group, its Jaccard under the second bootstrap, over blocks of each task's
    transitions (``confidence.transition_bootstrap``, through the closed form). Empty where there is none."""
    transition_reps: int = 0
    """Resamples of that transition bootstrap (0: none)."""

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Confidence":
        jac = d.get("group_jaccard") or []
        co = d.get("coclustering")
        reps = int(d.get("reps", 0))
        resampled = d.get("resampled", "subsets" if reps else None)
        return cls(str(d.get("verdict", "")), _opt_float(d.get("gradient_reliability")),
                   _opt_float(d.get("split_half_reliability")), resampled, reps,
                   tuple(float(j) for j in jac), None if co is None else np.asarray(co, dtype=np.float64),
                   tuple(float(x) for x in d.get("task_signal") or []),
                   bool(d.get("noise", str(d.get("verdict", "")).startswith("Not distinguishable"))),
                   tuple(float(j) for j in d.get("transition_jaccard") or []), int(d.get("transition_reps", 0)))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gradient_reliability": self.gradient_reliability,
                               "split_half_reliability": self.split_half_reliability}
        if self.reps:
            out.update({"resampled": self.resampled, "reps": self.reps, "group_jaccard": list(self.group_jaccard)})
            if self.coclustering is not None:
                out["coclustering"] = self.coclustering.tolist()
        if self.transition_reps:
            out.update({"transition_reps": self.transition_reps, "transition_jaccard": list(self.transition_jaccard)})
        out["task_signal"] = list(self.task_signal)
        out["noise"] = self.noise
        out["verdict"] = self.verdict
        return out

    def jaccard(self, group: int) -> float:
        """The group's Jaccard that its word reads: the lower of the subset and the transition bootstrap's, where
        both ran (a group must survive both kinds of resampling to be stable)."""
        j = self.group_jaccard[group]
        return min(j, self.transition_jaccard[group]) if self.transition_jaccard else j

    def word(self, group: int) -> str:
        """The group's stability word: Hennig's reading of :meth:`jaccard` (``confidence.stability_word``), but
        ``noise`` whenever the verdict finds no signal."""
        return "noise" if self.noise else stability_word(self.jaccard(group))

    def weak_tasks(self, threshold: float = WEAK_TASK) -> list[int]:
        """Tasks whose own gradient signal is below ``threshold`` (``confidence.WEAK_TASK``): too weak to place."""
        return [i for i, s in enumerate(self.task_signal) if s < threshold]

    @property
    def mean_jaccard(self) -> float:
        """Mean of the per-group Jaccards (nan without a bootstrap)."""
        return float(np.mean(self.group_jaccard)) if self.group_jaccard else math.nan


@dataclass(frozen=True)
class Groups:
    """A run's groups (``groups.json``): the partition, how it was found, and how sure it is."""

    names: tuple[tuple[str, ...], ...]
    """Each group's task names (the family's, in task order within a group)."""
    indices: tuple[tuple[int, ...], ...]
    """Each group's task indices, increasing; together a partition of 0..n-1."""
    k: int
    """The number of groups."""
    selection: str
    """How k was chosen: ``fixed k``, ``given lambda`` or ``lambda grid, best silhouette``."""
    cluster_config: dict[str, Any]
    """The run's ``ClusterConfig`` as a dict: a rerun with other cluster options reclusters."""
    lam: float | None = None
    """The penalty lambda where one was used."""
    method: str | None = None
    """``exact``, ``sdp`` or ``fast``: how the labels were found (``clustering.Clustering.method``)."""
    objective: float | None = None
    """<U_std, X_partition> of the groups."""
    grid: tuple[GridRow, ...] = ()
    """The lambda grid's rows (selection without k)."""
    exhaustive_check: ExhaustiveCheck | None = None
    relaxation: Relaxation | None = None
    confidence: Confidence | None = None
    nmi_planted: float | None = None
    """NMI with the family's planted groups, where the family has them."""

    @property
    def n(self) -> int:
        return sum(len(g) for g in self.indices)

    def labels(self) -> np.ndarray:
        """(n,) int64 group label per task (group j of ``indices`` is label j)."""
        out = np.empty(self.n, dtype=np.int64)
        for j, g in enumerate(self.indices):
            out[list(g)] = j
        return out

    def index_lists(self) -> list[list[int]]:
        """``indices`` as lists (what the clustering and training helpers take)."""
        return [list(g) for g in self.indices]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "groups": [list(g) for g in self.names],
            "group_indices": [list(g) for g in self.indices],
            "k": self.k,
            "lam": self.lam,
            "method": self.method,
            "selection": self.selection,
            "grid": [r.to_json() for r in self.grid],
            "exhaustive_check": None if self.exhaustive_check is None else self.exhaustive_check.to_json(),
            "objective": self.objective,
            "relaxation": None if self.relaxation is None else self.relaxation.to_json(),
            "confidence": None if self.confidence is None else self.confidence.to_json(),
            "cluster_config": self.cluster_config,
        }
        if self.nmi_planted is not None:
            out["nmi_planted"] = self.nmi_planted
        return out

    @classmethod
    def from_json(cls, d: Any, source: str = "groups.json", n: int | None = None) -> "Groups":
        """The record of a ``groups.json`` blob; PolicyGradExError naming ``source`` for anything malformed, and, with
        ``n``, for groups that are not a partition of the n tasks."""
        bad = PolicyGradExError(f"{source} is not a policygradex groups file (delete it to recluster)")
        if not isinstance(d, dict) or not {"groups", "group_indices", "k"} <= set(d):
            raise bad
        try:
            indices = tuple(tuple(int(i) for i in g) for g in d["group_indices"])
            names = tuple(tuple(str(s) for s in g) for g in d["groups"])
            conf, check, rel = d.get("confidence"), d.get("exhaustive_check"), d.get("relaxation")
            out = cls(names=names, indices=indices, k=int(d["k"]), selection=str(d.get("selection", "fixed k")),
                      cluster_config=dict(d.get("cluster_config") or {}), lam=_opt_float(d.get("lam")),
                      method=d.get("method"), objective=_opt_float(d.get("objective")),
                      grid=tuple(GridRow.from_json(r) for r in d.get("grid") or []),
                      exhaustive_check=None if not check else ExhaustiveCheck.from_json(check),
                      relaxation=None if not rel else Relaxation.from_json(rel),
                      confidence=None if not conf else Confidence.from_json(conf),
                      nmi_planted=_opt_float(d.get("nmi_planted")))
        except (TypeError, KeyError, ValueError) as e:
            raise bad from e
        if len(names) != len(indices) or any(len(a) != len(b) for a, b in zip(names, indices)) \
                or out.k != len(indices) or any(not g for g in indices):
            raise bad
        if n is not None and sorted(i for g in indices for i in g) != list(range(n)):
            raise PolicyGradExError(f"{source}: the groups do not partition the run's {n} tasks (each exactly once)")
        return out

    @classmethod
    def load(cls, path: Path, n: int | None = None) -> "Groups":
        """Read and check ``path`` (see :meth:`from_json`)."""
        if not Path(path).is_file():
            raise PolicyGradExError(f"{path} is missing: the run is unfinished; rerun `policygradex run` with its --out")
        return cls.from_json(load_json(path), str(path), n)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_json())
