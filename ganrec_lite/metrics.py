"""Top-k ranking metrics under explicit protocols.

:func:`evaluate` ranks *all* items for every user (full ranking), removes the user's
training positives from the candidates, and skips users without test positives.
:func:`evaluate_sampled` is the sampled protocol of NeuMF (He et al. 2017): each test
positive is ranked among ``n_negatives`` items the user never interacted with.
Ties are broken the same way in both: the lower item id ranks first.

Introduced in Chapter 1.2 (protocols) and used by every results table.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["evaluate", "evaluate_sampled", "protocol_card", "METRICS"]

METRICS = ("precision", "recall", "ndcg", "mrr", "hit")


def _as_scores(scores) -> torch.Tensor:
    if isinstance(scores, np.ndarray):
        t = torch.from_numpy(scores)
    elif isinstance(scores, torch.Tensor):
        t = scores.detach()
    else:
        raise ValueError(
            f"scores must be a numpy array or torch tensor, got {type(scores).__name__}"
        )
    if t.ndim != 2:
        raise ValueError(
            f"scores must be 2-D (n_users, n_items), got shape {tuple(t.shape)}"
        )
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"scores must be numeric, got dtype {t.dtype}")
    return t


class _Rows:
    """Uniform row access to a positives matrix given as scipy, torch or numpy."""

    def __init__(self, m, name: str, shape: tuple[int, int]):
        if sp.issparse(m):
            self.kind, self.m = "scipy", m.tocsr()
        elif isinstance(m, torch.Tensor):
            if m.layout != torch.strided:
                m = m.to_dense()
            self.kind, self.m = "torch", m
        elif isinstance(m, np.ndarray):
            self.kind, self.m = "numpy", m
        else:
            raise ValueError(
                f"{name} must be a scipy.sparse matrix, torch tensor or numpy array, "
                f"got {type(m).__name__}"
            )
        if tuple(self.m.shape) != tuple(shape):
            raise ValueError(
                f"{name} has shape {tuple(self.m.shape)} but scores has shape "
                f"{tuple(shape)}; they must match"
            )
        self.name = name

    def counts(self) -> np.ndarray:
        if self.kind == "scipy":
            return np.asarray((self.m != 0).sum(axis=1)).ravel()
        if self.kind == "torch":
            return (self.m != 0).sum(1).cpu().numpy()
        return (self.m != 0).sum(1)

    def dense(self, rows: np.ndarray, device) -> torch.Tensor:
        if self.kind == "scipy":
            block = torch.from_numpy(self.m[rows].toarray() != 0)
        elif self.kind == "torch":
            block = self.m[torch.as_tensor(rows, device=self.m.device)] != 0
        else:
            block = torch.from_numpy(np.asarray(self.m[rows]) != 0)
        return block.to(device)


def _check_ks(ks, n_items: int) -> tuple[int, ...]:
    if isinstance(ks, (int, np.integer)):
        ks = (int(ks),)
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise ValueError(f"every k must be a positive int, got {k!r}")
        if k > n_items:
            raise ValueError(f"k={k} exceeds the number of items ({n_items})")
    return tuple(sorted(set(int(k) for k in ks)))


def _top_k(s: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k best items per row, best first; ties: lower index first."""
    # (B, n_items) -> (B, k). topk alone does not promise which tied items it keeps.
    vals, _ = torch.topk(s, k, dim=1)
    thr = vals[:, -1:]  # (B, 1) k-th best score
    above = s > thr
    tied = s == thr
    room = k - above.sum(1, keepdim=True)  # (B, 1) how many tied items fit
    take = above | (tied & (tied.cumsum(1, dtype=torch.int32) <= room))  # k per row
    idx = take.nonzero()[:, 1].view(s.shape[0], k)  # ascending item index
    order = torch.sort(s.gather(1, idx), dim=1, descending=True, stable=True).indices
    return idx.gather(1, order)


def evaluate(scores, train, test, ks=(5, 20), *, batch_users: int = 512) -> dict:
    """Full-ranking top-k metrics, averaged over users with test positives.

    Args:
        scores: (n_users, n_items) numpy array or torch tensor (any device); higher
            is better. NaN is rejected; ``-inf`` is allowed.
        train: the user's training positives (excluded from the ranking), as a
            scipy.sparse matrix, torch tensor or boolean array of the same shape.
            ``None`` excludes nothing.
        test: the test positives, same types and shape.
        ks: cutoffs.
        batch_users: users per batch; peak extra memory is about
            ``batch_users * n_items`` scores.

    Returns:
        ``{"precision@k", "recall@k", "ndcg@k", "mrr@k", "hit@k"}`` for every k,
        plus ``"n_users"`` (users evaluated). Recall is hits / |test|; NDCG uses
        binary gain 1/log2(rank + 1) and an ideal DCG over min(|test|, k) items.

    Raises:
        ValueError: wrong types or shapes, k <= 0, NaN scores, no user with test
            positives, or train and test positives that overlap.
    """
    S = _as_scores(scores)
    n_users, n_items = S.shape
    ks = _check_ks(ks, n_items)
    if batch_users < 1:
        raise ValueError(f"batch_users must be >= 1, got {batch_users}")
    te = _Rows(test, "test", S.shape)
    tr = _Rows(train, "train", S.shape) if train is not None else None
    n_test = te.counts()
    users = np.flatnonzero(n_test > 0)
    if len(users) == 0:
        raise ValueError("test has no positives: there is no user to evaluate")
    kmax = max(ks)
    dev = S.device
    discount = 1.0 / torch.log2(
        torch.arange(2, kmax + 2, device=dev, dtype=torch.float64)
    )
    ideal = torch.cat(
        [torch.zeros(1, device=dev, dtype=torch.float64), discount.cumsum(0)]
    )
    sums = {f"{m}@{k}": 0.0 for k in ks for m in METRICS}
    for start in range(0, len(users), batch_users):
        rows = users[start : start + batch_users]
        s = S[torch.as_tensor(rows, device=dev)]  # (B, I)
        if not s.is_floating_point():
            s = s.to(torch.float64)
        if torch.isnan(s).any():
            raise ValueError("scores contain NaN; fix the model before evaluating")
        t = te.dense(rows, dev)  # (B, I) bool
        if tr is not None:
            x = tr.dense(rows, dev)
            overlap = int((x & t).sum())
            if overlap:
                raise ValueError(
                    f"{overlap} test positive(s) are also train positives; the "
                    "protocol excludes train items, so they could never be hit"
                )
            s = s.masked_fill(x, -math.inf)
        top = _top_k(s, kmax)  # (B, kmax)
        hits = t.gather(1, top).to(torch.float64)  # (B, kmax)
        n_pos = torch.as_tensor(n_test[rows], device=dev, dtype=torch.float64)  # (B,)
        first = torch.where(hits.any(1), hits.argmax(1), kmax).to(torch.float64)  # (B,)
        for k in ks:
            h = hits[:, :k]
            n_hit = h.sum(1)
            dcg = (h * discount[:k]).sum(1)
            idcg = ideal[torch.clamp(n_pos, max=k).long()]
            rr = torch.where(first < k, 1.0 / (first + 1.0), torch.zeros_like(n_hit))
            sums[f"precision@{k}"] += float((n_hit / k).sum())
            sums[f"recall@{k}"] += float((n_hit / n_pos).sum())
            sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
            sums[f"mrr@{k}"] += float(rr.sum())
            sums[f"hit@{k}"] += float((n_hit > 0).sum())
    out = {key: val / len(users) for key, val in sums.items()}
    out["n_users"] = int(len(users))
    return out


def evaluate_sampled(
    scores, train, test, ks=(10,), *, n_negatives: int = 99, seed: int = 0,
    batch_users: int = 1024,
) -> dict:  # fmt: skip
    """The sampled protocol (NeuMF): rank each test positive among ``n_negatives``
    items drawn, without replacement, from the items that are neither train nor test
    positives of that user (seeded; the draw does not depend on the scores).

    Returns ``{"hit@k", "ndcg@k", "mrr@k"}`` averaged first over a user's test
    positives, then over users; plus ``"n_users"``. With a single relevant item,
    NDCG@k = 1/log2(rank + 1) when rank <= k.

    Raises:
        ValueError: as :func:`evaluate`, or when a user has fewer than
            ``n_negatives`` non-positive items.
    """
    S = _as_scores(scores)
    n_users, n_items = S.shape
    if (
        isinstance(n_negatives, bool)
        or not isinstance(n_negatives, int)
        or n_negatives < 1
    ):
        raise ValueError(f"n_negatives must be a positive int, got {n_negatives!r}")
    ks = _check_ks(ks, n_negatives + 1)
    te = _Rows(test, "test", S.shape)
    tr = _Rows(train, "train", S.shape) if train is not None else None
    n_test = te.counts()
    users = np.flatnonzero(n_test > 0)
    if len(users) == 0:
        raise ValueError("test has no positives: there is no user to evaluate")
    gen = torch.Generator().manual_seed(int(seed))
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("hit", "ndcg", "mrr")}
    for start in range(0, len(users), batch_users):
        rows = users[start : start + batch_users]
        t = te.dense(rows, "cpu")  # (B, I)
        pos_mask = t | tr.dense(rows, "cpu") if tr is not None else t
        if tr is not None and int((tr.dense(rows, "cpu") & t).sum()):
            raise ValueError("test positives overlap train positives")
        free = (~pos_mask).sum(1)
        if int(free.min()) < n_negatives:
            u = rows[int(free.argmin())]
            raise ValueError(
                f"user {u} has only {int(free.min())} non-positive items, fewer than "
                f"n_negatives={n_negatives}"
            )
        key = torch.rand(t.shape, generator=gen)  # (B, I), one draw per batch
        key = key.masked_fill(pos_mask, 2.0)  # positives are never drawn
        neg = torch.topk(key, n_negatives, dim=1, largest=False).indices  # (B, N)
        s = S[torch.as_tensor(rows, device=S.device)].to(torch.float64).cpu()  # (B, I)
        if torch.isnan(s).any():
            raise ValueError("scores contain NaN; fix the model before evaluating")
        neg_s = s.gather(1, neg)  # (B, N)
        b_idx, i_idx = t.nonzero(as_tuple=True)  # one case per test positive
        pos_s = s[b_idx, i_idx]  # (C,)
        ns, ni = neg_s[b_idx], neg[b_idx]  # (C, N)
        beats = (ns > pos_s[:, None]) | ((ns == pos_s[:, None]) & (ni < i_idx[:, None]))
        rank = 1 + beats.sum(1).to(torch.float64)  # (C,) 1-based
        per_user = torch.as_tensor(n_test[rows], dtype=torch.float64)[b_idx]
        for k in ks:
            inside = rank <= k
            vals = {
                "hit": inside.double(),
                "ndcg": torch.where(inside, 1.0 / torch.log2(rank + 1), 0.0),
                "mrr": torch.where(inside, 1.0 / rank, 0.0),
            }
            for m, v in vals.items():
                sums[f"{m}@{k}"] += float((v / per_user).sum())
    out = {key: val / len(users) for key, val in sums.items()}
    out["n_users"] = int(len(users))
    return out


def protocol_card(
    *,
    dataset: str,
    split: str,
    positives: str,
    ks=(5, 20),
    n_users: int | None = None,
    n_items: int | None = None,
    protocol: str = "full",
    n_negatives: int = 99,
) -> str:
    """One line that says how a results table was measured; print it under the table.

    >>> card = protocol_card(dataset="ML-100K", split="cfgan-ml100k",
    ...                      positives="every rating", n_users=943, n_items=1653)
    >>> for part in card.split(" | "):
    ...     print(part)
    Protocol
    ML-100K, split cfgan-ml100k
    positives: every rating
    full ranking over all 1653 items, train positives excluded
    943 users with test positives
    k = 5, 20
    ties: lower item id first
    """
    if protocol not in ("full", "sampled"):
        raise ValueError(f"protocol must be 'full' or 'sampled', got {protocol!r}")
    ks = _check_ks(ks, 10**9)
    items = f"all {n_items} items" if n_items is not None else "all items"
    if protocol == "full":
        rank = f"full ranking over {items}, train positives excluded"
    else:
        rank = (
            f"sampled: each test positive ranked among {n_negatives} sampled "
            "non-positive items (NeuMF protocol)"
        )
    who = (
        f"{n_users} users with test positives"
        if n_users is not None
        else "users with test positives"
    )
    return (
        f"Protocol | {dataset}, split {split} | positives: {positives} | {rank} | "
        f"{who} | k = {', '.join(map(str, ks))} | ties: lower item id first"
    )
