"""Meta-World MT10 (the metaworld extra): the ten tasks with their V2 reward, goals per sub-env, the success
metric, the task id on by default, and `run` / `compare` end to end at a tiny budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

from policygradex.envs.metaworld import GOALS_PER_TASK, MT10_TASKS  # noqa: E402
from policygradex.envs.registry import load_family  # noqa: E402
from policygradex.envs.vector import MultiTaskVectorEnv  # noqa: E402

from ..helpers import tiny_run_args  # noqa: E402


@pytest.fixture(scope="module")
def mt10():
    return load_family("mt10")


def test_the_ten_tasks_use_the_v2_reward_and_50_goals(mt10) -> None:
    assert [t.name for t in mt10.tasks] == list(MT10_TASKS)
    env = mt10.tasks[0].make_env()
    assert env.unwrapped.reward_function_version == "v2"
    assert len(env.goals) == GOALS_PER_TASK
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    assert mt10.headline == "success" and mt10.eval_episodes == GOALS_PER_TASK and mt10.default_task_id
    env.close()


def test_sub_envs_start_at_their_own_goal_and_resets_are_deterministic(mt10) -> None:
    """The j-th sub-env of a task starts at goal j (so 50 sub-envs play each goal once); the same seed, or any
    seed, gives the same start (positions come from the goal, not from an RNG)."""
    a = MultiTaskVectorEnv(mt10, [0, 1], envs_per_task=3, seed=0, task_id=True)
    b = MultiTaskVectorEnv(mt10, [0, 1], envs_per_task=3, seed=123, task_id=True)
    obs_a, obs_b = a.reset(), b.reset()
    assert np.array_equal(obs_a, obs_b)
    assert len({tuple(o) for o in obs_a[:3]}) == 3  # three goals of reach-v3
    assert obs_a.shape == (6, 39 + 10) and (obs_a[:3, 39] == 1).all() and (obs_a[3:, 40] == 1).all()
    a.close(), b.close()


def test_an_episode_is_truncated_at_500_steps_and_reports_success(mt10) -> None:
    env = MultiTaskVectorEnv(mt10, [5], envs_per_task=1, seed=0, task_id=True)  # drawer-close
    env.reset()
    for step in range(1, 501):
        _, _, terminated, truncated, _ = env.step(np.zeros((1, 4), dtype=np.float32))
        assert env.info_values("success") is not None
        assert not terminated[0] and truncated[0] == (step == 500)
    env.close()


def test_mt10_runs_through_run_and_compare(tmp_path: Path, cli) -> None:
    out = tmp_path / "run"
    # k = 1: every grouping is the one multitask policy, so compare trains a single job (500-step episodes are slow)
    rc, _, err = cli(*tiny_run_args(out, "mt10"), "--k", "1", "--steps-per-task", "256")
    assert rc == 0, err
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["network"]["task_id"] is True  # the family's default
    rc, stdout, err = cli("compare", out, "--seeds", "1", "--steps-per-task", "128", "--eval-episodes", "2",
                          "--backend", "sequential")
    assert rc == 0, err
    result = json.loads((out / "compare" / "compare.json").read_text())
    assert result["metric"] == "success" and result["eval_episodes"] == 2
    assert all(0.0 <= x <= 1.0 for row in result["methods"].values() for x in row["per_task_mean"])
    assert "| grouping | mean success |" in stdout
