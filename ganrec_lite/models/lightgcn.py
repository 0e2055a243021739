"""LightGCN and its graph contrastive variants: SGL-ED, SimGCL and SimGCL-adv.

LightGCN (He et al. 2020) keeps only the neighbourhood averaging of a graph
convolution. Users and items are the ``N = U + I`` nodes of the bipartite graph of
training positives ``R`` (U, I), with the symmetric-normalised adjacency

    A = [[0, R], [R^T, 0]],   A_hat = D^{-1/2} A D^{-1/2}   (D: node degrees)

and free embeddings ``E^(0)`` (N, d) are propagated with no weights and no
non-linearity, ``E^(k) = A_hat E^(k-1)``; a node's final embedding is the mean of
layers ``0 .. K`` and ``x_ui = e_u . e_i``. Training: BPR with uniform negatives
(:class:`~ganrec_lite.models.bpr.NegativeSampler`), L2 on the batch's layer-0
embeddings (halved, as LightGCN's code), Adam; the graph is propagated once per
mini-batch step, as the reference implementations do.

Three variants add ``lambda_cl * (InfoNCE_users + InfoNCE_items)`` between two
*views* of every node of the batch (its unique users and unique items; the other
nodes of the batch are the negatives, cosine similarity over temperature ``tau``):

- ``"sgl"``, SGL-ED (Wu et al. 2021): each epoch, two graphs keep each training edge
  with probability ``1 - rho`` (re-normalised); the views are LightGCN on them.
- ``"simgcl"`` (Yu et al. 2022): no graph change; every layer of a view adds random
  noise ``eps * sign(E^(k)) * normalize(U(0, 1))`` (row norm ``eps``, same orthant as
  the embedding), and the views' means skip layer 0, as the paper.
- ``"simgcl-adv"``: one view as SimGCL; the other view's noise is *adversarial*: the
  gradient of the contrastive loss with respect to the noise (taken at zero noise, the
  fast gradient method as APR in Chapter 5.5), normalised per row and scaled to
  ``eps``. Its question: is a random view a good view, or would the hardest one be
  better?

:func:`uniformity` (Wang & Isola 2020) measures how evenly embeddings spread on the
sphere; Yu et al. trace SimGCL's gain to it.

Introduced in Chapter 5.8.

Tuning (see ``*_HPARAMS``): ml100k-random's training matrix, 10% of each user's
positives held out (:func:`ganrec_lite.train.holdout`, seed 0), NDCG@20 on them
checked every 5 epochs (patience 3), at most 1000 epochs; test never seen. The
papers' settings are kept (dim 64, K = 3, lr 1e-3, batch 2048, reg 1e-4, init
N(0, 0.1^2); rho 0.1, tau 0.2, eps 0.1); only ``lambda_cl`` and the epochs were
tuned. Best validation NDCG@20 (epoch), seed 0, on a busy 2-core CPU:

- LightGCN: **.1916 (330)**, still creeping up when patience ran out. BPR-MF
  (Chapter 5.2's setting) on the same hold-out: .1717 at its 45 epochs, .1862 (90)
  with early stopping.
- SGL-ED, lambda_cl 0.1 (the paper's) / **0.02** / 0.005: .1699 (95) /
  **.1963 (100)** / .1923 (275). At 0.1 the first 50 epochs rank worse than
  popularity (NDCG@20 .02-.05) before BPR takes over.
- SimGCL, lambda_cl 0.2 (the paper's) / **0.02** / 0.005: .0100 (5, then falling
  to .007 by epoch 100) / **.1948 (120)** / .1930 (155).
- SimGCL-adv, lambda_cl 0.2 / **0.02**: .1088 (15, stuck at popularity's level) /
  **.1855 (275)**; 240 used (.1841), as 275 epochs overran 3 minutes: the hardest
  view of SimGCL's size is worse than a random one.

Why the papers' weights fail here: ML-100K's graph is dense, and propagation
averages a node's many neighbours into short vectors (on the test suite's synthetic
data, row norm ~0.03 for the views against ~0.4 for ``E^(0)``). The cosine
InfoNCE's gradient scales as ``1 / ||view||``, so at lambda_cl 0.2 it is ~70x BPR's
there, and Adam follows uniformity alone: after 20 epochs of SimGCL at 0.2 the
correlation of item norm with popularity is -0.02 (LightGCN: 0.92) and the ranking
is random.

Seconds per seed on ml100k-random (``bench.run``: fit with the epochs above and
evaluation, one training thread, 2-core CPU with another job running): LightGCN 46,
SGL 44, SimGCL 63, SimGCL-adv 165 (BPR-MF 4).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import evaluate
from ..train import History, train_epochs
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device
from .bpr import (
    NegativeSampler,
    _small_ops_threads,
    bpr_loss,
    positive_pairs,
    shuffled_batches,
)

__all__ = [
    "VARIANTS",
    "HPARAMS",
    "LIGHTGCN_HPARAMS",
    "SGL_HPARAMS",
    "SIMGCL_HPARAMS",
    "SIMGCL_ADV_HPARAMS",
    "normalized_adjacency",
    "edge_dropout",
    "propagate",
    "LightGCN",
    "random_noise",
    "info_nce",
    "contrastive_loss",
    "adversarial_noise",
    "uniformity",
    "fit",
]

VARIANTS = ("lightgcn", "sgl", "simgcl", "simgcl-adv")

# One dict per variant (bench reads these; tuning in the docstring).
LIGHTGCN_HPARAMS = {
    "variant": "lightgcn",
    "dim": 64,  # He et al. 2020, Sec. 4.1: embedding size 64
    "n_layers": 3,  # K; He et al.: K = 3 is their best (and their code's default)
    "epochs": 330,  # best validation epoch on ml100k-random (docstring)
    "batch_size": 2048,  # He et al.'s code: bpr_batch 2048
    "lr": 1e-3,  # He et al.: Adam, lr 1e-3
    "reg": 1e-4,  # He et al.: L2 1e-4 on the layer-0 embeddings (x 1/2, their code)
    "init_std": 0.1,  # He et al.'s code: N(0, 0.1^2)
}
SGL_HPARAMS = {
    **LIGHTGCN_HPARAMS,
    "variant": "sgl",
    "epochs": 100,  # best validation epoch
    "rho": 0.1,  # edge drop ratio; Wu et al. 2021: 0.1
    "tau": 0.2,  # InfoNCE temperature; Wu et al.: 0.2
    # contrastive weight: Wu et al. use 0.1 (Yelp2018, Amazon-Book); on ML-100K
    # 0.1 starts from random rankings and peaks lower (docstring): tuned, 0.02
    "lambda_cl": 0.02,
}
SIMGCL_HPARAMS = {
    **LIGHTGCN_HPARAMS,
    "variant": "simgcl",
    "epochs": 120,  # best validation epoch
    "eps": 0.1,  # noise row norm; Yu et al. 2022: 0.1
    "tau": 0.2,  # Yu et al.: 0.2
    # contrastive weight: Yu et al. use 0.2 on Douban-Book (0.5 Yelp2018, 2
    # Amazon-Book); on ML-100K 0.2 never leaves random rankings: tuned, 0.02
    "lambda_cl": 0.02,
}
# the same view size and weight as SimGCL, so only the view's direction differs;
# epochs: validation .1841 at 240 against the best .1855 at 275, which overran the
# 3-minute budget of a seed (each step computes InfoNCE twice)
SIMGCL_ADV_HPARAMS = {
    **SIMGCL_HPARAMS,
    "variant": "simgcl-adv",
    "epochs": 240,
}
HPARAMS = LIGHTGCN_HPARAMS
_DEFAULTS = {
    "lightgcn": LIGHTGCN_HPARAMS,
    "sgl": SGL_HPARAMS,
    "simgcl": SIMGCL_HPARAMS,
    "simgcl-adv": SIMGCL_ADV_HPARAMS,
}


# ------------------------------------------------------------------------- graph
def _norm_adj(u, i, n_users: int, n_items: int) -> torch.Tensor:
    """``D^{-1/2} A D^{-1/2}`` of the bipartite graph with edges ``(u, i)`` (E,)."""
    N = n_users + n_items
    rows = torch.cat([u, i + n_users])  # (2E,) user -> item, item -> user
    cols = torch.cat([i + n_users, u])  # (2E,)
    deg = torch.bincount(rows, minlength=N).to(torch.float32)  # (N,)
    d = deg.pow(-0.5).masked_fill(deg == 0, 0.0)  # isolated nodes: 0, not inf
    vals = d[rows] * d[cols]  # (2E,)
    idx = torch.stack([rows, cols])  # (2, 2E)
    adj = torch.sparse_coo_tensor(idx, vals, (N, N), check_invariants=False)
    # CSR, with the backward of _SymmetricSpMM: forward and backward of K = 3
    # layers take 3.5 ms on one CPU thread for ML-100K's graph (d = 64), COO 14 ms
    with warnings.catch_warnings():  # "sparse CSR support is in beta": said once
        warnings.simplefilter("ignore", UserWarning)
        return adj.coalesce().to_sparse_csr()  # (N, N)


def normalized_adjacency(train, device=None) -> torch.Tensor:
    """The (U + I, U + I) sparse ``D^{-1/2} A D^{-1/2}`` of a training matrix.

    Users are nodes ``0 .. U-1``, items ``U .. U+I-1``; a node without positives has
    an all-zero row and column.
    """
    X = as_csr(train, "train")
    u, i = positive_pairs(X, resolve_device(device))  # (E,), (E,)
    return _norm_adj(u, i, *X.shape)


def edge_dropout(
    u: torch.Tensor, i: torch.Tensor, n_users: int, n_items: int, rho: float,
    generator=None,
) -> torch.Tensor:  # fmt: skip
    """SGL-ED's view: keep each edge ``(u, i)`` (E,) with probability ``1 - rho``
    and re-normalise; returns the view's (N, N) sparse adjacency."""
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    keep = torch.rand(len(u), generator=generator, device=u.device) >= rho  # (E,)
    return _norm_adj(u[keep], i[keep], n_users, n_items)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ E`` for a *symmetric* sparse ``A``, whose backward is ``A @ grad``:
    autograd's own backward transposes ``A`` every step (3x slower on CPU)."""

    @staticmethod
    def forward(ctx, adj, E):
        ctx.adj = adj
        return adj @ E  # (N, d)

    @staticmethod
    def backward(ctx, grad):
        return None, ctx.adj @ grad  # A^T grad = A grad


Noise = Callable[[int, torch.Tensor], torch.Tensor] | Sequence[torch.Tensor] | None


def propagate(
    adj: torch.Tensor,
    E0: torch.Tensor,
    n_layers: int,
    noise: Noise = None,
    include_ego: bool = True,
) -> torch.Tensor:
    """LightGCN's final embeddings: the mean of ``E^(0) .. E^(K)``, (N, d).

    Args:
        adj: (N, N) sparse normalised adjacency (symmetric: the backward uses
            ``adj`` for ``adj^T``).
        E0: (N, d) layer-0 (ego) embeddings.
        n_layers: K >= 0 (K = 0 returns ``E0``: matrix factorisation).
        noise: added to every layer after propagation,
            ``E^(k) = A_hat E^(k-1) + delta_k``: a callable ``(k, A_hat E^(k-1)) ->
            delta_k`` or a list of the K tensors (N, d).
        include_ego: ``False`` averages layers ``1 .. K`` only (SimGCL's views).
    """
    if n_layers < 0 or (n_layers == 0 and not include_ego):
        raise ValueError(
            f"n_layers must be >= 0 (>= 1 without the ego layer), got {n_layers}"
        )
    if noise is not None and not callable(noise) and len(noise) != n_layers:
        raise ValueError(f"noise must hold n_layers={n_layers} tensors")
    layers = [E0] if include_ego else []
    E = E0
    for k in range(1, n_layers + 1):
        E = _SymmetricSpMM.apply(adj, E)  # (N, d)
        if noise is not None:
            E = E + (noise(k, E) if callable(noise) else noise[k - 1])
        layers.append(E)
    return torch.stack(layers).mean(0)  # (N, d)


class LightGCN(nn.Module):
    """Layer-0 embeddings of users and items, and propagation over ``adj``."""

    def __init__(
        self, adj, n_users: int, n_items: int, dim: int, n_layers: int,
        init_std: float = 0.1,
    ):  # fmt: skip
        super().__init__()
        self.n_users, self.n_items, self.n_layers = n_users, n_items, n_layers
        self.adj = adj  # (N, N) sparse; not a parameter nor in the state_dict
        self.E0 = nn.Parameter(torch.randn(n_users + n_items, dim) * init_std)  # (N, d)

    def forward(self, adj=None, noise: Noise = None, include_ego: bool = True):
        """(N, d) propagated embeddings (over ``self.adj`` unless ``adj`` given)."""
        a = self.adj if adj is None else adj
        return propagate(a, self.E0, self.n_layers, noise, include_ego)

    def split(self, E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, d) -> user rows (U, d), item rows (I, d)."""
        return E[: self.n_users], E[self.n_users :]

    @torch.no_grad()
    def full_scores(self) -> torch.Tensor:
        """(U, I) scores of every user for every item."""
        Eu, Ei = self.split(self())
        return Eu @ Ei.T  # (U, I)


# ------------------------------------------------------------------ contrastive
def random_noise(E: torch.Tensor, eps: float, generator=None) -> torch.Tensor:
    """SimGCL's noise for a layer ``E`` (N, d): ``eps * sign(E) * normalize(U(0,1))``,
    row norm ``eps`` (where ``E`` has no zero entries)."""
    r = torch.rand(E.shape, generator=generator, device=E.device, dtype=E.dtype)
    return eps * torch.sign(E) * F.normalize(r, dim=1)  # (N, d)


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE between two views (n, d): row ``m`` of ``a`` against all rows of
    ``b``, its positive ``b[m]``, cosine similarity over ``tau``; mean over rows."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must be (n, d) of one shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau!r}")
    logits = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T / tau  # (n, n)
    target = torch.arange(len(a), device=a.device)  # (n,) the diagonal
    return F.cross_entropy(logits, target)


def contrastive_loss(V1, V2, users, items, n_users: int, tau: float):
    """``InfoNCE(V1, V2)`` over the nodes ``users`` plus over ``items`` (unique ids;
    items counted from 0) of two (N, d) views."""
    nodes_i = items + n_users  # (B_i,) item rows of the views
    return info_nce(V1[users], V2[users], tau) + info_nce(V1[nodes_i], V2[nodes_i], tau)


def adversarial_noise(
    adj, E0, n_layers: int, other, users, items, n_users: int, eps: float,
    tau: float,
) -> list[torch.Tensor]:  # fmt: skip
    """The K noise tensors (N, d) of the view that maximises the contrastive loss
    against ``other`` (N, d), at first order: each ``delta_k`` is the gradient of
    :func:`contrastive_loss` with respect to it at ``delta = 0``, normalised per
    row and scaled to ``eps``, as APR's :func:`~ganrec_lite.models.apr.fgsm_deltas`.
    Rows with zero gradient stay zero: the view is linear in the noise, so their
    noise cannot reach the loss. Detached: a constant for the update."""
    eps = non_negative("eps", eps)
    E0, other = E0.detach(), other.detach()
    layers, E = [], E0
    for _ in range(n_layers):
        E = adj @ E  # (N, d) the clean layers E^(1) .. E^(K)
        layers.append(E)
    V = torch.stack(layers).mean(0).requires_grad_()  # (N, d) the clean view
    with torch.enable_grad():
        loss = contrastive_loss(V, other, users, items, n_users, tau)
        (g_V,) = torch.autograd.grad(loss, V)  # (N, d)
    # back-propagation by hand (A_hat^T = A_hat): E^(k) enters the view directly
    # and through E^(k+1), so dL/d delta_k = dL/dE^(k) = g_V / K + A_hat dL/dE^(k+1)
    grads = [g_V / n_layers]  # dL/dE^(K)
    for _ in range(n_layers - 1):
        grads.append(g_V / n_layers + adj @ grads[-1])
    return [eps * F.normalize(g, dim=1) for g in reversed(grads)]  # k = 1 .. K


def uniformity(emb, t: float = 2.0, max_rows: int = 4096, seed: int = 0) -> float:
    """Wang & Isola's (2020) uniformity ``log mean exp(-t ||x - y||^2)`` over the
    pairs of L2-normalised rows of ``emb`` (n, d); lower is more uniform, 0 when
    all rows coincide. Above ``max_rows`` rows, a seeded subsample is used."""
    x = torch.as_tensor(emb).detach().float()
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"emb must be (n, d) with n >= 2, got {tuple(x.shape)}")
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t!r}")
    if positive_int("max_rows", max_rows) < 2:
        raise ValueError(f"max_rows must be >= 2, got {max_rows}")
    if len(x) > max_rows:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(len(x), generator=gen)[:max_rows].to(x.device)]
    x = F.normalize(x, dim=1)  # (n, d)
    return float(torch.pdist(x).pow(2).mul(-t).exp().mean().log())


# -------------------------------------------------------------------------- fit
def _check(hparams: dict) -> dict:
    variant = hparams.get("variant", "lightgcn")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    h = {**_DEFAULTS[variant], **hparams}
    check_known(h, _DEFAULTS[variant], "LightGCN", f" for variant {variant!r}")
    for key in ("dim", "epochs", "batch_size"):
        positive_int(key, h[key])
    if isinstance(h["n_layers"], bool) or not isinstance(h["n_layers"], int):
        raise ValueError(f"n_layers must be an int, got {h['n_layers']!r}")
    if h["n_layers"] < (1 if variant.startswith("simgcl") else 0):
        raise ValueError(
            f"n_layers must be >= {1 if variant.startswith('simgcl') else 0} for "
            f"{variant}, got {h['n_layers']}"
        )
    for key in ("lr", "reg", "init_std", "lambda_cl", "eps"):
        if key in h:
            non_negative(key, h[key])
    if "tau" in h and not non_negative("tau", h["tau"]) > 0:
        raise ValueError(f"tau must be > 0, got {h['tau']!r}")
    if "rho" in h and not 0 <= non_negative("rho", h["rho"]) < 1:
        raise ValueError(f"rho must be in [0, 1), got {h['rho']!r}")
    return h


def fit(
    train, seed: int = 0, device=None, valid=None, *, return_model=False, **hparams
):
    """Train LightGCN (or a variant) and return its (n_users, n_items) scores.

    Args:
        train: (n_users, n_items) boolean matrix of training positives.
        seed: seeds initialisation, shuffling, negatives, edge dropout and noise.
        device: where to train (default :func:`ganrec_lite.get_device`).
        valid: optional (n_users, n_items) validation positives; when given, NDCG@20
            on them is checked every 5 epochs, training stops after 3 checks without
            improvement and the best epoch's weights are kept.
        return_model: also return the :class:`LightGCN` model and the
            :class:`~ganrec_lite.train.History`.
        **hparams: ``variant`` (one of :data:`VARIANTS`, default ``"lightgcn"``)
            and overrides of that variant's dict (:data:`LIGHTGCN_HPARAMS`,
            :data:`SGL_HPARAMS`, :data:`SIMGCL_HPARAMS`, :data:`SIMGCL_ADV_HPARAMS`).
    """
    h = _check(hparams)
    variant = h["variant"]
    X = as_csr(train, "train")
    if X.nnz == 0:
        raise ValueError("train has no positives")
    V = None if valid is None else as_csr(valid, "valid")
    if V is not None and V.shape != X.shape:
        raise ValueError(f"valid has shape {V.shape}, train {X.shape}; they must match")
    dev = resolve_device(device)
    torch.manual_seed(seed)  # initialisation
    gen = torch.Generator(device=dev).manual_seed(seed)  # every other draw
    U, n_items = X.shape
    pos_u, pos_i = positive_pairs(X, dev)  # (E,), (E,)
    adj = _norm_adj(pos_u, pos_i, U, n_items)  # (N, N)
    model = LightGCN(adj, U, n_items, h["dim"], h["n_layers"], h["init_std"]).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=h["lr"])
    sampler = NegativeSampler(X, dev)
    K, lam = h["n_layers"], h.get("lambda_cl", 0.0)

    def noisy(k: int, E: torch.Tensor) -> torch.Tensor:  # SimGCL's random view
        return random_noise(E, h["eps"], gen)

    def step(epoch: int) -> torch.Tensor:
        if variant == "sgl":  # two edge-dropout graphs per epoch
            views = [
                edge_dropout(pos_u, pos_i, U, n_items, h["rho"], gen) for _ in range(2)
            ]
        total = torch.zeros((), device=dev)
        for u, i in shuffled_batches(pos_u, pos_i, h["batch_size"], gen):  # (B,)
            j = sampler.sample(u, generator=gen)  # (B,)
            Eu, Ei = model.split(model())  # (U, d), (I, d)
            e_u = Eu[u]  # (B, d)
            loss = bpr_loss((e_u * Ei[i]).sum(1), (e_u * Ei[j]).sum(1))
            if variant != "lightgcn":
                # the batch's distinct nodes (a device sync on CUDA, as the
                # references' unique)
                uu, ii = torch.unique(u), torch.unique(i)  # (B_u,), (B_i,)
                if variant == "sgl":
                    V1, V2 = model(views[0]), model(views[1])  # (N, d) each
                else:
                    V2 = model(noise=noisy, include_ego=False)  # (N, d)
                    if variant == "simgcl":
                        d1 = noisy
                    else:
                        d1 = adversarial_noise(
                            adj, model.E0, K, V2, uu, ii, U, h["eps"], h["tau"]
                        )
                    V1 = model(noise=d1, include_ego=False)  # (N, d)
                loss = loss + lam * contrastive_loss(V1, V2, uu, ii, U, h["tau"])
            E0 = model.E0
            l2 = E0[u].pow(2).sum(1) + E0[U + i].pow(2).sum(1) + E0[U + j].pow(2).sum(1)
            opt.zero_grad(set_to_none=True)
            (loss + h["reg"] * 0.5 * l2.mean()).backward()
            opt.step()
            total += loss.detach() * len(u)
        return total / len(pos_u)

    def validate() -> float:  # NDCG@20 on the validation positives
        return evaluate(model.full_scores(), X, V, ks=(20,))["ndcg@20"]

    with _small_ops_threads(dev):
        hist: History = train_epochs(
            step, h["epochs"], validate=None if V is None else validate, model=model
        )
    scores = model.full_scores()  # (U, I)
    return (scores, model, hist) if return_model else scores
