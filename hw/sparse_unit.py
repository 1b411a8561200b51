"""The shell shared by the sparse units (SMU, GNN): command port, scratchpad ports, engine.

A sparse unit is a :class:`~accelpool.hw.csr_engine.CsrRowEngine` with a unit-specific datapath
and EXEC argument struct. This shell checks the parameters, declares the ports of the
unit contract and turns an accepted command into an engine job:

``cmd``  ``In(stream.Signature(StructLayout({"func": Funcs, "args": Args})))``, ready
         when the unit is idle; byte addresses in ``args`` are divided by the word size
         (they must be word-aligned: the low bits are ignored).
``args`` carries an ``out_bf16`` flag: results are written as FP32 (0) or rounded to BF16
         (1; :mod:`accelpool.hw.csr_engine`, layouts in :mod:`accelpool.spec.formats`).
``busy`` ``Out(1)``: high from the cycle after a command is accepted until its last result
         word is written (a command with no rows or no columns does not raise it).
Four scratchpad ports (the unit drives address and enable; data comes one cycle later):
         ``<ptr>``, ``<nz>``, ``<dense>``: ``In(ReadPort.Signature(addr_width, 16 L))``;
         ``<out>``: ``In(WritePort.Signature(addr_width, 16 L, granularity=8))``;
         their names are the unit's (the SMU's ``a_ptr_read``, ``a_nz_read``, ``b_read``,
         ``c_write``).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .csr_engine import CsrRowEngine, LaneDatapath
from .params import check_int

__all__ = ["SparseUnit"]


class SparseUnit(wiring.Component):
    """Base of the SMU and the GNN unit.

    Subclasses set ``FUNCS``, ``ARGS`` and ``PORTS`` (names of the ptr, nz, dense read ports
    and of the write port) and implement :meth:`datapath` and :meth:`job_fields`.

    Parameters
    ----------
    lanes : int
        Lanes L (``tile["lanes"]``): a power of two, at least 2. Scratchpad word = 16 L bits.
    scratchpad_bytes : int
        Scratchpad size (``tile["scratchpad_bytes"]``); a power of two of at least 2 words.
    """

    FUNCS: type
    ARGS: data.StructLayout
    PORTS: tuple[str, str, str, str]

    def __init__(self, *, lanes: int, scratchpad_bytes: int = 65536):
        check_int(lanes, "Lane count")
        if lanes < 2 or lanes & (lanes - 1):
            raise ValueError(f"Lane count must be a power of two of at least 2, not {lanes!r}")
        check_int(scratchpad_bytes, "Scratchpad size")
        wb = 2 * lanes
        if scratchpad_bytes < 2 * wb or scratchpad_bytes & (scratchpad_bytes - 1):
            raise ValueError(f"Scratchpad size must be a power of two of at least {2 * wb} "
                             f"bytes (two {wb}-byte words), not {scratchpad_bytes!r}")
        self._lanes = lanes
        self._spad = scratchpad_bytes
        self._addr_width = (scratchpad_bytes // wb - 1).bit_length()
        word = 16 * lanes
        rsig = memory.ReadPort.Signature(addr_width=self._addr_width, shape=word)
        wsig = memory.WritePort.Signature(addr_width=self._addr_width, shape=word, granularity=8)
        ptr, nz, dense, out = self.PORTS
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout())),
            "busy": Out(1),
            ptr: In(rsig), nz: In(rsig), dense: In(rsig), out: In(wsig),
        })

    @classmethod
    def from_tile(cls, tile) -> "SparseUnit":
        """The unit of a :class:`accelpool.spec.config.TileConfig` (``lanes``, ``scratchpad_bytes``)."""
        return cls(lanes=tile["lanes"], scratchpad_bytes=tile["scratchpad_bytes"])

    @classmethod
    def command_layout(cls) -> data.StructLayout:
        """The ``cmd`` payload: ``func`` and ``args`` of an EXEC command."""
        return data.StructLayout({"func": cls.FUNCS, "args": cls.ARGS})

    @property
    def cmd_layout(self) -> data.StructLayout:
        """The ``cmd`` payload layout (``{func, args}``), as the other units name it."""
        return self.command_layout()

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def word_bits(self) -> int:
        return 16 * self._lanes

    @property
    def word_bytes(self) -> int:
        return 2 * self._lanes

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def depth(self) -> int:
        """Scratchpad words."""
        return self._spad // self.word_bytes

    def datapath(self, m: Module, func: Signal) -> LaneDatapath:
        """The unit's lane arithmetic, given the latched EXEC function."""
        raise NotImplementedError

    def job_fields(self, args) -> dict:
        """Engine job fields from the EXEC args: byte addresses ``ptr``, ``nz``, ``dense``,
        ``out``, sizes ``rows``, ``cols``, ``nnz`` and the output format flag ``out_bf16``
        (1: BF16 results, 0: FP32)."""
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        func = Signal(self.FUNCS)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += func.eq(self.cmd.payload.func)
        m.submodules.engine = engine = CsrRowEngine(lanes=self._lanes,
                                                    addr_width=self._addr_width,
                                                    datapath=self.datapath(m, func))
        for mine, theirs in zip(self.PORTS, ("ptr_read", "nz_read", "dense_read", "out_write")):
            wiring.connect(m, getattr(engine, theirs), wiring.flipped(getattr(self, mine)))
        shift = (self.word_bytes).bit_length() - 1
        fields = self.job_fields(self.cmd.payload.args)
        m.d.comb += [
            engine.job.valid.eq(self.cmd.valid),
            self.cmd.ready.eq(engine.job.ready),
            self.busy.eq(engine.busy),
        ]
        for name in ("ptr", "nz", "dense", "out"):
            m.d.comb += engine.job.payload[name].eq(fields[name] >> shift)
        for name in ("rows", "cols", "nnz", "out_bf16"):
            m.d.comb += engine.job.payload[name].eq(fields[name])
        return m
