"""Train and evaluate one method on one split over seeds; print one line of JSON.

    python -m ganrec_lite.bench METHOD --split SPLIT --seeds N [--device D]
                                [--out results/FILE.jsonl]
    python -m ganrec_lite.bench --list

The line holds the method, the split, the protocol card, the seeds, every metric as
``[mean, std]`` over the seeds (sample std, 0 for one seed), the seconds of every run
(fit + evaluation) and in total, the hyper-parameters, and provenance: the git commit
(and whether the package differed from it), the device, library versions and the
date (UTC). ``--out`` appends the line to a JSON-lines file; the results notebook
(Chapter 5.6) renders those files with :func:`read_results`.

A method is a function ``fit(train, seed, device, valid=None, **hparams) -> scores``:
``train`` is the (n_users, n_items) boolean CSR matrix of training positives, and
``scores`` an (n_users, n_items) tensor or array. Register new ones in :data:`METHODS`
with :func:`register`. Every split fixes its data, positives, metrics and cut-offs
(:data:`SPLITS`), so the numbers are comparable with the paper that published it.

Introduced in Chapter 5.2 (baselines); Chapters 5.3-5.6 add methods and read results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from . import __version__
from .data import load_movielens, load_published_split
from .metrics import evaluate, protocol_card
from .models import apr, bpr, cfgan, coldstart, ease, irgan, lightgcn, popularity
from .splits import cold_start_items, random_split
from .utils import get_device

__all__ = [
    "Method",
    "SplitSpec",
    "SplitData",
    "METHODS",
    "SPLITS",
    "register",
    "load_split",
    "evaluate_split",
    "run",
    "append_jsonl",
    "read_results",
    "main",
]


# ----------------------------------------------------------------------------- splits
@dataclass
class SplitData:
    """A loaded split: train/test positives and how to evaluate them."""

    name: str
    train: sp.csr_matrix  # (n_users, n_items) bool
    test: sp.csr_matrix  # (n_users, n_items) bool
    ks: tuple[int, ...]
    metrics: tuple[str, ...]
    card: str
    # extra evaluations: name -> (test positives, candidate items (n_items,) bool);
    # :func:`run` reports them as "<name>/<metric>@<k>"
    parts: dict = field(default_factory=dict)


@dataclass
class SplitSpec:
    """How to load a split and evaluate on it."""

    name: str
    description: str
    dataset: str
    positives: str
    ks: tuple[int, ...]
    metrics: tuple[str, ...]
    load: Callable[[], tuple]  # -> (train, test, kind) or (train, test, kind, parts)


def _published(name: str):
    def load():
        s = load_published_split(name)
        train, test = s.matrices()
        return train, test, name

    return load


# ml100k-random: the protocol of Chapter 1.2, so its tables line up with this one.
RANDOM_SPLIT_SEED = 0  # the split is fixed; bench seeds vary the model only
RANDOM_MIN_RATING = 4  # a rating >= 4 is a positive


def _ml100k_random():
    ml = load_movielens("ml-100k")
    s = random_split(
        ml.ratings,
        test_ratio=0.2,
        seed=RANDOM_SPLIT_SEED,
        n_users=ml.n_users,
        n_items=ml.n_items,
    )
    t = RANDOM_MIN_RATING - 1  # to_matrix keeps rating > threshold
    return s.matrix("train", threshold=t), s.matrix("test", threshold=t), s.kind


# coldstart-ml100k: Chapter 5.7's cold items, with a warm test part for mixed ranking.
COLD_SPLIT_SEED = 0
COLD_ITEM_RATIO = 0.2


def coldstart_splits():
    """The two splits behind ``coldstart-ml100k``: ``(ml, cold, warm)``, where
    ``cold`` holds the cold items out entirely and ``warm`` splits the rest per user
    80/20. ``warm.train`` is the only rating table a model (or a user-profile
    prompt, Chapter 5.9) may read."""
    ml = load_movielens("ml-100k")
    shape = {"n_users": ml.n_users, "n_items": ml.n_items}
    cs = cold_start_items(ml.ratings, COLD_ITEM_RATIO, seed=COLD_SPLIT_SEED, **shape)
    warm = random_split(cs.train, test_ratio=0.2, seed=COLD_SPLIT_SEED, **shape)
    return ml, cs, warm


def _coldstart_ml100k(splits=None):
    ml, cs, warm = coldstart_splits() if splits is None else splits
    t = RANDOM_MIN_RATING - 1  # positives: rating >= 4
    train = warm.matrix("train", threshold=t)
    warm_test = warm.matrix("test", threshold=t)
    cold_test = cs.matrix("test", threshold=t)
    is_cold = np.zeros(ml.n_items, dtype=bool)
    is_cold[cs.cold_items] = True
    parts = {"cold": (cold_test, is_cold), "warm": (warm_test, ~is_cold)}
    kind = f"{cs.kind}; warm interactions per-user 80/20; main metrics: mixed ranking"
    return train, (warm_test + cold_test).astype(bool).tocsr(), kind, parts


# combined-ml100k: Chapter 5.10's three audiences on the same data as coldstart-ml100k.
SPARSE_USER_RATINGS = 20  # a user with fewer training ratings (any value) is sparse


def _combined_ml100k():
    splits = coldstart_splits()
    train, test, kind, parts = _coldstart_ml100k(splits)
    n = np.bincount(splits[2].train["user"], minlength=train.shape[0])  # (U,) ratings
    sparse = n < SPARSE_USER_RATINGS
    everything = np.ones(train.shape[1], dtype=bool)

    def rows(mask):  # test positives of the users in mask (U,) bool
        return (sp.diags(mask.astype(np.float32)) @ test).astype(bool).tocsr()

    parts = {
        **parts,
        "sparse-users": (rows(sparse), everything),
        "warm-users": (rows(~sparse), everything),
    }
    kind += f"; sparse users: < {SPARSE_USER_RATINGS} training ratings"
    return train, test, kind, parts


SPLITS: dict[str, SplitSpec] = {
    "cfgan-ml100k": SplitSpec(
        "cfgan-ml100k",
        "CFGAN's released ML-100K split (Chae et al. 2018); every rating a positive",
        "ML-100K",
        "every rating",
        (5, 20),
        ("precision", "recall", "ndcg", "mrr"),
        _published("cfgan-ml100k"),
    ),
    "irgan-ml100k": SplitSpec(
        "irgan-ml100k",
        "IRGAN's released ML-100K split (Wang et al. 2017); positives rating > 3.99",
        "ML-100K",
        "rating > 3.99",
        (3, 5, 10),
        ("precision", "ndcg"),
        _published("irgan-ml100k"),
    ),
    "ml100k-random": SplitSpec(
        "ml100k-random",
        "ML-100K, per-user random 80/20 (split seed 0, as Chapter 1.2); "
        "positives rating >= 4",
        "ML-100K",
        "rating >= 4",
        (5, 20),
        ("precision", "recall", "ndcg", "mrr"),
        _ml100k_random,
    ),
    "coldstart-ml100k": SplitSpec(
        "coldstart-ml100k",
        "ML-100K, 20% of items cold (never in train, split seed 0), the warm "
        "interactions per-user 80/20; positives rating >= 4; parts cold/warm",
        "ML-100K",
        "rating >= 4",
        (20,),
        ("recall", "ndcg", "precision"),
        _coldstart_ml100k,
    ),
    "combined-ml100k": SplitSpec(
        "combined-ml100k",
        "coldstart-ml100k's data, evaluated on cold items, warm items, sparse users "
        f"(< {SPARSE_USER_RATINGS} training ratings) and the other users",
        "ML-100K",
        "rating >= 4",
        (20,),
        ("recall", "ndcg", "precision"),
        _combined_ml100k,
    ),
}


def load_split(name: str) -> SplitData:
    """Load a split of :data:`SPLITS` with its protocol card.

    Raises:
        ValueError: unknown split (the message lists the known ones).
    """
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; known splits: {', '.join(SPLITS)}")
    spec = SPLITS[name]
    out = spec.load()
    train, test, kind = out[:3]
    parts = out[3] if len(out) > 3 else {}
    n_eval = int((test.getnnz(axis=1) > 0).sum())
    card = protocol_card(
        dataset=spec.dataset,
        split=kind,
        positives=spec.positives,
        ks=spec.ks,
        n_users=n_eval,
        n_items=train.shape[1],
    )
    for part, (m, cand) in parts.items():
        n_part = int((m.getnnz(axis=1) > 0).sum())
        card += f" | part {part}: {int(cand.sum())} candidate items, {n_part} users"
    return SplitData(name, train, test, spec.ks, spec.metrics, card, dict(parts))


def evaluate_split(scores, data: SplitData) -> dict:
    """The metrics of ``scores`` on ``data``: the main test, then every part, where
    only the part's candidate items are ranked (keys ``"<part>/<metric>@<k>"``)."""
    out = evaluate(scores, data.train, data.test, ks=data.ks)
    if data.parts:
        S = torch.as_tensor(scores) if isinstance(scores, np.ndarray) else scores
        for part, (test, cand) in data.parts.items():
            keep = torch.as_tensor(cand, device=S.device)  # (I,) bool
            masked = S.masked_fill(~keep, float("-inf"))  # (U, I)
            r = evaluate(masked, data.train, test, ks=data.ks)
            out.update({f"{part}/{k}": v for k, v in r.items()})
    return out


# ---------------------------------------------------------------------------- methods
@dataclass
class Method:
    """A registered method: its ``fit`` and its hyper-parameters.

    ``hparams`` are the defaults (the paper's or tuned values, documented in the
    model's module); ``split_hparams[split]`` overrides some of them on one split.
    ``selects_on_test``: the method reproduces a paper whose protocol picks the
    epoch on the test set; :func:`run` passes the test positives as ``valid`` and
    the record says so (``"selected_on_test": true``). Never the default.
    """

    name: str
    fit: Callable
    description: str
    hparams: dict = field(default_factory=dict)
    split_hparams: dict = field(default_factory=dict)
    selects_on_test: bool = False

    def hparams_for(self, split: str) -> dict:
        return {**self.hparams, **self.split_hparams.get(split, {})}


METHODS: dict[str, Method] = {}


def register(
    name: str,
    fit: Callable,
    description: str,
    hparams: dict | None = None,
    split_hparams: dict | None = None,
    selects_on_test: bool = False,
) -> Method:
    """Add a method to :data:`METHODS` (a later chapter registers CFGAN, IRGAN, APR)."""
    m = Method(
        name,
        fit,
        description,
        dict(hparams or {}),
        dict(split_hparams or {}),
        selects_on_test,
    )
    METHODS[name] = m
    return m


register("pop", popularity.fit, "most popular items (training positives per item)")
register(
    "bpr",
    bpr.fit,
    "BPR-MF, uniform negatives (Rendle et al. 2009)",
    bpr.HPARAMS,
    bpr.SPLIT_HPARAMS,
)
register(
    "bpr-dns",
    bpr.fit,
    "BPR-MF, dynamic negative sampling (Zhang et al. 2013)",
    {**bpr.HPARAMS, **bpr.DNS_HPARAMS},
    bpr.DNS_SPLIT_HPARAMS,
)
register(
    "ease", ease.fit, "EASE, closed form (Steck 2019)", ease.HPARAMS, ease.SPLIT_HPARAMS
)
register("cfgan", cfgan.fit, "CFGAN, ZR + PM (Chae et al. 2018)", cfgan.HPARAMS)
register(
    "cfgan-testsel",
    cfgan.fit,
    "CFGAN, epochs chosen on TEST NDCG@20 every 5 (the released code's protocol)",
    {**cfgan.HPARAMS, "epochs": 300},
    selects_on_test=True,
)
register(
    "cfgan-nogan",
    cfgan.fit,
    "CFGAN ablation: reconstruction loss instead of D",
    {**cfgan.HPARAMS, "gan": False},
)
register(
    "cfgan-nozr", cfgan.fit, "CFGAN ablation: no zero-reconstruction",
    {**cfgan.HPARAMS, "zr": False},
)  # fmt: skip
register(
    "cfgan-nopm", cfgan.fit, "CFGAN ablation: no partial masking",
    {**cfgan.HPARAMS, "pm": False},
)  # fmt: skip
register(
    "irgan",
    irgan.fit,
    "IRGAN, G from our DNS, passes chosen on validation (Wang et al. 2017)",
    irgan.HPARAMS,
)
register(
    "irgan-testsel",
    irgan.fit,
    "IRGAN, G from our DNS, best of 750 passes on TEST (the paper's protocol)",
    {**irgan.HPARAMS, **irgan.TESTSEL_HPARAMS},
    selects_on_test=True,
)
register(
    "irgan-released",
    irgan.fit,
    "IRGAN, G from the paper's DNS model, best of 750 passes on TEST (irgan-ml100k)",
    {**irgan.HPARAMS, **irgan.TESTSEL_HPARAMS, "pretrain": "released"},
    selects_on_test=True,
)
register(
    "lightgcn",
    lightgcn.fit,
    "LightGCN, 3 layers, BPR (He et al. 2020)",
    lightgcn.LIGHTGCN_HPARAMS,
)
register(
    "sgl",
    lightgcn.fit,
    "SGL-ED: LightGCN + InfoNCE between edge-dropout views (Wu et al. 2021)",
    lightgcn.SGL_HPARAMS,
)
register(
    "simgcl",
    lightgcn.fit,
    "SimGCL: LightGCN + InfoNCE between noisy views (Yu et al. 2022)",
    lightgcn.SIMGCL_HPARAMS,
)
register(
    "simgcl-adv",
    lightgcn.fit,
    "SimGCL with one adversarial (fast-gradient) view instead of random noise",
    lightgcn.SIMGCL_ADV_HPARAMS,
)
register(
    "pop-oracle",
    coldstart.fit_pop_oracle,
    "popularity counted on train AND TEST: the ceiling of non-personalised ranking",
    selects_on_test=True,
)
register(
    "text-pop",
    coldstart.fit_text_pop,
    "popularity among cold items estimated from their text (ridge on warm items)",
    coldstart.POP_HPARAMS,
)
register(
    "text-knn",
    coldstart.fit_text_knn,
    "cosine of a user's mean liked-item text with each item's text (MiniLM)",
    coldstart.KNN_HPARAMS,
)
register(
    "text-profile",
    coldstart.fit_text_knn,
    "cosine of the embedding of the LLM's taste profile of a user with each "
    "item's text (coldstart splits only: the profiles read their training ratings)",
    {**coldstart.KNN_HPARAMS, "user": "generated"},
)
register(
    "text-regress",
    coldstart.fit_text_regress,
    "BPR-MF; cold items' embeddings by ridge regression from text",
    coldstart.REGRESS_HPARAMS,
)
register(
    "text-gan",
    coldstart.fit_text_gan,
    "BPR-MF; cold items' embeddings from a text generator trained with the "
    "recommender and a discriminator (LARA/GAR family)",
    coldstart.GAN_HPARAMS,
)
register(
    "text-gan-noadv",
    coldstart.fit_text_gan,
    "text-gan ablation: no discriminator",
    {**coldstart.GAN_HPARAMS, "adv_weight": 0.0},
)
register(
    "combined",
    coldstart.fit_text_gan,
    "Chapter 5.10's system: LLM-written item text, a text generator trained with "
    "a discriminator, into SimGCL-adv's embedding space (adversarial views)",
    {**coldstart.GAN_HPARAMS, "text": "generated", "backbone": "simgcl-adv"},
)
register(
    "combined-simgcl",
    coldstart.fit_text_gan,
    "ablation of combined: SimGCL (random-noise views) underneath, not SimGCL-adv",
    {**coldstart.GAN_HPARAMS, "text": "generated", "backbone": "simgcl"},
)
register(
    "apr",
    apr.fit,
    "APR: BPR-MF pre-trained, then adversarial training (He et al. 2018)",
    apr.HPARAMS,
    apr.SPLIT_HPARAMS,
)


# ------------------------------------------------------------------------------- run
def _git_commit() -> tuple[str | None, bool | None]:
    """HEAD, and whether the package (``ganrec_lite/``, untracked files included)
    differs from it: then the commit alone does not reproduce the numbers."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo,
            timeout=10,
            capture_output=True,
            text=True,
            check=True,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "ganrec_lite"],
            cwd=repo,
            timeout=10,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run(
    method: str,
    split: str,
    seeds: int | Sequence[int] = 1,
    device=None,
    split_data: SplitData | None = None,
    **overrides,
) -> dict:
    """Train ``method`` on ``split`` for each seed and return the result record.

    Args:
        method, split: names in :data:`METHODS` and :data:`SPLITS`.
        seeds: a count ``N`` (seeds ``0 .. N-1``) or explicit seeds.
        device: a torch device or string; default :func:`ganrec_lite.get_device`.
        split_data: an already loaded split (saves reloading it).
        **overrides: hyper-parameters replacing the registered ones.

    Returns:
        The dict that the command line prints as JSON.
    """
    if method not in METHODS:
        raise ValueError(
            f"unknown method {method!r}; known methods: {', '.join(METHODS)}"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        seeds = list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    dev = get_device(None if device is None else str(device), verbose=False)
    m = METHODS[method]
    hp = {**m.hparams_for(split), **overrides}
    data = split_data if split_data is not None else load_split(split)
    keys = [f"{name}@{k}" for k in data.ks for name in data.metrics]
    keys += [f"{p}/{key}" for p in data.parts for key in keys]
    per_seed, seconds = {key: [] for key in keys}, []
    t_all = time.perf_counter()
    for seed in seeds:
        t0 = time.perf_counter()
        valid = data.test if m.selects_on_test else None
        scores = m.fit(data.train, seed, dev, valid, **hp)
        result = evaluate_split(scores, data)
        _sync(dev)
        seconds.append(time.perf_counter() - t0)
        for key in keys:
            per_seed[key].append(result[key])
    total = time.perf_counter() - t_all
    commit, dirty = _git_commit()
    return {
        "method": method,
        "split": split,
        "protocol": data.card,
        "seeds": seeds,
        "metrics": {
            key: [float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0]
            for key, v in per_seed.items()
        },
        "per_seed": per_seed,
        "n_users": int(result["n_users"]),
        "seconds": {
            "per_run": [round(s, 3) for s in seconds],
            "mean": round(float(np.mean(seconds)), 3),
            "total": round(total, 3),
        },
        "hparams": hp,
        "selected_on_test": m.selects_on_test,
        "provenance": {
            "commit": commit,
            "dirty": dirty,
            "device": _device_name(dev),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "ganrec_lite": __version__,
            "torch_threads": torch.get_num_threads(),
            "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(
                timespec="seconds"
            ),
        },
    }


def append_jsonl(path, record: dict) -> Path:
    """Append ``record`` as one JSON line to ``path`` (parent folders created).

    The line is written with a single ``write`` on a file opened with ``O_APPEND``,
    so concurrent runs appending to the same file do not interleave their lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path


def read_results(path) -> list[dict]:
    """The records of a JSON-lines file written by ``--out`` (blank lines skipped).

    Raises:
        ValueError: a line is not a JSON object with ``method``, ``split`` and
            ``metrics``.
    """
    records = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not {"method", "split", "metrics"} <= set(rec):
            raise ValueError(f"{path}:{n}: not a bench record")
        records.append(rec)
    return records


# ------------------------------------------------------------------------------- CLI
def _listing() -> str:
    lines = ["methods:"]
    lines += [f"  {m.name:<15} {m.description}" for m in METHODS.values()]
    lines.append("splits:")
    lines += [f"  {s.name:<17} {s.description}" for s in SPLITS.values()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ganrec_lite.bench",
        description="Train and evaluate one method on one split; print one JSON line.",
    )
    parser.add_argument("method", nargs="?", help="a method name (see --list)")
    parser.add_argument("--split", help="a split name (see --list)")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N")
    parser.add_argument("--out", default=None, help="append the line to this file")
    parser.add_argument(
        "--text",
        default=None,
        choices=coldstart.TEXTS,
        help="the item text of a text method (Chapter 5.9: generated)",
    )
    parser.add_argument("--list", action="store_true", help="list methods and splits")
    args = parser.parse_args(argv)
    if args.list:
        print(_listing())
        return 0
    if args.method is None:
        parser.error(f"name a METHOD (one of: {', '.join(METHODS)}) or use --list")
    if args.method not in METHODS:
        parser.error(
            f"unknown method {args.method!r}; choose from: {', '.join(METHODS)}"
        )
    if args.split is None or args.split not in SPLITS:
        what = (
            "--split is required"
            if args.split is None
            else (f"unknown split {args.split!r}")
        )
        parser.error(f"{what}; choose from: {', '.join(SPLITS)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    overrides = {}
    if args.text is not None:
        if "text" not in METHODS[args.method].hparams:
            parser.error(
                f"--text applies to the text methods; {args.method} reads none"
            )
        overrides["text"] = args.text
    try:
        record = run(
            args.method, args.split, args.seeds, device=args.device, **overrides
        )
    except ValueError as exc:  # e.g. a device that does not exist here
        parser.error(str(exc))
    print(json.dumps(record))
    if args.out:
        append_jsonl(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
