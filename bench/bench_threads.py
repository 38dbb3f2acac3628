"""One torch thread or two for the demo? Times `policygradex run cartpole --preset demo --k 3` per stage with
--threads 1 and --threads 2 (fresh processes, one after the other), and checks which outputs are byte-identical,
including a run under OMP_NUM_THREADS=2 with the default --threads 1.

    .venv/bin/python bench/bench_threads.py --out results/bench_threads.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

STAGES = ("meta_train", "features", "surrogate", "affinity", "cluster")


def run(out: Path, threads: int, omp: str) -> tuple[float, dict[str, float], str]:
    env = dict(os.environ, OMP_NUM_THREADS=omp, MKL_NUM_THREADS=omp)
    cmd = [str(Path(sys.executable).parent / "policygradex"), "run", "cartpole", "--preset", "demo", "--k", "3",
           "--threads", str(threads), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, json.loads((out / "timings.json").read_text()), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("--threads 1", 1, "1"), ("--threads 2", 2, "2"), ("--threads 1, OMP_NUM_THREADS=2", 1, "2")]
        for name, threads, omp in cases:
            out = Path(tmp) / name.replace(" ", "_").replace(",", "").replace("=", "")
            wall, stages, stdout = run(out, threads, omp)
            rows.append((name, wall, stages, (out / "affinity.npy").read_bytes(), stdout))
    base = rows[0][3]
    lines = ["# Torch threads for the demo", "", "```", "python bench/bench_threads.py --out results/bench_threads.md",
             "```", "",
             f"`policygradex run cartpole --preset demo --k 3` in fresh processes, one after the other, on "
             f"{os.cpu_count()} cores; torch {torch.__version__}, Python {platform.python_version()}. Seconds per "
             "stage (from timings.json) and the whole command.", "",
             "| threads | " + " | ".join(STAGES) + " | whole command | affinity identical to --threads 1 |",
             "|---|" + "---|" * (len(STAGES) + 2)]
    for name, wall, stages, affinity, _ in rows:
        lines.append(f"| {name} | " + " | ".join(f"{stages.get(s, float('nan')):.1f}" for s in STAGES)
                     + f" | {wall:.1f} | {'yes' if affinity == base else 'no'} |")
    lines += ["", f"Speed ratio, --threads 2 / --threads 1 (whole command): {rows[1][1] / rows[0][1]:.2f}.", "",
              "Groups printed by each:", ""]
    for name, *_, stdout in rows:
        lines += [f"- {name}: " + "; ".join(line.strip() for line in stdout.splitlines()[1:])]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
