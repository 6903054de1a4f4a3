"""A performance change is a pair: the shop's bench on a git revision and on the working
tree, run alternately on one machine in one session, and their ratio.

    .venv/bin/python benchmarks/compare.py REF [--runs 2] [-- BENCH ARGS...]
    .venv/bin/python benchmarks/compare.py HEAD~3 -- --rate 100 --duration 20
    .venv/bin/python benchmarks/compare.py main -- --concurrency 64 --mode choreography
    .venv/bin/python benchmarks/compare.py HEAD --tree-args="--orchestrator-in order"

``--tree-args`` adds bench arguments on the tree's side only: an option REF lacks, or, with
REF at the tree's own commit, two deployments of one code.

REF is checked out into a temporary worktree; each run is ``python -m examples.shop bench``
with that tree's ``sagakit`` and ``examples`` first on the path (and so in every service
process it starts), in a fresh namespace on the one dev stack. Runs alternate (REF, tree,
REF, tree, ...) so that a drift of the machine hits both sides alike. REF must run with the
packages installed now. Prints each run, the median of each side and the ratio
(tree / REF): above 1 is more sagas/s; below 1 is lower latency or CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def bench(tree: Path, args: list[str], out: Path, log: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    with log.open("w") as sink:
        done = subprocess.run(
            [sys.executable, "-m", "examples.shop", "bench", "--json", str(out), *args],
            cwd=tempfile.gettempdir(),  # not the checkout: its tree must come first
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"bench failed ({done.returncode}) on {tree}; see {log}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def figures(r: dict[str, Any]) -> dict[str, float]:
    cpu = {k: v for k, v in r["cpu_percent"].items() if k != "load generator"}
    total = sum(cpu.values())
    if r.get("loop") == "idle":  # no sagas: what each part costs at rest
        services = sum(v for k, v in cpu.items() if k not in ("postgres", "broker"))
        return {
            "services %": services,
            "postgres %": cpu.get("postgres", 0.0),
            "broker %": cpu.get("broker", 0.0),
            "cpu %": total,
        }
    lat = r["latency_ms"]["all"]
    return {"sagas/s": r["sagas_per_s"], "p50 ms": lat["p50"], "p99 ms": lat["p99"], "cpu %": total}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], usage="%(prog)s REF [--runs N] [-- BENCH ARGS]"
    )
    parser.add_argument("ref", help="a git revision: the 'before' side")
    parser.add_argument("--runs", type=int, default=2, help="runs per side (alternating)")
    parser.add_argument("--tree-args", default="", help="more bench arguments, tree side only")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # for the bench
    work = Path(tempfile.mkdtemp(prefix="sagakit-compare-"))
    before = work / "ref"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.ref],
        check=True,
        capture_output=True,
    )
    sides = {args.ref: before, "tree": ROOT}
    got: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    try:
        for i in range(args.runs):
            for side, tree in sides.items():
                tag = "ref" if side == args.ref else "tree"
                more = args.tree_args.split() if tag == "tree" else []
                r = bench(tree, [*extra, *more], work / f"{tag}-{i}.json", work / f"{tag}-{i}.log")
                if not r.get("check_clean", False):
                    raise SystemExit(f"the shop's audit failed on {side}; see {work}")
                got[side].append(figures(r))
                shown = "  ".join(f"{k} {v:.1f}" for k, v in got[side][-1].items())
                print(f"{side:>12} run {i + 1}: {shown}", flush=True)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
            check=False,
            capture_output=True,
        )
    print(f"\nbench {' '.join(extra) or '(defaults)'}; medians of {args.runs} run(s) each")
    if args.tree_args:
        print(f"tree side also: {args.tree_args}")
    print(f"{'':>12} " + "".join(f"{k:>12}" for k in got["tree"][0]))
    medians = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in got.items()}
    for side, m in medians.items():
        print(f"{side:>12} " + "".join(f"{v:>12.1f}" for v in m.values()))
    ratio = {k: medians["tree"][k] / medians[args.ref][k] for k in medians["tree"]}
    print(f"{'tree / ref':>12} " + "".join(f"{v:>12.2f}" for v in ratio.values()))
    print(f"(runs and logs in {work})")


if __name__ == "__main__":
    main()
