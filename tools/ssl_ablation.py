"""Ablations of SimGCL on ml100k-random (Chapter 5.8): one knob changed at a time.

    GANREC_DATA=... python tools/ssl_ablation.py [--seeds 1]
                                                 [--out results/ssl_ablation.jsonl]

Each configuration is ``bench.run("simgcl", "ml100k-random", **override)``, so a
record is an ordinary bench record (metrics, seconds, hyper-parameters, provenance)
with one more field, ``"ablation"``, naming the change. The configurations: the
contrastive weight 0 (LightGCN's loss with SimGCL's epochs and layer mean), the
papers' weight 0.2, temperatures 0.1 and 0.5, noise sizes 0.05 and 0.2. About a
minute each on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json

from ganrec_lite import bench

ABLATIONS = {
    "lambda_cl=0": {"lambda_cl": 0.0},
    "lambda_cl=0.2 (paper)": {"lambda_cl": 0.2},
    "tau=0.1": {"tau": 0.1},
    "tau=0.5": {"tau": 0.5},
    "eps=0.05": {"eps": 0.05},
    "eps=0.2": {"eps": 0.2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    data = bench.load_split("ml100k-random")
    for name, override in ABLATIONS.items():
        rec = bench.run("simgcl", data.name, args.seeds, split_data=data, **override)
        rec["ablation"] = name
        m = rec["metrics"]
        print(f"{name:<22} NDCG@20 {m['ndcg@20'][0]:.4f}  Recall@20 "
              f"{m['recall@20'][0]:.4f}  {rec['seconds']['mean']:.0f} s")  # fmt: skip
        if args.out:
            bench.append_jsonl(args.out, rec)
    if not args.out:
        print(json.dumps({"note": "use --out to keep the records"}))


if __name__ == "__main__":
    main()
