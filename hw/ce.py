"""The convolution engine (CE): direct 2-D INT8 convolution, INT32 accumulation.

One EXEC ``CONV`` computes ONNX ConvInteger (optionally + INT32 bias) or QLinearConv
(+ bias, fixed-point requantization to INT8) over one image, reading its operands from
the tile scratchpad and writing the result back. There is no im2col copy: the unit walks
the input window itself and reads each input word where it lies.

Datapath
--------
``oc_lanes`` x ``ic_lanes`` INT8 multipliers. Each cycle one scratchpad word holding
``ic_lanes`` input channels of one input pixel meets the ``oc_lanes`` x ``ic_lanes``
weights of that kernel tap (from a local weight buffer), and ``oc_lanes`` adder trees add
the products into ``oc_lanes`` INT32 accumulators (output-stationary). Per block of
``oc_lanes`` output channels the unit first copies that block's weights into its weight
buffer (``kernel_h * kernel_w * ceil(c_in / ic_lanes) * oc_lanes`` words), then walks every
output pixel; per pixel it spends ``kernel_h * kernel_w * ceil(c_in / ic_lanes)`` cycles, one
per (tap, input-channel block), padded taps included (they read nothing and add zero).
Finished pixels go through bias and requantization into an output FIFO that a writer
drains to the scratchpad in parallel with the next pixels. The cycle count is
:func:`accelpool.sched.cost.ce.cycles`.

Ports (the tile integrator's contract)
--------------------------------------
``cmd``   ``In(stream.Signature(CeCommand))``: ``{func, args}``; accepted only when idle.
``busy``  ``Out(1)``: high from the accepted command until the last result is written.
``rd``    ``In(ReadPort.Signature(addr_width, word_bits))``: scratchpad read port (one-cycle
          latency).
``wr``    ``In(WritePort.Signature(addr_width, word_bits, granularity=8))``: scratchpad
          write port.

The scratchpad word is ``word_bits = 8 * ic_lanes`` bits (``ic_lanes`` bytes); port
addresses are word addresses, EXEC addresses are byte addresses (word-aligned).

Data layouts (bytes in the scratchpad; :mod:`accelpool.spec.ce_layout` packs and unpacks them)
----------------------------------------------------------------------------------
- input ``x[C, H, W]`` (INT8): HWC, channels padded to ``ICB = ceil(C / ic_lanes)`` blocks:
  byte ``((y * W + x) * ICB + cb) * ic_lanes + i`` holds channel ``cb * ic_lanes + i``.
  Padding channels may hold anything (the unit masks them).
- weights ``w[M, C, kH, kW]`` (INT8): channel-blocked, one word per (output channel,
  tap, input block): word ``(((ob * kH + ky) * kW + kx) * ICB + cb) * oc_lanes + o`` holds
  ``w[ob * oc_lanes + o, cb * ic_lanes + i, ky, kx]`` in byte ``i``; missing channels zero.
- bias ``b[M]`` (INT32, little-endian): ``OCB * oc_lanes`` values of 4 bytes, missing
  channels zero (``OCB = ceil(M / oc_lanes)``).
- output ``y[M, oH, oW]``: HWC with channels padded to ``OCB`` blocks of ``oc_lanes``:
  element ``((p * OCB + ob) * oc_lanes + o)`` with ``p = oy * oW + ox``, one byte each (INT8,
  requantized) or four bytes little-endian (INT32). Padding channels hold unspecified
  values. With ``oc_lanes == ic_lanes`` an INT8 output is directly the input layout of
  the next layer.

Limits the compiler must respect (:meth:`accelpool.spec.ce_layout.ConvShape.check`): kernels 1..5,
stride 1 or 2 (both axes), pads below the kernel extent, H, W, C, M < 1024, and
``kernel_h * kernel_w * ceil(C / ic_lanes) <= weight_depth`` (256: e.g. 5x5 up to 80 input
channels, 3x3 up to 224); split larger layers along C (INT32 partial sums) or M. INT8 or
UINT8 activations (``x_unsigned``), INT8 weights, INT8 or UINT8 output (``y_unsigned``),
per-tensor zero points and requantization scale (the
``multiplier``/``shift`` of :func:`accelpool.spec.golden.numerics.quantize_multiplier`).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec import isa
from accelpool.spec.config import UnitKind
from accelpool.spec.units.ce import (MAX_KERNEL, WEIGHT_DEPTH, EXTENT_BITS, CHANNEL_BITS, CeArgs,
                                     CeCommand)

from .arith.requant import Requantizer
from .params import check_int
from .units import UNIT_RTL

__all__ = ["ConvEngine"]

def _check_int(name: str, value, lo: int, hi: int | None = None, *, power_of_two=False):
    check_int(value, name)
    if value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"{name} must be {rng}, not {value!r}")
    if power_of_two and value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value!r}")


class ConvEngine(wiring.Component):
    """The convolution engine.

    Parameters
    ----------
    oc_lanes : int
        Output channels computed in parallel; a multiple of ``ic_lanes``.
    ic_lanes : int
        Input channels reduced in parallel (a power of two); also the word size in bytes.
    addr_width : int
        Scratchpad word-address width.
    weight_depth : int
        Weight-buffer entries: the largest ``kernel_h * kernel_w * ceil(c_in / ic_lanes)``.
    out_fifo_depth : int
        Finished pixels buffered ahead of the writer.
    """

    def __init__(self, *, oc_lanes: int = 8, ic_lanes: int = 8, addr_width: int = 13,
                 weight_depth: int = WEIGHT_DEPTH, out_fifo_depth: int = 8):
        _check_int("Input-channel lanes", ic_lanes, 1, 64, power_of_two=True)
        _check_int("Output-channel lanes", oc_lanes, 1, 64)
        if oc_lanes % ic_lanes:
            raise ValueError(f"Output-channel lanes must be a multiple of the input-channel "
                             f"lanes ({ic_lanes}), not {oc_lanes!r}")
        _check_int("Address width", addr_width, 2, isa.SPAD_ADDR_BITS)
        _check_int("Weight depth", weight_depth, 1, 1 << 16)
        _check_int("Output FIFO depth", out_fifo_depth, 2, 64)
        self._ol, self._il = oc_lanes, ic_lanes
        self._addr_width = addr_width
        self._weight_depth = weight_depth
        self._out_fifo_depth = out_fifo_depth
        wb = 8 * ic_lanes
        super().__init__({
            "cmd": In(stream.Signature(CeCommand)),
            "busy": Out(1),
            "rd": In(memory.ReadPort.Signature(addr_width=addr_width, shape=wb)),
            "wr": In(memory.WritePort.Signature(addr_width=addr_width, shape=wb, granularity=8)),
        })

    @classmethod
    def from_tile(cls, tile) -> "ConvEngine":
        """The CE of a pool-config tile: its lanes, and a port addressing its whole scratchpad."""
        words = tile.scratchpad_bytes // tile["ic_lanes"]
        return cls(oc_lanes=tile["oc_lanes"], ic_lanes=tile["ic_lanes"],
                   addr_width=max(2, (words - 1).bit_length()))

    oc_lanes = property(lambda self: self._ol)
    ic_lanes = property(lambda self: self._il)
    addr_width = property(lambda self: self._addr_width)
    weight_depth = property(lambda self: self._weight_depth)
    out_fifo_depth = property(lambda self: self._out_fifo_depth)
    word_bits = property(lambda self: 8 * self._il)
    word_bytes = property(lambda self: self._il)
    #: The ``cmd`` payload layout (``{func, args}``), as the other units name it.
    cmd_layout = CeCommand

    def elaborate(self, platform):
        m = Module()
        n = self._command_registers()
        self._weight_buffer(m, n)
        self._pipeline_registers(m, n)
        self._control_fsm(m, n)
        self._weight_loader(m, n)
        self._window_walker(m, n)
        self._operand_reads(m, n)
        self._multiply_reduce(m, n)
        self._accumulate(m, n)
        self._output_fifo(m, n)
        self._writer(m, n)
        return m

    def _command_registers(self):
        """The latched EXEC arguments and the shape registers SETUP derives from them, in the
        namespace of signals and sizes the other sub-blocks share (returned)."""
        OL, IL, AW = self._ol, self._il, self._addr_width
        n = SimpleNamespace(OL=OL, IL=IL, AW=AW, WB=8 * IL)
        n.wshift = (IL - 1).bit_length()           # byte -> word address
        n.out_words_i8 = OL // IL                   # words per pixel block, INT8 output
        n.out_words_i32 = 4 * OL // IL              # ... INT32 output; also the bias block
        n.EB = max(1, (self._weight_depth - 1).bit_length())

        n.args = Signal(CeArgs)
        # Derived shape, registered in SETUP.
        n.oh = Signal(EXTENT_BITS + 1)
        n.ow = Signal(EXTENT_BITS + 1)
        n.icb_n = Signal(CHANNEL_BITS)              # ceil(C / IL)
        n.ocb_n = Signal(CHANNEL_BITS)              # ceil(M / OL)
        n.taps = Signal(range(MAX_KERNEL * MAX_KERNEL + 1))
        n.entries = Signal(n.EB + 1)                # taps * ICB
        n.in_base = Signal(AW)
        n.w_base = Signal(AW)
        n.b_base = Signal(AW)
        n.out_base = Signal(AW)
        n.out_words = Signal(range(n.out_words_i32 + 1))
        n.ocb = Signal(CHANNEL_BITS)                # current output-channel block
        return n

    def _weight_buffer(self, m, n):
        """The weight buffer (one row of OL x IL bytes per (tap, input block)) and the
        registers of the weight/bias loader that fills it."""
        OL, WB, AW, EB = n.OL, n.WB, n.AW, n.EB
        m.submodules.wbuf = wbuf = memory.Memory(shape=OL * WB, depth=self._weight_depth, init=[])
        n.wbuf_w = wbuf.write_port(granularity=WB)
        n.wbuf_r = wbuf.read_port()

        # Read-port users: weight/bias loader and the compute walker.
        n.ld_addr = Signal(AW)
        n.ld_count = Signal(EB + 8)                 # words left to issue
        n.ld_pending = Signal()                     # a load read issued last cycle
        n.ld_lane = Signal(range(OL))               # where the arriving word goes
        n.ld_entry = Signal(EB)
        n.ld_bias = Signal()                        # loading bias words, not weights
        n.b_index = Signal(range(n.out_words_i32))
        n.bias_reg = Signal(OL * 32)

    def _pipeline_registers(self, m, n):
        """The output-FIFO credit counter and the valid, flag and data registers of the
        compute pipeline stages s0..s4, with ``pipe_busy`` while any stage holds work."""
        OL, IL, EB = n.OL, n.IL, n.EB
        # Output FIFO credits.
        n.credits = Signal(range(self._out_fifo_depth + 1))
        n.take_credit = Signal()
        n.give_credit = Signal()

        # s0: the loop counters
        n.s0_run = Signal()
        n.oy = Signal(EXTENT_BITS + 1)
        n.ox = Signal(EXTENT_BITS + 1)
        n.ky = Signal(range(MAX_KERNEL))
        n.kx = Signal(range(MAX_KERNEL))
        n.cb = Signal(CHANNEL_BITS)
        n.entry = Signal(EB)
        n.s0_first = Signal()
        n.s0_last_elem = Signal()                   # last element of the pixel
        n.s0_done = Signal()                        # last element of the last pixel
        n.s0_fire = Signal()

        # s1: addresses
        n.s1_valid = Signal()
        n.s1_iy = Signal(signed(EXTENT_BITS + 3))
        n.s1_ix = Signal(signed(EXTENT_BITS + 3))
        n.s1_cb = Signal(CHANNEL_BITS)
        n.s1_entry = Signal(EB)
        n.s1_first = Signal()
        n.s1_last = Signal()
        # s2: operands arrive
        n.s2_valid = Signal()
        n.s2_inside = Signal()
        n.s2_nlanes = Signal(range(IL + 1))         # valid input-channel lanes
        n.s2_first = Signal()
        n.s2_last = Signal()
        # s3: per-output-channel sums
        n.s3_valid = Signal()
        n.s3_first = Signal()
        n.s3_last = Signal()
        n.s3_sum = Signal(data.ArrayLayout(signed(32), OL))
        n.acc = Signal(data.ArrayLayout(signed(32), OL))
        # s4: a finished pixel
        n.s4_valid = Signal()
        n.s4_acc = Signal(data.ArrayLayout(signed(32), OL))

        n.pipe_busy = Signal()
        m.d.comb += n.pipe_busy.eq(n.s1_valid | n.s2_valid | n.s3_valid | n.s4_valid)

    def _control_fsm(self, m, n):
        """The command latch and the control FSM: SETUP derives the shape, then per
        output-channel block LOAD_W / LOAD_B, COMPUTE and DRAIN, and FINISH waits for the writer."""
        OL, IL, wshift = n.OL, n.IL, n.wshift
        args = n.args
        # `idle` is a register rather than a decode of the FSM state: Icarus never evaluates
        # a combinational block whose only input keeps its initial value, which would
        # leave `cmd.ready` X until the first command.
        idle = Signal(init=1)
        m.d.comb += self.cmd.ready.eq(idle)
        with m.FSM(name="ce"):
            with m.State("IDLE"):
                with m.If(self.cmd.valid):
                    m.d.sync += idle.eq(0)
                    m.d.sync += args.eq(self.cmd.payload.args)
                    m.next = "SETUP"
            with m.State("SETUP"):
                a = args
                s = a.stride == 2
                m.d.sync += [
                    n.oh.eq(((a.height + a.pad_top + a.pad_bottom - a.kernel_h) >> s) + 1),
                    n.ow.eq(((a.width + a.pad_left + a.pad_right - a.kernel_w) >> s) + 1),
                    n.icb_n.eq((a.c_in + IL - 1) >> wshift),
                    n.ocb_n.eq((a.c_out + OL - 1) // OL),
                    n.taps.eq(a.kernel_h * a.kernel_w),
                    n.in_base.eq(a.in_addr >> wshift),
                    n.w_base.eq(a.w_addr >> wshift),
                    n.b_base.eq(a.bias_addr >> wshift),
                    n.out_base.eq(a.out_addr >> wshift),
                    n.out_words.eq(Mux(a.requant, n.out_words_i8, n.out_words_i32)),
                    n.ocb.eq(0),
                    n.credits.eq(self._out_fifo_depth),
                ]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += n.entries.eq(n.taps * n.icb_n)
                m.next = "BLOCK"
            with m.State("BLOCK"):
                # Start an output-channel block: load its weights.
                m.d.sync += [
                    n.ld_addr.eq(n.w_base + n.ocb * n.entries * OL),
                    n.ld_count.eq(n.entries * OL),
                    n.ld_lane.eq(0), n.ld_entry.eq(0), n.ld_bias.eq(0),
                ]
                m.next = "LOAD_W"
            with m.State("LOAD_W"):
                with m.If((n.ld_count == 0) & ~n.ld_pending):
                    with m.If(args.bias):
                        m.d.sync += [n.ld_addr.eq(n.b_base + n.ocb * n.out_words_i32),
                                     n.ld_count.eq(n.out_words_i32), n.ld_bias.eq(1)]
                        m.next = "LOAD_B"
                    with m.Else():
                        m.next = "COMPUTE"
            with m.State("LOAD_B"):
                with m.If((n.ld_count == 0) & ~n.ld_pending):
                    m.next = "COMPUTE"
            with m.State("COMPUTE"):
                m.d.comb += n.s0_run.eq(1)
                with m.If(n.s0_fire & n.s0_done):
                    m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~n.pipe_busy):
                    with m.If(n.ocb + 1 == n.ocb_n):
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += n.ocb.eq(n.ocb + 1)
                        m.next = "BLOCK"
            with m.State("FINISH"):
                with m.If(n.credits == self._out_fifo_depth):
                    m.d.sync += idle.eq(1)
                    m.next = "IDLE"
        fsm_idle = Signal()
        m.d.comb += fsm_idle.eq(self.cmd.ready)
        m.d.comb += self.busy.eq(~fsm_idle)

    def _weight_loader(self, m, n):
        """The weight/bias loader: issues scratchpad reads while words are left and lands
        each arriving word in its weight-buffer lane or in the bias register."""
        OL, WB = n.OL, n.WB
        ld_count, ld_pending, ld_lane, ld_entry = n.ld_count, n.ld_pending, n.ld_lane, n.ld_entry
        ld_bias, b_index, wbuf_w = n.ld_bias, n.b_index, n.wbuf_w
        n.ld_issue = ld_issue = Signal(name="ld_issue")
        m.d.comb += ld_issue.eq(ld_count != 0)
        m.d.sync += ld_pending.eq(ld_issue)
        with m.If(ld_issue):
            m.d.sync += [n.ld_addr.eq(n.ld_addr + 1), ld_count.eq(ld_count - 1)]
        # Destination of the word arriving this cycle; advance when it lands.
        m.d.comb += [
            wbuf_w.addr.eq(ld_entry),
            wbuf_w.data.eq(self.rd.data.replicate(OL)),
            wbuf_w.en.eq(Mux(ld_pending & ~ld_bias, 1 << ld_lane, 0)),
        ]
        with m.If(ld_pending):
            with m.If(ld_bias):
                m.d.sync += [n.bias_reg.word_select(b_index, WB).eq(self.rd.data),
                             b_index.eq(b_index + 1)]
            with m.Elif(ld_lane == OL - 1):
                m.d.sync += [ld_lane.eq(0), ld_entry.eq(ld_entry + 1)]
            with m.Else():
                m.d.sync += ld_lane.eq(ld_lane + 1)
        with m.If(~ld_pending & (ld_count == 0)):
            m.d.sync += b_index.eq(0)

    def _window_walker(self, m, n):
        """Pipeline stage s0: the loop counters walking (oy, ox, ky, kx, cb), gated by the
        output-FIFO credits, and the input-window coordinates of each step into s1."""
        a = n.args
        oy, ox, ky, kx, cb, entry = n.oy, n.ox, n.ky, n.kx, n.cb, n.entry
        s0_run, s0_fire, s0_first, s0_last_elem = n.s0_run, n.s0_fire, n.s0_first, n.s0_last_elem
        icb_n, oh, ow = n.icb_n, n.oh, n.ow
        m.d.comb += [
            s0_first.eq((ky == 0) & (kx == 0) & (cb == 0)),
            s0_last_elem.eq((ky == a.kernel_h - 1) & (kx == a.kernel_w - 1) & (cb == icb_n - 1)),
            n.s0_done.eq(s0_last_elem & (oy == oh - 1) & (ox == ow - 1)),
            n.take_credit.eq(s0_fire & s0_first),
            s0_fire.eq(s0_run & (~s0_first | (n.credits != 0))),
        ]
        with m.If(~s0_run):
            m.d.sync += [oy.eq(0), ox.eq(0), ky.eq(0), kx.eq(0), cb.eq(0), entry.eq(0)]
        with m.Elif(s0_fire):
            m.d.sync += [cb.eq(cb + 1), entry.eq(entry + 1)]
            with m.If(cb == icb_n - 1):
                m.d.sync += [cb.eq(0), kx.eq(kx + 1)]
                with m.If(kx == a.kernel_w - 1):
                    m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                    with m.If(ky == a.kernel_h - 1):
                        m.d.sync += [ky.eq(0), entry.eq(0), ox.eq(ox + 1)]
                        with m.If(ox == ow - 1):
                            m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
        base_y = Signal(signed(EXTENT_BITS + 3))
        base_x = Signal(signed(EXTENT_BITS + 3))
        m.d.comb += [base_y.eq(Mux(a.stride == 2, oy << 1, oy) + ky),
                     base_x.eq(Mux(a.stride == 2, ox << 1, ox) + kx)]
        m.d.sync += [
            n.s1_valid.eq(s0_fire),
            n.s1_iy.eq(base_y - a.pad_top),
            n.s1_ix.eq(base_x - a.pad_left),
            n.s1_cb.eq(cb),
            n.s1_entry.eq(entry),
            n.s1_first.eq(s0_first),
            n.s1_last.eq(s0_last_elem),
        ]

    def _operand_reads(self, m, n):
        """Pipeline stage s1: the input-word address of the window position, padding and
        channel-count masks, and the scratchpad and weight-buffer reads (shared with the loader)."""
        IL, AW, wshift = n.IL, n.AW, n.wshift
        a = n.args
        s1_iy, s1_ix, s1_cb, s1_valid = n.s1_iy, n.s1_ix, n.s1_cb, n.s1_valid
        inside = Signal()
        m.d.comb += inside.eq((s1_iy >= 0) & (s1_iy < a.height) & (s1_ix >= 0) & (s1_ix < a.width))
        in_word = Signal(AW)
        m.d.comb += in_word.eq(n.in_base + ((s1_iy.as_unsigned() * a.width + s1_ix.as_unsigned())
                                            * n.icb_n + s1_cb))
        left = Signal(signed(CHANNEL_BITS + 8))
        m.d.comb += left.eq(a.c_in - (s1_cb << wshift))
        m.d.comb += [
            self.rd.addr.eq(Mux(n.s0_run | s1_valid, in_word, n.ld_addr)),
            self.rd.en.eq(Mux(n.s0_run | s1_valid, s1_valid & inside, n.ld_issue)),
            n.wbuf_r.addr.eq(n.s1_entry),
            n.wbuf_r.en.eq(1),
        ]
        m.d.sync += [
            n.s2_valid.eq(s1_valid),
            n.s2_inside.eq(inside),
            n.s2_nlanes.eq(Mux(left >= IL, IL, left)),
            n.s2_first.eq(n.s1_first),
            n.s2_last.eq(n.s1_last),
        ]

    def _multiply_reduce(self, m, n):
        """Pipeline stage s2: the OL x IL zero-point-corrected INT8 multipliers and the OL
        adder trees, registered into the per-output-channel sums of s3."""
        OL, IL = n.OL, n.IL
        a = n.args
        xs = []
        for i in range(IL):
            xv = Signal(signed(9), name=f"x{i}")
            raw = self.rd.data[8 * i:8 * i + 8]
            byte = Mux(a.x_unsigned, raw.as_unsigned(), raw.as_signed())
            m.d.comb += xv.eq(Mux(n.s2_inside & (n.s2_nlanes > i), byte - a.x_zero_point, 0))
            xs.append(xv)
        for o in range(OL):
            prods = []
            for i in range(IL):
                wv = n.wbuf_r.data[(o * IL + i) * 8:(o * IL + i) * 8 + 8].as_signed() - a.w_zero_point
                prods.append(xs[i] * wv)
            while len(prods) > 1:
                prods = [prods[j] + prods[j + 1] if j + 1 < len(prods) else prods[j]
                         for j in range(0, len(prods), 2)]
            m.d.sync += n.s3_sum[o].eq(prods[0])
        m.d.sync += [n.s3_valid.eq(n.s2_valid), n.s3_first.eq(n.s2_first), n.s3_last.eq(n.s2_last)]

    def _accumulate(self, m, n):
        """Pipeline stage s3: the OL INT32 accumulators, and the bias added to a finished
        pixel as it enters s4."""
        OL = n.OL
        a = n.args
        s3_sum, s3_valid, s3_last, acc, bias_reg = n.s3_sum, n.s3_valid, n.s3_last, n.acc, n.bias_reg
        total = Signal(data.ArrayLayout(signed(32), OL))
        for o in range(OL):
            m.d.comb += total[o].eq(Mux(n.s3_first, s3_sum[o], acc[o] + s3_sum[o]))
        with m.If(s3_valid):
            m.d.sync += acc.eq(total)
        m.d.sync += n.s4_valid.eq(s3_valid & s3_last)
        with m.If(s3_valid & s3_last):
            for o in range(OL):
                m.d.sync += n.s4_acc[o].eq(total[o] + Mux(a.bias, bias_reg.word_select(o, 32).as_signed(), 0))

    def _output_fifo(self, m, n):
        """Pipeline stage s4: requantization of the finished pixel into the output FIFO."""
        packed, packed_valid = self._requantize(m, n.s4_acc, n.s4_valid, n.args)
        m.submodules.ofifo = ofifo = fifo.SyncFIFOBuffered(width=n.OL * 32,
                                                           depth=self._out_fifo_depth)
        m.d.comb += [ofifo.w_data.eq(packed), ofifo.w_en.eq(packed_valid)]
        n.ofifo = ofifo

    def _writer(self, m, n):
        """The writer draining the output FIFO to the scratchpad word by word, and the
        credit counter that bounds the pixels in flight."""
        IL, WB = n.IL, n.WB
        ofifo, out_words, ocb_n, credits = n.ofifo, n.out_words, n.ocb_n, n.credits
        take_credit, give_credit = n.take_credit, n.give_credit
        wk = Signal(range(n.out_words_i32))
        wpix = Signal(2 * EXTENT_BITS + 2)
        wocb = Signal(CHANNEL_BITS)
        npix = Signal(2 * EXTENT_BITS + 2)
        m.d.comb += npix.eq(n.oh * n.ow)
        with m.If(~self.busy):
            m.d.sync += [wk.eq(0), wpix.eq(0), wocb.eq(0)]
        wlast = Signal()
        m.d.comb += [
            wlast.eq(wk == out_words - 1),
            self.wr.addr.eq(n.out_base + (wpix * ocb_n + wocb) * out_words + wk),
            self.wr.data.eq(ofifo.r_data.word_select(wk, WB)),
            self.wr.en.eq(ofifo.r_rdy.replicate(IL)),
            ofifo.r_en.eq(wlast),
            give_credit.eq(ofifo.r_rdy & wlast),
        ]
        with m.If(ofifo.r_rdy):
            m.d.sync += wk.eq(wk + 1)
            with m.If(wlast):
                m.d.sync += [wk.eq(0), wpix.eq(wpix + 1)]
                with m.If(wpix == npix - 1):
                    m.d.sync += [wpix.eq(0), wocb.eq(wocb + 1)]
        with m.If(take_credit & ~give_credit):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(give_credit & ~take_credit):
            m.d.sync += credits.eq(credits + 1)

    def _requantize(self, m, acc, valid, a):
        """The finished pixel as the FIFO stores it: INT32 lanes, or INT8 lanes in the low bytes.

        One shared :class:`accelpool.hw.arith.requant.Requantizer` per output-channel lane. UINT8 output
        uses ``saturate_[0,255](v) = saturate_[-128,127](v - 128) + 128``: the zero point is
        moved down by 128 and the sign bit of the INT8 result flipped.
        """
        OL = self._ol
        zp = Signal(signed(10))
        m.d.comb += zp.eq(Mux(a.y_unsigned, a.y_zero_point - 128, a.y_zero_point))
        ys = []
        for o in range(OL):
            rq = Requantizer()
            m.submodules[f"requant{o}"] = rq
            m.d.comb += [rq.acc.eq(acc[o]), rq.multiplier.eq(a.multiplier), rq.shift.eq(a.shift),
                         rq.zero_point.eq(zp)]
            ys.append(rq.y.as_unsigned() ^ Mux(a.y_unsigned, 0x80, 0))
        packed = Signal(OL * 32)
        m.d.comb += packed.eq(Mux(a.requant, Cat(*ys), acc.as_value()))
        return packed, valid


UNIT_RTL.register(UnitKind.CE, ConvEngine.from_tile)
