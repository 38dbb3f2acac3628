"""Multitask PPO: reproducible from the seed, learns on cartpole, and handles Gaussian actions."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from policygradex.envs.registry import load_family
from policygradex.nets.config import NetworkConfig
from policygradex.rl.config import PPOConfig
from policygradex.rl.ppo import train_ppo

TINY_NET = NetworkConfig(hidden_sizes=(16, 16, 16))
TINY_PPO = PPOConfig(steps_per_task=256, envs_per_task=2, num_steps=32)


@pytest.fixture(scope="module")
def cartpole():
    return load_family("cartpole")


def _curve_values(curve):
    return np.array([[v for k, v in row.items() if k != "seconds"] for row in curve], dtype=float)


def test_training_is_deterministic_given_seed(cartpole):
    """Same seed -> identical learning curve and identical weights; another seed -> different weights."""
    a = train_ppo(cartpole, range(cartpole.n), TINY_NET, TINY_PPO, seed=3)
    b = train_ppo(cartpole, range(cartpole.n), TINY_NET, TINY_PPO, seed=3)
    c = train_ppo(cartpole, range(cartpole.n), TINY_NET, TINY_PPO, seed=4)
    assert len(a.curve) == 256 // (2 * 32)
    assert [list(r) for r in a.curve] == [list(r) for r in b.curve]
    np.testing.assert_array_equal(_curve_values(a.curve), _curve_values(b.curve))
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    # the curve reports every task's return and finite losses
    row = a.curve[-1]
    assert all(f"return/{name}" in row for name in cartpole.task_names)
    assert all(math.isfinite(row[k]) for k in ("pg_loss", "v_loss", "entropy", "approx_kl"))


def test_training_improves_return(cartpole):
    """A few thousand steps per task raise the mean episodic return well above the first iteration's."""
    cfg = PPOConfig(steps_per_task=4096, envs_per_task=2, num_steps=128, learning_rate=1e-3)
    res = train_ppo(cartpole, range(cartpole.n), NetworkConfig(hidden_sizes=(32, 32, 32)), cfg, seed=0)
    returns = [row["mean_return"] for row in res.curve]
    assert len(returns) == 16 and all(math.isfinite(r) for r in returns)
    first, last = returns[0], float(np.mean(returns[-3:]))
    assert last > 2.0 * first, returns
    assert last > 50.0, returns


def test_training_only_on_selected_tasks(cartpole):
    """Training on a subset of tasks reports returns for those tasks only."""
    res = train_ppo(cartpole, [1, 4], replace(TINY_NET, task_id=True), TINY_PPO, seed=0)
    row = res.curve[-1]
    reported = {k for k in row if k.startswith("return/")}
    assert reported == {f"return/{cartpole.tasks[i].name}" for i in (1, 4)}
    # with a task id, the network takes the family-wide one-hot, so it can serve every task; without, the state only
    assert res.model.actor[0].in_features == 4 + cartpole.n
    assert train_ppo(cartpole, [1, 4], TINY_NET, TINY_PPO, seed=0).model.actor[0].in_features == 4


def test_gaussian_policy_trains_on_pendulum():
    """Continuous actions: PPO runs on two pendulum tasks with a Gaussian head whose log-std is learned."""
    fam = load_family("pendulum")
    cfg = PPOConfig(steps_per_task=512, envs_per_task=2, num_steps=128)
    res = train_ppo(fam, [0, 9], TINY_NET, cfg, seed=0)
    model = res.model
    assert not model.discrete and model.action_dim == 1
    assert model.actor[0].in_features == 3  # no task id by default
    assert not torch.equal(model.actor_logstd.detach(), torch.zeros(1, 1))  # updated by PPO
    assert len(res.curve) == 2
    # episodes last 200 steps: none ends in the first 128-step rollout, each sub-env's first ends in the second
    assert res.curve[0]["episodes"] == 0
    row = res.curve[1]
    assert row["episodes"] == 4
    assert -16.3 * 200 <= row["mean_return"] <= 0.0  # pendulum rewards lie in [-16.3, 0]
    assert math.isfinite(row["return/g=2"]) and math.isfinite(row["return/g=20"])
    assert all(math.isfinite(r["v_loss"]) for r in res.curve)


class _Interrupt(Exception):
    pass


@pytest.mark.parametrize("stop_at", [3, 4, 5])
def test_resume_after_interrupt_is_bit_identical(cartpole, tmp_path, stop_at):
    """Ctrl-C after iteration 3, 4 or 5 (checkpoints every 2), then the same call again: the final weights and the
    learning curve equal an uninterrupted run's exactly (environments restart at each checkpoint in both)."""
    cfg = PPOConfig(steps_per_task=8 * 64, envs_per_task=2, num_steps=32, checkpoint_every=2)
    whole = train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5, checkpoint_path=tmp_path / "a.pt")
    ckpt = tmp_path / "b.pt"

    def stop(i, total, row):
        if i == stop_at:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5, checkpoint_path=ckpt, on_iteration=stop)
    assert ckpt.exists()
    torch.manual_seed(12345)  # whatever the process did in between must not matter
    np.random.seed(54321)
    resumed = train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5, checkpoint_path=ckpt)
    np.testing.assert_array_equal(_curve_values(resumed.curve), _curve_values(whole.curve))
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_curve_returns_are_a_rolling_window_of_episodes(cartpole):
    """Each row's returns are over each task's last RETURN_WINDOW finished episodes, carried across iterations and
    environment restarts: recomputed here from the episodes as they end, with the window cut by hand."""
    from policygradex.rl import ppo as ppo_module

    ended: list[list] = []
    real_pop = ppo_module.EpisodeTracker.pop

    def spy(self):
        out = real_pop(self)
        ended.append(out)
        return out

    cfg = PPOConfig(steps_per_task=6 * 64, envs_per_task=2, num_steps=64, checkpoint_every=2)
    mp = pytest.MonkeyPatch()
    mp.setattr(ppo_module.EpisodeTracker, "pop", spy)
    mp.setattr(ppo_module, "RETURN_WINDOW", 5)
    try:
        res = train_ppo(cartpole, [0, 9], TINY_NET, cfg, seed=3)
    finally:
        mp.undo()
    history: dict[int, list[float]] = {0: [], 9: []}
    for row, eps in zip(res.curve, ended):
        for e in eps:
            history[e.task].append(e.ret)
        means = {t: np.mean(h[-5:]) for t, h in history.items() if h}
        assert row["episodes"] == sum(min(len(h), 5) for h in history.values())
        for t, name in ((0, cartpole.task_names[0]), (9, cartpole.task_names[9])):
            assert row[f"return/{name}"] == pytest.approx(means[t])
        assert row["mean_return"] == pytest.approx(np.mean(list(means.values())))
    assert all(math.isfinite(r["mean_return"]) for r in res.curve)


def test_budget_is_whole_rollouts_and_says_so():
    """steps_per_task is rounded down to whole rollouts, and the config says what was run: 100,000 asked with
    4 x 128-step rollouts is 195 rollouts, 99,840 steps; an exact multiple says nothing more."""
    cfg = PPOConfig(steps_per_task=100_000, envs_per_task=4, num_steps=128)
    assert (cfg.iterations, cfg.steps_run) == (195, 99_840)
    assert cfg.budget_text() == "99,840 steps per task (195 rollouts of 4 envs x 128 steps; 100,000 asked)"
    assert PPOConfig(steps_per_task=512, envs_per_task=2, num_steps=64).budget_text() == \
        "512 steps per task (4 rollouts of 2 envs x 64 steps)"
    assert PPOConfig(steps_per_task=10, envs_per_task=2, num_steps=64).steps_run == 128  # at least one rollout


def test_train_ppo_runs_the_budget_it_reports(cartpole):
    """The curve's last env_steps_per_task is PPOConfig.steps_run, for a budget that is not whole rollouts."""
    cfg = PPOConfig(steps_per_task=300, envs_per_task=2, num_steps=64)
    res = train_ppo(cartpole, [0], TINY_NET, cfg, seed=0)
    assert res.curve[-1]["env_steps_per_task"] == cfg.steps_run == 256


def test_minibatches_split_evenly(cartpole, monkeypatch):
    """Every optimizer step sees a minibatch of about batch / num_minibatches transitions: no leftover minibatch of
    1-2 samples (valid transitions are rarely a multiple of num_minibatches, because reset steps are dropped)."""
    import policygradex.rl.ppo as ppo_mod

    sizes = []

    def watch(model, rollout):
        sizes.append(int(rollout.valid.sum()))

    calls = []
    real_update = ppo_mod.ppo_update

    def counting_update(model, optimizer, rollout, cfg, generator, after_step=None):
        step = optimizer.step

        def counted(*a, **kw):
            calls.append(int(model._last_batch))
            return step(*a, **kw)

        real_forward = model.get_action_and_value

        def fwd(obs, action=None):
            model._last_batch = obs.shape[0]
            return real_forward(obs, action)

        model.get_action_and_value = fwd
        optimizer.step = counted
        try:
            return real_update(model, optimizer, rollout, cfg, generator, after_step)
        finally:
            optimizer.step = step
            del model.get_action_and_value

    monkeypatch.setattr(ppo_mod, "ppo_update", counting_update)
    cfg = PPOConfig(steps_per_task=2 * 2 * 50, envs_per_task=2, num_steps=50, num_minibatches=4, update_epochs=1)
    train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=0, before_update=watch)
    assert len(calls) == 4 * len(sizes)
    for it, valid in enumerate(sizes):
        got = calls[4 * it : 4 * it + 4]
        assert sum(got) == valid and max(got) - min(got) <= 1, (valid, got)
    assert any(v % 4 for v in sizes)  # the case the old slicing got wrong did occur


# ----------------------------------------------------------------------------------------------- batches of tasks
def test_task_batch_covers_every_task_each_epoch():
    """Each iteration draws `size` distinct tasks; every ceil(n / size) iterations every task is drawn; the draw is
    a function of (seed, iteration) only, and size >= n gives all tasks in order."""
    from policygradex.envs.vector import task_batch

    ids = list(range(10))
    for epoch in range(3):
        batches = [task_batch(ids, 3, seed=7, iteration=epoch * 4 + c) for c in range(4)]
        assert all(len(b) == 3 and len(set(b.tolist())) == 3 for b in batches)
        assert set(np.concatenate(batches).tolist()) == set(ids)
    np.testing.assert_array_equal(task_batch(ids, 3, 7, 5), task_batch(ids, 3, 7, 5))
    assert not all(np.array_equal(task_batch(ids, 3, 7, i), task_batch(ids, 3, 8, i)) for i in range(4))
    np.testing.assert_array_equal(task_batch(ids, 10, 7, 3), ids)


def test_batched_training_steps_only_the_batch(cartpole):
    """With tasks_per_iteration = 3 of 10 tasks, an iteration's new episodes come from its batch's tasks only: the
    rolling returns of the other tasks stay as they were."""
    from policygradex.envs.vector import task_batch

    cfg = replace(TINY_PPO, steps_per_task=8 * 64, tasks_per_iteration=3)
    res = train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=1)
    assert len(res.curve) == 8
    prev = {name: float("nan") for name in cartpole.task_names}
    for it, row in enumerate(res.curve):
        batch = set(task_batch(range(cartpole.n), 3, 1, it).tolist())
        now = {name: row[f"return/{name}"] for name in cartpole.task_names}
        changed = {i for i, name in enumerate(cartpole.task_names)
                   if not (now[name] == prev[name] or (math.isnan(now[name]) and math.isnan(prev[name])))}
        assert changed and changed <= batch, (it, changed, batch)
        prev = now


def test_batched_training_continues_episodes_across_batches():
    """A task's episodes pause while it is out of the batch and go on when it is back: pendulum episodes last 200
    steps, each iteration steps one task for 128 steps, so a task's first episode ends in its second rollout
    (iteration 2 or 3) with length 200, not cut at 128."""
    fam = load_family("pendulum")
    cfg = PPOConfig(steps_per_task=4 * 128, envs_per_task=1, num_steps=128, tasks_per_iteration=1)
    res = train_ppo(fam, [0, 9], TINY_NET, cfg, seed=0)
    returns = [[row[f"return/{name}"] for name in ("g=2", "g=20")] for row in res.curve]
    assert all(math.isnan(r) for r in returns[0] + returns[1]), returns
    assert [row["episodes"] for row in res.curve] == [0, 0, 1, 2], res.curve  # one 200-step episode a task


def test_batched_resume_after_interrupt_is_bit_identical(cartpole, tmp_path):
    """Resuming batched training (3 of 10 tasks an iteration) gives the uninterrupted run's weights and curve."""
    cfg = PPOConfig(steps_per_task=8 * 64, envs_per_task=2, num_steps=32, checkpoint_every=2, tasks_per_iteration=3)
    whole = train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5)
    ckpt = tmp_path / "b.pt"

    def stop(i, total, row):
        if i == 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5, checkpoint_path=ckpt, on_iteration=stop)
    resumed = train_ppo(cartpole, range(cartpole.n), TINY_NET, cfg, seed=5, checkpoint_path=ckpt)
    np.testing.assert_array_equal(_curve_values(resumed.curve), _curve_values(whole.curve))
    for k, v in whole.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
