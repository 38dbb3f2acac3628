"""The planted suite: each kind conflicts the way it says and in no other, against the base environments."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.conflicts import (
    DIRECTIONS,
    LUNAR_ROTATED,
    action_map,
    conflict_family,
    default_sizes,
    layout,
)
from policygradex.envs.planted import rotation
from policygradex.envs.registry import load_family
from policygradex.envs.vector import MultiTaskVectorEnv

HAS_MO = importlib.util.find_spec("mo_gymnasium") is not None


def _first_of_each_group(fam):
    """The first member of each group: the same pole length (or gravity) in every group."""
    return [members[0] for members in _members_in_order(fam)]


def _members_in_order(fam):
    return [sorted(g, key=lambda i: fam.tasks[i].name) for g in fam.planted_groups]


def _rollout(env: gym.Env, actions, seed: int = 3):
    obs, _ = env.reset(seed=seed)
    out, rewards = [obs], []
    for a in actions:
        obs, r, term, trunc, _ = env.step(a)
        out.append(obs)
        rewards.append(r)
        if term or trunc:
            break
    return np.array(out), np.array(rewards)


def test_layout_sizes_and_order():
    """Unequal sizes by default (largest first), every task in one group, an order that is not the groups'."""
    assert default_sizes(12, 3) == (5, 4, 3) and sum(default_sizes(10, 4)) == 10
    assert min(default_sizes(7, 6)) >= 1 and sum(default_sizes(7, 6)) == 7
    group_of = layout(12, 3, None, shuffle=1)
    assert sorted(group_of) == [0] * 5 + [1] * 4 + [2] * 3
    assert group_of != sorted(group_of) and layout(12, 3, None, shuffle=1) == group_of
    assert layout(12, 3, None, shuffle=2) != group_of and layout(12, 3, None, shuffle=0) == sorted(group_of)
    fam = conflict_family("reward", "cartpole", n=12, groups=3)
    assert [len(g) for g in fam.planted_groups] == [5, 4, 3]
    assert sorted(i for g in fam.planted_groups for i in g) == list(range(12))
    for bad in ([4, 4], [6, 6, 0], [5, 5, 5]):
        with pytest.raises(PolicyGradExError, match="sizes"):
            layout(12, 3, bad, 1)


@pytest.mark.parametrize("env", ["cartpole", "lunarlander"])
def test_reward_kind_changes_the_reward_only(env):
    """Groups' first members (same pole length / gravity) see the same observations under the same actions; their
    rewards differ exactly by the position term of their own targets."""
    fam = conflict_family("reward", env, n=6, groups=3, conflict=0.7, sizes=[2, 2, 2])
    tasks = [fam.tasks[i] for i in _first_of_each_group(fam)]
    actions = np.random.default_rng(0).integers(0, 2 if env == "cartpole" else 4, 60)
    base = gym.make("CartPole-v1") if env == "cartpole" else gym.make("LunarLander-v3", gravity=-10.0)
    if env == "cartpole":
        from policygradex.envs.classic import set_cartpole_length

        set_cartpole_length(base.unwrapped, 0.4)
    obs0, r0 = _rollout(base, actions)
    for t in tasks:
        obs, r = _rollout(t.make_env(), actions)
        np.testing.assert_array_equal(obs, obs0)
        dist = np.abs(obs0[1:, 0].astype(np.float64) - t.params["target"])
        # LunarLander's default payment is a bonus of 0.7 (1 - |x - x_g| / 0.6)^+ on top
        want = (r0 * (1 - 0.7 * np.minimum(dist, 2.4) / 2.4) if env == "cartpole"
                else r0 + 0.7 * np.maximum(0.0, 1.0 - dist / 0.6))
        np.testing.assert_allclose(r, want, rtol=1e-6)
    assert len({t.params["target"] for t in tasks}) == 3
    if env == "lunarlander":  # payment=penalty: the same observations, 0.7 |x - x_g| taken off every step
        penalty = conflict_family("reward", env, n=6, groups=3, conflict=0.7, sizes=[2, 2, 2], payment="penalty")
        assert penalty.name == "planted-reward-lunarlander-penalty" and fam.name == "planted-reward-lunarlander"
        for t in (penalty.tasks[i] for i in _first_of_each_group(penalty)):
            obs, r = _rollout(t.make_env(), actions)
            np.testing.assert_array_equal(obs, obs0)
            dist = np.abs(obs0[1:, 0].astype(np.float64) - t.params["target"])
            np.testing.assert_allclose(r, r0 - 0.7 * dist, rtol=1e-6)


@pytest.mark.parametrize("env", ["cartpole", "lunarlander"])
def test_actuation_kind_permutes_the_actions(env):
    """At conflict 1, group g's action a acts as the base action map_g(a): the same trajectory as group 0 given
    the mapped actions. Group 0 is the base environment (CartPole with a third action, no force)."""
    fam = conflict_family("actuation", env, n=6, groups=3, conflict=1.0, sizes=[2, 2, 2])
    first = [fam.tasks[i] for i in _first_of_each_group(fam)]
    g0 = next(t for t in first if t.params["group"] == 0)
    n_actions = 3 if env == "cartpole" else 4
    actions = np.random.default_rng(1).integers(0, n_actions, 40)
    for t in first:
        mapping = action_map(env, int(t.params["group"]))
        assert sorted(mapping) == list(range(n_actions))
        obs, r = _rollout(t.make_env(), actions)
        obs_base, r_base = _rollout(g0.make_env(), mapping[actions])
        np.testing.assert_array_equal(obs, obs_base)
        np.testing.assert_array_equal(r, r_base)
    maps = [tuple(action_map(env, g)) for g in range(3)]
    assert len(set(maps)) == 3  # three different actuations
    if env == "lunarlander":
        assert all(m[0] == 0 for m in maps)  # "do nothing" stays itself
    else:  # group 0's push left / right are CartPole's own actions 0 / 1
        plain = gym.make("CartPole-v1")
        from policygradex.envs.classic import set_cartpole_length

        set_cartpole_length(plain.unwrapped, g0.params["half_length"])
        two = np.random.default_rng(2).integers(0, 2, 40)
        np.testing.assert_array_equal(_rollout(g0.make_env(), two * 2)[0], _rollout(plain, two)[0])


def test_actuation_kind_mixes_with_probability_conflict():
    """At conflict 0.5 about half the steps use the group's map: a group-1 rollout is neither the base one nor the
    fully mapped one, and conflict 0 is the base environment."""
    actions = np.random.default_rng(1).integers(0, 3, 30)
    runs = {}
    for c in (0.0, 0.5, 1.0):
        fam = conflict_family("actuation", "cartpole", n=6, groups=3, conflict=c, shuffle=0, sizes=[2, 2, 2])
        t = next(fam.tasks[i] for i in fam.planted_groups[1])
        runs[c] = _rollout(t.make_env(), actions)[0]
    fam = conflict_family("actuation", "cartpole", n=6, groups=3, conflict=1.0, shuffle=0, sizes=[2, 2, 2])
    g0 = fam.tasks[fam.planted_groups[0][0]]
    np.testing.assert_array_equal(runs[0.0][:10], _rollout(g0.make_env(), actions)[0][:10])
    n = min(len(runs[0.5]), len(runs[1.0]), len(runs[0.0]))
    assert not np.array_equal(runs[0.5][:n], runs[1.0][:n]) and not np.array_equal(runs[0.5][:n], runs[0.0][:n])


@pytest.mark.parametrize("env", ["cartpole", "lunarlander"])
def test_observation_kind_rotates_the_observation(env):
    fam = conflict_family("observation", env, n=6, groups=3, conflict=1.0, sizes=[2, 2, 2])
    first = [fam.tasks[i] for i in _first_of_each_group(fam)]
    g0 = next(t for t in first if t.params["group"] == 0)
    actions = np.random.default_rng(0).integers(0, 2 if env == "cartpole" else 4, 30)
    obs0, r0 = _rollout(g0.make_env(), actions)
    index = list(range(4)) if env == "cartpole" else list(LUNAR_ROTATED)
    for t in first:
        Q = rotation(t.params["angle"])
        obs, r = _rollout(t.make_env(), actions)
        want = obs0.copy()
        want[:, index] = obs0[:, index] @ Q.T
        np.testing.assert_allclose(obs, want, atol=1e-5)
        np.testing.assert_array_equal(r, r0)


@pytest.mark.parametrize("kind", ["reward", "actuation", "observation"])
def test_cartpole_vector_path_matches_the_tasks_envs(kind):
    """The vectorised CartPole (the fast path rollouts use) steps every task as its own env does, from the same
    state with the same action."""
    fam = conflict_family(kind, "cartpole", n=6, groups=3, conflict=1.0, sizes=[2, 2, 2])
    venv = MultiTaskVectorEnv(fam, list(range(fam.n)), 1, seed=0, task_id=False)
    venv.reset()
    singles = [t.make_env() for t in fam.tasks]
    for e in singles:
        e.reset(seed=0)
    rng = np.random.default_rng(4)
    for _ in range(5):
        state = np.array(venv.env.unwrapped.state, dtype=np.float64).T  # (n, 4)
        actions = rng.integers(0, venv.single_action_space.n, fam.n)
        obs, rewards, *_ = venv.step(actions)
        for i, e in enumerate(singles):
            e.unwrapped.state = state[i].copy()
            o, r, *_ = e.step(int(actions[i]))
            np.testing.assert_allclose(obs[i], o, atol=1e-5)
            assert rewards[i] == pytest.approx(r, rel=1e-5)


@pytest.mark.skipif(not HAS_MO, reason="needs the mo extra (mo-gymnasium)")
def test_objective_kind_weights_lie_around_their_directions():
    fam = conflict_family("objective", "lunarlander", n=9, groups=3, conflict=1.0)
    D = np.array(DIRECTIONS)
    for g, members in enumerate(fam.planted_groups):
        for i in members:
            w = np.array([fam.tasks[i].params[f"w{k}"] for k in range(4)])
            assert w.sum() == pytest.approx(1.0, abs=1e-3)
            assert int(np.argmin(np.linalg.norm(D - w, axis=1))) == g
            assert np.abs(w - D[g]).max() <= 0.05 + 1e-3
    flat = conflict_family("objective", "lunarlander", n=9, groups=3, conflict=0.0)
    W = np.array([[t.params[f"w{k}"] for k in range(4)] for t in flat.tasks])
    assert np.abs(W - D.mean(0)).max() <= 0.05 + 1e-3  # no conflict: every weight near the directions' mean


def test_registry_parses_the_suite_and_rejects_bad_input():
    fam = load_family("planted(kind=reward,env=lunarlander,n=5,groups=2,sizes=[3,2])")
    assert fam.name == "planted-reward-lunarlander" and [len(g) for g in fam.planted_groups] == [3, 2]
    assert load_family("planted(kind='observation')").planted_groups is not None
    original = load_family("planted")
    assert original.name == "planted" and original.planted_groups == ((0, 3, 6, 9), (1, 4, 7), (2, 5, 8))
    for spec, needle in [("planted(kind=wind)", "kind"), ("planted(kind=reward,env=pong)", "env"),
                         ("planted(kind=objective,env=cartpole)", "objective"),
                         ("planted(kind=actuation,groups=4)", "actuation"),
                         ("planted(kind=reward,orthogonal=1)", "orthogonal"),
                         ("planted(kind=reward,conflict=2)", "conflict"),
                         ("planted(kind=reward,n=twelve)", "twelve"), ("planted(n=inf)", "expected name"),
                         ("planted(kind=reward,env=lunarlander,payment=tip)", "payment"),
                         ("planted(kind=reward,env=cartpole,payment=penalty)", "payment")]:
        with pytest.raises(PolicyGradExError, match=needle):
            load_family(spec)
