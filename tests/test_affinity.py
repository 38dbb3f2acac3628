"""The affinity matrix (eq. 5) and its split-half reliability."""

from __future__ import annotations

import itertools

import numpy as np

from policygradex.affinity import split_half_reliability, subset_affinity
from policygradex.surrogate import sample_subsets


def test_subset_affinity_is_the_mean_over_subsets_holding_the_pair():
    """U_ij by brute force: the mean of f^ over the subsets containing both i and j."""
    subsets = [[0, 1, 2], [1, 2, 3], [0, 3, 1], [2, 3, 0]]
    f = np.array([1.0, 2.0, 4.0, 8.0])
    U = subset_affinity(subsets, f, 4)
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
    from policygradex.clustering import standardized_corr
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
