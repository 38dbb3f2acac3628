"""Same input, same answer: the groups and the affinity do not depend on the thread count or on interruptions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import policygradex.pipeline.feature_blocks as feature_blocks_mod
import policygradex.pipeline.stages as stages_mod
import policygradex.rl.ppo as ppo_mod
from policygradex.cli.main import main

from ..helpers import tiny_run_args

ARTIFACTS = ("affinity.npy", "groups.json", "surrogate.json", "surrogate_v.npy")


def _same_bytes(a: Path, b: Path) -> None:
    """Identical artifacts: .npy and .json byte for byte; the zip containers (torch.save,
    np.savez: theta_star, subsets.npz or statistics.npz, every feature or block statistics file) carry file names
    and timestamps, so their arrays are compared exactly instead."""
    sampled = (a / "subsets.npz").exists()  # exact or Newton; the closed form writes statistics.npz instead
    assert sampled or (a / "statistics.npz").exists()
    for name in ARTIFACTS:
        if name != "surrogate_v.npy" or sampled:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa, sb = torch.load(a / "theta_star.pt")["state_dict"], torch.load(b / "theta_star.pt")["state_dict"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    for f in [*sorted(a.glob("*.npz")), *sorted((a / "features").glob("*.npz"))]:
        za, zb = np.load(f), np.load(b / f.relative_to(a))
        assert za.files == zb.files
        for key in za.files:
            assert za[key].tobytes() == zb[key].tobytes(), (f.name, key)


def test_thread_environment_does_not_change_results(tmp_path: Path) -> None:
    """The same tiny run under OMP_NUM_THREADS / MKL_NUM_THREADS = 1 and = 2 (fresh processes, as a user on
    another machine would run it): byte-identical theta_star, features, surrogate, affinity and groups."""
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        code = "import sys; from policygradex.cli.main import main; sys.exit(main(sys.argv[1:]))"
        proc = subprocess.run([sys.executable, "-c", code, *tiny_run_args(out), "--k", "2"], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    _same_bytes(*outs)


class _Counter:
    """Raise KeyboardInterrupt (Ctrl-C) on the n-th call of the wrapped function."""

    def __init__(self, fn, n: int) -> None:
        self.fn, self.n, self.calls = fn, n, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return self.fn(*args, **kwargs)


def test_resume_after_ctrl_c_in_every_stage_is_byte_identical(tiny_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in meta-training (after a checkpoint, before the next), in the features (after two of ten task
    files), in the surrogate fits and in the clustering; the same command is rerun after each. The final run
    directory equals an uninterrupted run's byte for byte."""
    out = tmp_path / "run"
    args = tiny_run_args(out)
    interrupts = [
        (ppo_mod, "ppo_update", 3),                 # tiny: 4 PPO iterations, a checkpoint every 2
        (feature_blocks_mod, "atomic_save_npz", 3),  # the third task's feature file
        (stages_mod, "run_surrogate", 1),
        (stages_mod, "cluster", 1),
    ]
    for module, name, n in interrupts:
        with monkeypatch.context() as m:
            m.setattr(module, name, _Counter(getattr(module, name), n))
            assert main(args) == 130, name
    assert (out / "features" / "task_001.npz").exists()
    assert main(args) == 0
    _same_bytes(tiny_run, out)


@pytest.mark.parametrize("store", ["features", "statistics"])
@pytest.mark.parametrize("backend", ["process", "ray"])
def test_feature_blocks_give_the_same_files_on_every_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             backend: str, store: str) -> None:
    """The feature stage in blocks of 4 tasks, writing feature files or (``--store statistics``, with the closed
    form) one statistics file per block: one by one in this process, on a pool of 2 worker processes, or on a
    local Ray cluster of 2 workers, byte-identical files, statistics, affinity and groups; a Ctrl-C in the third
    block keeps the two finished blocks (their files are not rewritten) and the resumed run is the same again."""
    if backend == "ray":
        pytest.importorskip("ray")
    extra_args = ("--surrogate", "closed_form") if store == "statistics" else ()
    args = lambda out, *extra: tiny_run_args(out, "planted(n=10,groups=2)", "--k", "2", "--task-block", "4",
                                             "--store", store, *extra_args, *extra)  # noqa: E731
    kept = ([f"statistics_{b:04d}.npz" for b in range(2)] if store == "statistics"
            else [f"task_{i:03d}.npz" for i in range(8)])  # the files of the first two blocks
    plain = tmp_path / "plain"
    assert main(args(plain)) == 0
    meta = (plain / "features" / "meta.json").read_text()
    assert '"blocks": 3' in meta
    assert len(list((plain / "features").glob("*.npz"))) == (3 if store == "statistics" else 10)
    other = tmp_path / backend
    assert main(args(other, "--backend", backend, "--workers", "2")) == 0
    _same_bytes(plain, other)
    if backend == "process":
        resumed = tmp_path / "resumed"
        with monkeypatch.context() as m:
            m.setattr(feature_blocks_mod, "block_transitions", _Counter(feature_blocks_mod.block_transitions, 3))
            assert main(args(resumed)) == 130
        first = {f.name: f.stat().st_mtime_ns for f in (resumed / "features").glob("*.npz")}
        assert sorted(first) == kept
        assert main(args(resumed)) == 0
        assert all((resumed / "features" / name).stat().st_mtime_ns == t for name, t in first.items())
        _same_bytes(plain, resumed)


@pytest.mark.parametrize("baseline", ["policy", "per_task", "auto"])
def test_batch_normalisation_over_blocks_uses_every_task(tmp_path: Path, baseline: str) -> None:
    """--advantage-normalization batch with 3 blocks: every file's labels and weights are sign and size of its raw
    advantages standardised by the mean and standard deviation over all tasks' advantages; with --baseline per_task
    likewise the split labels and weights (baselines fitted apart on each half) from the split advantages, and with
    auto also the value head's from its own."""
    out = tmp_path / "batch"
    assert main(tiny_run_args(out, "planted(n=10,groups=2)", "--k", "2", "--task-block", "4",
                              "--advantage-normalization", "batch", "--baseline", baseline)) == 0
    files = [np.load(f) for f in sorted((out / "features").glob("task_*.npz"))]
    keys = [("advantages", "labels", "weights")]
    if baseline != "policy":
        keys.append(("split_advantages", "split_labels", "split_weights"))
    else:
        assert not any("split_labels" in z.files for z in files)
    if baseline == "auto":
        keys.append(("value_head_advantages", "value_head_labels", "value_head_weights"))
    for raw, label, weight in keys:
        allv = np.concatenate([z[raw].astype(np.float64) for z in files])
        mu, sd = allv.mean(), allv.std() + 1e-8
        for z in files:
            a = (z[raw].astype(np.float64) - mu) / sd
            np.testing.assert_array_equal(z[label], np.where(a >= 0, 1.0, -1.0).astype(np.float32))
            np.testing.assert_allclose(z[weight], np.abs(a), rtol=1e-6)


def test_closed_form_run_is_byte_identical_across_threads_and_resume(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The closed-form surrogate (first-order curvature terms, confidence over blocks of transitions): a run under OMP_NUM_THREADS=2
    and a run interrupted in its statistics and in its split-half check then resumed give the same affinity, groups and
    statistics as a plain run."""
    import policygradex.pipeline.confidence as confidence_mod

    args = lambda out: tiny_run_args(out, "planted(n=14,groups=2)", "--k", "2", "--surrogate", "closed_form",
                                         "--curvature", "first_order")  # noqa: E731
    plain = tmp_path / "plain"
    assert main(args(plain)) == 0
    other = tmp_path / "threads"
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    code = "import sys; from policygradex.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *args(other)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    resumed = tmp_path / "resumed"
    for module, name in ((stages_mod, "statistics_of_files"), (confidence_mod, "expected_affinity")):
        with monkeypatch.context() as m:
            m.setattr(module, name, _Counter(getattr(module, name), 1))
            assert main(args(resumed)) == 130, name
    assert main(args(resumed)) == 0
    for out in (other, resumed):
        for name in ("affinity.npy", "groups.json", "surrogate.json"):
            assert (plain / name).read_bytes() == (out / name).read_bytes(), (out.name, name)
        sa, sb = np.load(plain / "statistics.npz"), np.load(out / "statistics.npz")
        assert sa.files == sb.files and all(sa[k].tobytes() == sb[k].tobytes() for k in sa.files)
