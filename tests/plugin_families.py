"""User-defined task families for the tests (loaded as ``tests.plugin_families:FUNCTION``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policygradex.envs import EpisodeMetric, Task, TaskFamily


def _cartpole(half_length: float):
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        env.unwrapped.length = half_length
        env.unwrapped.polemass_length = env.unwrapped.masspole * half_length
        return env

    return make


def good_family() -> TaskFamily:
    """Three CartPole tasks with different pole lengths (no vector fast path: a SyncVectorEnv is used)."""
    tasks = tuple(Task(f"pole{h}", _cartpole(h), {"half_length": h}) for h in (0.25, 0.5, 1.0))
    return TaskFamily("plugin-cartpole", tasks, "three CartPole pole lengths")


def bad_family() -> TaskFamily:
    """CartPole (4-dim observations) next to Acrobot (6-dim): spaces do not match."""
    tasks = (
        Task("cartpole", lambda: gym.make("CartPole-v1")),
        Task("acrobot", lambda: gym.make("Acrobot-v1")),
    )
    return TaskFamily("mismatched", tasks)


def bad_family_wide() -> TaskFamily:
    """CartPole next to LunarLander, whose 8-dim Box prints over several lines."""
    tasks = (
        Task("cartpole", lambda: gym.make("CartPole-v1")),
        Task("lander", lambda: gym.make("LunarLander-v3")),
    )
    return TaskFamily("mismatched-wide", tasks)


def raising_family() -> TaskFamily:
    """A factory that fails with an ordinary exception."""
    raise RuntimeError("boom")


def not_a_family() -> str:
    """A factory that returns the wrong type."""
    return "not a family"


NOT_CALLABLE = 42


def pendulum_trio() -> TaskFamily:
    """Three Pendulum-v1 gravities: continuous actions (Gaussian policy head)."""
    tasks = tuple(Task(f"g={g}", (lambda g=g: gym.make("Pendulum-v1", g=g)), {"gravity": g}) for g in (2.0, 10.0, 20.0))
    return TaskFamily("plugin-pendulum", tasks, "three pendulum gravities")


def make_env_raises() -> TaskFamily:
    """A family whose second task cannot build its environment."""

    def broken() -> gym.Env:
        raise ValueError("no such simulator")

    return TaskFamily("broken-env", (Task("fine", lambda: gym.make("CartPole-v1")), Task("broken", broken)))


class CountingEnv(gym.Env):
    """Observation: the step count t. Reward: the action (0 or 1). An episode lasts ``length`` steps (truncated).
    Infos: ``success`` 1 only at t == 3; ``vector_reward`` (action, 1 - action). Everything is hand-computable."""

    def __init__(self, length: int = 5) -> None:
        self.observation_space = gym.spaces.Box(0.0, 100.0, (1,))
        self.action_space = gym.spaces.Discrete(2)
        self.length, self.t = length, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"success": float(self.t == 3), "vector_reward": np.array([action, 1 - action], dtype=np.float64)}
        return np.array([self.t], dtype=np.float32), float(action), False, self.t >= self.length, info


def counting_family() -> TaskFamily:
    """Two CountingEnv tasks (episodes of 5 and 4 steps) with both kinds of episode metric."""
    tasks = (Task("five", lambda: CountingEnv(5)), Task("four", lambda: CountingEnv(4)))
    return TaskFamily("counting", tasks, "hand-computable metrics", headline="success",
                      metrics=(EpisodeMetric("success", "success", "max"),
                               EpisodeMetric("vector_return", "vector_reward", "sum", scalar=False)))
