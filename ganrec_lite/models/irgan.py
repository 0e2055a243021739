"""IRGAN (Wang et al. 2017) for item recommendation: a minimax game of two MFs.

The generator ``G`` is a softmax over all items, ``p_theta(i | u) = softmax_i(g_u .
h_i + c_i)``: it *samples* items it believes the user likes. The discriminator ``D``
scores a pair, ``f(u, i) = d_u . e_i + a_i``, and learns to tell the user's true
positives (label 1) from items sampled by ``G`` (label 0), with a pointwise logistic
loss. ``G`` cannot be trained by back-propagating through a discrete sample, so it
follows the policy gradient (REINFORCE)::

    grad J(theta) = E_{i ~ p_theta(.|u)} [ grad log p_theta(i | u) * reward(u, i) ]

with ``reward(u, i) = 2 (sigmoid(f(u, i)) - 1/2)`` in ``(-1, 1)``. The paper's code
draws the policy's samples from a mixture ``p_n = (1 - lambda) p_theta + lambda *
uniform(user's positives)`` and corrects with the importance weight ``p_theta / p_n``.
The recommender is ``G``'s logits. Both MFs have embedding size 5; ``G`` starts from a
dynamic-negative-sampling BPR model (the paper starts from its released DNS model;
we train our own, :mod:`ganrec_lite.models.bpr` with ``negatives="dns"``).

Introduced in Chapter 5.4.

Hyper-parameters (:data:`HPARAMS`) follow the released code (geek-ai/irgan,
``item_recommendation/cf_gan.py``, ``gen_model.py``, ``dis_model.py``): embedding 5,
plain SGD with learning rate 0.001 for both players, D initialised U(-0.05, 0.05)
with zero bias and L2 0.1/16 per example on a batch of 16 (a sum loss), G without L2;
D's negatives drawn from ``softmax(logits / 0.2)`` (temperature 0.2) and redrawn every
5 D passes; 100 D passes, then 50 G passes, per epoch; 2 ``|pos_u|`` policy samples per
user with ``lambda = 0.2``. Two changes make it fast, both first-order equivalent to
the released loops: D takes mini-batches of ``d_batch`` lines (a summed loss, so a step
moves as far as the paper's 16-line steps would in sequence) and G updates a batch of
users at once (the sum of the users' losses) instead of one SGD step per user.

Selection. The released code evaluates ``G`` on the *test* set after every G pass and
keeps the best (P@5): an optimistic protocol. :func:`fit` keeps the best pass on a
``valid`` matrix when one is given (bench's ``irgan-testsel`` passes the test set, to
reproduce the paper's protocol, and marks the record); without it, it trains the fixed
number of passes in :data:`HPARAMS`, which we chose on a validation hold-out carved
from the training set (Chapter 5.4 shows that run).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..metrics import evaluate
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device
from .bpr import MF, _small_ops_threads
from .bpr import fit as bpr_fit

__all__ = [
    "HPARAMS",
    "TESTSEL_HPARAMS",
    "SELECT_KEY",
    "IRGANHistory",
    "sample_per_user",
    "policy_samples",
    "d_loss",
    "g_loss",
    "fit",
]

HPARAMS = {
    "dim": 5,  # EMB_DIM
    "epochs": 15,  # outer epochs: at most 15 x 50 = 750 G passes
    "d_epochs": 100,  # D passes per epoch
    "resample_every": 5,  # D's negatives redrawn every 5 passes
    "g_epochs": 50,  # G passes per epoch
    "lr_d": 1e-3,  # SGD
    "lr_g": 1e-3,  # SGD
    "reg_d": 0.1 / 16,  # lamda of DIS, per example, times tf.nn.l2_loss of the batch
    "reg_g": 0.0,  # lamda of GEN
    "temperature": 0.2,  # D's negatives ~ softmax(G logits / 0.2)
    "sample_lambda": 0.2,  # policy samples ~ (1 - lambda) p_theta + lambda * positives
    "init_delta": 0.05,  # D: U(-0.05, 0.05) embeddings, zero bias
    "d_batch": 512,  # lines (u, pos, neg) per D step (paper: 16, one at a time)
    "g_user_batch": 128,  # users per G step (paper: 1)
    "pretrain_epochs": 100,  # DNS epochs for G's start (dim 5; chosen on validation)
    "dns_k": 5,  # DNS candidates (the paper's DNS_K)
    "pretrain": "dns",  # "dns": our BPR-DNS; "released": the paper's DNS model
    #                     (irgan-ml100k only); "none": G from U(-0.05, 0.05)
    "stop_pass": None,  # stop after this many G passes (None: epochs * g_epochs)
    "holdout": 0.1,  # without `valid`: share of train held out to choose stop_pass
    "patience": 50,  # G passes without a better validation P@5 before stopping
}
# The paper's protocol: all 750 passes, the G pass with the best test P@5 kept.
TESTSEL_HPARAMS = {"patience": None}
PRETRAIN = ("dns", "released", "none")
SELECT_KEY = "precision@5"  # what the released code selects on


class IRGANHistory:
    """What :func:`fit` saw after every G pass (pass 0 is the pre-trained G).

    Attributes:
        passes: G passes done, ``0, 1, ...``.
        valid: the selection metric on ``valid`` (empty without it).
        watch: ``{metric: [...]}`` on ``watch`` (empty without it); never used to
            select anything: it lets a chapter plot the test curve.
        d_loss, g_loss: mean D loss of every D pass; mean G loss of every G pass.
        best_pass: the pass whose G was returned.
        selection: the hold-out run's history when :func:`fit` chose the number
            of passes itself, else ``None``.
    """

    def __init__(self):
        self.passes: list[int] = []
        self.valid: list[float] = []
        self.watch: dict[str, list[float]] = {}
        self.d_loss: list[float] = []
        self.g_loss: list[float] = []
        self.best_pass = 0
        self.selection: IRGANHistory | None = None


def sample_per_user(
    probs: torch.Tensor, counts: torch.Tensor, generator=None
) -> torch.Tensor:
    """Draw ``counts[u]`` items from row ``u`` of ``probs``, with replacement.

    Args:
        probs: (B, I) rows summing to 1.
        counts: (B,) non-negative draws per row.

    Returns:
        (B, max(counts)) item indices; entries at or beyond a row's count are -1.
    """
    m = int(counts.max()) if len(counts) else 0
    if m == 0:
        return torch.full((len(counts), 0), -1, dtype=torch.long, device=probs.device)
    draws = torch.multinomial(probs, m, replacement=True, generator=generator)  # (B, m)
    keep = torch.arange(m, device=probs.device) < counts[:, None]  # (B, m)
    return draws.masked_fill(~keep, -1)


def policy_samples(
    logits: torch.Tensor,
    pos: torch.Tensor,
    sample_lambda: float,
    generator=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The policy's samples for a batch of users, with their importance weights.

    Args:
        logits: (B, I) G's logits of the batch's users.
        pos: (B, I) 0/1 float training positives of the same users (each row >= 1).
        sample_lambda: the mixture weight of the positives in ``p_n``.

    Returns:
        ``items`` (B, M) (-1 past a user's ``2 |pos_u|`` draws), ``valid`` (B, M) bool,
        and ``weight`` (B, M) = ``p_theta(i) / p_n(i)`` (0 where not valid).
    """
    n_pos = pos.sum(1)  # (B,)
    prob = torch.softmax(logits.detach(), dim=1)  # (B, I) p_theta
    pn = (1 - sample_lambda) * prob + sample_lambda * pos / n_pos[:, None]  # (B, I)
    items = sample_per_user(pn, (2 * n_pos).long(), generator)  # (B, M)
    valid = items >= 0
    safe = items.clamp(min=0)
    weight = prob.gather(1, safe) / pn.gather(1, safe)  # (B, M)
    return items, valid, weight * valid


def d_loss(D: MF, u, i, j, reg: float) -> torch.Tensor:
    """D's summed pointwise loss on lines ``(u, i, j)`` (B,) each: ``i`` a true
    positive (label 1), ``j`` a G sample (label 0), plus ``reg`` times half the
    squared norm of the embeddings and biases each example touches (``tf.nn.l2_loss``
    per example, as the released code's loss broadcasts it)."""
    x_pos, x_neg = D(u, i), D(u, j)  # (B,), (B,)
    bce = F.softplus(-x_pos) + F.softplus(x_neg)  # -log s(x+) - log(1 - s(x-))
    l2 = (
        2 * D.P[u].pow(2).sum(1)
        + D.Q[i].pow(2).sum(1)
        + D.Q[j].pow(2).sum(1)
        + D.b[i] ** 2
        + D.b[j] ** 2
    )
    return (bce + reg * 0.5 * l2).sum()


def g_loss(G: MF, users, items, valid, reward, reg: float = 0.0) -> torch.Tensor:
    """The policy-gradient surrogate, summed over the batch's users: for each user the
    mean over their samples of ``-log p_theta(i | u) * reward`` (the released code's
    per-user loss). ``reward`` carries the importance weight and no gradient."""
    logp = torch.log_softmax(G.P[users] @ G.Q.T + G.b, dim=1)  # (B, I)
    lp = logp.gather(1, items.clamp(min=0))  # (B, M)
    n = valid.sum(1).clamp(min=1)  # (B,)
    per_user = -(lp * reward * valid).sum(1) / n  # (B,)
    loss = per_user.sum()
    if reg:
        loss = loss + reg * 0.5 * G.P[users].pow(2).sum()
    return loss


def _check(h: dict) -> dict:
    check_known(h, HPARAMS, "IRGAN")
    for key in ("dim", "epochs", "d_epochs", "resample_every", "g_epochs", "d_batch"):
        positive_int(key, h[key])
    for key in ("g_user_batch", "pretrain_epochs", "dns_k"):
        positive_int(key, h[key])
    for key in ("lr_d", "lr_g", "reg_d", "reg_g", "init_delta"):
        non_negative(key, h[key])
    if not 0 < non_negative("temperature", h["temperature"]):
        raise ValueError(f"temperature must be > 0, got {h['temperature']!r}")
    if not 0 <= non_negative("sample_lambda", h["sample_lambda"]) < 1:
        raise ValueError(f"sample_lambda must be in [0, 1), got {h['sample_lambda']!r}")
    for key in ("stop_pass", "patience"):
        v = h[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{key} must be None or an int >= 0, got {v!r}")
    if not 0 <= non_negative("holdout", h["holdout"]) < 1:
        raise ValueError(f"holdout must be in [0, 1), got {h['holdout']!r}")
    if h["pretrain"] not in PRETRAIN:
        raise ValueError(f"pretrain must be one of {PRETRAIN}, got {h['pretrain']!r}")
    return h


def _uniform_mf(n_users, n_items, dim, delta, gen, dev) -> MF:
    m = MF(n_users, n_items, dim).to(dev)
    with torch.no_grad():
        for p in (m.P, m.Q):
            p.copy_(torch.rand(p.shape, generator=gen, device=dev) * 2 * delta - delta)
        m.b.zero_()
    return m


def _released_dns(n_users, n_items, dim, dev) -> MF:
    """The paper's DNS model (``model_dns_ori.pkl``) as an :class:`MF` on ``dev``."""
    from ..pretrained import load_irgan_model

    m = load_irgan_model("model_dns_ori")
    if m.user_emb.shape != (n_users, dim) or m.item_emb.shape[0] < n_items:
        raise ValueError(
            f"pretrain='released' needs the irgan-ml100k shape ({n_users} users, "
            f"dim {dim}); the released model has {m.user_emb.shape[0]} users, "
            f"{m.item_emb.shape[0]} items, dim {m.user_emb.shape[1]}"
        )
    G = MF(n_users, n_items, dim).to(dev)
    with torch.no_grad():
        G.P.copy_(torch.as_tensor(m.user_emb))
        G.Q.copy_(torch.as_tensor(m.item_emb[:n_items]))
        G.b.copy_(torch.as_tensor(m.item_bias[:n_items]))
    return G


def _select_then_refit(X, seed, dev, watch, return_model, h):
    """Choose the number of G passes on a hold-out of ``X``, then retrain on ``X``."""
    from ..train import holdout

    X_fit, X_val = holdout(X, h["holdout"], seed)
    *_, sel = fit(X_fit, seed, dev, X_val, return_model=True, **{**h, "holdout": 0})
    out = fit(
        X, seed, dev, None, watch=watch, return_model=True,
        **{**h, "holdout": 0, "stop_pass": sel.best_pass},
    )  # fmt: skip
    out[3].selection = sel
    return out if return_model else out[0]


def fit(
    train,
    seed: int = 0,
    device=None,
    valid=None,
    *,
    watch=None,
    return_model=False,
    **hparams,
):
    """Train IRGAN and return G's (n_users, n_items) scores.

    Args:
        train: (n_users, n_items) boolean matrix of training positives (users
            without one take no part in training, as in the released code).
        seed: seeds the pre-training, initialisation and every draw.
        device: where to train (default :func:`ganrec_lite.get_device`).
        valid: optional positives to *select* on: G is evaluated (P@5, train items
            excluded) after every G pass and the best pass is returned (pass 0 = the
            pre-trained G); ``patience`` passes without improvement stop training.
            Without it and with ``holdout > 0`` (the default), the same selection
            runs on a share ``holdout`` of ``train`` held out per user, and G is then
            retrained on all of ``train`` for the chosen number of passes (the
            history is that of the retraining; ``history.selection`` holds the
            hold-out run's). With ``holdout=0``: ``stop_pass`` or all passes.
        watch: optional positives to *observe* only: :class:`IRGANHistory` records
            P@k and NDCG@k (k = 3, 5, 10) on it after every pass.
        return_model: also return ``(G, D, history)``.
        **hparams: overrides of :data:`HPARAMS`.
    """
    h = _check({**HPARAMS, **hparams})
    X = as_csr(train, "train")
    if X.nnz == 0:
        raise ValueError("train has no positives")
    mats = {}
    for name, m in (("valid", valid), ("watch", watch)):
        if m is not None:
            mats[name] = as_csr(m, name)
            if mats[name].shape != X.shape:
                raise ValueError(
                    f"{name} has shape {mats[name].shape}, train {X.shape}; "
                    "they must match"
                )
    dev = resolve_device(device)
    if "valid" not in mats and h["holdout"] > 0:
        return _select_then_refit(X, seed, dev, watch, return_model, h)
    n_users, n_items = X.shape
    gen = torch.Generator(device=dev).manual_seed(seed)

    # G's start: BPR with dynamic negative sampling, embedding 5 (as the paper).
    if h["pretrain"] == "dns":
        _, G, _ = bpr_fit(
            X, seed, dev, None, return_model=True, dim=h["dim"],
            negatives="dns", dns_k=h["dns_k"], epochs=h["pretrain_epochs"],
        )  # fmt: skip
    elif h["pretrain"] == "released":
        G = _released_dns(n_users, n_items, h["dim"], dev)
    else:
        G = _uniform_mf(n_users, n_items, h["dim"], h["init_delta"], gen, dev)
    D = _uniform_mf(n_users, n_items, h["dim"], h["init_delta"], gen, dev)
    opt_g = torch.optim.SGD(G.parameters(), lr=h["lr_g"])
    opt_d = torch.optim.SGD(D.parameters(), lr=h["lr_d"])

    pos = torch.as_tensor(X.toarray(), dtype=torch.float32, device=dev)  # (U, I)
    n_pos = pos.sum(1).long()  # (U,)
    coo = X.tocoo()  # CSR order: by user, then item
    line_u = torch.as_tensor(coo.row, dtype=torch.long, device=dev)  # (nnz,)
    line_i = torch.as_tensor(coo.col, dtype=torch.long, device=dev)  # (nnz,)
    active = torch.nonzero(n_pos > 0).squeeze(1)  # (A,) users with a positive

    hist = IRGANHistory()
    best_metric, best_state = -float("inf"), None

    def observe(n_pass: int) -> None:
        nonlocal best_metric, best_state
        hist.passes.append(n_pass)
        S = G.full_scores()
        if "valid" in mats:
            r = evaluate(S, X, mats["valid"], ks=(5,))[SELECT_KEY]
            hist.valid.append(r)
            if r > best_metric:
                best_metric, hist.best_pass = r, n_pass
                best_state = copy.deepcopy(G.state_dict())
        if "watch" in mats:
            r = evaluate(S, X, mats["watch"], ks=(3, 5, 10))
            for k in (3, 5, 10):
                for name in ("precision", "ndcg"):
                    hist.watch.setdefault(f"{name}@{k}", []).append(r[f"{name}@{k}"])

    def draw_d_negatives() -> torch.Tensor:
        """One G sample per training line (u, i), from softmax(logits / T)."""
        with torch.no_grad():
            probs = torch.softmax(G.full_scores() / h["temperature"], dim=1)  # (U, I)
        draws = sample_per_user(probs, n_pos, gen)  # (U, max |pos|)
        return draws[draws >= 0]  # (nnz,) row-major = CSR order of the lines

    def d_pass(line_j: torch.Tensor) -> torch.Tensor:
        perm = torch.randperm(len(line_u), generator=gen, device=dev)
        total = torch.zeros((), device=dev)
        for s in range(0, len(perm), h["d_batch"]):
            idx = perm[s : s + h["d_batch"]]
            loss = d_loss(D, line_u[idx], line_i[idx], line_j[idx], h["reg_d"])
            opt_d.zero_grad(set_to_none=True)
            loss.backward()
            opt_d.step()
            total += loss.detach()
        return total / (2 * len(perm))  # mean per example

    def g_pass() -> torch.Tensor:
        perm = torch.randperm(len(active), generator=gen, device=dev)
        total = torch.zeros((), device=dev)
        for s in range(0, len(perm), h["g_user_batch"]):
            users = active[perm[s : s + h["g_user_batch"]]]  # (B,)
            with torch.no_grad():
                logits = G.P[users] @ G.Q.T + G.b  # (B, I)
                items, ok, weight = policy_samples(
                    logits, pos[users], h["sample_lambda"], gen
                )  # (B, M) x 3
                d_score = D(users, items.clamp(min=0))  # (B, M)
                reward = 2 * (torch.sigmoid(d_score) - 0.5) * weight  # (B, M)
            loss = g_loss(G, users, items, ok, reward, h["reg_g"])
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            total += loss.detach()
        return total / len(active)

    def stale() -> bool:  # patience ran out on `valid`
        return (
            "valid" in mats
            and h["patience"] is not None
            and hist.passes[-1] - hist.best_pass >= h["patience"]
        )

    d_losses, g_losses = [], []
    with _small_ops_threads(dev):
        if mats:
            observe(0)
        n_pass = 0
        last = h["epochs"] * h["g_epochs"] if h["stop_pass"] is None else h["stop_pass"]
        for _ in range(-(-last // h["g_epochs"])):  # ceil: epochs needed
            for d_epoch in range(h["d_epochs"]):
                if d_epoch % h["resample_every"] == 0:
                    line_j = draw_d_negatives()
                d_losses.append(d_pass(line_j))
            for _ in range(min(h["g_epochs"], last - n_pass)):
                g_losses.append(g_pass())
                n_pass += 1
                if mats:
                    observe(n_pass)
                if stale():
                    break
            if stale():
                break
    hist.d_loss = torch.stack(d_losses).cpu().tolist() if d_losses else []
    hist.g_loss = torch.stack(g_losses).cpu().tolist() if g_losses else []
    if "valid" in mats:
        G.load_state_dict(best_state)
    else:
        hist.best_pass = n_pass
    scores = G.full_scores()  # (U, I)
    return (scores, G, D, hist) if return_model else scores
