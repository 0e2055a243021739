"""Exercise self-checks: they pass, they fail with a hint, they never reveal the
expected answer, and an untouched ``...`` stub says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganrec_lite.check import (
    ExerciseError,
    NoAnswerYet,
    check_close,
    check_shape,
    check_true,
    passed,
)

SECRET = np.array([3.14159, 2.71828, 1.41421])


def test_passed_prints_one_line(capsys):
    passed("Exercise 1.1")
    assert capsys.readouterr().out == "Exercise 1.1: correct.\n"


def test_check_close_passes(capsys):
    check_close("E1", SECRET.copy(), SECRET)
    check_close("E2", torch.tensor(SECRET), SECRET.tolist())
    check_close("E3", 1.0 + 1e-7, 1.0)
    check_close("E4", [1.0, 2.0], [1.05, 2.1], rtol=0.1)
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "E1: correct.",
        "E2: correct.",
        "E3: correct.",
        "E4: correct.",
    ]


def test_check_close_fails_without_revealing_the_answer(capsys):
    with pytest.raises(ExerciseError) as err:
        check_close("E1", SECRET + 0.5, SECRET, hint="look at the sign")
    msg = str(err.value)
    assert msg.startswith("E1: not yet right")
    assert "largest absolute error 0.5" in msg
    assert "Hint: look at the sign" in msg
    for v in SECRET:
        assert f"{v}"[:4] not in msg  # neither 3.14159 nor a rounding of it
    assert capsys.readouterr().out == ""  # no "correct." on failure


def test_check_close_without_hint():
    with pytest.raises(ExerciseError) as err:
        check_close("E1", 41.0, 42.0)
    assert "Hint" not in str(err.value) and "42" not in str(err.value)


def test_check_close_shape_mismatch():
    with pytest.raises(ExerciseError, match=r"expected shape \(3,\), got \(2,\)"):
        check_close("E1", SECRET[:2], SECRET)


def test_check_close_rejects_nan():
    with pytest.raises(ExerciseError, match="not yet right"):
        check_close("E1", np.array([np.nan]), np.array([np.nan]))


def test_check_close_detaches_tensors_that_need_grad():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    check_close("E1", x * 1, [1.0, 2.0])


def test_check_shape():
    check_shape("S1", np.zeros((2, 3)), (2, 3))
    check_shape("S2", torch.zeros(4, 5), (None, 5))
    check_shape("S3", [[1, 2, 3]], (1, 3))  # no .shape: converted
    with pytest.raises(
        ExerciseError, match=r"S4: expected shape \(2, 3\), got \(3, 2\)"
    ):
        check_shape("S4", np.zeros((3, 2)), (2, 3))
    with pytest.raises(ExerciseError, match=r"got \(2, 3, 1\)"):
        check_shape("S5", np.zeros((2, 3, 1)), (2, 3))


def test_check_true(capsys):
    check_true("T1", np.all(SECRET > 0), "all positive")
    assert capsys.readouterr().out == "T1: correct.\n"
    with pytest.raises(ExerciseError, match="T2: not yet right. rows must sum to one"):
        check_true("T2", False, "rows must sum to one")
    with pytest.raises(ExerciseError):
        check_true("T3", np.bool_(False), "numpy bools count")


@pytest.mark.parametrize("stub", [..., None])
def test_unanswered_exercises(stub):
    assert issubclass(NoAnswerYet, NotImplementedError)
    assert not issubclass(NoAnswerYet, ExerciseError)
    with pytest.raises(NoAnswerYet, match="E1: no answer yet"):
        check_close("E1", stub, SECRET)
    with pytest.raises(NoAnswerYet, match="S1: no answer yet"):
        check_shape("S1", stub, (3,))
    # a stub used directly as the condition must not pass (bool(...) is True)
    with pytest.raises(NoAnswerYet, match="T1: no answer yet"):
        check_true("T1", stub, "hint")


def test_exercise_error_is_an_assertion():
    assert issubclass(ExerciseError, AssertionError)


def test_check_true_with_an_unanswered_stub_is_no_answer_yet():
    best = ...
    with pytest.raises(NoAnswerYet, match="T4: no answer yet"):
        check_true("T4", best == "ease", "compare names", answer=best)
    with pytest.raises(ExerciseError):
        check_true("T5", "bpr" == "ease", "compare names", answer="bpr")
