"""groups.json as typed records: what a run writes is what every reader gets back, and bad files fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from policygradex.common.errors import PolicyGradExError
from policygradex.pipeline.clustering import cluster
from policygradex.pipeline.confidence import bootstrap_groups
from policygradex.pipeline.group_record import Confidence, ExhaustiveCheck, GridRow, Groups, Relaxation
from policygradex.pipeline.partitions import groups_from_labels
from policygradex.pipeline.surrogate import sample_subsets


def _planted_U(n: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    blocks = np.random.default_rng(seed).permutation(np.arange(n) % 3)
    U = (blocks[:, None] == blocks[None, :]).astype(float) + 0.05 * np.random.default_rng(seed + 1).normal(size=(n, n))
    return (U + U.T) / 2, blocks


def _record(U: np.ndarray, k: int | None) -> Groups:
    """A Groups record built from a real clustering and bootstrap, as the cluster stage builds it."""
    n = len(U)
    res = cluster(U, k=k, solver="SCS", method="sdp" if k else "auto")
    groups = groups_from_labels(res.labels)
    subsets = sample_subsets(n, 4, 60, seed=0).subsets
    f = np.array([U[np.ix_(s, s)].sum() for s in subsets])
    boot = bootstrap_groups(subsets, f, n, res.labels, reps=5, seed=0)
    conf = Confidence("Stable: ...", 0.9, 0.8, "subsets", boot["reps"], tuple(boot["group_jaccard"]),
                      boot["coclustering"], task_signal=(0.9,) * n, transition_jaccard=(0.5,) * len(groups),
                      transition_reps=7)
    return Groups(names=tuple(tuple(f"t{i}" for i in g) for g in groups), indices=tuple(tuple(g) for g in groups),
                  k=res.k, selection="fixed k" if k else "lambda grid, best silhouette", cluster_config={"k": k},
                  lam=res.lam, method=res.method, objective=res.objective,
                  grid=tuple(GridRow.from_json(r) for r in res.grid),
                  exhaustive_check=None if res.check is None else ExhaustiveCheck.from_json(res.check),
                  relaxation=None if res.relaxation is None else Relaxation.from_json(res.relaxation),
                  confidence=conf, nmi_planted=1.0)


@pytest.mark.parametrize("k", [3, None])
def test_round_trip_keeps_every_field(tmp_path, k):
    """save then load gives the same record, the co-clustering matrix included, and the labels the clustering
    found; with k given (the SDP path) the exhaustive check and relaxation gap survive, with the lambda grid
    (k=None) its rows."""
    U, blocks = _planted_U()
    rec = _record(U, k)
    rec.save(tmp_path / "groups.json")
    back = Groups.load(tmp_path / "groups.json", n=9)
    assert back == rec
    assert back.confidence is not None and rec.confidence is not None
    np.testing.assert_array_equal(back.confidence.coclustering, rec.confidence.coclustering)
    assert back.to_json() == rec.to_json()
    # the labels are a relabelling of the planted blocks (the clustering recovers them at this noise)
    assert len(set(zip(back.labels().tolist(), blocks.tolist()))) == 3
    assert groups_from_labels(back.labels()) == back.index_lists()
    if k is None:
        assert back.grid and all(len(r.labels) == 9 for r in back.grid)
    else:
        assert back.exhaustive_check is not None and back.exhaustive_check.sdp_is_optimal
        assert back.relaxation is not None and back.relaxation.k == 3


def test_file_without_newer_fields_loads(tmp_path):
    """A groups.json from before the records (no 'resampled', no 'method', no relaxation) still loads: its
    bootstrap was over subsets."""
    old = {"groups": [["a", "b"], ["c"]], "group_indices": [[0, 1], [2]], "k": 2, "lam": None,
           "selection": "fixed k", "grid": [], "exhaustive_check": None, "objective": 1.5, "relaxation": None,
           "confidence": {"gradient_reliability": 0.7, "split_half_reliability": None, "reps": 10,
                          "group_jaccard": [0.9, 0.8], "verdict": "Stable: ..."},
           "cluster_config": {"k": 2}}
    (tmp_path / "groups.json").write_text(json.dumps(old))
    rec = Groups.load(tmp_path / "groups.json", n=3)
    assert rec.confidence is not None and rec.confidence.resampled == "subsets"
    assert rec.confidence.mean_jaccard == pytest.approx(0.85)
    assert rec.method is None and rec.labels().tolist() == [0, 0, 1]


@pytest.mark.parametrize("blob, n", [
    ({"groups": [["a"]], "group_indices": [[0], [1]], "k": 2}, None),  # names and indices disagree
    ({"groups": [["a"], ["b"]], "group_indices": [[0], [1]], "k": 3}, None),  # k is not the number of groups
    ({"groups": [["a", "b"]], "group_indices": [[0, "x"]], "k": 1}, None),  # an index that is no integer
    ({"groups": [["a"], ["b"]], "group_indices": [[0], [2]], "k": 2}, 2),  # not a partition of 0..n-1
    ({"groups": [["a"], ["a"]], "group_indices": [[0], [0]], "k": 2}, 2),  # a task in two groups
    ({"groups": [], "group_indices": [], "k": 0, "confidence": {"reps": "many"}}, None),
    ([1, 2, 3], None),
])
def test_malformed_files_fail_with_the_file_named(tmp_path, blob, n):
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(blob))
    with pytest.raises(PolicyGradExError, match="groups.json"):
        Groups.load(path, n=n)


def test_a_group_is_as_stable_as_its_weaker_bootstrap():
    """A group's word reads the lower of its subset and transition Jaccards: stable over the subsets but not over
    the transitions is not stable; without a transition bootstrap the subset Jaccard alone decides."""
    both = Confidence("Partly stable", 0.9, 0.9, "subsets", 10, (0.95, 0.9, 0.62), transition_jaccard=(0.9, 0.55, 0.8),
                      transition_reps=10)
    assert [both.jaccard(g) for g in range(3)] == [0.9, 0.55, 0.62]
    assert [both.word(g) for g in range(3)] == ["stable", "weak", "pattern"]
    subsets_only = Confidence("Stable", 0.9, 0.9, "subsets", 10, (0.95, 0.9, 0.62))
    assert [subsets_only.word(g) for g in range(3)] == ["stable", "stable", "pattern"]
