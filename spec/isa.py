"""The tile command encoding: one definition for the hardware decoder and the Python encoder.

Every command is one 256-bit word (:data:`COMMAND_BITS`), stored little-endian in 32
bytes. The word is the :data:`CommandLayout` struct: a 4-bit :class:`Opcode` and a body
whose meaning depends on it.

========  =====================================================================
opcode    body
========  =====================================================================
NOP       nothing
LOAD      copy ``length`` bytes from tile (x, y) address ``remote_addr`` into
          the local scratchpad at ``spad_addr`` (normally from the memory tile)
STORE     copy ``length`` bytes from the local scratchpad at ``spad_addr`` to
          tile (x, y) address ``remote_addr`` (memory or another tile's scratchpad)
EXEC      run the tile's unit: ``func`` selects the operation, ``args`` (240 bits)
          is the unit's own argument struct (operand addresses, shapes, flags)
WAIT      stall until local token counter ``token`` >= ``count``, then subtract
          ``count``
SIGNAL    send a token to tile (x, y): its counter ``token`` grows by ``count``;
          delivered after every earlier STORE of this tile to the same destination
END       the stream is finished
========  =====================================================================

Bit map
-------
The contract with any tool that reads or writes the streams. Bit 0 is the least
significant bit of the word (bit 0 of byte 0); a field's lowest bit holds its least
significant bit. Every bit the table does not name must be zero: :func:`decode` rejects
a word with any of them set.

========  ================  ========  ==================================================
opcode    field             bits      meaning
========  ================  ========  ==================================================
(all)     opcode            0-3       NOP=0, LOAD=1, STORE=2, EXEC=3, WAIT=4, SIGNAL=5,
                                      END=15; other values do not decode
(all)     reserved          252-255   zero
NOP, END  (none)                      bits 4-251 zero
LOAD,     spad_addr         4-27      local scratchpad byte address
STORE     x                 28-31     remote tile column
          y                 32-35     remote tile row
          remote_addr       36-67     byte address at the remote tile
          length            68-91     bytes to copy
          (unused)          92-251    zero
EXEC      func              4-11      the unit's function (its ``funcs`` enum value)
          args              12-251    the unit's argument struct from bit 12 (its first
                                      field's lowest bit), fields in declaration order;
                                      the bits above the struct are zero
WAIT      token             4-11      local token counter
          count             12-27     tokens to wait for and consume
          (unused)          28-251    zero
SIGNAL    x                 4-7       destination tile column
          y                 8-11      destination tile row
          token             12-19     the destination's token counter
          count             20-35     tokens to add
          (unused)          36-251    zero
========  ================  ========  ==================================================

A unit kind's contract module declares its EXEC operations and argument layout once
with :func:`define_exec`; the hardware views ``body.exec.args`` through that layout and
:func:`exec_cmd` encodes through the same one. The contract sits beside the unit's
declaration (``spec/units/dmu.py``, :mod:`accelpool.spec.unit`), so every registered
kind has its layout once the units are loaded.

Python side::

    >>> from accelpool.spec.isa import load, end, assemble, disassemble
    >>> words = assemble([load(spad_addr=0, x=1, y=1, remote_addr=0x100, length=64), end()])
    >>> [c.listing() for c in disassemble(words)]
    ['LOAD   spad=0x000000 <- (1,1):0x00000100 len=64', 'END']
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from amaranth.hdl import Const, Shape
from amaranth.lib import data, enum

from .kinds import UnitKind

__all__ = [
    "COMMAND_BITS", "COMMAND_BYTES", "EXEC_ARGS_BITS", "Opcode", "CommandLayout",
    "EncodingError", "Command", "ExecSpec", "define_exec", "exec_spec",
    "nop", "load", "store", "exec_cmd", "wait", "signal", "end",
    "encode", "decode", "assemble", "disassemble", "listing",
]

COMMAND_BITS = 256
COMMAND_BYTES = COMMAND_BITS // 8
EXEC_ARGS_BITS = 240

#: Widths of address and length fields, shared with the DMA engines.
SPAD_ADDR_BITS = 24
REMOTE_ADDR_BITS = 32
LENGTH_BITS = 24
COORD_BITS = 4
TOKEN_BITS = 8
COUNT_BITS = 16


class EncodingError(ValueError):
    """A command field whose value does not fit its encoding, or a word that does not decode."""


class Opcode(enum.Enum, shape=4):
    """Command opcodes."""

    NOP = 0
    LOAD = 1
    STORE = 2
    EXEC = 3
    WAIT = 4
    SIGNAL = 5
    END = 15


DmaBody = data.StructLayout({
    "spad_addr": SPAD_ADDR_BITS,
    "x": COORD_BITS,
    "y": COORD_BITS,
    "remote_addr": REMOTE_ADDR_BITS,
    "length": LENGTH_BITS,
})

ExecBody = data.StructLayout({
    "func": 8,
    "args": EXEC_ARGS_BITS,
})

WaitBody = data.StructLayout({
    "token": TOKEN_BITS,
    "count": COUNT_BITS,
})

SignalBody = data.StructLayout({
    "x": COORD_BITS,
    "y": COORD_BITS,
    "token": TOKEN_BITS,
    "count": COUNT_BITS,
})

_BODIES: dict[Opcode, data.StructLayout | None] = {
    Opcode.NOP: None,
    Opcode.LOAD: DmaBody,
    Opcode.STORE: DmaBody,
    Opcode.EXEC: ExecBody,
    Opcode.WAIT: WaitBody,
    Opcode.SIGNAL: SignalBody,
    Opcode.END: None,
}

BodyLayout = data.UnionLayout({
    "load": DmaBody,
    "store": DmaBody,
    "exec": ExecBody,
    "wait": WaitBody,
    "signal": SignalBody,
})

#: The command word. Hardware decodes with ``data.View(CommandLayout, word)``.
CommandLayout = data.StructLayout({
    "opcode": Opcode,
    "body": BodyLayout,
    "reserved": COMMAND_BITS - Opcode.as_shape().width - BodyLayout.size,
})
assert CommandLayout.size == COMMAND_BITS

#: Word bit where the body starts, where an EXEC's argument struct starts, and where the
#: reserved field starts.
_BODY_AT = CommandLayout["body"].offset
_ARGS_AT = _BODY_AT + ExecBody["args"].offset
_RESERVED_AT = CommandLayout["reserved"].offset


@dataclass(frozen=True)
class ExecSpec:
    """The EXEC operations and argument layout of one unit kind.

    ``checks(func, args)`` lists what makes an EXEC invalid for the unit, as pairs
    ``(reason, condition)``; ``func`` is the function code as an integer. It is written once with operators that work on Python
    integers and on Amaranth values alike (``==``, ``<``, ``+``, ``|``, ``&``), so the
    tile refuses in hardware exactly the commands :meth:`problems` names in Python.
    """

    kind: UnitKind
    funcs: type  # an amaranth enum.Enum with shape 8 or less
    args: data.StructLayout
    checks: Any = None

    def problems(self, func, args: Mapping[str, int]) -> list[str]:
        """The reasons an EXEC of ``func`` (member or code) with ``args`` (field -> int) is
        invalid for the unit; empty if none."""
        if self.checks is None:
            return []
        code = func.value if isinstance(func, enum.Enum) else int(func)
        view = _Fields({k: _int(args.get(k, 0)) for k in self.args.members})
        return [reason for reason, bad in self.checks(code, view) if bad]

    def invalid(self, func, args) -> Any:
        """One Amaranth value, true when the EXEC of function code ``func`` (a value) with
        the argument ``View`` ``args`` is invalid."""
        bad = Const(0, 1)
        for _, cond in (self.checks(func, args) if self.checks is not None else []):
            bad = bad | cond
        return bad


def _int(v) -> int:
    return v.value if isinstance(v, enum.Enum) else int(v)


class _Fields:
    """EXEC argument values by attribute, as an Amaranth ``View`` gives them."""

    def __init__(self, values: Mapping[str, int]):
        self.__dict__.update(values)


_EXEC: dict[UnitKind, ExecSpec] = {}


def define_exec(kind: UnitKind, funcs: type, args: data.StructLayout,
                checks=None) -> ExecSpec:
    """Declare a unit kind's EXEC operations and argument struct (called once by ``spec/units/<kind>.py``),
    and optionally what makes its arguments invalid (:class:`ExecSpec`).

    Raises
    ------
    ValueError
        If the argument struct is wider than :data:`EXEC_ARGS_BITS` or the function enum
        is wider than 8 bits.
    """
    if not isinstance(args, data.StructLayout):
        raise TypeError(f"EXEC arguments must be a data.StructLayout, not {args!r}")
    if args.size > EXEC_ARGS_BITS:
        raise ValueError(f"EXEC arguments of {kind.key} take {args.size} bits; "
                         f"at most {EXEC_ARGS_BITS} fit")
    if Shape.cast(funcs).width > 8:
        raise ValueError(f"EXEC functions of {kind.key} must fit in 8 bits")
    spec = ExecSpec(kind, funcs, args, checks)
    _EXEC[kind] = spec
    return spec


def exec_spec(kind: UnitKind) -> ExecSpec:
    """The EXEC spec of ``kind``, as its unit's module declared it."""
    len(UnitKind)   # the unit modules, which declare the specs, are loaded
    if kind not in _EXEC:
        raise EncodingError(f"No EXEC operations are defined for unit kind {kind.key!r}; "
                            f"defined: {', '.join(k.key for k in _EXEC) or 'none'}")
    return _EXEC[kind]


def _check_field(path: str, shape: Any, value: Any) -> Any:
    """Check ``value`` fits ``shape`` and return it in the form ``Layout.const`` accepts."""
    if isinstance(shape, data.StructLayout):
        if not isinstance(value, Mapping):
            raise EncodingError(f"{path} must be a mapping of fields "
                                f"({', '.join(n for n, _ in shape)}), not {value!r}")
        names = [n for n, _ in shape]
        for k in value:
            if k not in names:
                raise EncodingError(f"{path}.{k}: no such field; fields: {', '.join(names)}")
        return {n: _check_field(f"{path}.{n}", f.shape, value[n] if n in value else _zero(f.shape))
                for n, f in shape}
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        if isinstance(value, str):
            try:
                return shape[value.upper()]
            except KeyError:
                pass
        elif isinstance(value, shape):
            return value
        raise EncodingError(f"{path} must be one of {', '.join(m.name for m in shape)}, "
                            f"not {value!r}")
    s = Shape.cast(shape)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int):
        raise EncodingError(f"{path} must be an integer, not {value!r}")
    lo, hi = (-(1 << (s.width - 1)), (1 << (s.width - 1)) - 1) if s.signed else (0, (1 << s.width) - 1)
    if not lo <= value <= hi:
        raise EncodingError(f"{path}: {value} does not fit in {s.width} "
                            f"{'signed ' if s.signed else ''}bits ({lo}..{hi})")
    return value


def _zero(shape: Any) -> Any:
    """The value an omitted field takes: all-zero bits (an enum must be given explicitly)."""
    if isinstance(shape, data.StructLayout):
        return {}
    if isinstance(shape, type) and issubclass(shape, enum.Enum):
        return None
    return 0


def _to_python(path: str, shape: Any, view: Any) -> Any:
    """Turn a decoded ``data.Const`` field back into plain Python (dicts, ints, enum members).

    Raises
    ------
    EncodingError
        For an enum field whose bits are none of its members (named by ``path``).
    """
    if not isinstance(shape, data.StructLayout):
        return view
    out = {}
    for n, f in shape:
        try:
            value = view[n]
        except ValueError:      # an enum field holding none of its members
            raw = view.as_bits() >> f.offset & ((1 << Shape.cast(f.shape).width) - 1)
            raise EncodingError(f"{path}.{n}: {raw} is not one of "
                                f"{', '.join(f'{m.name}={m.value}' for m in f.shape)}") from None
        out[n] = _to_python(f"{path}.{n}", f.shape, value)
    return out


def _kind_or_none(kind: Any) -> UnitKind | None:
    if kind is not None and not isinstance(kind, UnitKind):
        raise TypeError(f"The unit kind is a UnitKind ({', '.join(k.key for k in UnitKind)}) or "
                        f"None, not {kind!r} ({type(kind).__name__})")
    return kind


def _unused_bits_error(word: int, used: int, who: str) -> EncodingError:
    """The error for ``word``, whose bits from ``used`` up (no field of ``who``) are not all zero."""
    def bits(lo: int, hi: int) -> str:
        b = [i for i in range(lo, hi) if word >> i & 1]
        return ", ".join(map(str, b[:8])) + (f", ... ({len(b)} bits)" if len(b) > 8 else "")
    parts = []
    if word >> used & ((1 << (_RESERVED_AT - used)) - 1):
        parts.append(f"bit(s) {bits(used, _RESERVED_AT)} beyond its last field (bit {used - 1})")
    if word >> _RESERVED_AT:
        parts.append(f"reserved bit(s) {bits(_RESERVED_AT, COMMAND_BITS)} "
                     f"(bits {_RESERVED_AT}..{COMMAND_BITS - 1})")
    return EncodingError(f"{who} word has {' and '.join(parts)} set; "
                         f"bits {used}..{COMMAND_BITS - 1} must be zero")


@dataclass(frozen=True)
class Command:
    """One decoded or to-be-encoded command.

    ``fields`` holds the body's fields; for EXEC it is ``{"func": member, "args": {...}}``
    and ``kind`` names the unit kind whose argument layout applies.
    """

    opcode: Opcode
    fields: Mapping[str, Any] = field(default_factory=dict)
    kind: UnitKind | None = None

    def __post_init__(self):
        op = self.opcode
        if not isinstance(op, Opcode):
            if isinstance(op, bool) or not isinstance(op, numbers.Integral):
                raise TypeError(f"A command's opcode is an Opcode or its value ({_OPCODES}), "
                                f"not {op!r} ({type(op).__name__})")
            object.__setattr__(self, "opcode", _opcode(int(op)))
        if not isinstance(self.fields, Mapping):
            raise TypeError(f"A command's fields are a mapping of field names to values, not "
                            f"{self.fields!r} ({type(self.fields).__name__})")
        _kind_or_none(self.kind)

    def encode(self) -> int:
        """The 256-bit command word as an integer."""
        body_layout = _BODIES[self.opcode]
        body: dict[str, Any] = {}
        if self.opcode is Opcode.EXEC:
            if self.kind is None:
                raise EncodingError("EXEC needs the unit kind whose arguments it carries")
            spec = exec_spec(self.kind)
            func = _check_field(f"EXEC.{self.kind.key}.func", spec.funcs, self.fields.get("func"))
            args = _check_field(f"EXEC.{self.kind.key}.args", spec.args, self.fields.get("args", {}))
            body = {"exec": {"func": func.value, "args": spec.args.const(args).as_value().value}}
        elif body_layout is not None:
            checked = _check_field(self.opcode.name, body_layout, dict(self.fields))
            body = {self.opcode.name.lower(): checked}
        elif self.fields:
            raise EncodingError(f"{self.opcode.name} takes no fields, not {dict(self.fields)!r}")
        return CommandLayout.const({"opcode": self.opcode, "body": body}).as_value().value

    def listing(self) -> str:
        """A readable one-line form, as a disassembler prints it."""
        f = self.fields
        op = f"{self.opcode.name:<6}"
        if self.opcode in (Opcode.NOP, Opcode.END):
            return self.opcode.name
        if self.opcode is Opcode.LOAD:
            return (f"{op} spad=0x{f['spad_addr']:06x} <- ({f['x']},{f['y']}):"
                    f"0x{f['remote_addr']:08x} len={f['length']}")
        if self.opcode is Opcode.STORE:
            return (f"{op} spad=0x{f['spad_addr']:06x} -> ({f['x']},{f['y']}):"
                    f"0x{f['remote_addr']:08x} len={f['length']}")
        if self.opcode is Opcode.WAIT:
            return f"{op} token={f['token']} count={f['count']}"
        if self.opcode is Opcode.SIGNAL:
            return f"{op} ({f['x']},{f['y']}) token={f['token']} count={f['count']}"
        func = f["func"]
        fname = func.name.lower() if hasattr(func, "name") else str(func)
        args = " ".join(f"{k}={_fmt(v)}" for k, v in _flatten(f.get("args", {})))
        kind = self.kind.key if self.kind else "?"
        return f"{op} {kind}.{fname} {args}".rstrip()


def _flatten(d: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, Mapping):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _fmt(v: Any) -> str:
    if hasattr(v, "name"):
        return v.name.lower()
    return str(v)


def nop() -> Command:
    """A command that does nothing."""
    return Command(Opcode.NOP)


def load(*, spad_addr: int, x: int, y: int, remote_addr: int, length: int) -> Command:
    """LOAD ``length`` bytes from tile (x, y) at ``remote_addr`` into the scratchpad at ``spad_addr``."""
    return Command(Opcode.LOAD, dict(spad_addr=spad_addr, x=x, y=y, remote_addr=remote_addr,
                                     length=length))


def store(*, spad_addr: int, x: int, y: int, remote_addr: int, length: int) -> Command:
    """STORE ``length`` bytes from the scratchpad at ``spad_addr`` to tile (x, y) at ``remote_addr``."""
    return Command(Opcode.STORE, dict(spad_addr=spad_addr, x=x, y=y, remote_addr=remote_addr,
                                      length=length))


def exec_cmd(kind: UnitKind, func: Any, **args: Any) -> Command:
    """EXEC ``func`` on a unit of ``kind`` with the unit's named arguments."""
    return Command(Opcode.EXEC, {"func": func, "args": args}, kind)


def wait(*, token: int, count: int = 1) -> Command:
    """WAIT until local token ``token`` reaches ``count``, then consume it."""
    return Command(Opcode.WAIT, dict(token=token, count=count))


def signal(*, x: int, y: int, token: int, count: int = 1) -> Command:
    """SIGNAL tile (x, y): add ``count`` to its token ``token``."""
    return Command(Opcode.SIGNAL, dict(x=x, y=y, token=token, count=count))


def end() -> Command:
    """END of the command stream."""
    return Command(Opcode.END)


def encode(cmd: Command) -> int:
    """Encode one command into its 256-bit word."""
    return cmd.encode()


_OPCODES = ", ".join(f"{o.name}={o.value}" for o in Opcode)


def _opcode(value: int) -> Opcode:
    try:
        return Opcode(value)
    except ValueError:
        raise EncodingError(f"Unknown opcode {value}; accepted: {_OPCODES}") from None


def decode(word: int, kind: UnitKind | None = None) -> Command:
    """Decode one 256-bit word; ``kind`` names the unit whose EXEC arguments apply.

    Every word either decodes to the command that encodes to it, or raises.

    Raises
    ------
    EncodingError
        For a word outside ``0 <= word < 2**256``, an unknown opcode or EXEC function, an
        enum argument holding none of its members, a bit set beyond the opcode's fields
        (or beyond the unit's EXEC arguments) or in the reserved bits, or an EXEC word
        decoded without a unit kind.
    TypeError
        If ``word`` is not an integer or ``kind`` not a :class:`UnitKind` or None: a caller
        error rather than a word that does not decode.
    """
    if isinstance(word, bool) or not isinstance(word, numbers.Integral):
        raise TypeError(f"A command word is an integer (0 <= word < 2**{COMMAND_BITS}), not "
                        f"{word!r} ({type(word).__name__})")
    word = int(word)
    kind = _kind_or_none(kind)
    if not 0 <= word < (1 << COMMAND_BITS):
        raise EncodingError(f"A command word is {COMMAND_BITS} bits "
                            f"(0 <= word < 2**{COMMAND_BITS}), not {word!r}")
    opcode = _opcode(word & 0xF)
    view = CommandLayout.from_bits(word)
    body_layout = _BODIES[opcode]
    if opcode is Opcode.EXEC:
        if kind is None:
            raise EncodingError("An EXEC word can only be decoded knowing the tile's unit kind")
        spec = exec_spec(kind)
        if word >> (_ARGS_AT + spec.args.size):
            raise _unused_bits_error(word, _ARGS_AT + spec.args.size, f"EXEC {kind.key}")
        raw_func = view.body.exec.func
        try:
            func = spec.funcs(raw_func)
        except ValueError:
            raise EncodingError(f"Unknown {kind.key} EXEC function {raw_func}; accepted: "
                                f"{', '.join(f'{m.name}={m.value}' for m in spec.funcs)}") from None
        args_view = spec.args.from_bits(view.body.exec.args)
        args = _to_python(f"EXEC.{kind.key}.args", spec.args, args_view)
        return Command(opcode, {"func": func, "args": args}, kind)
    used = _BODY_AT + (body_layout.size if body_layout is not None else 0)
    if word >> used:
        raise _unused_bits_error(word, used, opcode.name)
    if body_layout is None:
        return Command(opcode)
    return Command(opcode, _to_python(opcode.name, body_layout, view.body[opcode.name.lower()]))


def assemble(cmds: Iterable[Command]) -> bytes:
    """Encode a command stream into bytes (32 bytes per command, little-endian)."""
    return b"".join(c.encode().to_bytes(COMMAND_BYTES, "little") for c in cmds)


def disassemble(blob: bytes | bytearray | memoryview, kind: UnitKind | None = None) -> list[Command]:
    """Decode a command stream produced by :func:`assemble`.

    Raises
    ------
    EncodingError
        For a stream that is not a whole number of commands, or a word that does not
        decode (:func:`decode`).
    TypeError
        If ``blob`` is not bytes-like.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"A command stream is bytes, bytearray or memoryview, not "
                        f"{type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) % COMMAND_BYTES:
        raise EncodingError(f"A command stream is a multiple of {COMMAND_BYTES} bytes, "
                            f"not {len(blob)}")
    return [decode(int.from_bytes(blob[i:i + COMMAND_BYTES], "little"), kind)
            for i in range(0, len(blob), COMMAND_BYTES)]


def listing(cmds: Iterable[Command]) -> str:
    """A numbered, readable listing of a command stream."""
    return "\n".join(f"{i:5d}  {c.listing()}" for i, c in enumerate(cmds))
