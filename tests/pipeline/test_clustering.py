"""SDP clustering of the affinity matrix: planted groups are recovered exactly, no structure gives one group."""

from __future__ import annotations

import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.clustering import best_rounding, cluster, round_solution, solve_sdp, standardize
from policygradex.pipeline.partitions import (
    best_partitions,
    canonical,
    exhaustive_partition,
    local_search,
    partition_objective,
)


def _planted(sizes=(3, 4, 3), noise=0.05, seed=0):
    """A permuted block matrix: affinity 1 within a group, 0 across, plus small symmetric noise."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    labels = truth[rng.permutation(len(truth))]
    U = (labels[:, None] == labels[None, :]).astype(float) + noise * rng.normal(size=(len(labels),) * 2)
    return (U + U.T) / 2, canonical(labels)


@pytest.mark.parametrize("method", ["auto", "sdp"])
@pytest.mark.parametrize("mode", [{"k": 3}, {"lam": 1.0}, {}], ids=["fixed-k", "given-lambda", "lambda-grid"])
def test_sdp_recovers_planted_blocks(mode, method):
    """The planted partition comes back exactly, whether k is given, lambda is given, or lambda is chosen, by the
    exact search (auto at n = 10) and by the SDP's rounding; the relaxation is tight on clean blocks (gap ~ 0)."""
    U, truth = _planted()
    assert sorted(np.bincount(truth).tolist()) == [3, 3, 4]
    res = cluster(U, method=method, **mode)
    np.testing.assert_array_equal(canonical(res.labels), truth)
    assert res.k == 3 and res.method == ("exact" if method == "auto" else "sdp")
    assert res.X is not None and res.X.shape == (10, 10)
    assert res.relaxation is not None and abs(res.relaxation["gap"]) < 1e-3
    if method == "sdp":
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
    res = cluster(U, k=3, method="sdp")
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


DEMO_U = np.loadtxt(__file__.rsplit("/", 1)[0] + "/data/demo_cartpole_affinity.txt")


def _double_centred(U):
    """What main c4a3cbb clustered: U double-centred with the diagonal masked (leaves (a_i + a_j) / (n - 1))."""
    n = U.shape[0]
    off = ~np.eye(n, dtype=bool)
    masked = np.where(off, U, np.nan)
    row = np.nanmean(masked, axis=1)
    C = U - row[:, None] - row[None, :] + np.nanmean(masked)
    C[~off] = 0.0
    return C / C[off].std()


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_sdp_rounding_finds_the_best_partition_where_linkage_missed(k):
    """Regression: on the matrix main c4a3cbb clustered for the demo, average-linkage rounding with single moves
    returned 4.081 at k = 3 (best 4.371) and 5.079 at k = 4 (best 5.319). The SDP path (several roundings, each
    improved by moves and swaps) returns the best partition for every k; the relaxation bounds it from above."""
    S = _double_centred(DEMO_U)
    best_val, best_labels = best_partitions(S, kmax=k, only_k=True)[k]
    X = solve_sdp(S, k=k)
    labels = best_rounding(S, X, k)
    assert partition_objective(S, labels) == pytest.approx(best_val, abs=1e-9)
    np.testing.assert_array_equal(labels, best_labels)
    assert float(np.sum(S * X)) >= best_val - 1e-4
    assert k != 3 or best_val == pytest.approx(4.370937, abs=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_demo_affinity_auto_and_sdp_agree_on_the_best_partition(k):
    """cluster() on the demo's U: the exact search (auto, n = 10) and the SDP path return the same best partition."""
    a, b = cluster(DEMO_U, k=k), cluster(DEMO_U, k=k, method="sdp")
    assert a.method == "exact" and b.method == "sdp"
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.check["sdp_is_optimal"]


def test_additive_effects_do_not_move_the_groups():
    """A purely additive U (mu + a_i + a_j) has no interaction: standardize gives zeros and no structure is found.
    Added to planted blocks, even a 100x larger additive part leaves the groups unchanged; double-centring left
    (a_i + a_j) / (n - 1) of it, which put the tasks with the largest a_i together."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=10) * 100
    A = a[:, None] + a[None, :] + 7.0
    assert not standardize(A).any()
    assert cluster(A).k == 1
    U, truth = _planted(noise=0.05, seed=3)
    np.testing.assert_array_equal(canonical(cluster(U + A, k=3).labels), truth)
    np.testing.assert_allclose(standardize(U + A), standardize(U), atol=1e-9)
    assert not np.array_equal(canonical(exhaustive_partition(_double_centred(U + A), k=3)), truth)


def _brute_force_best(U, k):
    """Every assignment of n labels in 0..k-1 that uses all k labels, scored directly."""
    import itertools

    n, best = U.shape[0], -np.inf
    for assign in itertools.product(range(k), repeat=n):
        lab = np.array(assign)
        if len(set(assign)) == k:
            best = max(best, partition_objective(U, lab))
    return best


def test_best_partitions_matches_brute_force():
    """The enumeration of restricted growth strings scores every partition: it agrees with a brute force over all
    k^n labelings for n = 7 and every k."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(7, 7))
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    table = best_partitions(A)
    assert sorted(table) == list(range(1, 8))
    for k in range(1, 8):
        assert table[k][0] == pytest.approx(_brute_force_best(A, k), abs=1e-9)
        assert partition_objective(A, table[k][1]) == pytest.approx(table[k][0], abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_local_search_ends_where_no_move_or_swap_helps(seed):
    """From a random start, local search returns a partition with the same k that no single move (keeping groups
    non-empty) and no pair swap improves, checked by recomputing the objective of every neighbour."""
    rng = np.random.default_rng(seed)
    n, k = 9, 3
    A = rng.normal(size=(n, n))
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    start = canonical(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
    out = local_search(A, start)
    val = partition_objective(A, out)
    assert int(out.max()) + 1 == k and val >= partition_objective(A, start) - 1e-12
    for i in range(n):
        for g in range(k):
            if g != out[i] and (out == out[i]).sum() > 1:
                trial = out.copy()
                trial[i] = g
                assert partition_objective(A, trial) <= val + 1e-9
        for j in range(n):
            if out[i] != out[j]:
                trial = out.copy()
                trial[i], trial[j] = out[j], out[i]
                assert partition_objective(A, trial) <= val + 1e-9


def test_sdp_path_above_the_exact_limit():
    """n = 16 > 12: auto uses the SDP path; planted blocks of 16 tasks with noise come back exactly."""
    U, truth = _planted(sizes=(5, 6, 5), noise=0.2, seed=2)
    res = cluster(U, k=3)
    assert res.method == "sdp" and res.check is None
    np.testing.assert_array_equal(canonical(res.labels), truth)


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), -1.0])
def test_bad_lambda_is_refused(lam):
    U, _ = _planted()
    with pytest.raises(PolicyGradExError, match="--lam"):
        cluster(U, lam=lam)
