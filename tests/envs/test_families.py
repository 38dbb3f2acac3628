"""Task families: built-ins, the multitask vector env, and loading user families."""

from __future__ import annotations

import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from policygradex.envs.classic import CARTPOLE_HALF_LENGTHS
from policygradex.envs.registry import load_family
from policygradex.envs.vector import MultiTaskVectorEnv


@pytest.mark.parametrize("name", ["cartpole", "lunarlander", "pendulum"])
def test_builtin_families_load(name):
    """Each built-in family has 10 uniquely named tasks."""
    fam = load_family(name)
    assert fam.n == 10
    assert len(set(fam.task_names)) == 10
    assert all(t.params for t in fam.tasks)


def test_cartpole_tasks_have_different_dynamics():
    """Every cartpole task really uses its pole length (length and polemass_length kept consistent)."""
    fam = load_family("cartpole")
    next_states = []
    for task, half in zip(fam.tasks, CARTPOLE_HALF_LENGTHS):
        env = task.make_env()
        try:
            u = env.unwrapped
            assert u.length == pytest.approx(half)
            assert u.polemass_length == pytest.approx(u.masspole * u.length)
            env.reset(seed=0)
            u.state = np.array([0.0, 0.0, 0.05, 0.0])
            obs, *_ = env.step(1)
            next_states.append(obs)
        finally:
            env.close()
    assert len(set(CARTPOLE_HALF_LENGTHS)) == 10
    # same state and action, different pole: the angular velocity differs task to task
    theta_dot = [s[3] for s in next_states]
    assert len(set(np.round(theta_dot, 7))) == 10
    # the angular acceleration scales like 1 / length: a longer pole reacts more slowly
    assert np.all(np.diff(np.abs(theta_dot)) < 0)


def test_cartpole_vector_fast_path_matches_single_envs():
    """The vectorised cartpole gives each sub-env its task's physics, identical to the task's own env."""
    fam = load_family("cartpole")
    venv = MultiTaskVectorEnv(fam, range(fam.n), envs_per_task=1, seed=0)
    try:
        venv.reset()
        inner = venv.env
        np.testing.assert_allclose(inner.length, CARTPOLE_HALF_LENGTHS)
        np.testing.assert_allclose(inner.polemass_length, inner.masspole * np.asarray(CARTPOLE_HALF_LENGTHS))
        start = np.array([0.01, -0.02, 0.05, 0.1])
        inner.state = np.tile(start[:, None], (1, fam.n))
        obs, *_ = venv.step(np.ones(fam.n, dtype=np.int64))
    finally:
        venv.close()
    for i, task in enumerate(fam.tasks):
        env = task.make_env()
        env.reset(seed=0)
        env.unwrapped.state = start.copy()
        single, *_ = env.step(1)
        env.close()
        np.testing.assert_allclose(obs[i, :4], single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["cartpole", "pendulum"])
def test_multitask_env_appends_one_hot_task_id(family):
    """The last n observation columns are the one-hot id of the sub-env's task (over the whole family)."""
    fam = load_family(family)
    task_ids = [2, 7, 9]
    venv = MultiTaskVectorEnv(fam, task_ids, envs_per_task=2, seed=0)
    try:
        obs = venv.reset()
        base_dim = obs.shape[1] - fam.n
        assert venv.obs_dim == obs.shape[1]
        expected = np.eye(fam.n)[np.repeat(task_ids, 2)]
        np.testing.assert_array_equal(obs[:, base_dim:], expected)
        actions = np.stack([venv.single_action_space.sample() for _ in range(venv.num_envs)])
        obs, *_ = venv.step(actions)
        np.testing.assert_array_equal(obs[:, base_dim:], expected)
    finally:
        venv.close()


@pytest.mark.parametrize("family", ["cartpole", "tests.plugin_families:good_family"])
def test_reset_steps_after_episode_end_are_flagged(family):
    """After a sub-env's episode ends, the next step is a reset step: flagged, zero reward, not an episode end."""
    fam = load_family(family)
    venv = MultiTaskVectorEnv(fam, [0], envs_per_task=1, seed=0)
    try:
        venv.reset()
        for _ in range(600):
            _, reward, term, trunc, reset = venv.step(np.array([1]))  # always push right: falls quickly
            assert not reset[0]
            if term[0] or trunc[0]:
                break
        else:
            pytest.fail("no episode ended")
        _, reward, term, trunc, reset = venv.step(np.array([1]))
        assert reset[0] and reward[0] == 0.0 and not term[0] and not trunc[0]
        _, reward, term, trunc, reset = venv.step(np.array([1]))
        assert not reset[0] and reward[0] == 1.0
    finally:
        venv.close()


def test_user_family_loads():
    """A package.module:function returning a TaskFamily is a valid family spec."""
    fam = load_family("tests.plugin_families:good_family")
    assert fam.n == 3 and fam.task_names == ["pole0.25", "pole0.5", "pole1.0"]


def test_mismatched_spaces_name_both_tasks():
    """A family whose tasks have different observation spaces is rejected, naming the offending tasks."""
    with pytest.raises(PolicyGradExError) as info:
        load_family("tests.plugin_families:bad_family")
    msg = str(info.value)
    assert "'acrobot'" in msg and "'cartpole'" in msg
    assert "observation space" in msg


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("no-such-family", "unknown family"),
        ("nosuchmod.x:f", "cannot import module"),
        ("tests.plugin_families:nope", "has no callable 'nope'"),
        ("tests.plugin_families:NOT_CALLABLE", "has no callable"),
        ("tests.plugin_families:raising_family", "RuntimeError: boom"),
        ("tests.plugin_families:not_a_family", "not a TaskFamily"),
    ],
)
def test_bad_family_specs_raise_user_errors(spec, fragment):
    """Unknown names, unimportable modules, missing or broken factories raise PolicyGradExError."""
    with pytest.raises(PolicyGradExError, match=fragment.replace("(", r"\(")):
        load_family(spec)


def test_multitask_env_without_task_id_passes_observations_through():
    """task_id=False: the policy sees the task's own observation only (the default meta-initialisation)."""
    fam = load_family("cartpole")
    with_id = MultiTaskVectorEnv(fam, [2, 7], envs_per_task=1, seed=0)
    without = MultiTaskVectorEnv(fam, [2, 7], envs_per_task=1, seed=0, task_id=False)
    try:
        a, b = with_id.reset(), without.reset()
        assert without.obs_dim == 4 and b.shape == (2, 4)
        np.testing.assert_array_equal(a[:, :4], b)
    finally:
        with_id.close()
        without.close()


def test_planted_family_rotates_each_groups_observations():
    """planted: task i is in group i mod G; its observation is its CartPole state rotated by conflict * 2 pi g / G
    (vector fast path and single env agree), and conflict = 0 leaves every task plain CartPole."""
    from policygradex.envs.planted import rotation

    fam = load_family("planted(n=6,groups=3,conflict=1)")
    assert fam.planted_groups == ((0, 3), (1, 4), (2, 5))
    assert [t.params["group"] for t in fam.tasks] == [0, 1, 2, 0, 1, 2]
    Q = rotation(fam.tasks[1].params["angle"])
    np.testing.assert_allclose(Q @ Q.T, np.eye(4), atol=1e-12)  # a rotation: every task alone is as easy
    env = fam.tasks[1].make_env()
    obs, _ = env.reset(seed=3)
    state = np.asarray(env.unwrapped.state, dtype=np.float32)
    np.testing.assert_allclose(obs, Q @ state, rtol=1e-5, atol=1e-6)
    venv = MultiTaskVectorEnv(fam, [1], envs_per_task=1, seed=3, task_id=False)
    vobs = venv.reset()
    np.testing.assert_allclose(vobs[0], Q @ np.asarray(venv.env.unwrapped.state[:, 0], dtype=np.float32), rtol=1e-5,
                               atol=1e-6)
    venv.close()
    plain = load_family("planted(n=6,groups=3,conflict=0)")
    assert all(t.params["angle"] == 0.0 for t in plain.tasks)


def test_planted_orthogonal_groups_stay_apart_at_many_groups():
    """orthogonal=1: group 0 sees plain CartPole, every other group its own SO(4) rotation, the same on the vector
    path; at 100 groups the nearest two transforms are far apart (plane rotations would put them 3.6 degrees, a
    Frobenius distance of 0.13, apart); conflict scales the rotation down to the identity; 1,000 task names are
    unique."""
    from policygradex.envs.planted import group_transform, rotation

    fam = load_family("planted(n=200,groups=100,orthogonal=1)")
    Qs = np.stack([group_transform(fam.tasks[g].params) for g in range(100)])
    np.testing.assert_allclose(Qs[0], np.eye(4))
    np.testing.assert_allclose(np.einsum("gij,gkj->gik", Qs, Qs), np.broadcast_to(np.eye(4), Qs.shape), atol=1e-10)
    assert np.allclose(np.linalg.det(Qs), 1.0)
    D = np.linalg.norm(Qs[:, None] - Qs[None], axis=(2, 3)) + 10 * np.eye(100)
    assert D.min() > 0.5, D.min()
    assert np.linalg.norm(rotation(2 * np.pi / 100) - np.eye(4)) < 0.13
    task = fam.tasks[7]
    env = task.make_env()
    obs, _ = env.reset(seed=3)
    np.testing.assert_allclose(obs, Qs[7] @ np.asarray(env.unwrapped.state, dtype=np.float32), rtol=1e-5, atol=1e-6)
    venv = MultiTaskVectorEnv(fam, [7], envs_per_task=1, seed=3, task_id=False)
    vobs = venv.reset()
    np.testing.assert_allclose(vobs[0], Qs[7] @ np.asarray(venv.env.unwrapped.state[:, 0], dtype=np.float32),
                               rtol=1e-5, atol=1e-6)
    venv.close()
    half = load_family("planted(n=4,groups=2,conflict=0.5,orthogonal=1)").tasks[1].params
    full = dict(half, conflict=1.0)
    np.testing.assert_allclose(group_transform(half) @ group_transform(half), group_transform(full), atol=1e-10)
    names = load_family("planted(n=1000,groups=10)").task_names
    assert len(set(names)) == 1000


# ----------------------------------------------------------------------------------------------- unseen tasks
@pytest.mark.parametrize("spec,param,low,high", [
    ("cartpole", "half_length", 0.1, 2.5),
    ("lunarlander", "gravity", -11.0, -2.0),
    ("pendulum", "gravity", 2.0, 20.0),
    ("planted", "half_length", 0.4, 0.8),
])
def test_unseen_tasks_are_drawn_from_the_range_and_disjoint_from_the_sources(spec, param, low, high) -> None:
    from policygradex.envs.base import unseen_tasks

    family = load_family(spec)
    unseen = unseen_tasks(family, 50, seed=3)
    values = [t.params[param] for t in unseen.tasks]
    assert unseen.n == 50 and all(low <= v <= high for v in values)
    assert len(set(values)) == 50 and not set(values) & {t.params[param] for t in family.tasks}
    assert len(set(unseen.task_names)) == 50 and not set(unseen.task_names) & set(family.task_names)
    assert unseen.planted_groups is None
    assert [t.params for t in unseen_tasks(family, 50, seed=3).tasks] == [t.params for t in unseen.tasks]
    assert [t.params for t in unseen_tasks(family, 50, seed=4).tasks] != [t.params for t in unseen.tasks]
    # spread over the range, not bunched: both halves of it (log scale for lengths) are drawn
    mid = np.sqrt(low * high) if low > 0 else (low + high) / 2
    assert 10 < sum(v < mid for v in values) < 40


def test_unseen_tasks_run_with_their_own_parameters() -> None:
    from policygradex.envs.base import unseen_tasks

    unseen = unseen_tasks(load_family("cartpole"), 3, seed=0)
    env = MultiTaskVectorEnv(unseen, [0, 1, 2], 1, seed=0, task_id=False)  # the family's vector fast path
    np.testing.assert_allclose(env.env.length, [t.params["half_length"] for t in unseen.tasks])
    env.close()
    single = unseen.tasks[1].make_env()
    assert single.unwrapped.length == unseen.tasks[1].params["half_length"]
    single.close()
    planted_unseen = unseen_tasks(load_family("planted"), 20, seed=0)
    angles = {t.params["group"]: t.params["angle"] for t in load_family("planted").tasks}
    assert all(t.params["angle"] == angles[t.params["group"]] for t in planted_unseen.tasks)  # the groups' rotations


def test_a_family_without_a_range_has_no_unseen_tasks() -> None:
    from policygradex.envs.base import unseen_tasks

    with pytest.raises(PolicyGradExError, match="no parameter range"):
        unseen_tasks(load_family("tests.plugin_families:good_family"), 5, seed=0)
