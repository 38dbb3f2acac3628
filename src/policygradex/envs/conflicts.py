"""The planted suite: families whose groups conflict in one chosen way, to test recovery beyond observations.

``planted(kind=K, env=E, ...)`` builds n tasks of base environment E (``cartpole`` or ``lunarlander``) in planted
groups that conflict in one way, K, while sharing everything else the kind allows:

- ``reward``: the same environment, observations and dynamics; group g is paid for keeping the cart (the lander)
  near its own position x_g, spread evenly over [-1.2, 1.2] m of the track (over [-0.6, 0.6] of LunarLander's
  normalised x). CartPole's reward of 1 per step is scaled by 1 - conflict * |x - x_g| / 2.4. LunarLander's is
  set by ``payment``: ``bonus`` (the default) adds conflict * max(0, 1 - |x - x_g| / 0.6), zero at the
  neighbouring groups' positions; ``penalty`` adds - conflict * |x - x_g| at every step. One policy without a task
  id cannot know where to go. The penalty is not a test of grouping: theta_star hovers until the time limit and the
  penalty is most of the return, and its planted groups do not train better than one multitask policy; with the
  bonus they do (results/planted.md, "Real by training"). The penalty was the default until the suite's rows of
  the bonus were made; its rows are the suite's ``lunarlander-penalty``.
- ``actuation``: the same observations and rewards; each group's actions act differently. CartPole gets three
  actions (push left, none, push right) and LunarLander keeps its four (none, left engine, main engine, right
  engine); group g applies the g-th cyclic shift of the acting actions (all but LunarLander's "none"), with
  probability ``conflict`` at each step (the base action otherwise). The same state needs a different action.
- ``observation``: the same dynamics and rewards seen through the group's rotation of the (position, angle) and
  (velocity, angular velocity) planes by conflict * 2 pi g / G (the built-in ``planted`` family's conflict).
- ``objective``: LunarLander only, as MO-Gymnasium's ``mo-lunar-lander-v3`` (the ``mo`` extra) scalarised by a
  weight vector per task: group g's weights lie around preference direction D_g (land well; spare the main
  engine; spare the side engines; more groups cycle through them, mixed with the mean), pulled towards the
  directions' mean by 1 - conflict.

Every family varies its tasks within a group (CartPole's half pole length over 0.4-0.8 m, LunarLander's gravity over
-10..-8; the objective kind's weights jittered by up to 0.05), has unequal group sizes (``sizes``, by default n
split in proportion to G+1, G, ..., 2, largest first) and lists its tasks in an order drawn at random from
``shuffle`` (default 1; 0 keeps the groups' members in group order), so that neither the order nor the sizes say
anything about the groups. ``conflict = 0`` removes the planted conflict (the tasks differ only within groups).
``TaskFamily.planted_groups`` holds the truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.base import Task, TaskFamily
from policygradex.envs.classic import set_cartpole_length
from policygradex.envs.planted import RotatedVector, rotation

KINDS = ("reward", "actuation", "observation", "objective")
ENVS = ("cartpole", "lunarlander")
CARTPOLE_TARGET, LUNAR_TARGET = 1.2, 0.6
"""The groups' positions x_g spread over [-target, target] (CartPole's track ends at +-2.4 m; LunarLander's x is
normalised to +-1 over the screen, its pad at 0)."""
PAYMENTS = ("bonus", "penalty")
"""LunarLander's reward kind: how being near x_g is paid (module docstring); the first is the default."""
BONUS_WIDTH = 0.6
"""The bonus falls to zero this far from x_g: at the neighbouring group's position (LUNAR_TARGET apart)."""
DIRECTIONS = ((0.50, 0.50, 0.00, 0.00), (0.10, 0.30, 0.60, 0.00), (0.10, 0.30, 0.00, 0.60))
"""mo-lunar-lander-v3's preference directions (landing, shaping, -main fuel, -side fuel): land well, spare the main
engine, spare the side engines (those of results/data/mo-lunar-lander-weights.csv)."""


def default_sizes(n: int, groups: int) -> tuple[int, ...]:
    """n split in proportion to G+1, G, ..., 2 by largest remainders, every group at least 1, largest first."""
    share = np.arange(groups + 1, 1, -1, dtype=np.float64)
    raw = n * share / share.sum()
    sizes = np.maximum(np.floor(raw).astype(int), 1)
    while sizes.sum() < n:
        sizes[int(np.argmax(raw - sizes))] += 1
    while sizes.sum() > n:
        sizes[int(np.argmax(np.where(sizes > 1, sizes - raw, -np.inf)))] -= 1
    return tuple(int(s) for s in sizes)


def layout(n: int, groups: int, sizes: Sequence[int] | None, shuffle: int) -> list[int]:
    """The group of each task: ``sizes[g]`` tasks in group g, in an order permuted by ``shuffle`` (0: in order)."""
    sizes = tuple(int(s) for s in sizes) if sizes is not None else default_sizes(n, groups)
    if len(sizes) != groups or min(sizes) < 1 or sum(sizes) != n:
        raise PolicyGradExError(f"planted family: sizes={list(sizes)} must be {groups} positive sizes summing to n={n}")
    group_of = np.repeat(np.arange(groups), sizes)
    if shuffle:
        group_of = group_of[np.random.default_rng([20_261_203, int(shuffle)]).permutation(n)]
    return [int(g) for g in group_of]


def spread(j: int, size: int) -> float:
    """Member j's position in [0, 1] within a group of ``size`` (0.5 for a group of one)."""
    return 0.5 if size == 1 else j / (size - 1)


# ----------------------------------------------------------------------------------------------- wrappers
class _PositionReward(gym.Wrapper):
    """Reward for staying near x_g: ``scaled`` (CartPole's) by 1 - c |x - x_g| / 2.4; ``penalty``: less c |x - x_g|;
    ``bonus``: plus c max(0, 1 - |x - x_g| / BONUS_WIDTH)."""

    def __init__(self, env: gym.Env, target: float, conflict: float, payment: str) -> None:
        super().__init__(env)
        self.target, self.conflict, self.payment = target, conflict, payment

    def step(self, action):  # type: ignore[no-untyped-def]
        obs, reward, terminated, truncated, info = self.env.step(action)
        dist = abs(float(obs[0]) - self.target)
        if self.payment == "scaled":
            reward = float(reward) * (1.0 - self.conflict * min(dist, 2.4) / 2.4)
        elif self.payment == "bonus":
            reward = float(reward) + self.conflict * max(0.0, 1.0 - dist / BONUS_WIDTH)
        else:
            reward = float(reward) - self.conflict * dist
        return obs, reward, terminated, truncated, info


class _PositionRewardVector(gym.vector.VectorWrapper):
    """:class:`_PositionReward` (CartPole's form) for the vectorised CartPole, one target per sub-env."""

    def __init__(self, env: gym.vector.VectorEnv, targets: np.ndarray, conflict: float) -> None:
        super().__init__(env)
        self.targets, self.conflict = targets.astype(np.float64), conflict

    def step(self, actions):  # type: ignore[no-untyped-def]
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        dist = np.minimum(np.abs(obs[:, 0].astype(np.float64) - self.targets), 2.4)
        return obs, (rewards * (1.0 - self.conflict * dist / 2.4)).astype(rewards.dtype), terminated, truncated, info


def action_map(env: str, group: int) -> np.ndarray:
    """Group g's map from the policy's action to the base action: the g-th cyclic shift of the acting actions."""
    acting = [0, 1, 2] if env == "cartpole" else [1, 2, 3]
    out = np.arange(3 if env == "cartpole" else 4)
    for a, b in zip(acting, np.roll(acting, -group)):
        out[a] = b
    return out


CARTPOLE_FORCE = np.array([-1.0, 0.0, 1.0])
"""The three-action CartPole's force per base action, in units of gymnasium's force_mag (10 N)."""


class _Actuation(gym.Wrapper):
    """With probability ``conflict`` the policy's action goes through ``mapping``; the base action otherwise.
    ``cartpole``: three actions acting as the forces CARTPOLE_FORCE (set through force_mag, action 1 pushes right)."""

    def __init__(self, env: gym.Env, mapping: np.ndarray, conflict: float, cartpole: bool) -> None:
        super().__init__(env)
        self.mapping, self.conflict, self.cartpole = mapping, conflict, cartpole
        self.rng = np.random.default_rng(0)
        if cartpole:
            self.action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        if seed is not None:
            self.rng = np.random.default_rng([int(seed), 7])
        return self.env.reset(seed=seed, options=options)

    def step(self, action):  # type: ignore[no-untyped-def]
        a = int(action)
        if self.rng.random() < self.conflict:
            a = int(self.mapping[a])
        if self.cartpole:
            self.env.unwrapped.force_mag = 10.0 * CARTPOLE_FORCE[a]
            a = 1
        return self.env.step(a)


class _ActuationVector(gym.vector.VectorWrapper):
    """:class:`_Actuation` for the vectorised CartPole: one mapping per sub-env, forces through force_mag."""

    def __init__(self, env: gym.vector.VectorEnv, mappings: np.ndarray, conflict: float) -> None:
        super().__init__(env)
        self.mappings, self.conflict = mappings, conflict
        self.rng = np.random.default_rng(0)
        self.single_action_space = gym.spaces.Discrete(3)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, env.num_envs)

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        if seed is not None:
            first = seed if isinstance(seed, int) else int(seed[0])
            self.rng = np.random.default_rng([first, 7])
        return self.env.reset(seed=seed, options=options)

    def step(self, actions):  # type: ignore[no-untyped-def]
        a = np.asarray(actions, dtype=np.int64)
        mapped = self.mappings[np.arange(len(a)), a]
        a = np.where(self.rng.random(len(a)) < self.conflict, mapped, a)
        self.env.unwrapped.force_mag = 10.0 * CARTPOLE_FORCE[a]
        return self.env.step(np.ones(len(a), dtype=np.int64))


class _Rotated(gym.ObservationWrapper):
    """The observation through Q on the coordinates ``index`` (the rest untouched)."""

    def __init__(self, env: gym.Env, Q: np.ndarray, index: Sequence[int]) -> None:
        super().__init__(env)
        self.Q, self.index = Q.astype(np.float32), list(index)
        space = env.observation_space
        assert isinstance(space, gym.spaces.Box)
        low, high = space.low.copy(), space.high.copy()
        low[self.index], high[self.index] = -np.inf, np.inf
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        out = np.asarray(observation, dtype=np.float32).copy()
        out[self.index] = self.Q @ out[self.index]
        return out


LUNAR_ROTATED = (0, 2, 4, 5)
"""LunarLander's coordinates that the observation kind rotates, in CartPole's order (x, x_dot, angle, angle_dot):
:func:`.planted.rotation` turns coordinates (0, 2) and (1, 3) of that 4-vector, the (x, angle) and
(x_dot, angle_dot) planes."""


# ----------------------------------------------------------------------------------------------- tasks
def _cartpole_make(half: float, wrap: Callable[[gym.Env], gym.Env]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        set_cartpole_length(env.unwrapped, half)
        return wrap(env)

    return make


def _lunar_make(gravity: float, wrap: Callable[[gym.Env], gym.Env]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return wrap(gym.make("LunarLander-v3", gravity=gravity))

    return make


def _wrapper(kind: str, env: str, params: dict, conflict: float,
             payment: str = "bonus") -> Callable[[gym.Env], gym.Env]:
    if kind == "reward":
        return lambda e: _PositionReward(e, params["target"], conflict, "scaled" if env == "cartpole" else payment)
    if kind == "actuation":
        return lambda e: _Actuation(e, action_map(env, params["group"]), conflict, cartpole=env == "cartpole")
    index = range(4) if env == "cartpole" else LUNAR_ROTATED
    return lambda e: _Rotated(e, rotation(params["angle"]), index)


def _cartpole_vector(kind: str, conflict: float) -> Callable[[Sequence[Task]], gym.vector.VectorEnv]:
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    def make(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
        env = CartPoleVectorEnv(num_envs=len(tasks), max_episode_steps=500)
        set_cartpole_length(env, np.array([t.params["half_length"] for t in tasks], dtype=np.float64))
        if kind == "reward":
            return _PositionRewardVector(env, np.array([t.params["target"] for t in tasks]), conflict)
        if kind == "actuation":
            return _ActuationVector(env, np.stack([action_map("cartpole", int(t.params["group"])) for t in tasks]),
                                    conflict)
        return RotatedVector(env, np.stack([rotation(t.params["angle"]) for t in tasks]))

    return make


def _objective_family(group_of: list[int], groups: int, conflict: float, sizes: list[int]) -> TaskFamily:
    from policygradex.envs.mo import mo_family

    D = np.array([DIRECTIONS[g % len(DIRECTIONS)] for g in range(groups)], dtype=np.float64)
    for g in range(len(DIRECTIONS), groups):  # beyond three groups: a direction mixed with the next one
        D[g] = 0.6 * D[g] + 0.4 * np.asarray(DIRECTIONS[(g + 1) % len(DIRECTIONS)])
    D = (1.0 - conflict) * D.mean(0) + conflict * D
    rng = np.random.default_rng([20_261_203, 99])
    seen = [0] * groups
    W = []
    for g in group_of:
        j, seen[g] = seen[g], seen[g] + 1
        jitter = 0.05 * (2.0 * spread(j, sizes[g]) - 1.0) * rng.dirichlet(np.ones(D.shape[1]))
        w = np.clip(D[g] + jitter, 0.0, None)
        W.append(np.round(w / w.sum(), 4))
    return mo_family("mo-lunar-lander-v3", W)


def conflict_family(kind: str = "observation", env: str = "cartpole", n: int = 12, groups: int = 3,
                    conflict: float = 1.0, sizes: Sequence[int] | None = None, shuffle: int = 1,
                    payment: str = "bonus") -> TaskFamily:
    """The planted suite's family of one kind of conflict on one base environment (see the module docstring)."""
    n, groups = int(n), int(groups)
    if kind not in KINDS:
        raise PolicyGradExError(f"planted family: kind={kind!r} must be one of {', '.join(KINDS)}")
    if env not in ENVS:
        raise PolicyGradExError(f"planted family: env={env!r} must be one of {', '.join(ENVS)}")
    if kind == "objective" and env != "lunarlander":
        raise PolicyGradExError("planted family: kind=objective needs env=lunarlander (MO-Gymnasium's "
                                "mo-lunar-lander-v3)")
    if not 2 <= groups <= n:
        raise PolicyGradExError(f"planted family: groups={groups} must be between 2 and n={n}")
    if not (math.isfinite(conflict) and 0.0 <= conflict <= 1.0):
        raise PolicyGradExError(f"planted family: conflict={conflict} must be in [0, 1]")
    if payment not in PAYMENTS:
        raise PolicyGradExError(f"planted family: payment={payment!r} must be one of {', '.join(PAYMENTS)}")
    if payment != PAYMENTS[0] and (kind, env) != ("reward", "lunarlander"):
        raise PolicyGradExError("planted family: payment applies to kind=reward with env=lunarlander only")
    if kind == "actuation" and groups > 3:
        raise PolicyGradExError("planted family: kind=actuation has 3 cyclic shifts of the actions: groups <= 3")
    group_of = layout(n, groups, sizes, int(shuffle))
    size_of = [group_of.count(g) for g in range(groups)]
    members = tuple(tuple(i for i, g in enumerate(group_of) if g == gg) for gg in range(groups))
    label = f"planted-{kind}-{env}" + ("" if payment == PAYMENTS[0] else f"-{payment}")
    description = (f"{env} in {groups} planted groups of sizes {'/'.join(map(str, size_of))} conflicting by "
                   f"{kind}" + ("" if payment == PAYMENTS[0] else f" ({payment})") + f", conflict {conflict:g}")
    if kind == "objective":
        base = _objective_family(group_of, groups, conflict, size_of)
        tasks = tuple(Task(f"g{g}-{t.name}", t.make_env, {**t.params, "group": g})
                      for g, t in zip(group_of, base.tasks))
        return TaskFamily(label, tasks, description, planted_groups=members, metrics=base.metrics)
    limit = CARTPOLE_TARGET if env == "cartpole" else LUNAR_TARGET
    tasks = []
    seen = [0] * groups
    for g in group_of:
        j, seen[g] = seen[g], seen[g] + 1
        u = spread(j, size_of[g])
        params: dict = {"group": g, "target": float(np.linspace(-limit, limit, groups)[g]),
                        "angle": conflict * 2.0 * math.pi * g / groups}
        wrap = _wrapper(kind, env, params, conflict, payment)
        if env == "cartpole":
            half = float(np.round(0.4 * 2.0 ** u, 3))
            params["half_length"] = half
            tasks.append(Task(f"g{g}.{j}-len={2 * half:.2f}", _cartpole_make(half, wrap), params))
        else:
            gravity = float(np.round(-10.0 + 2.0 * u, 2))
            params["gravity"] = gravity
            tasks.append(Task(f"g{g}.{j}-g={gravity:.2f}", _lunar_make(gravity, wrap), params))
    vector = _cartpole_vector(kind, conflict) if env == "cartpole" else None
    return TaskFamily(label, tuple(tasks), description, vector, planted_groups=members)
