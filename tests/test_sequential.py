"""The causal transformer recommender of Chapter 3.2 and its sequence helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ganrec_lite.models.sequential import (
    IGNORE,
    PAD,
    CausalRecommender,
    next_item_loss,
    pad_histories,
    score_next,
    training_windows,
    user_sequences,
)

N_ITEMS, T = 12, 8


@pytest.fixture(autouse=True)
def one_thread():
    # The tensors here are tiny: one thread is faster than several, and it keeps the
    # tests quick on a loaded machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny(**kw) -> CausalRecommender:
    torch.manual_seed(0)
    args = dict(
        n_items=N_ITEMS, max_len=T, d_model=16, n_heads=2, n_layers=2, dropout=0.0
    )
    return CausalRecommender(**(args | kw)).eval()


def test_shapes_and_tied_head():
    model = tiny()
    tokens = torch.randint(1, N_ITEMS + 1, (3, 5))  # (B, T')
    assert model(tokens).shape == (3, 5, N_ITEMS)
    assert model.hidden(tokens).shape == (3, 5, 16)
    assert model.output_weight().data_ptr() == model.item_emb.weight[1:].data_ptr()
    untied = tiny(tie_weights=False)
    assert untied(tokens).shape == (3, 5, N_ITEMS)
    assert untied.output_weight().shape == (N_ITEMS, 16)


@pytest.mark.parametrize("t", [0, 3, 6])
def test_causality(t):
    model = tiny()
    tokens = torch.randint(1, N_ITEMS + 1, (2, T))
    changed = tokens.clone()
    changed[:, t + 1] = changed[:, t + 1] % N_ITEMS + 1  # a different future item
    before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])


def test_padding_is_ignored():
    model = tiny()
    seq = torch.tensor([[3, 7, 1, 9]])  # (1, 4)
    padded = torch.cat([torch.full((1, 3), PAD), seq], dim=1)  # (1, 7)
    torch.testing.assert_close(model(padded)[:, 3:], model(seq), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(model(torch.full((2, T), PAD))).all()  # all-padding rows


def test_loss_ignores_targets_marked_ignore():
    model = tiny()
    x = torch.tensor([[0, 0, 2, 5, 3]])
    y1 = torch.tensor([[IGNORE, IGNORE, 4, 2, 7]])
    y2 = torch.tensor([[IGNORE, IGNORE, IGNORE, 2, 7]])
    logits = model(x)[0]  # (T, n_items)
    ref = torch.nn.functional.cross_entropy(logits[3:], y2[0, 3:])
    torch.testing.assert_close(next_item_loss(model, x, y2), ref)
    assert not torch.isclose(next_item_loss(model, x, y1), ref)


def test_tiny_model_overfits_deterministic_sequences():
    # Users walk the items in a fixed cycle from different starts; the next item is
    # a function of the current one, so a tiny model must learn it exactly.
    torch.manual_seed(0)
    seqs = [np.arange(s, s + 20) % N_ITEMS for s in (0, 4, 8)]
    x, y = training_windows(seqs, N_ITEMS, T)
    model = CausalRecommender(N_ITEMS, max_len=T, d_model=32, n_heads=2, n_layers=1,
                              dropout=0.0, tie_weights=False)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = next_item_loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05
    top = score_next(model, [np.array([3, 4, 5]), np.array([10, 11, 0])]).argmax(1)
    assert top.tolist() == [6, 1]


def test_user_sequences_orders_by_time_and_aligns_values():
    df = pd.DataFrame({"user": [1, 0, 1, 1, 0], "item": [5, 2, 3, 4, 1],
                       "timestamp": [30, 5, 10, 10, 1],
                       "rating": [1, 2, 3, 4, 5]})  # fmt: skip
    seqs = user_sequences(df, n_users=3)
    assert [s.tolist() for s in seqs] == [[1, 2], [3, 4, 5], []]
    items, ratings = user_sequences(df, values="rating")
    assert [r.tolist() for r in ratings] == [[5, 2], [3, 4, 1]]
    with pytest.raises(ValueError, match="timestamp"):
        user_sequences(df.drop(columns="timestamp"))
    with pytest.raises(ValueError, match="n_users"):
        user_sequences(df, n_users=1)


def test_training_windows_cover_every_target_once():
    seq = np.arange(11)  # items 0..10: 10 targets
    x, y = training_windows([seq], n_items=N_ITEMS, max_len=4)
    assert x.shape == y.shape == (3, 4)
    targets = y[y != IGNORE]
    assert sorted(targets.tolist()) == list(range(1, 11))
    # inputs are tokens of the item before each target
    assert torch.equal(x[y != IGNORE], targets)  # token(item - 1) = item
    assert (x[y == IGNORE] == PAD).all()
    keep = [seq % 2 == 0]  # only even items are targets
    _, y2 = training_windows([seq], N_ITEMS, 4, keep=keep)
    assert sorted(y2[y2 != IGNORE].tolist()) == [2, 4, 6, 8, 10]


def test_pad_histories_left_truncates_and_pads():
    h = pad_histories([np.arange(6), np.array([2]), np.array([], np.int64)], N_ITEMS, 4)
    assert h.tolist() == [[3, 4, 5, 6], [0, 0, 0, 3], [0, 0, 0, 0]]


def test_score_next_matches_last_position_and_restores_mode():
    model = tiny().train()
    hist = [np.array([1, 2, 3]), np.array([4])]
    s = score_next(model, hist, batch_size=1)
    assert s.shape == (2, N_ITEMS) and model.training
    model.eval()
    torch.testing.assert_close(s[0], model(torch.tensor([[2, 3, 4]]))[0, -1])


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_items=0), dict(d_model=10, n_heads=3), dict(max_len=0), dict(dropout=1.0)],
)
def test_bad_model_arguments(kwargs):
    with pytest.raises(ValueError):
        tiny(**kwargs)


def test_bad_inputs_raise_value_error():
    model = tiny()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, T + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="long"):
        model(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        model(torch.tensor([[1, N_ITEMS + 1]]))
    with pytest.raises(ValueError, match="n_items"):
        training_windows([np.array([0, N_ITEMS])], N_ITEMS, T)
    with pytest.raises(ValueError, match="target"):
        training_windows([np.array([1])], N_ITEMS, T)
    with pytest.raises(ValueError, match="n_items"):
        pad_histories([np.array([-1])], N_ITEMS, T)
    with pytest.raises(ValueError, match="shape"):
        next_item_loss(
            model,
            torch.ones(1, 3, dtype=torch.long),
            torch.ones(1, 2, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="batch_size"):
        score_next(model, [np.array([1])], batch_size=0)
