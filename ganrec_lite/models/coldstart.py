"""Cold-start items: recommending films nobody has rated, from their text.

A cold item has no interaction in training, so a collaborative model has no embedding
for it. Every method here reads the items' text embeddings ``T`` (n_items, 384), from
the sentence encoder of Chapter 2.2 (:func:`item_embeddings`), and scores every item
for every user, warm and cold alike:

- ``fit_text_knn``: a user's profile is the normalised mean of the text embeddings of
  what they liked; an item's score is its cosine with the profile. No training.
- ``fit_text_regress``: BPR-MF (Chapter 5.2) learns warm items' embeddings ``q_i`` and
  biases ``b_i``; a ridge regression from text to ``[q_i, b_i]``, fitted on the warm
  items, gives cold items theirs (the family of deep content-based music
  recommendation, van den Oord et al. 2013, and DropoutNet, Volkovs et al. 2017).
- ``fit_text_gan``: a generator ``G`` (an MLP) maps text to ``[q, b]``. Three forces
  train it on warm items: a reconstruction loss towards BPR's ``[q_i, b_i]``; the
  recommender itself, which must rank the generated item above a sampled negative for
  the users who liked it (BPR on generated embeddings); and a discriminator
  ``D(x, p_u)`` that tells BPR's real item embeddings from generated ones, for the
  user ``p_u`` who liked the item, which ``G`` must fool (in the spirit of LARA, Sun
  et al. 2020, and GAR, Chen et al. 2022). ``adv_weight=0`` removes the adversary:
  the ablation.

Chapter 5.9 adds LLM-written side information (:mod:`ganrec_lite.llm`): ``text=
"generated"`` embeds each item's text followed by SmolLM2's description of it,
``"description"`` the description alone; ``fit_text_knn(user="generated")`` replaces
the mean of liked items by the embedding of the user's generated taste profile
(``"both"`` adds the two). Chapter 5.10 swaps the CF model under ``fit_text_gan``
(``backbone``: BPR, or LightGCN / SimGCL / SimGCL-adv from Chapter 5.8).

Warm items keep their BPR embeddings in the two CF-based methods; only cold items get
generated ones. ``G`` is selected on *pseudo-cold* items: a share of the warm items is
withheld from ``G``'s training, and the epoch whose generated embeddings rank those
items best for the users who liked them (NDCG@20, warm items not candidates) is kept.

Introduced in Chapter 5.7.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..gan import CondMLP, discriminator_loss, generator_loss, mlp
from ..metrics import evaluate
from ._common import as_csr, check_known, non_negative, positive_int, resolve_device
from .bpr import NegativeSampler, _small_ops_threads, positive_pairs, shuffled_batches
from .bpr import fit as bpr_fit

__all__ = [
    "TEXTS",
    "KNN_HPARAMS",
    "REGRESS_HPARAMS",
    "GAN_HPARAMS",
    "USERS",
    "BACKBONES",
    "item_embeddings",
    "user_profile_embeddings",
    "ridge",
    "fit_text_knn",
    "fit_text_regress",
    "fit_text_gan",
    "fit_pop_oracle",
    "fit_text_pop",
]

TEXTS = ("titles", "generated", "description")  # the last two: Chapter 5.9
USERS = ("liked", "generated", "both")  # text-knn's user profile
BACKBONES = ("bpr", "lightgcn", "simgcl", "simgcl-adv")  # text-gan's CF model
KNN_HPARAMS = {"text": "titles", "user": "liked"}
POP_HPARAMS = {"text": "titles", "ridge": 1.0}
REGRESS_HPARAMS = {"text": "titles", "ridge": 1.0, "bpr_epochs": 45}
GAN_HPARAMS = {
    "text": "titles",
    "backbone": "bpr",  # the CF model whose embedding space G writes into
    "bpr_epochs": 45,  # (the LightGCN family trains its own tuned epochs)
    "hidden": 256,  # G: 384 -> 256 -> d + 1; D: (d + 1) + d -> 128 -> 1
    "hidden_D": 128,
    "epochs": 15,  # passes over the warm positives (best pseudo-cold epoch kept)
    "batch_size": 1024,
    "lr": 3e-4,  # Adam, G and D; G overfits within a few epochs at 1e-3
    "rec_weight": 1.0,  # reconstruction towards BPR's [q_i, b_i]
    "rank_weight": 1.0,  # BPR loss of the generated items
    "adv_weight": 0.1,  # the adversary; 0 = ablation
    "pseudo_cold": 0.1,  # share of warm items withheld to select the epoch
    "eval_every": 1,
}


# ------------------------------------------------------------------------- the text
def item_embeddings(text: str = "titles", n_items: int | None = None) -> torch.Tensor:
    """(n_items, 384) unit-norm text embeddings of the ML-100K items (cached on disk).

    ``"titles"``: ``"Title (year). Genres: ..."`` (:func:`ganrec_lite.text.item_text`);
    ``"generated"``: that text, then SmolLM2's description of the item (the committed
    generations, :func:`ganrec_lite.llm.replayed`); ``"description"``: the
    description alone.

    Raises:
        ValueError: unknown ``text``, ``n_items`` other than ML-100K's 1,682, or
            generations made from other prompts than today's data gives.
    """
    from ..data import load_movielens
    from ..llm import item_prompts, replayed
    from ..text import TextEncoder, item_text

    if text not in TEXTS:
        raise ValueError(f"text must be one of {TEXTS}, got {text!r}")
    ml = load_movielens("ml-100k")
    if n_items is not None and n_items != ml.n_items:
        raise ValueError(
            f"the text methods know ML-100K's {ml.n_items} items; the matrix has "
            f"{n_items} columns"
        )
    texts = item_text(ml.items)
    if text != "titles":
        desc = replayed("items", item_prompts(ml.items))
        texts = desc if text == "description" else [
            f"{t}. {d}" for t, d in zip(texts, desc, strict=True)
        ]  # fmt: skip
    return TextEncoder().encode(texts)


def user_profile_embeddings(train) -> torch.Tensor:
    """(n_users, 384) unit-norm embeddings of SmolLM2's taste profile of each user
    (Chapter 5.9); a user with no training rating gets a zero row.

    The profiles were written from ``coldstart-ml100k``'s training ratings, so they
    may only be used with that training matrix: on another split they would carry
    its test ratings.

    Raises:
        ValueError: ``train`` is not ``coldstart-ml100k``'s training matrix.
    """
    from ..bench import _coldstart_ml100k, coldstart_splits
    from ..llm import replayed, user_prompts
    from ..text import TextEncoder

    X = as_csr(train, "train")
    ml, cs, warm = coldstart_splits()
    ref = _coldstart_ml100k((ml, cs, warm))[0]
    if X.shape != ref.shape or (X != ref).nnz:
        raise ValueError(
            "the generated user profiles were written from coldstart-ml100k's "
            "training ratings; with another training matrix they would leak its test "
            "ratings (use user='liked')"
        )
    msgs = user_prompts(warm.train, ml.items, ml.n_users)
    texts = replayed("users", msgs)
    emb = TextEncoder().encode([t if t else "-" for t in texts])  # (U, 384)
    empty = torch.as_tensor([not t for t in texts])
    return emb.masked_fill(empty[:, None], 0.0)


def _warm_cold(X) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(X.sum(axis=0)).ravel()  # (I,) training positives per item
    return np.flatnonzero(n > 0), np.flatnonzero(n == 0)


def ridge(A: torch.Tensor, Y: torch.Tensor, lam: float) -> torch.Tensor:
    """``W`` minimising ``|[A, 1] W - Y|^2 + lam |W_A|^2`` (the intercept is not
    penalised): (d_a + 1, d_y). Solved in float64."""
    A1 = torch.cat([A, torch.ones(len(A), 1, dtype=A.dtype)], 1).double()  # (n, d+1)
    reg = torch.eye(A1.shape[1], dtype=torch.float64) * lam
    reg[-1, -1] = 0.0
    W = torch.linalg.solve(A1.T @ A1 + reg, A1.T @ Y.double())  # (d+1, d_y)
    return W.float()


def _check(h: dict, known: dict, name: str) -> dict:
    check_known(h, known, name)
    if h["text"] not in TEXTS:
        raise ValueError(f"text must be one of {TEXTS}, got {h['text']!r}")
    if "user" in h and h["user"] not in USERS:
        raise ValueError(f"user must be one of {USERS}, got {h['user']!r}")
    if "backbone" in h and h["backbone"] not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {h['backbone']!r}")
    return h


def _text(train, h, T):
    X = as_csr(train, "train")
    if X.nnz == 0:
        raise ValueError("train has no positives")
    if T is None:
        T = item_embeddings(h["text"], X.shape[1])
    T = torch.as_tensor(T, dtype=torch.float32)
    if T.ndim != 2 or T.shape[0] != X.shape[1]:
        raise ValueError(
            f"item text embeddings must be (n_items={X.shape[1]}, d), got "
            f"{tuple(T.shape)}"
        )
    return X, T


# --------------------------------------------------------------- the oracle ceiling
def fit_pop_oracle(train, seed: int = 0, device=None, valid=None):
    """Popularity counted on ``train`` *plus* ``valid``: bench passes the test set
    as ``valid`` (the method is registered as looking at test), so cold items are
    ranked by how often they are liked in test. No real system can do this; it is
    the ceiling of any non-personalised ranking of cold items."""
    X = as_csr(train, "train")
    if valid is None:
        raise ValueError("pop-oracle needs the held-out positives as valid")
    V = as_csr(valid, "valid")
    if V.shape != X.shape:
        raise ValueError(f"valid has shape {V.shape}, train {X.shape}; they must match")
    dev = resolve_device(device)
    n = np.asarray(X.sum(axis=0) + V.sum(axis=0), dtype=np.float32).ravel()  # (I,)
    return torch.as_tensor(n, device=dev).expand(X.shape[0], -1)  # (U, I)


def fit_text_pop(train, seed: int = 0, device=None, valid=None, *, T=None, **hparams):
    """Popularity among cold items, *estimated*: a ridge regression from text to
    ``log(1 + training positives)`` fitted on the warm items predicts it for the cold
    ones (warm items keep their own count). Not personalised."""
    h = _check({**POP_HPARAMS, **hparams}, POP_HPARAMS, "text-pop")
    non_negative("ridge", h["ridge"])
    X, T = _text(train, h, T)
    dev = resolve_device(device)
    n = np.asarray(X.sum(axis=0)).ravel()  # (I,) training positives per item
    y = torch.as_tensor(np.log1p(n), dtype=torch.float32)
    warm, cold = _warm_cold(X)
    W = ridge(T[warm], y[warm, None], h["ridge"])  # (384 + 1, 1)
    pred = (torch.cat([T, torch.ones(len(T), 1)], 1) @ W).squeeze(1)  # (I,)
    y[cold] = pred[cold]
    return y.to(dev).expand(X.shape[0], -1)  # (U, I)


# ---------------------------------------------------------------------- text k-NN
def fit_text_knn(
    train, seed: int = 0, device=None, valid=None, *, T=None, profiles=None, **hparams
):
    """Cosine between each user's profile and every item's text.

    The profile (``user``): ``"liked"``, the mean text of the items the user liked;
    ``"generated"``, the embedding of SmolLM2's taste profile (Chapter 5.9;
    ``profiles`` (n_users, d) replaces it); ``"both"``, the sum of the two, each
    normalised. ``T`` (n_items, d) replaces the items' embeddings (tests, other
    encoders). Returns an (n_users, n_items) tensor; a user with no profile scores 0.
    """
    h = _check({**KNN_HPARAMS, **hparams}, KNN_HPARAMS, "text-knn")
    X, T = _text(train, h, T)
    dev = resolve_device(device)
    T = F.normalize(T.to(dev), dim=1)  # (I, d)
    Xt = torch.as_tensor(X.toarray(), dtype=torch.float32, device=dev)  # (U, I)
    profile = F.normalize(Xt @ T, dim=1)  # (U, d) mean direction of liked items
    if h["user"] != "liked":
        if profiles is None:
            profiles = user_profile_embeddings(X)
        G = torch.as_tensor(profiles, dtype=torch.float32, device=dev)  # (U, d)
        if G.shape != (X.shape[0], T.shape[1]):
            raise ValueError(
                f"profiles must be (n_users={X.shape[0]}, {T.shape[1]}), got "
                f"{tuple(G.shape)}"
            )
        G = F.normalize(G, dim=1)
        profile = G if h["user"] == "generated" else F.normalize(profile + G, dim=1)
    return profile @ T.T  # (U, I)


# -------------------------------------------------------------------- regression
def _bpr(X, seed, dev, epochs):
    _, mf, _ = bpr_fit(X, seed, dev, None, return_model=True, epochs=epochs)
    return mf


def fit_text_regress(
    train, seed: int = 0, device=None, valid=None, *, T=None, **hparams
):
    """BPR-MF for warm items; a ridge regression text -> [q, b] for cold ones."""
    h = _check({**REGRESS_HPARAMS, **hparams}, REGRESS_HPARAMS, "text-regress")
    non_negative("ridge", h["ridge"])
    positive_int("bpr_epochs", h["bpr_epochs"])
    X, T = _text(train, h, T)
    dev = resolve_device(device)
    mf = _bpr(X, seed, dev, h["bpr_epochs"])
    warm, cold = _warm_cold(X)
    with torch.no_grad():
        Y = torch.cat([mf.Q, mf.b[:, None]], 1).cpu()  # (I, d + 1) BPR's items
        W = ridge(T[warm], Y[warm], h["ridge"])  # (384 + 1, d + 1)
        T1 = torch.cat([T, torch.ones(len(T), 1)], 1)  # (I, 384 + 1)
        Y_hat = T1 @ W  # (I, d + 1)
        Y[cold] = Y_hat[cold]  # cold items get generated embeddings
        Y = Y.to(dev)
        return mf.P @ Y[:, :-1].T + Y[:, -1]  # (U, I)


# ------------------------------------------------------------------------ text GAN
def _backbone(X, seed, dev, h):
    """The CF model G writes into: user rows ``P`` (U, d), item rows ``[q_i, b_i]``
    (I, d + 1) (LightGCN's family has no bias: ``b = 0``), and the model."""
    if h["backbone"] == "bpr":
        model = _bpr(X, seed, dev, h["bpr_epochs"])
        P, Q, b = model.P, model.Q, model.b
    else:
        from . import lightgcn

        _, model, _ = lightgcn.fit(
            X, seed, dev, None, return_model=True, variant=h["backbone"]
        )
        with torch.no_grad():
            P, Q = model.split(model())  # (U, d), (I, d): propagated
        b = torch.zeros(len(Q), device=Q.device)
    for p in model.parameters():
        p.requires_grad_(False)
    return P.detach(), torch.cat([Q, b[:, None]], 1).detach(), model


def _pseudo_cold(warm: np.ndarray, share: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = max(1, int(round(share * len(warm))))
    return np.sort(rng.choice(warm, size=n, replace=False))


def fit_text_gan(
    train,
    seed: int = 0,
    device=None,
    valid=None,
    *,
    T=None,
    return_model=False,
    **hparams,
):
    """Train the text-to-embedding generator against BPR's embeddings (see module).

    Returns the (n_users, n_items) scores, and with ``return_model`` also
    ``(G, model, history)``, where ``model`` is the backbone and ``history`` holds
    ``epochs`` (evaluated epochs), ``ndcg`` (pseudo-cold NDCG@20 at each) and
    ``best_epoch``.
    """
    h = _check({**GAN_HPARAMS, **hparams}, GAN_HPARAMS, "text-gan")
    for key in ("bpr_epochs", "hidden", "hidden_D", "epochs", "batch_size"):
        positive_int(key, h[key])
    positive_int("eval_every", h["eval_every"])
    for key in ("lr", "rec_weight", "rank_weight", "adv_weight"):
        non_negative(key, h[key])
    if not 0 < non_negative("pseudo_cold", h["pseudo_cold"]) < 1:
        raise ValueError(f"pseudo_cold must be in (0, 1), got {h['pseudo_cold']!r}")
    X, T = _text(train, h, T)
    dev = resolve_device(device)
    P, Y, mf = _backbone(X, seed, dev, h)  # (U, d), (I, d + 1) real items
    d = P.shape[1]
    warm, cold = _warm_cold(X)
    held = _pseudo_cold(warm, h["pseudo_cold"], seed)  # pseudo-cold items
    fit_items = np.setdiff1d(warm, held)

    torch.manual_seed(seed)
    gen = torch.Generator(device=dev).manual_seed(seed)
    T = T.to(dev)
    G = mlp([T.shape[1], h["hidden"], d + 1]).to(dev)
    D = CondMLP([(d + 1) + d, h["hidden_D"], 1], activation=torch.nn.LeakyReLU).to(dev)
    opt_G = torch.optim.Adam(G.parameters(), lr=h["lr"])
    opt_D = torch.optim.Adam(D.parameters(), lr=h["lr"])

    Xfit = X[:, fit_items]  # positives of the items G trains on (local ids)
    Xfit = as_csr(Xfit, "train")
    fit_idx = torch.as_tensor(fit_items, device=dev)  # local -> global item id
    pos_u, pos_li = positive_pairs(Xfit, dev)  # (nnz,), (nnz,)
    sampler = NegativeSampler(Xfit, dev) if Xfit.nnz else None

    # selection: rank the pseudo-cold items (only) for the users who liked them
    Xh = X[:, held]
    has_held = np.asarray(Xh.sum(axis=1)).ravel() > 0
    held_idx = torch.as_tensor(held, device=dev)
    held_users = torch.as_tensor(np.flatnonzero(has_held), device=dev)  # (U_h,)

    def pseudo_cold_ndcg() -> float:
        with torch.no_grad():
            Yh = G(T[held_idx])  # (H, d + 1)
            S = P[held_users] @ Yh[:, :-1].T + Yh[:, -1]  # (U_h, H)
        return evaluate(S, None, Xh[has_held], ks=(20,))["ndcg@20"]

    def epoch_step() -> None:
        for u, li in shuffled_batches(pos_u, pos_li, h["batch_size"], gen):
            i = fit_idx[li]  # (B,) global ids
            j = fit_idx[sampler.sample(u, generator=gen)]  # (B,) negatives
            fake_i = G(T[i])  # (B, d + 1)
            real_i = Y[i]  # (B, d + 1)
            p = P[u]  # (B, d)
            if h["adv_weight"] > 0:
                d_real = D(real_i, p)
                d_fake = D(fake_i.detach(), p)
                loss_D = discriminator_loss(d_real, d_fake)
                opt_D.zero_grad(set_to_none=True)
                loss_D.backward()
                opt_D.step()
            fake_j = G(T[j])  # (B, d + 1)
            x_ui = (p * fake_i[:, :-1]).sum(1) + fake_i[:, -1]
            x_uj = (p * fake_j[:, :-1]).sum(1) + fake_j[:, -1]
            loss = h["rec_weight"] * (fake_i - real_i).pow(2).sum(1).mean()
            loss = loss + h["rank_weight"] * F.softplus(x_uj - x_ui).mean()
            if h["adv_weight"] > 0:
                loss = loss + h["adv_weight"] * generator_loss(D(fake_i, p))
            opt_G.zero_grad(set_to_none=True)
            loss.backward()
            opt_G.step()

    hist = {"epochs": [], "ndcg": [], "best_epoch": 0}
    best, best_state = -float("inf"), None
    with _small_ops_threads(dev):
        for epoch in range(1, h["epochs"] + 1):
            epoch_step()
            if epoch % h["eval_every"] and epoch != h["epochs"]:
                continue
            r = pseudo_cold_ndcg()
            hist["epochs"].append(epoch)
            hist["ndcg"].append(r)
            if r > best:
                best, hist["best_epoch"] = r, epoch
                best_state = copy.deepcopy(G.state_dict())
    G.load_state_dict(best_state)
    with torch.no_grad():
        Yall = Y.clone()
        gen_cold = torch.as_tensor(cold, device=dev)
        if len(cold):
            Yall[gen_cold] = G(T[gen_cold])  # cold items: generated
        S = P @ Yall[:, :-1].T + Yall[:, -1]  # (U, I)
    return (S, G, mf, hist) if return_model else S
