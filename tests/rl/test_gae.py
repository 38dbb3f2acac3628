"""compute_gae against advantages worked out by hand, on (T, E) = (4, 2) rollouts."""

from __future__ import annotations

import torch

from policygradex.rl.gae import compute_gae

G, LAM = 0.9, 0.8


def _rollout():
    """Env 0 terminates at t=1; env 1 is truncated at t=2 (values[3] is then V(final observation))."""
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.2], [1.0, 0.4], [1.5, 0.6], [2.0, 0.8]], dtype=torch.float64)
    next_value = torch.tensor([3.0, 1.0], dtype=torch.float64)
    terminated = torch.zeros(4, 2, dtype=torch.bool)
    truncated = torch.zeros(4, 2, dtype=torch.bool)
    terminated[1, 0] = True
    truncated[2, 1] = True
    return rewards, values, next_value, terminated, truncated


def test_gae_matches_hand_computation_with_terminal_and_truncated_steps():
    """Advantages equal the GAE recursion written out by hand, with both kinds of episode end."""
    adv = compute_gae(*_rollout(), gamma=G, gae_lambda=LAM)

    # env 0: terminal at t=1 -> delta_1 has no bootstrap, and A_1 does not see A_2
    d3 = 4.0 + G * 3.0 - 2.0  # bootstraps from next_value
    d2 = 3.0 + G * 2.0 - 1.5
    d1 = 2.0 + 0.0 - 1.0  # terminated: r - V only
    d0 = 1.0 + G * 1.0 - 0.5
    a3 = d3
    a2 = d2 + G * LAM * a3
    a1 = d1
    a0 = d0 + G * LAM * a1
    env0 = [a0, a1, a2, a3]

    # env 1: truncated at t=2 -> delta_2 bootstraps from values[3] = V(final obs), A_2 does not see A_3
    e3 = 1.0 + G * 1.0 - 0.8
    e2 = 1.0 + G * 0.8 - 0.6
    e1 = 1.0 + G * 0.6 - 0.4
    e0 = 1.0 + G * 0.4 - 0.2
    b3 = e3
    b2 = e2
    b1 = e1 + G * LAM * b2
    b0 = e0 + G * LAM * b1
    env1 = [b0, b1, b2, b3]

    expected = torch.tensor([env0, env1], dtype=torch.float64).T
    assert adv.shape == (4, 2)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)
    # the numbers themselves, so a wrong hand formula cannot hide a wrong implementation
    torch.testing.assert_close(adv[:, 0], torch.tensor([2.12, 1.0, 6.684, 4.7], dtype=torch.float64))
    torch.testing.assert_close(adv[:, 1], torch.tensor([2.561408, 1.9464, 1.12, 1.1], dtype=torch.float64))


def test_recursion_stops_at_terminal_step():
    """Nothing after a terminal step (rewards, values, next_value) leaks into the advantages up to it."""
    rewards, values, next_value, terminated, truncated = _rollout()
    base = compute_gae(rewards, values, next_value, terminated, truncated, G, LAM)
    rewards2, values2 = rewards.clone(), values.clone()
    rewards2[2:, 0] += 100.0
    values2[2:, 0] -= 50.0  # values[2] is V of the first state after the terminal step: must not be used
    changed = compute_gae(rewards2, values2, next_value + 7.0, terminated, truncated, G, LAM)
    torch.testing.assert_close(changed[:2, 0], base[:2, 0], rtol=0, atol=1e-12)
    assert not torch.allclose(changed[2:, 0], base[2:, 0])


def test_truncated_step_bootstraps_but_recursion_stops():
    """A truncated step uses V(final obs) = values[t+1] but ignores rewards and advantages after it."""
    rewards, values, next_value, terminated, truncated = _rollout()
    base = compute_gae(rewards, values, next_value, terminated, truncated, G, LAM)

    rewards2 = rewards.clone()
    rewards2[3, 1] += 100.0
    later = compute_gae(rewards2, values, next_value + 5.0, terminated, truncated, G, LAM)
    torch.testing.assert_close(later[:3, 1], base[:3, 1], rtol=0, atol=1e-12)

    values2 = values.clone()
    values2[3, 1] += 1.0  # V(final observation) of the truncated episode
    boot = compute_gae(rewards, values2, next_value, terminated, truncated, G, LAM)
    torch.testing.assert_close(boot[2, 1] - base[2, 1], torch.tensor(G, dtype=torch.float64))
    torch.testing.assert_close(boot[1, 1] - base[1, 1], torch.tensor(G * LAM * G, dtype=torch.float64))


def test_truncation_differs_from_termination():
    """Marking the same step terminated instead of truncated removes exactly the bootstrap gamma * V(s_{t+1})."""
    rewards, values, next_value, terminated, truncated = _rollout()
    as_trunc = compute_gae(rewards, values, next_value, terminated, truncated, G, LAM)
    term2, trunc2 = terminated.clone(), truncated.clone()
    term2[2, 1], trunc2[2, 1] = True, False
    as_term = compute_gae(rewards, values, next_value, term2, trunc2, G, LAM)
    torch.testing.assert_close(as_trunc[2, 1] - as_term[2, 1], G * values[3, 1])


def test_gamma_lambda_one_is_return_plus_bootstrap_minus_value():
    """With gamma = lambda = 1 and no episode end, A_t = sum of future rewards + V(s_T) - V(s_t)."""
    rewards = torch.tensor([[1.0, -2.0], [0.5, 3.0], [2.0, 0.0], [-1.0, 1.5]], dtype=torch.float64)
    values = torch.tensor([[0.3, 1.0], [0.7, -0.5], [1.1, 2.0], [0.2, 0.0]], dtype=torch.float64)
    next_value = torch.tensor([10.0, -4.0], dtype=torch.float64)
    no_end = torch.zeros(4, 2, dtype=torch.bool)
    adv = compute_gae(rewards, values, next_value, no_end, no_end, 1.0, 1.0)
    future = torch.flip(torch.cumsum(torch.flip(rewards, [0]), 0), [0])  # sum_{t' >= t} r_t'
    torch.testing.assert_close(adv, future + next_value - values, rtol=0, atol=1e-12)
    # e.g. env 0, t = 1: 0.5 + 2.0 - 1.0 + 10.0 - 0.7
    assert abs(float(adv[1, 0]) - 10.8) < 1e-12


def test_lambda_zero_is_one_step_td_error():
    """With lambda = 0 each advantage is the one-step TD error r_t + gamma V(s_{t+1}) (1 - term_t) - V(s_t)."""
    rewards, values, next_value, terminated, truncated = _rollout()
    adv = compute_gae(rewards, values, next_value, terminated, truncated, G, 0.0)
    v_next = torch.cat([values[1:], next_value[None]])
    td = rewards + G * v_next * (~terminated) - values
    torch.testing.assert_close(adv, td, rtol=0, atol=1e-12)


def test_gae_through_a_real_rollout_with_resets():
    """A real rollout with terminations, time-limit truncations, NEXT_STEP reset steps and a rollout end: with
    lambda = 1, every valid step's return (advantage + value) is the discounted sum of its episode's rewards up to
    the episode's end, plus gamma^k V(final observation) where a time limit or the rollout cut it (0 where it
    terminated), computed here by walking each sub-env's steps; reset steps never enter a valid step's return."""
    import numpy as np

    from policygradex.envs.registry import load_family
    from policygradex.envs.vector import MultiTaskVectorEnv
    from policygradex.nets.config import NetworkConfig
    from policygradex.rl.ppo import network_for
    from policygradex.rl.rollout import EpisodeTracker, collect_rollout

    torch.manual_seed(0)
    family = load_family("pendulum")  # 200-step time limit: truncations; and cartpole below for terminations
    for fam, steps in ((family, 450), (load_family("cartpole"), 120)):
        env = MultiTaskVectorEnv(fam, [0, fam.n - 1], 1, seed=3, task_id=False)
        model = network_for(fam, NetworkConfig(hidden_sizes=(8,)), (env.obs_dim, env.single_action_space))
        rollout, _ = collect_rollout(env, model, env.reset(), steps, EpisodeTracker(env.env_task))
        env.close()
        gamma = 0.97
        returns = compute_gae(rollout.rewards.double(), rollout.values.double(), rollout.next_value.double(),
                              rollout.terminated, rollout.truncated, gamma, 1.0) + rollout.values.double()
        r, v = rollout.rewards.double().numpy(), rollout.values.double().numpy()
        term, trunc, valid = rollout.terminated.numpy(), rollout.truncated.numpy(), rollout.valid.numpy()
        T = r.shape[0]
        ends = 0
        for e in range(r.shape[1]):
            for t in np.flatnonzero(valid[:, e]):
                g, disc, j = 0.0, 1.0, t
                while True:
                    g += disc * r[j, e]
                    if term[j, e]:
                        break
                    if trunc[j, e] or j == T - 1:
                        boot = v[j + 1, e] if j + 1 < T else float(rollout.next_value[e])
                        g += disc * gamma * boot
                        break
                    disc *= gamma
                    j += 1
                assert abs(float(returns[t, e]) - g) < 1e-6 * max(1.0, abs(g)), (fam.name, t, e)
            ends += int((term[:, e] | trunc[:, e]).sum())
            assert not valid[:, e].all()  # reset steps were there, and excluded
        assert ends >= 2
