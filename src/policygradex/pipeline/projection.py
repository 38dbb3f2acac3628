"""The projector of the feature stage (TRAK's split): a seeded p x d Gaussian matrix P, generated block by block."""

from __future__ import annotations

import math

import torch


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
