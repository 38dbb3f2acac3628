"""Evaluation against real training: the job launcher, check-linear, ground-truth and compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from policygradex.analysis.compare import load_partition, random_groups
from policygradex.analysis.context import (
    ensure_transitions,
    load_context,
    load_transitions,
    ppo_dict,
    subset_objectives,
)
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
from policygradex.analysis.scores import random_nmi, relative_error

from ..helpers import assert_one_line_error, child_pids, process_alive


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


def _strip_timing(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "train_seconds")}


# ----------------------------------------------------------------------------------------------- launcher
def test_job_key_depends_on_fn_args_and_seed_not_label() -> None:
    a = JobSpec("m:f", {"x": 1, "y": [1, 2]}, seed=3, label="one")
    assert a.key() == JobSpec("m:f", {"y": [1, 2], "x": 1}, seed=3, label="other").key()
    # where the inputs are is not what the job is: a run directory that moves keeps its cache
    assert a.key() == JobSpec("m:f", {"x": 1, "y": [1, 2]}, seed=3, paths={"run_dir": "/moved/run"}).key()
    assert a.key() != JobSpec("m:f", {"x": 1, "y": [1, 2]}, seed=4).key()
    assert a.key() != JobSpec("m:f", {"x": 2, "y": [1, 2]}, seed=3).key()
    assert a.key() != JobSpec("m:g", {"x": 1, "y": [1, 2]}, seed=3).key()


def test_launcher_caches_results_and_resumes_only_missing_jobs(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    specs = [JobSpec("tests.job_helpers:record_call", {"dir": str(markers), "name": f"j{i}", "x": i}, seed=i)
             for i in range(3)]
    specs.append(specs[1])  # a duplicate runs once
    cache = tmp_path / "cache"
    seq = LauncherConfig(backend="sequential")
    first = run_jobs(specs, cache, seq)
    assert [r["value"] for r in first] == [0, 11, 22, 11]
    assert sorted(p.name for p in markers.iterdir()) == ["j0.0", "j1.0", "j2.0"]
    # an interrupted evaluation: one result is lost; rerunning recomputes only that one
    (cache / f"{specs[2].key()}.json").unlink()
    second = run_jobs(specs, cache, seq)
    assert [r["value"] for r in second] == [0, 11, 22, 11]
    assert sorted(p.name for p in markers.iterdir()) == ["j0.0", "j1.0", "j2.0", "j2.1"]
    # a corrupt cache entry is recomputed, not trusted
    (cache / f"{specs[0].key()}.json").write_text("{not json")
    assert run_jobs(specs, cache, seq)[0]["value"] == 0
    assert (markers / "j0.1").exists()


_STOPPABLE_COMMAND = """
import signal, sys, threading
from policygradex.common.launcher import JobSpec, LauncherConfig, run_jobs
def stop(signum, frame):
    raise KeyboardInterrupt  # as the CLI does: the launcher stops its workers
signal.signal(signal.SIGTERM, stop)
specs = [JobSpec("tests.job_helpers:step_vector_env_until_stopped", {"dir": sys.argv[1], "seconds": 120}, seed=s)
         for s in range(2)]
try:
    run_jobs(specs, sys.argv[2], LauncherConfig(backend="process", workers=2))
except KeyboardInterrupt:
    print("threads left:", ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread()))
    sys.exit(143)
"""


def test_stopping_the_pool_ends_the_jobs_own_subprocesses_quietly(tmp_path: Path) -> None:
    # A job may own processes (the highway family's subprocess vector env). When a stopped command terminated its
    # pool workers, those processes found their pipe closed and each printed a BrokenPipeError traceback.
    import os
    import signal
    import subprocess
    import sys
    import time

    if not Path("/proc/self/task").exists():
        pytest.skip("needs Linux /proc to list child processes")
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _STOPPABLE_COMMAND, str(markers), str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    descendants: set[int] = set()
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(markers.iterdir())) < 2 and proc.poll() is None:
            time.sleep(0.2)
        assert len(list(markers.iterdir())) == 2, "the jobs never started their vector envs"
        workers = child_pids(proc.pid)
        descendants = workers | {g for w in workers for g in child_pids(w)}
        assert len(descendants) >= 2 + 4, "expected 2 workers with 2 env subprocesses each"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err[-800:]
        assert "Traceback" not in err and "Error" not in err, err[-800:]
        # A thread of the pool still running at exit raced the interpreter's exit hook: now and then an
        # "OSError: [Errno 9] Bad file descriptor" traceback (once in CI; the pool's thread outlived 3 of 8 stops)
        assert out.strip() == "threads left:", out
        deadline = time.time() + 20
        while time.time() < deadline and any(process_alive(p) for p in descendants):
            time.sleep(0.2)
        assert not any(process_alive(p) for p in descendants), "a worker or env subprocess outlived the command"
    finally:  # nothing left behind to burn the CPU of the tests after it
        for pid in [proc.pid, *descendants]:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)


def _train_specs(run_dir: Path) -> list[JobSpec]:
    ctx = load_context(run_dir)
    ppo = ppo_dict(ctx.cfg.ppo, steps_per_task=256)
    common = {"config": ctx.cfg.to_dict(), "ppo": ppo, "eval_episodes": 2, "init": "theta_star"}
    paths = {"run_dir": str(run_dir)}
    specs = [JobSpec("policygradex.analysis.context:train_job", {**common, "task_ids": s}, seed=7 + j, paths=paths)
             for j, s in enumerate([[0, 3], [1, 2, 5]])]
    # training from scratch (as `compare` does) must not depend on the process either
    return specs + [JobSpec("policygradex.analysis.context:train_job", {**common, "init": "scratch", "task_ids": [4]},
                            seed=3, paths=paths)]


def test_process_pool_gives_the_same_results_as_sequential(tiny_run: Path, tmp_path: Path) -> None:
    specs = _train_specs(tiny_run)
    seq = run_jobs(specs, tmp_path / "seq", LauncherConfig(backend="sequential"))
    pool = run_jobs(specs, tmp_path / "pool", LauncherConfig(backend="process", workers=2))
    assert [_strip_timing(r) for r in seq] == [_strip_timing(r) for r in pool]
    assert seq[0]["task_ids"] == [0, 3] and set(seq[1]["returns"]) == {"1", "2", "5"}


def test_ray_gives_the_same_results_as_sequential(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    specs = _train_specs(tiny_run)[:1]
    seq = run_jobs(specs, tmp_path / "seq", LauncherConfig(backend="sequential"))
    ray_res = run_jobs(specs, tmp_path / "ray", LauncherConfig(backend="ray", workers=2))
    assert [_strip_timing(r) for r in seq] == [_strip_timing(r) for r in ray_res]


# ----------------------------------------------------------------------------------------------- measures
def test_real_objectives_at_theta_star_are_known_in_closed_form(tiny_run: Path, tmp_path: Path) -> None:
    """At theta = theta_star the ratio is 1: the PPO objective is mean(A), the logistic one -log(2) mean(|A|)."""
    run = _copy(tiny_run, tmp_path)
    ctx = load_context(run)
    trans = load_transitions(ensure_transitions(ctx), ctx.theta_sha)
    obj = subset_objectives(ctx.model, trans, [0, 4], clip_coef=0.2)
    n_fit = trans["n_fit"]
    adv = torch.cat([trans["tasks"][i]["advantages"][n_fit:] for i in (0, 4)])
    assert obj["ppo"] == pytest.approx(adv.mean().item(), abs=1e-5)
    assert obj["logistic"] == pytest.approx(-np.log(2) * adv.abs().mean().item(), rel=1e-5)
    # the transitions are theta_star's: their stored log-probs are the model's
    t = trans["tasks"][0]
    assert torch.allclose(ctx.model(t["obs"], t["actions"]), t["logp_star"])


def test_nmi_floor_and_relative_error_invariances() -> None:
    ref = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    mean, std = random_nmi(ref, [3, 3, 4], draws=500, seed=0)
    assert 0.05 < mean < 0.5 and std > 0
    assert normalized_mutual_info_score(ref, ref) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    U = rng.normal(size=(6, 6))
    U = U + U.T
    assert relative_error(U, U) == pytest.approx(0.0, abs=1e-12)
    assert relative_error(2 * U + 3, U) == pytest.approx(0.0, abs=1e-12)  # the SDP sees the standardised U
    assert relative_error(-U, U) == pytest.approx(2.0)


def test_a_grouping_is_read_from_a_groups_json_a_list_file_or_inline(tmp_path: Path) -> None:
    """``--groups`` (compare, train): a run's groups.json, a file holding a list of index lists, or that list
    written inline give the same groups; a list that does not partition the tasks, broken JSON and a missing file
    are one clear error each."""
    from policygradex.common.errors import PolicyGradExError

    want = [[0, 1, 9], [2, 3, 4], [5, 6, 7, 8]]
    run = tmp_path / "groups.json"
    run.write_text(json.dumps({"group_indices": [[9, 1, 0], [2, 3, 4], [5, 6, 7, 8]]}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(want))
    assert load_partition(run, 10) == load_partition(plain, 10) == load_partition(Path(json.dumps(want)), 10) == want
    for bad, fragment in (("[[0, 1], [2, 3]]", "do not partition"), ("[[0, 1], [2", "not a JSON list"),
                          (str(tmp_path / "none.json"), "is not a file")):
        with pytest.raises(PolicyGradExError, match=fragment):
            load_partition(Path(bad), 10)


def test_random_groups_partition_all_tasks_evenly() -> None:
    groups = random_groups(10, 3, seed=5)
    assert sorted(t for g in groups for t in g) == list(range(10))
    assert sorted(len(g) for g in groups) == [3, 3, 4]
    assert groups == random_groups(10, 3, seed=5) and groups != random_groups(10, 3, seed=6)


# ----------------------------------------------------------------------------------------------- commands
def test_check_linear_error_grows_with_distance(tiny_run: Path, tmp_path: Path, cli) -> None:
    run = _copy(tiny_run, tmp_path)
    rc, out, err = cli("check-linear", run, "--num-subsets", "2", "--subset-size", "3", "--distances",
                       "0.001,0.05", "--backend", "sequential")
    assert rc == 0, err
    record = json.loads((run / "check_linear" / "check_linear.json").read_text())
    small, large = record["table"]
    assert small["subsets_reached"] == large["subsets_reached"] == 2
    # first order: the residual of the linearisation shrinks quadratically with the step
    assert small["rss_change_mean"] < 0.01
    assert small["rss_change_mean"] < large["rss_change_mean"]
    for res in record["per_subset"]:
        for row in res["rows"]:
            assert row["distance_at_snapshot"] >= row["distance"]
    assert "| 0.1% | 2 |" in out
    assert (run / "check_linear" / "check_linear.md").exists()


def test_ground_truth_then_compare_end_to_end_with_resume(tiny_run: Path, tmp_path: Path, cli) -> None:
    run = _copy(tiny_run, tmp_path)
    gt_args = ["ground-truth", run, "--steps-per-task", "128", "--max-subsets", "40", "--eval-episodes", "1",
               "--workers", "2"]
    rc, out, err = cli(*gt_args)
    assert rc == 0, err
    record = json.loads((run / "ground_truth" / "ground_truth.json").read_text())
    assert record["num_subsets"] == 40 and len(record["subsets"]) == 40
    # the recorded NMI is the NMI of the two partitions the record names (not just a number in [0, 1])
    from sklearn.metrics import normalized_mutual_info_score

    names = json.loads((run / "config.json").read_text())["family"]["tasks"]
    index = {t["name"]: i for i, t in enumerate(names)}

    def labels(groups: list[list[str]]) -> list[int]:
        out = [0] * len(index)
        for gi, g in enumerate(groups):
            for name in g:
                out[index[name]] = gi
        return out

    assert record["nmi"] == pytest.approx(normalized_mutual_info_score(labels(record["groups_true"]),
                                                                       labels(record["groups_estimated"])))
    from scipy.stats import spearmanr

    # Spearman of f^ against the real f(S) (returns), recomputed from the per-subset values the record lists
    rho = spearmanr([x["f_hat"] for x in record["subsets"]], [x["f_return"] for x in record["subsets"]]).statistic
    assert record["spearman"] == pytest.approx(rho)
    assert record["cost"]["speedup_flops"] > 1.0  # fine-tuning 40 subsets costs more than the surrogate
    variants = record["surrogate_variants"]
    assert set(variants) == {"held_out", "in_sample"} and record["run_evaluation"] == "in_sample"  # the default
    assert variants["in_sample"]["spearman"] == pytest.approx(record["spearman"])  # the run's own f^ and f
    assert "held_out |" in out and "in_sample (the run's) |" in out
    truth = json.loads((run / "ground_truth" / "groups_true.json").read_text())
    assert sorted(i for g in truth["group_indices"] for i in g) == list(range(10))
    for name in ("ground_truth.md", "affinity_vs_true.png", "f_hat_vs_f.png", "affinity_true.npy"):
        assert (run / "ground_truth" / name).exists(), name
    # resume: lose two finished jobs, rerun sequentially; the real f(S) come out the same
    jobs = sorted((run / "jobs").glob("*.json"))
    for p in jobs[:2]:
        p.unlink()
    rc, _, err = cli(*gt_args[:-2], "--backend", "sequential")
    assert rc == 0, err
    again = json.loads((run / "ground_truth" / "ground_truth.json").read_text())
    assert [s["f_return"] for s in again["subsets"]] == [s["f_return"] for s in record["subsets"]]
    assert again["groups_true"] == record["groups_true"]
    # a second seed per subset: replicate 0 comes from the cache, replicate 1 is new, f(S) is their mean
    before = len(list((run / "jobs").glob("*.json")))
    distinct = len({tuple(s["tasks"]) for s in record["subsets"]})
    rc, out, err = cli(*gt_args, "--seeds-per-subset", "2")
    assert rc == 0, err
    assert len(list((run / "jobs").glob("*.json"))) == before + distinct
    assert "2 seed(s) each" in out and "half vs half" in out
    tr = json.loads((run / "ground_truth" / "ground_truth.json").read_text())["test_retest"]
    assert set(tr) >= {"nmi_halves", "nmi_estimated_vs_halves", "reliability_seeds"}  # values: the test by hand below

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]))
    rc, out, err = cli("compare", run, "--seeds", "2", "--steps-per-task", "128", "--eval-episodes", "1",
                       "--ablate-k", "1,2", "--workers", "2", "--groups", f"halves={mine}", "--single")
    assert rc == 0, err
    assert "Negative transfer" in out
    cmp = json.loads((run / "compare" / "compare.json").read_text())
    methods = cmp["methods"]
    assert {"multitask", "random", "gradient_similarity", "policygradex", "ground_truth",
            "policygradex k=1", "policygradex k=2", "halves", "single"} <= set(methods)
    assert methods["single"]["groups"] == [[name] for name in cmp["task_names"]]
    assert methods["halves"]["groups"] == [cmp["task_names"][:5], cmp["task_names"][5:]]
    # k = 1 is the multitask policy: the same training jobs, the same numbers
    assert methods["policygradex k=1"]["per_seed"] == methods["multitask"]["per_seed"]
    for row in methods.values():
        assert len(row["per_seed"]) == 2 and len(row["per_task_mean"]) == 10
    assert methods["policygradex"]["policygradex_improvement"] is None
    pgx, mt = np.array(methods["policygradex"]["per_seed"]), np.array(methods["multitask"]["per_seed"])
    assert methods["multitask"]["policygradex_difference"] == pytest.approx(pgx.mean() - mt.mean())
    # k = 1 shares every training job with multitask, seed by seed: the paired difference is exactly 0 +- 0
    assert methods["policygradex k=1"]["policygradex_difference"] == methods["multitask"]["policygradex_difference"]
    assert methods["policygradex k=1"]["difference_stderr"] == methods["multitask"]["difference_stderr"]
    assert "paired by seed" in cmp["difference_analysis"]
    assert cmp["steps_per_task"] == cmp["steps_per_task_asked"] == 128
    assert (run / "compare" / "learning_curves.png").exists() and "| policygradex |" in out


def test_evaluation_commands_give_one_line_errors(tiny_run: Path, tmp_path: Path, cli) -> None:
    rc, _, err = cli("ground-truth", tmp_path / "nowhere")
    assert_one_line_error(rc, err, "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = cli("compare", empty)
    assert_one_line_error(rc, err, "config.json is missing")
    rc, _, err = cli("ground-truth", tiny_run, "--max-subsets", "1")
    assert_one_line_error(rc, err, "--max-subsets")
    rc, _, err = cli("compare", tiny_run, "--workers", "0")
    assert_one_line_error(rc, err, "--workers")
    rc, _, err = cli("compare", tiny_run, "--ablate-k", "11")
    assert_one_line_error(rc, err, "--ablate-k 11")
    rc, _, err = cli("check-linear", tiny_run, "--ray-address", "x:1")
    assert_one_line_error(rc, err, "--backend ray")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([[0, 1], [1, 2]]))
    rc, _, err = cli("compare", tiny_run, "--groups", f"mine={bad}")
    assert_one_line_error(rc, err, "do not partition the 10 tasks")
    rc, _, err = cli("compare", tiny_run, "--groups", f"random={bad}")
    assert_one_line_error(rc, err, "'random' is taken")
    rc, _, err = cli("compare", tiny_run, "--groups", "no-equals-sign")
    assert rc == 2 and "NAME=PATH" in err


def test_interaction_spearman_ignores_additive_task_effects() -> None:
    from policygradex.analysis.scores import interaction_spearman
    from policygradex.pipeline.surrogate import sample_subsets

    n = 8
    subsets = sample_subsets(n, 4, 120, seed=1).subsets
    rng = np.random.default_rng(0)
    blocks = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    inter = np.array([sum(blocks[i] == blocks[j] for i in s for j in s if i < j) for s in subsets], float)
    inter += 0.1 * rng.normal(size=len(subsets))
    u_hat, u = rng.normal(size=n) * 10, -rng.normal(size=n) * 10
    f_hat = inter + np.array([u_hat[s].sum() for s in subsets])
    f = inter + np.array([u[s].sum() for s in subsets])
    assert interaction_spearman(subsets, f_hat, f, n) > 0.95
    assert interaction_spearman(subsets, f_hat, -f, n) < -0.95


def test_test_retest_of_the_ground_truth_on_planted_groups() -> None:
    """Replicates that share a planted block structure agree with each other and with an estimate that has it;
    replicates of pure noise agree with nothing."""
    from policygradex.analysis.scores import test_retest
    from policygradex.pipeline.surrogate import sample_subsets

    n, k = 9, 3
    subsets = sample_subsets(n, 4, 100, seed=2).subsets
    blocks = np.repeat(np.arange(k), 3)
    inter = np.array([sum(blocks[i] == blocks[j] for i in s for j in s if i < j) for s in subsets], float)
    rng = np.random.default_rng(0)
    clean = inter + 0.05 * rng.normal(size=(4, len(subsets)))
    tr = test_retest(subsets, inter, clean, blocks, k, "SCS")
    assert tr["nmi_halves"] == pytest.approx(1.0) and tr["nmi_estimated_vs_halves"] == pytest.approx(1.0)
    assert tr["reliability_seeds"] > 0.95 and tr["spearman_interaction_halves"] > 0.9
    noise = rng.normal(size=(4, len(subsets)))
    tr = test_retest(subsets, inter, noise, blocks, k, "SCS")
    assert tr["nmi_estimated_vs_halves"] < 0.8 and abs(tr["spearman_interaction_estimated_vs_halves"]) < 0.3


def test_subset_objectives_without_held_out_transitions() -> None:
    """--holdout-fraction 0 (the paper's setting) crashed ground-truth with ZeroDivisionError: with nothing held
    out the real objectives are measured on all transitions. At theta_star itself (ratio 1) they equal mean(A) and
    -log(2) mean(|A|), by hand."""
    import torch

    from policygradex.analysis.context import subset_objectives

    class Same(torch.nn.Module):  # log pi = log pi_theta_star: ratio 1 everywhere
        def forward(self, obs, act):
            return obs[:, 0]

    adv = torch.tensor([1.0, -2.0, 0.5, 3.0])
    task = {"obs": torch.tensor([[0.1], [0.2], [0.3], [0.4]]), "actions": torch.zeros(4),
            "advantages": adv, "logp_star": torch.tensor([0.1, 0.2, 0.3, 0.4])}
    trans = {"n_fit": 4, "tasks": [task, task]}
    out = subset_objectives(Same(), trans, [0, 1], clip_coef=0.2)
    assert out["ppo"] == pytest.approx(float(adv.mean()))
    assert out["logistic"] == pytest.approx(-float(np.log(2.0) * adv.abs().mean()))
    held = subset_objectives(Same(), {"n_fit": 2, "tasks": [task]}, [0], clip_coef=0.2)
    assert held["ppo"] == pytest.approx(float(adv[2:].mean()))  # with a held-out part, only that part counts


def test_transfer_warning_names_the_tasks_far_below_their_single_task_return() -> None:
    """Multitask at 40% of the single-task return on task b (below the 50% line), 90% on a: b is named, a is not;
    the mean share is (0.9 + 0.4) / 2. Without a single row there is nothing to say."""
    from policygradex.analysis.compare import transfer_lines

    record = {"task_names": ["a", "b"],
              "methods": {"single": {"per_task_mean": [100.0, 200.0]}, "multitask": {"per_task_mean": [90.0, 80.0]}}}
    text = "\n".join(transfer_lines(record))
    assert "reaches 65% of what each task reaches" in text
    assert "b (40%)" in text and "a (" not in text and "Warning" in text
    del record["methods"]["single"]
    assert transfer_lines(record) == []


def test_paired_difference_by_hand() -> None:
    """Mean and standard error of per-seed differences: groupings that differ by a constant in every seed (they
    share what varies between seeds) are resolved exactly, where a two-sample error would not resolve them."""
    from policygradex.analysis.compare import paired_difference

    assert paired_difference(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])) == (0.0, 0.0)
    diff, se = paired_difference(np.array([10.0, 20.0, 30.0]), np.array([9.0, 19.0, 29.0]))
    assert diff == pytest.approx(1.0) and se == pytest.approx(0.0, abs=1e-12)
    diff, se = paired_difference(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 1.0]))
    # differences 0, 1, 3: mean 4/3, sample sd sqrt(7/3), SE sqrt(7/9)
    assert diff == pytest.approx(4 / 3) and se == pytest.approx(np.sqrt(7 / 9))


def test_test_retest_scores_two_halves_with_known_groups() -> None:
    """Replicates whose halves hold different planted pairs of blocks: the halves' groups are those blocks, so the
    NMI between halves and with the estimate are those of the known partitions (sklearn on the labels)."""
    import itertools

    from sklearn.metrics import normalized_mutual_info_score

    from policygradex.analysis.scores import test_retest

    n = 6
    subsets = [list(s) for s in itertools.combinations(range(n), 3)]
    p0, p1 = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0]  # half 0 (even replicates), half 1 (odd replicates)

    def f(labels: list[int]) -> np.ndarray:  # +1 for each pair of a subset in one block, -1 otherwise
        return np.array([sum(1.0 if labels[a] == labels[b] else -1.0 for a, b in itertools.combinations(s, 2))
                         for s in subsets])

    replicates = np.stack([f(p0), f(p1), f(p0), f(p1)])
    estimate = np.array([0, 1, 0, 1, 0, 1])
    tr = test_retest(subsets, f(p0), replicates, estimate, k=2, solver="SCS")
    assert tr["nmi_halves"] == pytest.approx(normalized_mutual_info_score(p0, p1))
    assert tr["nmi_estimated_vs_halves"] == pytest.approx(
        np.mean([normalized_mutual_info_score(estimate, p) for p in (p0, p1)]))
    assert tr["nmi_halves"] < 0.5  # the two planted partitions disagree on two tasks of six


def test_compare_reuses_trainings_across_runs_and_from_older_caches(tiny_run: Path, tmp_path: Path, cli) -> None:
    """A training from scratch depends on the family, network, budget, tasks and seed only: a run that differs
    from another in a feature option reuses the other's compare trainings (--trainings-from), and trainings cached
    under the earlier key (the run's whole configuration pinned) are found again rather than retrained."""
    from policygradex.common.launcher import JobSpec

    a = tmp_path / "a"
    shutil.copytree(tiny_run, a)
    args = ["--seeds", "1", "--steps-per-task", "64", "--eval-episodes", "1", "--backend", "sequential"]
    rc, _, err = cli("compare", a, *args)
    assert rc == 0, err
    first = json.loads((a / "compare" / "compare.json").read_text())["methods"]
    trainings = {p.name: json.loads(p.read_text()) for p in (a / "jobs").glob("*.json")
                 if json.loads(p.read_text())["spec"]["args"].get("init") == "scratch"}
    assert trainings and all(set(j["spec"]["args"]["config"]) == {"family", "network"} for j in trainings.values())

    # b: the same theta_star and groups, another clustering option in its configuration
    b = tmp_path / "b"
    shutil.copytree(tiny_run, b)
    record = json.loads((b / "config.json").read_text())
    record["config"]["cluster"]["solver"] = "SCS" if record["config"]["cluster"]["solver"] != "SCS" else "CLARABEL"
    (b / "config.json").write_text(json.dumps(record))
    rc, _, err = cli("compare", b, *args, "--trainings-from", a)
    assert rc == 0, err
    assert f"{len(trainings)} trainings reused" in err
    copied = {p.name: json.loads(p.read_text())["result"] for p in (b / "jobs").glob("*.json")
              if json.loads(p.read_text())["spec"]["args"].get("init") == "scratch"}
    # the same cache keys, and the results are a's own (a training run again would have taken other seconds)
    assert {name: job["result"] for name, job in trainings.items()} == copied
    assert json.loads((b / "compare" / "compare.json").read_text())["methods"] == first

    # another budget is another training: nothing to reuse
    c = tmp_path / "c"
    shutil.copytree(tiny_run, c)
    rc, _, err = cli("compare", c, *args[:2], "--steps-per-task", "32", *args[4:], "--trainings-from", a)
    assert rc == 0, err
    assert "reused" not in err

    # a's trainings as a compare before this change cached them: the whole configuration in the key
    whole = json.loads((a / "config.json").read_text())["config"]
    for name, job in trainings.items():
        (a / "jobs" / name).unlink()
        spec = JobSpec(job["spec"]["fn"], {**job["spec"]["args"], "config": whole}, job["spec"]["seed"])
        (a / "jobs" / f"{spec.key()}.json").write_text(json.dumps({"spec": {**job["spec"], "args": spec.args},
                                                                   "result": job["result"]}))
    rc, _, err = cli("compare", a, *args)
    assert rc == 0, err
    assert f"{len(trainings)} trainings reused" in err
    assert {p.name: json.loads(p.read_text())["result"] for p in (a / "jobs").glob("*.json")
            if p.name in trainings} == {name: job["result"] for name, job in trainings.items()}
    assert json.loads((a / "compare" / "compare.json").read_text())["methods"] == first

    rc, _, err = cli("compare", a, "--trainings-from", tmp_path / "nowhere")
    assert_one_line_error(rc, err, "--trainings-from")
