"""--target-reliability: N grows until the gradient signal is reliable enough, and only where it is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from policygradex.pipeline.config import FeatureConfig
from policygradex.pipeline.transitions_budget import growth_line, next_transitions, spearman_brown_factor
from tests.helpers import assert_one_line_error

GROW = ("--target-reliability", "0.95", "--max-transitions", "1024", "--expansion-points", "1")
"""Growth to the cap, at theta_star alone: an earlier expansion point grows its own N by the same stage code, and
its reliability would enter the confidence's combined one that these tests compare with theta_star's growth."""


def _spearman_brown(r: float, m: float) -> float:
    return m * r / (1 + (m - 1) * r)


def test_next_transitions_projects_with_spearman_brown() -> None:
    fc = FeatureConfig(transitions_per_task=1000, target_reliability=0.8, max_transitions_per_task=64_000)
    # r = 0.5 reaches 0.8 at exactly 4 N by Spearman-Brown: 4 x 0.5 / (1 + 3 x 0.5) = 0.8
    assert spearman_brown_factor(0.5, 0.8) == pytest.approx(4.0)
    assert _spearman_brown(0.5, 4.0) == pytest.approx(0.8)
    assert next_transitions(1000, 0.5, fc) == 4000
    # the factor is rounded up to a power of two, and at least 2
    assert next_transitions(1000, 0.45, fc) == 8000  # m = 4.89
    assert next_transitions(1000, 0.79, fc) == 2000  # m = 1.06
    # no signal to project from: straight to the cap; the cap bounds every step
    assert next_transitions(1000, 0.0, fc) == 64_000
    assert next_transitions(1000, -0.3, fc) == 64_000
    assert next_transitions(32_000, 0.1, fc) == 64_000
    # nothing to do: target met, at the cap, not measurable, or off
    assert next_transitions(1000, 0.8, fc) is None
    assert next_transitions(64_000, 0.5, fc) is None
    assert next_transitions(1000, None, fc) is None
    assert next_transitions(1000, 0.5, FeatureConfig(transitions_per_task=1000)) is None


def test_the_default_cap_is_four_times_the_chosen_n() -> None:
    # a run that chose a small N (a slow environment) is not grown to a fixed cap sixteen times its N
    small = FeatureConfig(transitions_per_task=2048, target_reliability=0.9)
    assert next_transitions(2048, 0.0, small) == 8192
    assert next_transitions(2048, 0.3, small) == 8192  # Spearman-Brown asks for m = 21: capped at 4 N
    assert next_transitions(8192, 0.5, small) is None
    demo = FeatureConfig(transitions_per_task=16_384, target_reliability=0.9)
    assert next_transitions(16_384, 0.5, demo) == 65_536
    assert growth_line([{"N": 2048, "reliability": 0.3}, {"N": 8192, "reliability": 0.6}], small).endswith(
        "still below the target at the cap, N = 8,192.")


def _run(cli, out: Path, *extra: str) -> None:
    rc, _, err = cli("run", "planted", "--preset", "tiny", "--k", "3", "--out", out, *extra)
    assert rc == 0, err


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny planted run whose signal at N = 128 is noise, so that --target-reliability 0.95 grows N to the cap."""
    from policygradex.cli.main import main

    out = tmp_path_factory.mktemp("grown") / "run"
    assert main(["run", "planted", "--preset", "tiny", "--k", "3", "--task-block", "5", "--out", str(out), *GROW]) == 0
    return out


def test_n_grows_to_the_cap_and_every_stage_sees_the_grown_features(grown: Path) -> None:
    meta = json.loads((grown / "features" / "meta.json").read_text())
    growth = meta["growth"]
    assert [g["N"] for g in growth] == [128, 1024] and meta["N"] == 1024
    assert growth[0]["reliability"] < 0.95  # why it grew
    for i in range(10):
        assert np.load(grown / "features" / f"task_{i:03d}.npz")["labels"].shape == (1024,)
    # the confidence's gradient reliability is the one measured on the final features
    groups = json.loads((grown / "groups.json").read_text())
    assert groups["confidence"]["gradient_reliability"] == pytest.approx(growth[-1]["reliability"])
    report = (grown / "report.md").read_text()
    assert "N = 1024 transitions per task" in report and "--target-reliability 0.95" in report
    # analyses that recollect transitions (evaluate, stability) collect as many as the features were made from
    from policygradex.analysis.context import load_context

    assert load_context(grown).cfg.features.transitions_per_task == 1024


def test_an_interrupted_growth_resumes_at_the_grown_n_and_keeps_its_blocks(grown: Path, tmp_path: Path, cli) -> None:
    """Killed while collecting N = 1024: the measurement at 128 is on record, block 0 (tasks 0-4) is written at
    1024, block 1 is missing. The resumed run collects block 1 only, at 1024, and ends byte-identical."""
    run = tmp_path / "run"
    shutil.copytree(grown, run)
    meta_path = run / "features" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["growth"] = meta["growth"][:1]
    meta_path.write_text(json.dumps(meta))
    for i in range(5, 10):
        (run / "features" / f"task_{i:03d}.npz").unlink()
    kept = {i: (run / "features" / f"task_{i:03d}.npz").stat().st_mtime_ns for i in range(5)}
    _run(cli, run, *GROW, "--task-block", "5")
    assert {i: (run / "features" / f"task_{i:03d}.npz").stat().st_mtime_ns for i in range(5)} == kept
    assert (run / "affinity.npy").read_bytes() == (grown / "affinity.npy").read_bytes()
    assert (run / "groups.json").read_text() == (grown / "groups.json").read_text()


def test_a_file_left_at_the_old_n_is_collected_again(grown: Path, tmp_path: Path, cli) -> None:
    """A feature file from before the growth (128 rows) in a finished grown run is not taken for a 1024-row one."""
    run = tmp_path / "run"
    shutil.copytree(grown, run)
    base = tmp_path / "base"
    _run(cli, base, "--task-block", "5")
    shutil.copy(base / "features" / "task_007.npz", run / "features" / "task_007.npz")
    _run(cli, run, *GROW, "--task-block", "5")
    assert np.load(run / "features" / "task_007.npz")["labels"].shape == (1024,)
    assert (run / "affinity.npy").read_bytes() == (grown / "affinity.npy").read_bytes()


def test_a_run_already_at_the_target_is_unchanged(tmp_path: Path, cli) -> None:
    """Where the signal already meets the target, the option changes nothing: the same affinity and groups, byte
    for byte, as the run without it, and one measurement on record."""
    _run(cli, tmp_path / "plain", "--transitions", "1024")
    _run(cli, tmp_path / "target", "--transitions", "1024", "--target-reliability", "0.5")
    meta = json.loads((tmp_path / "target" / "features" / "meta.json").read_text())
    assert [g["N"] for g in meta["growth"]] == [1024] and meta["growth"][0]["reliability"] >= 0.5
    for name in ("affinity.npy", "subsets.npz"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "target" / name).read_bytes()
    plain = json.loads((tmp_path / "plain" / "groups.json").read_text())
    target = json.loads((tmp_path / "target" / "groups.json").read_text())
    plain.pop("cluster_config", None), target.pop("cluster_config", None)
    assert plain == target


@pytest.mark.parametrize("extra, fragment", [
    (("--target-reliability", "1.5"), "--target-reliability must be in (0, 1)"),
    (("--target-reliability", "0.9", "--transitions", "256", "--max-transitions", "128"), "--max-transitions 128"),
])
def test_bad_budget_options_are_one_line_errors(tmp_path: Path, cli, extra, fragment) -> None:
    rc, _, err = cli("run", "planted", "--preset", "tiny", "--k", "3", "--out", tmp_path / "r", *extra)
    assert_one_line_error(rc, err, fragment)
    assert not (tmp_path / "r" / "theta_star.pt").exists()


def test_the_cap_is_recorded_and_an_older_run_directory_resumes(tmp_path: Path, cli) -> None:
    """The default cap is resolved to 4 x N in config.json when a target is on. A run directory written when the
    cap was a fixed 65,536 (recorded even without a target) resumes with the same command, recomputing nothing."""
    _run(cli, tmp_path / "target", "--transitions", "256", "--target-reliability", "0.99")
    record = json.loads((tmp_path / "target" / "config.json").read_text())["config"]["features"]
    assert record["max_transitions_per_task"] == 1024
    old = tmp_path / "old"
    _run(cli, old)
    config = json.loads((old / "config.json").read_text())
    config["config"]["features"]["max_transitions_per_task"] = 65_536
    (old / "config.json").write_text(json.dumps(config))
    before = (old / "affinity.npy").stat().st_mtime_ns
    _run(cli, old)
    assert (old / "affinity.npy").stat().st_mtime_ns == before
    # with a target on, the cap is compared: another cap is another run
    rc, _, err = cli("run", "planted", "--preset", "tiny", "--k", "3", "--out", tmp_path / "target", "--transitions",
                     "256", "--target-reliability", "0.99", "--max-transitions", "512")
    assert rc == 2 and "max_transitions_per_task: 1024 -> 512" in err
