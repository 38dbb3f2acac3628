"""The gradient computer of the feature stage: per-transition grad log pi(a|s) at theta_star, projected in chunks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.config import FeatureConfig
from policygradex.pipeline.projection import FactorisedProjection, RandomProjection


def per_sample_grad_fn(model: nn.Module, names: list[str] | None = None
                       ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], int]:
    """A function (obs[B], actions[B]) -> flattened per-sample grads of log pi (B x p), and p.

    Gradients are taken with respect to ``names`` (default ``model.policy_parameter_names()``, the actor); the
    other parameters are held fixed.
    """
    names = model.policy_parameter_names() if names is None else names
    all_params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    theta = {k: all_params[k] for k in names}
    fixed = {k: v for k, v in all_params.items() if k not in theta} | buffers
    p = sum(v.numel() for v in theta.values())

    def log_prob(params: dict[str, torch.Tensor], obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, params | fixed, (obs.unsqueeze(0), action.unsqueeze(0)))
        return out.squeeze(0)

    per_sample = vmap(grad(log_prob), in_dims=(None, 0, 0))

    def fn(obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        g = per_sample(theta, obs, actions)
        return torch.cat([g[k].reshape(obs.shape[0], -1) for k in names], dim=1)

    return fn, p


def loop_grads(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Reference implementation: per-sample autograd in a Python loop (for tests and benchmarks)."""
    names = model.policy_parameter_names()
    params = dict(model.named_parameters())
    rows = []
    for i in range(obs.shape[0]):
        logp = model(obs[i : i + 1], actions[i : i + 1]).sum()
        gs = torch.autograd.grad(logp, [params[k] for k in names])
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    return torch.stack(rows)


def auto_grad_chunk(p: int) -> int:
    """Largest power of two with chunk * p <= 4M floats (16 MiB), clamped to [8, 1024].

    Gives 256 for the default 64-wide MLP on CartPole and 16 for a 256-wide one; results/bench_gradients.md has the
    measured speedups over the per-sample loop, with p."""
    chunk = 8
    while chunk * 2 * p <= 4 * 2**20 and chunk < 1024:
        chunk *= 2
    return chunk


def projected_gradients(
    model: nn.Module, obs: torch.Tensor, actions: torch.Tensor, projection: RandomProjection | FactorisedProjection,
    cfg: FeatureConfig
) -> torch.Tensor:
    """Per-transition projected gradients (B x d): vmap in chunks of ``grad_chunk``, project ``project_rows`` at once;
    with a :class:`FactorisedProjection`, :func:`factorised_gradients` (no per-sample gradient is formed)."""
    if isinstance(projection, FactorisedProjection):
        return torch.cat([factorised_gradients(model, obs[lo:lo + cfg.project_rows], actions[lo:lo + cfg.project_rows],
                                               projection) for lo in range(0, obs.shape[0], cfg.project_rows)])
    fn, p = per_sample_grad_fn(model)
    chunk = cfg.grad_chunk or auto_grad_chunk(p)
    out = []
    for lo in range(0, obs.shape[0], cfg.project_rows):
        hi = min(lo + cfg.project_rows, obs.shape[0])
        grads = torch.cat([fn(obs[s : min(s + chunk, hi)], actions[s : min(s + chunk, hi)])
                           for s in range(lo, hi, chunk)])
        out.append(projection.project(grads))
    return torch.cat(out)


def factorised_gradients(model: nn.Module, obs: torch.Tensor, actions: torch.Tensor,
                         projection: FactorisedProjection) -> torch.Tensor:
    """LoGra's per-transition features (B x d) from one batched forward and backward: forward hooks keep every
    projected linear layer's input x and output z; the gradient of sum_t log pi(a_t | s_t) with respect to the
    outputs is, row by row, each transition's own output gradient (transitions do not interact), and
    :meth:`FactorisedProjection.project_outer` turns (dz, x) into the layer's features. The other policy parameters
    (``projection.rest``) get per-sample gradients by vmap and their dense projection. A layer called more than
    once per forward pass (weights shared across calls) is refused."""
    modules = dict(model.named_modules())
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    handles = []
    for i, b in enumerate(projection.blocks):
        def hook(mod: nn.Module, args: tuple, out: torch.Tensor, i: int = i) -> None:
            if i in outputs:
                raise PolicyGradExError(f"linear layer {projection.blocks[i].module!r} is called more than once per forward: "
                                 "use --projection dense")
            inputs[i], outputs[i] = args[0].detach(), out
        handles.append(modules[b.module].register_forward_hook(hook))
    try:
        logp = model(obs, actions)
    finally:
        for h in handles:
            h.remove()
    order = sorted(outputs)
    grads = torch.autograd.grad(logp.sum(), [outputs[i] for i in order])
    parts = [projection.project_outer(i, g.detach().reshape(-1, g.shape[-1]), inputs[i].reshape(-1, inputs[i].shape[-1]))
             for i, g in zip(order, grads)]
    if projection.rest:
        fn, _ = per_sample_grad_fn(model, projection.rest_names)
        parts.append(fn(obs, actions) @ projection.rest_P)
    return torch.cat(parts, dim=1)
