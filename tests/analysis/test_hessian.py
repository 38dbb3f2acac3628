"""Hessian-vector products and trace / eigenvalue estimators against the exact Hessian of a small policy."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from policygradex.analysis.hessian import (
    Batch,
    exact_hessian,
    hutchinson,
    hutchpp,
    make_hvp,
    ppo_loss_fn,
    top_eigenvalue,
)
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig


def _problem(discrete: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,))
    model = make_network(5, space, NetworkConfig(hidden_sizes=(6, 6)))
    for prm in model.parameters():  # move off the tiny-output initialisation so curvature is not negligible
        prm.data += 0.3 * torch.randn_like(prm)
    obs = torch.randn(64, 5)
    with torch.no_grad():
        actions, _, _, _ = model.get_action_and_value(obs)
        logp = model(obs, actions)
    batch = Batch(obs, actions, logp + 0.05 * torch.randn(64), torch.randn(64))  # r != 1: clipping matters
    loss, theta = ppo_loss_fn(model, batch, clip_coef=0.2)
    return loss, theta, exact_hessian(loss, theta)


@pytest.mark.parametrize("discrete", [True, False])
def test_hvp_equals_exact_hessian_times_vector(discrete: bool) -> None:
    loss, theta, H = _problem(discrete)
    hvp = make_hvp(loss, theta)
    v = torch.randn(theta.numel(), dtype=torch.float64)
    assert torch.allclose(hvp(v), H @ v, atol=1e-10, rtol=1e-8)
    assert torch.allclose(H, H.T, atol=1e-10)


def test_hutchinson_is_unbiased_within_its_standard_error() -> None:
    loss, theta, H = _problem()
    exact = float(torch.trace(H))
    est = hutchinson(make_hvp(loss, theta), theta.numel(), num_probes=400, seed=1)
    assert est.num_hvps == 400 and est.stderr > 0
    assert abs(est.trace - exact) < 4 * est.stderr
    # the standard error matches the spread of independent estimates
    spread = np.std([hutchinson(make_hvp(loss, theta), theta.numel(), 50, seed=s).trace for s in range(30)])
    single = hutchinson(make_hvp(loss, theta), theta.numel(), 50, seed=99).stderr
    assert 0.5 < spread / single < 2.0


def test_hutchpp_is_exact_once_the_sketch_spans_the_space() -> None:
    loss, theta, H = _problem()
    p = theta.numel()
    exact = float(torch.trace(H))
    full = hutchpp(make_hvp(loss, theta), p, num_probes=3 * p, seed=0)
    assert full.trace == pytest.approx(exact, rel=1e-8, abs=1e-10)



def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum() -> None:
    """Hutch++'s point (Meyer et al. 2021): with a few dominant eigenvalues, equal HVP budgets, far less error."""
    p = 80
    gen = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    A = Q @ torch.diag(1.0 / torch.arange(1, p + 1, dtype=torch.float64) ** 2) @ Q.T
    exact = float(torch.trace(A))
    err_h = np.mean([abs(hutchinson(lambda v: A @ v, p, 30, seed=s).trace - exact) for s in range(20)])
    err_pp = np.mean([abs(hutchpp(lambda v: A @ v, p, 30, seed=s).trace - exact) for s in range(20)])
    assert err_pp < 0.3 * err_h


def test_top_eigenvalue_matches_dense_eigendecomposition() -> None:
    loss, theta, H = _problem(discrete=False)
    expected = float(torch.linalg.eigvalsh(H).max())
    assert top_eigenvalue(make_hvp(loss, theta), theta.numel()) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_hessian_command_end_to_end(tiny_run, tmp_path, cli) -> None:
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rc, out, err = cli("hessian", run, "--iterations", "2", "--every", "1", "--num-steps", "32", "--envs-per-task",
                       "1", "--probes", "6", "--slq-probes", "2", "--slq-steps", "4", "--alphas", "1,2",
                       "--block-len", "8", "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "hessian" / "hessian.json").read_text())
    labels = [r["config"] for r in record["summary"]]
    assert "multitask (all)" in labels and "alpha=2" in labels and any(x.startswith("group") for x in labels)
    for rows in record["curves"].values():
        assert [r["iteration"] for r in rows] == [1, 2]
        for r in rows:
            assert r["C"] > 0 and r["bound"] >= 0 and np.isfinite(r["trace"]) and r["trace_positive"] >= 0
            assert r["weighted"] >= 0 and r["weighted_from_init"] >= 0
            # the default bound is Theorem 1's sqrt(C H / n) with H = W^T H+ W; the other two are reported beside it
            assert r["bound"] == pytest.approx(np.sqrt(r["C"] * r["weighted"] / r["n"]))
            assert r["bounds"]["trace"] == pytest.approx(np.sqrt(r["C"] * r["trace_positive"] / r["n"]))
            assert r["bounds"]["weighted_from_init"] == pytest.approx(np.sqrt(r["C"] * r["weighted_from_init"] / r["n"]))
            assert r["gap"] == pytest.approx(r["test_loss"] - r["train_loss"])
            assert r["gap_stderr"] > 0
        assert "top_eigenvalue" in rows[-1]
    for name in ("hessian.md", "hessian_curves.png", "hessian_alpha.png"):
        assert (run / "hessian" / name).exists()
    assert "| multitask (all) |" in out and "W^T H+ W" in out
    first = record["curves"]["multitask (all)"][0]
    assert first["weighted_from_init"] < first["weighted"]  # one update from W0 moves W far less than ||W||


def test_bad_bound_measure_is_a_one_line_error(tiny_run, tmp_path, cli) -> None:
    rc, _, err = cli("hessian", tiny_run, "--bound-measure", "sharpness")
    assert rc == 2 and "invalid choice" in err


def test_positive_trace_by_lanczos_quadrature_matches_the_positive_eigenvalues() -> None:
    from policygradex.analysis.hessian import positive_trace

    p = 40
    gen = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=torch.float64))
    eig = torch.linspace(-2.0, 1.0, p, dtype=torch.float64)  # indefinite: tr(H) < 0 < tr(H^+)
    A = Q @ torch.diag(eig) @ Q.T
    exact = float(eig.clamp_min(0).sum())
    # with a full Krylov space the quadrature is exact per probe: only the probe noise remains
    est = positive_trace(lambda v: A @ v, p, num_probes=300, lanczos_steps=p, seed=0)
    assert abs(est.trace - exact) < 4 * est.stderr
    # a few steps already do well on the policy-loss Hessian of a small network
    loss, theta, H = _problem()
    ev = torch.linalg.eigvalsh(H)
    exact = float(ev.clamp_min(0).sum())
    est = positive_trace(make_hvp(loss, theta), theta.numel(), num_probes=200, lanczos_steps=20, seed=0)
    assert abs(est.trace - exact) < 4 * est.stderr + 0.02 * exact


def test_positive_quadratic_form_matches_the_dense_positive_part() -> None:
    """w^T H+ w, H+ = H with negative eigenvalues zeroed: exact with a full Krylov space, close with a few steps."""
    from policygradex.analysis.hessian import positive_quadratic_form

    loss, theta, H = _problem()
    ev, Q = torch.linalg.eigh(H)
    H_plus = Q @ torch.diag(ev.clamp_min(0)) @ Q.T
    hvp = make_hvp(loss, theta)
    for w in (theta, torch.randn(theta.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(3))):
        exact = float(w @ H_plus @ w)
        assert exact > 0 and float(w @ H @ w) != pytest.approx(exact)  # truncation matters on this H
        assert positive_quadratic_form(hvp, w, lanczos_steps=theta.numel()) == pytest.approx(exact, rel=1e-6)
        assert positive_quadratic_form(hvp, w, lanczos_steps=30) == pytest.approx(exact, rel=0.05)
    assert positive_quadratic_form(hvp, torch.zeros_like(theta)) == 0.0
    # on a PSD matrix it is the plain quadratic form
    A = H @ H
    w = theta
    assert positive_quadratic_form(lambda v: A @ v, w, lanczos_steps=theta.numel()) == pytest.approx(float(w @ A @ w), rel=1e-6)


def test_batch_means_stderr_is_calibrated_on_correlated_transitions() -> None:
    """Equal blocks: the textbook std(block means) / sqrt(B). Values correlated within blocks: the standard error
    matches the real spread of the mean over repetitions, where the i.i.d. formula is far too small."""
    from policygradex.analysis.generalization import batch_means_stderr

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40 * 16, generator=gen, dtype=torch.float64)
    blocks = torch.arange(40 * 16) // 16
    means = x.reshape(40, 16).mean(1)
    assert batch_means_stderr(x, blocks) == pytest.approx(float(means.std() / np.sqrt(40)), rel=1e-10)
    assert np.isnan(batch_means_stderr(x, torch.zeros_like(blocks)))

    from scipy.signal import lfilter

    def ar1(n: int, phi: float) -> torch.Tensor:  # x_t = phi x_{t-1} + e_t: autocorrelated, like losses along an episode
        e = torch.randn(n, generator=gen, dtype=torch.float64).numpy()
        return torch.from_numpy(lfilter([1.0], [1.0, -phi], e))

    n, block = 2048, 64
    ids = torch.arange(n) // block
    runs = [ar1(n, 0.9) for _ in range(200)]
    spread = float(np.std([float(r.mean()) for r in runs]))
    est = float(np.mean([batch_means_stderr(r, ids) for r in runs]))
    iid = float(np.mean([float(r.std() / np.sqrt(n)) for r in runs]))
    assert 0.75 < est / spread < 1.25 and iid / spread < 0.5
