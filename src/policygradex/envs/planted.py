"""A task family with planted groups, to check on your own machine that the method recovers real structure.

``planted`` is CartPole in which each group of tasks sees the world through its own rotation of the observation:
the (cart position, pole angle) and (cart velocity, pole angular velocity) planes are rotated by the group's angle
phi_g = conflict * 2 pi g / G. Every task alone is exactly as easy as CartPole (a policy can undo any rotation),
but tasks of different groups need different observation-to-action maps, so one shared policy suffers while one
policy per group does not: the kind of conflict that opposite rewards do not capture, and that the estimate must
find. Within a group, tasks differ mildly in pole length (half length 0.4-0.8 m, gymnasium's default is 0.5), so no
two tasks are identical. Task i belongs to group i mod G (groups interleave, so nothing can be read off the order);
``TaskFamily.planted_groups`` holds the truth for the report and ``compare``.

Parameters, given as ``planted(n=12,groups=4,conflict=0.5)`` on the command line: ``n`` tasks (default 10),
``groups`` (default 3), ``conflict`` in [0, 1] (default 1: angles 0, 120, 240 degrees for 3 groups; 0: no
structure at all, every group sees plain CartPole), ``orthogonal`` (default 0).

Many groups: plane rotations put G groups 360/G degrees apart, so at G = 100 neighbouring groups differ by 3.6
degrees and are barely told apart (a continuum more than clusters). With
``orthogonal=1`` group g > 0 sees the observation through its own random rotation of all four coordinates
(Q_g drawn from the uniform distribution on SO(4), seeded by g, raised to the power ``conflict``; group 0 sees
plain CartPole): SO(4) has six dimensions, so 100 groups stay far apart.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import Task, TaskFamily
from policygradex.envs.classic import log_uniform, set_cartpole_length


def rotation(phi: float) -> np.ndarray:
    """The 4 x 4 observation transform of a group: rotate (x, theta) and (x_dot, theta_dot) by phi."""
    c, s = math.cos(phi), math.sin(phi)
    Q = np.zeros((4, 4))
    for a, b in ((0, 2), (1, 3)):
        Q[a, a], Q[a, b], Q[b, a], Q[b, b] = c, -s, s, c
    return Q


class _Rotated(gym.ObservationWrapper):
    def __init__(self, env: gym.Env, Q: np.ndarray) -> None:
        super().__init__(env)
        self.Q = Q.astype(np.float32)
        high = np.full(4, np.inf, dtype=np.float32)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return (self.Q @ np.asarray(observation, dtype=np.float32)).astype(np.float32)


class RotatedVector(gym.vector.VectorObservationWrapper):
    def __init__(self, env: gym.vector.VectorEnv, Qs: np.ndarray) -> None:
        super().__init__(env)
        self.Qs = Qs.astype(np.float32)  # (num_envs, 4, 4)
        high = np.full(4, np.inf, dtype=np.float32)
        self.single_observation_space = gym.spaces.Box(-high, high, dtype=np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return np.einsum("eij,ej->ei", self.Qs, np.asarray(observations, dtype=np.float32)).astype(np.float32)


def group_transform(params: dict) -> np.ndarray:
    """The 4 x 4 observation transform of a task from its params: the plane rotation by ``angle``, or with
    ``orthogonal`` the group's random SO(4) rotation to the power ``conflict`` (identity for group 0)."""
    if not params.get("orthogonal"):
        return rotation(params["angle"])
    return _so4_power(int(params["group"]), float(params["conflict"])).copy()


@functools.lru_cache(maxsize=4096)
def _so4_power(g: int, conflict: float) -> np.ndarray:
    if g == 0:
        return np.eye(4)
    from scipy.linalg import expm, logm
    from scipy.stats import special_ortho_group

    Q = special_ortho_group.rvs(4, random_state=np.random.default_rng([20_251_203, g]))
    generator = np.real(logm(Q))
    generator = (generator - generator.T) / 2  # the skew-symmetric log, so Q^c stays orthogonal
    return expm(conflict * generator)


def _make_env(half_length: float, Q: np.ndarray) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        set_cartpole_length(env.unwrapped, half_length)
        return _Rotated(env, Q)

    return make


def _vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    env = CartPoleVectorEnv(num_envs=len(tasks), max_episode_steps=500)
    set_cartpole_length(env, np.array([t.params["half_length"] for t in tasks], dtype=np.float64))
    return RotatedVector(env, np.stack([group_transform(t.params) for t in tasks]))


def planted(n: int = 10, groups: int = 3, conflict: float = 1.0, orthogonal: int = 0) -> TaskFamily:
    """CartPole tasks in ``groups`` planted groups whose observations are rotated by conflict * 2 pi g / groups."""
    n, groups = int(n), int(groups)
    if not 2 <= groups <= n:
        raise PolicyGradExError(f"planted family: groups={groups} must be between 2 and n={n}")
    if not (math.isfinite(conflict) and 0.0 <= conflict <= 1.0):
        raise PolicyGradExError(f"planted family: conflict={conflict} must be in [0, 1]")
    if orthogonal not in (0, 1):
        raise PolicyGradExError(f"planted family: orthogonal={orthogonal} must be 0 or 1")
    members = [[i for i in range(n) if i % groups == g] for g in range(groups)]

    largest = max(len(m) for m in members)

    def task(g: int, half: float, j: int | None = None) -> Task:
        angle = conflict * 2.0 * math.pi * g / groups
        # up to 10 tasks a group the pole lengths (2 decimals) tell them apart; larger groups number their tasks
        name = f"g{g}-len={2 * half:.2f}" if j is None or largest <= 10 else f"g{g}.{j}-len={2 * half:.3f}"
        params = {"group": g, "half_length": half, "angle": angle}
        if orthogonal:
            params.update(orthogonal=1, conflict=float(conflict))
        return Task(name, _make_env(half, group_transform(params)), params)

    def sample(rng: np.random.Generator) -> Task:
        # an unseen task: a group at random, and a half length log-uniform on the groups' 0.4 .. 0.8
        g = int(rng.integers(groups))
        return task(g, log_uniform(rng, 0.4, 0.8))

    tasks = []
    for i in range(n):
        g, j = i % groups, i // groups
        size = len(members[g])
        tasks.append(task(g, float(np.round(0.4 * 2.0 ** (j / max(1, size - 1)), 3)), j))  # 0.4 .. 0.8 in each group
    return TaskFamily(
        "planted", tuple(tasks),
        f"CartPole, {n} tasks in {groups} planted groups (observations "
        f"{'through a random SO(4) rotation' if orthogonal else 'rotated'} per group, conflict {conflict:g})",
        _vector, planted_groups=tuple(tuple(m) for m in members), sample_task=sample)
