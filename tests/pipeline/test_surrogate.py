"""Subset sampling, the batched weighted logistic regression, and the surrogate's f^(S)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.config import SurrogateConfig
from policygradex.pipeline.features import FeatureSet
from policygradex.pipeline.surrogate import fit_logistic_batched, pair_counts, run_surrogate, sample_subsets


def _check_subsets(subsets, n, alpha):
    for s in subsets:
        assert len(s) == alpha
        assert s == sorted(s)
        assert len(set(s)) == alpha
        assert all(isinstance(i, int) and 0 <= i < n for i in s)


def _synthetic(n=6, N=200, d=20, seed=0):
    """Labels +-1 from a noisy linear model, weights uniform(0, 2)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N, d)).astype(np.float32)
    beta = rng.normal(size=d)
    y = np.sign(X @ beta + 2.0 * rng.normal(size=(n, N)))
    y[y == 0] = 1.0
    w = rng.uniform(0.0, 2.0, size=(n, N))
    return torch.from_numpy(X), torch.tensor(y, dtype=torch.float32), torch.tensor(w, dtype=torch.float32)


def test_pair_counts_counts_co_occurrences():
    """pair_counts[i, j] is the number of subsets holding both i and j (diagonal: holding i)."""
    subsets = [[0, 1, 2], [1, 3], [0, 1]]
    counts = pair_counts(subsets, 4)
    brute = np.array([[sum(i in s and j in s for s in subsets) for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(counts, brute)
    assert counts[0, 1] == 2 and counts[2, 3] == 0 and counts[1, 1] == 3


def test_sample_subsets_cover_every_pair():
    """Default-sized sampling: alpha distinct sorted tasks per subset and every pair in some subset."""
    n, alpha, m = 10, 5, 100
    sample = sample_subsets(n, alpha, m, seed=0)
    subsets, added = sample.subsets, sample.topped_up
    assert len(subsets) == m + added
    _check_subsets(subsets, n, alpha)
    counts = pair_counts(subsets, n)
    assert (counts[~np.eye(n, dtype=bool)] > 0).all()
    np.testing.assert_array_equal(np.diag(counts), [sum(i in s for s in subsets) for i in range(n)])


def test_sample_subsets_seeded():
    """The same seed gives the same subsets; another seed gives different ones."""
    a = sample_subsets(10, 5, 30, seed=7).subsets
    b = sample_subsets(10, 5, 30, seed=7).subsets
    c = sample_subsets(10, 5, 30, seed=8).subsets
    assert a == b
    assert a != c


def test_sample_subsets_tops_up_when_m_is_tiny():
    """With m = 1 subset, extra subsets are added until every pair of the 8 tasks is covered."""
    n, alpha = 8, 3
    sample = sample_subsets(n, alpha, 1, seed=0)
    subsets, added = sample.subsets, sample.topped_up
    assert added > 0 and len(subsets) == 1 + added
    _check_subsets(subsets, n, alpha)
    counts = pair_counts(subsets, n)
    for i, j in itertools.combinations(range(n), 2):
        assert counts[i, j] > 0, (i, j)


def test_sample_subsets_alpha_two_is_all_pairs_when_needed():
    """alpha = 2 with m = 1: the top-ups are exactly the missing pairs."""
    sample = sample_subsets(5, 2, 1, seed=3)
    subsets, added = sample.subsets, sample.topped_up
    assert len(subsets) == 10 and added == 9
    assert sorted(map(tuple, subsets)) == list(itertools.combinations(range(5), 2))


@pytest.mark.parametrize("n, alpha, m", [(10, 5, 200), (10, 3, 100), (60, 5, 3 * 60 * 60)])
def test_sample_subsets_are_distinct(n, alpha, m):
    """No subset is drawn twice, whether the possible subsets are enumerated (C(10, 5) = 252) or drawn by rejection
    (C(60, 5) = 5.5M); m of them are returned when m < C(n, alpha)."""
    sample = sample_subsets(n, alpha, m, seed=1)
    keys = [tuple(s) for s in sample.subsets]
    assert len(set(keys)) == len(keys)
    assert len(keys) == m + sample.topped_up and not sample.exhaustive
    _check_subsets(sample.subsets, n, alpha)


def test_sample_subsets_uses_every_subset_once_when_m_exceeds_the_count():
    """m = 300 > C(10, 5) = 252 (the old demo default): every possible subset exactly once, and it says so."""
    sample = sample_subsets(10, 5, 300, seed=0)
    assert sorted(map(tuple, sample.subsets)) == list(itertools.combinations(range(10), 5))
    assert sample.exhaustive and sample.possible == 252 and sample.requested == 300 and sample.topped_up == 0


def test_sample_subsets_uniform_over_subsets():
    """Without replacement but uniform: over many seeds each of the C(6, 3) = 20 subsets is drawn about equally."""
    counts: dict[tuple[int, ...], int] = {}
    for seed in range(400):
        for s in sample_subsets(6, 3, 5, seed=seed).subsets[:5]:
            counts[tuple(s)] = counts.get(tuple(s), 0) + 1
    freq = np.array(list(counts.values()))
    assert len(counts) == 20 and freq.min() > 60 and freq.max() < 140  # expected 100 each


@pytest.mark.parametrize("alpha", [0, 1, 11])
def test_sample_subsets_rejects_alpha_out_of_range(alpha):
    """alpha outside [2, n] is a user error, not a crash."""
    with pytest.raises(PolicyGradExError, match="alpha"):
        sample_subsets(10, alpha, 10, seed=0)


def test_sample_subsets_rejects_zero_subsets():
    """m < 1 is a user error."""
    with pytest.raises(PolicyGradExError):
        sample_subsets(10, 3, 0, seed=0)


def test_batched_fit_matches_sklearn():
    """Each batched L-BFGS fit equals sklearn's weighted, L2-regularised, intercept-free logistic regression."""
    X, y, w = _synthetic()
    subsets = [[0, 1], [2, 3, 4], [0, 5], [1, 2, 3, 4, 5], [3, 4], [0, 2, 4]]
    l2 = 1e-2
    cfg = SurrogateConfig(l2=l2, tol=1e-9, dtype="float64")
    V, info = fit_logistic_batched(X, y, w, subsets, cfg)
    assert V.shape == (len(subsets), X.shape[2]) and V.dtype == torch.float64
    assert info.converged.all()
    for j, s in enumerate(subsets):
        rows = np.concatenate([X[i].double().numpy() for i in s])
        labels = np.concatenate([y[i].numpy() for i in s])
        weights = np.concatenate([w[i].double().numpy() for i in s])
        ref = LogisticRegression(C=1.0 / (len(rows) * l2), fit_intercept=False, tol=1e-10, max_iter=10_000)
        ref.fit(rows, labels, sample_weight=weights)
        coef = ref.coef_.ravel()
        assert np.linalg.norm(coef) > 0.1  # a real signal was fitted
        rel = np.abs(V[j].numpy() - coef).max() / np.abs(coef).max()
        assert rel < 1e-3, (j, s, rel)
    # different subsets see different data, so they get different solutions
    assert not torch.allclose(V[0], V[1])


def _mean_weighted_loss(F, y, w, v):
    """(1 / rows) * sum w log(1 + exp(-y f.v)) over the given rows."""
    return float(np.sum(w * np.logaddexp(0.0, -y * (F @ v))) / len(y))


def test_run_surrogate_f_hat_is_minus_held_out_loss():
    """f^(S) = -(1/|D_S|) sum w log(1 + exp(-y g.v_S)) on S's held-out rows, and the in-sample one on fitted rows."""
    n, N, n_fit = 5, 80, 60
    X, y, w = _synthetic(n=n, N=N, d=8, seed=1)
    data = FeatureSet(features=X, labels=y, weights=w, n_fit=n_fit)
    sample = sample_subsets(n, 2, 6, seed=0)
    subsets, topped = sample.subsets, sample.topped_up
    res = run_surrogate(data, subsets, SurrogateConfig(l2=1e-3, tol=1e-8, evaluation="held_out"), topped)
    assert res.v.shape == (len(subsets), 8)
    np.testing.assert_array_equal(res.f_hat, res.f_hat_held_out)
    Xn, yn, wn = X.double().numpy(), y.double().numpy(), w.double().numpy()
    for j in (0, len(subsets) - 1):
        s, v = subsets[j], res.v[j]
        held = [slice(n_fit, None)] * len(s)
        F = np.concatenate([Xn[i, sl] for i, sl in zip(s, held)])
        Y = np.concatenate([yn[i, sl] for i, sl in zip(s, held)])
        W = np.concatenate([wn[i, sl] for i, sl in zip(s, held)])
        assert len(Y) == len(s) * (N - n_fit)
        np.testing.assert_allclose(res.f_hat_held_out[j], -_mean_weighted_loss(F, Y, W, v), rtol=1e-10)
        F = np.concatenate([Xn[i, :n_fit] for i in s])
        Y = np.concatenate([yn[i, :n_fit] for i in s])
        W = np.concatenate([wn[i, :n_fit] for i in s])
        np.testing.assert_allclose(res.f_hat_in_sample[j], -_mean_weighted_loss(F, Y, W, v), rtol=1e-10)
        np.testing.assert_allclose(res.loss_at_theta_star[j], np.log(2) * wn[s, n_fit:].mean(), rtol=1e-10)
        # per-task losses: defined on S's tasks only, and they average to the subset loss
        inside = np.isfinite(res.task_loss[j])
        assert sorted(np.flatnonzero(inside).tolist()) == s
        np.testing.assert_allclose(res.task_loss[j, s].mean(), -res.f_hat_held_out[j], rtol=1e-10)
    # the fit adapts: on the fitting rows the loss is below the loss at v = 0
    assert (-res.f_hat_in_sample < np.array([np.log(2) * wn[s, :n_fit].mean() for s in subsets])).all()


def test_run_surrogate_in_sample_evaluation():
    """evaluation='in_sample' reports f^ on the fitting rows."""
    X, y, w = _synthetic(n=4, N=40, d=5, seed=2)
    data = FeatureSet(features=X, labels=y, weights=w, n_fit=30)
    subsets = sample_subsets(4, 2, 3, seed=0).subsets
    res = run_surrogate(data, subsets, SurrogateConfig(evaluation="in_sample"))
    np.testing.assert_array_equal(res.f_hat, res.f_hat_in_sample)
    assert not np.allclose(res.f_hat_in_sample, res.f_hat_held_out)


def test_in_sample_evaluation_needs_no_held_out_rows():
    """With evaluation='in_sample', every transition may be used for fitting (no hold-out)."""
    X, y, w = _synthetic(n=3, N=20, d=4, seed=3)
    data = FeatureSet(features=X, labels=y, weights=w, n_fit=20)
    res = run_surrogate(data, [[0, 1], [1, 2], [0, 2]], SurrogateConfig(evaluation="in_sample"))
    np.testing.assert_array_equal(res.f_hat, res.f_hat_in_sample)


def test_subset_table_round_trip_and_refusals(tmp_path):
    """subsets.npz: the surrogate's outputs in, the same arrays out; the members' losses read off an (m, n) matrix
    and put back where the per-target affinity reads them; a truncated or foreign file is refused, not misread."""
    import numpy as np

    from policygradex.common.artifacts import atomic_save_npz
    from policygradex.common.errors import PolicyGradExError
    from policygradex.pipeline.subset_table import SubsetTable

    subsets = [[0, 2], [1, 3], [0, 3]]
    loss = np.full((3, 4), np.nan)
    for j, s in enumerate(subsets):
        loss[j, s] = [10 * j + s[0], 10 * j + s[1]]
    t = SubsetTable.from_result(subsets, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [np.nan] * 3, [4.0, 5.0, 6.0],
                                [0.1, 0.2, 0.3], loss)
    assert t.task_loss.tolist() == [[0, 2], [11, 13], [20, 23]]
    t.save(tmp_path / "subsets.npz")
    back = SubsetTable.load(tmp_path / "subsets.npz")
    assert back.subsets == subsets and back.m == 3
    np.testing.assert_array_equal(back.task_loss_matrix(4), loss)
    assert np.isnan(back.f_hat_held_out).all()
    atomic_save_npz(tmp_path / "short.npz", tasks=np.zeros((3, 2), dtype=np.int64), f_hat=np.zeros(3))
    with pytest.raises(PolicyGradExError, match="not a subsets table"):
        SubsetTable.load(tmp_path / "short.npz")
    arrays = {k: getattr(t, k) for k in ("tasks", "f_hat_in_sample", "f_hat_held_out", "loss_at_theta_star",
                                         "relative_distance", "task_loss")}
    atomic_save_npz(tmp_path / "bad.npz", **arrays, f_hat=np.zeros(2))
    with pytest.raises(PolicyGradExError, match="disagree in shape"):
        SubsetTable.load(tmp_path / "bad.npz")
