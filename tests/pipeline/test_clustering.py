"""Clustering of the affinity matrix: planted groups are recovered exactly, no structure gives one group; the fast
path (spectral starts + incremental local search) agrees with the SDP path and the exact search, and its bound holds."""

from __future__ import annotations

import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from policygradex.pipeline.clustering import (
    SDP_MAX_N,
    best_rounding,
    cluster,
    fast_partition,
    resolve_method,
    round_solution,
    solve_sdp,
    spectrum,
    standardize,
)
from policygradex.pipeline.partitions import (
    EXACT_MAX_N,
    best_partitions,
    canonical,
    exhaustive_partition,
    incremental_local_search,
    local_search,
    merge_split_search,
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


# ----------------------------------------------------------------------------------------------- the fast path
def _noisy_blocks(n, group=10, noise=1.0, seed=0):
    """Blocks of ``group`` tasks in random order plus gaussian noise of sd noise * group / sqrt(2 n): at noise 1
    the noise's spectral edge equals a block's eigenvalue, so one k-means rounding of the embedding misplaces tasks."""
    rng = np.random.default_rng(seed)
    truth = canonical((np.arange(n) // group)[rng.permutation(n)])
    U = (truth[:, None] == truth[None, :]) + rng.normal(0.0, noise * group / np.sqrt(2 * n), (n, n))
    return (U + U.T) / 2, truth


def _random_symmetric(n, seed):
    A = np.random.default_rng(seed).normal(size=(n, n))
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    return A


def _assert_no_move_or_swap_improves(A, labels):
    """Every neighbour by one move (keeping groups non-empty) or one swap, rescored from scratch, is no better."""
    n, k = len(labels), int(labels.max()) + 1
    val = partition_objective(A, labels)
    for i in range(n):
        for g in range(k):
            if g != labels[i] and (labels == labels[i]).sum() > 1:
                trial = labels.copy()
                trial[i] = g
                assert partition_objective(A, trial) <= val + 1e-9
        for j in range(i + 1, n):
            if labels[i] != labels[j]:
                trial = labels.copy()
                trial[i], trial[j] = labels[j], labels[i]
                assert partition_objective(A, trial) <= val + 1e-9


@pytest.mark.parametrize("search", [incremental_local_search, merge_split_search])
@pytest.mark.parametrize("seed", range(4))
def test_incremental_search_ends_where_no_move_or_swap_helps(seed, search):
    """From a random start, on a random and on a noisy-block matrix, the incremental searches keep k, never lose,
    and end where no single move and no swap improves (every neighbour rescored by partition_objective)."""
    rng = np.random.default_rng(seed)
    blocks = standardize(_noisy_blocks(24, group=6, noise=2.0, seed=seed)[0])
    for A, k in ((_random_symmetric(10, seed), 3), (blocks, 4)):
        n = A.shape[0]
        start = canonical(np.concatenate([np.arange(k), rng.integers(0, k, n - k)]))
        out = search(A, start)
        assert int(out.max()) + 1 == k
        assert partition_objective(A, out) >= partition_objective(A, start) - 1e-12
        _assert_no_move_or_swap_improves(A, out)


def test_incremental_search_at_a_larger_n():
    """n = 60, k = 6: the incrementally updated sums do not drift: the end point is a local optimum of moves and swaps
    when rescored from scratch."""
    A = _random_symmetric(60, 11)
    start = canonical(np.random.default_rng(0).integers(0, 6, 60))
    _assert_no_move_or_swap_improves(A, incremental_local_search(A, start))


def test_merge_split_repairs_two_merged_groups_and_a_split_one():
    """Four clean blocks of 5; the start merges blocks 0 and 1 and splits block 2 in two. No move or swap helps
    there (each task moved alone loses), so the incremental search stays; one merge-plus-split step finds the
    blocks."""
    truth = np.repeat(np.arange(4), 5)
    S = standardize((truth[:, None] == truth[None, :]).astype(float))
    start = truth.copy()
    start[truth == 1] = 0
    start[[10, 11]] = 1
    np.testing.assert_array_equal(incremental_local_search(S, start), canonical(start))
    np.testing.assert_array_equal(merge_split_search(S, start), truth)
    assert partition_objective(S, truth) > partition_objective(S, start) + 1


def test_merge_split_search_not_worse_than_local_search_from_the_same_starts():
    """From one k-means rounding of the spectral embedding (the starts fast uses), on 8 random and 8 noisy-block
    matrices, the fast path's search is at least as good as today's local_search in total. (Not per start: the
    two take different paths, and either can end at the better local optimum.)"""
    new = old = 0.0
    for seed in range(16):
        rng = np.random.default_rng(seed)
        n, k = int(rng.integers(30, 70)), int(rng.integers(3, 7))
        raw = _random_symmetric(n, seed) if seed % 2 else _noisy_blocks(n, group=n // k, noise=1.5, seed=seed)[0]
        A = standardize(raw)
        start = canonical(KMeans(n_clusters=k, n_init=1, random_state=seed).fit(spectrum(A).embedding(k)).labels_)
        if int(start.max()) + 1 < k:
            continue
        new += partition_objective(A, merge_split_search(A, start))
        old += partition_objective(A, local_search(A, start))
    assert new >= old - 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_spectral_bound_is_above_the_exact_optimum(seed):
    """For random U at n = 8-12 and every k = 2..5, the spectral bound is at least the best partition's objective
    found by enumeration."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, EXACT_MAX_N + 1))
    S = standardize(_random_symmetric(n, seed) + rng.normal(size=n)[:, None])  # an asymmetric part, symmetrised
    spec = spectrum(S)
    table = best_partitions(S, kmax=5)
    for k in range(2, 6):
        assert spec.bound(k) >= table[k][0] - 1e-9


def test_spectral_bound_is_above_the_sdp_value():
    """At n = 30 (random and noisy blocks), the spectral bound is at least the fixed-k SDP's value (up to SCS's
    accuracy), as the derivation in Spectrum.bound says."""
    for A in (standardize(_random_symmetric(30, 0)), standardize(_noisy_blocks(30, noise=1.5, seed=1)[0])):
        spec = spectrum(A)
        for k in (3, 5):
            X = solve_sdp(A, k=k)
            assert spec.bound(k) >= float(np.sum(A * X)) - 1e-4 * max(1.0, abs(spec.bound(k)))


def test_spectral_bound_is_tight_on_clean_equal_blocks():
    """Clean equal blocks: the top k - 1 eigenvectors of P U P span the block indicators less 1, so the planted
    partition attains the bound (gap 0); the result reports it as the spectral bound."""
    truth = np.repeat(np.arange(4), 6)
    U = (truth[:, None] == truth[None, :]).astype(float)
    res = cluster(U, k=4, method="fast")
    np.testing.assert_array_equal(res.labels, truth)
    assert res.relaxation["bound"] == "spectral" and abs(res.relaxation["gap"]) < 1e-9


def test_spectrum_matches_its_definition():
    """Spectrum's values are the eigenvalues of P U P without the one for the direction 1, its vectors are
    orthogonal to 1, and k_at(lam) counts the eigenvalues above lam."""
    A = _random_symmetric(15, 4) + 3.0  # 1 is no eigenvector of A
    P = np.eye(15) - 1 / 15
    spec = spectrum(A)
    full = np.sort(np.linalg.eigvalsh(P @ A @ P))[::-1]
    zero = int(np.argmin(np.abs(full)))
    np.testing.assert_allclose(spec.values, np.delete(full, zero), atol=1e-9)
    np.testing.assert_allclose(spec.vectors.sum(0), 0.0, atol=1e-9)
    assert spec.mean == pytest.approx(A.sum() / 15)
    assert spec.k_at(0.0) == 1 + int(np.sum(spec.values > 0))


def test_fast_recovers_noisy_planted_blocks_at_n200():
    """n = 200, 20 blocks of 10 with noise at the spectral edge: fast returns the planted groups (NMI 1)."""
    U, truth = _noisy_blocks(200, noise=1.0, seed=3)
    res = cluster(U, k=20, method="fast")
    assert res.method == "fast" and res.X is None
    assert normalized_mutual_info_score(truth, res.labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(res.labels, truth)
    assert res.relaxation["gap"] >= -1e-9 and res.relaxation["bound"] == "spectral"


@pytest.mark.parametrize("n", [30, 60])
def test_fast_agrees_with_sdp_on_noisy_blocks(n):
    """Where both run (n = 30, 60, noisy blocks, 3 seeds): fast's objective is within 1% of sdp's and the groups are
    the same; the SDP path labels its bound "sdp"."""
    for seed in range(3):
        U, _ = _noisy_blocks(n, noise=1.2, seed=seed)
        fast, sdp = cluster(U, k=n // 10, method="fast"), cluster(U, k=n // 10, method="sdp")
        assert fast.objective >= 0.99 * sdp.objective
        np.testing.assert_array_equal(fast.labels, sdp.labels)
        assert sdp.relaxation["bound"] == "sdp"


def _disturb_global_rngs(seed: int) -> None:
    """Move every global random state a careless implementation might draw from (numpy's, Python's, torch's)."""
    import random

    import torch

    np.random.seed(seed)
    np.random.rand(17)
    random.seed(seed)
    torch.manual_seed(seed)


def test_fast_is_deterministic():
    """The same input gives identical labels whatever the global random states hold: fast draws only from its own
    seeded generators (with k given and on the lambda grid)."""
    for U in (_random_symmetric(80, 5), _noisy_blocks(80, noise=1.5, seed=5)[0]):
        _disturb_global_rngs(1)
        first = cluster(U, k=8, method="fast").labels
        _disturb_global_rngs(2)
        np.testing.assert_array_equal(first, cluster(U, k=8, method="fast").labels)
    U, _ = _noisy_blocks(40, noise=0.5, seed=2)
    _disturb_global_rngs(3)
    a = cluster(U, method="fast", grid_size=6)
    _disturb_global_rngs(4)
    b = cluster(U, method="fast", grid_size=6)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.grid == b.grid


def test_init_is_honoured():
    """A random 12 x 12 U on which fast's spectral starts miss the best 3-group partition (objective below the
    exact optimum): given that optimum as ``init``, fast returns it. The SDP path takes it too."""
    U = _random_symmetric(12, 2)
    S = standardize(U)
    best_val, best_labels = best_partitions(S, kmax=3, only_k=True)[3]
    assert partition_objective(S, fast_partition(S, 3, bm_restarts=0)) < best_val - 1e-3
    res = cluster(U, k=3, method="fast", init=best_labels)
    np.testing.assert_array_equal(res.labels, best_labels)
    np.testing.assert_array_equal(cluster(U, k=3, method="sdp", init=best_labels).labels, best_labels)


def test_init_never_loses_to_the_start():
    """fast from the SDP path's groups as init returns an objective at least as high as that start's."""
    U = _random_symmetric(60, 7)
    sdp = cluster(U, k=6, method="sdp", exhaustive_check=False)
    fast = cluster(U, k=6, method="fast", init=sdp.labels)
    assert fast.objective >= sdp.objective - 1e-9


@pytest.mark.parametrize("bad", [{"init": np.zeros(10, dtype=int), "k": 3}, {"init": np.arange(10) % 3},
                                 {"init": np.arange(9) % 3, "k": 3}])
def test_bad_init_is_refused(bad):
    U, _ = _planted()
    with pytest.raises(PolicyGradExError, match="init"):
        cluster(U, method="fast", **bad)


def test_fast_lambda_grid_finds_planted_blocks():
    """Without k under fast, k(lambda) = 1 + the number of eigenvalues above lambda; the grid rows keep their
    format (lam, k, labels, silhouette) and the silhouette picks the planted blocks."""
    U, truth = _noisy_blocks(60, group=15, noise=0.3, seed=1)
    res = cluster(U, method="fast", grid_size=10)
    np.testing.assert_array_equal(res.labels, truth)
    spec = spectrum(standardize(U))
    assert len(res.grid) == 10
    for row in res.grid:
        assert set(row) == {"lam", "k", "labels", "silhouette"}
        assert row["k"] == min(spec.k_at(row["lam"]), 60)
    given = cluster(U, lam=res.lam, method="fast")
    np.testing.assert_array_equal(given.labels, truth)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_fast_finds_the_best_partition_of_the_demo(k):
    """On the demo's U (n = 10) fast returns the exact search's best partition; its exhaustive check agrees."""
    a, b = cluster(DEMO_U, k=k), cluster(DEMO_U, k=k, method="fast")
    assert b.method == "fast"
    np.testing.assert_array_equal(a.labels, b.labels)
    assert b.check["sdp_is_optimal"]


def test_auto_method_by_size():
    """auto: exact up to EXACT_MAX_N, sdp up to SDP_MAX_N, fast above; exhaustive is exact."""
    assert resolve_method("auto", EXACT_MAX_N) == "exact"
    assert resolve_method("auto", EXACT_MAX_N + 1) == "sdp"
    assert resolve_method("auto", SDP_MAX_N) == "sdp"
    assert resolve_method("auto", SDP_MAX_N + 1) == "fast"
    assert resolve_method("exhaustive", 5) == "exact" and resolve_method("sdp", 500) == "sdp"
    U, _ = _noisy_blocks(SDP_MAX_N + 10, noise=0.5, seed=0)
    assert cluster(U, k=(SDP_MAX_N + 10) // 10).method == "fast"


def test_unknown_method_is_refused():
    U, _ = _planted()
    with pytest.raises(PolicyGradExError, match="unknown clustering method"):
        cluster(U, k=3, method="spectral")


def test_report_names_the_spectral_bound_as_such():
    """A fast-path partition's bound is the spectral one, and the report must not call it the SDP's value."""
    from policygradex.pipeline.group_record import Groups, Relaxation
    from policygradex.pipeline.report import partition_sentence

    def groups(method: str, bound: str) -> Groups:
        rel = Relaxation(k=3, sdp_value=5.0, partition_value=4.0, gap=1.0, solver="eigh", bound=bound)
        return Groups(names=(("a",), ("b",), ("c",)), indices=((0,), (1,), (2,)), k=3, selection="fixed k",
                      cluster_config={}, method=method, relaxation=rel)

    text = partition_sentence(groups("fast", "spectral"))
    assert "Spectral bound" in text and "SDP value" not in text
    assert "SDP value" in partition_sentence(groups("sdp", "sdp"))
