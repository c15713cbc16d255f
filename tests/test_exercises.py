"""sslteach.exercises.check: the in-notebook checker must judge an answer on what it returns, whatever it does to its
inputs, and must notice a wrong number of outputs."""
import torch

from sslteach.exercises import check


def reference(x, y):
    return x + y, (x * y).sum()


def in_place_answer(x, y):  # correct, but mutates its first argument (e.g. x.add_ in the reader's loss)
    x.add_(y)
    return x, (x - y) .mul(y).sum()


def cases():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, generator=g), torch.randn(4, generator=g)) for _ in range(3)]


def test_a_correct_answer_passes(capsys):
    assert check(reference, reference, cases())
    assert "Correct: all 3 cases" in capsys.readouterr().out


def test_an_in_place_answer_is_judged_on_its_outputs_and_cannot_change_the_reference(capsys):
    seen = []

    def watching_reference(x, y):
        seen.append(x.clone())
        return reference(x, y)

    cs = cases()
    originals = [c[0].clone() for c in cs]
    assert check(in_place_answer, watching_reference, cs), capsys.readouterr().out
    for before, got in zip(originals, seen):
        assert torch.equal(before, got)  # the reference saw the untouched inputs
    for before, c in zip(originals, cs):
        assert torch.equal(before, c[0])  # and the caller's cases are unchanged


def test_a_wrong_answer_fails_with_the_difference(capsys):
    assert not check(lambda x, y: (x - y, (x * y).sum()), reference, cases(), names=["sum", "dot"])
    out = capsys.readouterr().out
    assert "Case 1, sum: expected" in out and "your answer" in out


def test_missing_and_extra_outputs_are_reported(capsys):
    assert not check(lambda x, y: x + y, reference, cases())
    assert "expected 2 output(s), your function returned 1" in capsys.readouterr().out
    assert not check(lambda x, y: (x + y, (x * y).sum(), x), reference, cases())
    assert "expected 2 output(s), your function returned 3" in capsys.readouterr().out


def test_not_implemented_and_exceptions_are_explained(capsys):
    def todo(x, y):
        raise NotImplementedError

    assert not check(todo, reference, cases())
    assert "Not implemented yet" in capsys.readouterr().out
    assert not check(lambda x, y: x @ torch.ones(3), reference, cases())
    assert "your function raised RuntimeError" in capsys.readouterr().out


def test_outputs_that_require_grad_and_keyword_cases_work(capsys):
    def ref(*, x):
        return (x * 2).requires_grad_()

    assert check(lambda *, x: x * 2, ref, [{"x": torch.ones(3)}])
    assert "Correct" in capsys.readouterr().out
