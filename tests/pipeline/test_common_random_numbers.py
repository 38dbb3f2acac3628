"""--common-random-numbers: every task's feature transitions from the same environment seeds and action noise."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.envs.base import Task, TaskFamily
from policygradex.envs.classic import set_cartpole_length
from policygradex.pipeline.config import FeatureConfig, RunConfig
from policygradex.pipeline.features import collect_transitions
from policygradex.pipeline.stages import make_model


def _cartpole(scale: float = 1.0, half: float = 0.5):
    def make() -> gym.Env:
        env = gym.make("CartPole-v1")
        set_cartpole_length(env.unwrapped, half)
        return gym.wrappers.TransformReward(env, lambda r: scale * r + (1.0 - scale) * 0.5)

    return make


FAMILY = TaskFamily(
    "crn-test",
    (Task("base", _cartpole()), Task("paid-otherwise", _cartpole(scale=-1.0)), Task("longer", _cartpole(half=0.9))),
)
"""Tasks 0 and 1 share dynamics and observations and are paid differently; task 2's pole is longer."""


def _transitions(crn: bool, seed: int = 3, baseline: str = "per_task", task_ids: list[int] | None = None):
    """FAMILY's transitions under one untrained policy (the same for every call), without a task id."""
    cfg = RunConfig(family="cartpole")
    cfg = replace(cfg, network=replace(cfg.network, task_id=False))
    torch.manual_seed(0)
    model = make_model(cfg, FAMILY)
    fc = FeatureConfig(transitions_per_task=300, envs_per_task=2, common_random_numbers=crn, baseline=baseline)
    return collect_transitions(FAMILY, model, fc, cfg.ppo, seed=seed, task_id=False, task_ids=task_ids)


def test_tasks_that_share_dynamics_see_the_same_states_and_actions():
    """With common random numbers, two tasks that differ only in their reward visit the same states and take the
    same actions (so only their advantages differ); a task whose dynamics differ starts from the same states and
    then parts. Without, every task's transitions are its own."""
    paired = _transitions(True)
    assert torch.equal(paired[0].obs, paired[1].obs)
    assert torch.equal(paired[0].actions, paired[1].actions)
    assert not np.allclose(paired[0].advantages, paired[1].advantages)
    assert torch.equal(paired[0].obs[0], paired[2].obs[0])  # the same reset seed
    assert not torch.equal(paired[0].obs, paired[2].obs)
    independent = _transitions(False)
    assert not torch.equal(independent[0].obs, independent[1].obs)
    for t in paired + independent:
        assert t.obs.shape[0] == t.actions.shape[0] == t.advantages.shape[0] == 300


def test_paired_transitions_are_the_same_for_the_same_seed_and_differ_for_another():
    a, b, c = _transitions(True, seed=3), _transitions(True, seed=3), _transitions(True, seed=4)
    for x, y in zip(a, b):
        assert torch.equal(x.obs, y.obs) and np.array_equal(x.advantages, y.advantages)
        assert np.array_equal(x.split_advantages, y.split_advantages)
    assert not torch.equal(a[0].obs, c[0].obs)


@pytest.mark.parametrize("crn", [False, True])
def test_a_task_alone_gets_the_transitions_it_gets_among_others(crn):
    """With common random numbers a task's transitions do not depend on which other tasks are collected with it
    (each task's sub-envs are seeded alike): collecting task 2 alone gives its rows byte for byte. Without, a
    task's sub-env seeds depend on its position in the block, so they do not."""
    every = _transitions(crn, baseline="policy")
    alone = _transitions(crn, baseline="policy", task_ids=[2])
    assert torch.equal(every[2].obs, alone[0].obs) == crn


def test_a_run_s_features_do_not_depend_on_the_task_blocks(tmp_path):
    """`run --common-random-numbers`: every task's transitions come from the feature seed itself, whichever block
    it is in, so the feature files are the same bytes in blocks of 4 tasks as in one block; the run records the
    option."""
    from policygradex.cli.main import main

    from ..helpers import tiny_run_args

    files = {}
    for block in ("4", "64"):
        out = tmp_path / f"block{block}"
        assert main(tiny_run_args(out, "planted(n=10,groups=2)", "--k", "2", "--task-block", block,
                                  "--common-random-numbers")) == 0
        assert '"common_random_numbers": true' in (out / "config.json").read_text()
        files[block] = {f.name: np.load(f) for f in sorted((out / "features").glob("task_*.npz"))}
    assert len(files["4"]) == 10 and files["4"].keys() == files["64"].keys()
    for name, z in files["4"].items():
        for key in ("features", "advantages"):
            np.testing.assert_array_equal(z[key], files["64"][name][key])
