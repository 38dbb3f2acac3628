"""Built-in families from Gymnasium's classic control and Box2D environments, one physical parameter varied per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from policygradex.envs.base import Task, TaskFamily

# ----------------------------------------------------------------------------------------------- built-ins
CARTPOLE_HALF_LENGTHS = tuple(float(x) for x in np.round(np.geomspace(0.1, 2.5, 10), 3))
"""Half pole lengths of the cartpole family: geometric from 0.1 (hard, fast dynamics) to 2.5 (slow, easy);
gymnasium's default is 0.5. Short and long poles need different gains, so transfer differs across the range."""

LUNAR_GRAVITIES = tuple(float(g) for g in np.linspace(-11.0, -2.0, 10))
"""Gravities of the lunarlander family (gymnasium requires -12 < g < 0; its default is -10)."""

PENDULUM_GRAVITIES = tuple(float(g) for g in np.linspace(2.0, 20.0, 10))
"""Gravities of the pendulum family (continuous actions; gymnasium's default is 10)."""


def set_cartpole_length(env: Any, half_length: float | np.ndarray) -> None:
    # Gymnasium stores HALF the pole length in `length` and derives `polemass_length` from it in __init__:
    # both must change together or the dynamics are inconsistent.
    env.length = half_length
    env.polemass_length = env.masspole * half_length


def _cartpole_env(half_length: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        set_cartpole_length(env.unwrapped, half_length)
        return env

    return make


def _cartpole_vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
    # Gymnasium's numpy-vectorised CartPole takes per-sub-env arrays for the pole parameters: one vector env
    # holds every task (~400k env-steps/s), with the same 500-step limit as CartPole-v1.
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    env = CartPoleVectorEnv(num_envs=len(tasks), max_episode_steps=500)
    set_cartpole_length(env, np.array([t.params["half_length"] for t in tasks], dtype=np.float64))
    return env


def cartpole() -> TaskFamily:
    tasks = tuple(
        Task(f"len={2 * h:.2f}", _cartpole_env(h), {"half_length": h, "pole_length": 2 * h})
        for h in CARTPOLE_HALF_LENGTHS
    )
    return TaskFamily("cartpole", tasks, "CartPole-v1 with 10 pole lengths 0.2-5.0 m (discrete actions)", _cartpole_vector)


def _lunar_env(gravity: float, continuous: bool) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("LunarLander-v3", gravity=gravity, continuous=continuous)

    return make


def lunarlander() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _lunar_env(g, False), {"gravity": g}) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander", tasks, "LunarLander-v3 with 10 gravities -11..-2 (discrete actions)")


def lunarlander_continuous() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _lunar_env(g, True), {"gravity": g}) for g in LUNAR_GRAVITIES)
    return TaskFamily("lunarlander-continuous", tasks, "LunarLander-v3 continuous, 10 gravities -11..-2 (Gaussian)")


def _pendulum_env(g: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        return gym.make("Pendulum-v1", g=g)

    return make


def pendulum() -> TaskFamily:
    tasks = tuple(Task(f"g={g:.0f}", _pendulum_env(g), {"gravity": g}) for g in PENDULUM_GRAVITIES)
    return TaskFamily("pendulum", tasks, "Pendulum-v1 with 10 gravities 2..20 (continuous actions)")
