"""Benchmark of one seed of every Chapter 5 method on ML-100K, printed, not asserted.

Targets, one seed on 2 CPU cores: pop and EASE under 10 s; BPR and APR under 60 s;
CFGAN and IRGAN under 3 minutes (issue 5); LightGCN, SGL, SimGCL and the text methods
under 3 minutes, and encoding all 1,682 item texts under 60 s uncached (issue 6).
``generate`` times SmolLM2 (Chapter 5.9): loading the converted checkpoint and greedily
describing one batch of 16 films, with the projected time for all 1,682.
Each line is one ``bench.run`` (training and evaluation, the same code path as
``python -m ganrec_lite.bench``), on CPU and, when one is present, on CUDA. Run with
``make bench`` (GANREC_DATA must hold the splits), or
``python tests/benchmarks/bench_methods.py [encode] [METHOD ...]`` for a subset.
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
    "lightgcn": ("ml100k-random", 180),
    "sgl": ("ml100k-random", 180),
    "simgcl": ("ml100k-random", 180),
    "simgcl-adv": ("ml100k-random", 180),
    "text-regress": ("coldstart-ml100k", 180),
    "text-knn": ("coldstart-ml100k", 180),
    "text-gan": ("coldstart-ml100k", 180),
    "combined": ("combined-ml100k", 180),
}
EXTRA = ("encode", "generate")


def encode_items() -> None:
    """Encode every ML-100K item text with the cache off (the first run's cost)."""
    import time

    from ganrec_lite.data import load_movielens
    from ganrec_lite.text import TextEncoder, item_text

    texts = item_text(load_movielens("ml-100k").items)
    enc = TextEncoder()
    enc.encode(texts[:8], cache=False)  # load the model first
    t = time.perf_counter()
    enc.encode(texts, cache=False)
    s = time.perf_counter() - t
    print(f"encode   {len(texts)} item texts, uncached: {s:.1f} s  (target < 60 s) "
          f"{'ok' if s < 60 else 'OVER'}")  # fmt: skip


def generate_items() -> None:
    """Load SmolLM2 (converted checkpoint) and describe the first batch of films."""
    import time

    from ganrec_lite import llm
    from ganrec_lite.data import load_movielens

    msgs = llm.item_prompts(load_movielens("ml-100k").items)
    bs = llm.DECODING["batch_size"]
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        t = time.perf_counter()
        gen = llm.load_generator(dev)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        gen.generate(llm.ITEM_SYSTEM, msgs[:bs], show_progress=False)
        s = time.perf_counter() - t
        total = s / bs * len(msgs) / 60
        print(f"generate {dev:<5} load {t_load:.1f} s; {bs} films {s:.1f} s "
              f"({s / bs:.2f} s/film, all {len(msgs)} ~{total:.0f} min)")  # fmt: skip


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
    wanted = sys.argv[1:] or [*EXTRA, *TARGETS]
    unknown = set(wanted) - set(TARGETS) - set(EXTRA)
    if unknown:
        known = [*EXTRA, *TARGETS]
        sys.exit(f"unknown method(s) {sorted(unknown)}; choose from {known}")
    if "encode" in wanted:
        encode_items()
    if "generate" in wanted:
        generate_items()
    main([m for m in wanted if m not in EXTRA])
