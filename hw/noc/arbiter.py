"""A round-robin arbiter: the grant rotates past the last winner, so no requester starves."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import check_positive

__all__ = ["RoundRobin"]


class RoundRobin(wiring.Component):
    """Combinational round-robin arbiter over ``count`` requesters.

    Parameters
    ----------
    count : int
        Number of requesters.

    Attributes
    ----------
    requests : Signal(count), in
        One bit per requester.
    grant : Signal(range(count)), out
        The winner: the first requester after the previous winner, cyclically.
        Meaningful when ``valid``.
    valid : Signal, out
        Some requester is asking.
    advance : Signal, in
        The grant was used this cycle: the winner becomes lowest priority.
    """

    def __init__(self, count: int):
        self._count = check_positive(count, "Requester count")
        super().__init__({
            "requests": In(count),
            "grant": Out(range(count)),
            "valid": Out(1),
            "advance": In(1),
        })

    @property
    def count(self) -> int:
        return self._count

    def elaborate(self, platform):
        m = Module()
        n = self._count
        last = Signal(range(n), init=n - 1)
        m.d.comb += self.valid.eq(self.requests.any())
        with m.Switch(last):
            for p in range(n):
                with m.Case(p):
                    # Later assignments win: walk the priority order backwards.
                    for i in reversed([(p + 1 + k) % n for k in range(n)]):
                        with m.If(self.requests[i]):
                            m.d.comb += self.grant.eq(i)
        with m.If(self.advance & self.valid):
            m.d.sync += last.eq(self.grant)
        return m
