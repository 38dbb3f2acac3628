"""The surrogate stage's per-subset values as arrays: ``subsets.npz`` (:class:`SubsetTable`), beside the stage's
record ``surrogate.json`` (method, sizes, solver), for the exact and Newton surrogates that sample subsets.

A row per subset S of alpha tasks: its tasks, f^(S) under the run's evaluation and under both, the loss at
theta_star, ||P v_S|| / ||theta_star||, and each member's own loss at v_S. Every subset has the run's alpha tasks,
so the table is O(m alpha) numbers, about 30 MB at n = 1,000 (m = 3 n^2, alpha = 5) where the same values as JSON
dicts with task names took about 1.5 GB and had to be parsed whole by every command. Task names are not stored:
they are the family's (``config.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from policygradex.common.artifacts import atomic_save_npz, load_npz
from policygradex.common.errors import PolicyGradExError


@dataclass(frozen=True)
class SubsetTable:
    """m subsets of alpha tasks and their surrogate values (row j is subset j)."""

    tasks: np.ndarray
    """(m, alpha) int64 task indices, increasing along each row."""
    f_hat: np.ndarray
    """(m,) f^(S) under the run's evaluation (``surrogate.evaluation``): what eq. 5 averages into U."""
    f_hat_in_sample: np.ndarray
    """(m,) f^(S) = -L_S(v_S) on the fitting transitions."""
    f_hat_held_out: np.ndarray
    """(m,) the same on the held-out transitions (nan when none are held out)."""
    loss_at_theta_star: np.ndarray
    """(m,) L_S(0): the loss before adaptation."""
    relative_distance: np.ndarray
    """(m,) ||P v_S|| / ||theta_star||: how far the adapted policy moved."""
    task_loss: np.ndarray
    """(m, alpha) each member's own mean loss at v_S (same order as ``tasks``) under the run's evaluation."""

    @property
    def m(self) -> int:
        return self.tasks.shape[0]

    @property
    def subsets(self) -> list[list[int]]:
        """The subsets as lists of task indices."""
        return self.tasks.tolist()

    def task_loss_matrix(self, n: int) -> np.ndarray:
        """(m, n) task i's loss at v_S, nan where i is not in S (what the per-target affinity reads)."""
        out = np.full((self.m, n), np.nan)
        np.put_along_axis(out, self.tasks, self.task_loss, axis=1)
        return out

    def save(self, path: Path) -> None:
        atomic_save_npz(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: Path) -> "SubsetTable":
        """The table at ``path``, checked for shape; a clear error (delete it to refit) otherwise."""
        try:
            arrays = load_npz(path)
        except (OSError, ValueError) as exc:
            raise PolicyGradExError(f"{path} is unreadable ({exc}); delete it to refit the surrogate") from None
        names = [f.name for f in fields(cls)]
        if not set(names) <= set(arrays):
            raise PolicyGradExError(f"{path} is not a subsets table (lacks {sorted(set(names) - set(arrays))}); "
                                    "delete it to refit the surrogate")
        table = cls(**{k: np.asarray(arrays[k]) for k in names})
        m = table.tasks.shape[0]
        if table.tasks.ndim != 2 or table.task_loss.shape != table.tasks.shape or any(
                getattr(table, k).shape != (m,) for k in names if k not in ("tasks", "task_loss")):
            raise PolicyGradExError(f"{path}'s arrays disagree in shape; delete it to refit the surrogate")
        return table

    @classmethod
    def from_result(cls, subsets: list[list[int]], f_hat: np.ndarray, f_hat_in_sample: np.ndarray,
                    f_hat_held_out: np.ndarray, loss_at_theta_star: np.ndarray, relative_distance: np.ndarray,
                    task_loss: np.ndarray) -> "SubsetTable":
        """From the surrogate's outputs, ``task_loss`` (m, n) with each subset's members read off."""
        tasks = np.asarray(subsets, dtype=np.int64)
        return cls(tasks=tasks, f_hat=np.asarray(f_hat, dtype=np.float64),
                   f_hat_in_sample=np.asarray(f_hat_in_sample, dtype=np.float64),
                   f_hat_held_out=np.asarray(f_hat_held_out, dtype=np.float64),
                   loss_at_theta_star=np.asarray(loss_at_theta_star, dtype=np.float64),
                   relative_distance=np.asarray(relative_distance, dtype=np.float64),
                   task_loss=np.take_along_axis(np.asarray(task_loss, dtype=np.float64), tasks, axis=1))
