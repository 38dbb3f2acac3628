"""Per-transition policy gradients and the seeded block-wise random projection P."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig
from policygradex.pipeline.config import FeatureConfig
from policygradex.pipeline.gradients import loop_grads, per_sample_grad_fn, projected_gradients
from policygradex.pipeline.projection import RandomProjection

OBS_DIM = 7
SPACES = {"discrete": gym.spaces.Discrete(3), "gaussian": gym.spaces.Box(-1.0, 1.0, (2,))}


def _model_and_batch(kind: str, batch: int = 12, seed: int = 0):
    torch.manual_seed(seed)
    space = SPACES[kind]
    model = make_network(OBS_DIM, space, NetworkConfig(hidden_sizes=(16, 16, 16)))
    with torch.no_grad():  # move away from the near-uniform initial policy so the gradients are not tiny
        for name, param in model.named_parameters():
            if name.startswith("actor"):
                param.add_(0.3 * torch.randn_like(param))
    gen = torch.Generator().manual_seed(seed + 1)
    obs = torch.randn(batch, OBS_DIM, generator=gen)
    if kind == "discrete":
        actions = torch.randint(0, 3, (batch,), generator=gen)
    else:
        actions = torch.rand(batch, 2, generator=gen) * 2 - 1
    return model, obs, actions


def _assembled(proj: RandomProjection) -> torch.Tensor:
    return torch.cat([proj.block(b) for b in range(proj.num_blocks)])


@pytest.mark.parametrize("kind", ["discrete", "gaussian"])
def test_vmap_per_sample_grads_equal_autograd_loop(kind):
    """The vmap gradients g_t = grad log pi(a_t|s_t) equal one-at-a-time autograd, for both action heads."""
    model, obs, actions = _model_and_batch(kind)
    fn, p = per_sample_grad_fn(model)
    fast = fn(obs, actions)
    slow = loop_grads(model, obs, actions)
    n_policy = sum(prm.numel() for name, prm in model.named_parameters() if name in model.policy_parameter_names())
    assert p == n_policy
    assert fast.shape == slow.shape == (len(obs), p)
    assert slow.abs().max() > 1e-2  # non-trivial gradients
    # rows differ between transitions: these are per-sample gradients, not a batch mean repeated
    assert not torch.allclose(fast[0], fast[1])
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["discrete", "gaussian"])
def test_features_are_actor_gradients_only(kind):
    """Critic parameters are never part of theta; the Gaussian head's log-std is."""
    model, _, _ = _model_and_batch(kind)
    names = model.policy_parameter_names()
    assert names and all(not n.startswith("critic") for n in names)
    all_names = [n for n, _ in model.named_parameters()]
    assert {n for n in all_names if n.startswith("critic")}, "the model should have a critic"
    assert set(names) == {n for n in all_names if not n.startswith("critic")}
    assert ("actor_logstd" in names) == (kind == "gaussian")


def test_gaussian_log_prob_matches_torch_normal():
    """forward(obs, action) is the log density summed over action dimensions."""
    model, obs, actions = _model_and_batch("gaussian")
    with torch.no_grad():
        expected = model.distribution(obs).log_prob(actions).sum(-1)
        torch.testing.assert_close(model(obs, actions), expected, rtol=1e-5, atol=1e-5)


def test_projection_is_reproducible_from_seed():
    """The same seed regenerates the same P; another seed gives a different one."""
    p, d = 300, 16
    eye = torch.eye(p)
    a = RandomProjection(p, d, seed=5, block_rows=64).project(eye)
    b = RandomProjection(p, d, seed=5, block_rows=64).project(eye)
    c = RandomProjection(p, d, seed=6, block_rows=64).project(eye)
    assert a.shape == (p, d)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # project(I) is P itself, entries N(0, 1/d)
    assert abs(float(a.var()) * d - 1.0) < 0.15


def test_projection_preserves_inner_products():
    """Johnson-Lindenstrauss: with d = 400, <Px, Py> stays within 0.35 ||x|| ||y|| of <x, y>, norms within 25%."""
    p, d = 5000, 400
    gen = torch.Generator().manual_seed(123)
    base = torch.randn(10, p, generator=gen, dtype=torch.float64)
    # half independent vectors, half strongly correlated with them (large inner products)
    X = torch.cat([base, base + 0.5 * torch.randn(10, p, generator=gen, dtype=torch.float64)])
    proj = RandomProjection(p, d, seed=0, block_rows=1024)
    Y = proj.project(X)
    assert Y.shape == (20, d) and Y.dtype == torch.float64
    norms = X.norm(dim=1)
    rel_err = (Y @ Y.T - X @ X.T).abs() / torch.outer(norms, norms)
    assert float(rel_err.max()) <= 0.35
    ratio = Y.norm(dim=1) / norms
    assert float(ratio.min()) >= 0.75 and float(ratio.max()) <= 1.25


def test_lift_is_P_times_v():
    """lift(v) is the parameter-space update P v with P assembled from its blocks."""
    p, d = 1000, 24
    proj = RandomProjection(p, d, seed=3, block_rows=128)
    assert proj.num_blocks == 8  # the last block is partial (1000 = 7 * 128 + 104)
    P = _assembled(proj)
    assert P.shape == (p, d)
    v = torch.randn(d, generator=torch.Generator().manual_seed(0))
    lifted = proj.lift(v)
    assert lifted.shape == (p,)
    torch.testing.assert_close(lifted, P @ v, rtol=1e-5, atol=1e-6)


def test_project_with_several_blocks_and_without_cache():
    """project(G) = G P over many blocks, and regenerating blocks (cache_mb=0) gives the same result."""
    p, d = 1000, 24
    gen = torch.Generator().manual_seed(1)
    G = torch.randn(9, p, generator=gen)
    cached = RandomProjection(p, d, seed=3, block_rows=128)
    uncached = RandomProjection(p, d, seed=3, block_rows=128, cache_mb=0)
    out = cached.project(G)
    torch.testing.assert_close(out, G @ _assembled(cached), rtol=1e-5, atol=1e-5)
    again = uncached.project(G)
    assert uncached._cache == {}  # nothing kept: blocks really were regenerated
    assert torch.equal(again, out)
    assert torch.equal(cached.project(G), out)  # second pass, from the cache


def test_projected_gradients_equal_loop_grads_times_P():
    """Stage-2 features are exactly (per-sample gradients) @ P, whatever the chunking."""
    model, obs, actions = _model_and_batch("discrete", batch=13)
    _, p = per_sample_grad_fn(model)
    proj = RandomProjection(p, 20, seed=11, block_rows=100)
    assert proj.num_blocks > 1
    cfg = FeatureConfig(grad_chunk=3, project_rows=5)  # chunks and project buffers that do not divide 13
    feats = projected_gradients(model, obs, actions, proj, cfg)
    expected = loop_grads(model, obs, actions).detach() @ _assembled(proj)
    assert feats.shape == (13, 20)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)


def test_the_one_feature_builder_gives_the_stage_s_features(tiny_run):
    """`build_feature_set`, which stability, ground-truth's cost measure and the benchmarks use, gives exactly the
    surrogate data the run's feature stage stored, from the run's seed and theta_star: the analysis commands see the
    run's features, not a re-implementation of them."""
    from policygradex.common.artifacts import load_json, load_npz, load_torch
    from policygradex.common.threads import thread_limit
    from policygradex.envs.registry import load_family
    from policygradex.pipeline.config import RunConfig
    from policygradex.pipeline.features import (
        build_feature_set,
        feature_set,
        projection_for,
        run_transitions,
    )
    from policygradex.pipeline.rundir import RunDir
    from policygradex.pipeline.stages import make_model

    rd = RunDir(tiny_run)
    cfg = RunConfig.from_dict(load_json(rd.config)["config"])
    family = load_family(cfg.family)
    model = make_model(cfg, family)
    model.load_state_dict(load_torch(rd.theta_star)["state_dict"])
    paths = [rd.task_features(i) for i in range(family.n)]
    stored = feature_set([load_npz(p) for p in paths], cfg.features.holdout_fraction, paths)
    with thread_limit(1):  # as the run computed them
        transitions = run_transitions(cfg, family, model)
        rebuilt = build_feature_set(model, transitions, projection_for(cfg, model), cfg.features)
    assert rebuilt.n_fit == stored.n_fit
    for name in ("features", "labels", "weights"):
        assert torch.equal(getattr(rebuilt, name), getattr(stored, name)), name


# ----------------------------------------------------------------------------------------------- factorised (LoGra)
@pytest.mark.parametrize("kind", ["discrete", "gaussian"])
def test_factorised_features_equal_the_factorised_map_of_full_gradients(kind):
    """One batched backward with hooks gives, transition by transition, the factorised projection of that
    transition's full gradient (computed by the per-sample loop): the outer-product identity of linear layers.
    The Gaussian policy's log-std (outside any linear layer) goes through the dense rest."""
    from policygradex.pipeline.gradients import factorised_gradients
    from policygradex.pipeline.projection import factorised_projection

    model, obs, actions = _model_and_batch(kind)
    proj = factorised_projection(model, 64, seed=3)
    assert len(proj.blocks) == 4 and (proj.rest != []) == (kind == "gaussian")
    assert proj.d <= 64 and proj.p == sum(p.numel() for n, p in model.named_parameters() if n.startswith("actor"))
    full = loop_grads(model, obs, actions).to(torch.float64)
    expected = proj.project(full)
    got = factorised_gradients(model, obs, actions, proj).to(torch.float64)
    assert got.shape == (12, proj.d)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    fc = FeatureConfig(projection="factorised", project_rows=5)  # the stage's entry point, in chunks of 5 rows
    torch.testing.assert_close(projected_gradients(model, obs, actions, proj, fc).to(torch.float64), expected,
                               rtol=1e-4, atol=1e-5)


def test_factorised_lift_is_the_adjoint_and_inner_products_are_unbiased():
    """<project(g), v> = <g, lift(v)> for any g, v (lift is the transpose, so theta_star + lift(v) is the update the
    surrogate's v stands for); over 300 seeds, the mean of <Pg, Pg'> is <g, g'> within 4 standard errors."""
    from policygradex.pipeline.projection import factorised_projection

    model, obs, actions = _model_and_batch("discrete")
    g = loop_grads(model, obs, actions).to(torch.float64)
    proj = factorised_projection(model, 100, seed=0)
    v = torch.randn(proj.d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(proj.project(g) @ v, g @ proj.lift(v), rtol=1e-9, atol=1e-9)
    V = torch.randn(proj.d, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(proj.lift(V), torch.stack([proj.lift(V[:, j]) for j in range(3)], dim=1))
    true = g[:4] @ g[:4].T
    draws = torch.stack([(lambda Y: Y @ Y.T)(factorised_projection(model, 100, seed=s).project(g[:4]))
                         for s in range(300)])
    se = draws.std(0) / 300 ** 0.5
    assert float(((draws.mean(0) - true).abs() / se).max()) < 4.0  # unbiased: within 4 standard errors


@pytest.mark.parametrize("projection", ["dense", "factorised"])
@pytest.mark.parametrize("kind", ["discrete", "gaussian"])
def test_block_sums_are_projections_of_one_weighted_backward(kind, projection):
    """--store statistics: the sum over a block of rows of z_t g~_t is the projection of one backward of
    sum_t z_t log pi(a_t|s_t), for both projections; checked against the per-sample loop's gradients."""
    from policygradex.pipeline.gradient_statistics import weighted_gradient_sums
    from policygradex.pipeline.projection import factorised_projection

    model, obs, actions = _model_and_batch(kind, batch=20)
    p = sum(q.numel() for n, q in model.named_parameters() if n.startswith("actor"))
    proj = RandomProjection(p, 24, seed=5) if projection == "dense" else factorised_projection(model, 64, seed=5)
    z = torch.randn(20, generator=torch.Generator().manual_seed(7))
    bounds = np.array([0, 3, 11, 20])
    got = weighted_gradient_sums(model, obs, actions, z, bounds, proj)
    per_sample = proj.project(loop_grads(model, obs, actions).to(torch.float64)).numpy()
    expected = np.stack([(z[lo:hi].double().numpy()[:, None] * per_sample[lo:hi]).sum(0)
                         for lo, hi in zip(bounds[:-1], bounds[1:])])
    assert got.shape == (3, proj.d)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
