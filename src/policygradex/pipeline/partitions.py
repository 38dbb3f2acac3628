"""Partitions of n tasks: label helpers, the objective <U, X> of a partition, local searches (steepest ascent that
rescores every neighbour each round; an incremental one for large n, and merge-plus-split steps on top of it), and
the exact best partition by enumeration (n <= 12, with EXACT_MAX_N)."""

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


def _search_start(U: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """What every local search starts from: a float64 copy of U with its diagonal zeroed, canonical labels (a copy),
    and the gain below which a step does not count (1e-12 sum |U|)."""
    U = np.array(U, dtype=np.float64)
    np.fill_diagonal(U, 0.0)
    return U, canonical(labels).copy(), 1e-12 * max(1.0, float(np.abs(U).sum()))


def local_search(U: np.ndarray, labels: np.ndarray, max_rounds: int = 100_000) -> np.ndarray:
    """Steepest ascent on <U, X_partition> = sum_G (sum of U over G x G) / |G| with single-task moves and pair swaps.

    The number of groups is kept (no group is emptied). Every round evaluates all n (k - 1) moves and all n^2 swaps
    in closed form from R = U H (H the one-hot labels; U's diagonal is taken as 0), applies the best one if it
    gains, and stops at a partition no single move or swap improves; a swap escapes local optima where two tasks
    must change groups at once. Deterministic: ties go to the first move in task order."""
    U, labels, tol = _search_start(U, labels)
    n, k = len(labels), int(labels.max() + 1)
    if k in (1, n):
        return labels
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


def group_sums(U: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """R = U H (n x k, H the one-hot labels): R[i, g] = sum of U[i, j] over j in group g. Every group must be
    non-empty. Time O(n^2) (one pass over U's columns grouped by label), not the O(n^2 k) of the dense product."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k))
    return np.add.reduceat(U[:, order], starts, axis=1)


SWAP_CHUNK = 256
"""Rows of the n x n swap-gain matrix scored at once by :func:`incremental_local_search` (memory O(SWAP_CHUNK n))."""


def _best_swap(U: np.ndarray, R: np.ndarray, labels: np.ndarray, size: np.ndarray) -> tuple[float, int, int]:
    """(gain, i, j) of the best swap of two tasks in different groups, first in task order on ties.

    Swapping i (group a) and j (group b) changes the objective by 2 (R[j, a] - R[i, a] - U[i, j]) / |a| +
    2 (R[i, b] - R[j, b] - U[i, j]) / |b|: O(n^2) time in row chunks of SWAP_CHUNK, O(SWAP_CHUNK n) memory."""
    n = len(labels)
    own = R[np.arange(n), labels]
    inv = 1.0 / size[labels]
    best = (-np.inf, -1, -1)
    for lo in range(0, n, SWAP_CHUNK):
        rows = slice(lo, min(lo + SWAP_CHUNK, n))
        la = labels[rows]
        U_rows = U[rows]
        gain = (R[:, la].T - own[rows, None] - U_rows) * (2 * inv[rows, None])  # i's old group a gets j
        gain += (R[rows][:, labels] - own[None, :] - U_rows) * (2 * inv[None, :])  # j's old group b gets i
        gain[la[:, None] == labels[None, :]] = -np.inf
        flat = int(np.argmax(gain))
        if gain.flat[flat] > best[0]:
            best = (float(gain.flat[flat]), lo + flat // n, flat % n)
    return best


def incremental_local_search(U: np.ndarray, labels: np.ndarray, max_steps: int = 1_000_000) -> np.ndarray:
    """Local search on <U, X_partition> = sum_G (sum of U over G x G) / |G| with single-task moves and pair swaps,
    from incrementally maintained sums; the number of groups k is kept (no group is emptied).

    State: R = U H (n x k, H the one-hot labels, U's diagonal taken as 0), each group's size and within-group sum
    S_g, and the n x k table of the gain of joining each group. A step applies the best single-task move (all
    n (k - 1) gains in O(n k) from that state); moving i from a to b updates R's columns a and b by U[:, i] and the
    two join columns, O(n). Only when no move gains are all swaps scored (O(n^2), :func:`_best_swap`) and the best
    one applied. It stops at a partition that no single move and no swap improves by more than 1e-12 sum|U|,
    after rebuilding the state from scratch once to rule out drift. Memory O(n k) besides a copy of U.

    Deterministic: ties go to the first task (then group) in order. Unlike :func:`local_search` it does not rescore
    swaps while a move gains, so from the same start it can end at a different local optimum."""
    U, labels, tol = _search_start(U, labels)
    n, k = len(labels), int(labels.max() + 1)
    if k in (1, n):
        return labels
    rows = np.arange(n)

    def rebuild() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        R = group_sums(U, labels, k)
        size = np.bincount(labels, minlength=k).astype(np.float64)
        S = np.bincount(labels, weights=R[rows, labels], minlength=k)
        return R, size, S

    def join_column(c: int) -> np.ndarray:
        col = (S[c] + 2 * R[:, c]) / (size[c] + 1) - S[c] / size[c]
        col[labels == c] = -np.inf  # a task cannot join its own group
        return col

    R, size, S = rebuild()
    join = np.empty((n, k))
    for c in range(k):
        join[:, c] = join_column(c)
    gain = np.empty((n, k))
    verified = False
    for _ in range(max_steps):
        na, Sa, own = size[labels], S[labels], R[rows, labels]
        with np.errstate(divide="ignore", invalid="ignore"):
            leave = np.where(na > 1, (Sa - 2 * own) / (na - 1) - Sa / na, -np.inf)
        np.add(join, leave[:, None], out=gain)
        flat = int(np.argmax(gain))
        i, b = divmod(flat, k)
        if gain[i, b] > tol:
            a = labels[i]
            S[a] -= 2 * R[i, a]
            S[b] += 2 * R[i, b]
            size[a] -= 1
            size[b] += 1
            R[:, a] -= U[:, i]
            R[:, b] += U[:, i]
            labels[i] = b
            join[:, a], join[:, b] = join_column(a), join_column(b)
            verified = False
            continue
        swap_gain, i, j = _best_swap(U, R, labels, size)
        if swap_gain > tol:
            a, b = labels[i], labels[j]
            S[a] += 2 * (R[j, a] - R[i, a] - U[i, j])
            S[b] += 2 * (R[i, b] - R[j, b] - U[i, j])
            d = U[:, j] - U[:, i]
            R[:, a] += d
            R[:, b] -= d
            labels[i], labels[j] = b, a
            join[:, a], join[:, b] = join_column(a), join_column(b)
            verified = False
            continue
        if verified:
            break
        R, size, S = rebuild()  # a local optimum of the updated sums: confirm it on exact ones
        for c in range(k):
            join[:, c] = join_column(c)
        verified = True
    return canonical(labels)


def _bisect(U: np.ndarray) -> tuple[float, np.ndarray]:
    """(gain, labels in {0, 1}) of a good split of one group (U its block, diagonal 0) into two: the sign of the top
    eigenvector of the centred block, polished by :func:`incremental_local_search`; gain = the two halves' objective
    less the whole group's. Time O(m^3) for a group of m tasks."""
    m = U.shape[0]
    if m < 2:
        return -np.inf, np.zeros(m, dtype=np.int64)
    row = U.mean(1)
    _, vecs = np.linalg.eigh(U - row[:, None] - row[None, :] + row.mean())
    halves = (vecs[:, -1] > 0).astype(np.int64)
    if halves.min() == halves.max():
        halves[np.argmax(vecs[:, -1])] = 1 - halves[0]
    halves = incremental_local_search(U, halves)
    return partition_objective(U, halves) - U.sum() / m, halves


def merge_split_search(U: np.ndarray, labels: np.ndarray, max_rounds: int = 10_000) -> np.ndarray:
    """:func:`incremental_local_search`, then, while they gain, compound steps, each merging two groups and splitting
    a third in two (:func:`_bisect`), followed by the local search again; k is kept. A round applies the gaining
    steps on disjoint groups greedily, best first (their gains add up).

    Moves and swaps cannot fix a rounding that put two true groups into one and split a third in two (each task
    moved alone loses); the compound step does. Group sums C = H^T U H (O(n^2)) give every merge's gain in O(k^2);
    a group's split is recomputed only when it changed (O(|G|^3)). Ends at a local optimum of moves and swaps that no
    merge-plus-split improves. Time per round O(n^2 + k^2 log k) plus the local search. Deterministic: ties go to the
    first groups in label order."""
    U, labels, tol = _search_start(U, labels)
    labels = incremental_local_search(U, labels)
    k = int(labels.max() + 1)
    if k < 3 or k == len(labels):
        return labels
    splits: dict[tuple[int, ...], tuple[float, np.ndarray]] = {}  # group members -> (gain, halves)
    for _ in range(max_rounds):
        order = np.argsort(labels, kind="stable")
        size = np.bincount(labels, minlength=k).astype(np.float64)
        groups = np.split(order, np.cumsum(size[:-1]).astype(np.int64))
        C = group_sums(group_sums(U, labels, k).T, labels, k)  # C[g, h] = sum of U over g x h
        S = np.diag(C)
        merge = (S[:, None] + S[None, :] + 2 * C) / (size[:, None] + size[None, :]) - (S / size)[:, None] \
            - (S / size)[None, :]
        merge[np.tril_indices(k)] = -np.inf  # pairs g < h
        split = np.empty(k)
        for g, members in enumerate(groups):
            key = tuple(members.tolist())
            if key not in splits:
                splits[key] = _bisect(U[np.ix_(members, members)])
            split[g] = splits[key][0]
        # the best split outside a pair (g, h) is the first of the three best splits that is neither g nor h:
        # merge[g, h] + split[outside[g, h]] bounds every compound step that merges g and h
        top = np.argsort(-split, kind="stable")[:3]
        outside = np.full((k, k), top[-1])
        for f in top[-2::-1]:  # the second best, then the best, wherever it lies outside the pair
            ok = np.ones((k, k), dtype=bool)
            ok[f, :] = ok[:, f] = False
            outside[ok] = f
        total = (merge + split[outside]).ravel()
        candidates = np.flatnonzero(total > tol)
        if len(candidates) == 0:
            break
        # steps on disjoint groups add up: take them greedily, best first, each with the best split still free
        used = np.zeros(k, dtype=bool)
        split_order = np.argsort(-split, kind="stable")
        trial = labels.copy()
        for flat in candidates[np.argsort(-total[candidates], kind="stable")]:
            g, h = divmod(int(flat), k)
            if used[g] or used[h]:
                continue
            free = split_order[~used[split_order] & (split_order != g) & (split_order != h)]
            if len(free) == 0 or not merge[g, h] + split[free[0]] > tol:
                continue
            f = int(free[0])
            used[[g, h, f]] = True
            trial[groups[h]] = g
            halves = splits[tuple(groups[f].tolist())][1]
            trial[groups[f][halves == 1]] = h
        trial = incremental_local_search(U, trial)
        if partition_objective(U, trial) <= partition_objective(U, labels) + tol:
            break
        labels = trial
    return labels


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
