"""Benchmark of ganrec_lite.metrics.evaluate (full ranking), printed, not asserted.

Targets (issue 2): all 943 ML-100K users at k=5,20 in under 0.2 s on 2 CPU cores;
random ML-1M-sized scores (6040 x 3706) in under 1.5 s; peak memory bounded by the
user batch. Run with `make bench` (GANREC_DATA must hold ml-100k for the first line).
"""

import json
import subprocess
import sys
import time

import numpy as np


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def ml100k():
    from ganrec_lite.data import load_movielens
    from ganrec_lite.metrics import evaluate
    from ganrec_lite.splits import random_split

    ml = load_movielens("ml-100k")
    split = random_split(ml.ratings, 0.2, seed=0)
    train, test = split.matrix("train"), split.matrix("test")
    scores = np.random.default_rng(0).normal(size=train.shape).astype(np.float32)
    evaluate(scores, train, test, ks=(5, 20))  # warm-up
    best, med = best_of(lambda: evaluate(scores, train, test, ks=(5, 20)))
    print(f"ML-100K full ranking, 943 users x 1682 items, k=5,20: "
          f"best {best:.3f} s, median {med:.3f} s (target < 0.2 s)")  # fmt: skip


def random_ml1m(n_users=6040, n_items=3706):
    from ganrec_lite.metrics import evaluate

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    train = _sparse_random(n_users, n_items, 0.04, 1)
    test = _sparse_random(n_users, n_items, 0.01, 2)
    test = (test - test.multiply(train)) > 0
    evaluate(scores, train, test, ks=(5, 20))
    best, med = best_of(lambda: evaluate(scores, train, test, ks=(5, 20)), repeat=3)
    print(f"random ML-1M-sized, {n_users} x {n_items}, k=5,20: "
          f"best {best:.3f} s, median {med:.3f} s (target < 1.5 s)")  # fmt: skip


def _sparse_random(n_users, n_items, density, seed):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    nnz = int(density * n_users * n_items)
    rows = rng.integers(0, n_users, nnz)
    cols = rng.integers(0, n_items, nnz)
    m = sp.csr_matrix((np.ones(nnz, bool), (rows, cols)), shape=(n_users, n_items))
    m.sum_duplicates()
    return m


def peak_memory_child(batch):
    """Runs in a subprocess: peak RSS growth of one evaluation."""
    import torch

    from ganrec_lite.metrics import evaluate

    torch.manual_seed(0)
    scores = torch.randn(6040, 3706)  # (U, I) float32, 85.4 MiB
    train = _sparse_random(6040, 3706, 0.04, 1)
    test = _sparse_random(6040, 3706, 0.01, 2)
    test = (test - test.multiply(train)) > 0
    before = _rss_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM), Linux
        fh.write("5")
    evaluate(scores, train, test, ks=(5, 20), batch_users=batch)
    after = _rss_kib("VmHWM")
    print(json.dumps({"batch": batch, "peak_growth_mib": (after - before) / 1024}))


def _rss_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory():
    print("peak RSS growth of one ML-1M-sized evaluation, by user batch "
          "(scores themselves: 85.4 MiB):")  # fmt: skip
    for batch in (128, 512, 2048, 6040):
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(batch)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        r = json.loads(out.strip().splitlines()[-1])
        print(f"  batch_users={batch:5d}: +{r['peak_growth_mib']:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        peak_memory_child(int(sys.argv[2]))
    else:
        import os

        import torch

        print(f"torch {torch.__version__}; load average {os.getloadavg()[0]:.1f} "
              "(timings need an otherwise idle machine)")  # fmt: skip
        for threads in (1, 2):
            torch.set_num_threads(threads)
            print(f"-- torch threads: {threads}")
            ml100k()
            random_ml1m()
        peak_memory()
