"""A small causal transformer over item sequences: items are tokens, and the model
predicts the next item from the ones before it (the "LLM as recommender" view,
SASRec-style, with pre-LN blocks as in GPT).

Introduced in Chapter 3.2 (pretraining and fine-tuning a small transformer).

Conventions of this module:

- A user's history is a sequence of item ids in time order. Inputs to the model are
  *tokens*: ``token = item + 1``, and token ``PAD = 0`` fills the left of sequences
  shorter than the window. Sequences are left-truncated (the most recent items are
  kept) and left-padded.
- Targets are item ids (``0 .. n_items - 1``); ``IGNORE = -100`` marks positions
  without a target (padding, or a next item the task does not count). This is the
  default ``ignore_index`` of ``torch.nn.functional.cross_entropy``.
- Positions are counted from the first real item of the window, so padding changes
  nothing: the outputs at real positions equal those of the unpadded sequence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PAD",
    "IGNORE",
    "CausalRecommender",
    "user_sequences",
    "training_windows",
    "pad_histories",
    "next_item_loss",
    "score_next",
]

PAD = 0
IGNORE = -100


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions <= t only."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)  # q, k, v for all heads at once
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, d)
        q = q.view(B, T, self.n_heads, d // self.n_heads).transpose(
            1, 2
        )  # (B, h, T, d_h)
        k = k.view(B, T, self.n_heads, d // self.n_heads).transpose(
            1, 2
        )  # (B, h, T, d_h)
        v = v.view(B, T, self.n_heads, d // self.n_heads).transpose(
            1, 2
        )  # (B, h, T, d_h)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d) heads side by side
        return self.proj(y)


class Block(nn.Module):
    """A pre-LN transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))  # (B, T, d)
        return x + self.drop(self.mlp(self.ln2(x)))  # (B, T, d)


class CausalRecommender(nn.Module):
    """A causal transformer that scores every item as the next one at each position.

    Args:
        n_items: number of items; the vocabulary is ``n_items + 1`` tokens (with PAD).
        max_len: longest input window T.
        d_model: embedding size.
        n_heads: attention heads (must divide ``d_model``).
        n_layers: transformer blocks.
        dropout: dropout on embeddings, attention and block outputs.
        tie_weights: score items with the input item embeddings (``h @ E^T``, as
            SASRec does); otherwise with a separate output matrix.

    ``forward(tokens)`` maps (B, T) tokens to (B, T, n_items) logits: row t scores
    the item that follows position t. Introduced in Chapter 3.2.
    """

    def __init__(
        self,
        n_items: int,
        max_len: int = 50,
        d_model: int = 64,
        n_heads: int = 2,
        n_layers: int = 2,
        dropout: float = 0.1,
        tie_weights: bool = True,
    ):
        super().__init__()
        sizes = dict(n_items=n_items, max_len=max_len, d_model=d_model,
                     n_heads=n_heads, n_layers=n_layers)  # fmt: skip
        for name, v in sizes.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} must divide d_model={d_model}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_items, self.max_len, self.d_model = int(n_items), int(max_len), d_model
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=PAD)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, dropout) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.tie_weights = tie_weights
        self.head = None if tie_weights else nn.Linear(d_model, n_items, bias=False)
        self.item_bias = nn.Parameter(
            torch.zeros(n_items)
        )  # a learned popularity prior
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def _check(self, tokens) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long:
            raise ValueError("tokens must be a torch.long tensor of shape (B, T)")
        if tokens.ndim != 2 or tokens.shape[1] == 0:
            raise ValueError(
                f"tokens must have shape (B, T), got {tuple(tokens.shape)}"
            )
        if tokens.shape[1] > self.max_len:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds max_len={self.max_len}"
            )
        # The range check reads the values; on CUDA that would sync the device every
        # step, so it runs on CPU tensors only (the data helpers check ids anyway).
        if tokens.device.type == "cpu" and tokens.numel():
            lo, hi = int(tokens.min()), int(tokens.max())
            if lo < 0 or hi > self.n_items:
                raise ValueError(
                    f"tokens must lie in [0, {self.n_items}] (0 = PAD, item + 1), "
                    f"got [{lo}, {hi}]"
                )

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """The last block's normalised outputs, (B, T, d_model)."""
        self._check(tokens)
        B, T = tokens.shape
        real = tokens != PAD  # (B, T)
        pos = (real.long().cumsum(1) - 1).clamp(
            min=0
        )  # (B, T) 0 at the first real item
        x = self.drop(self.item_emb(tokens) + self.pos_emb(pos))  # (B, T, d)
        causal = torch.ones(
            T, T, dtype=torch.bool, device=tokens.device
        ).tril()  # (T, T)
        eye = torch.eye(T, dtype=torch.bool, device=tokens.device)  # (T, T)
        # query t may see key s <= t if s is a real item; every position sees itself,
        # so rows of padding never become empty (softmax over nothing is NaN).
        mask = (causal & real[:, None, :]) | eye  # (B, T, T)
        mask = mask[:, None]  # (B, 1, T, T) broadcast over heads
        for block in self.blocks:
            x = block(x, mask)  # (B, T, d)
        return self.ln_f(x)  # (B, T, d)

    def output_weight(self) -> torch.Tensor:
        """The (n_items, d_model) matrix that scores items."""
        return self.item_emb.weight[1:] if self.tie_weights else self.head.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.hidden(tokens)  # (B, T, d)
        return h @ self.output_weight().T + self.item_bias  # (B, T, n_items)


def _as_int_array(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of integer item ids")
    return a.astype(np.int64, copy=False)


def user_sequences(
    ratings: pd.DataFrame, n_users: int | None = None, values: str | None = None
):
    """Each user's items in time order (ties keep the table's row order).

    Args:
        ratings: a table with ``user``, ``item`` and ``timestamp`` columns.
        n_users: length of the result (users without rows get empty arrays);
            default ``max(user) + 1``.
        values: optional column name (e.g. ``"rating"``), returned aligned with
            the items.

    Returns:
        A list of ``n_users`` int64 arrays of item ids, or ``(items, values)`` lists
        when ``values`` is given.
    """
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError(f"ratings must be a DataFrame, got {type(ratings).__name__}")
    for col in ("user", "item", "timestamp") + ((values,) if values else ()):
        if col not in ratings.columns:
            raise ValueError(
                f"ratings has no column {col!r} (columns: {list(ratings)})"
            )
    users = ratings["user"].to_numpy(np.int64)
    nu = int(users.max()) + 1 if n_users is None and len(users) else int(n_users or 0)
    if len(users) and (users.min() < 0 or users.max() >= nu):
        raise ValueError(f"user ids must lie in [0, n_users={nu})")
    order = np.lexsort((np.arange(len(users)), ratings["timestamp"].to_numpy(), users))
    bounds = np.searchsorted(users[order], np.arange(nu + 1))  # (nu + 1,)
    items = ratings["item"].to_numpy(np.int64)[order]
    seqs = [items[bounds[u] : bounds[u + 1]] for u in range(nu)]
    if values is None:
        return seqs
    vals = ratings[values].to_numpy()[order]
    return seqs, [vals[bounds[u] : bounds[u + 1]] for u in range(nu)]


def training_windows(sequences, n_items: int, max_len: int, keep=None):
    """Cut sequences into next-item training windows.

    Each sequence of length L is cut, from its end, into windows of ``max_len + 1``
    items that overlap by one item, so that every item after the first is a target
    exactly once. A window gives ``inputs = tokens of items[:-1]`` and
    ``targets = items[1:]``, both left-padded to ``max_len``.

    Args:
        sequences: list of 1-D int arrays of item ids (from :func:`user_sequences`).
        n_items: number of items (ids must lie in ``[0, n_items)``).
        max_len: window length T.
        keep: optional list of boolean arrays aligned with ``sequences``: an item
            whose flag is False is still an input but never a target (``IGNORE``).

    Returns:
        ``(inputs, targets)``, two (N, max_len) long tensors on the CPU.
    """
    if (
        isinstance(max_len, bool)
        or not isinstance(max_len, (int, np.integer))
        or max_len < 1
    ):
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    if keep is not None and len(keep) != len(sequences):
        raise ValueError(
            f"keep has {len(keep)} entries but sequences has {len(sequences)}"
        )
    rows_in, rows_out = [], []
    for u, seq in enumerate(sequences):
        seq = _as_int_array(seq, f"sequences[{u}]")
        if seq.size and (seq.min() < 0 or seq.max() >= n_items):
            raise ValueError(
                f"sequences[{u}] has item ids outside [0, n_items={n_items})"
            )
        flag = np.ones(len(seq), bool) if keep is None else np.asarray(keep[u], bool)
        if flag.shape != seq.shape:
            raise ValueError(f"keep[{u}] must have the length of sequences[{u}]")
        tgt = np.where(flag, seq, IGNORE)
        for end in range(len(seq), 1, -max_len):
            start = max(0, end - max_len - 1)
            x, y = seq[start : end - 1] + 1, tgt[start + 1 : end]  # (t,), (t,)
            if (y != IGNORE).any():
                rows_in.append(np.pad(x, (max_len - len(x), 0), constant_values=PAD))
                rows_out.append(
                    np.pad(y, (max_len - len(y), 0), constant_values=IGNORE)
                )
    if not rows_in:
        raise ValueError("no sequence has a target: every sequence is shorter than 2")
    return torch.from_numpy(np.stack(rows_in)), torch.from_numpy(np.stack(rows_out))


def pad_histories(sequences, n_items: int, max_len: int) -> torch.Tensor:
    """The last ``max_len`` items of each sequence as left-padded tokens.

    Returns a (n, max_len) long tensor; empty sequences give all-PAD rows.
    """
    if (
        isinstance(max_len, bool)
        or not isinstance(max_len, (int, np.integer))
        or max_len < 1
    ):
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    out = np.zeros((len(sequences), max_len), np.int64)  # (n, T) all PAD
    for u, seq in enumerate(sequences):
        seq = _as_int_array(seq, f"sequences[{u}]")[-max_len:]
        if seq.size and (seq.min() < 0 or seq.max() >= n_items):
            raise ValueError(
                f"sequences[{u}] has item ids outside [0, n_items={n_items})"
            )
        if seq.size:
            out[u, max_len - len(seq) :] = seq + 1
    return torch.from_numpy(out)


def next_item_loss(
    model: CausalRecommender, inputs: torch.Tensor, targets: torch.Tensor
):
    """Mean cross-entropy of the next item over all items (``IGNORE`` skipped)."""
    if targets.shape != inputs.shape:
        raise ValueError(
            f"targets must have the shape of inputs {tuple(inputs.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    logits = model(inputs)  # (B, T, n_items)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def score_next(
    model: CausalRecommender, histories, batch_size: int = 1024
) -> torch.Tensor:
    """Scores of every item as each user's next item, (n_users, n_items).

    Args:
        model: a :class:`CausalRecommender` (put in eval mode for the call).
        histories: a list of item-id arrays (time order), or a (n_users, T) long
            tensor of left-padded tokens from :func:`pad_histories`.
        batch_size: users per forward pass.

    Returns:
        A float32 tensor on the model's device: the logits at each user's last
        position. A user with an empty history gets the scores of an all-padding
        window (no information but the item biases and the PAD embedding).
    """
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(histories, torch.Tensor):
        histories = pad_histories(histories, model.n_items, model.max_len)
    if histories.ndim != 2 or histories.shape[0] == 0:
        raise ValueError(
            "histories must be (n_users, T) with n_users >= 1, "
            f"got {tuple(histories.shape)}"
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [
            model(histories[s : s + batch_size].to(device))[:, -1]  # (b, n_items)
            for s in range(0, len(histories), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out).float()  # (n_users, n_items)
