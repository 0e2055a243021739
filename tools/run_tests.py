"""Run every test of the book (what `make test` does) and print a per-notebook table.

One pytest session runs the package's unit tests (with coverage), nbval over every
notebook, the environment check, the website build with -W, the student copies and
the browser check. Afterwards it prints the execution time of each notebook on this
machine, enforces line coverage of the data layer and metrics, and, after a full run,
writes book/_data/timings-cpu.json for the status page.

Usage: python tools/run_tests.py [extra pytest arguments]
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
COVERED = ("registry.py", "data.py", "splits.py", "metrics.py")
MIN_COVERAGE = 90.0


def notebook_times(junit: Path) -> dict[str, float]:
    """Seconds per notebook, summed over its nbval cell items."""
    times: dict[str, float] = defaultdict(float)
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("file") or case.get("classname", "")
        name = name.replace("\\", "/")
        if ".ipynb" not in name:
            continue
        nb = name[: name.index(".ipynb") + len(".ipynb")]
        nb = "notebooks/" + nb.split("/")[-1].removeprefix("notebooks.")
        times[nb] += float(case.get("time", 0.0))
    return dict(sorted(times.items()))


def check_coverage(cov_json: Path) -> list[str]:
    data = json.loads(cov_json.read_text())
    problems = []
    print("\nLine coverage of the data layer and metrics (must be >= 90%):")
    for path, entry in sorted(data["files"].items()):
        if Path(path).name in COVERED:
            pct = entry["summary"]["percent_covered"]
            print(f"  {path:32s} {pct:6.1f}%")
            if pct < MIN_COVERAGE:
                problems.append(f"{path} is covered {pct:.1f}% < {MIN_COVERAGE}%")
    return problems


def main(argv: list[str]) -> int:
    BUILD.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("TQDM_DISABLE", "1")
    # MPLBACKEND stays unset: notebooks need the inline backend (nbval compares the
    # text/plain part of every figure output).
    env.pop("MPLBACKEND", None)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    junit = BUILD / "junit.xml"
    cov_json = BUILD / "coverage.json"
    cmd = [
        sys.executable, "-m", "pytest", "--durations=15",
        f"--junitxml={junit}", "--cov=ganrec_lite", "--cov-report=term",
        f"--cov-report=json:{cov_json}", *argv,
    ]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    start = time.perf_counter()
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    wall = time.perf_counter() - start
    problems = []
    if junit.exists():
        times = notebook_times(junit)
        if times:
            print(f"\nPer-notebook time under nbval ({os.cpu_count()} CPU cores):")
            for nb, sec in times.items():
                print(f"  {nb:55s} {sec:7.1f} s")
            print(f"  {'all notebooks':55s} {sum(times.values()):7.1f} s")
            if not argv and rc == 0:
                out = ROOT / "book" / "_data" / "timings-cpu.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                record = {
                    "generated": dt.datetime.now(dt.timezone.utc).isoformat(
                        timespec="seconds"
                    ),
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                    f"Python {platform.python_version()}",
                    "notebooks": {k: round(v, 1) for k, v in times.items()},
                }
                out.write_text(json.dumps(record, indent=2) + "\n")
                print(f"  (written to {out.relative_to(ROOT)})")
    if not argv and cov_json.exists():
        problems += check_coverage(cov_json)
    print(f"\nWhole test run: {wall:.0f} s wall, pytest exit code {rc}")
    for p in problems:
        print("FAILED:", p)
    if rc == 0 and problems:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
