"""The projector of the feature stage (TRAK's split): a seeded p x d Gaussian matrix P, generated block by block
(the paper's), or LoGra's factorised projection of linear layers' per-sample gradients (``--projection factorised``).

Both have ``p``, ``d``, ``project(grads)`` (B x p -> B x d) and ``lift(v)`` (d -> p, the parameter update of a
surrogate solution v)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from policygradex.common.errors import PolicyGradExError


class RandomProjection:
    """P in R^{p x d}, entries i.i.d. N(0, 1/d), reproducible from ``seed`` and generated in row blocks.

    Block b (rows b*block_rows .. ) is drawn from a generator seeded with (seed, b), so any block can be
    regenerated alone; blocks are cached while they fit in ``cache_mb``. ``project(G)`` returns G P (rows are
    gradients) and ``lift(v)`` returns P v (a parameter-space update).
    """

    def __init__(self, p: int, d: int, seed: int, block_rows: int = 16_384, cache_mb: float = 256.0) -> None:
        self.p, self.d, self.seed, self.block_rows = p, d, seed, block_rows
        self.num_blocks = math.ceil(p / block_rows)
        block_mb = block_rows * d * 4 / 2**20
        self._cache_limit = int(cache_mb // block_mb) if block_mb > 0 else 0
        self._cache: dict[int, torch.Tensor] = {}

    def block(self, b: int) -> torch.Tensor:
        if b in self._cache:
            return self._cache[b]
        rows = min(self.block_rows, self.p - b * self.block_rows)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + b)
        blk = torch.randn(rows, self.d, generator=gen) / math.sqrt(self.d)
        if len(self._cache) < self._cache_limit:
            self._cache[b] = blk
        return blk

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """(B, p) -> (B, d)."""
        out = torch.zeros(grads.shape[0], self.d, dtype=grads.dtype)
        for b in range(self.num_blocks):
            lo = b * self.block_rows
            blk = self.block(b).to(grads.dtype)
            out += grads[:, lo : lo + blk.shape[0]] @ blk
        return out

    def lift(self, v: torch.Tensor) -> torch.Tensor:
        """(d,) -> (p,): the parameter update P v."""
        parts = [self.block(b).to(v.dtype) @ v for b in range(self.num_blocks)]
        return torch.cat(parts)


# ----------------------------------------------------------------------------------------------- factorised
@dataclass(frozen=True)
class LinearBlock:
    """One linear layer's place in the flat parameter vector and in the features: weight (out x in) at
    ``weight_at``, bias (out) at ``bias_at`` (None: no bias), features [feature_at, feature_at + r_out r_in)."""

    module: str
    out_dim: int
    in_dim: int
    weight_at: int
    bias_at: int | None
    r_out: int
    r_in: int
    feature_at: int


class FactorisedProjection:
    """LoGra's projection of the per-sample gradients of linear layers (Choe et al. 2024): a linear layer's gradient
    is the outer product g_out [x; 1]^T of its output gradient and its input (with a 1 for the bias), so
    R_out^T g_out [x; 1]^T R_in, i.e. (R_out^T g_out) (R_in^T [x; 1])^T, projects it to r_out x r_in numbers without
    ever forming the out x (in + 1) gradient. R_out, R_in have i.i.d. N(0, 1/r) entries, seeded per layer, so
    inner products are unbiased (E[(R_in kron R_out)(R_in kron R_out)^T] = I) as with the dense P. The policy
    parameters outside linear layers (a Gaussian policy's log-std) keep a dense Gaussian projection of their own
    ``rest_dim`` columns (their per-sample gradients are computed directly; they are few).

    d is split evenly over the linear layers in order, each taking d_l = (what is left) / (layers left):
    r_out = min(out_l, round(sqrt(d_l))) and r_in = min(in_l + 1, d_l // r_out), so a narrow layer's leftover goes
    to the next and d may come out a little below the configured dimension (``self.d`` is the actual one; 400 of
    400 for the default 64-64-64 MLP). Time per transition: O(sum_l (out_l r_out + in_l r_in + r_out r_in)) after one batched forward and
    backward, against O(p d) for the dense P; memory O(B sum_l (out_l + in_l)) for a batch of B transitions."""

    def __init__(self, blocks: list[LinearBlock], rest: list[tuple[int, int]], p: int, d: int, rest_dim: int,
                 seed: int, rest_names: list[str] | None = None) -> None:
        self.blocks, self.rest, self.p, self.seed, self.rest_dim = blocks, rest, p, seed, rest_dim
        self.rest_names = rest_names or []
        """The policy parameters of ``rest`` (offset, size) by name, in the same order."""
        self.d = d
        self._R: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        rest_p = sum(n for _, n in rest)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 999_983)
        self.rest_P = torch.randn(rest_p, rest_dim, generator=gen) / math.sqrt(max(rest_dim, 1))

    def factors(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(R_out (out x r_out), R_in ((in + 1) x r_in)) of linear block i."""
        if i not in self._R:
            b = self.blocks[i]
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * (i + 1))
            R_out = torch.randn(b.out_dim, b.r_out, generator=gen) / math.sqrt(b.r_out)
            R_in = torch.randn(b.in_dim + 1, b.r_in, generator=gen) / math.sqrt(b.r_in)
            self._R[i] = (R_out, R_in)
        return self._R[i]

    def project_outer(self, i: int, g_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Linear block i's features of a batch: g_out (B, out), x (B, in) -> (B, r_out r_in)."""
        R_out, R_in = self.factors(i)
        x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
        a, c = g_out @ R_out.to(g_out.dtype), x1 @ R_in.to(x.dtype)
        return (a[:, :, None] * c[:, None, :]).reshape(x.shape[0], -1)

    def _layer_grad(self, b: LinearBlock, flat: torch.Tensor) -> torch.Tensor:
        """(B, out, in + 1) weight-and-bias gradients of block b from flat (B, p) gradients."""
        W = flat[:, b.weight_at:b.weight_at + b.out_dim * b.in_dim].reshape(-1, b.out_dim, b.in_dim)
        bias = (flat[:, b.bias_at:b.bias_at + b.out_dim] if b.bias_at is not None
                else torch.zeros(flat.shape[0], b.out_dim, dtype=flat.dtype))
        return torch.cat([W, bias[:, :, None]], dim=2)

    def project(self, grads: torch.Tensor) -> torch.Tensor:
        """(B, p) full gradients -> (B, d): the same map applied to gradients given whole (tests, benchmarks)."""
        out = [torch.einsum("bok,or,ks->brs", self._layer_grad(b, grads), *(R.to(grads.dtype) for R in self.factors(i))
                            ).reshape(grads.shape[0], -1) for i, b in enumerate(self.blocks)]
        if self.rest:
            rest = torch.cat([grads[:, lo:lo + n] for lo, n in self.rest], dim=1)
            out.append(rest @ self.rest_P.to(grads.dtype))
        return torch.cat(out, dim=1)

    def lift(self, v: torch.Tensor) -> torch.Tensor:
        """(d,) -> (p,), or (d, k) -> (p, k) column by column: the parameter update P v of the projection's map
        P^T (as :meth:`RandomProjection.lift`)."""
        if v.ndim == 2:
            return torch.stack([self.lift(v[:, j]) for j in range(v.shape[1])], dim=1)
        theta = torch.zeros(self.p, dtype=v.dtype)
        for i, b in enumerate(self.blocks):
            R_out, R_in = (R.to(v.dtype) for R in self.factors(i))
            V = v[b.feature_at:b.feature_at + b.r_out * b.r_in].reshape(b.r_out, b.r_in)
            G = R_out @ V @ R_in.T  # (out, in + 1)
            theta[b.weight_at:b.weight_at + b.out_dim * b.in_dim] = G[:, :b.in_dim].reshape(-1)
            if b.bias_at is not None:
                theta[b.bias_at:b.bias_at + b.out_dim] = G[:, b.in_dim]
        if self.rest:
            lifted = self.rest_P.to(v.dtype) @ v[self.d - self.rest_dim:]
            at = 0
            for lo, n in self.rest:
                theta[lo:lo + n] = lifted[at:at + n]
                at += n
        return theta


REST_MAX_PARAMS = 256
"""The most policy parameters outside linear layers (a Gaussian log-std) the factorised projection takes densely."""


def factorised_projection(model: nn.Module, d: int, seed: int, rest_dim: int = 8) -> FactorisedProjection:
    """The factorised projection of ``model``'s policy parameters (``policy_parameter_names``, in that order): one
    block per ``nn.Linear`` whose weight is a policy parameter, the rest projected densely to ``rest_dim`` (0 when
    there is none)."""
    names = model.policy_parameter_names()
    params = dict(model.named_parameters())
    offsets, at = {}, 0
    for name in names:
        offsets[name] = at
        at += params[name].numel()
    linears = [(m, mod) for m, mod in model.named_modules() if isinstance(mod, nn.Linear) and f"{m}.weight" in offsets]
    covered = {f"{m}.weight" for m, _ in linears} | {f"{m}.bias" for m, mod in linears if mod.bias is not None}
    rest_names = [n for n in names if n not in covered]
    rest = [(offsets[n], params[n].numel()) for n in rest_names]
    outside = sum(size for _, size in rest)
    if outside > REST_MAX_PARAMS:
        raise PolicyGradExError(f"--projection factorised projects linear layers, but {outside:,} of this network's "
                                f"{at:,} policy parameters are outside any nn.Linear: use --projection dense")
    rest_dim = rest_dim if rest else 0
    remaining = d - rest_dim
    blocks, f_at = [], 0
    for j, (m, mod) in enumerate(linears):  # an even split of what is left, so a layer's leftover goes to the next
        target = max(1, remaining // (len(linears) - j))
        r_out = max(1, min(mod.out_features, round(math.sqrt(target))))
        r_in = max(1, min(mod.in_features + 1, target // r_out))
        remaining -= r_out * r_in
        blocks.append(LinearBlock(m, mod.out_features, mod.in_features, offsets[f"{m}.weight"],
                                  offsets[f"{m}.bias"] if mod.bias is not None else None, r_out, r_in, f_at))
        f_at += r_out * r_in
    return FactorisedProjection(blocks, rest, at, f_at + rest_dim, rest_dim, seed, rest_names)
