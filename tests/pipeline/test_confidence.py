"""How sure the groups are: bootstrap over subsets, gradient reliability over transitions, the verdict."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from policygradex.pipeline.confidence import stability_word, bootstrap_groups, gradient_reliability, verdict
from policygradex.pipeline.surrogate import sample_subsets

N_TASKS = 9
BLOCKS = np.arange(N_TASKS) % 3


def _f(noise: float, seed: int) -> tuple[list[list[int]], np.ndarray]:
    """f(S) = same-block pairs in S + per-task effects + noise, over 100 of the C(9, 4) subsets."""
    rng = np.random.default_rng(seed)
    subsets = sample_subsets(N_TASKS, 4, 100, seed=seed).subsets
    a = rng.normal(size=N_TASKS) * 10
    pair = np.array([sum(BLOCKS[i] == BLOCKS[j] for i, j in itertools.combinations(s, 2)) for s in subsets], float)
    f = pair + np.array([a[s].sum() for s in subsets]) + noise * rng.normal(size=len(subsets))
    return subsets, f


def test_bootstrap_keeps_planted_groups_and_dissolves_noise():
    """Clear planted structure: every group is found in (almost) every resample (Jaccard ~1, co-clustering 1 within
    groups). Pure noise with the same arbitrary groups: the groups dissolve (mean Jaccard well below 0.75)."""
    subsets, f = _f(noise=0.2, seed=0)
    out = bootstrap_groups(subsets, f, N_TASKS, BLOCKS, reps=40, seed=0)
    assert out["reps"] == 40 and min(out["group_jaccard"]) > 0.95
    C = np.array(out["coclustering"])
    same = BLOCKS[:, None] == BLOCKS[None, :]
    assert C[same].min() > 0.95 and C[~same].max() < 0.05
    noise = np.random.default_rng(1).normal(size=len(subsets))
    out = bootstrap_groups(subsets, noise, N_TASKS, BLOCKS, reps=40, seed=0)
    assert np.mean(out["group_jaccard"]) < 0.6


def test_gradient_reliability_separates_signal_from_noise():
    """Features whose advantage-weighted means follow 3 task groups are reliable across time halves; features of
    pure noise are not (reliability near 0)."""
    rng = np.random.default_rng(0)
    n, N, d = 9, 4000, 20
    centres = rng.normal(size=(3, d))
    labels = np.ones((n, N))
    weights = np.ones((n, N))
    signal = centres[BLOCKS][:, None, :] * 0.2 + rng.normal(size=(n, N, d))
    noise = rng.normal(size=(n, N, d))
    assert gradient_reliability(signal, labels, weights) > 0.9
    assert abs(gradient_reliability(noise, labels, weights)) < 0.5


def test_verdict_words():
    assert verdict([0.9, 0.8, 0.95], 0.9, 0.9).startswith("Stable")
    assert verdict([0.9, 0.8, 0.95], 0.9, 0.1).startswith("Not distinguishable from noise")
    assert "raise --transitions" in verdict([0.9, 0.8, 0.95], 0.9, 0.1)
    assert "raise --num-subsets" in verdict([0.9, 0.8, 0.95], 0.1, 0.9)
    assert verdict([0.4, 0.3, 0.5], 0.9, 0.9).startswith("Not distinguishable")
    assert verdict([0.9, 0.55, 0.7], 0.9, 0.9).startswith("Partly stable")
    # the sentence must use the same thresholds as the per-group words: 0.7 is a pattern, 0.55 is weak
    partly = verdict([0.9, 0.55, 0.7], 0.9, 0.9)
    assert "below 0.75 are patterns at best" in partly and "below 0.6: weak" in partly
    assert (stability_word(0.7), stability_word(0.55)) == ("pattern", "weak")


def test_task_signal_separates_reproducible_directions_from_noise():
    """A task whose own direction (beyond what all tasks share) is the same in both halves scores ~1; one whose
    halves are independent noise around the shared direction scores ~0, however large the shared part."""
    from policygradex.pipeline.confidence import task_signal

    rng = np.random.default_rng(0)
    n, d = 8, 50
    shared = 100.0 * rng.normal(size=d)
    own = rng.normal(size=(n, d))
    first = shared + own + 0.05 * rng.normal(size=(n, d))
    second = shared + own + 0.05 * rng.normal(size=(n, d))
    second[:4] = shared + rng.normal(size=(4, d))  # tasks 0-3: their own part is fresh noise in the second half
    first[:4] = shared + rng.normal(size=(4, d))
    s = task_signal(first, second)
    assert s[4:].min() > 0.95 and np.abs(s[:4]).max() < 0.6 and s[:4].mean() < 0.3
    np.testing.assert_allclose(task_signal(first, first), 1.0)


def test_noise_verdict_takes_the_stable_word_away():
    """When the verdict finds no signal, no group is called stable, however high its Jaccard."""
    from policygradex.pipeline.confidence import is_noise
    from policygradex.pipeline.group_record import Confidence

    jac = (0.9, 0.8)
    for grad, split, noisy in ((0.2, 0.9, True), (0.9, 0.1, True), (0.9, 0.9, False)):
        assert is_noise(jac, split, grad) is noisy
        assert verdict(list(jac), split, grad).startswith("Not distinguishable") is noisy
        conf = Confidence(verdict(list(jac), split, grad), grad, split, "subsets", 10, jac, noise=is_noise(jac, split, grad))
        assert [conf.word(g) for g in range(2)] == (["noise"] * 2 if noisy else ["stable", "stable"])


def test_per_task_reliability_is_that_of_halves_fitted_apart(tmp_path):
    """--baseline per_task: the run's gradient signal reliability is that of each half's advantages from its own
    baseline fit (the feature files' split labels and weights), not the joint fit's, which shares its error between
    the halves; --store statistics (split_sums from one backward per half) reports the same number."""
    import json

    from policygradex.cli.main import main
    from policygradex.pipeline.config import RunConfig
    from policygradex.pipeline.features import feature_set
    from policygradex.pipeline.group_record import Groups
    from tests.helpers import tiny_run_args

    reliability = {}
    for store in ("features", "statistics"):
        out = tmp_path / store
        assert main(tiny_run_args(out, "planted(n=10,groups=2)", "--k", "2", "--baseline", "per_task",
                                  "--surrogate", "closed_form", "--store", store,
                                  "--expansion-points", "1")) == 0  # theta_star's reliability alone
        reliability[store] = Groups.load(out / "groups.json", 10).confidence.gradient_reliability
    cfg = RunConfig.from_dict(json.loads((tmp_path / "features" / "config.json").read_text())["config"])
    paths = sorted((tmp_path / "features" / "features").glob("task_*.npz"))
    data = feature_set([dict(np.load(p)) for p in paths], cfg.features.holdout_fraction, paths)
    X = data.features[:, :data.n_fit].numpy()
    split = gradient_reliability(X, *(a[:, :data.n_fit].numpy() for a in (data.split_labels, data.split_weights)))
    joint = gradient_reliability(X, *(a[:, :data.n_fit].numpy() for a in (data.labels, data.weights)))
    assert reliability["features"] == pytest.approx(split, abs=1e-6)
    assert reliability["statistics"] == pytest.approx(split, abs=1e-3)
    assert abs(joint - split) > 1e-2
