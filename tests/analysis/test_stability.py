"""`policygradex stability`: U and groups recomputed from fresh transition samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from policygradex.analysis.context import load_context
from policygradex.analysis.stability import resample_job
from policygradex.pipeline.subset_table import SubsetTable

from ..helpers import assert_one_line_error, stability_against_ground_truth


def test_resampling_with_the_feature_seed_reproduces_the_run(tiny_run: Path) -> None:
    """The resample job is the pipeline's own computation: with the feature stage's seed it gives the run's f^."""
    ctx = load_context(tiny_run)
    table = SubsetTable.load(ctx.rd.subsets)
    subsets = table.subsets
    args = {"run_dir": str(tiny_run), "config": ctx.cfg.to_dict(), "theta_sha": ctx.theta_sha, "subsets": subsets,
            "transitions_per_task": ctx.cfg.features.transitions_per_task}
    same = resample_job(args, ctx.cfg.feature_seed)
    assert np.allclose(same["f_hat"], table.f_hat, rtol=1e-5, atol=1e-7)
    other = resample_job(args, ctx.cfg.seed + 1000)
    assert not np.allclose(other["f_hat"], same["f_hat"])


def test_stability_command_end_to_end_and_resume(tiny_run: Path, tmp_path: Path, cli) -> None:
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    rc, out, err = cli("stability", run, "--resamples", "2", "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "stability" / "stability.json").read_text())
    C = np.array(record["coclustering"])
    assert np.allclose(C, C.T) and np.allclose(np.diag(C), 1.0)
    assert set(np.round(C.ravel() * 3).astype(int)) <= {0, 1, 2, 3}  # the run and 2 resamples: 0, 1/3, 2/3 or 1
    # the NMI of each resample's groups with the run's, recomputed from the groups the record lists
    def labels_of(groups: list[list[str]]) -> list[int]:
        where = {name: j for j, g in enumerate(groups) for name in g}
        return [where[name] for name in record["task_names"]]

    nmis = [normalized_mutual_info_score(labels_of(record["groups_run"]), labels_of(g))
            for g in record["groups_resamples"]]
    assert record["nmi_with_run"]["mean"] == pytest.approx(np.mean(nmis))
    assert record["nmi_with_run"]["min"] == pytest.approx(min(nmis))
    # co-clustering: how often two tasks share a group, over the run and its resamples
    together = np.mean([np.equal.outer(labels_of(g), labels_of(g)) for g in [record["groups_run"],
                                                                            *record["groups_resamples"]]], axis=0)
    assert np.allclose(C, together)
    assert len(record["groups_resamples"]) == 2 and len(record["groups_pooled"]) == record["k"]
    assert sorted(i for g in record["group_indices_pooled"] for i in g) == list(range(10))
    for name in ("stability.md", "coclustering.png"):
        assert (run / "stability" / name).exists()
    assert "NMI of the groups" in out
    # the other evaluation of f^ is scored the same way, from the same resamples
    ev = record["evaluation"]
    other_ev = record["other_evaluation"]
    assert {ev, other_ev["evaluation"]} == {"held_out", "in_sample"}
    assert f"| {ev} (the run's) | NMI of the groups" in out and f"| {other_ev['evaluation']} | NMI of the groups" in out
    # a second call finds both resamples in the job cache
    jobs = len(list((run / "jobs").glob("*.json")))
    rc, _, err = cli("stability", run, "--resamples", "2", "--backend", "sequential")
    assert rc == 0, err
    assert len(list((run / "jobs").glob("*.json"))) == jobs
    assert json.loads((run / "stability" / "stability.json").read_text())["coclustering"] == record["coclustering"]
    assert record["pooled_includes_run"] and record["vs_ground_truth"] is None
    # another N: U changes systematically with N, so the run is left out of the pool
    rc, _, err = cli("stability", run, "--resamples", "1", "--transitions", "64", "--backend", "sequential")
    assert rc == 0, err
    other = json.loads((run / "stability" / "stability.json").read_text())
    assert not other["pooled_includes_run"] and other["corr_among_resamples"] is None
    # with a ground truth, each estimate is scored against real training
    vs, truth, out = stability_against_ground_truth(cli, run)
    assert vs["num_subsets"] == 40 and set(vs) >= {"run", "resamples", "pooled"}
    # the NMI of the run's groups and of the pooled groups against the ground truth's, from their files
    from policygradex.pipeline.partitions import labels_from_groups

    true_labels = labels_from_groups(json.loads((run / "ground_truth" / "groups_true.json").read_text())["group_indices"], 10)
    run_labels = labels_from_groups(json.loads((run / "groups.json").read_text())["group_indices"], 10)
    pooled = json.loads((run / "stability" / "stability.json").read_text())["group_indices_pooled"]
    assert vs["run"]["nmi"] == pytest.approx(normalized_mutual_info_score(true_labels, run_labels))
    assert vs["pooled"]["nmi"] == pytest.approx(normalized_mutual_info_score(true_labels, labels_from_groups(pooled, 10)))
    assert vs["run"]["spearman"] == pytest.approx(truth["spearman"])  # the same f^ and f as ground-truth's own
    assert "Against the ground truth" in out and "f^ in_sample, pooled" in out and "f^ held_out, pooled" in out
    assert vs["evaluation"] == ev and vs["other"]["evaluation"] == other_ev["evaluation"]


def test_stability_bad_input_is_one_line(tiny_run: Path, cli) -> None:
    rc, _, err = cli("stability", tiny_run, "--resamples", "0")
    assert_one_line_error(rc, err, "--resamples")
    rc, _, err = cli("stability", tiny_run, "--transitions", "2")
    assert_one_line_error(rc, err, "--transitions")


def test_pooled_groups_recover_planted_blocks_from_noisy_resamples() -> None:
    """Averaging U over resamples is the point of the pooled groups: noisy copies of a block matrix, each often
    clustered wrong alone, cluster right when averaged."""
    from sklearn.metrics import normalized_mutual_info_score

    from policygradex.pipeline.clustering import cluster
    from policygradex.pipeline.partitions import labels_from_groups

    n, k = 9, 3
    truth = labels_from_groups([[0, 1, 2], [3, 4, 5], [6, 7, 8]], n)
    block = (truth[:, None] == truth[None, :]).astype(float)
    rng = np.random.default_rng(0)
    noisy = [block + rng.normal(scale=1.5, size=(n, n)) for _ in range(12)]
    noisy = [(U + U.T) / 2 for U in noisy]
    alone = [normalized_mutual_info_score(truth, cluster(U, k=k, exhaustive_check=False).labels) for U in noisy]
    pooled = cluster(np.mean(noisy, axis=0), k=k, exhaustive_check=False).labels
    assert np.mean(alone) < 0.75
    assert normalized_mutual_info_score(truth, pooled) == pytest.approx(1.0)
