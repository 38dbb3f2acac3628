"""Common random numbers in the feature stage: the planted suite's runs with ``--common-random-numbers`` against
their twins without it (the same theta_star, the same options otherwise), paired by seed.

The runs are made by the suite commands in ``RUNS``, then the page:

    python experiments/common_random_numbers.py --paired runs/crn --unpaired runs/crn-twins runs/suite-pt \
        --out results/common-random-numbers.md

LunarLander's reward twins are the planted suite's own per_task runs (results/planted.json's commands). Its paired
runs were made by a driver equal to the last suite command but for the family spelled with its default
``payment=bonus`` (the same tasks); the twins were made in another root and moved to runs/crn-twins.

Each run in ``--paired`` is matched with the run of the same name in the first ``--unpaired`` root that has the same
theta_star (the same tensors) and a configuration that differs in ``features.common_random_numbers`` alone; runs
without such a twin are listed and left out. Scores are planted_suite.score's (NMI against the planted groups,
gradient similarity on the run's own features, the split-half reliability of the gradient signal, the confidence words).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from planted_suite import TUNING_SEEDS, kind_and_env, mean_se, paired, score, versions  # noqa: E402

from policygradex.common.artifacts import load_json  # noqa: E402
from policygradex.pipeline.config import RunConfig  # noqa: E402
from policygradex.pipeline.rundir import config_diff  # noqa: E402


_SUITE = "python experiments/planted_suite.py"
_TWIN = "--extra '--baseline per_task'"
_PAIRED = "--extra '--baseline per_task --common-random-numbers'"
_SEEDS = "0,1,2,10,11,12,13,14"
RUNS = (
    f"{_SUITE} --envs cartpole --kinds reward --seeds 0,1,2 --root runs/crn-twins {_TWIN}",
    f"{_SUITE} --envs cartpole --kinds actuation --seeds {_SEEDS} --root runs/crn-twins {_TWIN}",
    f"{_SUITE} --envs lunarlander --kinds objective --seeds {_SEEDS} --root runs/crn-twins {_TWIN}",
    f"{_SUITE} --envs cartpole --kinds reward --seeds 0,1,2 --root runs/crn --reuse-theta runs/crn-twins {_PAIRED}",
    f"{_SUITE} --envs cartpole --kinds actuation --seeds {_SEEDS} --root runs/crn --reuse-theta runs/crn-twins "
    f"{_PAIRED}",
    f"{_SUITE} --envs lunarlander --kinds objective --seeds {_SEEDS} --root runs/crn --reuse-theta runs/crn-twins "
    f"{_PAIRED}",
    f"{_SUITE} --envs lunarlander --kinds reward --seeds {_SEEDS} --root runs/crn --reuse-theta runs/suite-pt "
    f"{_PAIRED}",
)
"""The suite commands that made the runs (each pair: the twin first, then the paired run from its theta_star)."""


def same_weights(a: Path, b: Path) -> bool:
    """Whether two theta_star.pt hold the same tensors (the files' bytes also carry the archive's name)."""
    import torch

    sa, sb = (torch.load(p, map_location="cpu", weights_only=False)["state_dict"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def seconds(run: Path) -> str:
    return f"{load_json(run / 'timings.json')['features']:.0f}"


def twin_of(run: Path, roots: list[Path]) -> Path | None:
    """The run of the same name under the first root with the same theta_star and only the pairing changed."""
    mine = RunConfig.from_dict(load_json(run / "config.json")["config"]).to_dict()
    for root in roots:
        other = root / run.name
        if not (other / "groups.json").exists() or not same_weights(other / "theta_star.pt", run / "theta_star.pt"):
            continue
        theirs = RunConfig.from_dict(load_json(other / "config.json")["config"]).to_dict()
        if [d.split(":")[0] for d in config_diff(theirs, mine)] == ["features.common_random_numbers"]:
            return other
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paired", type=Path, required=True, help="root of the runs made with --common-random-numbers")
    ap.add_argument("--unpaired", type=Path, nargs="+", required=True, help="roots where their twins are looked for")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows, alone = [], []
    for run in sorted(p for p in args.paired.iterdir() if (p / "groups.json").exists()):
        twin = twin_of(run, args.unpaired)
        if twin is None:
            alone.append(run)
            continue
        cfg = load_json(run / "config.json")["config"]
        kind, env = kind_and_env(cfg["family"])
        seed = int(cfg["seed"])
        rows.append({"env": env, "kind": kind, "seed": seed, "held_out": seed not in TUNING_SEEDS,
                     "run": run, "twin": twin, "paired": score(run), "unpaired": score(twin)})
    lines = [
        "# Common random numbers in the feature stage",
        "",
        "`--common-random-numbers` rolls every task out from the same environment seeds and the same action noise "
        "(`features.paired_rollouts`): tasks that share dynamics then visit the same states and take the same "
        "actions, and differ only in what they are paid. Below, each planted-suite run made with it against its twin "
        "made without it from the same theta_star (the same tensors), every other option the same (`--preset demo "
        "--k 3 --baseline per_task`). Seeds 0-2 are the tuning seeds; 10 and up are held out. The feature stage's "
        "seconds were measured with two runs sharing the 2 cores; with common random numbers each task is rolled "
        "out on its own (the same environment steps in n times as many, smaller, forward passes).",
        "",
        f"Package versions: {versions()}.",
        "",
        "The runs, then this page (each pair: the twin first, then the paired run from its theta_star; the script's "
        "docstring says how LunarLander's reward runs differ from these commands):",
        "",
        "```",
        *RUNS,
        "python experiments/common_random_numbers.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        "How to read it: the gradient signal's split-half reliability says whether pairing removed noise; NMI "
        "whether that reached the groups; gradient similarity, clustered on the same paired features, whether the "
        "surrogate's affinity keeps what the features hold. Pairing helps most where the tasks' dynamics are the "
        "same (the objective kind: preference weights on one environment); LunarLander's reward kind varies gravity "
        "within each group, so its trajectories part after a while; CartPole's reward kind was reliable without it. "
        "On CartPole's actuation kind gradient similarity recovers the groups on the paired features where the "
        "surrogate's affinity does not: there the loss is downstream of the features.",
        "",
        "## By family and kind (mean ± SE over seeds; differences paired by seed)",
        "",
        "| family | kind | seeds | NMI without | NMI with | with - without | worst seed with | gradient similarity "
        "with | with - gradient similarity | reliability without | reliability with |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(r["env"], r["kind"], r["held_out"]) for r in rows}, key=lambda k: (not k[2], k[0], k[1]))
    for env, kind, held in keys:
        rs = sorted((r for r in rows if (r["env"], r["kind"], r["held_out"]) == (env, kind, held)),
                    key=lambda r: r["seed"])
        a = [r["unpaired"]["nmi"] for r in rs]
        b = [r["paired"]["nmi"] for r in rs]
        g = [r["paired"]["nmi_gradsim"] for r in rs]
        rel = lambda side: mean_se([r[side]["gradient_reliability"] for r in rs])  # noqa: E731
        lines.append(f"| {env} | {kind} | {', '.join(str(r['seed']) for r in rs)} ({'held out' if held else 'tuning'})"
                     f" | {mean_se(a)} | {mean_se(b)} | {paired(b, a)} | {min(b):.2f} | {mean_se(g)} | "
                     f"{paired(b, g)} | {rel('unpaired')} | {rel('paired')} |")
    lines += ["", "## Every run", "",
              "| run | twin | NMI without / with | gradient similarity without / with | reliability without / with | "
              "words with | feature stage s without / with |", "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["env"], r["kind"], r["seed"])):
        u, p = r["unpaired"], r["paired"]
        lines.append(f"| `{r['run']}` | `{r['twin']}` | {u['nmi']:.2f} / {p['nmi']:.2f} | {u['nmi_gradsim']:.2f} / "
                     f"{p['nmi_gradsim']:.2f} | {u['gradient_reliability']:.2f} / {p['gradient_reliability']:.2f} | "
                     f"{', '.join(p['words'])} | {seconds(r['twin'])} / {seconds(r['run'])} |")
    if alone:
        lines += ["", "Runs without a twin (left out): " + ", ".join(f"`{p}`" for p in alone)]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
