"""The runner's family defaults: what config.json records when a family brings its own gamma or task id."""

from __future__ import annotations

from dataclasses import replace

from policygradex.envs.registry import load_family
from policygradex.nets.config import NetworkConfig
from policygradex.pipeline.config import RunConfig
from policygradex.pipeline.runner import with_family_defaults
from policygradex.rl.config import PPOConfig

RESOLVED = replace(RunConfig(), network=replace(NetworkConfig(), task_id=False))
"""RunConfig() on a family without defaults: only the unchosen task id is settled (off)."""


def test_family_gamma_replaces_only_the_default():
    """A family's default_gamma replaces PPOConfig's 0.99, but not a gamma the configuration chose; no default: no
    change."""
    cartpole = load_family("cartpole")
    assert cartpole.default_gamma is None
    assert with_family_defaults(RunConfig(), cartpole) == RESOLVED
    family = replace(cartpole, default_gamma=0.8)
    resolved = with_family_defaults(RunConfig(), family)
    assert resolved.ppo == replace(PPOConfig(), gamma=0.8)
    assert replace(resolved, ppo=PPOConfig()) == RESOLVED  # nothing else changed
    chosen = replace(RESOLVED, ppo=replace(PPOConfig(), gamma=0.95))
    assert with_family_defaults(chosen, family) == chosen


def test_family_task_id_applies_only_when_the_run_does_not_choose():
    """A family that wants the task id (Meta-World) gets it when the configuration leaves task_id at None; an explicit
    choice either way is kept, and a resolved configuration resolves to itself (so a rerun resumes)."""
    family = replace(load_family("cartpole"), default_task_id=True)
    assert with_family_defaults(RunConfig(), family).network.task_id is True
    for chosen in (False, True):
        cfg = replace(RunConfig(), network=replace(NetworkConfig(), task_id=chosen))
        assert with_family_defaults(cfg, family) == cfg
    once = with_family_defaults(RunConfig(), family)
    assert with_family_defaults(once, family) == once


def test_a_run_made_before_new_options_existed_still_resumes(tiny_run, tmp_path, cli):
    """A config.json without options added later (they default to the earlier behaviour) is the same configuration:
    the same command resumes it instead of refusing it as different."""
    import json
    import shutil

    from ..helpers import tiny_run_args

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "config.json").read_text())
    for key in ("num_modules", "num_module_layers", "num_encoders", "num_parameter_sets", "paco_loss_threshold"):
        del record["config"]["network"][key]  # as written before the multitask networks existed
    (run / "config.json").write_text(json.dumps(record))
    rc, _, err = cli(*tiny_run_args(run))
    assert rc == 0, err
    assert "stage meta_train: loaded from disk" in err and "computed" not in err.split("stage cluster")[0]


def test_a_run_made_before_a_default_changed_reads_as_what_it_ran(tiny_run, tmp_path, cli):
    """A config.json written before --baseline and --common-random-numbers existed ran with the policy's value head,
    unpaired: it reads so (not as the new defaults), the default command refuses it as a different configuration
    instead of reusing its features, and the options it ran with resume it."""
    import json
    import shutil

    from policygradex.pipeline.config import RunConfig

    from ..helpers import assert_one_line_error, tiny_run_args

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    record = json.loads((run / "config.json").read_text())
    for key in ("baseline", "common_random_numbers"):
        del record["config"]["features"][key]
    (run / "config.json").write_text(json.dumps(record))
    features = RunConfig.from_dict(record["config"]).features
    assert (features.baseline, features.common_random_numbers) == ("policy", False)
    rc, _, err = cli(*tiny_run_args(run))
    assert_one_line_error(rc, err, "features.baseline: 'policy' -> 'per_task'",
                          "features.common_random_numbers: False -> True")
    rc, _, err = cli(*tiny_run_args(run, "cartpole", "--baseline", "policy", "--no-common-random-numbers"))
    assert rc == 0, err
    assert "stage features: loaded from disk" in err
