"""In-notebook exercise checking: compare the reader's function with the package's on a few inputs and say what
differs (udlbook style: "expected ..., your answer ...")."""
from __future__ import annotations

import copy

import torch


def _as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def _fresh(case):
    """The case's arguments as (args, kwargs), deep-copied so that neither function sees the other's mutations."""
    args, kwargs = (case, {}) if isinstance(case, tuple) else ((), case)
    return copy.deepcopy(args), copy.deepcopy(kwargs)


def _detached(v):
    return v.detach() if isinstance(v, torch.Tensor) else v


def check(student_fn, reference_fn, cases, names=None, atol: float = 1e-5) -> bool:
    """Call both functions on each case (a tuple of arguments or a dict of keyword arguments) and compare every
    returned tensor / number. Prints ``Correct`` or the first difference, and returns whether all matched.

    The reference runs first, on its own deep copy of the arguments, and the reader's function on another copy: an
    answer that works in place (mutates its inputs) is judged on what it returns, and cannot change what the
    reference sees. A different number of outputs is reported as such."""
    for i, case in enumerate(cases, 1):
        ref_args, ref_kwargs = _fresh(case)
        want = _as_tuple(reference_fn(*ref_args, **ref_kwargs))
        args, kwargs = _fresh(case)
        try:
            got = _as_tuple(student_fn(*args, **kwargs))
        except NotImplementedError:
            print("Not implemented yet: replace the `raise NotImplementedError` with your code.")
            return False
        except Exception as e:  # noqa: BLE001 - reported to the reader
            print(f"Case {i}: your function raised {type(e).__name__}: {e}")
            return False
        if len(got) != len(want):
            print(f"Case {i}: expected {len(want)} output(s), your function returned {len(got)}"
                  + (f" ({', '.join(names[:len(want)])})" if names else ""))
            return False
        for j, (g, w) in enumerate(zip(got, want)):
            label = names[j] if names and j < len(names) else f"output {j}"
            try:
                g_t = torch.as_tensor(_detached(g), dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):
                print(f"Case {i}, {label}: expected a tensor or number, your answer is a {type(g).__name__}")
                return False
            w_t = torch.as_tensor(_detached(w), dtype=torch.float64)
            if g_t.shape != w_t.shape:
                print(f"Case {i}, {label}: expected shape {tuple(w_t.shape)}, your answer has {tuple(g_t.shape)}")
                return False
            if not torch.allclose(g_t, w_t, atol=atol, equal_nan=True):
                print(f"Case {i}, {label}: expected {w_t.numpy().round(4)}, your answer {g_t.numpy().round(4)}")
                return False
    print(f"Correct: all {len(cases)} cases match the package.")
    return True
