"""The memory tile alone: request packets in, response packets out, host port, tokens, and its
command stream (WAIT, EXEC on the layout engine, SIGNAL out, LOAD faults)."""

import random
from types import SimpleNamespace

import pytest

from amaranth.sim import Simulator

from accelpool.spec import isa
from accelpool.spec.config import MeshConfig, UnitKind
from accelpool.spec.units.layout import MemFunc
from accelpool.hw.tile_control import REGISTERS, STATUS_BITS
from accelpool.sched.cost.layout import cycles as layout_cycles
from accelpool.tb.layout_ref import reference
from accelpool.hw.noc.flit import (PacketType, decode_header, encode_header, flit_layout,
                                   packet_flits)
from accelpool.hw.noc.memory_tile import MemoryTile

MESH = MeshConfig(cols=3, rows=3, flit_bits=64, buffer_flits=4)


def test_write_read_signal_and_host_port():
    dut = MemoryTile(mesh=MESH, x=1, y=1, bytes=4096)
    layout = flit_layout(64)
    rng = random.Random(3)
    words = [rng.getrandbits(64) for _ in range(5)]
    got = []

    async def send(ctx, flits):
        for f in flits:
            ctx.set(dut.req_in.payload, layout.from_bits(f))
            ctx.set(dut.req_in.valid, 1)
            await ctx.tick().until(dut.req_in.ready)
        ctx.set(dut.req_in.valid, 0)

    async def sink(ctx):
        while True:
            ctx.set(dut.resp_out.ready, rng.random() < 0.7)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.resp_out.valid, dut.resp_out.ready, dut.resp_out.payload)
            if valid and ready:
                got.append((int(payload.head), int(payload.tail), int(payload.data)))

    async def bench(ctx):
        # Host loads word 10 and reads it back.
        ctx.set(dut.host_write.addr, 10)
        ctx.set(dut.host_write.data, 0x1122334455667788)
        ctx.set(dut.host_write.en, 0xFF)
        await ctx.tick()
        ctx.set(dut.host_write.en, 0)
        # WRITE 36 bytes (5 flits, the last one masked to 4 bytes) at byte 0x80 from (2, 0).
        hdr = encode_header(dst=(1, 1), src=(2, 0), type=PacketType.WRITE, length=36, addr=0x80)
        await send(ctx, packet_flits(64, hdr, words))
        # READ_REQ 16 bytes at byte 0x50 (word 10) from (0, 2), reply to 0x300.
        hdr = encode_header(dst=(1, 1), src=(0, 2), type=PacketType.READ_REQ, length=16,
                            addr=0x50)
        await send(ctx, packet_flits(64, hdr, [0x300]))
        # SIGNAL token 2 by 7.
        hdr = encode_header(dst=(1, 1), src=(0, 0), type=PacketType.SIGNAL,
                            addr=2 | 7 << 8)
        await send(ctx, packet_flits(64, hdr, []))
        await ctx.tick().repeat(30)
        mem = dut.memory
        assert [ctx.get(mem.data[16 + i]) for i in range(4)] == words[:4]
        assert ctx.get(mem.data[20]) == words[4] & 0xFFFFFFFF
        ctx.set(dut.host_read.addr, 16)
        await ctx.tick()
        assert ctx.get(dut.host_read.data) == words[0]
        ctx.set(dut.host_token, 2)
        assert ctx.get(dut.host_token_value) == 7

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(sink)
    sim.add_testbench(bench)
    sim.run()
    # The WRITE_ACK to (2, 0), then the READ_RESP to (0, 2) with words 10 and 11.
    ack = decode_header(got[0][2])
    assert got[0][:2] == (1, 1)
    assert (ack["dst"], ack["src"], ack["type"], ack["length"], ack["addr"]) == \
        ((2, 0), (1, 1), PacketType.WRITE_ACK, 36, 0x80)
    resp = decode_header(got[1][2])
    assert (resp["dst"], resp["type"], resp["length"], resp["addr"]) == \
        ((0, 2), PacketType.READ_RESP, 16, 0x300)
    assert [g[2] for g in got[2:]] == [0x1122334455667788, 0]
    assert [g[1] for g in got[1:]] == [0, 0, 1]


def _run_stream(dut, cmds, image=b"", signals=()):
    """Load ``cmds`` and ``image``, deliver ``signals`` (token, count) as SIGNAL packets,
    run to ``finished``; return the request flits sent, the trace, the registers, the memory."""
    layout = flit_layout(64)
    sent, regs, trace, mem = [], {}, [], bytearray()

    async def sink(ctx):
        ctx.set(dut.req_out.ready, 1)
        while True:
            _, _, valid, payload = await ctx.tick().sample(dut.req_out.valid, dut.req_out.payload)
            if valid:
                sent.append((int(payload.head), int(payload.tail), int(payload.data)))

    async def bench(ctx):
        for i in range(0, len(image), 8):
            ctx.set(dut.memory.data[i // 8], int.from_bytes(image[i:i + 8], "little"))
        for i, c in enumerate(cmds):
            ctx.set(dut.cmd_addr, i)
            ctx.set(dut.cmd_data, c.encode())
            ctx.set(dut.cmd_en, 1)
            await ctx.tick()
        ctx.set(dut.cmd_en, 0)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await ctx.tick().repeat(20)
        for token, count in signals:
            hdr = encode_header(dst=(1, 1), src=(0, 0), type=PacketType.SIGNAL,
                                addr=token | count << 8)
            ctx.set(dut.req_in.payload, layout.from_bits(packet_flits(64, hdr, [])[0]))
            ctx.set(dut.req_in.valid, 1)
            await ctx.tick().until(dut.req_in.ready)
            ctx.set(dut.req_in.valid, 0)
        await ctx.tick().until(dut.finished)
        for name, index in REGISTERS.items():
            ctx.set(dut.reg_addr, index)
            regs[name] = ctx.get(dut.reg_data)
        for i in range(len(cmds)):
            ctx.set(dut.trace_addr, i)
            await ctx.tick()
            trace.append(ctx.get(dut.trace_data))
        for i in range(dut.depth):
            mem.extend(ctx.get(dut.memory.data[i]).to_bytes(8, "little"))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(sink)
    sim.add_testbench(bench)
    sim.run()
    return sent, trace, regs, bytes(mem)


def test_command_stream():
    """WAIT for a SIGNAL, TRANSPOSE, SIGNAL (2, 0): the packet, the result, the EXEC cycles."""
    dut = MemoryTile(mesh=MESH, x=1, y=1, bytes=4096, cmd_depth=8)
    rng = random.Random(4)
    image = bytes(rng.getrandbits(8) for _ in range(512))
    args = dict(src_addr=0, dst_addr=256, elem_log2=0, src_pitch=5, dst_pitch=4, rows=3, cols=5)
    cmds = [isa.wait(token=1, count=2),
            isa.exec_cmd(UnitKind.MEMORY, MemFunc.TRANSPOSE, **args),
            isa.signal(x=2, y=0, token=3, count=5), isa.nop(), isa.end()]
    sent, trace, regs, mem = _run_stream(dut, cmds, image, signals=[(1, 1), (1, 1)])
    assert len(sent) == 1
    head, tail, data = sent[0]
    assert (head, tail) == (1, 1)
    assert decode_header(data) == {"dst": (2, 0), "src": (1, 1), "type": PacketType.SIGNAL,
                                   "length": 0, "addr": 3 | 5 << 8}
    assert regs["status"] >> STATUS_BITS["done"] & 1 and regs["pc"] == 4
    assert trace[2] - trace[1] == layout_cycles(MemFunc.TRANSPOSE, **args) + 1 == 18
    assert regs["unit_busy_cycles"] == 17 and regs["wait_cycles"] > 0
    assert trace == sorted(trace)
    assert mem == reference(image + bytes(4096 - len(image)), MemFunc.TRANSPOSE, args)


def test_load_and_bad_signal_fault():
    for cmd in (isa.store(spad_addr=0, x=0, y=0, remote_addr=0, length=8),
                isa.signal(x=2, y=2, token=0, count=1)):
        dut = MemoryTile(mesh=MESH, x=1, y=1, bytes=4096, cmd_depth=4,
                         tiles=[SimpleNamespace(x=0, y=0), SimpleNamespace(x=1, y=1)])
        sent, _, regs, _ = _run_stream(dut, [isa.nop(), cmd, isa.end()])
        assert sent == []
        assert regs["status"] >> STATUS_BITS["fault"] & 1
        assert not regs["status"] >> STATUS_BITS["done"] & 1
        assert regs["pc"] == 1


@pytest.mark.parametrize("kwargs, exc, msg", [
    (dict(x=3, y=0, bytes=4096), ValueError, r"Tile x must be between 0 and 2 on a 3x3 mesh, not 3"),
    (dict(x=0, y=True, bytes=4096), TypeError, r"Tile y must be a non-negative integer, not True"),
    (dict(x=0, y=0, bytes=3000), ValueError,
     r"Memory size must be a power of two of at least 16 flits \(128 bytes\), not 3000"),
    (dict(x=0, y=0, bytes="4k"), TypeError, r"Memory size must be a positive integer, not '4k'"),
    (dict(x=0, y=0, bytes=4096, cmd_depth=1), ValueError,
     r"Command memory depth must be an integer of at least 2, not 1"),
])
def test_parameter_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        MemoryTile(mesh=MESH, **kwargs)
