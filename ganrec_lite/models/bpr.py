"""BPR-MF: matrix factorisation trained with the Bayesian personalised ranking loss.

A user ``u`` and an item ``i`` get embeddings ``p_u``, ``q_i`` (and the item a bias
``b_i``); the score is ``x_ui = p_u . q_i + b_i``. BPR (Rendle et al. 2009) samples a
training positive ``(u, i)`` and a negative item ``j`` the user has not interacted
with, and maximises ``log sigma(x_ui - x_uj)`` with L2 regularisation. Negatives:

- ``"uniform"``: ``j`` uniform over the user's non-positive items;
- ``"dns"``: dynamic negative sampling (Zhang et al. 2013): draw ``dns_k`` uniform
  candidates and keep the one the current model scores highest, a harder negative.
  IRGAN's code pre-trains its models with DNS (``DNS_K = 5``).

Negatives are drawn *exactly* from the complement of the user's train positives, in
one vectorised call (:class:`NegativeSampler`): no rejection loop, no per-sample
Python, nothing that waits for the device inside an epoch.

Introduced in Chapter 5.2 (baselines); APR (Chapter 5.5) trains on top of it, IRGAN
(Chapter 5.4) starts from the DNS model.

Tuning (see ``HPARAMS``): on a validation split carved from training (10% of each
user's train positives, seed 0, :func:`ganrec_lite.train.holdout`), NDCG@20 on the
validation positives, early stopping (checked every 5 epochs, patience 3, at most 100
epochs); test never seen. Adam, batch 1024, init N(0, 0.1^2). Best validation NDCG@20
and best epoch (measured on a busy 2-core CPU, Chapter 5.2):

- cfgan-ml100k, uniform, dim 64: lr 1e-3 with reg 1e-5 / 1e-4 / 1e-3 / 1e-2:
  .2065 (ep 45) / .2066 (40) / .2098 (55) / **.2164 (45)**; lr 3e-3: .1976-.1994
  (ep 10-20, then overfits); lr 1e-2: .1745-.1755 (ep 5). dim 32 / 128 (lr 1e-3,
  reg 1e-3): .2059 (70) / .2082 (55).
- cfgan-ml100k, DNS (K = 5), dim 64, lr 1e-3: reg 1e-3 .2210 (25); **reg 1e-2 .2353
  (40)**.
- irgan-ml100k, dim 64, lr 1e-3, reg 1e-2: uniform **.2008 (100, still rising
  slowly)**, DNS **.2095 (50)**; reg 1e-3: .1876 (90) / .1939 (40); lr 3e-3 peaks
  by epoch 10-20 at .1835-.1901.
- For reference, EASE reaches .2370 (cfgan) and .2135 (irgan) on the same validation
  split.

So: dim 64, lr 1e-3, reg 1e-2; epochs 45 (uniform) and 40 (DNS) on cfgan-ml100k, 100
and 50 on irgan-ml100k (about half as many positives, so half the steps per epoch).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import evaluate
from ..train import History, train_epochs
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device

__all__ = [
    "HPARAMS",
    "NEGATIVES",
    "MF",
    "NegativeSampler",
    "draw_negatives",
    "bpr_loss",
    "fit",
]

NEGATIVES = ("uniform", "dns")

# One place for the hyper-parameters (bench reads these; tuning in the docstring).
HPARAMS = {
    "dim": 64,  # embedding size; tuned (32/64/128)
    "epochs": 45,  # best validation epoch on cfgan-ml100k (uniform)
    "batch_size": 1024,  # positives per step
    "lr": 1e-3,  # Adam; tuned (1e-3/3e-3/1e-2)
    "reg": 1e-2,  # L2 on the batch's p_u, q_i, q_j, b_i, b_j; tuned (1e-5 .. 1e-2)
    "negatives": "uniform",
    "dns_k": 5,  # DNS candidates per positive: IRGAN's DNS_K
    "init_std": 0.1,  # N(0, init_std^2) embeddings
}
DNS_HPARAMS = {"negatives": "dns", "epochs": 40}  # best validation epoch, DNS
# per-split overrides (bench merges them over the above): best validation epochs
SPLIT_HPARAMS = {"irgan-ml100k": {"epochs": 100}}
DNS_SPLIT_HPARAMS = {"irgan-ml100k": {"epochs": 50}}


class MF(nn.Module):
    """Matrix factorisation scorer ``x_ui = p_u . q_i + b_i``."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.1):
        super().__init__()
        self.P = nn.Parameter(torch.randn(n_users, dim) * init_std)  # (U, d)
        self.Q = nn.Parameter(torch.randn(n_items, dim) * init_std)  # (I, d)
        self.b = nn.Parameter(torch.zeros(n_items))  # (I,)

    def forward(self, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Scores of pairs: ``u`` (B,) with ``i`` (B,) or (B, K) -> (B,) or (B, K)."""
        p = self.P[u]  # (B, d)
        if i.ndim == 2:
            p = p[:, None, :]  # (B, 1, d) broadcast over the K candidates
        return (p * self.Q[i]).sum(-1) + self.b[i]

    @torch.no_grad()
    def full_scores(self) -> torch.Tensor:
        """(U, I) scores of every user for every item."""
        return self.P @ self.Q.T + self.b  # (U, I)


class NegativeSampler:
    """Uniform draws from each user's *non-positive* items, exact and vectorised.

    With the user's positives sorted, ``p_0 < p_1 < ...``, let ``c_k = p_k - k`` be the
    number of non-positive items below ``p_k``. The ``r``-th non-positive item
    (``r`` from 0) is ``r + #{k : c_k <= r}``: one ``searchsorted`` per draw. All users
    share one sorted key array ``user * (n_items + 1) + c_k``.
    """

    def __init__(self, train, device):
        X = as_csr(train, "train")
        n_users, n_items = X.shape
        n_pos = np.diff(X.indptr)  # (U,)
        if (n_pos >= n_items).any():
            u = int(np.argmax(n_pos >= n_items))
            raise ValueError(f"user {u} has every item as a positive: no negative")
        rank = np.arange(X.nnz) - np.repeat(X.indptr[:-1], n_pos)  # k within user
        users = np.repeat(np.arange(n_users), n_pos)  # (nnz,)
        keys = users * (n_items + 1) + (X.indices - rank)  # sorted: user, then c_k
        dev = torch.device(device)
        self.n_items = n_items
        self.keys = torch.as_tensor(keys, dtype=torch.int64, device=dev)  # (nnz,)
        self.start = torch.as_tensor(X.indptr[:-1], dtype=torch.int64, device=dev)
        self.n_neg = torch.as_tensor(n_items - n_pos, dtype=torch.int64, device=dev)

    def sample(self, users: torch.Tensor, k: int | None = None, generator=None):
        """Negatives for ``users`` (B,): shape (B,), or (B, k) when ``k`` is given."""
        shape = users.shape if k is None else (*users.shape, k)
        n_neg = self.n_neg[users] if k is None else self.n_neg[users][:, None]
        u = users if k is None else users[:, None]
        r = torch.rand(
            shape, generator=generator, device=users.device, dtype=torch.float64
        )
        r = torch.minimum((r * n_neg).long(), n_neg - 1)  # uniform in [0, n_neg)
        query = u * (self.n_items + 1) + r
        below = torch.searchsorted(self.keys, query, right=True) - self.start[u]
        return r + below


@contextlib.contextmanager
def _small_ops_threads(device: torch.device):
    """One intra-op thread on CPU while training: a batch's ops are tiny, and extra
    threads only add synchronisation (on a busy 2-core machine a step took 1.4 ms
    with one thread and 50 ms with two). The caller's setting is restored."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def draw_negatives(
    model: MF,
    sampler: NegativeSampler,
    users: torch.Tensor,
    dns_k: int | None = None,
    generator=None,
) -> torch.Tensor:
    """One negative per user in ``users`` (B,): uniform, or DNS with ``dns_k``.

    DNS draws ``dns_k`` uniform candidates per user and keeps the one ``model``
    scores highest (no gradient flows through the choice).
    """
    if dns_k is None:
        return sampler.sample(users, generator=generator)  # (B,)
    cand = sampler.sample(users, dns_k, generator=generator)  # (B, K)
    with torch.no_grad():
        best = model(users, cand).argmax(1, keepdim=True)  # (B, 1) hardest candidate
    return cand.gather(1, best).squeeze(1)  # (B,)


def positive_pairs(X, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The (user, item) index pairs of a CSR matrix's positives, on ``device``."""
    coo = X.tocoo()
    pos_u = torch.as_tensor(coo.row, dtype=torch.int64, device=device)  # (nnz,)
    pos_i = torch.as_tensor(coo.col, dtype=torch.int64, device=device)  # (nnz,)
    return pos_u, pos_i


def shuffled_batches(pos_u, pos_i, batch_size: int, gen: torch.Generator):
    """Yield ``(u, i)`` batches of the positive pairs in one seeded random order."""
    perm = torch.randperm(len(pos_u), generator=gen, device=pos_u.device)
    for s in range(0, len(perm), batch_size):
        idx = perm[s : s + batch_size]
        yield pos_u[idx], pos_i[idx]  # (B,), (B,)


def l2_penalty(model: MF, u, i, j) -> torch.Tensor:
    """Per-triple squared L2 norm of the parameters a BPR step touches: (B,)."""
    return (
        model.P[u].pow(2).sum(1)
        + model.Q[i].pow(2).sum(1)
        + model.Q[j].pow(2).sum(1)
        + model.b[i] ** 2
        + model.b[j] ** 2
    )


def bpr_loss(x_ui: torch.Tensor, x_uj: torch.Tensor) -> torch.Tensor:
    """``-mean log sigma(x_ui - x_uj)``, computed stably as softplus."""
    return F.softplus(x_uj - x_ui).mean()


def _check(h: dict) -> dict:
    check_known(h, HPARAMS, "BPR")
    for key in ("dim", "epochs", "batch_size", "dns_k"):
        positive_int(key, h[key])
    for key in ("lr", "reg", "init_std"):
        non_negative(key, h[key])
    if h["negatives"] not in NEGATIVES:
        raise ValueError(
            f"negatives must be one of {NEGATIVES}, got {h['negatives']!r}"
        )
    return h


def fit(
    train, seed: int = 0, device=None, valid=None, *, return_model=False, **hparams
):
    """Train BPR-MF and return its (n_users, n_items) scores.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed: seeds initialisation, shuffling and negative sampling.
        device: where to train (default :func:`ganrec_lite.get_device`).
        valid: optional (n_users, n_items) validation positives; when given, NDCG@20
            on them is checked every 5 epochs, training stops after 3 checks without
            improvement and the best epoch's weights are kept.
        return_model: also return the :class:`MF` model and the :class:`History`.
        **hparams: overrides of :data:`HPARAMS`.
    """
    h = _check({**HPARAMS, **hparams})
    X = as_csr(train, "train")
    if X.nnz == 0:
        raise ValueError("train has no positives")
    dev = resolve_device(device)
    torch.manual_seed(seed)  # initialisation
    gen = torch.Generator(device=dev).manual_seed(seed)  # shuffling and negatives
    n_users, n_items = X.shape
    model = MF(n_users, n_items, h["dim"], h["init_std"]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=h["lr"])
    sampler = NegativeSampler(X, dev)
    pos_u, pos_i = positive_pairs(X, dev)  # (nnz,), (nnz,)
    B, k = h["batch_size"], (h["dns_k"] if h["negatives"] == "dns" else None)

    def step(epoch: int) -> torch.Tensor:
        total = torch.zeros((), device=dev)
        for u, i in shuffled_batches(pos_u, pos_i, B, gen):  # (B,), (B,)
            j = draw_negatives(model, sampler, u, k, gen)  # (B,)
            loss = bpr_loss(model(u, i), model(u, j))
            opt.zero_grad(set_to_none=True)
            (loss + h["reg"] * l2_penalty(model, u, i, j).mean()).backward()
            opt.step()
            total += loss.detach() * len(u)
        return total / len(pos_u)

    V = None if valid is None else as_csr(valid, "valid")
    if V is not None and V.shape != X.shape:
        raise ValueError(f"valid has shape {V.shape}, train {X.shape}; they must match")

    def validate() -> float:  # NDCG@20 on the validation positives
        return evaluate(model.full_scores(), X, V, ks=(20,))["ndcg@20"]

    with _small_ops_threads(dev):
        hist: History = train_epochs(
            step, h["epochs"], validate=None if V is None else validate, model=model
        )
    scores = model.full_scores()  # (U, I)
    return (scores, model, hist) if return_model else scores
