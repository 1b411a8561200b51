import pytest
from amaranth.lib import data, enum

from accelpool.hw import isa
from accelpool.hw.config import UnitKind
from accelpool.hw.isa import (COMMAND_BYTES, CommandLayout, EncodingError, Opcode, assemble, decode,
                    disassemble, end, exec_cmd, listing, load, nop, signal, store, wait)


class ToyFunc(enum.Enum, shape=8):
    COPY = 1
    SCALE = 200


ToyArgs = data.StructLayout({"src": 24, "dst": 24, "n": 16, "shift": data.StructLayout({"amount": 5, "neg": 1})})


@pytest.fixture(autouse=True)
def toy_unit():
    # A throwaway EXEC definition on a kind whose real unit may not be loaded yet.
    saved = dict(isa._EXEC)
    isa.define_exec(UnitKind.GNN, ToyFunc, ToyArgs)
    yield
    isa._EXEC.clear()
    isa._EXEC.update(saved)


MAX = {"spad": (1 << 24) - 1, "coord": 15, "remote": (1 << 32) - 1, "len": (1 << 24) - 1}

EXTREMES = [
    nop(),
    end(),
    load(spad_addr=0, x=0, y=0, remote_addr=0, length=0),
    load(spad_addr=MAX["spad"], x=15, y=15, remote_addr=MAX["remote"], length=MAX["len"]),
    store(spad_addr=0x123456, x=2, y=1, remote_addr=0xDEADBEEF, length=1),
    store(spad_addr=MAX["spad"], x=15, y=0, remote_addr=MAX["remote"], length=MAX["len"]),
    wait(token=0, count=0),
    wait(token=255, count=65535),
    signal(x=0, y=15, token=255, count=65535),
    signal(x=15, y=0, token=0, count=1),
    exec_cmd(UnitKind.GNN, ToyFunc.COPY, src=0, dst=0, n=0, shift={"amount": 0, "neg": 0}),
    exec_cmd(UnitKind.GNN, ToyFunc.SCALE, src=(1 << 24) - 1, dst=(1 << 24) - 1, n=65535,
             shift={"amount": 31, "neg": 1}),
]


@pytest.mark.parametrize("cmd", EXTREMES, ids=lambda c: c.listing())
def test_roundtrip(cmd):
    word = cmd.encode()
    assert 0 <= word < 1 << 256
    back = decode(word, UnitKind.GNN)
    assert back == cmd
    assert back.encode() == word


def test_every_opcode_is_covered():
    assert {c.opcode for c in EXTREMES} == set(Opcode)


def test_stream_roundtrip_and_listing():
    blob = assemble(EXTREMES)
    assert len(blob) == COMMAND_BYTES * len(EXTREMES)
    assert disassemble(blob, UnitKind.GNN) == EXTREMES
    text = listing(disassemble(blob, UnitKind.GNN))
    assert "    3  LOAD   spad=0xffffff <- (15,15):0xffffffff len=16777215" in text
    assert "EXEC   gnn.scale src=16777215 dst=16777215 n=65535 shift.amount=31 shift.neg=1" in text


def test_field_layout_is_the_hardware_layout():
    # The hardware decodes the same word through CommandLayout: opcode in the low 4 bits.
    word = load(spad_addr=5, x=1, y=2, remote_addr=7, length=9).encode()
    view = CommandLayout.from_bits(word)
    assert view.opcode == Opcode.LOAD
    assert (view.body.load.spad_addr, view.body.load.x, view.body.load.y) == (5, 1, 2)
    assert (view.body.load.remote_addr, view.body.load.length) == (7, 9)


@pytest.mark.parametrize("make, message", [
    (lambda: load(spad_addr=1 << 24, x=0, y=0, remote_addr=0, length=0),
     r"LOAD.spad_addr: 16777216 does not fit in 24 bits \(0..16777215\)"),
    (lambda: store(spad_addr=0, x=16, y=0, remote_addr=0, length=0),
     r"STORE.x: 16 does not fit in 4 bits \(0..15\)"),
    (lambda: load(spad_addr=0, x=0, y=0, remote_addr=-1, length=0),
     r"LOAD.remote_addr: -1 does not fit in 32 bits"),
    (lambda: wait(token=256), r"WAIT.token: 256 does not fit in 8 bits \(0..255\)"),
    (lambda: signal(x=0, y=0, token=0, count=1 << 16), r"SIGNAL.count: 65536 does not fit in 16 bits"),
    (lambda: load(spad_addr="0", x=0, y=0, remote_addr=0, length=0),
     r"LOAD.spad_addr must be an integer, not '0'"),
    (lambda: exec_cmd(UnitKind.GNN, ToyFunc.COPY, n=1 << 16), r"EXEC.gnn.args.n: 65536 does not fit in 16 bits"),
    (lambda: exec_cmd(UnitKind.GNN, ToyFunc.COPY, shift={"amount": 32}),
     r"EXEC.gnn.args.shift.amount: 32 does not fit in 5 bits"),
    (lambda: exec_cmd(UnitKind.GNN, ToyFunc.COPY, bogus=1),
     r"EXEC.gnn.args.bogus: no such field; fields: src, dst, n, shift"),
    (lambda: exec_cmd(UnitKind.GNN, "MULTIPLY"), r"EXEC.gnn.func must be one of COPY, SCALE, not 'MULTIPLY'"),
])
def test_field_errors(make, message):
    with pytest.raises(EncodingError, match=message):
        make().encode()


def test_decode_errors():
    with pytest.raises(EncodingError, match=r"Unknown opcode 7; accepted: NOP=0, LOAD=1"):
        decode(7)
    with pytest.raises(EncodingError, match=r"A command word is 256 bits"):
        decode(1 << 256)
    exec_word = exec_cmd(UnitKind.GNN, ToyFunc.COPY).encode()
    with pytest.raises(EncodingError, match=r"An EXEC word can only be decoded knowing the tile's unit kind"):
        decode(exec_word)
    with pytest.raises(EncodingError, match=r"Unknown gnn EXEC function 3; accepted: COPY=1, SCALE=200"):
        decode((exec_word & ~(0xFF << 4)) | (3 << 4), UnitKind.GNN)
    with pytest.raises(EncodingError, match=r"multiple of 32 bytes, not 33"):
        disassemble(b"\0" * 33)


def test_define_exec_rejects_too_wide_args():
    with pytest.raises(ValueError, match=r"EXEC arguments of dmu take 241 bits; at most 240 fit"):
        isa.define_exec(UnitKind.DMU, ToyFunc, data.StructLayout({"a": 241}))
