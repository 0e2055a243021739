"""Benchmark of one seed of every Chapter 5 method on ML-100K, printed, not asserted.

Targets (issue 5), one seed on 2 CPU cores: pop and EASE under 10 s; BPR and APR under
60 s; CFGAN and IRGAN under 3 minutes. Each line is one ``bench.run`` (training and
evaluation, the same code path as ``python -m ganrec_lite.bench``), on CPU and, when
one is present, on CUDA. Run with ``make bench`` (GANREC_DATA must hold the splits), or
``python tests/benchmarks/bench_methods.py [METHOD ...]`` for a subset.
"""

import os
import sys

import torch

TARGETS = {  # method -> (split, target seconds)
    "pop": ("irgan-ml100k", 10),
    "ease": ("irgan-ml100k", 10),
    "bpr": ("irgan-ml100k", 60),
    "bpr-dns": ("irgan-ml100k", 60),
    "apr": ("irgan-ml100k", 60),
    "irgan": ("irgan-ml100k", 180),
    "cfgan": ("cfgan-ml100k", 180),
}


def main(methods):
    from ganrec_lite import bench

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} cores, load average {load:.2f}, torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip
    splits = {}
    for m in methods:
        split, target = TARGETS[m]
        data = splits.setdefault(split, bench.load_split(split))
        for dev in devices:
            rec = bench.run(m, split, seeds=[0], device=dev, split_data=data)
            s = rec["seconds"]["mean"]
            flag = "ok" if s < target or dev != "cpu" else "OVER"
            print(f"{m:<8} {split:<13} {dev:<5} {s:7.1f} s  (target < {target} s on "
                  f"2 CPU cores) {flag}")  # fmt: skip


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(TARGETS)
    unknown = set(wanted) - set(TARGETS)
    if unknown:
        sys.exit(f"unknown method(s) {sorted(unknown)}; choose from {list(TARGETS)}")
    main(wanted)
