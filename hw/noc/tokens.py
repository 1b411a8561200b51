"""Token counters: SIGNAL packets add to them, the tile controller's WAIT consumes them.

One 16-bit counter per token. ``inc`` (from the network interface) is always ready;
``wait`` is a stream of :data:`accelpool.spec.isa.WaitBody` ({token, count}) that completes, and
subtracts ``count``, in the first cycle the counter holds at least ``count``; so a tile
controller hands its WAIT command straight to it and moves on at the handshake. An
increment and a wait on the same counter in one cycle both take effect. ``peek`` reads a
counter combinationally (debug and testbench).

A token number at or beyond :attr:`TokenCounters.count` is not a counter: an increment
of it is dropped and a wait on it completes at once, and both raise the sticky ``error``.
Counters wrap modulo 2**16.
"""

from __future__ import annotations

from amaranth import Array, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from accelpool.spec.isa import COUNT_BITS, TOKEN_BITS, WaitBody

from ..params import check_int

__all__ = ["TokenInc", "TokenCounters"]

#: An increment delivered by a SIGNAL packet.
TokenInc = data.StructLayout({"token": TOKEN_BITS, "count": COUNT_BITS})


class TokenCounters(wiring.Component):
    """``count`` token counters of 16 bits.

    Parameters
    ----------
    count : int
        Number of counters, 1 to 256 (the ISA's token field is 8 bits).

    Attributes
    ----------
    inc : In(stream.Signature(TokenInc))
        Add ``count`` to counter ``token``; always ready.
    wait : In(stream.Signature(WaitBody))
        Ready when counter ``token`` >= ``count``; the handshake subtracts ``count``.
    peek_token : In(8)
    peek_value : Out(16)
        The value of counter ``peek_token`` (this cycle, before any update).
    error : Out(1)
        Sticky: a token number outside the counters was used.
    """

    def __init__(self, count: int = 16):
        check_int(count, "Token counter count")
        if not 1 <= count <= 1 << TOKEN_BITS:
            raise ValueError(f"Token counter count must be between 1 and {1 << TOKEN_BITS}, "
                             f"not {count!r}")
        self._count = count
        super().__init__({
            "inc": In(stream.Signature(TokenInc)),
            "wait": In(stream.Signature(WaitBody)),
            "peek_token": In(TOKEN_BITS),
            "peek_value": Out(COUNT_BITS),
            "error": Out(1),
        })

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count
        counters = Array(Signal(COUNT_BITS, name=f"token_{i}") for i in range(n))
        wait_ok = Signal()
        wait_in_range = self.wait.payload.token < n
        inc_in_range = self.inc.payload.token < n
        m.d.comb += [
            self.inc.ready.eq(1),
            # counter >= count, as "no borrow" (a ">=" against an unused, constant-0 wait
            # port would be a constant comparison that Verilator's lint rejects).
            wait_ok.eq(~wait_in_range | ~(counters[self.wait.payload.token]
                                          - self.wait.payload.count)[COUNT_BITS]),
            self.wait.ready.eq(wait_ok),
        ]
        with m.If(self.peek_token < n):
            m.d.comb += self.peek_value.eq(counters[self.peek_token])
        # Shared terms are named signals: an expression used in ``replicate`` is written
        # out once per copy in the Verilog (16 x 16 copies of the token compare per tile).
        do_inc, do_wait = Signal(), Signal()
        m.d.comb += [do_inc.eq(self.inc.valid & inc_in_range),
                     do_wait.eq(self.wait.valid & wait_ok & wait_in_range)]
        for i in range(n):
            delta_up = Signal(name=f"delta_up_{i}")
            delta_dn = Signal(name=f"delta_dn_{i}")
            up = Signal(COUNT_BITS, name=f"up_{i}")
            dn = Signal(COUNT_BITS, name=f"dn_{i}")
            m.d.comb += [delta_up.eq(do_inc & (self.inc.payload.token == i)),
                         delta_dn.eq(do_wait & (self.wait.payload.token == i)),
                         up.eq(delta_up.replicate(COUNT_BITS) & self.inc.payload.count),
                         dn.eq(delta_dn.replicate(COUNT_BITS) & self.wait.payload.count)]
            with m.If(delta_up | delta_dn):
                m.d.sync += counters[i].eq(counters[i] + up - dn)
        with m.If((self.inc.valid & ~inc_in_range) | (self.wait.valid & ~wait_in_range)):
            m.d.sync += self.error.eq(1)
        return m
