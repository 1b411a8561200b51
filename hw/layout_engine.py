"""The memory tile's layout engine (MLE): IM2COL and TRANSPOSE on the global memory.

The EXEC functions of :class:`~accelpool.spec.config.UnitKind.MEMORY`. The engine reads and writes the global memory directly through its own read
and write port (words of one flit, byte enables), never through the network. All
addresses are byte addresses, element-aligned; pitches are in bytes.

IM2COL (source ``x[channels, height, width]``, row ``(c, y)`` at
``src_addr + (c * height + y) * src_pitch``)
    destination row ``r = (c * kernel_h + i) * kernel_w + j`` at ``dst_addr + r * dst_pitch``,
    element ``q = oy * out_w + ox`` at ``+ q * elem``, value
    ``x[c, oy * stride_h + i - pad_top, ox * stride_w + j - pad_left]`` or, out of range,
    ``pad_value`` (its low ``elem`` bytes). ``out_h`` and ``out_w`` are given, not derived.
TRANSPOSE (source ``rows x cols``, row ``i`` at ``src_addr + i * src_pitch``)
    destination row ``j`` at ``dst_addr + j * dst_pitch`` holds source column ``j``:
    element ``i`` is source element ``(i, j)``.

Only the destination's real elements are written (byte enables): the bytes between the
end of a destination row and the next row (row padding) are untouched. Source and
destination must not overlap; ``elem_log2`` 3 is read as 2 (4-byte elements).

Structure and timing
--------------------
Both functions run one loop nest, channel ``c`` / kernel row ``i`` / kernel column ``j``
(one destination row each) / output row ``oy`` / output column ``ox``; TRANSPOSE is the
nest with one channel, one kernel row, ``cols`` kernel columns, ``rows`` output rows,
one output column and stride 1, no padding. Every address is kept incrementally (a base
per loop level, no multiplier in the loop). The cycle after acceptance (SETUP) computes
the strides that need a product (``stride_h * src_pitch``, ``height * src_pitch``,
``pad_top * src_pitch``); then one destination element issues per cycle:

- cycle k: the source word is read (no read for a padding element);
- cycle k + 1: the element is taken out of the word and merged into the destination word
  register, which is written with its byte enables when the element is the last of its
  word or of its destination row.

After the last element one cycle (DRAIN) writes the last word. So an EXEC of ``n``
destination elements keeps ``busy`` high for exactly ``n + 2`` cycles after the cycle
it is accepted in (:func:`accelpool.sched.cost.layout.cycles`): ``n = channels * kernel_h *
kernel_w * out_h * out_w`` (IM2COL), ``rows * cols`` (TRANSPOSE).

Ports
-----
``cmd``   ``In(stream.Signature(MemCommand))``: ``{func, args}``, accepted when idle.
``busy``  ``Out(1)``: high from the cycle after acceptance until the last word is written.
``rd``    ``In(ReadPort.Signature(addr_width, word_bits))``: one-cycle latency.
``wr``    ``In(WritePort.Signature(addr_width, word_bits, granularity=8))``.

Word addresses are the byte address shifted by log2(word bytes); bits beyond
``addr_width`` are ignored (the memory wraps), as the memory tile's network side does.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.units.layout import MemFunc, MemArgs, MemCommand

from .params import check_int

__all__ = ["LayoutEngine"]


_PTR = 32                  # byte address arithmetic is modulo 2**32
_COORD = signed(15)        # source row / column of the element (may be negative: padding)


class LayoutEngine(wiring.Component):
    """IM2COL and TRANSPOSE between two regions of a flit-word memory.

    Parameters
    ----------
    word_bits : int
        Memory word width (the flit): a power of two from 32 to 512 bits.
    addr_width : int
        Word address width of the memory.
    """

    def __init__(self, *, word_bits: int, addr_width: int):
        check_int(word_bits, "Layout engine word width")
        if not 32 <= word_bits <= 512 or word_bits & (word_bits - 1):
            raise ValueError(f"Layout engine word width must be a power of two from 32 to "
                             f"512 bits, not {word_bits!r}")
        check_int(addr_width, "Layout engine address width")
        if not 1 <= addr_width <= _PTR:
            raise ValueError(f"Layout engine address width must be between 1 and {_PTR}, "
                             f"not {addr_width!r}")
        self._word_bits = word_bits
        self._addr_width = addr_width
        super().__init__({
            "cmd": In(stream.Signature(MemCommand)),
            "busy": Out(1),
            "rd": In(memory.ReadPort.Signature(addr_width=addr_width, shape=word_bits)),
            "wr": In(memory.WritePort.Signature(addr_width=addr_width, shape=word_bits,
                                                granularity=8)),
        })

    word_bits = property(lambda self: self._word_bits)
    addr_width = property(lambda self: self._addr_width)

    def elaborate(self, platform):
        m = Module()
        func = Signal(MemFunc)
        args = Signal(MemArgs)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [func.eq(self.cmd.payload.func), args.eq(self.cmd.payload.args)]
        s = self._registers()
        v = self._setup_values(m, func, args)
        self._issue(m, s)
        self._control_fsm(m, s, v)
        self._merge_stage(m, s)
        return m

    def _registers(self) -> SimpleNamespace:
        """The loop-nest parameters (set in SETUP), the loop state and the stage-1 registers;
        the namespace the sub-blocks below share."""
        wb = self._word_bits // 8
        shift = wb.bit_length() - 1          # log2(word bytes)
        aw = self._addr_width

        # ---- loop-nest parameters (set in SETUP) ----------------------------------------
        e_log2 = Signal(2)
        n_c, n_ki, n_kj = Signal(10), Signal(3), Signal(12)
        n_oy, n_ox = Signal(12), Signal(10)
        lim_y, lim_x = Signal(12), Signal(12)      # source height / width
        sh, sw = Signal(2), Signal(2)
        pt, pl = Signal(3), Signal(3)
        pitch, dst_pitch = Signal(20), Signal(20)
        sh_pitch = Signal(22)                      # stride_h * src_pitch
        h_pitch = Signal(_PTR)                     # height * src_pitch (one channel)
        pt_pitch = Signal(23)                      # pad_top * src_pitch
        pl_e = Signal(5)                           # pad_left * elem
        sw_e = Signal(5)                           # stride_w * elem
        ebytes = Signal(3)                         # elem
        pad_value = Signal(32)

        # ---- loop state -------------------------------------------------------------------
        c, ki, kj = Signal.like(n_c), Signal.like(n_ki), Signal.like(n_kj)
        oy, ox = Signal.like(n_oy), Signal.like(n_ox)
        chan_base = Signal(_PTR)   # source row (c, 0)
        irow_base = Signal(_PTR)   # source row (c, i - pad_top)
        row_base = Signal(_PTR)    # ... + (j - pad_left) * elem: element (oy=0, ox=0)
        oy_base = Signal(_PTR)     # ... + oy * stride_h * pitch: element (oy, ox=0)
        ptr = Signal(_PTR)         # the element's source byte address
        y_row, x_row = Signal(_COORD), Signal(_COORD)   # i - pad_top, j - pad_left
        y, x = Signal(_COORD), Signal(_COORD)           # the element's source coordinate
        dst_row = Signal(_PTR)     # destination row start
        dst_ptr = Signal(_PTR)     # the element's destination byte address

        # ---- stage 1: merge into the destination word ------------------------------------
        s1_valid, s1_pad, s1_flush = Signal(), Signal(), Signal()
        s1_src_off, s1_dst_off = Signal(shift), Signal(shift)
        s1_word = Signal(aw)
        acc = Signal(8 * wb)
        acc_en = Signal(wb)
        return SimpleNamespace(
            wb=wb, shift=shift, aw=aw, e_log2=e_log2, n_c=n_c, n_ki=n_ki, n_kj=n_kj,
            n_oy=n_oy, n_ox=n_ox, lim_y=lim_y, lim_x=lim_x, sh=sh, sw=sw, pt=pt, pl=pl,
            pitch=pitch, dst_pitch=dst_pitch, sh_pitch=sh_pitch, h_pitch=h_pitch,
            pt_pitch=pt_pitch, pl_e=pl_e, sw_e=sw_e, ebytes=ebytes, pad_value=pad_value,
            c=c, ki=ki, kj=kj, oy=oy, ox=ox, chan_base=chan_base, irow_base=irow_base,
            row_base=row_base, oy_base=oy_base, ptr=ptr, y_row=y_row, x_row=x_row, y=y, x=x,
            dst_row=dst_row, dst_ptr=dst_ptr, s1_valid=s1_valid, s1_pad=s1_pad,
            s1_flush=s1_flush, s1_src_off=s1_src_off, s1_dst_off=s1_dst_off, s1_word=s1_word,
            acc=acc, acc_en=acc_en)

    def _setup_values(self, m, func, args) -> SimpleNamespace:
        """The command's loop nest: IM2COL with pad/stride fields as given; TRANSPOSE as the
        nest documented above. ``zero``: the nest has no element."""
        is_tr = func == MemFunc.TRANSPOSE
        a = args
        set_sh = Mux(is_tr, 1, a.stride_h)
        set_pt = Mux(is_tr, 0, a.pad_top)
        set_pl = Mux(is_tr, 0, a.pad_left)
        set_e = Mux(a.elem_log2 == 3, 2, a.elem_log2)
        set_h = Mux(is_tr, a.rows, a.height)
        zero = Signal()
        m.d.comb += zero.eq(Mux(is_tr, (a.rows == 0) | (a.cols == 0),
                                (a.channels == 0) | (a.kernel_h == 0) | (a.kernel_w == 0)
                                | (a.out_h == 0) | (a.out_w == 0)))
        set_pt_pitch = Signal(23)
        m.d.comb += set_pt_pitch.eq(set_pt * a.src_pitch)
        set_pl_e = Signal(5)
        m.d.comb += set_pl_e.eq(set_pl << set_e)
        start_irow = Signal(_PTR)
        m.d.comb += start_irow.eq(a.src_addr - set_pt_pitch)
        return SimpleNamespace(is_tr=is_tr, a=a, set_sh=set_sh, set_pt=set_pt, set_pl=set_pl,
                               set_e=set_e, set_h=set_h, zero=zero, set_pt_pitch=set_pt_pitch,
                               set_pl_e=set_pl_e, start_irow=start_irow)

    def _issue(self, m, s):
        """The element issued this cycle (RUN): in the source or padding, last of which loop
        levels, last of its destination word; its source word's read."""
        inside = Signal()
        m.d.comb += inside.eq((s.y >= 0) & (s.y < s.lim_y) & (s.x >= 0) & (s.x < s.lim_x))
        last_ox, last_oy = Signal(), Signal()
        last_kj, last_ki, last_c = Signal(), Signal(), Signal()
        m.d.comb += [last_ox.eq(s.ox == s.n_ox - 1), last_oy.eq(s.oy == s.n_oy - 1),
                     last_kj.eq(s.kj == s.n_kj - 1), last_ki.eq(s.ki == s.n_ki - 1),
                     last_c.eq(s.c == s.n_c - 1)]
        row_end = Signal()
        m.d.comb += row_end.eq(last_ox & last_oy)
        dst_off = s.dst_ptr[:s.shift]
        word_end = Signal()
        m.d.comb += word_end.eq(dst_off + s.ebytes == s.wb)
        running = Signal()
        m.d.comb += [
            self.rd.addr.eq(s.ptr[s.shift:s.shift + s.aw]),
            self.rd.en.eq(running & inside),
        ]
        s.inside, s.last_ox, s.last_oy = inside, last_ox, last_oy
        s.last_kj, s.last_ki, s.last_c = last_kj, last_ki, last_c
        s.row_end, s.dst_off, s.word_end, s.running = row_end, dst_off, word_end, running

    def _control_fsm(self, m, s, v):
        """IDLE, SETUP (the nest's parameters and first element), RUN (one element a cycle
        into stage 1) and DRAIN (stage 1's last write)."""
        a = v.a
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    s.e_log2.eq(v.set_e), s.ebytes.eq(Const(1, 3) << v.set_e),
                    s.n_c.eq(Mux(v.is_tr, 1, a.channels)), s.n_ki.eq(Mux(v.is_tr, 1, a.kernel_h)),
                    s.n_kj.eq(Mux(v.is_tr, a.cols, a.kernel_w)),
                    s.n_oy.eq(Mux(v.is_tr, a.rows, a.out_h)), s.n_ox.eq(Mux(v.is_tr, 1, a.out_w)),
                    s.lim_y.eq(v.set_h), s.lim_x.eq(Mux(v.is_tr, a.cols, a.width)),
                    s.sh.eq(v.set_sh), s.sw.eq(Mux(v.is_tr, 0, a.stride_w)),
                    s.pt.eq(v.set_pt), s.pl.eq(v.set_pl),
                    s.pitch.eq(a.src_pitch), s.dst_pitch.eq(a.dst_pitch),
                    s.sh_pitch.eq(v.set_sh * a.src_pitch),
                    s.h_pitch.eq(v.set_h * a.src_pitch), s.pt_pitch.eq(v.set_pt_pitch),
                    s.pl_e.eq(v.set_pl_e),
                    s.sw_e.eq(Mux(v.is_tr, 0, a.stride_w) << v.set_e),
                    s.pad_value.eq(a.pad_value),
                    s.c.eq(0), s.ki.eq(0), s.kj.eq(0), s.oy.eq(0), s.ox.eq(0),
                    s.chan_base.eq(a.src_addr), s.irow_base.eq(v.start_irow),
                    s.row_base.eq(v.start_irow - v.set_pl_e),
                    s.oy_base.eq(v.start_irow - v.set_pl_e),
                    s.ptr.eq(v.start_irow - v.set_pl_e),
                    s.y_row.eq(-v.set_pt), s.x_row.eq(-v.set_pl),
                    s.y.eq(-v.set_pt), s.x.eq(-v.set_pl),
                    s.dst_row.eq(a.dst_addr), s.dst_ptr.eq(a.dst_addr),
                ]
                with m.If(v.zero):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [self.busy.eq(1), s.running.eq(1)]
                m.d.sync += [
                    s.s1_valid.eq(1), s.s1_pad.eq(~s.inside),
                    s.s1_flush.eq(s.row_end | s.word_end),
                    s.s1_src_off.eq(s.ptr[:s.shift]), s.s1_dst_off.eq(s.dst_off),
                    s.s1_word.eq(s.dst_ptr[s.shift:s.shift + s.aw]),
                ]
                self._advance(m, s)
            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.next = "IDLE"
        with m.If(~s.running):
            m.d.sync += s.s1_valid.eq(0)

    def _advance(self, m, s):
        """RUN's step to the next element: the innermost loop level that is not at its end
        steps, the levels inside it restart; after the last element, DRAIN."""
        ox, oy, kj, ki, c = s.ox, s.oy, s.kj, s.ki, s.c
        ptr, x, y, x_row, y_row = s.ptr, s.x, s.y, s.x_row, s.y_row
        dst_ptr, dst_row, ebytes = s.dst_ptr, s.dst_row, s.ebytes
        oy_base, row_base, irow_base, chan_base = s.oy_base, s.row_base, s.irow_base, s.chan_base
        pl, pt = s.pl, s.pt
        with m.If(~s.last_ox):
            m.d.sync += [ox.eq(ox + 1), ptr.eq(ptr + s.sw_e), x.eq(x + s.sw),
                         dst_ptr.eq(dst_ptr + ebytes)]
        with m.Elif(~s.last_oy):
            nxt = oy_base + s.sh_pitch
            m.d.sync += [ox.eq(0), oy.eq(oy + 1), oy_base.eq(nxt), ptr.eq(nxt),
                         y.eq(y + s.sh), x.eq(x_row), dst_ptr.eq(dst_ptr + ebytes)]
        with m.Else():
            # End of a destination row: the next row starts at the next (c, i, j).
            ndst = dst_row + s.dst_pitch
            m.d.sync += [ox.eq(0), oy.eq(0), dst_row.eq(ndst), dst_ptr.eq(ndst)]
            with m.If(~s.last_kj):
                nrow = row_base + ebytes
                m.d.sync += [kj.eq(kj + 1), row_base.eq(nrow), oy_base.eq(nrow),
                             ptr.eq(nrow), x_row.eq(x_row + 1), x.eq(x_row + 1),
                             y.eq(y_row)]
            with m.Elif(~s.last_ki):
                nirow = irow_base + s.pitch
                nrow = nirow - s.pl_e
                m.d.sync += [kj.eq(0), ki.eq(ki + 1), irow_base.eq(nirow),
                             row_base.eq(nrow), oy_base.eq(nrow), ptr.eq(nrow),
                             y_row.eq(y_row + 1), y.eq(y_row + 1),
                             x_row.eq(-pl), x.eq(-pl)]
            with m.Elif(~s.last_c):
                nchan = chan_base + s.h_pitch
                nirow = nchan - s.pt_pitch
                nrow = nirow - s.pl_e
                m.d.sync += [kj.eq(0), ki.eq(0), c.eq(c + 1), chan_base.eq(nchan),
                             irow_base.eq(nirow), row_base.eq(nrow), oy_base.eq(nrow),
                             ptr.eq(nrow), y_row.eq(-pt), y.eq(-pt),
                             x_row.eq(-pl), x.eq(-pl)]
            with m.Else():
                m.next = "DRAIN"

    def _merge_stage(self, m, s):
        """Stage 1: the element taken out of its source word (or the pad value) and merged
        into the destination word register, written with its byte enables on a flush."""
        wb = s.wb
        raw = Signal(32)
        m.d.comb += raw.eq((self.rd.data >> Cat(Const(0, 3), s.s1_src_off))[:32])
        elem = Signal(32)
        m.d.comb += elem.eq(Mux(s.s1_pad, s.pad_value, raw))
        emask = Signal(4)
        with m.Switch(s.e_log2):
            with m.Case(0):
                m.d.comb += emask.eq(0b0001)
            with m.Case(1):
                m.d.comb += emask.eq(0b0011)
            with m.Default():
                m.d.comb += emask.eq(0b1111)
        be = Signal(wb)
        m.d.comb += be.eq((emask << s.s1_dst_off)[:wb])
        placed = Signal(8 * wb)
        m.d.comb += placed.eq((elem << Cat(Const(0, 3), s.s1_dst_off))[:8 * wb])
        acc, acc_en = s.acc, s.acc_en
        merged = Signal(8 * wb)
        m.d.comb += merged.eq(Cat(*(Mux(be[b], placed[8 * b:8 * b + 8], acc[8 * b:8 * b + 8])
                                    for b in range(wb))))
        merged_en = Signal(wb)
        m.d.comb += merged_en.eq(acc_en | be)
        m.d.comb += [self.wr.addr.eq(s.s1_word), self.wr.data.eq(merged)]
        with m.If(s.s1_valid):
            with m.If(s.s1_flush):
                m.d.comb += self.wr.en.eq(merged_en)
                m.d.sync += acc_en.eq(0)
            with m.Else():
                m.d.sync += [acc.eq(merged), acc_en.eq(merged_en)]
