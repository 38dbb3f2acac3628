"""The highway family: highway-env's ``highway-fast-v0`` at 10 traffic densities (optional extra ``[highway]``).

Each task sets ``config["vehicles_density"]``. highway-env places each of the 20 other vehicles of
``highway-fast-v0`` ahead of the previous one, at a gap of (12 m + speed) x exp(-5/40 x lanes) x U(0.9, 1.1) /
density, so every gap scales by 1/density (highway-env's default is 1; its ``exit-v0`` uses 1.5). The range is
geometric from 0.25 to 2.0, three tasks per doubling, so 0.5, 1.0 and 2.0 are tasks too. It spans three regimes,
measured with one fixed action per episode over 8 seeded episodes per density (``experiments/highway_densities.py``,
results/highway_densities.md; highway-env 1.12.1):

- sparse (0.25-0.4): at 0.25 only 1-2 of the 4 observed vehicle slots are filled on average, and accelerating
  earns the most (return 25.7, against 20.9 for slowing down);
- medium (0.5-1.0): every slot is filled. Keeping the speed survives all 8 episodes at 0.5 and none at 1.0, where
  slowing down survives 7 of 8;
- dense (1.26-2.0): even slowing down crashes in 4 of 8 episodes at 1.5 and 7 of 8 at 2.0. At 3 and 4 every fixed
  action crashes in every episode, after 2-5 steps on average: highway-env draws the other vehicles' initial
  speeds at random, so dense traffic spawns unavoidable collisions (HighwayEnv issue #158). Such tasks would
  teach nothing.

So the tasks need different driving, from fast to cautious, which is what the grouping should find.

Observations are highway-env's default Kinematics array (5 vehicles x presence, x, y, vx, vy, normalised; the ego
vehicle first), flattened to 25 floats. Actions are its 5 discrete meta-actions (lane left, idle, lane right,
faster, slower). An episode is truncated by highway-env itself after 30 policy steps (30 s at 1 Hz) and
terminated on a crash. Rewards lie in [0, 1] per step.

The family's ``default_gamma`` is 0.8, the discount of highway-env's own training scripts (``scripts/
sb3_highway_ppo.py``, ``sb3_highway_dqn.py``). It applies when the run's configuration keeps PPO's default gamma.

highway-env is imported only when an environment is made, so ``policygradex families`` lists this family without
the extra. The extra needs highway-env >= 1.12, the first release that depends on ``pygame-ce``, as gymnasium's
box2d extra does. Earlier releases pull in ``pygame``, whose files overwrite pygame-ce's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np

from policygradex.envs.base import Task, TaskFamily, import_extra
from policygradex.envs.classic import log_uniform

HIGHWAY_DENSITIES = tuple(float(x) for x in np.round(np.geomspace(0.25, 2.0, 10), 3))
"""``vehicles_density`` of the 10 tasks: geometric from 0.25 (sparse) to 2.0 (dense); highway-env's default is 1."""

HIGHWAY_GAMMA = 0.8
"""Discount of highway-env's own training scripts: a 30-step episode at 1 Hz, where the next few seconds matter."""

INSTALL_HINT = "pip install 'policygradex[highway]'"
"""What to run when highway-env is missing."""


def require_highway_env() -> None:
    """Import highway-env, which registers ``highway-fast-v0`` with gymnasium."""
    import_extra("highway_env", "the highway family", INSTALL_HINT)


def _highway_env(density: float) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        require_highway_env()
        env = gym.make("highway-fast-v0", config={"vehicles_density": density})
        return gym.wrappers.FlattenObservation(env)

    return make


def _subprocess_vector(tasks: Sequence[Task]) -> gym.vector.VectorEnv:
    # The simulator is pure Python (~57 env-steps/s per core), so one subprocess per sub-env pays off: 1.6-1.7x the
    # env-steps/s of a SyncVectorEnv on 2 cores, at 10, 20 and 40 sub-envs (results/bench_highway_vector.md).
    # Started by fork: a spawned or forkserver subprocess imports highway-env anew, 16 s for 10 sub-envs on 2 cores
    # instead of 0.25 s, at every restart of the envs. The subprocesses only step their env.
    return gym.vector.AsyncVectorEnv([t.make_env for t in tasks], context="fork")


def _highway_task(density: float) -> Task:
    return Task(f"density={density:.2f}", _highway_env(density), {"vehicles_density": density})


def highway() -> TaskFamily:
    tasks = tuple(_highway_task(d) for d in HIGHWAY_DENSITIES)
    return TaskFamily("highway", tasks,
                      "highway-fast-v0 with 10 traffic densities 0.25-2.0 (discrete actions; the highway extra)",
                      _subprocess_vector, default_gamma=HIGHWAY_GAMMA,
                      sample_task=lambda rng: _highway_task(log_uniform(rng, HIGHWAY_DENSITIES[0], HIGHWAY_DENSITIES[-1])))
