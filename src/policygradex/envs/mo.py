"""Multi-objective families (optional extra ``[mo]``): any MO-Gymnasium environment and a set of preference
weights, each weight vector one task, scalarised linearly (``mo_gymnasium.wrappers.LinearReward``).

``policygradex run mo:mo-lunar-lander-v3 --weights weights.csv`` (an n x r CSV, one weight vector per row) or
``'mo:mo-lunar-lander-v3(weights=6)'`` (6 weight vectors spread over the simplex). The CLI writes the weights into
the family's name in config.json, so the run stays self-contained. Each task's vector return (one entry per
objective, the ``vector_return`` metric) is reported beside the scalar one.

Spread weights by count: the first is a corner of the simplex, then greedily the lattice point farthest from all
chosen ones (farthest-point sampling over a Das-Dennis lattice fine enough for 20 candidates per weight). They
are deterministic, and the corners come before the interior: with count = r they are the r single objectives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import EpisodeMetric, Task, TaskFamily, import_extra

INSTALL_HINT = "pip install --no-deps 'mo-gymnasium>=1.3,<2' (it asks for pygame; pygame-ce provides it)"


def require_mo_gymnasium() -> Any:
    return import_extra("mo_gymnasium", "an MO family (MO-Gymnasium)", INSTALL_HINT)


def simplex_lattice(r: int, h: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/h, ..., 1} summing to 1 (the Das-Dennis lattice), C(h+r-1, r-1)."""
    # stars and bars: r - 1 bars among h + r - 1 places; the gaps between them are the r counts
    points = [np.diff([-1, *bars, h + r - 1]) - 1 for bars in itertools.combinations(range(h + r - 1), r - 1)]
    return np.array(points, dtype=np.float64).reshape(-1, r) / h


def spread_weights(r: int, count: int) -> np.ndarray:
    """``count`` weight vectors on the r-simplex, spread by farthest-point sampling over a fine lattice."""
    if r < 1 or count < 1:
        raise PolicyGradExError(f"need at least one objective and one weight, got r={r}, count={count}")
    h = 1
    while math.comb(h + r - 1, r - 1) < 20 * count:
        h += 1
    lattice = simplex_lattice(r, h)
    chosen = [int(np.argmax(lattice[:, 0]))]  # the first objective's corner
    dist = np.linalg.norm(lattice - lattice[chosen[0]], axis=1)
    while len(chosen) < count:
        chosen.append(int(np.argmax(dist)))
        dist = np.minimum(dist, np.linalg.norm(lattice - lattice[chosen[-1]], axis=1))
    return lattice[chosen]


def _mo_env(env_id: str, weight: np.ndarray) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        mo_gym = require_mo_gymnasium()
        env = mo_gym.make(env_id)
        return mo_gym.wrappers.LinearReward(env, weight=weight)

    return make


def reward_dim(env_id: str) -> int:
    env = require_mo_gymnasium().make(env_id)
    try:
        return int(np.prod(env.unwrapped.reward_space.shape))
    finally:
        env.close()


def mo_family(env_id: str, weights: int | Sequence[Sequence[float]] | None = None) -> TaskFamily:
    """One task per weight vector of ``weights`` (an n x r matrix), or per vector of ``spread_weights(r, weights)``
    (default: r, the single objectives). Weights must be >= 0 and are normalised to sum to 1."""
    if weights is None or isinstance(weights, (int, np.integer)):
        r = reward_dim(env_id)
        W = spread_weights(r, int(weights) if weights is not None else r)
    else:
        W = np.asarray(weights, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] < 1:
            raise PolicyGradExError(f"weights must be an n x r matrix, got shape {W.shape}")
        if (W < 0).any() or not (W.sum(axis=1) > 0).all():
            raise PolicyGradExError("every weight vector must be >= 0 with a positive sum")
        if W.shape[1] != (r := reward_dim(env_id)):
            raise PolicyGradExError(f"{env_id} has {r} objectives, but the weights have {W.shape[1]} columns")
        W = W / W.sum(axis=1, keepdims=True)
    if len({tuple(np.round(w, 6)) for w in W}) < len(W):
        raise PolicyGradExError("the weight vectors must differ: two tasks would be the same")
    digits = 2 if len({tuple(np.round(w, 2)) for w in W}) == len(W) else 4  # names must differ too

    def task(w: np.ndarray, digits: int) -> Task:
        return Task("w=(" + ",".join(f"{x:.{digits}f}" for x in w) + ")", _mo_env(env_id, w.copy()),
                    {f"w{k}": float(x) for k, x in enumerate(w)})

    tasks = tuple(task(w, digits) for w in W)
    # an unseen task: a weight vector uniform on the simplex (Dirichlet(1, ..., 1)), rounded to 4 decimals
    sample = lambda rng: task(np.round(rng.dirichlet(np.ones(W.shape[1])), 4), 4)  # noqa: E731
    return TaskFamily(f"mo:{env_id}", tasks, f"{env_id} scalarised by {len(W)} weight vectors over {W.shape[1]} "
                      "objectives (the mo extra)",
                      metrics=(EpisodeMetric("vector_return", "vector_reward", "sum", scalar=False),),
                      sample_task=sample)
