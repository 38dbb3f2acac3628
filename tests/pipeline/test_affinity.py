"""The affinity matrix (eq. 5) and its split-half reliability."""

from __future__ import annotations

import itertools

import numpy as np

from policygradex.pipeline.affinity import split_half_reliability, subset_affinity
from policygradex.pipeline.surrogate import sample_subsets


def test_subset_affinity_is_the_mean_over_subsets_holding_the_pair():
    """U_ij by brute force: the mean of f^ over the subsets containing both i and j."""
    subsets = [[0, 1, 2], [1, 2, 3], [0, 3, 1], [2, 3, 0]]
    f = np.array([1.0, 2.0, 4.0, 8.0])
    U = subset_affinity(subsets, f, 4, interaction=False)
    for i, j in itertools.product(range(4), repeat=2):
        expect = np.mean([fv for s, fv in zip(subsets, f) if i in s and j in s])
        assert np.isclose(U[i, j], expect)


def test_split_half_reliability_is_not_inflated_by_repeated_subsets():
    """Pure-noise f^ on subsets drawn with repetition: each copy pair must stay on one side, so the reliability
    is near 0 (the old even/odd split put copies on both sides and correlated the noise with itself)."""
    distinct = sample_subsets(10, 5, 121, seed=0).subsets
    subsets = distinct + distinct  # every subset twice, with the same f^
    r_means = []
    for seed in range(5):
        noise = np.random.default_rng(seed).normal(size=len(distinct))
        f = np.concatenate([noise, noise])
        split = split_half_reliability(subsets, f, 10, splits=40, seed=1)
        assert split is not None and split["distinct_subsets"] == 121
        r_means.append(split["r_mean"])
    assert abs(np.mean(r_means)) < 0.1
    # what the even/odd split reported: copies j and j + 121 always land on opposite sides
    halves = [subset_affinity(subsets[p::2], f[p::2], 10) for p in (0, 1)]
    from policygradex.pipeline.clustering import standardized_corr
    assert standardized_corr(*halves) > 0.9


def test_split_half_reliability_high_for_real_structure():
    """f^ = number of same-block pairs in S plus small noise: U is reproducible over halves of the subsets."""
    n = 10
    blocks = np.arange(n) % 3
    subsets = sample_subsets(n, 5, 252, seed=0).subsets  # all subsets
    inter = np.array([sum(blocks[i] == blocks[j] for i, j in itertools.combinations(s, 2)) for s in subsets], float)
    f = inter + 0.3 * np.random.default_rng(1).normal(size=len(subsets))
    split = split_half_reliability(subsets, f, n, seed=0)
    assert split is not None and split["reliability"] > 0.7 and split["pair_min"] >= 15


def test_interaction_affinity_removes_per_task_effects_that_eq5_leaks():
    """f(S) = large per-task effects + a small planted pairwise part, on a random incomplete design (60 of the 252
    subsets). The interaction U (per-task effects removed from f first) is exactly 0 for a purely additive f and
    recovers the pairwise structure; eq. 5 on f itself mixes the third tasks' effects into each pair."""
    from policygradex.pipeline.clustering import standardized_corr

    n = 10
    rng = np.random.default_rng(0)
    subsets = sample_subsets(n, 5, 60, seed=3).subsets
    a = rng.normal(size=n) * 50
    blocks = np.arange(n) % 3
    additive = np.array([a[s].sum() for s in subsets])
    assert np.abs(subset_affinity(subsets, additive + 3.0, n)).max() < 1e-9
    pair = np.array([sum(blocks[i] == blocks[j] for i, j in itertools.combinations(s, 2)) for s in subsets], float)
    truth = (blocks[:, None] == blocks[None, :]).astype(float)
    f = additive + pair
    U_int, U_eq5 = subset_affinity(subsets, f, n), subset_affinity(subsets, f, n, interaction=False)
    assert standardized_corr(U_int, truth) > 0.7  # the rest: other same-block pairs sharing its subsets
    assert standardized_corr(U_eq5, truth) < 0.2


def test_per_target_affinity_by_hand():
    """per_target: U_ij is the mean over subsets holding i and j of -(task i's own loss), directed (row i is the
    target), symmetrised for clustering; checked on three subsets of four tasks worked out by hand."""
    from policygradex.pipeline.affinity import affinity_matrix, per_target_affinity

    subsets = [[0, 1, 2], [0, 1, 3], [1, 2, 3]]
    task_loss = np.zeros((3, 4))
    task_loss[0, [0, 1, 2]] = [1.0, 2.0, 3.0]
    task_loss[1, [0, 1, 3]] = [5.0, 4.0, 6.0]
    task_loss[2, [1, 2, 3]] = [7.0, 8.0, 9.0]
    D = per_target_affinity(subsets, task_loss, 4)
    # task 0 with task 1: subsets 0 and 1 hold both; task 0's losses there are 1 and 5
    assert D[0, 1] == -(1.0 + 5.0) / 2
    # task 1 with task 0: the same subsets, task 1's own losses 2 and 4
    assert D[1, 0] == -(2.0 + 4.0) / 2
    # task 1 with task 2: subsets 0 and 2; task 1's losses 2 and 7. Task 2 with task 1: 3 and 8
    assert (D[1, 2], D[2, 1]) == (-(2.0 + 7.0) / 2, -(3.0 + 8.0) / 2)
    # task 0 with task 3: only subset 1; task 3 with task 0: task 3's loss there, 6
    assert (D[0, 3], D[3, 0]) == (-5.0, -6.0)
    # the diagonal: every subset holding i; task 1 is in all three (2, 4, 7)
    assert D[1, 1] == -(2.0 + 4.0 + 7.0) / 3
    U, directed = affinity_matrix("per_target", subsets, np.zeros(3), task_loss, 4)
    np.testing.assert_array_equal(directed, D)
    np.testing.assert_array_equal(U, (D + D.T) / 2)
    assert not np.allclose(D, D.T)  # it really is directed
