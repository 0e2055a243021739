"""The command line `python -m ganrec_lite.bench`: one JSON line per run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ganrec_lite import bench

REQUIRED = {
    "method",
    "split",
    "protocol",
    "seeds",
    "metrics",
    "seconds",
    "hparams",
    "provenance",
}


def test_cli_prints_one_json_line_for_pop(shared_data):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ganrec_lite.bench",
            "pop",
            "--split",
            "cfgan-ml100k",
            "--seeds",
            "2",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert REQUIRED <= set(rec)
    assert rec["method"] == "pop" and rec["split"] == "cfgan-ml100k"
    assert rec["seeds"] == [0, 1]
    assert rec["protocol"].startswith("Protocol | ML-100K, split cfgan-ml100k")
    keys = {f"{m}@{k}" for m in ("precision", "recall", "ndcg", "mrr") for k in (5, 20)}
    assert set(rec["metrics"]) == keys
    mean, std = rec["metrics"]["precision@20"]
    assert 0.1 < mean < 0.2 and std == 0.0  # popularity is deterministic
    assert len(rec["seconds"]["per_run"]) == 2 and rec["seconds"]["total"] > 0
    prov = rec["provenance"]
    assert {"commit", "device", "torch", "date_utc"} <= set(prov)
    assert prov["device"].startswith("cpu")


def test_list_names_methods_and_splits(capsys):
    assert bench.main(["--list"]) == 0
    text = capsys.readouterr().out
    for name in (
        "pop",
        "bpr",
        "bpr-dns",
        "ease",
        "cfgan-ml100k",
        "irgan-ml100k",
        "ml100k-random",
    ):
        assert name in text


def test_bad_arguments_list_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["nope", "--split", "cfgan-ml100k"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "bpr-dns" in err
    with pytest.raises(SystemExit):
        bench.main(["pop", "--split", "ml-1m"])
    assert "irgan-ml100k" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["pop"])
    assert "--split is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="known methods"):
        bench.run("nope", "cfgan-ml100k")
    with pytest.raises(ValueError, match="known splits"):
        bench.load_split("nope")


def test_text_option_reaches_the_text_methods_only(shared_data, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["bpr", "--split", "coldstart-ml100k", "--text", "generated"])
    assert exc.value.code == 2
    assert "--text applies to the text methods" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["text-knn", "--split", "coldstart-ml100k", "--text", "poems"])
    assert "invalid choice" in capsys.readouterr().err
    args = ["text-knn", "--split", "coldstart-ml100k", "--text", "generated"]
    assert bench.main(args) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["hparams"]["text"] == "generated"
    titles = bench.run("text-knn", "coldstart-ml100k", 1, device="cpu")
    assert rec["metrics"]["cold/ndcg@20"] != titles["metrics"]["cold/ndcg@20"]


def test_out_appends_lines(shared_data, tmp_path, capsys):
    path = tmp_path / "deep" / "results.jsonl"
    for seeds in ("1", "2"):
        args = ["pop", "--split", "irgan-ml100k", "--seeds", seeds, "--out", str(path)]
        assert bench.main(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    records = bench.read_results(path)
    assert [r["seeds"] for r in records] == [[0], [0, 1]]
    assert [json.loads(line) for line in printed] == records
    assert set(records[0]["metrics"]) == {
        f"{m}@{k}" for m in ("precision", "ndcg") for k in (3, 5, 10)
    }
    path.write_text(path.read_text() + "not json\n")
    with pytest.raises(ValueError, match="not JSON"):
        bench.read_results(path)


def test_register_a_new_method(shared_data, monkeypatch):
    import numpy as np

    monkeypatch.setitem(bench.METHODS, "zeros", None)
    m = bench.register(
        "zeros",
        lambda train, seed, device, valid=None, **h: np.zeros(train.shape),
        "all scores zero",
        {"x": 1},
    )
    assert bench.METHODS["zeros"] is m and m.hparams_for("cfgan-ml100k") == {"x": 1}
    rec = bench.run("zeros", "irgan-ml100k", seeds=[5], device="cpu")
    assert rec["seeds"] == [5] and rec["hparams"] == {"x": 1}
