"""SDP clustering of the affinity matrix: planted groups are recovered exactly, no structure gives one group."""

from __future__ import annotations

import numpy as np
import pytest

from policygradex.clustering import (
    canonical,
    cluster,
    exhaustive_partition,
    round_solution,
    solve_sdp,
    standardize,
)
from policygradex.errors import PolicyGradExError


def _planted(sizes=(3, 4, 3), noise=0.05, seed=0):
    """A permuted block matrix: affinity 1 within a group, 0 across, plus small symmetric noise."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    labels = truth[rng.permutation(len(truth))]
    U = (labels[:, None] == labels[None, :]).astype(float) + noise * rng.normal(size=(len(labels),) * 2)
    return (U + U.T) / 2, canonical(labels)


@pytest.mark.parametrize("mode", [{"k": 3}, {"lam": 1.0}, {}], ids=["fixed-k", "given-lambda", "lambda-grid"])
def test_sdp_recovers_planted_blocks(mode):
    """The planted partition comes back exactly, whether k is given, lambda is given, or lambda is chosen."""
    U, truth = _planted()
    assert sorted(np.bincount(truth).tolist()) == [3, 3, 4]
    res = cluster(U, **mode)
    np.testing.assert_array_equal(canonical(res.labels), truth)
    assert res.k == 3
    assert res.X is not None and res.X.shape == (10, 10)
    assert res.check is not None and res.check["sdp_is_optimal"] is True


def test_grid_records_the_lambda_path():
    """Without k or lambda, every grid point is reported and the chosen lambda is one of them."""
    U, _ = _planted()
    res = cluster(U, grid_size=8)
    assert len(res.grid) == 8
    assert res.lam in [row["lam"] for row in res.grid]


@pytest.mark.parametrize("seed", [1, 2])
def test_recovery_with_other_block_sizes(seed):
    """Two unequal groups (sizes 2 and 6) are also recovered on the lambda grid."""
    U, truth = _planted(sizes=(2, 6), noise=0.05, seed=seed)
    np.testing.assert_array_equal(canonical(cluster(U).labels), truth)


def test_constant_matrix_is_one_group():
    """No structure at all: every task lands in one group."""
    res = cluster(np.full((10, 10), 2.5))
    np.testing.assert_array_equal(res.labels, np.zeros(10))
    assert res.k == 1


def test_constant_matrix_is_one_group_with_given_lambda():
    """With lambda given, a constant affinity still gives one group; the SDP itself has trace 1 there."""
    res = cluster(np.full((10, 10), 2.5), lam=1.0)
    np.testing.assert_array_equal(res.labels, np.zeros(10))
    X = solve_sdp(standardize(np.full((10, 10), 2.5)), lam=1.0)
    assert abs(np.trace(X) - 1.0) < 1e-3
    np.testing.assert_array_equal(round_solution(X), np.zeros(10))


def test_affine_rescaling_does_not_change_groups():
    """Groups depend on U only up to a positive scale and shift (U is standardised first)."""
    U, _ = _planted(noise=0.3, seed=4)
    for kw in ({"k": 3}, {"lam": 0.5}, {}):
        np.testing.assert_array_equal(cluster(5 * U + 3, **kw).labels, cluster(U, **kw).labels)
    S = standardize(5 * U + 3)
    np.testing.assert_allclose(S, standardize(U), atol=1e-12)
    off = S[~np.eye(10, dtype=bool)]
    assert abs(off.mean()) < 1e-12 and abs(off.std() - 1) < 1e-12


def test_exhaustive_search_agrees_with_sdp():
    """On planted blocks, exhaustive search over all partitions finds the same groups as the SDP."""
    U, truth = _planted()
    U_std = standardize(U)
    np.testing.assert_array_equal(exhaustive_partition(U_std, k=3), truth)
    np.testing.assert_array_equal(exhaustive_partition(U_std, lam=1.0), truth)
    np.testing.assert_array_equal(canonical(cluster(U, method="exhaustive", k=3).labels), truth)


def test_exhaustive_check_is_consistent_on_noisy_blocks():
    """The exhaustive check reports a true optimum (never below the SDP groups) and a matching verdict."""
    U, _ = _planted(noise=0.8, seed=6)
    res = cluster(U, k=3)
    check = res.check
    assert check["k"] == 3 and len(check["optimal_labels"]) == 10
    assert check["optimal_objective"] >= check["sdp_objective"] - 1e-9
    assert check["sdp_is_optimal"] == bool(np.isclose(check["optimal_objective"], check["sdp_objective"]))


@pytest.mark.parametrize("k", [0, 11])
def test_k_out_of_range_raises(k):
    """k must be between 1 and n."""
    U, _ = _planted()
    with pytest.raises(PolicyGradExError, match="out of range"):
        cluster(U, k=k)


def test_k_and_lambda_are_exclusive():
    """Giving both k and lambda is a user error."""
    U, _ = _planted()
    with pytest.raises(PolicyGradExError):
        cluster(U, k=2, lam=1.0)


def test_round_solution_on_integral_solutions():
    """Rounding the partition matrix sum_G 1_G 1_G^T / |G| returns G; J / n returns one group."""
    groups = [[0, 4, 7], [1, 2, 5, 8], [3, 6, 9]]
    X = np.zeros((10, 10))
    for g in groups:
        X[np.ix_(g, g)] = 1.0 / len(g)
    labels = round_solution(X)
    assert sorted(map(sorted, [np.flatnonzero(labels == c).tolist() for c in range(3)])) == sorted(groups)
    np.testing.assert_array_equal(round_solution(X, k=3), labels)
    np.testing.assert_array_equal(round_solution(np.full((10, 10), 0.1)), np.zeros(10))
