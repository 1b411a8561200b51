"""Fuzzing the front end with mutated ONNX models.

Each case starts from a built-in model's ONNX bytes (:mod:`accelpool.sched.models`) and
applies one mutation: random byte flips, truncation, a removed initializer, a wrong
shape, a cyclic edge, an unknown operator, a duplicate name or another opset. The front
end and the decomposition (:func:`load_onnx`, :func:`import_model`, :func:`decompose`)
must accept the model or refuse it with a :class:`FrontendError` (or an :class:`IRError`
of a pass); ``accelpool compile`` must then exit 0, or 2 with one line on stderr. Some
accepted cases also run ``accelpool sim --golden-only``. Every case has a deadline.

Hypothesis prints the failing example (model, mutation, seed) and its reproduction blob.
"""

from __future__ import annotations

import contextlib
import io
import random
import signal

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelpool.spec.config import load_config
from accelpool.sched import models
from accelpool.flow.cli import main
from accelpool.sched.decompose import decompose
from accelpool.sched.frontend import FrontendError, import_model, load_onnx
from accelpool.sched.ir import IRError

MUTATIONS = ("flip", "truncate", "drop_initializer", "wrong_shape", "cycle", "unknown_op",
             "duplicate_name", "opset")

#: Seconds one case (front end, compile, golden run) may take.
DEADLINE_S = 20

_BASE: dict[str, bytes] = {}


def base_bytes(name: str) -> bytes:
    if name not in _BASE:
        _BASE[name] = models.build(name).SerializeToString()
    return _BASE[name]


def mutate(name: str, kind: str, seed: int) -> bytes:
    """The bytes of built-in model ``name`` after mutation ``kind`` drawn with ``seed``."""
    rng = random.Random(seed)
    data = base_bytes(name)
    if kind == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == "truncate":
        return data[:rng.randrange(len(data))]
    m = onnx.load_model_from_string(data)
    g = m.graph
    if kind == "drop_initializer" and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == "wrong_shape":
        vis = [vi for vi in list(g.input) + list(g.output)
               if vi.type.tensor_type.shape.dim]
        if vis and rng.random() < 0.7:
            dims = rng.choice(vis).type.tensor_type.shape.dim
            d = dims[rng.randrange(len(dims))]
            d.Clear()
            d.dim_value = rng.choice([0, 1, 2, 3, 7, 64, 1000])
        elif g.initializer:
            t = rng.choice(list(g.initializer))
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 2, 5])
    elif kind == "cycle" and len(g.node) > 1:
        i = rng.randrange(len(g.node) - 1)
        j = rng.randrange(i + 1, len(g.node))
        node = g.node[i]
        if node.input:
            node.input[rng.randrange(len(node.input))] = g.node[j].output[0]
    elif kind == "unknown_op":
        node = rng.choice(list(g.node))
        node.op_type = rng.choice(["FooBar", "MaxPool", "Softmax", "LSTM", "Einsum"])
        if rng.random() < 0.3:
            node.domain = "com.example"
    elif kind == "duplicate_name":
        what = rng.randrange(4)
        if what == 0 and len(g.node) > 1:     # two nodes write one tensor
            a, b = rng.sample(range(len(g.node)), 2)
            g.node[b].output[0] = g.node[a].output[0]
        elif what == 1 and g.input:           # an input listed twice
            g.input.append(g.input[rng.randrange(len(g.input))])
        elif what == 2 and g.initializer:     # an initializer defined twice
            g.initializer.append(g.initializer[rng.randrange(len(g.initializer))])
        elif len(g.node) > 1:                 # two nodes of one name
            a, b = rng.sample(range(len(g.node)), 2)
            g.node[b].name = g.node[a].name
    elif kind == "opset":
        m.opset_import[0].version = rng.choice([1, 6, 7, 11, 13, 17, 21, 28, 29, 99])
    return m.SerializeToString()


class _Deadline(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail a case that runs longer than ``seconds`` (SIGALRM; the main thread only)."""
    def fire(signum, frame):
        raise _Deadline(f"the case ran longer than {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


def check_case(tmp_path, name: str, kind: str, seed: int, golden: bool) -> None:
    data = mutate(name, kind, seed)
    path = tmp_path / f"{name}_{kind}_{seed}.onnx"
    path.write_bytes(data)
    pool = load_config()
    with deadline(DEADLINE_S):
        accepted = True
        try:                          # only the front end's own refusals may escape
            decompose(import_model(load_onnx(data), pool, name=name), pool)
        except (FrontendError, IRError) as e:
            accepted = False
            assert str(e) and "\n" not in str(e), repr(e)
        rc, err = cli(["compile", str(path)])
        assert rc == (0 if accepted else 2), err
        if not accepted:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("accelpool: error: "), err
        elif golden:
            rc, err = cli(["sim", str(path), "--golden-only"])
            assert rc in (0, 1), err       # 1: outputs differ beyond the tolerance
            assert "internal error" not in err, err


_cases = dict(name=st.sampled_from(sorted(models.BUILTIN_MODELS)),
              kind=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1),
              golden=st.booleans())
_common = dict(deadline=None, print_blob=True, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


@settings(max_examples=600, **_common)
@given(**_cases)
def test_mutated_models_are_accepted_or_refused_cleanly(tmp_path, name, kind, seed, golden):
    check_case(tmp_path, name, kind, seed, golden and kind in ("wrong_shape", "opset"))


@pytest.mark.slow
@settings(max_examples=3000, **{**_common, "derandomize": False})
@given(**_cases)
def test_mutated_models_are_accepted_or_refused_cleanly_many(tmp_path, name, kind, seed,
                                                             golden):
    check_case(tmp_path, name, kind, seed, golden)
