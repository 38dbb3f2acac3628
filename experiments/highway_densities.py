"""What ``vehicles_density`` does to highway-fast-v0: the evidence behind the highway family's range (envs/highway.py).
For each density and each fixed action (keep the speed, accelerate, slow down), 8 seeded episodes: how many end in a
crash, their mean length and return, and how many of the 4 observed vehicle slots are filled on average.

    .venv/bin/python experiments/highway_densities.py --out results/highway_densities.md   # ~1 min on one core
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

from policygradex.envs.highway import require_highway_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # the benchmarks' report helpers
from common import command_line, table  # noqa: E402

DENSITIES = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
ACTIONS = {"idle": 1, "faster": 3, "slower": 4}
"""highway-env's DiscreteMetaAction indices."""


def episodes(density: float, action: int, seeds: range) -> list[str]:
    env = gym.make("highway-fast-v0", config={"vehicles_density": density})
    crashes, lengths, returns, filled = 0, [], [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        length, ret = 0, 0.0
        while True:
            filled.append(obs[1:, 0].sum())  # presence of the 4 other observed vehicles
            obs, reward, terminated, truncated, _ = env.step(action)
            length, ret = length + 1, ret + reward
            if terminated or truncated:
                break
        crashes += terminated
        lengths.append(length)
        returns.append(ret)
    env.close()
    return [f"{crashes}/{len(seeds)}", f"{np.mean(lengths):.1f}", f"{np.mean(returns):.1f}", f"{np.mean(filled):.1f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("results/highway_densities.md"))
    args = ap.parse_args()
    require_highway_env()
    rows = [[f"{d:g}", name, *episodes(d, a, range(100, 108))] for d in DENSITIES for name, a in ACTIONS.items()]
    text = "\n".join([
        "# highway-fast-v0 by traffic density", "",
        f"Produced by (from the repository root): `{command_line()}`", "",
        f"highway-env {version('highway-env')}; 8 episodes per row (seeds 100-107), one fixed action throughout; "
        "an episode ends on a crash or after 30 steps.", "",
        table(["vehicles_density", "action", "crashed", "mean length", "mean return", "observed slots filled (of 4)"],
              rows), "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
