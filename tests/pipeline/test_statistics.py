"""Per-task sufficient statistics and the fast surrogates built on them (Newton step, closed form), and the
confidence checks over blocks of transitions."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from policygradex.common.artifacts import atomic_save_npz
from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.affinity import subset_affinity
from policygradex.pipeline.closed_form import curvature_terms, expected_affinity, inclusion
from policygradex.pipeline.clustering import standardize, standardized_corr
from policygradex.pipeline.confidence import (
    gradient_reliability,
    gradient_reliability_from_blocks,
    transition_bootstrap,
    transition_split_half,
)
from policygradex.pipeline.config import SurrogateConfig
from policygradex.pipeline.features import FeatureSet
from policygradex.pipeline.partitions import labels_from_groups
from policygradex.pipeline.statistics import (
    closed_form_affinity,
    compute_statistics,
    newton_surrogate,
    rows_of_feature_set,
    statistics_of_files,
)
from policygradex.pipeline.surrogate import resolve_surrogate, run_newton, run_surrogate


def _planted_features(n: int = 9, N: int = 800, d: int = 12, groups: int = 3, signal: float = 0.4, seed: int = 0):
    """Features whose labels follow a group-specific linear model: tasks of a group share their gradient direction."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(groups, d)) * signal
    X = rng.normal(size=(n, N, d)).astype(np.float32)
    logits = np.einsum("knd,kd->kn", X, directions[np.arange(n) % groups])
    y = np.where(rng.random((n, N)) < 1 / (1 + np.exp(-logits)), 1.0, -1.0).astype(np.float32)
    w = rng.uniform(0.0, 2.0, size=(n, N)).astype(np.float32)
    return torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(w)


def test_statistics_match_their_definitions():
    """c_k = log 2 mean(w), b_k = mean(w y x / 2), H_k = mean(w x x^T / 4) on the fitting rows; the block sums add up
    to b_k times the rows; held-out statistics come from the rows after n_fit."""
    X, y, w = _planted_features(n=3, N=50, d=4)
    n_fit = 37
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, n_fit)), n_fit, blocks=5, per_task=True)
    Xn, yn, wn = X.double().numpy(), y.double().numpy(), w.double().numpy()
    for k in range(3):
        f = slice(0, n_fit)
        assert st.c[k] == pytest.approx(math.log(2) * wn[k, f].mean())
        np.testing.assert_allclose(st.b[k], (0.5 * wn[k, f] * yn[k, f]) @ Xn[k, f] / n_fit)
        np.testing.assert_allclose(st.H[k], (Xn[k, f].T * 0.25 * wn[k, f]) @ Xn[k, f] / n_fit)
        np.testing.assert_allclose(st.block_sums[k].sum(0) / n_fit, st.b[k])
        h = slice(n_fit, None)
        np.testing.assert_allclose(st.held_b[k], (0.5 * wn[k, h] * yn[k, h]) @ Xn[k, h] / (50 - n_fit))
    np.testing.assert_allclose(st.curvature, st.H.mean(0))
    assert st.block_rows.sum() == n_fit and len(st.block_rows) == 5 and np.ptp(st.block_rows) <= 1


def test_curvature_from_a_subsample_of_rows():
    """curvature_rows = r: the shared curvature averages H over r evenly spaced fitting rows of each task."""
    X, y, w = _planted_features(n=2, N=40, d=3)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 40)), 40, curvature_rows=5)
    idx = np.linspace(0, 39, 5).round().astype(int)
    Xn, wn = X.double().numpy()[:, idx], w.double().numpy()[:, idx]
    want = np.mean([(Xn[k].T * 0.25 * wn[k]) @ Xn[k] / 5 for k in range(2)], axis=0)
    np.testing.assert_allclose(st.curvature, want)
    assert st.curvature_rows == 5


def test_statistics_streamed_from_files_equal_the_in_memory_ones(tmp_path: Path):
    """Reading the feature files one task at a time gives exactly the statistics of the stacked features."""
    X, y, w = _planted_features(n=4, N=60, d=5)
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"task_{i:03d}.npz")
        atomic_save_npz(paths[-1], features=X[i].numpy(), labels=y[i].numpy(), weights=w[i].numpy())
    streamed = statistics_of_files(paths, holdout_fraction=0.25, blocks=4)
    memory = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 45)), 45, blocks=4)
    for name, value in memory.arrays().items():
        np.testing.assert_array_equal(streamed.arrays()[name], value, err_msg=name)


@pytest.mark.parametrize("evaluation", ["in_sample", "held_out"])
def test_closed_form_is_the_all_subsets_limit_under_a_shared_curvature(evaluation: str):
    """With every task's curvature equal to the shared one, f^(S) is exactly quadratic in the subset, and the
    standardised closed form equals the standardised interaction U over all C(n, alpha) subsets (to rounding)."""
    X, y, w = _planted_features(n=8, N=300, d=6)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 200)), 200, per_task=True)
    st.H[:] = st.curvature
    st.held_H[:] = st.held_curvature
    subsets = [list(s) for s in itertools.combinations(range(8), 4)]
    res = newton_surrogate(st, subsets, l2=0.05)
    f = res.f_hat_in_sample if evaluation == "in_sample" else res.f_hat_held_out
    U_subsets = subset_affinity(subsets, f, 8, interaction=True)
    P = closed_form_affinity(st, 0.05, evaluation)
    np.testing.assert_allclose(standardize(P), standardize(U_subsets), atol=1e-8)


@pytest.mark.parametrize("first_order", [False, True])
def test_expected_affinity_is_the_brute_force_mean_over_subsets(first_order: bool):
    """E[f^(S) | i, j in S] in closed form equals the mean, over every subset of alpha tasks holding i and j, of the
    shared-curvature f0(S) (plus the first-order curvature term f1(S)) computed subset by subset from its
    definition, to rounding; additive parts included. Tasks' feature scales differ, so their curvatures do too."""
    rng = np.random.default_rng(4)
    n, N, d, alpha, l2 = 8, 300, 5, 4, 0.1
    X = torch.from_numpy((rng.normal(size=(n, N, d)) * np.linspace(0.5, 2.0, n)[:, None, None]).astype(np.float32))
    y = torch.from_numpy(np.where(rng.random((n, N)) < 0.6, 1.0, -1.0).astype(np.float32))
    w = torch.from_numpy(rng.uniform(0.0, 2.0, (n, N)).astype(np.float32))
    data = FeatureSet(X, y, w, N)
    st = compute_statistics(rows_of_feature_set(data), N, per_task=True)
    terms = curvature_terms(rows_of_feature_set(data), st, l2) if first_order else None
    A = np.linalg.inv(st.curvature + l2 * np.eye(d))
    R = A / 2 + l2 * A @ A

    def f(S: list[int]) -> float:
        b = st.b[S].mean(0)
        value = -st.c[S].mean() + b @ (A / 2 + l2 * A @ A / 2) @ b
        if first_order:
            value -= (A @ b) @ (st.H[S].mean(0) - st.curvature) @ (R @ b)
        return float(value)

    total, count = np.zeros((n, n)), np.zeros((n, n))
    for S in itertools.combinations(range(n), alpha):
        idx = np.ix_(S, S)
        total[idx] += f(list(S))
        count[idx] += 1
    brute = total / count
    np.fill_diagonal(brute, 0.0)
    np.testing.assert_allclose(expected_affinity(st, l2, alpha, terms), brute, atol=1e-12)
    # and the first-order term moves U: the curvatures differ
    if first_order:
        assert np.abs(standardize(brute) - standardize(expected_affinity(st, l2, alpha))).max() > 1e-3


def test_inclusion_probabilities_by_counting():
    """q_r: the share of alpha-subsets holding 0 and 1 that also hold tasks 2..r+1."""
    n, alpha = 9, 5
    holding = [set(S) for S in itertools.combinations(range(n), alpha) if {0, 1} <= set(S)]
    counted = [np.mean([set(range(2, 2 + r)) <= S for S in holding]) for r in (1, 2, 3)]
    np.testing.assert_allclose(inclusion(n, alpha), counted)


def test_newton_step_matches_the_exact_fits_near_theta_star():
    """At the default l2 the fitted v_S stay near 0, where the quadratic model holds: the Newton f^ ranks the
    subsets as the exact L-BFGS fits do, and the affinities agree."""
    X, y, w = _planted_features(n=8, N=1200, d=10)
    data = FeatureSet(X, y, w, 900)
    subsets = [list(s) for s in itertools.combinations(range(8), 4)]
    cfg = SurrogateConfig(l2=0.1)
    exact = run_surrogate(data, subsets, cfg)
    st = compute_statistics(rows_of_feature_set(data), 900, per_task=True)
    newton = run_newton(st, subsets, cfg)
    assert spearmanr(exact.f_hat, newton.f_hat)[0] > 0.999
    np.testing.assert_allclose(newton.loss_at_theta_star, exact.loss_at_theta_star, rtol=1e-10)
    U_e, U_n = (subset_affinity(subsets, r.f_hat, 8) for r in (exact, newton))
    assert standardized_corr(U_e, U_n) > 0.999
    assert standardized_corr(U_e, closed_form_affinity(st, 0.1)) > 0.99
    # held out: evaluated on the held-out statistics
    assert spearmanr(exact.f_hat_held_out, newton.f_hat_held_out)[0] > 0.99


def test_newton_drifts_from_the_exact_fits_far_from_theta_star():
    """The quadratic model is a local one: with almost no ridge on separable data, v_S runs far from 0 and the
    Newton f^ no longer reproduces the exact fits' values (the regime results/surrogate-reduction.md flags)."""
    X, y, w = _planted_features(n=6, N=400, d=8, signal=4.0)
    data = FeatureSet(X, y, w, 400)
    subsets = [list(s) for s in itertools.combinations(range(6), 3)]
    exact = run_surrogate(data, subsets, SurrogateConfig(l2=1e-4))
    stats = compute_statistics(rows_of_feature_set(data), 400, per_task=True)
    newton = run_newton(stats, subsets, SurrogateConfig(l2=1e-4))
    near = run_newton(stats, subsets, SurrogateConfig(l2=10.0))
    exact_near = run_surrogate(data, subsets, SurrogateConfig(l2=10.0))
    far_error = np.abs(newton.f_hat - exact.f_hat).max()
    near_error = np.abs(near.f_hat - exact_near.f_hat).max()
    assert far_error > 100 * near_error


def test_resolve_surrogate_by_number_of_tasks():
    assert resolve_surrogate("auto", 10) == "exact"
    assert resolve_surrogate("auto", 13) == "newton"
    assert resolve_surrogate("auto", 40) == "newton"
    assert resolve_surrogate("auto", 41) == "closed_form"
    assert resolve_surrogate("newton", 500) == "newton"
    with pytest.raises(PolicyGradExError, match="unknown surrogate method"):
        resolve_surrogate("fast", 10)


def test_newton_needs_per_task_curvatures():
    X, y, w = _planted_features(n=3, N=40, d=3)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 40)), 40)
    with pytest.raises(PolicyGradExError, match="per-task curvatures"):
        newton_surrogate(st, [[0, 1]], 0.1)


# ----------------------------------------------------------------------------------------------- confidence
def test_gradient_reliability_from_blocks_equals_the_feature_version():
    """Halves of the blocks are the time halves of the fitting rows (n_fit even, an even number of blocks), so the
    statistics give the same reliability as the stacked features."""
    X, y, w = _planted_features(n=6, N=640, d=8)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 640)), 640, blocks=32)
    assert gradient_reliability_from_blocks(st) == pytest.approx(gradient_reliability(X.numpy(), y.numpy(), w.numpy()), abs=1e-6)


def test_confidence_over_transitions_separates_structure_from_noise():
    """Planted gradient directions: both halves of the transitions give the same U (reliability near 1) and every
    planted group survives the block bootstrap; labels independent of the features: reliability near 0."""
    n = 12
    X, y, w = _planted_features(n=n, N=4096, d=8, groups=3, signal=0.5)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 4096)), 4096, blocks=16)
    truth = labels_from_groups([[i for i in range(n) if i % 3 == g] for g in range(3)], n)
    split = transition_split_half(st, 0.1, 4, splits=10)
    assert split is not None and split["reliability"] > 0.9
    boot = transition_bootstrap(st, 0.1, 4, truth, reps=10, method="sdp")
    assert boot["reps"] == 10 and min(boot["group_jaccard"]) == 1.0
    assert np.asarray(boot["coclustering"]).shape == (n, n)
    Xn, yn, wn = _planted_features(n=n, N=4096, d=8, signal=0.0, seed=1)
    noise = compute_statistics(rows_of_feature_set(FeatureSet(Xn, yn, wn, 4096)), 4096, blocks=16)
    split_noise = transition_split_half(noise, 0.1, 4, splits=10)
    assert split_noise is not None and split_noise["reliability"] < 0.5


def test_transition_bootstrap_is_seeded():
    X, y, w = _planted_features(n=9, N=512, d=6, signal=0.2)
    st = compute_statistics(rows_of_feature_set(FeatureSet(X, y, w, 512)), 512, blocks=8)
    labels = np.arange(9) % 3
    a = transition_bootstrap(st, 0.1, 4, labels, reps=5, seed=3, method="sdp")
    b = transition_bootstrap(st, 0.1, 4, labels, reps=5, seed=3, method="sdp")
    assert a["group_jaccard"] == b["group_jaccard"] and a["reps"] == b["reps"] == 5
    np.testing.assert_array_equal(a["coclustering"], b["coclustering"])


def _policy_tasks(n: int = 5, N: int = 120, seed: int = 0):
    """A perturbed small MLP policy and n tasks' random transitions and advantages."""
    import gymnasium as gym

    from policygradex.nets.base import make_network
    from policygradex.nets.config import NetworkConfig

    torch.manual_seed(seed)
    model = make_network(6, gym.spaces.Discrete(3), NetworkConfig(hidden_sizes=(16, 16)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("actor"):
                param.add_(0.3 * torch.randn_like(param))
    gen = torch.Generator().manual_seed(seed + 1)
    tasks = [(torch.randn(N, 6, generator=gen), torch.randint(0, 3, (N,), generator=gen),
              torch.randn(N, generator=gen, dtype=torch.float64).numpy()) for _ in range(n)]
    return model, tasks


@pytest.mark.parametrize("curvature_rows", [None, 20])
def test_statistics_store_equals_the_statistics_of_the_features(tmp_path: Path, curvature_rows):
    """--store statistics: per-task statistics from block backwards plus a curvature subsample, written in two
    blocks of tasks and merged, equal compute_statistics of the same transitions' per-transition features (all
    rows, or the same evenly spaced 20 rows per task for the curvature) to float rounding."""
    from policygradex.pipeline.config import FeatureConfig
    from policygradex.pipeline.features import feature_arrays, fit_rows
    from policygradex.pipeline.gradient_statistics import BlockStatistics, merge_block_statistics, task_statistics
    from policygradex.pipeline.projection import RandomProjection

    model, tasks = _policy_tasks()
    fc = FeatureConfig(transitions_per_task=120, holdout_fraction=0.25)
    p = sum(q.numel() for n, q in model.named_parameters() if n.startswith("actor"))
    proj = RandomProjection(p, 10, seed=2)
    n_fit = fit_rows(120, 0.25)
    rows = n_fit if curvature_rows is None else curvature_rows
    per_task = [task_statistics(model, o, a, adv, proj, fc, 8, rows) for o, a, adv in tasks]
    paths = [tmp_path / "b0.npz", tmp_path / "b1.npz"]
    for path, ids, returns in ((paths[0], range(0, 3), [1.0, None, 2.0]), (paths[1], range(3, 5), [3.0, 4.0])):
        block = BlockStatistics()
        for i, r in zip(ids, returns):
            block.add(i, per_task[i], r)
        block.save(path)
    got = merge_block_statistics(paths, 5)
    feats = [feature_arrays(model, o, a, adv, proj, fc) for o, a, adv in tasks]
    want = compute_statistics(((torch.from_numpy(f["features"]), torch.from_numpy(f["labels"]),
                                torch.from_numpy(f["weights"])) for f in feats), n_fit, 8, curvature_rows)
    assert got.rows == want.rows == n_fit and got.curvature_rows == want.curvature_rows == rows
    np.testing.assert_array_equal(got.block_rows, want.block_rows)
    for name in ("c", "b", "block_sums", "curvature", "held_c", "held_b"):
        a, b = getattr(got, name), getattr(want, name)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max(), err_msg=name)
    if curvature_rows is None:  # the held-out curvature from all held-out rows, as compute_statistics takes it
        np.testing.assert_allclose(got.held_curvature, want.held_curvature, rtol=1e-5)
    else:
        assert not np.allclose(got.curvature, compute_statistics(
            ((torch.from_numpy(f["features"]), torch.from_numpy(f["labels"]), torch.from_numpy(f["weights"]))
             for f in feats), n_fit, 8, None).curvature)


def test_split_sums_of_the_statistics_store_equal_the_halves_of_the_features(tmp_path: Path):
    """--baseline per_task: the statistics store's split_sums (one backward per half of the fitting rows, with the
    advantages of baselines fitted apart) are the gradient signal's two halves that the feature files give through
    their split labels and weights (1/2 of each half's sum per row), and they, not the joint fit's halves, are what
    the statistics hand to the reliability."""
    from policygradex.pipeline.config import FeatureConfig
    from policygradex.pipeline.confidence import gradient_halves, gradient_halves_from_blocks
    from policygradex.pipeline.features import feature_arrays, fit_rows
    from policygradex.pipeline.gradient_statistics import BlockStatistics, merge_block_statistics, task_statistics
    from policygradex.pipeline.projection import RandomProjection

    model, tasks = _policy_tasks()
    gen = np.random.default_rng(5)
    split = [gen.standard_normal(len(adv)) for _, _, adv in tasks]
    fc = FeatureConfig(transitions_per_task=120, holdout_fraction=0.25)
    p = sum(q.numel() for n, q in model.named_parameters() if n.startswith("actor"))
    proj = RandomProjection(p, 10, seed=2)
    n_fit = fit_rows(120, 0.25)
    block = BlockStatistics()
    for i, ((o, a, adv), s) in enumerate(zip(tasks, split)):
        block.add(i, task_statistics(model, o, a, adv, proj, fc, 8, 20, s), None)
    block.save(tmp_path / "b0.npz")
    stats = merge_block_statistics([tmp_path / "b0.npz"], len(tasks))
    feats = [feature_arrays(model, o, a, adv, proj, fc, s) for (o, a, adv), s in zip(tasks, split)]
    want = gradient_halves(*(np.stack([f[k][:n_fit] for f in feats]) for k in ("features", "split_labels",
                                                                                "split_weights")))
    got = gradient_halves_from_blocks(stats)
    assert stats.split_sums.shape == (len(tasks), 2, 10)
    for g, w, rows in zip(got, want, (n_fit // 2, n_fit - n_fit // 2)):
        np.testing.assert_allclose(2 * g / rows, w, rtol=1e-4, atol=1e-6 * np.abs(w).max())
    joint = gradient_halves(*(np.stack([f[k][:n_fit] for f in feats]) for k in ("features", "labels", "weights")))
    assert not np.allclose(want[0], joint[0])


def test_merged_statistics_refuse_missing_or_reordered_blocks(tmp_path: Path):
    from policygradex.pipeline.config import FeatureConfig
    from policygradex.pipeline.gradient_statistics import BlockStatistics, merge_block_statistics, task_statistics
    from policygradex.pipeline.projection import RandomProjection

    model, tasks = _policy_tasks(n=2, N=40)
    p = sum(q.numel() for n, q in model.named_parameters() if n.startswith("actor"))
    proj, fc = RandomProjection(p, 6, seed=2), FeatureConfig(transitions_per_task=40)
    per_task = [task_statistics(model, o, a, adv, proj, fc, 4, 10) for o, a, adv in tasks]
    for i in range(2):
        block = BlockStatistics()
        block.add(i, per_task[i], None)
        block.save(tmp_path / f"b{i}.npz")
    with pytest.raises(PolicyGradExError, match="do not cover tasks"):
        merge_block_statistics([tmp_path / "b1.npz", tmp_path / "b0.npz"], 2)
    atomic_save_npz(tmp_path / "bad.npz", c=np.zeros(1))
    with pytest.raises(PolicyGradExError, match="not a block statistics file"):
        merge_block_statistics([tmp_path / "bad.npz"], 1)


def test_store_resolution_and_curvature_rows():
    """auto stores statistics exactly where the closed form with a shared curvature runs; the curvature subsample
    spreads CURVATURE_TOTAL_ROWS over the tasks, at least CURVATURE_MIN_ROWS each, at most the task's rows."""
    from dataclasses import replace

    from policygradex.pipeline.config import RunConfig
    from policygradex.pipeline.gradient_statistics import (
        CURVATURE_MIN_ROWS,
        CURVATURE_TOTAL_ROWS,
        auto_curvature_rows,
        resolve_store,
        statistics_refusal,
    )

    cfg = RunConfig()
    assert resolve_store(cfg, 10) == "features" and resolve_store(cfg, 40) == "features"
    assert resolve_store(cfg, 41) == "statistics"
    closed = replace(cfg, surrogate=replace(cfg.surrogate, method="closed_form"))
    assert resolve_store(closed, 10) == "statistics"
    first = replace(closed, surrogate=replace(closed.surrogate, curvature="first_order"))
    assert resolve_store(first, 100) == "features" and "--curvature shared" in statistics_refusal(first, 100)
    batch = replace(closed, features=replace(cfg.features, advantage_normalization="batch", task_block=64))
    assert resolve_store(batch, 64) == "statistics" and resolve_store(batch, 65) == "features"
    assert "closed-form" in statistics_refusal(cfg, 10)
    assert auto_curvature_rows(100, 12288, None) == math.ceil(CURVATURE_TOTAL_ROWS / 100)
    assert auto_curvature_rows(10**6, 12288, None) == CURVATURE_MIN_ROWS
    assert auto_curvature_rows(2, 500, None) == 500 and auto_curvature_rows(100, 500, 7) == 7
