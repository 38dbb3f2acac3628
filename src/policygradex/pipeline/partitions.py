"""Partitions of n tasks: label helpers, the objective <U, X> of a partition, steepest-ascent local search, and the exact
best partition by enumeration (n <= 12, with EXACT_MAX_N)."""

from __future__ import annotations

import numpy as np

from policygradex.common.errors import PolicyGradExError

EXACT_MAX_N = 12
"""Up to this many tasks the exact best partition is found by enumeration: all S(12, k) partitions for a given k in
at most ~1.5 s, all Bell(12) = 4.2M for the lambda grid in ~6 s; Bell(10) = 115,975 in ~0.15 s."""


def canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel so groups are numbered by first appearance (0, 1, ...)."""
    mapping: dict[int, int] = {}
    return np.array([mapping.setdefault(int(x), len(mapping)) for x in labels], dtype=np.int64)


def labels_from_groups(groups: list[list[int]], n: int) -> np.ndarray:
    """Group index of each of the n tasks (the inverse of :func:`groups_from_labels`)."""
    labels = np.zeros(n, dtype=np.int64)
    for g, members in enumerate(groups):
        labels[members] = g
    return labels


def groups_from_labels(labels: np.ndarray) -> list[list[int]]:
    labels = canonical(labels)
    return [np.flatnonzero(labels == g).tolist() for g in range(labels.max() + 1)]


def partition_objective(U: np.ndarray, labels: np.ndarray) -> float:
    """<U, X> for the partition's X: sum over groups of (sum of U within the group) / group size."""
    total = 0.0
    for g in groups_from_labels(labels):
        total += U[np.ix_(g, g)].sum() / len(g)
    return float(total)


def local_search(U: np.ndarray, labels: np.ndarray, max_rounds: int = 100_000) -> np.ndarray:
    """Steepest ascent on <U, X_partition> = sum_G (sum of U over G x G) / |G| with single-task moves and pair swaps.

    The number of groups is kept (no group is emptied). Every round evaluates all n (k - 1) moves and all n^2 swaps
    in closed form from R = U H (H the one-hot labels; U's diagonal is taken as 0), applies the best one if it
    gains, and stops at a partition no single move or swap improves; a swap escapes local optima where two tasks
    must change groups at once. Deterministic: ties go to the first move in task order."""
    U = np.array(U, dtype=np.float64)
    np.fill_diagonal(U, 0.0)
    labels = canonical(labels).copy()
    n, k = len(labels), int(labels.max() + 1)
    if k in (1, n):
        return labels
    tol = 1e-12 * max(1.0, float(np.abs(U).sum()))
    rows = np.arange(n)
    for _ in range(max_rounds):
        H = np.eye(k)[labels]
        R = U @ H  # R[i, g] = sum of U[i, j] over j in group g
        size = H.sum(0)
        S = (H * R).sum(0)  # within-group sums
        own = R[rows, labels]
        na, Sa = size[labels], S[labels]
        # move i from its group a to group b
        with np.errstate(divide="ignore", invalid="ignore"):
            leave = np.where(na > 1, (Sa - 2 * own) / (na - 1) - Sa / na, -np.inf)
        join = (S[None, :] + 2 * R) / (size[None, :] + 1) - S[None, :] / size[None, :]
        move = leave[:, None] + join
        move[rows, labels] = -np.inf
        # swap i (group a) with j (group b)
        Rcol = R[:, labels]  # Rcol[j, i] = sum of U[j, l] over l in i's group
        d_a = 2 * (-own[:, None] + Rcol.T - U) / na[:, None]
        d_b = 2 * (-own[None, :] + Rcol - U) / na[None, :]
        swap = d_a + d_b
        swap[labels[:, None] == labels[None, :]] = -np.inf
        bm, bs = np.unravel_index(np.argmax(move), move.shape), np.unravel_index(np.argmax(swap), swap.shape)
        gain_m, gain_s = move[bm], swap[bs]
        if max(gain_m, gain_s) <= tol:
            break
        if gain_m >= gain_s:
            labels[bm[0]] = bm[1]
        else:
            i, j = bs
            labels[i], labels[j] = labels[j], labels[i]
    return canonical(labels)


def _restricted_growth_strings(n: int, kmax: int) -> np.ndarray:
    """All partitions of n items into at most kmax groups, as canonical label rows (M x n, int8)."""
    rows = np.zeros((1, 1), dtype=np.int8)
    top = np.zeros(1, dtype=np.int8)
    for _ in range(1, n):
        new_rows, new_top = [], []
        for v in range(kmax):
            ok = v <= top + 1
            if ok.any():
                r = rows[ok]
                new_rows.append(np.hstack([r, np.full((len(r), 1), v, dtype=np.int8)]))
                new_top.append(np.maximum(top[ok], v).astype(np.int8))
        rows, top = np.vstack(new_rows), np.concatenate(new_top)
    return rows


def best_partitions(U: np.ndarray, kmax: int | None = None, only_k: bool = False,
                    chunk: int = 50_000) -> dict[int, tuple[float, np.ndarray]]:
    """For every k = 1..kmax (default n), or only k = kmax, the exact best partition into k groups of
    <U, X_partition> (U's diagonal taken as 0), by scoring every partition once: k -> (objective, canonical labels).
    n <= EXACT_MAX_N."""
    n = U.shape[0]
    if n > EXACT_MAX_N:
        raise PolicyGradExError(f"exhaustive search is limited to n <= {EXACT_MAX_N} tasks (got {n}); use the SDP")
    kmax = n if kmax is None else kmax
    U = np.array(U, dtype=np.float64)
    np.fill_diagonal(U, 0.0)
    rows = _restricted_growth_strings(n, kmax)
    ks = rows.max(1).astype(np.int64) + 1
    if only_k:
        rows, ks = rows[ks == kmax], ks[ks == kmax]
    best: dict[int, tuple[float, np.ndarray]] = {}
    for lo in range(0, len(rows), chunk):
        part = rows[lo : lo + chunk].astype(np.int64)
        onehot = np.eye(kmax)[part]  # (M, n, K)
        sizes = onehot.sum(1)
        within = np.einsum("mik,mik->mk", U @ onehot, onehot)  # (M, K): sum of U within each group
        vals = (within / np.maximum(sizes, 1)).sum(1)
        for kk in np.unique(ks[lo : lo + chunk]):
            sel = np.flatnonzero(ks[lo : lo + chunk] == kk)
            i = sel[int(np.argmax(vals[sel]))]
            if int(kk) not in best or vals[i] > best[int(kk)][0] + 1e-12:
                best[int(kk)] = (float(vals[i]), canonical(part[i]))
    return best


def exhaustive_partition(U: np.ndarray, k: int | None = None, lam: float | None = None) -> np.ndarray:
    """The exact best partition: max <U, X_partition> with exactly k groups, or max <U, X> - lam * k."""
    if k is None and lam is None:
        raise PolicyGradExError("exhaustive search needs --k or --lam")
    if k is not None:
        return best_partitions(U, kmax=k, only_k=True)[k][1]
    table = best_partitions(U)
    assert lam is not None
    return table[max(table, key=lambda c: table[c][0] - lam * c)][1]
