"""Episode metrics besides the return (Meta-World's success, an MO family's vector return), checked by hand on a
family whose episodes are known step by step (tests/plugin_families.py: CountingEnv)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from policygradex.envs.registry import load_family
from policygradex.nets.config import NetworkConfig
from policygradex.rl.config import PPOConfig
from policygradex.rl.evaluate import evaluate_episodes
from policygradex.rl.ppo import train_ppo

from ..helpers import tiny_run_args


class Always(nn.Module):
    """A policy that always takes the same discrete action."""

    def __init__(self, action: int) -> None:
        super().__init__()
        self.action = action

    def get_action_and_value(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        a = torch.full((obs.shape[0],), self.action, dtype=torch.long)
        zeros = torch.zeros(obs.shape[0])
        return a, zeros, zeros, zeros


@pytest.mark.parametrize("action", [0, 1])
def test_evaluation_reports_return_success_and_vector_return_per_task(action: int) -> None:
    """Episodes of 5 and 4 steps, reward = action, success at step 3, vector reward (a, 1 - a) per step."""
    family = load_family("tests.plugin_families:counting_family")
    out = evaluate_episodes(family, [0, 1], Always(action), episodes=3, seed=0, task_id=False)
    for task, length in ((0, 5), (1, 4)):
        assert out[task]["return"] == action * length
        assert out[task]["success"] == 1.0  # reached at step 3, whatever the later steps
        assert out[task]["vector_return"] == [action * length, (1 - action) * length]


def test_evaluation_holds_at_most_max_eval_envs_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many episodes of many tasks are evaluated a few tasks at a time, and every task is still scored."""
    import policygradex.rl.evaluate as evaluate

    sizes = []
    real = evaluate.MultiTaskVectorEnv

    def recording(*args, **kwargs):
        env = real(*args, **kwargs)
        sizes.append(env.num_envs)
        return env

    monkeypatch.setattr(evaluate, "MultiTaskVectorEnv", recording)
    monkeypatch.setattr(evaluate, "MAX_EVAL_ENVS", 5)
    family = load_family("tests.plugin_families:counting_family")
    out = evaluate_episodes(family, [0, 1], Always(1), episodes=2, seed=0, task_id=False)
    assert sizes == [4] and out[0]["return"] == 5  # 2 tasks x 2 episodes fit: one env, as before
    sizes.clear()
    out = evaluate_episodes(family, [0, 1], Always(1), episodes=3, seed=0, task_id=False)
    assert sizes == [3, 3]  # one task at a time
    assert (out[0]["return"], out[1]["return"]) == (5, 4) and out[1]["success"] == 1.0


def test_training_curves_track_the_scalar_metrics() -> None:
    family = load_family("tests.plugin_families:counting_family")
    ppo = PPOConfig(steps_per_task=64, envs_per_task=2, num_steps=32, num_minibatches=2, update_epochs=1)
    result = train_ppo(family, [0, 1], NetworkConfig(hidden_sizes=(8,)), ppo, seed=0)
    row = result.curve[-1]
    assert row["mean_success"] == 1.0  # every episode passes step 3
    assert not any(key.startswith("mean_vector_return") for key in row)  # vectors stay out of the curve


def test_compare_scores_by_the_family_s_headline_metric(tmp_path: Path, cli) -> None:
    """On a family whose headline is success, compare's table is success rates, with the vector returns beside."""
    out = tmp_path / "run"
    rc, _, err = cli(*tiny_run_args(out, "tests.plugin_families:counting_family"), "--k", "1")
    assert rc == 0, err
    rc, stdout, err = cli("compare", out, "--seeds", "1", "--steps-per-task", "64", "--eval-episodes", "2",
                          "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((out / "compare" / "compare.json").read_text())
    assert record["metric"] == "success" and record["vector_metrics"] == ["vector_return"]
    for row in record["methods"].values():
        assert row["per_task_mean"] == [1.0, 1.0]  # success rates, not returns
        assert all(len(v) == 2 and sum(v) == length for v, length in zip(row["per_task_vector_return"], (5, 4)))
    assert "| grouping | mean success |" in stdout and "Mean vector_return per task" in stdout
    # one seed has no spread to show: the cell is the mean alone, not "1.000 ± 0.000"
    assert "| multitask | 1.000 |" in stdout and "one seed (no spread)" in stdout
