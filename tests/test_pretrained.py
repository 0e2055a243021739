"""The IRGAN release: safe loading, and our metrics on the paper's own generator."""

import collections
import pickle

import numpy as np
import pytest

from ganrec_lite.pretrained import (
    IRGANModel,
    UnsafePickleError,
    load_irgan_model,
    safe_load_arrays,
)


def test_plain_arrays_load(tmp_path):
    path = tmp_path / "ok.pkl"
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3)]
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    got = safe_load_arrays(path)
    np.testing.assert_array_equal(got[0], arrays[0])


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "payload",
    [Evil(), collections.OrderedDict(a=1), [np.ones(2), Evil()]],
    ids=["os.system", "other class", "nested"],
)
def test_other_objects_are_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match="admits numpy arrays only"):
        safe_load_arrays(path)


def test_model_scores_and_validation():
    m = IRGANModel(np.ones((2, 3), np.float32), np.eye(3, dtype=np.float32),
                   np.array([0.0, 1.0, 2.0], np.float32))  # fmt: skip
    np.testing.assert_allclose(m.scores(), [[1, 2, 3], [1, 2, 3]])
    assert m.scores(2).shape == (2, 2)
    with pytest.raises(ValueError, match="n_items"):
        m.scores(4)
    with pytest.raises(ValueError, match="name must be"):
        load_irgan_model("other")


def test_bad_structure_is_rejected(tmp_path, monkeypatch):
    import ganrec_lite.pretrained as pre

    path = tmp_path / "x.pkl"
    monkeypatch.setattr(pre, "fetch", lambda *a, **k: path)
    for obj, match in [
        ([np.ones((2, 3))], "expected"),
        ([np.ones((2, 3)), np.ones((4, 2)), np.ones(4)], "MF model"),
        ([np.ones((2, 3)), np.ones((4, 3)), np.ones(5)], "biases"),
    ]:
        path.write_bytes(pickle.dumps(obj))
        with pytest.raises(ValueError, match=match):
            load_irgan_model("gan_generator")


# Wang et al. (2017), Table 3 (MovieLens): IRGAN's published precision and NDCG.
PUBLISHED_IRGAN = {"precision@3": 0.4072, "precision@5": 0.3750, "precision@10": 0.3140,
                   "ndcg@3": 0.4222, "ndcg@5": 0.4009, "ndcg@10": 0.3723}  # fmt: skip


def test_released_generator_matches_the_paper_under_our_metrics(shared_data):
    from ganrec_lite.data import load_published_split
    from ganrec_lite.metrics import evaluate

    split = load_published_split("irgan-ml100k")
    train, test = split.matrices()
    gen = load_irgan_model("gan_generator")
    assert gen.user_emb.shape == (943, 5) and gen.item_emb.shape == (1683, 5)
    ours = evaluate(gen.scores(split.n_items), train, test, ks=(3, 5, 10))
    for key, published in PUBLISHED_IRGAN.items():
        assert ours[key] == pytest.approx(published, rel=0.03), key
    dns = evaluate(load_irgan_model("model_dns_ori").scores(split.n_items), train, test,
                   ks=(5,))  # fmt: skip
    assert dns["precision@5"] < ours["precision@5"]  # the GAN improved on its start
