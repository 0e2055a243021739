"""Device choice, seeding and progress bars."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from ganrec_lite import utils
from ganrec_lite.utils import get_device, progress, seed_everything


@pytest.fixture
def fresh(monkeypatch):
    """No device announced yet, no GANREC_DEVICE, and no CUDA (even on a GPU box)."""
    monkeypatch.setattr(utils, "_ANNOUNCED", set())
    monkeypatch.delenv("GANREC_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def fake_cuda(monkeypatch, count=1):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Fake GPU 9000")


# ------------------------------------------------------------------ get_device


def test_cpu_without_cuda(fresh, capsys):
    assert get_device() == torch.device("cpu")
    err = capsys.readouterr().err
    assert "using device cpu: no CUDA found" in err
    assert "GANREC_DEVICE" in err


def test_cuda_when_present(fresh, capsys):
    fake_cuda(fresh)
    assert get_device() == torch.device("cuda")
    err = capsys.readouterr().err
    assert "using device cuda (Fake GPU 9000): CUDA found" in err


def test_announces_once(fresh, capsys):
    get_device()
    get_device()
    get_device("cpu")
    err = capsys.readouterr().err
    assert err.count("ganrec_lite: using device") == 1
    assert capsys.readouterr().out == ""


def test_quiet(fresh, capsys):
    assert get_device(verbose=False) == torch.device("cpu")
    assert capsys.readouterr().err == ""
    get_device()  # verbose=False did not use up the announcement
    assert "using device cpu" in capsys.readouterr().err


def test_ganrec_device_overrides(fresh, capsys):
    fake_cuda(fresh)
    fresh.setenv("GANREC_DEVICE", " cpu ")
    assert get_device() == torch.device("cpu")
    assert "cpu: requested" in capsys.readouterr().err
    fresh.setenv("GANREC_DEVICE", "cuda:0")
    assert get_device() == torch.device("cuda", 0)


def test_prefer_overrides_the_environment(fresh):
    fresh.setenv("GANREC_DEVICE", "garbage")
    assert get_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("value", ["banana", "cuda:x", "gpu"])
def test_garbage_is_rejected(fresh, value):
    fresh.setenv("GANREC_DEVICE", value)
    with pytest.raises(ValueError, match=f"{value!r} is not a torch device"):
        get_device()


@pytest.mark.parametrize("value", ["cuda", "cuda:0"])
def test_cuda_requested_but_absent(fresh, value):
    fresh.setenv("GANREC_DEVICE", value)
    with pytest.raises(ValueError, match="torch sees no CUDA GPU.*unset GANREC_DEVICE"):
        get_device()
    with pytest.raises(ValueError, match="no CUDA GPU"):
        get_device(value)


def test_cuda_index_out_of_range(fresh):
    fake_cuda(fresh, count=1)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        get_device("cuda:3")


# -------------------------------------------------------------- seed_everything


def _draws(gen=None):
    return (
        random.random(),
        float(np.random.rand()),
        torch.rand(3).tolist(),
        torch.randint(0, 10**6, (3,), generator=gen).tolist() if gen else None,
    )


def test_seed_everything_is_reproducible():
    g1 = seed_everything(123)
    a = _draws(g1)
    g2 = seed_everything(123)
    b = _draws(g2)
    assert a == b
    assert isinstance(g1, torch.Generator) and g1.initial_seed() == 123
    seed_everything(124)
    assert _draws()[:3] != a[:3]


def test_seed_everything_accepts_numpy_ints_and_bounds():
    seed_everything(np.int64(5))
    seed_everything(0)
    seed_everything(2**32 - 1)


@pytest.mark.parametrize("seed", [1.5, "3", None, True])
def test_seed_must_be_an_int(seed):
    with pytest.raises(ValueError, match="seed must be an int"):
        seed_everything(seed)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_range(seed):
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\)"):
        seed_everything(seed)


# -------------------------------------------------------------------- progress


def test_progress_disabled_by_tqdm_disable(monkeypatch, capsys):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = progress(range(5), desc="quiet")
    assert bar.disable
    assert list(bar) == [0, 1, 2, 3, 4]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("value,disabled", [
    ("", False), ("0", False), ("false", False), ("No", False),
    ("1", True), ("true", True), ("yes", True),
])  # fmt: skip
def test_progress_reads_tqdm_disable(monkeypatch, value, disabled):
    monkeypatch.setenv("TQDM_DISABLE", value)
    bar = progress(range(2))
    assert bar.disable is disabled
    bar.close()


def test_progress_shows_a_bar_when_enabled(monkeypatch, capsys):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert sum(progress(range(3), desc="busy")) == 3
    assert "busy" in capsys.readouterr().err
    # an explicit choice wins over the environment
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = progress(range(3), disable=False)
    assert not bar.disable
    bar.close()
