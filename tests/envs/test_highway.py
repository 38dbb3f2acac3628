"""The highway family: listed and explained without the extra; with it, 10 densities, flat spaces, seeded resets,
subprocess envs identical to in-process ones, and a tiny run whose config.json records gamma 0.8."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, distribution, requires

import gymnasium as gym
import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.highway import HIGHWAY_DENSITIES, HIGHWAY_GAMMA, highway
from policygradex.envs.registry import load_family
from policygradex.envs.vector import MultiTaskVectorEnv
from policygradex.pipeline.config import PRESETS

from ..helpers import assert_one_line_error, tiny_run_args

INSTALL = "pip install 'policygradex[highway]'"


@pytest.fixture
def without_highway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import highway_env`` fails, as without the extra."""
    monkeypatch.setitem(sys.modules, "highway_env", None)


@pytest.fixture
def highway_env():
    """highway-env, or the test is skipped (without the extra)."""
    return pytest.importorskip("highway_env")


# ----------------------------------------------------------------------------------------------- without the extra
def test_family_is_listed_without_the_extra(without_highway_env, cli):
    """The family and its description exist without highway-env; `families` lists it."""
    fam = highway()
    assert fam.n == 10 and fam.description and fam.default_gamma == HIGHWAY_GAMMA
    rc, out, _ = cli("families")
    assert rc == 0
    assert any("highway" in line and fam.description in line for line in out.splitlines()), out


def test_run_without_the_extra_is_one_line_error(without_highway_env, cli, tmp_path):
    """Making an env without highway-env says how to install it, on one line, exit status 2, nothing written."""
    with pytest.raises(PolicyGradExError, match=re.escape(INSTALL)):
        highway().tasks[0].make_env()
    rc, _, err = cli(*tiny_run_args(tmp_path / "run", "highway"))
    assert_one_line_error(rc, err, INSTALL)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------- with the extra
def test_tasks_differ_in_traffic_density(highway_env):
    """Task i's env really has density i in its config, and denser traffic starts closer to the ego vehicle."""
    fam = load_family("highway")
    assert len(set(HIGHWAY_DENSITIES)) == 10 and list(HIGHWAY_DENSITIES) == sorted(HIGHWAY_DENSITIES)
    nearest = []
    for task, density in zip(fam.tasks, HIGHWAY_DENSITIES):
        env = task.make_env()
        try:
            assert env.spec.id == "highway-fast-v0"
            assert env.unwrapped.config["vehicles_density"] == density == task.params["vehicles_density"]
            gaps = []
            for seed in range(3):
                obs, _ = env.reset(seed=seed)
                others = obs.reshape(5, 5)[1:]  # rows: vehicles (ego first); columns: presence, x, y, vx, vy
                gaps.append(np.abs(others[others[:, 0] > 0, 1]).min())
            nearest.append(np.mean(gaps))
        finally:
            env.close()
    # highway-env spaces the other vehicles by 1/density: 8x denser traffic, a much closer nearest vehicle
    assert nearest[0] > 4 * nearest[-1]


def test_spaces_are_flat_box_and_discrete(highway_env):
    """Observations: the 5 x 5 Kinematics array flattened to 25 float32; actions: 5 discrete meta-actions."""
    fam = load_family("highway")
    env = fam.tasks[3].make_env()
    try:
        assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (25,), np.float32)
        assert env.action_space == gym.spaces.Discrete(5)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (25,) and obs.dtype == np.float32
    finally:
        env.close()


def test_seeded_reset_is_reproducible(highway_env):
    """Same seed and actions: the same observations and rewards; another seed: another traffic."""
    task = highway().tasks[5]

    def episode(seed: int) -> tuple[np.ndarray, list[float]]:
        env = task.make_env()
        try:
            obs, _ = env.reset(seed=seed)
            trace, rewards = [obs], []
            for action in (1, 3, 0, 4, 2):
                obs, reward, terminated, truncated, _ = env.step(action)
                trace.append(obs)
                rewards.append(reward)
                if terminated or truncated:
                    break
            return np.stack(trace), rewards
        finally:
            env.close()

    a, b, c = episode(7), episode(7), episode(8)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert not np.array_equal(a[0][0], c[0][0])


def test_subprocess_envs_match_in_process_envs(highway_env):
    """The family's AsyncVectorEnv gives the same observations and rewards as a SyncVectorEnv of its tasks."""
    fam = highway()
    runs = []
    for family in (fam, replace(fam, make_vector_env=None)):
        venv = MultiTaskVectorEnv(family, [0, 9], envs_per_task=1, seed=3)
        assert isinstance(venv.env, gym.vector.AsyncVectorEnv if family is fam else gym.vector.SyncVectorEnv)
        try:
            trace = [venv.reset()]
            for action in (1, 3, 4, 0):
                obs, rewards, *_ = venv.step(np.full(venv.num_envs, action))
                trace += [obs, rewards[:, None]]
        finally:
            venv.close()
        runs.append(trace)
    for x, y in zip(*runs):
        np.testing.assert_array_equal(x, y)


def test_tiny_run_uses_gamma_0_8_and_meta_and_compare_run(highway_env, cli, tmp_path, monkeypatch):
    """A tiny `policygradex run highway` finishes, and config.json records the family's gamma 0.8; the same command
    resumes (its configuration resolves to the same one); `meta` and `compare` run on it."""
    tiny = PRESETS["tiny"]
    # highway steps at ~50/s per core: one 16-step rollout per sub-env keeps the run to seconds
    monkeypatch.setitem(PRESETS, "tiny", lambda cfg: replace(tiny(cfg), ppo=replace(tiny(cfg).ppo, num_steps=16)))
    out = tmp_path / "run"
    argv = tiny_run_args(out, "highway", "--steps-per-task", "32", "--transitions", "16", "--k", "2")
    rc, stdout, err = cli(*argv)
    assert rc == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["ppo"]["gamma"] == HIGHWAY_GAMMA
    groups = json.loads((out / "groups.json").read_text())["groups"]
    assert sorted(t for g in groups for t in g) == sorted(highway().task_names)
    rc, _, err = cli(*argv)
    assert rc == 0, err
    assert "loaded from disk" in err
    # `meta` on Highway: MAML on the representatives, adapted to unseen densities (whole episodes of <= 30 steps)
    rc, _, err = cli("meta", out, "--seeds", "1", "--unseen-tasks", "2", "--adapt-steps", "1", "--iterations", "1",
                     "--meta-batch", "2", "--trajectories", "1", "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((out / "meta" / "meta.json").read_text())
    assert all(HIGHWAY_DENSITIES[0] <= float(n.split("=")[-1]) <= HIGHWAY_DENSITIES[-1] for n in record["unseen"])
    assert all(len(row["curve"]) == 2 and np.isfinite(row["curve"]).all() for row in record["rows"].values())
    # `compare`: every grouping trained on all 10 densities (one 16-step rollout each), scored by return <= 30
    rc, stdout, err = cli("compare", out, "--seeds", "1", "--steps-per-task", "16", "--eval-episodes", "1",
                          "--backend", "sequential")
    assert rc == 0, err
    result = json.loads((out / "compare" / "compare.json").read_text())
    assert set(result["methods"]) >= {"multitask", "random", "gradient_similarity", "policygradex"}
    assert all(0.0 <= x <= 30.0 for row in result["methods"].values() for x in row["per_task_mean"])
    assert "| policygradex |" in stdout


def test_pygame_is_still_pygame_ce(highway_env):
    """Installing the extra leaves gymnasium's pygame-ce in place: no `pygame` distribution overwrote its files."""
    import pygame

    assert getattr(pygame, "IS_CE", False)
    with pytest.raises(PackageNotFoundError):
        distribution("pygame")
    assert any(r.startswith("pygame-ce") for r in requires("highway-env"))


def test_unseen_densities_lie_in_the_family_range(highway_env) -> None:
    from policygradex.envs.base import unseen_tasks

    unseen = unseen_tasks(highway(), 20, seed=0)
    values = [t.params["vehicles_density"] for t in unseen.tasks]
    assert all(HIGHWAY_DENSITIES[0] <= v <= HIGHWAY_DENSITIES[-1] for v in values)
    assert not set(values) & set(HIGHWAY_DENSITIES)
    env = unseen.tasks[0].make_env()
    assert env.unwrapped.config["vehicles_density"] == values[0]
    env.close()
