"""The CE cycle model's own properties (its agreement with the RTL is in hw/test_ce.py)."""

from accelpool.sched.cost.ce import cycles, cycles_compute_bound, utilization

TILE = {"oc_lanes": 8, "ic_lanes": 8}
LAYER = dict(c_in=16, c_out=16, height=32, width=32, pads=(1, 1, 1, 1), bias=True, requant=True)


def test_target_layer_utilization():
    assert utilization(TILE, **LAYER) >= 0.85
    # 2 blocks x (weights 144 + pixels 1024 x 18) plus fixed overheads.
    assert 2 * (1024 * 18) < cycles(TILE, **LAYER) < 2 * (1024 * 18 + 200)


def test_recurrence_agrees_with_closed_form_when_not_writer_bound():
    from accelpool.sched.cost import ce
    shape = dict(c_in=16, c_out=24, height=5, width=7, kernel_h=3, kernel_w=3, bias=True)
    e, ocb, load, words, p = 18, 3, 1 + 18 * 8 + 2 + 6, 4, 3 * 5
    assert cycles(TILE, **shape) == cycles_compute_bound(e, ocb, load, words, p)
    # Force the recurrence on the same shape by pretending the FIFO is one slot deep.
    saved = ce.FIFO_DEPTH
    try:
        ce.FIFO_DEPTH = 1
        assert cycles(TILE, **shape) > cycles_compute_bound(e, ocb, load, words, p)
    finally:
        ce.FIFO_DEPTH = saved


def test_writer_bound_layers_cost_at_least_the_writes():
    shape = dict(c_in=8, c_out=64, height=8, width=8, kernel_h=1, kernel_w=1)   # INT32 out
    words = 64 * 8 * 4                      # pixels x channel blocks x 4 words (INT32)
    assert cycles(TILE, **shape) >= words


def test_takes_the_exec_arguments():
    from accelpool.spec.ce_layout import ConvShape
    shape = ConvShape(16, 16, 32, 32, 3, 3, 1, (1, 1, 1, 1))
    args = shape.exec_args(in_addr=0, w_addr=16384, out_addr=20480, bias=True, requant=True)
    assert cycles(TILE, **args) == cycles(TILE, **LAYER)
    assert utilization(TILE, **args) == utilization(TILE, **LAYER)
