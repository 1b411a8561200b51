"""The SoC end to end in cocotb on Verilator and Icarus (pool ``configs/ce_pair.toml``).

One simulator process per simulator runs every job of this module (reset between jobs):

- ``chain``: tile ce0 LOADs an image and weights from the memory tile, runs a requantized
  3x3 convolution (EXEC), STOREs the result back to memory *and* into ce1's scratchpad,
  SIGNALs ce1; ce1 WAITs for it, LOADs its own weights, convolves, STOREs, SIGNALs the
  memory tile. Both results are checked bit for bit against :mod:`accelpool.spec.golden.conv`.
- faults: a LOAD beyond the global memory, a unit that never completes, a WAIT nobody
  satisfies; each is reported naming the tile and the command.
- discovery: the capability registers read after reset agree with the config, and
  :func:`accelpool.sched.pool.discover` refuses a config that differs from the built hardware.

And on the default SoC (``configs/default.toml``), the memory tile's own command stream:
dmu0 STOREs data and SIGNALs the memory tile, which WAITs, runs an IM2COL and a TRANSPOSE
on its layout engine and SIGNALs dmu0, which LOADs the results; bytes against the numpy
model of the contract (:mod:`accelpool.tb.layout_ref`), each EXEC's trace time against
:func:`accelpool.sched.cost.layout.cycles` + 1; a LOAD on the memory tile faults naming it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from accelpool.spec import isa
from accelpool.spec.units.ce import CeFunc
from accelpool.spec.ce_layout import ConvShape, pack_input, pack_weights, unpack_output
from accelpool.spec.config import CONFIG_DIR, UnitKind, load_config, parse_config
from accelpool.hw.tile import STATUS_BITS
from accelpool.spec.golden.conv import conv_requantized
from accelpool.spec.golden.numerics import quantize_multiplier
from accelpool.sched.pool import DiscoveryError, discover
from accelpool.tb.soc import SocJob, build_soc, config_doc, discovered_register_reader, run_jobs

CFG = load_config(CONFIG_DIR / "ce_pair.toml")
MEM = CFG.memory
CE0, CE1 = CFG.tile("ce0"), CFG.tile("ce1")
LANES = 8

# Global memory map (bytes) and scratchpad map of the chain job.
X_ADDR, W0_ADDR, W1_ADDR, Y0_ADDR, Y1_ADDR = 0x0000, 0x1000, 0x2000, 0x4000, 0x5000
S_IN, S_W, S_OUT = 0x0000, 0x1000, 0x2000
SHAPE = ConvShape(c_in=8, c_out=8, height=6, width=6, kernel_h=3, kernel_w=3, stride=1,
                  pads=(1, 1, 1, 1))


def _chain_job(rng):
    x = rng.integers(-128, 128, (8, 6, 6), dtype=np.int8)
    w0 = rng.integers(-128, 128, (8, 8, 3, 3), dtype=np.int8)
    w1 = rng.integers(-128, 128, (8, 8, 3, 3), dtype=np.int8)
    mult, shift = quantize_multiplier(1 / 2000)
    rq = dict(multiplier=mult, shift=shift, y_zero_point=3)
    y0 = conv_requantized(x[None], w0, pads=SHAPE.pads, **rq)[0]
    y1 = conv_requantized(y0[None], w1, pads=SHAPE.pads, **rq)[0]
    xb, w0b, w1b = pack_input(x, LANES), pack_weights(w0, LANES, LANES), pack_weights(w1, LANES, LANES)
    ob = SHAPE.output_bytes(LANES, True)
    args = SHAPE.exec_args(in_addr=S_IN, w_addr=S_W, out_addr=S_OUT, requant=True, **rq)
    m = dict(x=MEM.x, y=MEM.y)
    ce0 = [
        isa.load(spad_addr=S_IN, remote_addr=X_ADDR, length=len(xb), **m),
        isa.load(spad_addr=S_W, remote_addr=W0_ADDR, length=len(w0b), **m),
        isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **args),
        isa.store(spad_addr=S_OUT, remote_addr=Y0_ADDR, length=ob, **m),
        # straight into ce1's scratchpad, where its convolution reads its input
        isa.store(spad_addr=S_OUT, x=CE1.x, y=CE1.y, remote_addr=S_IN, length=ob),
        isa.signal(x=CE1.x, y=CE1.y, token=0, count=1),
        isa.end(),
    ]
    ce1 = [
        isa.load(spad_addr=S_W, remote_addr=W1_ADDR, length=len(w1b), **m),
        isa.wait(token=0, count=1),
        isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **args),
        isa.store(spad_addr=S_OUT, remote_addr=Y1_ADDR, length=ob, **m),
        isa.signal(x=MEM.x, y=MEM.y, token=1, count=1),
        isa.end(),
    ]
    job = SocJob(streams={"ce0": isa.assemble(ce0), "ce1": isa.assemble(ce1)},
                 image=[(X_ADDR, xb), (W0_ADDR, w0b), (W1_ADDR, w1b)],
                 readback={"y0": (Y0_ADDR, ob), "y1": (Y1_ADDR, ob)}, timeout_cycles=50_000)
    return job, y0, y1


def _fault_jobs():
    m = dict(x=MEM.x, y=MEM.y)
    out_of_range = SocJob(streams={"ce0": isa.assemble([
        isa.load(spad_addr=0, remote_addr=0, length=64, **m),
        isa.load(spad_addr=0, remote_addr=MEM["bytes"] - 64, length=128, **m),
        isa.end()])}, timeout_cycles=5_000)
    # 40 x 40 pixels (about 14,000 cycles), inside the 16 KiB scratchpad: beyond the timeout.
    big = dataclasses.replace(SHAPE, height=40, width=40)
    never = SocJob(streams={"ce0": isa.assemble([
        isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **big.exec_args(
            in_addr=0, w_addr=big.input_bytes(LANES), out_addr=0)),
        isa.end()])}, timeout_cycles=3_000)
    no_signal = SocJob(streams={"ce1": isa.assemble([isa.wait(token=3, count=1), isa.end()])},
                       timeout_cycles=2_000)
    # Runs after jobs whose ce0 streams were longer: their commands are still in its memory.
    no_end = SocJob(streams={"ce0": isa.assemble([
        isa.load(spad_addr=0, remote_addr=0, length=64, **m)])}, timeout_cycles=2_000)
    unaligned = SocJob(streams={"ce0": isa.assemble([
        isa.load(spad_addr=0, remote_addr=0, length=64, **m),
        isa.load(spad_addr=0, remote_addr=4, length=64, **m),
        isa.nop(), isa.end()])}, timeout_cycles=2_000)
    # A CE EXEC of all-zero arguments: refused by the tile, never started on the unit.
    zero_conv = SocJob(streams={"ce1": isa.assemble([
        isa.nop(), isa.exec_cmd(UnitKind.CE, CeFunc.CONV), isa.end()])}, timeout_cycles=2_000)
    # A convolution whose output runs past ce0's scratchpad: the CE's writes there are not
    # made, and the tile halts at the next command, naming the EXEC.
    mult, shift = quantize_multiplier(1 / 2000)
    past_end = SocJob(streams={"ce0": isa.assemble([
        isa.exec_cmd(UnitKind.CE, CeFunc.CONV, **SHAPE.exec_args(
            in_addr=S_IN, w_addr=S_W, out_addr=CE0.scratchpad_bytes - 64, requant=True,
            multiplier=mult, shift=shift)),
        isa.store(spad_addr=0, remote_addr=0, length=64, **m),
        isa.end()])}, timeout_cycles=5_000)
    return {"out_of_range": out_of_range, "never": never, "no_signal": no_signal,
            "no_end": no_end, "unaligned": unaligned, "zero_conv": zero_conv,
            "past_end": past_end}


# The Verilator build of the SoC takes minutes: it runs with `make regress` (slow).
@pytest.fixture(scope="module", params=[pytest.param("verilator", marks=pytest.mark.slow),
                                        "icarus"])
def soc_run(request):
    sim = request.param
    build = build_soc(CFG, sim)
    rng = np.random.default_rng(7)
    chain, y0, y1 = _chain_job(rng)
    faults = _fault_jobs()
    results = run_jobs(build, [chain, *faults.values()])
    return {"sim": sim, "chain": (results[0], y0, y1),
            "faults": dict(zip(faults, results[1:]))}


def test_chain_bit_exact(soc_run):
    res, y0, y1 = soc_run["chain"]
    assert res.status == "ok", res.message
    got0 = unpack_output(res.readback["y0"], SHAPE, LANES, True)
    got1 = unpack_output(res.readback["y1"], SHAPE, LANES, True)
    np.testing.assert_array_equal(got0, y0)
    np.testing.assert_array_equal(got1, y1)
    # ce1 signalled the memory tile once, after its STORE
    assert res.memory_tokens[1] == 1 and res.memory_tokens[0] == 0
    c = res.counters(CFG)
    # ce1 really waited on ce0, both units ran, and the SoC ran no shorter than either tile
    assert c["ce1"]["wait_cycles"] > 0
    assert c["ce0"]["unit_busy_cycles"] > 0 and c["ce1"]["unit_busy_cycles"] > 0
    assert res.cycles >= max(c["ce0"]["cycles"], c["ce1"]["cycles"])
    assert c["ce1"]["cycles"] > c["ce0"]["unit_busy_cycles"] + c["ce1"]["unit_busy_cycles"]
    # the trace: every command stamped in issue order; ce1's EXEC after ce0's SIGNAL, its
    # STORE no earlier than the unit's busy time after it; END at the tile's last cycle
    t0, t1 = res.trace["ce0"], res.trace["ce1"]
    assert t0 == sorted(t0) and t1 == sorted(t1)
    assert t1[2] > t0[5]
    assert t1[3] - t1[2] >= c["ce1"]["unit_busy_cycles"]
    assert t1[-1] == c["ce1"]["cycles"] - 1


def test_fault_out_of_range(soc_run):
    res = soc_run["faults"]["out_of_range"]
    assert res.status == "fault"
    assert "tile ce0 (ce at (1, 0)) halted at command 1 (LOAD" in res.message
    assert "global memory bytes 0xffc0..0x1003f are beyond its 65536 bytes" in res.message


def test_fault_unit_never_completes(soc_run):
    res = soc_run["faults"]["never"]
    assert res.status == "timeout"
    assert ("tile ce0 (ce at (1, 0)) did not finish within 3000 cycles: stuck at command 1 "
            "(END): the unit never completed command 0 (EXEC   ce.conv") in res.message


def test_fault_wait_without_signal(soc_run):
    res = soc_run["faults"]["no_signal"]
    assert res.status == "timeout"
    assert "tile ce1 (ce at (0, 1)) did not finish within 2000 cycles: stuck at command 0 " \
           "(WAIT   token=3 count=1): waiting for a token nobody sent" in res.message


def test_a_stream_without_end_stops_at_its_end_not_in_an_earlier_jobs_commands(soc_run):
    res = soc_run["faults"]["no_end"]
    assert res.status == "fault", res.message
    assert "tile ce0 (ce at (1, 0)) ran past the end of its 1-command stream: it has no END" \
        in res.message


def test_an_unaligned_load_is_named_in_the_fault_report(soc_run):
    res = soc_run["faults"]["unaligned"]
    assert res.status == "fault", res.message
    assert ("tile ce0 (ce at (1, 0)): its network interface dropped command 1 (LOAD   "
            "spad=0x000000 <- (0,0):0x00000004 len=64)") in res.message


def test_an_exec_with_invalid_arguments_faults_naming_tile_and_command(soc_run):
    res = soc_run["faults"]["zero_conv"]
    assert res.status == "fault", res.message
    assert ("tile ce1 (ce at (0, 1)) halted at command 1 (EXEC   ce.conv" in res.message
            and "the ce unit refuses it: c_in is 0; c_out is 0; height is 0; width is 0; "
                "kernel_h is outside 1..5" in res.message), res.message
    regs = res.registers[CE1.y * CFG.mesh.cols + CE1.x]
    assert regs["pc"] == 1 and regs["unit_busy_cycles"] == 0


def test_a_unit_addressing_beyond_its_scratchpad_halts_the_tile_naming_the_exec(soc_run):
    res = soc_run["faults"]["past_end"]
    assert res.status == "fault", res.message
    assert ("tile ce0 (ce at (1, 0)) halted at command 1 (STORE" in res.message
            and "its unit addressed the scratchpad beyond its 16384 bytes while running "
                "command 0 (EXEC   ce.conv" in res.message), res.message
    regs = res.registers[CE0.y * CFG.mesh.cols + CE0.x]
    assert (regs["pc"], regs["error_pc"]) == (1, 0)
    assert regs["status"] >> STATUS_BITS["range_fault"] & 1 and regs["unit_busy_cycles"] > 0


def test_discovery(soc_run):
    res = soc_run["faults"]["out_of_range"]
    pool = discover(CFG, discovered_register_reader(CFG, res))
    assert [u.name for u in pool.units] == ["mem", "ce0", "ce1"]
    # A config whose ce1 claims 16 output lanes disagrees with the hardware built.
    doc = config_doc(CFG)
    doc["tile"][2]["oc_lanes"] = 16
    other = parse_config(doc, source="ce_pair-modified")
    with pytest.raises(DiscoveryError, match=r"ce1 \(0,1\) GEOMETRY: config says 0x100008, "
                                             r"hardware reports 0x80008"):
        discover(other, discovered_register_reader(other, res))


def test_diagnosis_is_reproducible(soc_run):
    from accelpool.tb.soc import diagnose
    res = soc_run["faults"]["out_of_range"]
    # diagnose() is plain Python: the registers read back give the same message
    streams = {"ce0": _fault_jobs()["out_of_range"].streams["ce0"], "ce1": b""}
    assert diagnose(CFG, streams, res.registers, False, res.cycles) == res.message


# ---- the memory tile's command stream on the default SoC ------------------------------

from accelpool.spec.units.gnn import GnnFunc
from accelpool.spec.units.layout import MemFunc
from accelpool.sched.cost.layout import cycles as layout_cycles   # noqa: E402
from accelpool.tb.layout_ref import reference as layout_reference  # noqa: E402

DEFAULT = load_config(CONFIG_DIR / "default.toml")
DMEM, DMU0 = DEFAULT.memory, DEFAULT.tile("dmu0")
# Global memory: the inputs as the host loads them (A), where dmu0 STOREs them (B), the
# engine's results (C: IM2COL, D: TRANSPOSE) and dmu0's copies of the results (E, F).
A_ADDR, B_ADDR, C_ADDR, D_ADDR, E_ADDR, F_ADDR = 0x0000, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
T_OFF = 0x400                     # the TRANSPOSE source within A and B
IM2COL = dict(elem_log2=1, src_pitch=16, dst_pitch=32, channels=3, height=5, width=6,
              kernel_h=3, kernel_w=3, stride_h=1, stride_w=2, pad_top=1, pad_left=1,
              out_h=5, out_w=3, pad_value=0x3F80)
TRANSPOSE = dict(elem_log2=2, src_pitch=24, dst_pitch=32, rows=7, cols=5)
C_BYTES = 27 * 32
D_BYTES = 5 * 32


def _memory_stream_job(rng):
    """dmu0 STOREs the inputs and SIGNALs the memory tile, which WAITs, EXECs an IM2COL and a
    TRANSPOSE, SIGNALs dmu0, which LOADs both results and STOREs copies of them."""
    a = rng.integers(0, 256, 0x800, dtype=np.uint8).tobytes()
    image = [(A_ADDR, a),
             # the destinations hold random bytes: row padding must stay untouched
             (C_ADDR, rng.integers(0, 256, C_BYTES, dtype=np.uint8).tobytes()),
             (D_ADDR, rng.integers(0, 256, D_BYTES, dtype=np.uint8).tobytes())]
    im2col = dict(IM2COL, src_addr=B_ADDR, dst_addr=C_ADDR)
    transpose = dict(TRANSPOSE, src_addr=B_ADDR + T_OFF, dst_addr=D_ADDR)
    mem = bytearray(0x6000)
    for addr, blob in image:
        mem[addr:addr + len(blob)] = blob
    mem[B_ADDR:B_ADDR + len(a)] = a
    want = layout_reference(bytes(mem), MemFunc.IM2COL, im2col)
    want = layout_reference(want, MemFunc.TRANSPOSE, transpose)
    m = dict(x=DMEM.x, y=DMEM.y)
    dmu0 = [
        isa.load(spad_addr=0, remote_addr=A_ADDR, length=len(a), **m),
        isa.store(spad_addr=0, remote_addr=B_ADDR, length=len(a), **m),
        isa.signal(x=DMEM.x, y=DMEM.y, token=0, count=1),
        isa.wait(token=2, count=1),
        isa.load(spad_addr=0x1000, remote_addr=C_ADDR, length=C_BYTES, **m),
        isa.load(spad_addr=0x2000, remote_addr=D_ADDR, length=D_BYTES, **m),
        isa.store(spad_addr=0x1000, remote_addr=E_ADDR, length=C_BYTES, **m),
        isa.store(spad_addr=0x2000, remote_addr=F_ADDR, length=D_BYTES, **m),
        isa.end(),
    ]
    memory = [
        isa.wait(token=0, count=1),
        isa.exec_cmd(UnitKind.MEMORY, MemFunc.IM2COL, **im2col),
        isa.exec_cmd(UnitKind.MEMORY, MemFunc.TRANSPOSE, **transpose),
        isa.signal(x=DMU0.x, y=DMU0.y, token=2, count=1),
        isa.end(),
    ]
    job = SocJob(streams={"dmu0": isa.assemble(dmu0), DMEM.name: isa.assemble(memory)},
                 image=image, readback={"c": (C_ADDR, C_BYTES), "d": (D_ADDR, D_BYTES),
                                        "e": (E_ADDR, C_BYTES), "f": (F_ADDR, D_BYTES)},
                 timeout_cycles=20_000)
    return job, want, im2col, transpose


def _memory_fault_job():
    return SocJob(streams={DMEM.name: isa.assemble([
        isa.nop(),
        isa.load(spad_addr=0, x=DMU0.x, y=DMU0.y, remote_addr=0, length=64),
        isa.end()])}, timeout_cycles=2_000)


def _gather_past_end_job():
    """gnn0 sums the features of one neighbour whose index (5000) puts its feature row at
    byte 80,000, past the 64 KiB scratchpad: an address that depends on the data."""
    gnn0 = DEFAULT.tile("gnn0")
    ptr, idx = np.array([0, 1, 0, 0], np.uint32), np.array([5000, 0, 0, 0], np.uint32)
    m = dict(x=DMEM.x, y=DMEM.y)
    stream = [
        isa.load(spad_addr=0x100, remote_addr=0x6000, length=16, **m),
        isa.load(spad_addr=0x200, remote_addr=0x6010, length=16, **m),
        isa.exec_cmd(UnitKind.GNN, GnnFunc.SUM, ptr_addr=0x100, idx_addr=0x200, x_addr=0,
                     out_addr=0x300, nodes=1, features=8, edges=1),
        isa.end(),
    ]
    return SocJob(streams={gnn0.name: isa.assemble(stream)},
                  image=[(0x6000, ptr.tobytes() + idx.tobytes())], timeout_cycles=2_000)


@pytest.fixture(scope="module", params=[pytest.param("verilator", marks=pytest.mark.slow),
                                        "icarus"])
def memory_run(request):
    build = build_soc(DEFAULT, request.param)
    job, want, im2col, transpose = _memory_stream_job(np.random.default_rng(11))
    results = run_jobs(build, [job, _memory_fault_job(), _gather_past_end_job()])
    return {"stream": (results[0], want, im2col, transpose), "fault": results[1],
            "gather": results[2]}


def test_memory_tile_stream(memory_run):
    res, want, im2col, transpose = memory_run["stream"]
    assert res.status == "ok", res.message
    assert res.readback["c"] == want[C_ADDR:C_ADDR + C_BYTES]
    assert res.readback["d"] == want[D_ADDR:D_ADDR + D_BYTES]
    # dmu0 loaded the results after the memory tile's SIGNAL
    assert res.readback["e"] == res.readback["c"]
    assert res.readback["f"] == res.readback["d"]
    # each EXEC took the engine's formula cycles (+1, as every unit's in a trace)
    t = res.trace[DMEM.name]
    n_im2col, n_transpose = (layout_cycles(MemFunc.IM2COL, **im2col),
                             layout_cycles(MemFunc.TRANSPOSE, **transpose))
    assert (n_im2col, n_transpose) == (27 * 15 + 2, 35 + 2)
    assert t[2] - t[1] == n_im2col + 1
    assert t[3] - t[2] == n_transpose + 1
    c = res.counters(DEFAULT)
    assert c[DMEM.name]["unit_busy_cycles"] == n_im2col + n_transpose
    assert c[DMEM.name]["wait_cycles"] > 0 and c["dmu0"]["wait_cycles"] > 0
    # the memory tile waited for dmu0's SIGNAL; dmu0's LOADs came after the memory's
    assert t[1] > res.trace["dmu0"][2]
    assert res.trace["dmu0"][4] > t[3]
    assert t[-1] == c[DMEM.name]["cycles"] - 1


def test_memory_tile_load_faults(memory_run):
    res = memory_run["fault"]
    assert res.status == "fault"
    assert ("tile mem (memory at (1, 1)) halted at command 1 (LOAD   spad=0x000000 <- "
            "(0,0):0x00000000 len=64): LOAD is not a command of the memory tile") in res.message
    regs = res.tile_registers(DEFAULT, DMEM.name)
    assert regs["pc"] == 1
    assert regs["status"] >> 3 & 1          # fault


def test_a_data_dependent_address_beyond_the_scratchpad_faults(memory_run):
    res = memory_run["gather"]
    assert res.status == "fault", res.message
    assert ("tile gnn0 (gnn at (1, 2)) halted at command 3 (END): its unit addressed the "
            "scratchpad beyond its 65536 bytes while running command 2 (EXEC   gnn.sum"
            in res.message), res.message
    regs = res.tile_registers(DEFAULT, "gnn0")
    assert regs["error_pc"] == 2 and regs["status"] >> STATUS_BITS["range_fault"] & 1


def test_soc_command_names_a_bad_pool_in_one_line(tmp_path, capsys):
    from accelpool.tb.soc import main
    assert main(["--pool", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert err == (f"python -m accelpool.tb.soc: error: {tmp_path / 'none.toml'}: no such file; "
                   f"accepted: a UTF-8 TOML file or a name in configs/ "
                   f"(ce_pair, default, stream_pair)\n")

