"""Regenerate results/demo.md from the demo run directories (their report.md sections, verbatim).

    policygradex run cartpole --preset demo --k 3 --out runs/demo-cartpole
    policygradex run lunarlander --preset demo --k 3 --steps-per-task 30000 --out runs/demo-lunarlander
    python experiments/demo_results.py runs/demo-cartpole runs/demo-lunarlander --out results/demo.md [--note TEXT]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
from collections.abc import Callable
from pathlib import Path

HEADER = """# Demo runs: groups found by `policygradex run`

Budget: `--preset demo`. PPO runs 100k steps per task for cartpole and 30k for lunarlander, with no task id. The
features use N = 16384 transitions per task and d = 400, each task's advantages from its own value function and every
task rolled out on the same seeds (the defaults since [crn-defaults.md](crn-defaults.md)), at theta_star and at a
policy meta-trained on half the budget from the same seed, whose standardised affinities are averaged (the default
since [expansion-defaults.md](expansion-defaults.md)). The surrogate fits all 252 subsets of 5 at each, with
l2 = 0.1 and f^ evaluated in-sample. k = 3, as in the paper. Each section below is copied verbatim from the run's report.md by
`experiments/demo_results.py`. The runs used 2 CPU cores ({cpu}) and the default single torch thread, so they give
the same bytes on this machine at any thread count. Another CPU can give another theta_star and, where the verdict
says the signal is noise, other groups ([reproducibility.md](reproducibility.md)). How the groups compare with real
subset training is in [evaluation.md](evaluation.md), measured under the earlier defaults.

Package versions: {versions}.
"""


def versions() -> str:
    import cvxpy
    import gymnasium
    import numpy
    import scipy
    import sklearn
    import torch

    return (f"torch {torch.__version__}, gymnasium {gymnasium.__version__}, numpy {numpy.__version__}, scipy "
            f"{scipy.__version__}, cvxpy {cvxpy.__version__}, scikit-learn {sklearn.__version__}, Python "
            f"{platform.python_version()}")


def cpuinfo(field: str) -> str | None:
    """The first processor's ``field`` in /proc/cpuinfo (None where there is no such file or field)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo says (the platform's processor string elsewhere)."""
    return cpuinfo("model name") or platform.processor() or "CPU model unknown"


def se_ratio(ratio: float) -> str:
    """|difference| / SE for a table: one decimal, two where one would round an unresolved 1.96 up to "2.0"."""
    return f"{ratio:.2f}" if 1.95 <= ratio < 2 else f"{ratio:.1f}"


def difference_cell(diff: float | None, se: float | None, scale: float = 1.0) -> str:
    """'PolicyGradEx - row ± SE (r SE, resolved or not)', a difference within 2 standard errors being unresolved."""
    if diff is None or se is None:
        return ""
    ratio = abs(diff) / se if se > 0 else float("inf")
    word = "resolved" if ratio >= 2 else "not resolved"
    return f"{scale * diff:+.1f} ± {scale * se:.1f} ({se_ratio(ratio)} SE, {word})"


def load_comparison(doc: str, default_out: str) -> tuple[argparse.Namespace, dict, dict, dict]:
    """Parse RUN [--out FILE] for a results script of a compared run; returns (args, the run's config, its
    compare/compare.json, its groups.json)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("run", type=Path, help="the run directory, with compare/compare.json")
    ap.add_argument("--out", type=Path, default=Path(default_out))
    args = ap.parse_args()
    cfg = json.loads((args.run / "config.json").read_text())["config"]
    record = json.loads((args.run / "compare" / "compare.json").read_text())
    return args, cfg, record, json.loads((args.run / "groups.json").read_text())


def final_return(run: Path) -> float:
    """theta_star's mean episodic return over the source tasks in the last iteration of meta-training."""
    with (run / "meta_train_curve.csv").open() as f:
        return float(list(csv.DictReader(f))[-1]["mean_return"])


def groups_bullet(groups: dict) -> str:
    """'- Groups: {a, b}; {c}. Confidence: ...' from a run's groups.json."""
    conf = groups.get("confidence", {})
    return ("- Groups: " + "; ".join("{" + ", ".join(g) + "}" for g in groups["groups"]) + "."
            + (f" Confidence: {conf['verdict']}" if conf.get("verdict") else ""))


def per_task_table(rows: dict, keys: list[str], names: list[str], short: Callable[[str], str], fmt: str) -> list[str]:
    """Markdown lines: one row per compared grouping in ``keys``, one column per task, its mean over seeds."""
    lines = ["| row | " + " | ".join(short(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    return lines + [f"| `{key}` | " + " | ".join(format(x, fmt) for x in rows[key]["per_task_mean"]) + " |"
                    for key in keys if key in rows]


def resolution(rows: dict) -> str:
    """Which of PolicyGradEx's differences from the other rows are resolved at 2 standard errors."""
    ratios = {key: abs(r["policygradex_difference"]) / r["difference_stderr"] for key, r in rows.items()
              if r.get("difference_stderr")}
    head = ("No difference between PolicyGradEx and another row is resolved at 2 standard errors"
            if all(r < 2 for r in ratios.values()) else
            "Resolved at 2 standard errors: " + ", ".join(f"`{k}`" for k, r in ratios.items() if r >= 2))
    return f"{head} (largest: {se_ratio(max(ratios.values()))} SE)."


def section(run: Path, out_dir: Path) -> list[str]:
    record = json.loads((run / "config.json").read_text())
    family = record["family"]["name"]
    cfg = record["config"]
    report = (run / "report.md").read_text().splitlines()
    start = report.index("## Groups") + 1
    stop = report.index("## Meta-training")
    body = [f"**{line[3:]}**" if line.startswith("## ") else line for line in report[start:stop]
            if not line.startswith("![")]
    png = f"demo-{family}-affinity.png"
    shutil.copyfile(run / "affinity.png", out_dir / png)
    cmd = f"policygradex run {family} --preset demo --k {cfg['cluster']['k']}"
    if family == "lunarlander":
        cmd += f" --steps-per-task {cfg['ppo']['steps_per_task']}"
    return [f"## {family}", "", "```", f"{cmd} --out runs/demo-{family}", "```", *body, f"![{family}]({png})", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--note", default=None, help="a sentence on how the runs were made (e.g. the load they ran under)")
    args = ap.parse_args()
    lines = [HEADER.format(versions=versions(), cpu=cpu_model())]
    if args.note:
        lines.append(args.note + "\n")
    for run in args.runs:
        lines += section(run, args.out.parent)
    args.out.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
