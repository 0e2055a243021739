"""The generative LLM of Chapter 5.9 and its committed generations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ganrec_lite import llm


def _gguf_or_skip():
    try:
        return llm.gguf_path()
    except llm.LLMUnavailableError as exc:
        pytest.skip(str(exc))


# ------------------------------------------------------------------------- prompts
def test_item_prompts_fill_the_template():
    items = pd.DataFrame(
        {
            "title": ["Usual Suspects, The (1995)", "Nowhere (1997)"],
            "genres": [["Crime", "Thriller"], ["unknown"]],
        }
    )
    got = llm.item_prompts(items)
    want = "Film: The Usual Suspects (1995). Genres: Crime, Thriller."
    assert got[0].startswith(want)
    assert "Genres: unknown." in got[1]
    with pytest.raises(ValueError, match="'title' and 'genres'"):
        llm.item_prompts(items[["title"]])


def test_user_prompts_take_the_top_rated_training_titles():
    items = pd.DataFrame({"title": [f"Film {i} (1990)" for i in range(5)]})
    ratings = pd.DataFrame(
        {
            "user": [0, 0, 0, 0, 2],
            "item": [0, 1, 2, 3, 4],
            "rating": [3, 5, 5, 4, 1],
            "timestamp": [10, 20, 30, 40, 50],
        }
    )
    got = llm.user_prompts(ratings, items, n_users=3, k=3)
    # rating first, then the most recent: items 2 (5, t=30), 1 (5, t=20), 3 (4)
    assert "Film 2 (1990); Film 1 (1990); Film 3 (1990)." in got[0]
    assert "Film 0" not in got[0]
    assert got[1] == ""  # no rating, nothing to generate
    assert "Film 4 (1990)" in got[2]
    with pytest.raises(ValueError, match="user ids"):
        llm.user_prompts(ratings, items, n_users=2)
    with pytest.raises(ValueError, match="columns"):
        llm.user_prompts(ratings.drop(columns="timestamp"), items, n_users=3)


def test_prompt_sha_names_the_prompt():
    a = llm.prompt_sha("sys", "hello")
    assert a == llm.prompt_sha("sys", "hello") and len(a) == 16
    assert a != llm.prompt_sha("sys", "hello!") and a != llm.prompt_sha("sys2", "hello")


# ---------------------------------------------------------------------- the model
def test_a_missing_gguf_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("GANREC_LLM_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(llm.LLMUnavailableError, match="nope.gguf.*--no-deps"):
        llm.gguf_path()


def test_converted_dir_prefers_a_finished_conversion(tmp_path):
    sha = "ab" * 32
    assert llm.converted_dir(sha, tmp_path) is None  # nothing converted yet
    dest = llm.converted_dir(sha, tmp_path, for_writing=True)
    assert dest.parent == tmp_path and sha[:16] in dest.name
    dest.mkdir()
    assert llm.converted_dir(sha, tmp_path) is None  # no weights: unfinished
    (dest / "model.safetensors").write_bytes(b"x")
    assert llm.converted_dir(sha, tmp_path) == dest


# ----------------------------------------------------------- committed generations
@pytest.fixture(scope="module")
def record():
    return llm.load_generations()


def test_the_committed_record_is_complete(record):
    assert record["model"]["file"] == llm.GGUF_FILE
    assert len(record["model"]["sha256"]) == 64
    assert record["decoding"] == llm.DECODING  # the settings the code uses today
    assert record["decoding"]["do_sample"] is False  # greedy: replayable
    assert len(record["items"]["text"]) == 1682
    assert len(record["users"]["text"]) == 943
    assert record["items"]["template"] == llm.ITEM_TEMPLATE
    assert record["users"]["template"] == llm.USER_TEMPLATE
    texts = record["items"]["text"] + record["users"]["text"]
    assert all(isinstance(t, str) for t in texts)
    assert sum(not t for t in record["items"]["text"]) == 0
    # the model wrote different things for different films
    assert len(set(record["items"]["text"])) > 0.95 * 1682


def test_the_record_names_the_installed_model(record):
    path = _gguf_or_skip()
    assert llm.gguf_sha256(path) == record["model"]["sha256"]


def test_the_prompts_of_today_match_the_committed_ones(record, shared_data):
    from ganrec_lite.bench import coldstart_splits

    ml, _, warm = coldstart_splits()
    assert llm.replay_check(record, "items", llm.item_prompts(ml.items)).all()
    users = llm.user_prompts(warm.train, ml.items, ml.n_users)
    assert llm.replay_check(record, "users", users).all()
    got = llm.replayed("items", llm.item_prompts(ml.items))
    assert got == record["items"]["text"]


def test_changed_prompts_are_refused(record, shared_data):
    from ganrec_lite.data import load_movielens

    msgs = llm.item_prompts(load_movielens().items)
    msgs[7] = msgs[7].replace("Film:", "Movie:")
    with pytest.raises(ValueError, match="1 of 1682 items prompts differ.*index 7"):
        llm.replayed("items", msgs)
    with pytest.raises(ValueError, match="prompts for"):
        llm.replay_check(record, "items", msgs[:5])


def test_a_damaged_file_is_refused(tmp_path, record):
    bad = tmp_path / "g.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        llm.load_generations(bad)
    rec = {k: v for k, v in record.items() if k != "decoding"}
    bad.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="no 'decoding'"):
        llm.load_generations(bad)
    rec = json.loads(json.dumps(record))
    rec["users"]["text"] = rec["users"]["text"][:10]
    bad.write_text(json.dumps(rec))
    with pytest.raises(ValueError, match="users text and prompt_sha differ"):
        llm.load_generations(bad)
    with pytest.raises(FileNotFoundError, match="generate_side_info"):
        llm.load_generations(tmp_path / "missing.json")


def test_greedy_decoding_replays_a_committed_batch(record, shared_data):
    """The acceptance check: the first batch of item descriptions, regenerated on
    the CPU exactly as committed (same batch, float32, greedy), is identical."""
    _gguf_or_skip()
    if not record["made_with"]["device"].startswith("cpu"):
        pytest.skip("the committed text was made on a GPU; CPU greedy may differ")
    from ganrec_lite.data import load_movielens

    bs = record["decoding"]["batch_size"]
    msgs = llm.item_prompts(load_movielens().items)[:bs]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    gen = llm.load_generator("cpu")
    assert gen.sha256 == record["model"]["sha256"]
    got = gen.generate(llm.ITEM_SYSTEM, msgs, show_progress=False)
    want = record["items"]["text"][:bs]
    same = np.array([g == w for g, w in zip(got, want, strict=True)])
    assert same.all(), f"items {np.flatnonzero(~same).tolist()} differ: {got[0]!r}"
    with pytest.raises(ValueError, match="list of str"):
        gen.generate(llm.ITEM_SYSTEM, "one prompt")
