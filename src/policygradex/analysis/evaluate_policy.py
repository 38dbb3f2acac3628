"""``policygradex evaluate POLICY``: a saved policy's return on its tasks (or others of its family), and videos.

The policy file alone is enough (:func:`policygradex.rl.saved_policy.load_policy`); the family is rebuilt from the
spec the file records, so a user's own family must be importable. Returns are over fresh episodes (one per
sub-environment, as ``compare`` and the cards score), mean and population std over the episodes. ``--video DIR``
records episodes with Gymnasium's ``RecordVideo`` (it needs moviepy, the ``video`` extra), acting through
``predict``, as a user's own loop would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policygradex.analysis.scores import per_task_lines
from policygradex.common.errors import PolicyGradExError
from policygradex.envs.registry import load_family
from policygradex.rl.evaluate import evaluate_episodes
from policygradex.rl.saved_policy import SavedPolicy, load_policy


@dataclass(frozen=True)
class EvaluateConfig:
    """Options of ``policygradex evaluate``."""

    episodes: int = 10
    """Fresh episodes per task."""
    tasks: tuple[str, ...] = ()
    """Tasks to evaluate on, by name or family index (empty: the tasks the policy was trained on)."""
    deterministic: bool = True
    """The most likely action (``predict``'s default) rather than samples from the policy."""
    seed: int = 0
    """Seed of the evaluation episodes (and of the sampled actions, when not deterministic)."""
    video: str | None = None
    """Record episodes into this directory (one mp4 per task and episode; needs moviepy)."""
    video_episodes: int = 1
    """Episodes recorded per task with ``video``."""


def evaluate_policy(path: Path, ec: EvaluateConfig) -> dict[str, Any]:
    """Per-task return (mean, std) and the family's metrics of the policy at ``path``; videos with ``ec.video``."""
    if ec.episodes < 1 or ec.video_episodes < 1:
        raise PolicyGradExError("--episodes and --video-episodes must be >= 1")
    if ec.video is not None:
        require_video()
    policy = load_policy(path)
    family = load_family(policy.family_spec)
    if family.task_names != policy.family_task_names:
        raise PolicyGradExError(f"{path}: the family {policy.family_spec!r} now has other tasks than when the policy "
                                "was trained; evaluate it where that family is as it was")
    task_ids = sorted({policy.task_index(t if not t.isdigit() else int(t)) for t in ec.tasks}) if ec.tasks \
        else policy.task_ids
    import torch

    torch.manual_seed(ec.seed)
    evaluation = evaluate_episodes(family, task_ids, policy.model, ec.episodes, ec.seed, policy.task_dim > 0,
                                   ec.deterministic)
    record: dict[str, Any] = {
        "policy": str(policy.path), "family": family.name, "network": policy.network.name,
        "trained_on": policy.tasks, "headline": family.headline, "episodes": ec.episodes,
        "deterministic": ec.deterministic, "seed": ec.seed,
        "per_task": {family.tasks[t].name: evaluation[t] for t in task_ids},
    }
    if ec.video is not None:
        record["videos"] = record_videos(policy, [family.tasks[t].name for t in task_ids], Path(ec.video),
                                         ec.video_episodes, ec.seed, ec.deterministic)
    return record


def require_video() -> None:
    """One clear line when Gymnasium's RecordVideo cannot write videos here."""
    try:
        import moviepy  # noqa: F401  (gymnasium's RecordVideo writes with it)
    except ImportError:
        raise PolicyGradExError("--video needs moviepy, which is not installed: pip install 'policygradex[video]' "
                                "(or pip install moviepy)") from None


def record_videos(policy: SavedPolicy, tasks: Sequence[str], directory: Path, episodes: int, seed: int,
                  deterministic: bool) -> list[str]:
    """Record ``episodes`` episodes of each task with RecordVideo, acting with ``policy.predict``; returns the
    files written."""
    import os
    import warnings

    import gymnasium as gym

    # frames come from rgb_array rendering, no window: SDL (pygame's renderers) need no display nor sound device
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    before = set(directory.glob("*.mp4")) if directory.is_dir() else set()
    for name in tasks:
        env = policy.make_env(name)
        env.unwrapped.render_mode = "rgb_array"  # the family's make_env takes no render mode; its envs read this
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        with warnings.catch_warnings():  # a directory that exists is fine: files of other names stay
            warnings.filterwarnings("ignore", message=".*Overwriting existing videos.*")
            env = gym.wrappers.RecordVideo(env, str(directory), episode_trigger=lambda e: True, name_prefix=safe,
                                           disable_logger=True)
        for e in range(episodes):
            obs, _ = env.reset(seed=seed + e)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(policy.predict(obs, task=name, deterministic=deterministic))
                done = bool(terminated or truncated)
        env.close()
    return sorted(str(p) for p in set(directory.glob("*.mp4")) - before)


def markdown(record: dict[str, Any]) -> str:
    headline = record["headline"]
    lines = [f"# {record['policy']}", "",
             f"`{record['network']}` policy trained on {', '.join(record['trained_on'])} ({record['family']}); "
             f"{record['episodes']} fresh episodes per task (seed {record['seed']}), "
             + ("the most likely action" if record["deterministic"] else "actions sampled from the policy")
             + "; return mean ± std over the episodes.", "", *per_task_lines(record["per_task"], headline)]
    values = [m.get(headline, m["return"]) for m in record["per_task"].values()]
    lines += ["", f"Mean {headline} over the tasks: {np.mean(values):.{1 if headline == 'return' else 3}f}"]
    if record.get("videos"):
        lines += ["", "Videos:", *(f"- {v}" for v in record["videos"])]
    return "\n".join(lines)
