"""Robustness of BPR vs APR to adversarial embedding perturbations, over seeds.

    GANREC_DATA=... python tools/apr_robustness.py [--split cfgan-ml100k] [--seeds 3]
                                                   [--out results/apr_robustness.jsonl]

For each seed it trains BPR-MF, BPR-MF continued for APR's extra epochs without the
adversary (``reg_adv=0``, the fair control) and APR, attacks each with
:func:`ganrec_lite.models.apr.adversarial_robustness` (fast-gradient and random
directions, several eps) and prints the relative NDCG@20 drop as mean +- std over
seeds. ``--out`` appends one JSON line (per-seed values, hyper-parameters, seconds,
date). Chapter 5.5 quotes these numbers. About 35 s per seed on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np

from ganrec_lite import bench
from ganrec_lite.models import apr, bpr

EPS = (0.05, 0.1, 0.25, 0.5, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="cfgan-ml100k")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data = bench.load_split(args.split)
    hp_bpr = bench.METHODS["bpr"].hparams_for(args.split)
    hp_apr = bench.METHODS["apr"].hparams_for(args.split)
    runs = {
        "bpr": lambda s: bpr.fit(data.train, s, "cpu", return_model=True, **hp_bpr),
        "bpr +10 epochs": lambda s: apr.fit(
            data.train, s, "cpu", return_model=True, **{**hp_apr, "reg_adv": 0.0}
        ),
        "apr": lambda s: apr.fit(data.train, s, "cpu", return_model=True, **hp_apr),
    }
    per_seed: dict = {}
    t_all = time.perf_counter()
    for seed in range(args.seeds):
        for name, fit in runs.items():
            model = fit(seed)[1]
            rec = per_seed.setdefault(name, {"before": [], "grad": [], "random": []})
            for kind in ("grad", "random"):
                r = apr.adversarial_robustness(
                    model, data.train, data.test, EPS, kind=kind, seed=seed
                )
                rec[kind].append(r["drop"])
            rec["before"].append(r["before"])
            for key, emb in (("norm_P", model.P), ("norm_Q", model.Q)):
                norm = float(emb.detach().norm(dim=1).mean())  # mean row norm
                rec.setdefault(key, []).append(norm)
    seconds = time.perf_counter() - t_all
    print(f"{args.split}, seeds 0..{args.seeds - 1}; NDCG@20 drop (%) at eps {EPS}")
    for name, rec in per_seed.items():
        b = np.array(rec["before"])
        print(f"{name:15s} NDCG@20 {b.mean():.4f} +- {b.std(ddof=1):.4f}")
        for kind in ("grad", "random"):
            d = 100 * np.array(rec[kind])  # (seeds, eps)
            mean, std = d.mean(0), d.std(0, ddof=1)
            cells = [f"{m:5.1f} +- {s:3.1f}" for m, s in zip(mean, std, strict=True)]
            print(f"  {kind:7s}", " | ".join(cells))
    print(f"{seconds:.0f} s")
    if args.out:
        bench.append_jsonl(
            args.out,
            {
                "experiment": "apr_robustness",
                "split": args.split,
                "seeds": list(range(args.seeds)),
                "eps": list(EPS),
                "per_seed": per_seed,
                "hparams": {"bpr": hp_bpr, "apr": hp_apr},
                "seconds": round(seconds, 1),
                "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(
                    timespec="seconds"
                ),
            },
        )


if __name__ == "__main__":
    main()
