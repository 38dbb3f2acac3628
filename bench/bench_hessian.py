"""Benchmark of the Hessian machinery on the PPO loss of a policy: HVP cost and trace-estimator accuracy.

1. Hessian-vector products: forward-over-reverse (``torch.func.jvp`` of ``grad``, what policygradex uses) against
   reverse-over-reverse (``torch.autograd.grad`` twice, with ``create_graph=True``), on the same loss and vectors.
2. Trace estimators at equal HVP budgets: Hutch++ against Hutchinson, error against the exact trace of a small
   network (whose full Hessian fits in memory), over independent seeds.

    python bench/bench_hessian.py --out results/bench_hessian.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from policygradex.analysis.hessian import (
    Batch,
    exact_hessian,
    hutchinson,
    hutchpp,
    make_hvp,
    positive_quadratic_form,
    positive_trace,
    ppo_loss_fn,
)
from policygradex.nets.base import make_network
from policygradex.nets.config import NetworkConfig


def problem(hidden: tuple[int, ...], batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = make_network(14, gym.spaces.Discrete(2), NetworkConfig(hidden_sizes=hidden))
    obs = torch.randn(batch, 14)
    with torch.no_grad():
        actions, _, _, _ = model.get_action_and_value(obs)
        logp = model(obs, actions)
    return ppo_loss_fn(model, Batch(obs, actions, logp + 0.05 * torch.randn(batch), torch.randn(batch)))


def double_backward_hvp(loss, theta: torch.Tensor):
    def hvp(v: torch.Tensor) -> torch.Tensor:
        x = theta.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
        (hv,) = torch.autograd.grad(g @ v, x)
        return hv

    return hvp


def timed(fn, v: torch.Tensor, repeats: int) -> float:
    fn(v)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(v)
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("results/bench_hessian.md"))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import platform
    import time as _time

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    lines = ["# Hessian benchmark", "", f"Command: `python bench/bench_hessian.py --out {args.out}` (1 torch thread).", "",
             f"Machine: {cpu}, {len(__import__('os').sched_getaffinity(0))} cores; torch {torch.__version__}, "
             f"python {platform.python_version()}; {_time.strftime('%Y-%m-%d %H:%M UTC', _time.gmtime())}.", "",
             "## Hessian-vector products of the PPO loss", "",
             "| network | batch | p | forward-over-reverse | reverse-over-reverse (double backward) | ratio |",
             "|---|---|---|---|---|---|"]
    for hidden, batch in [((64, 64, 64), 2048), ((64, 64, 64), 20480), ((256, 256, 256), 2048)]:
        loss, theta = problem(hidden, batch)
        v = torch.randn(theta.numel(), dtype=theta.dtype)
        fwd = make_hvp(loss, theta)
        rev = double_backward_hvp(loss, theta)
        assert torch.allclose(fwd(v), rev(v), rtol=1e-6, atol=1e-9)
        t_fwd, t_rev = timed(fwd, v, args.repeats), timed(rev, v, args.repeats)
        lines.append(f"| {'x'.join(map(str, hidden))} MLP | {batch} | {theta.numel()} | {1e3 * t_fwd:.1f} ms | "
                     f"{1e3 * t_rev:.1f} ms | {t_rev / t_fwd:.2f}x |")
        print(lines[-1], file=sys.stderr)

    loss, theta = problem((12, 12), 256)
    H = exact_hessian(loss, theta)
    ev = torch.linalg.eigvalsh(H)
    exact, exact_pos = float(ev.sum()), float(ev.clamp_min(0).sum())
    hvp = make_hvp(loss, theta)
    p = theta.numel()
    lines += ["", f"## Trace estimators at equal budgets (small network, p = {p}; exact tr(H) = {exact:.4f}, "
              f"tr(H+) = {exact_pos:.4f})", "",
              "| HVPs | Hutchinson mean abs error | Hutch++ mean abs error | ratio | tr(H+) by Lanczos quadrature: mean abs error |",
              "|---|---|---|---|---|"]
    for budget in (30, 60, 120):
        err_h = np.mean([abs(hutchinson(hvp, p, budget, seed=s).trace - exact) for s in range(20)])
        err_pp = np.mean([abs(hutchpp(hvp, p, budget, seed=s).trace - exact) for s in range(20)])
        err_pos = np.mean([abs(positive_trace(hvp, p, max(1, budget // 10), 10, seed=s).trace - exact_pos)
                           for s in range(20)])
        lines.append(f"| {budget} | {err_h:.4f} | {err_pp:.4f} | {err_h / err_pp:.2f}x | {err_pos:.4f} |")
        print(lines[-1], file=sys.stderr)
    Q = torch.linalg.eigh(H).eigenvectors
    H_plus = Q @ torch.diag(ev.clamp_min(0)) @ Q.T
    exact_w = float(theta @ H_plus @ theta)
    lines += ["", f"W^T H+ W (Theorem 1's H at the current W) by Lanczos quadrature from W, against the dense value "
              f"{exact_w:.5f} (deterministic: one start vector, no probes):", "",
              "| Lanczos steps (= HVPs) | relative error |", "|---|---|"]
    for steps in (10, 20, 30, 60):
        lines.append(f"| {steps} | {abs(positive_quadratic_form(hvp, theta, steps) - exact_w) / exact_w:.2e} |")
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
