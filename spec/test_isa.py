import pytest
from amaranth.lib import data, enum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.isa import (COMMAND_BITS, COMMAND_BYTES, Command, CommandLayout, EncodingError,
                                Opcode, assemble, decode, disassemble, end, exec_cmd, listing,
                                load, nop, signal, store, wait)


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


# ---- the decoder is total: every word decodes to a command that re-encodes to it, or is an
# EncodingError naming what is wrong -------------------------------------------------------

#: The unit kinds with EXEC definitions (GNN is the toy unit of this module's fixture).
KINDS = [k for k in UnitKind if k is not UnitKind.GNN]
for _k in KINDS:
    isa.exec_spec(_k)
KINDS.append(UnitKind.GNN)

#: Bits of the word each opcode's fields take (opcode, then its body from bit 4).
_FIELD_END = {Opcode.NOP: 4, Opcode.END: 4, Opcode.LOAD: 92, Opcode.STORE: 92,
              Opcode.WAIT: 28, Opcode.SIGNAL: 36}


@pytest.mark.parametrize("opcode", [o for o in Opcode if o is not Opcode.EXEC], ids=lambda o: o.name)
def test_bits_beyond_the_fields_are_errors(opcode):
    end_bit = _FIELD_END[opcode]
    for bit in (end_bit, 200, 251):
        with pytest.raises(EncodingError, match=rf"^{opcode.name} word has bit\(s\) {bit} beyond "
                                                rf"its last field \(bit {end_bit - 1}\) set; bits "
                                                rf"{end_bit}\.\.255 must be zero$"):
            decode(opcode.value | 1 << bit)
    with pytest.raises(EncodingError, match=rf"^{opcode.name} word has reserved bit\(s\) 252, 255 "
                                            r"\(bits 252\.\.255\) set; bits"):
        decode(opcode.value | 1 << 252 | 1 << 255)


def test_bits_beyond_the_exec_arguments_are_errors():
    word = exec_cmd(UnitKind.GNN, ToyFunc.COPY).encode()
    last = 12 + ToyArgs.size - 1                     # func in bits 4..11, the arguments from 12
    with pytest.raises(EncodingError, match=rf"^EXEC gnn word has bit\(s\) {last + 1} beyond its "
                                            rf"last field \(bit {last}\) set"):
        decode(word | 1 << (last + 1), UnitKind.GNN)
    assert decode(word | 1 << last, UnitKind.GNN).fields["args"]["shift"]["neg"] == 1
    for kind in KINDS[:-1]:
        size = isa.exec_spec(kind).args.size
        w = Opcode.EXEC.value | 1 << (12 + size)
        with pytest.raises(EncodingError, match=rf"^EXEC {kind.key} word has bit\(s\) {12 + size} "):
            decode(w, kind)


class ToyMode(enum.Enum, shape=2):
    FAST = 0
    EXACT = 2


def test_an_enum_argument_out_of_its_members_is_an_error():
    isa.define_exec(UnitKind.GNN, ToyFunc, data.StructLayout({"n": 4, "mode": ToyMode}))
    word = exec_cmd(UnitKind.GNN, ToyFunc.COPY, n=3, mode=ToyMode.EXACT).encode()
    assert decode(word, UnitKind.GNN).fields["args"] == {"n": 3, "mode": ToyMode.EXACT}
    with pytest.raises(EncodingError, match=r"^EXEC.gnn.args.mode: 3 is not one of FAST=0, EXACT=2$"):
        decode(word ^ 1 << (12 + 4), UnitKind.GNN)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: decode("0"), TypeError,
     r"^A command word is an integer \(0 <= word < 2\*\*256\), not '0' \(str\)$"),
    (lambda: decode(1.0), TypeError, r"^A command word is an integer .*, not 1.0 \(float\)$"),
    (lambda: decode(True), TypeError, r"^A command word is an integer .*, not True \(bool\)$"),
    (lambda: decode(-1), EncodingError, r"^A command word is 256 bits \(0 <= word < 2\*\*256\), not -1$"),
    (lambda: decode(0, "dmu"), TypeError,
     r"^The unit kind is a UnitKind \(memory, dmu, .*, gnn\) or None, not 'dmu' \(str\)$"),
    (lambda: disassemble("\0" * 32), TypeError,
     r"^A command stream is bytes, bytearray or memoryview, not str$"),
    (lambda: disassemble([0] * 32), TypeError,
     r"^A command stream is bytes, bytearray or memoryview, not list$"),
    (lambda: Command(7), EncodingError, r"^Unknown opcode 7; accepted: NOP=0, LOAD=1, .*END=15$"),
    (lambda: Command("LOAD"), TypeError,
     r"^A command's opcode is an Opcode or its value \(NOP=0, .*\), not 'LOAD' \(str\)$"),
    (lambda: Command(Opcode.LOAD, [1, 2]), TypeError,
     r"^A command's fields are a mapping of field names to values, not \[1, 2\] \(list\)$"),
    (lambda: Command(Opcode.EXEC, {}, "dmu"), TypeError,
     r"^The unit kind is a UnitKind .* or None, not 'dmu' \(str\)$"),
])
def test_wrong_inputs_are_named(call, exc, message):
    with pytest.raises(exc, match=message) as info:
        call()
    assert type(info.value) is exc


def test_an_opcode_given_by_value_is_that_opcode():
    assert Command(1, dict(spad_addr=0, x=0, y=0, remote_addr=0, length=0)) == load(
        spad_addr=0, x=0, y=0, remote_addr=0, length=0)
    assert disassemble(bytearray(assemble([end()]))) == [end()]
    assert disassemble(memoryview(assemble([end()]))) == [end()]


def _shape_values(shape):
    """A strategy of the valid values of one field shape (mirrors the layouts, not the encoder)."""
    if isinstance(shape, data.StructLayout):
        return st.fixed_dictionaries({n: _shape_values(f.shape) for n, f in shape})
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return st.sampled_from(list(shape))
    s = isa.Shape.cast(shape)
    if s.signed:
        return st.integers(-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1)
    return st.integers(0, (1 << s.width) - 1)


@st.composite
def valid_commands(draw):
    opcode = draw(st.sampled_from(list(Opcode)))
    if opcode is Opcode.EXEC:
        kind = draw(st.sampled_from(KINDS))
        spec = isa.exec_spec(kind)
        return Command(opcode, {"func": draw(st.sampled_from(list(spec.funcs))),
                                "args": draw(_shape_values(spec.args))}, kind)
    body = isa._BODIES[opcode]
    return Command(opcode, draw(_shape_values(body)) if body is not None else {})


#: Words: any 256 bits, often cut down to their low bits and given a defined opcode, so that
#: both the words that decode and the ones that do not are common.
words = st.tuples(st.integers(0, (1 << COMMAND_BITS) - 1), st.integers(0, COMMAND_BITS),
                  st.sampled_from([None] + list(Opcode))).map(
    lambda t: (t[0] & ((1 << t[1]) - 1) & ~0xF | (t[2].value if t[2] is not None else t[0] & 0xF)))

_SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(word=words, kind=st.sampled_from(KINDS))
def test_every_word_decodes_to_itself_or_is_an_encoding_error(word, kind):
    try:
        cmd = decode(word, kind)
    except EncodingError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert cmd.encode() == word
    assert disassemble(word.to_bytes(32, "little"), kind) == [cmd]


@_SETTINGS
@given(cmd=valid_commands())
def test_every_valid_command_encodes_and_decodes_to_itself(cmd):
    word = cmd.encode()
    assert 0 <= word < 1 << COMMAND_BITS
    assert decode(word, cmd.kind) == cmd


# ---- the bit map of the module docstring, pinned with words written from it -------------

def _known_encodings():
    from accelpool.spec.units.afu import AfuDType, AfuFunc
    from accelpool.spec.units.dmu import DmuFunc
    return [
        (nop(), None, 0x0),
        (end(), None, 0xF),
        # length | remote_addr | y | x | spad_addr | opcode, each a whole number of hex digits
        (load(spad_addr=0x123456, x=0xA, y=0x5, remote_addr=0xDEADBEEF, length=0xABCDEF), None,
         0xABCDEF_DEADBEEF_5_A_123456_1),
        (store(spad_addr=0x123456, x=0xA, y=0x5, remote_addr=0xDEADBEEF, length=0xABCDEF), None,
         0xABCDEF_DEADBEEF_5_A_123456_2),
        (wait(token=0xC3, count=0xBEEF), None, 0xBEEF_C3_4),
        (signal(x=0x7, y=0x9, token=0xA5, count=0x1234), None, 0x1234_A5_9_7_5),
        # EXEC: args from bit 12 in the unit's field order, func in bits 4..11
        (exec_cmd(UnitKind.DMU, DmuFunc.GEMM, a_addr=0x111111, b_addr=0x222222, c_addr=0x333333,
                  d_addr=0x444444, m=0x5555, n=0x6666, k=0x7777, accumulate=1, out_bf16=0),
         UnitKind.DMU, 0x1_7777_6666_5555_444444_333333_222222_111111_00_3),
        (exec_cmd(UnitKind.AFU, AfuFunc.GELU, a_addr=0xABCDEF, dtype=AfuDType.BF16),
         UnitKind.AFU, 0xABCDEF_04_3),
    ]


def test_known_encodings_follow_the_bit_map():
    cases = _known_encodings()
    assert {c.opcode for c, _, _ in cases} == set(Opcode)
    for cmd, kind, word in cases:
        assert cmd.encode() == word, cmd.listing()
        back = decode(word, kind)
        assert back.encode() == word and back.opcode is cmd.opcode
        if kind is None:
            assert back == cmd
    # stored little-endian: the opcode is the low nibble of byte 0
    assert assemble([load(spad_addr=0x123456, x=0xA, y=0x5, remote_addr=0xDEADBEEF,
                          length=0xABCDEF)])[:12] == bytes.fromhex("614523a1f5eedbeafddebc0a")
